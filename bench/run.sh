#!/bin/sh
# run.sh — the float and integer forward benchmarks and the training pipeline benchmark, run by
# `make bench` as `sh bench/run.sh BUILD_DIR`.
#
# Expects BUILD_DIR/bench/gen_model and BUILD_DIR/bench/bench_float (built by make). Writes the
# synthetic model once into BUILD_DIR/bench/ (seed 1) and reuses it afterwards, prints the
# machine and the command, then runs bench_float on it.
#
# Environment:
#   QNPU_BENCH_SMALL=1    a small shape (dim 256, hidden 704, 4 layers, 8 heads, 2 KV heads,
#                         vocab 4000, ctx 128) that runs in seconds, to test the harness
#   QNPU_BENCH_THREADS=N  threads per sgemm call (default 0 = all cores)
#   QNPU_BENCH_ARGS=...   extra arguments for bench_float (e.g. "--reps 3 --no-breakdown")
#   QNPU_BENCH_INT=0      skip the integer engine (quantize + `quantnpu bench`, W4A8 and W8A8)
#   BLIS_ARCH_TYPE        passed through to BLIS (see docs/RESULTS.md on unrecognised CPUs)
#   QNPU_BENCH_TRAIN=0    skip the training pipeline (BUILD_DIR/bench/bench_train: stories260K,
#                         recipe quantnpu-w4a8, 512 stage-1 steps; 8 steps with QNPU_BENCH_SMALL=1)
#   QNPU_BENCH_TRAIN_ARGS=...  extra arguments for bench_train (e.g. "--steps 64 --reps 2")
#   QNPU_SHARED           the shared models and data (default ../shared; make passes $(SHARED))
set -eu

B=${1:?usage: sh bench/run.sh BUILD_DIR}
GEN=$B/bench/gen_model
BENCH=$B/bench/bench_float
for f in "$GEN" "$BENCH"; do
    [ -x "$f" ] || { echo "run.sh: $f is missing; run 'make B=$B bench'" >&2; exit 1; }
done

if [ "${QNPU_BENCH_SMALL:-0}" = 1 ]; then
    MODEL=$B/bench/small-shape.bin
    SHAPE="--dim 256 --hidden 704 --layers 4 --heads 8 --kv-heads 2 --vocab 4000 --seq 512"
    CTX=128
else
    MODEL=$B/bench/tinyllama-shape.bin
    SHAPE="--dim 2048 --hidden 5632 --layers 22 --heads 32 --kv-heads 4 --vocab 32000 --seq 2048"
    CTX=512
fi

if [ ! -f "$MODEL" ]; then
    echo "== generating $MODEL (seed 1)"
    # shellcheck disable=SC2086
    "$GEN" $SHAPE --seed 1 "$MODEL"
fi

echo "== machine"
echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
if command -v lscpu >/dev/null 2>&1; then
    lscpu | grep -E '^(Model name|Socket\(s\)|Core\(s\) per socket|Thread\(s\) per core|CPU\(s\)|L3 cache):' \
        | sed 's/  */ /g'
fi
grep -m1 -E '^cpu family' /proc/cpuinfo 2>/dev/null | sed 's/[[:space:]]*:[[:space:]]*/: /' || true
echo "nproc: $(nproc)"
if [ -r /proc/meminfo ]; then
    grep -E '^MemTotal:' /proc/meminfo | sed 's/  */ /g'
fi
echo "BLIS_ARCH_TYPE: ${BLIS_ARCH_TYPE:-(unset)}  OMP_NUM_THREADS: ${OMP_NUM_THREADS:-(unset)}"
# Other processes on a small machine distort every number (the OpenMP barriers of each sgemm
# wait for descheduled threads); bench_float reports the load of others per phase as well.
[ -r /proc/loadavg ] && echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

CMD="$BENCH --threads ${QNPU_BENCH_THREADS:-0} --ctx $CTX ${QNPU_BENCH_ARGS:-} $MODEL"
echo "== command"
echo "$CMD"
echo "== results"
# shellcheck disable=SC2086
$CMD

# The integer engine on the same shape: quantize the synthetic model once per recipe with
# random calibration token ids (2 blocks of 256), then `quantnpu bench`, which measures the
# VNNI peak and the read bandwidth in the same run (the W4 run also times the float prefill).
if [ "${QNPU_BENCH_INT:-1}" = 1 ] && [ -x "$B/quantnpu" ]; then
    IDS=$B/bench/calib-ids.txt
    [ -f "$IDS" ] || awk 'BEGIN { srand(1); for (i = 0; i < 640; i++) printf "%d ", 1 + int(rand() * 31999); print "" }' >"$IDS"
    FLOAT="--float $MODEL"
    for R in w4a8 w8a8; do
        QM=${MODEL%.bin}-$R.qnpu
        if [ ! -f "$QM" ]; then
            echo "== quantizing $QM (recipe $R, random calibration ids)"
            "$B/quantnpu" quantize "$MODEL" --recipe "$R" --tokens "$IDS" --set calib.num_samples=2 \
                --set calib.first_block=0 --set calib.seq_len=256 --no-mmap --out "$QM" || exit 1
        fi
        CMD="$B/quantnpu bench $QM --ctx $CTX -n 32 --reps 3 --threads ${QNPU_BENCH_THREADS:-0} --no-mmap $FLOAT"
        echo "== command"
        echo "$CMD"
        # shellcheck disable=SC2086
        $CMD
        FLOAT=
    done
fi

# The Quant.npu pipeline on stories260K (issue 5): calibration, stage 1 (512 steps of 16 blocks of
# 256 tokens), stage 2 and the .qnpu export, timed; the stage-1 GEMM rate against the sgemm peak.
if [ "${QNPU_BENCH_TRAIN:-1}" = 1 ]; then
    SHARED=${QNPU_SHARED:-../shared}
    TRAIN=$B/bench/bench_train
    if [ ! -x "$TRAIN" ]; then
        echo "run.sh: $TRAIN is missing; run 'make B=$B bench'" >&2
        exit 1
    fi
    if [ -f "$SHARED/models/stories260K.bin" ] && [ -f "$SHARED/data/tinystories_train_head.txt" ]; then
        STEPS=512
        [ "${QNPU_BENCH_SMALL:-0}" = 1 ] && STEPS=8
        [ -r /proc/loadavg ] && echo "load average before the training pipeline: $(cut -d' ' -f1-3 /proc/loadavg)"
        CMD="$TRAIN --steps $STEPS --threads ${QNPU_BENCH_THREADS:-0} --text $SHARED/data/tinystories_train_head.txt ${QNPU_BENCH_TRAIN_ARGS:-} $SHARED/models/stories260K.bin"
        echo "== command"
        echo "$CMD"
        # shellcheck disable=SC2086
        $CMD
    else
        echo "== training pipeline skipped: $SHARED/models/stories260K.bin or $SHARED/data/tinystories_train_head.txt is missing"
    fi
fi
[ -r /proc/loadavg ] && echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
exit 0
