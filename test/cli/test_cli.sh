#!/bin/sh
# test_cli.sh — end-to-end tests of the quantnpu command-line tool on the shared models.
# usage: sh test/cli/test_cli.sh path/to/quantnpu   (QNPU_SHARED defaults to ../shared)
set -u
CLI=${1:?usage: test_cli.sh QUANTNPU}
SHARED=${QNPU_SHARED:-../shared}
M=$SHARED/models
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# exit status and output of one command
run() { "$@" >"$TMP/out" 2>"$TMP/err"; echo $? >"$TMP/rc"; }
expect_rc() { [ "$(cat "$TMP/rc")" = "$1" ] && ok || bad "$2: exit $(cat "$TMP/rc"), expected $1: $(cat "$TMP/err")"; }

run "$CLI" --version; expect_rc 0 "--version"
grep -q '^quantnpu [0-9]' "$TMP/out" && ok || bad "--version output"
run "$CLI" --help; expect_rc 0 "--help"
run "$CLI" frobnicate x; expect_rc 2 "unknown command"
run "$CLI" eval x --ctx nope; expect_rc 2 "bad --ctx"
run "$CLI" recipe; expect_rc 0 "recipe list"
grep -qx "w4a8-hadamard" "$TMP/out" && ok || bad "recipe list: $(cat "$TMP/out")"
run "$CLI" recipe w8a8; expect_rc 0 "recipe show"
grep -q "^version: 1" "$TMP/out" && grep -q "w_bits: 8" "$TMP/out" && ok || bad "recipe show: $(cat "$TMP/out")"
run "$CLI" recipe nope; expect_rc 1 "unknown recipe"
run "$CLI" info "$TMP/missing.bin"; expect_rc 1 "missing model"
grep -q "missing.bin" "$TMP/err" && ok || bad "missing model message names the file"

