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
    # an HF directory with a byte-level BPE tokenizer.json (256 byte tokens and 3 merges, written
    # here; its ids do not match the model's, only the plumbing is tested)
    hf=$(cd "$M/stories260K-hf" && pwd)
    mkdir "$TMP/hf" && ln -s "$hf/config.json" "$hf/model.safetensors" "$TMP/hf/"
    python3 - "$TMP/hf/tokenizer.json" <<'PYEOF'
import json, sys
keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
alpha, extra = {}, 0
for b in range(256):
    if b in keep:
        alpha[b] = chr(b)
    else:
        alpha[b] = chr(256 + extra)
        extra += 1
bl = lambda s: "".join(alpha[b] for b in s.encode())
vocab = {alpha[b]: b for b in range(256)}
merges = [(" ", "t"), ("h", "e"), (" t", "he")]
for i, (a, b) in enumerate(merges):
    vocab[bl(a + b)] = 256 + i
json.dump({"added_tokens": [{"id": 300, "content": "<|eot|>", "special": True}],
           "normalizer": None, "decoder": {"type": "ByteLevel"},
           "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
           "model": {"type": "BPE", "vocab": vocab, "merges": [bl(a) + " " + bl(b) for a, b in merges]}},
          open(sys.argv[1], "w"), ensure_ascii=False)
PYEOF
    run "$CLI" generate "$TMP/hf" --prompt "Once upon the time" -n 2 --temp 0; expect_rc 0 "HF dir with tokenizer.json"
    grep -q "^Once upon the time" "$TMP/out" && ok || bad "tokenizer.json prompt echo: $(cat "$TMP/out")"
    run "$CLI" generate "$M/stories260K.bin" --tokenizer "$TMP/hf/tokenizer.json" --prompt " the" -n 1 --temp 0 --ids
    expect_rc 0 "--tokenizer tokenizer.json"
    echo '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a zz"]}}' > "$TMP/bad.json"
    run "$CLI" generate "$M/stories260K.bin" --tokenizer "$TMP/bad.json" -n 1; expect_rc 1 "bad tokenizer.json"
    grep -q "model.merges\[0\]" "$TMP/err" && ok || bad "bad tokenizer.json message: $(cat "$TMP/err")"

    run "$CLI" info "$M/stories260K.bin" --tensors; expect_rc 0 "info"
    grep -q "blk.4.ffn_down.weight" "$TMP/out" && ok || bad "info --tensors lists tensors"

    # eval: --json on a short text, and the same stream given as ids
    awk 'BEGIN{RS="";ORS="\n\n"} NR<=40' "$SHARED/data/tinystories_valid_head.txt" >"$TMP/short.txt"
    run "$CLI" eval "$M/stories260K.bin" --text "$TMP/short.txt" --ctx 64 --json; expect_rc 0 "eval --json"
    grep -q '"ppl": [0-9]' "$TMP/out" && grep -q '"tokens_scored": [0-9]' "$TMP/out" && ok || bad "eval json: $(cat "$TMP/out")"
    ppl_text=$(sed 's/.*"ppl": \([0-9.]*\).*/\1/' "$TMP/out")
    run "$CLI" eval "$M/stories260K.bin" --text "$TMP/short.txt" --ctx 64; expect_rc 0 "eval text"
    grep -q "^ppl $ppl_text over" "$TMP/out" && ok || bad "eval plain output: $(cat "$TMP/out")"
    # the text is streamed: 100-byte chunks (every paragraph longer than one) give the same result
    scored_text=$(grep -o 'over [0-9]*' "$TMP/out")
    run env QUANTNPU_EVAL_CHUNK=100 "$CLI" eval "$M/stories260K.bin" --text "$TMP/short.txt" --ctx 64
    expect_rc 0 "eval text in small chunks"
    grep -q "^ppl $ppl_text $scored_text " "$TMP/out" && ok || bad "eval streamed in chunks: $(cat "$TMP/out")"
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
    # QNN / AIMET encodings of the .qnpu (docs/formats.md): both schemas, offset = -z / -2^(b-1)
    E=$TMP/w4a8h.encodings
    run "$CLI" export "$Q" --format encodings -o "$E"; expect_rc 0 "export encodings 0.6.1"
    grep -q '^  "version": "0.6.1",$' "$E" && ok || bad "encodings version: $(head -c 200 "$E")"
    grep -A1 '^    "layer4.k.cache": \[$' "$E" | grep -q '{"bitwidth": 8, "dtype": "int", "is_symmetric": "True", "scale": [0-9.e-]*, "offset": -128, ' \
        && ok || bad "encodings: layer4.k.cache is not int8 symmetric with offset -128"
    grep -A1 '^    "layer2.gate.sig": \[$' "$E" | grep -q '"scale": 1.52587891e-05, "offset": 0, "min": 0, "max": 0.999984741}' \
        && ok || bad "encodings: the sigmoid output is not 2^-16 / 0"
    grep -A1 '^    "layer0.q.w": \[$' "$E" | grep -q '{"bitwidth": 4, "dtype": "int", "is_symmetric": "True", .*"offset": -8, ' \
        && ok || bad "encodings: layer0.q.w is not W4 per channel"
    run "$CLI" export "$Q" --format encodings --set export.encodings_version=1.0.0 -o "$E.1"; expect_rc 0 "export encodings 1.0.0"
    grep -q '^    {"name": "lm_head.w", "enc_type": "PER_CHANNEL", "dtype": "INT", "bw": 8, "is_sym": true, "scale": \[' "$E.1" \
        && grep -q '^  "excluded_layers": \[\]$' "$E.1" && ok || bad "encodings 1.0.0: $(head -c 300 "$E.1")"
    if command -v python3 >/dev/null 2>&1; then
        python3 -m json.tool "$E" >/dev/null && python3 -m json.tool "$E.1" >/dev/null && ok || bad "encodings: not valid JSON"
    fi
    run "$CLI" export "$Q" --format encodings --set export.encodings_version=2.0.0 -o "$E.2"; expect_rc 1 "encodings 2.0.0"
    [ ! -e "$E.2" ] && grep -q "export.encodings_version" "$TMP/err" && ok || bad "encodings 2.0.0: $(cat "$TMP/err")"
    # ONNX (docs/export.md): the QDQ graph in both flavours, the float graph, .qnpu; bad arguments
    O=$TMP/w4a8h
    run "$CLI" export "$Q" --format onnx --seq-len 16 -o "$O.onnx"; expect_rc 0 "export onnx"
    grep -qa "QuantizeLinear" "$O.onnx" && grep -qa "layer4.k.cache.zero_point" "$O.onnx" && \
        ! grep -qa "com.microsoft" "$O.onnx" && ok || bad "export onnx: not a standard-flavour QDQ graph"
    run "$CLI" export "$Q" --format onnx --seq-len 16 -o "$O.2.onnx"; expect_rc 0 "export onnx again"
    cmp -s "$O.onnx" "$O.2.onnx" && ok || bad "export onnx: two runs differ"
    run "$CLI" export "$Q" --format onnx --flavor compat --seq-len 16 -o "$O.compat.onnx"; expect_rc 0 "export onnx compat"
    grep -qa "com.microsoft" "$O.compat.onnx" && ok || bad "export onnx compat: no com.microsoft opset"
    run "$CLI" export "$Q" --format onnx-float --set export.qnn.linear_as=gemm --seq-len 16 -o "$O.float.onnx"
    expect_rc 0 "export onnx-float"
    grep -qa "Gemm" "$O.float.onnx" && ! grep -qa "QuantizeLinear" "$O.float.onnx" && ok || bad "export onnx-float"
    if /usr/bin/python3 -c "import onnx" 2>/dev/null; then
        /usr/bin/python3 -c 'import onnx, sys
