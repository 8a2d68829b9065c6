#!/bin/sh
# demo.sh CLI SHARED GEN_MODEL — the main job of `make demo`: evaluate and generate from
# stories260K when ../shared is present, else from a small model generated from a seed.
# (Quantization joins the demo once it exists.)
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
fi
