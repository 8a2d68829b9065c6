#!/bin/sh
# check_abi_gate.sh BUILD BASE.abi — the ABI gate (test/abi/abi.sh) catches breaking changes.
#
# In a scratch copy of the tree (the working tree is never touched), the shared library is built
# five times and compared with the committed baseline:
#   unchanged                                  -> the gate passes
#   a symbol removed from the version script   -> abidiff sets ABIDIFF_ABI_INCOMPATIBLE_CHANGE (8)
#   a parameter type changed (int64_t* -> int32_t*) -> ABIDIFF_ABI_CHANGE (4): the gate fails
#   an enumerator renumbered                   -> ABIDIFF_ABI_CHANGE (4): the gate fails
#   a function added (header, source, map)     -> the gate passes
# To stay fast, the scratch copy starts from BUILD's shared-library objects without their
# dependency files, so make recompiles only the source file a case touches (at -O0) and relinks;
# the calling make's variables (MAKEFLAGS) are not passed on.
set -eu
B=$1 BASE=$2
HERE=$(pwd)
GATE="$HERE/test/abi/abi.sh"
BASE_ABS=$(cd "$(dirname "$BASE")" && pwd)/$(basename "$BASE")
VERSION=$(sed -n 's/^#define QNPU_VERSION_STRING "\(.*\)"/\1/p' include/quantnpu.h)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
S=$TMP/src
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

mkdir -p "$S"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z -co --exclude-standard | rsync -a --from0 --ignore-missing-args --files-from=- ./ "$S/"
else
    rsync -a --exclude=/build/ --exclude=__pycache__ ./ "$S/"
fi
[ -d "$B/obj/dynamic" ] || { echo "check_abi_gate: no objects in $B/obj/dynamic (build the library first)"; exit 1; }
mkdir -p "$S/b/obj"
cp -a "$B/obj/dynamic" "$S/b/obj/"
[ -d "$B/gen" ] && cp -a "$B/gen" "$S/b/"
find "$S/b" -name '*.d' -delete

LIB=$S/b/libquantnpu.so.$VERSION
build() {
    (cd "$S" && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s B=b CFLAGS="-O0 -g" "b/libquantnpu.so.$VERSION" >"$TMP/make.log" 2>&1) \
        || { cat "$TMP/make.log"; return 1; }
}
bits() { (cd "$S" && sh "$GATE" bits "$BASE_ABS" "$LIB"); }
gate() { (cd "$S" && sh "$GATE" check "$BASE_ABS" "$LIB" >"$TMP/gate.log" 2>&1); }
# edit FILE SED-EXPRESSION: apply it and make sure it changed the file
edit() {
    cp "$S/$1" "$TMP/before"
    sed -i "$2" "$S/$1"
    ! cmp -s "$S/$1" "$TMP/before"
}
keep() { cp "$S/$1" "$TMP/orig.$(echo "$1" | tr / _)"; }
restore() { cp "$TMP/orig.$(echo "$1" | tr / _)" "$S/$1"; touch "$S/$1"; }

# 1. unchanged
if build; then
    if gate; then ok; else bad "the unchanged library fails the gate:"; cat "$TMP/gate.log"; fi
else
    bad "the unchanged scratch build failed"
fi

# 2. a removed symbol
keep lib/libquantnpu.map
if edit lib/libquantnpu.map '/^ *qnpu_version_string;/d' && build; then
    rc=$(bits)
    [ $((rc & 8)) = 8 ] && ok || bad "removed qnpu_version_string: abidiff exit $rc, the incompatible bit (8) is not set"
    gate && bad "removed qnpu_version_string: the gate passes" || ok
else
    bad "could not remove qnpu_version_string from the map and rebuild"
fi
restore lib/libquantnpu.map

# 3. a parameter's type
keep include/quantnpu.h
keep lib/model/model.c
p='s/qnpu_model_get_dim(const qnpu_model \*m, qnpu_model_dim which, int64_t \*out)/qnpu_model_get_dim(const qnpu_model *m, qnpu_model_dim which, int32_t *out)/'
if edit include/quantnpu.h "$p" && edit lib/model/model.c "$p" && build; then
    rc=$(bits)
    [ $((rc & 4)) = 4 ] && ok || bad "int32_t *out in qnpu_model_get_dim: abidiff exit $rc, the ABI-change bit (4) is not set"
    gate && bad "int32_t *out in qnpu_model_get_dim: the gate passes" || ok
else
    bad "could not change qnpu_model_get_dim's parameter and rebuild"
fi
restore include/quantnpu.h
restore lib/model/model.c

# 4. a renumbered enumerator (error.c's qnpu_status_string takes a qnpu_status)
if edit include/quantnpu.h 's/QNPU_ERR_RECIPE = 10,/QNPU_ERR_RECIPE = 12,/' && touch "$S/lib/common/error.c" && build; then
    rc=$(bits)
    [ $((rc & 4)) = 4 ] && ok || bad "QNPU_ERR_RECIPE renumbered: abidiff exit $rc, the ABI-change bit (4) is not set"
    gate && bad "QNPU_ERR_RECIPE renumbered: the gate passes" || ok
else
    bad "could not renumber QNPU_ERR_RECIPE and rebuild"
fi
restore include/quantnpu.h
touch "$S/lib/common/error.c" "$S/lib/model/model.c"

# 5. an added function
printf '#include "quantnpu.h"\nunsigned qnpu_abi_gate_probe(void) { return 7u; }\n' >"$S/lib/common/abi_gate_probe.c"
if edit include/quantnpu.h 's/^QNPU_API const char \*qnpu_version_string(void);/&\nQNPU_API unsigned qnpu_abi_gate_probe(void);/' &&
   edit lib/libquantnpu.map 's/^\( *\)qnpu_version_string;/&\n\1qnpu_abi_gate_probe;/' && build; then
    if nm -D --defined-only "$LIB" | grep -q ' qnpu_abi_gate_probe@@'; then ok; else bad "the probe function is not exported"; fi
    if gate; then ok; else bad "an added function fails the gate:"; cat "$TMP/gate.log"; fi
else
    bad "could not add a function and rebuild"
fi

echo "abi gate: $pass passed, $fail failed"
[ "$fail" = 0 ]
