"""Run the speed benchmarks: ``python -m benchmarks.run --device cpu`` (``make bench``).

Benchmarks (``--only`` picks some, comma-separated):

- ``input_pipeline``: images/s of batches, course vs torchvision DataLoader (0 and 2 workers).
- ``training``: images/s of training steps, course engine setup vs a tutorial loop, with ablations.
- ``precision``: the fast net's training step in bf16 autocast vs fp32 (CPUs: watches torch #183815).
- ``compile``: the fast net's training step compiled by ``torch.compile`` vs eager, with the compile
  time and what it saves or costs over ``configs/fast.yaml``'s whole run.
- ``time_to_accuracy``: minutes to 85% and 90% validation accuracy, laptop ResNet-18 recipe vs the
  fast recipe, trained epoch by epoch in turn (tens of minutes on a CPU; ``--cap-minutes``).
- ``malloc``: the laptop track's training step with glibc's default allocator vs the kept-memory
  setting ``train.py`` re-executes itself with (``course_utils/allocator.py``), each in fresh processes.
- ``laptop_track``: minutes to 89.5% test accuracy (airbench93's result on the offline copy) of
  ``configs/fast_laptop.yaml``, one whole run on all 50,000 training images (about 20 minutes on a CPU).
- ``peer``: airbench94 itself (``airbench==0.1.8``) beside ``configs/fast_gpu_50k.yaml``, seed by seed,
  on the same device and data (``--seeds``; on a CPU a dry run: the peer needs CUDA).
- ``gpu_epoch``: seconds per epoch of the reference recipe with each speed setting on and off,
  and the projected 200-epoch time. Runs by default with ``--device cuda`` only; on a CPU
  ``--only gpu_epoch`` is a dry run of its code path.

``--quick`` makes every benchmark take seconds (for tests); its numbers mean nothing.
Each benchmark prints its table and writes ``<out>/<name>.json`` (default ``build/bench``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from benchmarks import (common, compile_speed, gpu_epoch, input_pipeline, laptop_track, malloc, peer, precision,
                        time_to_accuracy, training)
from course_utils.repro import resolve_device

BENCHMARKS = ("input_pipeline", "training", "precision", "compile", "malloc", "time_to_accuracy", "laptop_track",
              "peer", "gpu_epoch")
ALIASES = {"pipeline": "input_pipeline", "gpu": "gpu_epoch", "train": "training", "bf16": "precision",
           "tta": "time_to_accuracy", "laptop": "laptop_track"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    parser.add_argument("--only", default=None,
                        help=f"comma-separated benchmarks among {', '.join(BENCHMARKS)} (aliases: "
                             f"{', '.join(f'{k}={v}' for k, v in ALIASES.items())}); default: all but peer, "
                             "and gpu_epoch only on cuda")
    parser.add_argument("--quick", action="store_true", help="tiny step counts and width: seconds, for tests")
    parser.add_argument("--width", type=int, default=None,
                        help=f"ResNet-18 width (default: 64 on cuda, {training.CPU_WIDTH} on cpu, "
                             f"{training.QUICK_WIDTH} with --quick)")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile on a CPU (compiling takes minutes there; always on for cuda)")
    parser.add_argument("--ref-workers", type=int, default=None,
                        help="DataLoader workers of the training benchmark's reference loop (default: the better "
                             "setting measured by input_pipeline, which then runs first)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's own choice, one per core)")
    parser.add_argument("--out", type=Path, default=common.DEFAULT_OUT_DIR, help="where the JSON files go")
    parser.add_argument("--data-dir", default=None,
                        help="folder of cifar10.npz (default: $COURSE_DATA_DIR, else data/)")
    parser.add_argument("--cap-minutes", type=float, default=45.0,
                        help="time_to_accuracy: stop a recipe after this many minutes of training (default 45)")
    parser.add_argument("--seeds", type=int, default=peer.SEEDS,
                        help=f"peer: seeds of each side, while --peer-budget allows (default {peer.SEEDS})")
    parser.add_argument("--peer-budget", type=float, default=150.0,
                        help="peer: start another seed pair only if it should end within this many seconds (default 150)")
    parser.add_argument("--strict", action="store_true", help="exit with status 1 if a speed target is not met")
    args = parser.parse_args(argv)
    args.device = resolve_device(args.device)
    if args.only is None:
        args.only = ["input_pipeline", "training", "precision", "compile", "malloc", "time_to_accuracy", "laptop_track"] + (
            ["gpu_epoch"] if args.device.type == "cuda" else [])
    else:
        names = [ALIASES.get(n.strip(), n.strip()) for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BENCHMARKS]
        if unknown:
            parser.error(f"unknown benchmark {unknown[0]!r}; choose among {', '.join(BENCHMARKS)}")
        args.only = [n for n in BENCHMARKS if n in names]  # always in dependency order
    if "training" in args.only and args.ref_workers is None and "input_pipeline" not in args.only:
        args.only.insert(0, "input_pipeline")  # the training baseline uses its better DataLoader setting
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    machine = common.machine_info(args.device)
    machine["glibc_tunables"] = os.environ.get("GLIBC_TUNABLES")  # the allocator every in-process row ran with
    print(common.machine_line(machine) + f"; GLIBC_TUNABLES {machine['glibc_tunables'] or 'unset'}")
    split = None
    if {"input_pipeline", "training", "precision", "compile", "time_to_accuracy"} & set(args.only):
        split = common.load_train_split(args.data_dir)
        print(f"data: {split.source}, the 40k train split of split_train_val(seed 42): {split.note}")
    if "gpu_epoch" in args.only:
        print("data (gpu_epoch): random uint8 images of CIFAR-10's shape; speed does not depend on pixel values")
    if args.quick:
        print("--quick: tiny step counts and width; these numbers only show that the benchmarks run")
    if args.device.type != "cuda":
        print(f"device: {args.device} (not a GPU)")

    results = {}
    ref_workers = args.ref_workers
    for name in args.only:
        print()
        before = list(os.getloadavg())
        t0 = time.perf_counter()
        with common.ForeignLoad() as foreign:  # who else used the CPU meanwhile
            if name == "input_pipeline":
                payload = input_pipeline.run(split, args.device, quick=args.quick)
                ref_workers = payload["best_torchvision_workers"] if ref_workers is None else ref_workers
                text = input_pipeline.format_result(payload)
            elif name == "training":
                payload = training.run(split, args.device, ref_workers, quick=args.quick, width=args.width,
                                       compile_on_cpu=args.compile)
                text = training.format_result(payload)
            elif name == "precision":
                payload = precision.run(split, args.device, quick=args.quick)
                text = precision.format_result(payload)
            elif name == "compile":
                payload = compile_speed.run(split, args.device, quick=args.quick)
                text = compile_speed.format_result(payload)
            elif name == "peer":
                payload = peer.run(args.device, args.out, quick=args.quick, seeds=args.seeds,
                                   budget_seconds=args.peer_budget, data_dir=args.data_dir)
                text = peer.format_result(payload)
            elif name == "time_to_accuracy":
                payload = time_to_accuracy.run(args.device, args.out, quick=args.quick, cap_minutes=args.cap_minutes,
                                               data_dir=args.data_dir)
                text = time_to_accuracy.format_result(payload)
            elif name == "malloc":
                payload = malloc.run(args.device, quick=args.quick)
                text = malloc.format_result(payload)
            elif name == "laptop_track":
                payload = laptop_track.run(args.device, args.out, quick=args.quick, data_dir=args.data_dir)
                text = laptop_track.format_result(payload)
            else:
                payload = gpu_epoch.run(args.device, quick=args.quick, width=args.width, compile_on_cpu=args.compile)
                text = gpu_epoch.format_result(payload)
        payload.update(
            other_processes_cpu_share=foreign.share,
            unreliable_because=common.load_verdict(foreign.share, payload.get("ratio_rounds")),
            machine=machine,
            # a benchmark that reads its own data says which (peer, malloc, laptop_track); the others share the split
            data_source=(payload["data_source"] if "data_source" in payload else "random uint8" if name == "gpu_epoch"
                         else split.source),
            data_note=(payload.get("data_note") if "data_source" in payload or name == "gpu_epoch" else split.note),
            quick=args.quick,
            command="python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv),
            load_average_before=[round(v, 2) for v in before],
            load_average_after=[round(v, 2) for v in os.getloadavg()],
            wall_seconds=time.perf_counter() - t0,
        )
        path = common.write_json(payload, args.out, name)
        print(text)
        share = "unknown" if foreign.share is None else f"{100 * foreign.share:.0f}%"
        print(f"load average (1 min) {before[0]:.2f} before, {payload['load_average_after'][0]:.2f} after; "
              f"other processes' share of the CPU meanwhile: {share}; {payload['wall_seconds']:.0f} s; wrote {path}")
        if payload["unreliable_because"]:
            print(f"UNRELIABLE: {payload['unreliable_because']}: run again on an idle machine")
        results[name] = payload

    missed = [p["target"]["what"] for p in results.values() if "target" in p and not p["target"]["met"]]
    print(f"\nall benchmarks took {time.perf_counter() - started:.0f} s"
          + (f"; targets not met: {'; '.join(missed)}" if missed else ""))
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    from course_utils.allocator import keep_freed_memory

    keep_freed_memory()  # measure as train.py trains (the malloc row sets each child's allocator itself)
    sys.exit(main())
