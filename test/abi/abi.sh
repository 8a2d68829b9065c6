#!/bin/sh
# abi.sh — the ABI gate (docs/abi.md), with libabigail's abidw and abidiff (abigail-tools).
#
#   sh test/abi/abi.sh dump  LIB OUT.abi    write LIB's ABI (from its DWARF) as XML (make abi-baseline)
#   sh test/abi/abi.sh check BASE.abi LIB   compare LIB with the baseline; exit 1 on a breaking change
#   sh test/abi/abi.sh bits  BASE.abi LIB   print abidiff's exit status for LIB (the gate test's probe)
#
# Only the interface of include/: --headers-dir and --drop-private-types keep the types declared
# in the public header and make every handle opaque, so changes to internal structs never count.
# Locations, paths and numeric type ids are left out or hashed: the XML does not depend on the
# checkout's directory, and a rebuild of the same source gives the same file.
#
# The verdict comes from `abidiff --no-added-syms BASE NEW`, whose exit status is a bit set:
#   1 ABIDIFF_ERROR, 2 ABIDIFF_USAGE_ERROR        -> the tool failed: fail
#   4 ABIDIFF_ABI_CHANGE                          -> an existing function or public type changed
#                                                    (parameter or return type, enumerator
#                                                    value): fail, see below
#   8 ABIDIFF_ABI_INCOMPATIBLE_CHANGE             -> a symbol was removed, the SONAME changed: fail
#   0                                             -> same ABI, or only additions: pass
# --no-added-syms hides added functions (libabigail counts them as ABI_CHANGE); enumerators added
# at the end of an enum are harmless to libabigail and not reported. libabigail sets bit 8 only for
# removed symbols and a new SONAME: a changed parameter type or a renumbered enumerator only sets bit 4, which is why
# the gate fails on 4 too. A change that is compatible after all (reviewed) is accepted by
# regenerating the baseline in the same commit (make abi-baseline) with a CHANGELOG line.
set -eu

dwarf_or_die() {
    if ! readelf -S "$1" 2>/dev/null | grep -q '\.debug_info'; then
        echo "abi: $1 has no DWARF debug information; build it with -g (the default CFLAGS)" >&2
        exit 2
    fi
}

dump() {
    dwarf_or_die "$1"
    abidw --headers-dir "${QNPU_INCLUDE:-include}" --drop-private-types --no-show-locs \
        --no-corpus-path --no-comp-dir-path --type-id-style hash --out-file "$2" "$1"
}

# abidiff --no-added-syms BASE LIB's-dump, report into $TMP/report; sets rc to abidiff's status.
compare() {
    [ -r "$1" ] || { echo "abi: no baseline $1 (make abi-baseline)" >&2; exit 2; }
    TMP=$(mktemp -d)
    trap 'rm -rf "$TMP"' EXIT
    dump "$2" "$TMP/new.abi"
    rc=0
    abidiff --no-added-syms "$1" "$TMP/new.abi" >"$TMP/report" 2>&1 || rc=$?
}

case "${1:-}" in
bits)
    [ $# = 3 ] || { echo "usage: abi.sh bits BASE.abi LIB" >&2; exit 2; }
    compare "$2" "$3"
    echo "$rc"
    ;;
dump)
    [ $# = 3 ] || { echo "usage: abi.sh dump LIB OUT.abi" >&2; exit 2; }
    dump "$2" "$3"
    echo "abi: wrote $3 from $2"
    ;;
check)
    [ $# = 3 ] || { echo "usage: abi.sh check BASE.abi LIB" >&2; exit 2; }
    BASE=$2
    compare "$2" "$3"
    # the additions, for information only
    added=$(abidiff "$BASE" "$TMP/new.abi" 2>/dev/null | grep -c '^  \[A\]' || true)
    if [ $((rc & 3)) != 0 ]; then
        cat "$TMP/report"
        echo "abi: abidiff failed (exit $rc)"
        exit 1
    elif [ $((rc & 12)) != 0 ]; then
        cat "$TMP/report"
        if [ $((rc & 8)) != 0 ]; then
            echo "abi: INCOMPATIBLE change against $BASE (abidiff exit $rc: a symbol removed or a new SONAME)"
        else
            echo "abi: an existing function or public type changed against $BASE (abidiff exit $rc)"
        fi
        echo "abi: see docs/abi.md; a reviewed compatible change is accepted with make abi-baseline"
        exit 1
    fi
    echo "abi: compatible with $BASE ($added functions added)"
    ;;
*)
    echo "usage: abi.sh dump LIB OUT.abi | abi.sh check BASE.abi LIB | abi.sh bits BASE.abi LIB" >&2
    exit 2
    ;;
esac
