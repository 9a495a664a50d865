"""Benchmark: glibc's default allocator against the setting ``train.py`` uses (``course_utils/allocator.py``).

The laptop track's training step (``configs/fast_laptop.yaml``: the fast net with Muon, batch 1,000,
fp32, channels_last) runs in a fresh process per measurement, because glibc reads its tunables only at
start-up: default allocator, then ``GLIBC_TUNABLES`` kept-memory setting, alternating round by round
so that both see the same machine. Each process times its steps after two warm-up steps and reports
seconds per step, the system (kernel) time among them, and the page faults. The images are random:
a step's speed does not depend on pixel values.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from benchmarks.common import REPO_ROOT, format_table, spread_text
from course_utils.allocator import OPT_OUT, TUNABLES

NAME = "malloc"
BASELINE = "glibc default"
TUNED = "kept memory (train.py)"


def child(steps: int, width: int, batch: int) -> dict:
    """Time ``steps`` training steps in this process; the allocator is whatever it started with."""
    from course_utils.config import CONFIG_DIR, load_config
    from course_utils.engine import build_model, build_optimizer

    config = load_config(CONFIG_DIR / "fast_laptop.yaml", [f"width={width}", f"batch_size={batch}"])
    torch.manual_seed(0)
    model = build_model(config, 10).to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config, model)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step():
        loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds_per_step": seconds / steps, "system_seconds_per_step": (after.ru_stime - before.ru_stime) / steps,
            "page_faults_per_step": (after.ru_minflt - before.ru_minflt) / steps,
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES")}


def measure(tuned: bool, steps: int, width: int, batch: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"} | {OPT_OUT: "0"}
    if tuned:
        env["GLIBC_TUNABLES"] = TUNABLES
    result = subprocess.run([sys.executable, "-m", "benchmarks.malloc", str(steps), str(width), str(batch)],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if result.returncode != 0:
        raise RuntimeError(f"malloc benchmark child failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(device: torch.device, *, quick: bool = False, log=print) -> dict:
    if device.type != "cpu":
        return {"benchmark": NAME, "title": "glibc allocator: a CPU setting (skipped on a GPU)", "device": str(device),
                "data_source": "random", "baseline": BASELINE, "rows": [], "ratio_rounds": [],
                "skipped": "the setting concerns CPU training"}
    rounds, steps, width, batch = (1, 1, 8, 50) if quick else (3, 6, 64, 1000)
    log(f"malloc: {rounds} rounds, each a fresh process per allocator timing {steps} steps of fast_laptop.yaml's "
        f"step (width {width}, batch {batch}, fp32) after 2 warm-up steps")
    results = {BASELINE: [], TUNED: []}
    for r in range(rounds):
        for name, tuned in ((BASELINE, False), (TUNED, True)):
            results[name].append(measure(tuned, steps, width, batch))
            log(f"  round {r + 1} {name:<24} {results[name][-1]['seconds_per_step']:.3f} s/step")
    rows = [{"name": name, "seconds_per_step": statistics.median(m["seconds_per_step"] for m in ms),
             "system_seconds_per_step": statistics.median(m["system_seconds_per_step"] for m in ms),
             "page_faults_per_step": statistics.median(m["page_faults_per_step"] for m in ms),
             "glibc_tunables": ms[0]["glibc_tunables"]} for name, ms in results.items()]
    ratio_rounds = [b["seconds_per_step"] / t["seconds_per_step"] for b, t in zip(results[BASELINE], results[TUNED])]
    speedup = rows[0]["seconds_per_step"] / rows[1]["seconds_per_step"]
    return {"benchmark": NAME, "title": f"glibc allocator: default vs kept memory, fast_laptop.yaml's step, batch {batch}",
            "device": str(device), "data_source": "random", "baseline": BASELINE, "rows": rows, "speedup": speedup, "ratio_rounds": ratio_rounds}


def format_result(payload: dict) -> str:
    if payload.get("skipped"):
        return f"== {payload['title']}"
    columns = [("name", "allocator", 26), ("seconds_per_step", "s/step", 7), ("system_seconds_per_step", "of it system", 12),
               ("page_faults_per_step", "page faults/step", 16)]
    rows = [{**r, "seconds_per_step": f"{r['seconds_per_step']:.3f}",
             "system_seconds_per_step": f"{r['system_seconds_per_step']:.3f}",
             "page_faults_per_step": f"{r['page_faults_per_step']:,.0f}"} for r in payload["rows"]]
    return "\n".join([f"== {payload['title']}", format_table(columns, rows),
                      f"kept memory is {payload['speedup']:.2f}x faster per step than {payload['baseline']} "
                      f"({spread_text(payload['ratio_rounds'])}; medians of fresh processes)"])


if __name__ == "__main__":
    print(json.dumps(child(*(int(a) for a in sys.argv[1:4]))))
