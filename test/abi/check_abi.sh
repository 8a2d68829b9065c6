#!/bin/sh
# check_abi.sh BUILD MAP SONAME — the exported symbols are exactly the version script's, each
# versioned; the SONAME is right; internal helpers stay hidden; the header compiles as C11
# -pedantic and as C++, and declares exactly the mapped functions.
set -eu
B=$1 MAP=$2 SONAME=$3
LIB=$B/$SONAME
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

sed -n 's/^ *\(qnpu_[a-z0-9_]*\);$/\1/p' "$MAP" | sort >"$TMP/map"
nm -D --defined-only "$LIB" | awk '$2 == "T" { print $3 }' >"$TMP/nm"
sed 's/@.*//' "$TMP/nm" | sort >"$TMP/exported"
if diff -u "$TMP/map" "$TMP/exported" >"$TMP/diff"; then ok; else bad "exported symbols differ from $MAP:"; cat "$TMP/diff"; fi
if grep -qv '@@QNPU_[0-9]*\.[0-9]*$' "$TMP/nm"; then bad "unversioned symbols: $(grep -v '@@QNPU_' "$TMP/nm")"; else ok; fi
if nm -D "$LIB" | grep -q 'qnpu__'; then bad "internal qnpu__ symbols are exported"; else ok; fi
objdump -p "$LIB" | grep -q "SONAME *$SONAME\$" && ok || bad "SONAME is not $SONAME"

grep -o '^QNPU_API [^(]*(' include/quantnpu.h | sed 's/.*[ *]\(qnpu_[a-z0-9_]*\)(/\1/' | sort >"$TMP/header"
if diff -u "$TMP/map" "$TMP/header" >"$TMP/diff"; then ok; else bad "header functions differ from $MAP:"; cat "$TMP/diff"; fi

printf '#include "quantnpu.h"\nint main(void) { return qnpu_version_number() == QNPU_VERSION_NUMBER ? 0 : 1; }\n' >"$TMP/c.c"
${CC:-cc} -std=c11 -pedantic -Wall -Wextra -Werror -Iinclude -fsyntax-only "$TMP/c.c" && ok || bad "header is not clean C11 -pedantic"
${CXX:-g++} -x c++ -std=c++11 -pedantic -Wall -Wextra -Werror -Iinclude -fsyntax-only "$TMP/c.c" && ok || bad "header does not compile as C++"

echo "abi: $pass passed, $fail failed"
[ "$fail" = 0 ]
