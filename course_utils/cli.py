"""The command line of ``train.py`` and ``test.py``: thin wrappers over the engine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from course_utils.checkpoint import CheckpointError, load_checkpoint
from course_utils.config import ConfigError, load_config
from course_utils.data import DataError
from course_utils.engine import (
    DEFAULT_EXPERIMENTS_DIR,
    _final_evaluation,
    RunDirError,
    TrainingDiverged,
    build_data,
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


def evaluation_setup(recorded: dict, config, requested: str | None) -> tuple[torch.device, str, str | None]:
    """The device and precision for re-evaluating a run, and a note when they differ from training.

    ``recorded``: the run's ``environment.json``. By default the run's own device type and its
    recorded precision, so that the table repeats ``final.json``; on another device type (a GPU run
    evaluated on a CPU, say) the config's precision resolved for that device.
    """
    trained_on = torch.device(recorded["device"]).type if "device" in recorded else None
    if requested is None:
        requested = trained_on if trained_on == "cpu" or (trained_on == "cuda" and torch.cuda.is_available()) else "auto"
    device = resolve_device(requested)
    if trained_on == device.type and "precision" in recorded:
        return device, recorded["precision"], None
    precision = resolve_precision(device, config.precision)
    trained = f"{trained_on} in {recorded.get('precision', '?')}" if trained_on else "an unrecorded device"
    return device, precision, f"the run trained on {trained}; evaluated here on {device.type} in {precision}, " \
                              "so the numbers may differ from final.json"


def test_main(argv=None) -> int:
    parser = _parser("Evaluate a run's checkpoints on train (no augmentation), validation and test, with the "
                     "run's own test-time augmentation and precision: the table of its final.json.")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:N or auto (default: the device type the run trained on, if here)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        run_dir = _run_dir(args)
        run = load_run(run_dir)
        if run.config.model != config.model or run.config.dataset != config.dataset:
            raise RunDirError(f"{run_dir}: holds a {run.config.model}/{run.config.dataset} run, "
                              f"but {args.config} describes {config.model}/{config.dataset}")
        env_path = run_dir / "environment.json"
        recorded = json.loads(env_path.read_text()) if env_path.exists() else {}
        device, precision, note = evaluation_setup(recorded, run.config, args.device)
        bundle = build_data(run.config.replace(device=str(device)), device)
        model = load_weights(run_dir, "last", device)[0]
        has_best = (run_dir / "best.pt").exists()
        best = {"epoch": load_checkpoint(run_dir / "best.pt")["epoch"]} if has_best else {"epoch": None}
        # The function that ends engine.train: the same table, TTA rows included.
        final = _final_evaluation(model, bundle, precision, run_dir, best,
                                  run.config.replace(keep_best=run.config.keep_best and has_best))
    except EXPECTED_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{run_dir} ({bundle.data_source.name}, {device}, {precision})")
    if note:
        print(f"note: {note}")
    table = format_final(final)
    print(table)
    if run.final is not None and run.final.get("status") == "finished":
        same = format_final(run.final) == table
        print("the same table as final.json" if same else f"final.json holds another table:\n{format_final(run.final)}")
    return 0
