"""Run a command and record its wall time and the machine's load beside it, in ``RUN_DIR/wall_clock.json``.

    python -m benchmarks.timed_command experiments/laptop/fast-bf16-seed1 -- \
        python train.py --config configs/fast_bf16.yaml --set seed=1 --run-dir experiments/laptop/fast-bf16-seed1 --no-progress

The laptop-track runs are judged by the wall time of the whole command (start-up, data loading,
whitening, training, final evaluation), which ``metrics.csv`` cannot give. The share of the CPU
that *other* processes used meanwhile (``ForeignLoad``: the command and its children are not
counted) says whether that time is the machine's or a shared machine's.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ForeignLoad


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m benchmarks.timed_command RUN_DIR -- COMMAND [ARGS ...]", file=sys.stderr)
        return 2
    run_dir, command = Path(argv[0]), argv[2:]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    with ForeignLoad() as foreign:
        exit_code = subprocess.call(command)
    record = {"command": shlex.join(command), "exit_code": exit_code,
              "wall_seconds": time.perf_counter() - started,
              "other_processes_cpu_share": foreign.share, "load_average_1min_before": load_before,
              "note": "wall time of the whole command: start-up, data loading, whitening, training, final evaluation"}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "wall_clock.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"{record['command']}: exit {exit_code}, {record['wall_seconds'] / 60:.1f} min; other processes used "
          f"{'?' if foreign.share is None else f'{100 * foreign.share:.1f}%'} of the CPU")
    return exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
