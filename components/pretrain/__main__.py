"""CLI: ``python -m components.pretrain --data outputs/tokenize --output outputs/pretrain
[--checkpoint-dir DIR] [--params params.yaml]``.

World size > 1 (tensor x pipeline x data parallel in params) is launched with torchrun from here;
under an outside torchrun (a PyTorchJob) every rank runs this same command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from components.common.cli import run_stage, stage_parser
from components.common.params import ParamsError

STAGE = "pretrain"


def main(argv: Sequence[str] | None = None) -> int:
    parser = stage_parser(STAGE, "Pretrain a megatron-core GPT on the tokenized corpus.")
    parser.add_argument(
        "--data", required=True, help="tokenize output folder (tokenizer.json + *_text_document.bin/idx)"
    )
    parser.add_argument("--output", required=True, help="output folder (replaced atomically)")
    parser.add_argument(
        "--checkpoint-dir",
        default=None,
        help="root of the resumable checkpoints; a rerun resumes from the latest one "
        "(default: <output>.checkpoints)",
    )

    def body(args, params) -> None:
        from components.pretrain.core import run
        from components.pretrain.launch import forked_children_die_with_this_process, quiet_megatron

        quiet_megatron()
        forked_children_die_with_this_process()
        try:
            run(args.data, args.output, params, checkpoint_dir=args.checkpoint_dir)
        except ParamsError as exc:  # what this machine cannot run: refused before any launch
            print(f"error: {args.params}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    return run_stage(STAGE, parser, argv, body)


# Keep the guard: checkpoint writing and torchrun start helper processes.
if __name__ == "__main__":
    sys.exit(main())
