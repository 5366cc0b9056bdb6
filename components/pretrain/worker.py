"""One rank of a pretraining job started by ``components.pretrain.launch.launch_torchrun``.

    python -m torch.distributed.run ... -m components.pretrain.worker --data D --stage-dir S
        --run-dir R --transformer-impl local --params-json '{...}'

The params arrive as the JSON of the already validated section and go through the same strict
loader again. Output goes to the staging folder; the launching process publishes it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    started = time.perf_counter()
    parser = argparse.ArgumentParser(prog="python -m components.pretrain.worker")
    parser.add_argument("--data", required=True)
    parser.add_argument("--stage-dir", required=True, type=Path)
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--transformer-impl", required=True, choices=["local", "transformer_engine"])
    parser.add_argument("--params-json", required=True)
    parser.add_argument("--started-at", type=float, help="when the launching stage started (Unix seconds)")
    args = parser.parse_args(argv)
    if args.started_at is not None:  # count the launch too: the run's wall time starts there
        started = time.perf_counter() - max(0.0, time.time() - args.started_at)

    from components.common.entry import setup_logging
    from components.common.params import from_dict
    from components.pretrain.launch import forked_children_die_with_this_process, run_ranks
    from components.pretrain.params import SECTION, Params

    setup_logging()  # megatron's INFO flood silenced there too
    forked_children_die_with_this_process()
    if os.environ.get("RANK", "0") != "0":  # one rank tells the story; the others only warn
        logging.getLogger().setLevel(logging.WARNING)
    params = from_dict(Params, json.loads(args.params_json), SECTION)
    run_ranks(args.data, args.stage_dir, args.run_dir, params, args.transformer_impl, started)
    return 0


# Keep the guard: checkpoint writing starts helper processes.
if __name__ == "__main__":
    sys.exit(main())
