#!/bin/sh
# run.sh BIN NAME SECONDS WORKDIR [RUNS] — one libFuzzer campaign of harness NAME (docs/fuzzing.md).
#
# It stops after SECONDS, or after RUNS executions if RUNS is given (SECONDS 0: no time limit).
# The seeds in test/fuzz/corpus/NAME are read, never written; new inputs go to
# WORKDIR/corpus/NAME (kept between runs, so campaigns add up), crashes to WORKDIR/crashes/.
# Prints one summary line; the whole libFuzzer output is in WORKDIR/NAME.log, and each run is
# appended to WORKDIR/stats.txt. Exit status 1 if the harness found a crash, leak or timeout.
set -u
bin=$1 name=$2 secs=$3 work=$4 runs=${5:-}
seeds=test/fuzz/corpus/$name
corpus=$work/corpus/$name
mkdir -p "$corpus" "$work/crashes"
set -- -max_total_time="$secs" -timeout=25 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/crashes/$name-"
[ -n "$runs" ] && set -- "$@" -runs="$runs"
[ -f "test/fuzz/$name.dict" ] && set -- "$@" -dict="test/fuzz/$name.dict"
[ -d "$seeds" ] && set -- "$@" "$corpus" "$seeds" || set -- "$@" "$corpus"
log=$work/$name.log
start=$(date +%s)
"$bin" "$@" > "$log" 2>&1
rc=$?
end=$(date +%s)
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
execs=${execs:-0}
t=$((end - start))
[ "$t" -gt 0 ] || t=1
line="fuzz-$name: $execs executions in $t s ($((execs / t)) exec/s), corpus $(ls "$corpus" | wc -l) files, exit $rc"
echo "$line"
echo "$(date -u '+%Y-%m-%dT%H:%M:%SZ') $line; $bin $*" >> "$work/stats.txt"
if [ "$rc" -ne 0 ]; then
    grep -n -A40 'ERROR: \|==ERROR\|runtime error\|deadly signal\|fuzz harness:' "$log" | head -n 80
    ls "$work/crashes" | sed 's/^/  artifact: /'
    exit 1
fi
