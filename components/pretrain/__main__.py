"""CLI: ``python -m components.pretrain --tokenized outputs/tokenize --output outputs/pretrain [--checkpoint-dir DIR]``

World size > 1 (tensor x pipeline x data parallel in params) is launched with torchrun from here;
under an outside torchrun (a PyTorchJob) every rank runs this same command.

The same entry as the Kubeflow component: ``components.common.entry.run_stage``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import main as stage_main
from components.common.cli import stage_parser

STAGE = "pretrain"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(STAGE, "Pretrain a megatron-core GPT on the tokenized corpus.")
    parser.add_argument(
        "--tokenized", required=True, help="tokenize output folder (tokenizer.json, indexed datasets)"
    )
    parser.add_argument("--output", required=True, help="output folder (replaced atomically)")
    parser.add_argument(
        "--checkpoint-dir",
        dest="checkpoint_dir",
        default=None,
        help="root of the resumable checkpoints; a rerun resumes from the latest one (default: <output>.checkpoints)",
    )
    return stage_main(STAGE, parser, argv)


# Keep the guard: checkpoint writing and torchrun start helper processes.
if __name__ == "__main__":
    sys.exit(main())
