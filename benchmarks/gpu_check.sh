#!/usr/bin/env bash
# The GPU check in one command: `make gpu-check`, or `bash benchmarks/gpu_check.sh [OUT_DIR]`
# (default OUT_DIR build/gpu-check). Made for a short, rare GPU window:
# - each step runs under its own time limit; a step that fails or runs out of time is recorded and
#   the next step runs;
# - OUT_DIR/summary.txt gets every step's status as it ends, and a last line even when the check is
#   interrupted; the exit status is 0 only if every step passed;
# - each step's output goes to OUT_DIR/<step>.txt (and the terminal), each benchmark's numbers to
#   OUT_DIR/<benchmark>.json (benchmarks/run.py describes them);
# - nothing is installed: Python is $PYTHON, else .venv/bin/python, else python3.
#
# Steps and their limits in seconds: 585 in all, so the check ends within 10 minutes on one H100
# whichever step stalls, and prints its summary last. Each limit is sized from what the step does
# (estimates: no GPU has run this check yet; a step's own output says how long it took):
#   nvidia_smi 10
#   cuda_tests 75        tests/test_cuda.py: pytest start-up (~10 s), short CUDA runs of the engine
#   input_pipeline 45    batches/s of two loaders; DataLoader workers start in seconds
#   training 90          images/s of 6 training variants, ~150 steps each, plus one cold torch.compile
#                        of ResNet-18 forward and backward (~40-60 s)
#   precision 30         the fast net's step in bf16 and fp32, a few hundred steps
#   time_to_accuracy 95  three recipes, each stopped after GPU_CHECK_CAP_MINUTES=0.3 minutes of
#                        training (54 s in all), their data built once, one checkpoint per epoch
#   peer 140             airbench94 (train94, ~4-5 s a run on an H100, cold cuDNN on the first) and
#                        fast_gpu_50k.yaml through the engine (data ~5 s, 476 steps), seed pairs while
#                        --peer-budget 110 s allows another: 3 seeds where time allows
#   gpu_epoch 100        seconds per epoch of the 200-epoch recipe with each speed setting (8 rows,
#                        ~100 steps each, one torch.compile, warm from the training step's cache)
#
# Data: found as the tests find it (conftest.py): $COURSE_DATA_DIR, else ../shared/data if it holds
# cifar10.npz, else data/. Without cifar10.npz there, the steps that need it are skipped (gpu_epoch
# uses random images and still runs) and the check says which folder to point COURSE_DATA_DIR at.
#
# Settings (environment):
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1   the same steps on a CPU in seconds each (the tests' dry run)
#   GPU_CHECK_LIMITS="training=200,gpu_epoch=300"   other limits, in seconds
#   GPU_CHECK_PEER_BUDGET=110   the peer step's seconds for seed pairs (GPU_CHECK_CAP_MINUTES: time_to_accuracy's)
# The peer step needs `airbench==0.1.8` (the dev extra installs it); without it the step records one
# line saying so and is skipped, and the check still passes.
#   GPU_CHECK_FAIL_STEP=<step>   that step fails on purpose (the tests check that the others still run)
set -uo pipefail  # no -e: one failed step must not end the check
caller=$PWD
cd "$(dirname "$0")/.."
from_caller() { case $1 in /*) echo "$1" ;; *) echo "$caller/$1" ;; esac; }  # a path given relative to where you ran it

out=$([ -n "${1:-}" ] && from_caller "$1" || echo build/gpu-check)
device="${GPU_CHECK_DEVICE:-cuda}"
cap_minutes="${GPU_CHECK_CAP_MINUTES:-0.3}"
peer_budget="${GPU_CHECK_PEER_BUDGET:-110}"  # seconds within which the peer step starts another seed pair
quick=(); [ -n "${GPU_CHECK_QUICK:-}" ] && quick=(--quick)
export PYTHONUNBUFFERED=1  # step output reaches the terminal and its file as it is printed

STEPS=(nvidia_smi cuda_tests input_pipeline training precision time_to_accuracy peer gpu_epoch)
declare -A limit=([nvidia_smi]=10 [cuda_tests]=75 [input_pipeline]=45 [training]=90 [precision]=30
                  [time_to_accuracy]=95 [peer]=140 [gpu_epoch]=100)
for pair in ${GPU_CHECK_LIMITS:+${GPU_CHECK_LIMITS//,/ }}; do
    name=${pair%%=*} seconds=${pair#*=}
    if [ -z "${limit[$name]+set}" ] || ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
        echo "gpu check: GPU_CHECK_LIMITS entry '$pair' is not <step>=<seconds> with a step among: ${STEPS[*]}" >&2
        exit 2
    fi
    limit[$name]=$seconds
done
if [ -n "${GPU_CHECK_FAIL_STEP:-}" ] && [ -z "${limit[$GPU_CHECK_FAIL_STEP]+set}" ]; then
    echo "gpu check: GPU_CHECK_FAIL_STEP '$GPU_CHECK_FAIL_STEP' is not a step; steps: ${STEPS[*]}" >&2
    exit 2
fi

mkdir -p "$out"
for name in "${STEPS[@]}" summary; do rm -f "$out/$name.txt" "$out/$name.json"; done  # no stale results
summary="$out/summary.txt"
started=$SECONDS
not_ok=0
interrupted=
current=

note() { echo "$*" | tee -a "$summary"; }

record() {  # record STEP STATUS SECONDS: one line of the summary, written as soon as the step ends
    printf '%-18s %-44s %7s %6s\n' "$1" "$2" "$3" "${limit[$1]}" | tee -a "$summary"
    [ "$2" = ok ] || not_ok=$((not_ok + 1))
}

finish() {
    local end="all steps ended"
    [ -n "$interrupted" ] && end="INTERRUPTED"
    note "$end: $not_ok of ${#STEPS[@]} steps not ok; $((SECONDS - started)) s in all; results in $out"
    printf '\n== summary (%s)\n' "$summary"
    cat "$summary"  # the summary comes last in the output, whatever failed
}
trap finish EXIT
# Ctrl-C or a kill ends the running step (timeout passes the signal on to it) and the check.
trap 'interrupted=1; [ -n "$current" ] && kill -TERM "$current" 2>/dev/null' INT TERM

step() {  # step NAME COMMAND...: run one step under its limit and record how it ended
    local name=$1 t0=$SECONDS rc status
    shift
    if [ -n "$interrupted" ]; then record "$name" "not run (check interrupted)" 0; return; fi
    if [ "${GPU_CHECK_FAIL_STEP:-}" = "$name" ]; then
        set -- bash -c "echo 'failing on purpose: GPU_CHECK_FAIL_STEP=$name'; exit 3"
    fi
    echo "== $name (limit ${limit[$name]} s)"
    timeout --kill-after=10 "${limit[$name]}" "$@" > >(tee "$out/$name.txt") 2>&1 &
    current=$!
    wait "$current"; rc=$?
    while kill -0 "$current" 2>/dev/null; do wait "$current"; rc=$?; done  # a trapped signal cuts wait short
    current=
    if [ "$rc" -eq 0 ]; then status=ok
    elif [ "$rc" -eq 124 ] || { [ "$rc" -eq 137 ] && [ $((SECONDS - t0)) -ge "${limit[$name]}" ]; }; then
        status="TIMED OUT after ${limit[$name]} s"  # 137: it ignored timeout's TERM and was killed 10 s later
    else status="FAILED (exit $rc)"
    fi
    [ -n "$interrupted" ] && status="INTERRUPTED (exit $rc)"
    record "$name" "$status" $((SECONDS - t0))
}

skip() {  # skip NAME WHY
    record "$1" "SKIPPED: $2" 0
}

bench() {  # bench NAME [ARGS...]: one benchmark of benchmarks/run.py
    local name=$1
    shift
    step "$name" "$python" -m benchmarks.run --device "$device" --out "$out" --only "$name" "${quick[@]}" "$@"
}

# --- what the check runs with
if [ -n "${PYTHON:-}" ]; then python=$PYTHON
elif [ -x .venv/bin/python ]; then python=.venv/bin/python
else python=python3
fi
if [ -n "${COURSE_DATA_DIR:-}" ]; then data=$(from_caller "$COURSE_DATA_DIR"); data_from="COURSE_DATA_DIR"
elif [ -f ../shared/data/cifar10.npz ]; then data=$(cd ../shared/data && pwd); data_from="../shared/data"
else data=$PWD/data; data_from="data/ (COURSE_DATA_DIR unset, no ../shared/data/cifar10.npz)"
fi

note "GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), device $device${quick:+ (quick: the numbers only show that it runs)}"
if versions=$("$python" -c "import torch, course_utils; print('torch', torch.__version__)" 2>&1); then
    note "python: $python ($versions)"
    python_ok=1
else
    echo "gpu check: $python cannot import torch and course_utils (${versions##*$'\n'}): run 'make venv' or set PYTHON" >&2
    note "python: $python cannot import torch and course_utils"
    python_ok=
fi
if [ -f "$data/cifar10.npz" ]; then
    note "data: $data/cifar10.npz (from $data_from)"
    export COURSE_DATA_DIR=$data
    data_ok=1
else
    echo "gpu check: no cifar10.npz in $data (from $data_from): set COURSE_DATA_DIR to the folder holding the offline CIFAR-10 copy" >&2
    note "data: none, no cifar10.npz in $data (from $data_from): set COURSE_DATA_DIR"
    data_ok=
fi
note "$(printf '%-18s %-44s %7s %6s' step status seconds limit)"

# --- the steps, in order
if command -v nvidia-smi >/dev/null 2>&1 || [ "$device" != cpu ]; then
    step nvidia_smi nvidia-smi
else
    step nvidia_smi echo "nvidia-smi: not run, the check runs on the CPU"
fi

no_python="no Python with torch and course_utils"
no_data="no data (set COURSE_DATA_DIR)"
if [ -z "$python_ok" ]; then
    for name in "${STEPS[@]:1}"; do skip "$name" "$no_python"; done
    exit 1
fi
if [ -n "$data_ok" ]; then
    step cuda_tests "$python" -m pytest -q -p no:nbval -p no:cacheprovider -o addopts="" tests/test_cuda.py
    bench input_pipeline
    # The training benchmark's reference loop uses the DataLoader setting that input_pipeline found
    # faster; the tutorials' num_workers=2 if that step failed.
    workers=$("$python" -c "import json, sys; print(json.load(open(sys.argv[1]))['best_torchvision_workers'])" \
              "$out/input_pipeline.json" 2>/dev/null) || workers=2
    bench training --ref-workers "$workers"
    bench precision
    bench time_to_accuracy --cap-minutes "$cap_minutes"
    bench peer --peer-budget "$peer_budget"
else
    for name in cuda_tests input_pipeline training precision time_to_accuracy peer; do skip "$name" "$no_data"; done
fi
bench gpu_epoch  # random images: runs without the data
[ "$not_ok" -eq 0 ] && [ -z "$interrupted" ]
