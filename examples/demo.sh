#!/bin/sh
# demo.sh CLI SHARED GEN_MODEL — the main job of `make demo`: evaluate and generate from
# stories260K when ../shared is present, else from a small model generated from a seed.
set -eu
CLI=$1 SHARED=$2 GEN=$3
MODEL=$SHARED/models/stories260K.bin
TEXT=$SHARED/data/tinystories_valid_head.txt
run() { echo "\$ $*"; "$@"; echo; }

if [ -f "$MODEL" ] && [ -f "$TEXT" ]; then
    run "$CLI" info "$MODEL"
    run "$CLI" generate "$MODEL" -n 200 --temp 0
    run "$CLI" generate "$MODEL" --prompt "One day, Tom" -n 100 --temp 0.8 --seed 42
    run "$CLI" eval "$MODEL" --text "$TEXT" --ctx 256
    # static W4A8 with Hadamard rotations, compared with the float model on the first 300 paragraphs
    DIR=$(mktemp -d)
    trap 'rm -rf "$DIR"' EXIT
    awk 'BEGIN { RS = ""; ORS = "\n\n" } NR <= 300' "$TEXT" >"$DIR/valid300.txt"
    run "$CLI" quantize "$MODEL" --recipe w4a8-hadamard --calib "$SHARED/data/tinystories_train_head.txt" \
        --out "$DIR/w4a8h.qnpu"
    run "$CLI" eval "$MODEL" --text "$DIR/valid300.txt" --ctx 256
    run "$CLI" eval "$DIR/w4a8h.qnpu" --text "$DIR/valid300.txt" --ctx 256 --engine sim
    # the same model on the integer-only engine, and a greedy story from it
    run "$CLI" eval "$DIR/w4a8h.qnpu" --text "$DIR/valid300.txt" --ctx 256 --engine int
    run "$CLI" generate "$DIR/w4a8h.qnpu" -n 100
else
    echo "$MODEL not found: using a small model generated from seed 42"
    DIR=$(mktemp -d)
    trap 'rm -rf "$DIR"' EXIT
    "$GEN" --dim 64 --hidden 172 --layers 2 --heads 8 --kv-heads 4 --vocab 512 --seq 256 --seed 42 \
        "$DIR/random.bin" 2>/dev/null
    run "$CLI" info "$DIR/random.bin"
    run "$CLI" generate "$DIR/random.bin" -n 64 --temp 0 --ids --ignore-eos
    "$CLI" generate "$DIR/random.bin" -n 200 --temp 1 --seed 1 --ids --ignore-eos >"$DIR/ids.txt"
    run "$CLI" eval "$DIR/random.bin" --tokens "$DIR/ids.txt" --ctx 64
    # static W8A8 calibrated on those ids, run on the integer-only engine
    run "$CLI" quantize "$DIR/random.bin" --recipe w8a8 --tokens "$DIR/ids.txt" --set calib.seq_len=64 \
        --set calib.num_samples=2 --set calib.first_block=0 --out "$DIR/random.qnpu"
    run "$CLI" eval "$DIR/random.qnpu" --tokens "$DIR/ids.txt" --ctx 64 --engine int
fi