for f in sys.argv[1:]: onnx.checker.check_model(onnx.load(f), full_check=True)' "$O.compat.onnx" "$O.float.onnx" \
            && ok || bad "onnx.checker rejects the compat or float graph"
    fi
    run "$CLI" export "$Q" --format qnpu -o "$O.qnpu"; expect_rc 0 "export qnpu"
    cmp -s "$Q" "$O.qnpu" && ok || bad "export qnpu: not the bytes of the .qnpu"
    run "$CLI" export "$Q" --format tflite -o "$O.x"; expect_rc 2 "export: unknown format"
    run "$CLI" export "$Q" --format onnx; expect_rc 2 "export: no -o"
    run "$CLI" export "$Q" --format onnx --flavor newest -o "$O.x"; expect_rc 1 "export: bad flavour"
    run "$CLI" export "$Q" --format onnx --seq-len 1 --past-len 16 -o "$O.decode.onnx"; expect_rc 0 "export --past-len"
    grep -qa "layer4.k.past" "$O.decode.onnx" && ok || bad "export --past-len: no K/V inputs"
    run "$CLI" export "$Q" --format onnx --seq-len 0 -o "$O.x"; expect_rc 1 "export: bad --seq-len"
    [ ! -e "$O.x" ] && ok || bad "a failed export left a file"
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

    # the integer engine: eval (within 0.5 % of the simulated graph), generate, compare, bench
    run "$CLI" eval "$Q" --text "$TMP/short.txt" --ctx 64 --json --engine sim; expect_rc 0 "eval sim"
    ppl_sim=$(sed 's/.*"ppl": \([0-9.]*\).*/\1/' "$TMP/out")
    run "$CLI" eval "$Q" --text "$TMP/short.txt" --ctx 64 --json --engine int; expect_rc 0 "eval int"
    grep -q '"engine": "int"' "$TMP/out" && ok || bad "eval int json: $(cat "$TMP/out")"
    ppl_int=$(sed 's/.*"ppl": \([0-9.]*\).*/\1/' "$TMP/out")
    awk -v a="$ppl_int" -v b="$ppl_sim" 'BEGIN { r = a / b; exit !(r > 0.995 && r < 1.005) }' && ok \
        || bad "integer engine ppl $ppl_int vs simulated $ppl_sim"
    run "$CLI" eval "$Q" --text "$TMP/short.txt" --engine gpu; expect_rc 2 "unknown engine"
    run "$CLI" generate "$Q" -n 24 --ids --kernels ref; expect_rc 0 "generate .qnpu (reference kernels)"
    cp "$TMP/out" "$TMP/ids_ref"
    run "$CLI" generate "$Q" -n 24 --ids; expect_rc 0 "generate .qnpu"
    cmp -s "$TMP/out" "$TMP/ids_ref" && ok || bad "generate .qnpu: SIMD and reference kernels differ"
    [ "$(wc -w <"$TMP/out")" = 24 ] && ok || bad "generate .qnpu: $(cat "$TMP/out")"
    run "$CLI" generate "$Q" -n 20; expect_rc 0 "generate .qnpu text"
    grep -q "^Once upon a time" "$TMP/out" && ok || bad "generate .qnpu text: $(cat "$TMP/out")"
    run "$CLI" generate "$Q" -n 5 --kernels sse9; expect_rc 1 "bad --kernels"
    run "$CLI" compare "$Q" --text "$TMP/short.txt" --ctx 64 --windows 2 --json; expect_rc 0 "compare"
    grep -q '"name": "layer4.softmax.out"' "$TMP/out" && grep -q '"top1_agreement": 0\.[89]' "$TMP/out" && ok \
        || bad "compare json: $(cat "$TMP/out")"
    run "$CLI" compare "$M/stories260K.bin" --text "$TMP/short.txt"; expect_rc 2 "compare needs a .qnpu"
    run "$CLI" bench "$Q" --ctx 32 -n 4 --reps 1; expect_rc 0 "bench"
    grep -q "^prefill 32 tokens: .* tokens/s" "$TMP/out" && grep -q "^decode 4 tokens" "$TMP/out" && ok \
        || bad "bench output: $(cat "$TMP/out")"
    # calibration from token ids, with no tokenizer needed
    awk 'BEGIN { srand(3); for (i = 0; i < 1200; i++) printf "%d ", int(rand() * 512); print "" }' >"$TMP/rand.txt"
    run "$CLI" quantize "$M/stories260K.bin" --recipe w8a8 --tokens "$TMP/rand.txt" --set calib.num_samples=2 \
        --set calib.first_block=0 --out "$TMP/ids.qnpu"; expect_rc 0 "quantize --tokens"
    run "$CLI" eval "$TMP/ids.qnpu" --tokens "$TMP/rand.txt" --ctx 64 --engine int; expect_rc 0 "eval ids.qnpu"
    run "$CLI" quantize "$M/stories260K.bin" --recipe w8a8 --tokens "$TMP/rand.txt" --calib "$TMP/short.txt" \
        --out "$TMP/ids2.qnpu"; expect_rc 2 "quantize --tokens and --calib"
    # the two-stage pipeline (--train): a short stage 1, stage 2, then the integer engine
    run "$CLI" quantize "$M/stories260K.bin" --recipe w4a8-hadamard --train --set optim.steps=2 --set optim.batch=1 \
        --set calib.num_samples=2 --set calib.seq_len=64 --calib "$SHARED/data/tinystories_train_head.txt" \
        --out "$TMP/train.qnpu"; expect_rc 0 "quantize --train"
    [ -s "$TMP/train.qnpu" ] && ok || bad "quantize --train wrote nothing"
    run "$CLI" eval "$TMP/train.qnpu" --text "$TMP/short.txt" --ctx 64 --engine int; expect_rc 0 "eval train.qnpu"
