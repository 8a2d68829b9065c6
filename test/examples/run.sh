#!/bin/sh
# run.sh BUILD_DIR — run every examples/NN_*.c program built in BUILD_DIR/examples/ (make
# check-examples builds them), each on the shared model and text in $QNPU_SHARED (default
# ../shared). An example that exits 77 is skipped (the shared files are missing); any other
# non-zero exit is a failure, and its output is shown.
set -u
B=$1
SHARED=${QNPU_SHARED:-../shared}
MODEL=$SHARED/models/stories260K.bin
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
pass=0 skip=0 fail=0

run() {
    name=$1
    shift
    t0=$(date +%s%N)
    timeout 300 "$@" >"$DIR/$name.log" 2>&1
    rc=$?
    ms=$((($(date +%s%N) - t0) / 1000000))
    case $rc in
    0) pass=$((pass + 1)); printf 'PASS %-20s %d.%03d s\n' "$name" $((ms / 1000)) $((ms % 1000)) ;;
    77) skip=$((skip + 1)); printf 'SKIP %-20s %s\n' "$name" "$(tail -n 1 "$DIR/$name.log")" ;;
    *) fail=$((fail + 1)); printf 'FAIL %-20s exit %s\n' "$name" "$rc"; sed 's/^/    /' "$DIR/$name.log" ;;
    esac
}

if [ -f "$MODEL" ]; then
    run 01_generate "$B/examples/01_generate" "$MODEL"
else
    run 01_generate "$B/examples/01_generate"
fi
run 02_quantize "$B/examples/02_quantize" "$SHARED" "$DIR/w4a8h.qnpu"
if [ -f "$DIR/w4a8h.qnpu" ]; then
    run 03_session "$B/examples/03_session" "$DIR/w4a8h.qnpu" "Once upon a time" 64
else
    skip=$((skip + 1)); printf 'SKIP %-20s %s\n' 03_session "(no .qnpu from 02_quantize)"
fi
run 04_progress_cancel "$B/examples/04_progress_cancel" "$SHARED" "$DIR/cancelled.qnpu"
run 05_allocator "$B/examples/05_allocator" "$MODEL"

echo "examples: $pass passed, $skip skipped, $fail failed"
[ "$fail" -eq 0 ]