if [ -f "$M/stories260K.bin" ]; then
    golden=$(sed -n 3p "$M/stories260K.greedy256.txt")
    first100=$(echo "$golden" | cut -d' ' -f1-100)
    for src in stories260K.bin stories260K-f32.gguf stories260K-hf; do
        run "$CLI" generate "$M/$src" -n 256 --temp 0 --ids; expect_rc 0 "generate $src"
        [ "$(cat "$TMP/out")" = "$golden" ] && ok || bad "greedy 256 of $src differs from the golden ids"
    done
    run "$CLI" generate "$M/stories260K-f16.gguf" -n 256 --temp 0 --ids; expect_rc 0 "generate f16"
    [ "$(cut -d' ' -f1-100 "$TMP/out")" = "$first100" ] && ok || bad "greedy f16: first 100 ids differ"

    run "$CLI" generate "$M/stories260K.bin" -n 40 --temp 0; expect_rc 0 "generate text"
    grep -q "^Once upon a time, there was a little girl named Lily" "$TMP/out" && ok || bad "generated text: $(cat "$TMP/out")"
    run "$CLI" generate "$M/stories260K-f32.gguf" --prompt "Once upon a time" -n 20 --temp 0.8 --seed 7
    expect_rc 0 "generate with prompt and sampling"
    grep -q "^Once upon a time" "$TMP/out" && ok || bad "prompt echo: $(cat "$TMP/out")"
    run "$CLI" generate "$M/stories260K-hf" -n 5; expect_rc 1 "HF dir has no tokenizer for text output"
    run "$CLI" generate "$M/stories260K-hf" -n 5 --tokenizer "$M/tok512.bin"; expect_rc 0 "HF with --tokenizer"

    run "$CLI" info "$M/stories260K.bin" --tensors; expect_rc 0 "info"
    grep -q "blk.4.ffn_down.weight" "$TMP/out" && ok || bad "info --tensors lists tensors"

    # eval: --json on a short text, and the same stream given as ids
    awk 'BEGIN{RS="";ORS="\n\n"} NR<=40' "$SHARED/data/tinystories_valid_head.txt" >"$TMP/short.txt"
    run "$CLI" eval "$M/stories260K.bin" --text "$TMP/short.txt" --ctx 64 --json; expect_rc 0 "eval --json"
    grep -q '"ppl": [0-9]' "$TMP/out" && grep -q '"tokens_scored": [0-9]' "$TMP/out" && ok || bad "eval json: $(cat "$TMP/out")"
    ppl_text=$(sed 's/.*"ppl": \([0-9.]*\).*/\1/' "$TMP/out")
    run "$CLI" eval "$M/stories260K.bin" --text "$TMP/short.txt" --ctx 64; expect_rc 0 "eval text"
    grep -q "^ppl $ppl_text over" "$TMP/out" && ok || bad "eval plain output: $(cat "$TMP/out")"
    printf '1 403 407 261 378 432 383 286 261 376\n298 315 421 395 317 426\n' >"$TMP/ids.txt"
    run "$CLI" eval "$M/stories260K-hf" --tokens "$TMP/ids.txt" --ctx 8 --json; expect_rc 0 "eval --tokens"
    grep -q '"tokens_scored": 14' "$TMP/out" && ok || bad "eval --tokens scored: $(cat "$TMP/out")"
    printf '1 2 x\n' >"$TMP/bad.txt"
    run "$CLI" eval "$M/stories260K.bin" --tokens "$TMP/bad.txt"; expect_rc 1 "malformed ids"
    printf '1 2 9999\n' >"$TMP/bad.txt"
    run "$CLI" eval "$M/stories260K.bin" --tokens "$TMP/bad.txt"; expect_rc 1 "id out of range"
    grep -q "9999" "$TMP/err" && ok || bad "id message: $(cat "$TMP/err")"
    : >"$TMP/empty.txt"
    run "$CLI" eval "$M/stories260K.bin" --text "$TMP/empty.txt"; expect_rc 1 "empty text"
    run "$CLI" eval "$M/stories260K.bin"; expect_rc 2 "eval without text"

    # static quantization: quantize, inspect, evaluate the .qnpu through the simulated graph
    Q=$TMP/w4a8h.qnpu
    run "$CLI" quantize "$M/stories260K.bin" --recipe w4a8-hadamard --calib "$SHARED/data/tinystories_train_head.txt" \
        --set calib.num_samples=2 --out "$Q"; expect_rc 0 "quantize"
    [ -s "$Q" ] && ok || bad "quantize wrote nothing"
    run "$CLI" inspect "$Q"; expect_rc 0 "inspect"
    grep -q "^layer4.k.cache  *8 sym " "$TMP/out" && ok || bad "inspect lists k.cache as 8-bit sym"
    grep -q "^lm_head.w  *8 sym" "$TMP/out" && ok || bad "inspect lists lm_head.w"
    run "$CLI" eval "$Q" --text "$TMP/short.txt" --ctx 64 --json; expect_rc 0 "eval .qnpu"
    grep -q '"engine": "sim"' "$TMP/out" && grep -q '"ppl": [0-9]' "$TMP/out" && ok || bad "eval .qnpu json: $(cat "$TMP/out")"
    run "$CLI" eval "$Q" --text "$TMP/short.txt" --engine float; expect_rc 2 "a .qnpu has no float engine"
    run "$CLI" quantize "$M/stories260K.bin" --recipe w4a8 --out "$TMP/x.qnpu"; expect_rc 2 "quantize without text"
    run "$CLI" quantize "$M/stories260K.bin" --recipe nope --calib "$TMP/short.txt" --out "$TMP/x.qnpu"
    expect_rc 1 "unknown preset"
    run "$CLI" quantize "$M/stories260K.bin" --recipe w4a8 --calib "$TMP/short.txt" --out "$TMP/x.qnpu"
    expect_rc 1 "calibration text too short"
    grep -q "blocks" "$TMP/err" && ok || bad "short calibration message: $(cat "$TMP/err")"
    [ ! -e "$TMP/x.qnpu" ] && ok || bad "a failed quantize left a file"
    run "$CLI" report "$M/stories260K.bin" "$Q" --recipe w4a8-hadamard --text "$TMP/short.txt" --ctx 32 \
        --svg "$TMP/r.svg" --json; expect_rc 0 "report"
    grep -q '"points"' "$TMP/out" && grep -q "</svg>" "$TMP/r.svg" && ok || bad "report output"
    head -c 100 "$Q" >"$TMP/trunc.qnpu"
    run "$CLI" inspect "$TMP/trunc.qnpu"; expect_rc 1 "truncated .qnpu"
fi

echo "cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