fi

# the learned presets: quantnpu-w4a8 trains (optim.train: true) and logs step and loss when stderr
# is not a TTY; optim.train=false with the same recipe is plain calibration
if [ -f "$M/stories260K.bin" ]; then
    TINY="--set optim.batch=1 --set calib.num_samples=2 --set calib.seq_len=64 --set calib.first_block=0"
    awk 'BEGIN{RS="<[|]endoftext[|]>\n"; ORS="<|endoftext|>\n"} NR<=12' "$SHARED/data/tinystories_train_head.txt" \
        >"$TMP/stories.txt"
    run "$CLI" recipe; expect_rc 0 "recipe list"
    grep -qx "quantnpu-w4a8" "$TMP/out" && grep -qx "quantnpu-w4a4-mixed" "$TMP/out" && ok \
        || bad "recipe list lacks the quantnpu presets: $(cat "$TMP/out")"
    run "$CLI" recipe quantnpu-w4a4-mixed; expect_rc 0 "recipe show quantnpu-w4a4-mixed"
    grep -q "^  train: true" "$TMP/out" && grep -q "^  mode: act_4to8" "$TMP/out" && ok || bad "quantnpu-w4a4-mixed text"
    # shellcheck disable=SC2086
    run "$CLI" quantize "$M/stories260K.bin" --recipe quantnpu-w4a8 --set optim.steps=2 $TINY --threads 1 \
        --calib "$TMP/stories.txt" --out "$TMP/qw4a8.qnpu"; expect_rc 0 "quantize --recipe quantnpu-w4a8"
    [ -s "$TMP/qw4a8.qnpu" ] && ok || bad "quantize quantnpu-w4a8 wrote nothing"
    [ "$(grep -c '^train  [12]/2  loss [0-9]*\.[0-9][0-9][0-9][0-9]$' "$TMP/err")" = 2 ] && ok \
        || bad "quantnpu-w4a8 progress lines: $(cat "$TMP/err")"
    grep -q "$(printf '\r')" "$TMP/err" && bad "a bar was drawn into a file: $(cat "$TMP/err")" || ok
    run "$CLI" eval "$TMP/qw4a8.qnpu" --text "$TMP/short.txt" --ctx 64 --engine int; expect_rc 0 "eval qw4a8.qnpu"
    # a line per 10 % of a longer run: steps 1, 2, 4, ..., 20
    # shellcheck disable=SC2086
    run "$CLI" quantize "$M/stories260K.bin" --recipe quantnpu-w4a8 --set optim.steps=20 $TINY --threads 1 \
        --calib "$TMP/stories.txt" --out "$TMP/q20.qnpu"; expect_rc 0 "quantize quantnpu-w4a8, 20 steps"
    [ "$(grep -c '^train  ' "$TMP/err")" = 11 ] && grep -q '^train  20/20  loss ' "$TMP/err" && ok \
        || bad "20-step progress lines: $(cat "$TMP/err")"
    # optim.train=false: the calibrator, no training and no loss
    # shellcheck disable=SC2086
    run "$CLI" quantize "$M/stories260K.bin" --recipe quantnpu-w4a8 --set optim.train=false --set optim.steps=2 $TINY \
        --threads 1 --calib "$TMP/stories.txt" --out "$TMP/static.qnpu"; expect_rc 0 "quantnpu-w4a8 optim.train=false"
    [ -s "$TMP/static.qnpu" ] && ! grep -q "loss" "$TMP/err" && ok || bad "optim.train=false trained: $(cat "$TMP/err")"
    cmp -s "$TMP/static.qnpu" "$TMP/qw4a8.qnpu" && bad "optim.train=false gave the trained model" || ok
    # ... and --train turns it back on
    # shellcheck disable=SC2086
    run "$CLI" quantize "$M/stories260K.bin" --recipe quantnpu-w4a8 --set optim.train=false --train --set optim.steps=2 \
        $TINY --threads 1 --calib "$TMP/stories.txt" --out "$TMP/again.qnpu"; expect_rc 0 "--train over optim.train=false"
    cmp -s "$TMP/again.qnpu" "$TMP/qw4a8.qnpu" && ok || bad "--train: not the model of quantnpu-w4a8"
    # mixed precision (act_4to8 in quantnpu-w4a4-mixed): the report on stderr when bits changed; none
    # for the default down_8to16 at p = 1 of quantnpu-w4a8 above
    grep -q "mixed precision" "$TMP/err" && bad "a mixed-precision report without a change: $(cat "$TMP/err")" || ok
    # shellcheck disable=SC2086
    run "$CLI" quantize "$M/stories260K.bin" --recipe quantnpu-w4a4-mixed --set optim.steps=1 $TINY --threads 1 \
        --set mixed.num_samples=2 --calib "$TMP/stories.txt" --out "$TMP/mixed.qnpu"; expect_rc 0 "quantnpu-w4a4-mixed"
    grep -q '^quantnpu: mixed precision changed [1-9][0-9]* linear inputs:$' "$TMP/err" && \
        grep -q '"to": 8}' "$TMP/err" && grep -q '"A8xW4"' "$TMP/err" && ok \
        || bad "quantnpu-w4a4-mixed: no mixed-precision report: $(cat "$TMP/err")"
fi

echo "cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
