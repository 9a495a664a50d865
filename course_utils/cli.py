"""The command line of ``train.py`` and ``test.py``: thin wrappers over the engine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from course_utils.checkpoint import CheckpointError, load_checkpoint
from course_utils.config import ConfigError, load_config
from course_utils.data import DataError
from course_utils.engine import (
    DEFAULT_EXPERIMENTS_DIR,
    RunDirError,
    TrainingDiverged,
    build_data,
    evaluation_table,
    format_final,
    load_run,
    load_weights,
    train,
)
from course_utils.repro import resolve_device, resolve_precision

EXPECTED_ERRORS = (ConfigError, DataError, RunDirError, CheckpointError)


def _parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, type=Path, help="a YAML file in configs/")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="the run directory (default: experiments/<config name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key (repeatable), e.g. --set lr=0.05")
    return parser


def _run_dir(args) -> Path:
    return args.run_dir or DEFAULT_EXPERIMENTS_DIR / args.config.stem


def train_main(argv=None) -> int:
    parser = _parser("Train the CIFAR ResNet recipe of a config.")
    parser.add_argument("--resume", action="store_true", help="continue the run found in the run directory")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (epoch lines only)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        run = train(config, _run_dir(args), resume=args.resume, progress=not args.no_progress)
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except EXPECTED_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"run directory: {run.run_dir}")
    return 0


def test_main(argv=None) -> int:
    parser = _parser("Evaluate a run's checkpoints on train (no augmentation), validation and test.")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        run_dir = _run_dir(args)
        run = load_run(run_dir)
        if run.config.model != config.model or run.config.dataset != config.dataset:
            raise RunDirError(f"{run_dir}: holds a {run.config.model}/{run.config.dataset} run, "
                              f"but {args.config} describes {config.model}/{config.dataset}")
        device = resolve_device(args.device)
        precision = resolve_precision(device, "auto")
        bundle = build_data(run.config.replace(device=str(device)), device)
        final = {"last": evaluation_table(load_weights(run_dir, "last", device)[0], bundle, precision)}
        if (run_dir / "best.pt").exists():
            best_model = load_weights(run_dir, "best", device)[0]
            epoch = load_checkpoint(run_dir / "best.pt")["epoch"]
            final["best"] = {"epoch": epoch, **evaluation_table(best_model, bundle, precision)}
    except EXPECTED_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{run_dir} ({bundle.data_source.name}, {device})")
    print(format_final(final))
    return 0
