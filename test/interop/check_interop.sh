#!/bin/sh
# check_interop.sh B — `make check-interop` (FORMATS.md §2.5, docs/export.md): quantize
# stories260K with static recipes, export the ONNX QDQ graph in both flavours and the float graph,
# validate the opset-17 files with Debian's onnx checker (full_check), run every graph in
# onnxruntime-node with optimizations disabled and require the QDQ graphs' window perplexity to
# be within 0.5 % of our simulated graph's on the same windows. Reports the top-1 agreement of
# ONNX Runtime with the integer engine. For w4a8 also the past-K/V graphs (export.past_len): two
# graphs chained through their K/V outputs, within 0.5 % of the engine run the same way. Needs $(B)/quantnpu, $(B)/interop/ref and onnxruntime-node
# under $(B)/interop/node_modules.
set -eu
B=${1:?usage: check_interop.sh BUILD_DIR}
SHARED=${QNPU_SHARED:-../shared}
T=${INTEROP_T:-128}
W=${INTEROP_WINDOWS:-16}
TOL=${INTEROP_TOL:-0.005}
CLI=$B/quantnpu
OUT=$B/interop/out
MODEL=$SHARED/models/stories260K.bin
CALIB=$SHARED/data/tinystories_train_head.txt
VALID=$SHARED/data/tinystories_valid_head.txt
mkdir -p "$OUT"
PY=/usr/bin/python3
fail=0
# name | recipe | extra --set (w4a8 with an online R4 in every layer covers the R4 MatMul)
for spec in "w8a8 w8a8 -" "w4a8 w4a8 -" "w4a8-r4 w4a8-hadamard rotate.r4=all"; do
    set -- $spec
    name=$1 recipe=$2 extra=$3
    if [ "$extra" = - ]; then set -- ; else set -- --set "$extra"; fi
    "$CLI" quantize "$MODEL" --recipe "$recipe" --calib "$CALIB" --threads 2 "$@" --out "$OUT/$name.qnpu" 2>/dev/null
    for fl in standard compat; do
        "$CLI" export "$OUT/$name.qnpu" --format onnx --flavor "$fl" --seq-len "$T" -o "$OUT/$name-$fl.onnx" 2>/dev/null
    done
    "$CLI" export "$OUT/$name.qnpu" --format onnx-float --seq-len "$T" -o "$OUT/$name-float.onnx" 2>/dev/null
    "$PY" -c 'import onnx, sys
for f in sys.argv[1:]:
    onnx.checker.check_model(onnx.load(f), full_check=True)
    print("onnx.checker (full_check) ok:", f)' "$OUT/$name-compat.onnx" "$OUT/$name-float.onnx"
    "$B/interop/ref" "$OUT/$name.qnpu" "$VALID" "$T" "$W" "$OUT/$name-ref.json"
    NODE_PATH="$B/interop/node_modules" node test/interop/run_ort.js "$OUT/$name-ref.json" "$TOL" \
        "$OUT/$name-standard.onnx" "$OUT/$name-compat.onnx" -- "$OUT/$name-float.onnx" || fail=1
    if [ "$name" = w4a8 ]; then
        # past K/V: each window as two graphs, T/2 tokens from an empty cache (standard), then
        # the other T/2 on its K/V outputs (compat, export.past_len = T/2), against the engine
        # run the same way
        C=$((T / 2))
        "$CLI" export "$OUT/$name.qnpu" --format onnx --seq-len "$C" -o "$OUT/$name-kv-first.onnx" 2>/dev/null
        "$CLI" export "$OUT/$name.qnpu" --format onnx --flavor compat --seq-len $((T - C)) \
            --set export.past_len="$C" -o "$OUT/$name-kv-next.onnx" 2>/dev/null
        "$PY" -c 'import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)' \
            "$OUT/$name-kv-next.onnx"
        "$B/interop/ref" "$OUT/$name.qnpu" "$VALID" "$T" "$W" "$OUT/$name-kv-ref.json" "$C"
        NODE_PATH="$B/interop/node_modules" node test/interop/run_ort_kv.js "$OUT/$name-kv-ref.json" "$TOL" \
            "$OUT/$name-kv-first.onnx" "$OUT/$name-kv-next.onnx" || fail=1
    fi
done
if [ $fail -ne 0 ]; then
    echo "check-interop: FAILED" >&2
    exit 1
fi
echo "check-interop: ok"
