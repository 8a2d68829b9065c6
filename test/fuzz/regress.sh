#!/bin/sh
# regress.sh WORKDIR NAME... — run every seed (test/fuzz/corpus/NAME) and every input that once
# crashed the library (test/fuzz/regress/NAME) through harness WORKDIR/fuzz_NAME, once each.
# Exit status 1 if any of them crashes, leaks or trips a sanitizer.
set -u
work=$1
shift
fail=0
for name in "$@"; do
    files=$(find "test/fuzz/corpus/$name" "test/fuzz/regress/$name" -type f 2>/dev/null | sort)
    [ -n "$files" ] || continue
    n=$(echo "$files" | wc -l)
    # shellcheck disable=SC2086 # file names are ours, without spaces
    if "$work/fuzz_$name" -timeout=25 -rss_limit_mb=2048 $files > "$work/regress-$name.log" 2>&1; then
        echo "fuzz-regress $name: $n inputs ok"
    else
        echo "fuzz-regress $name: FAILED (see $work/regress-$name.log)"
        grep -n -A30 'ERROR: \|==ERROR\|runtime error\|deadly signal\|fuzz harness:' "$work/regress-$name.log" | head -n 60
        fail=1
    fi
done
exit $fail
