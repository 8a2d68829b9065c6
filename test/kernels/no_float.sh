#!/bin/sh
# no_float.sh — audit that the integer reference kernels use no floating point.
#
#   sh test/kernels/no_float.sh [BUILD_DIR]          (default BUILD_DIR: build)
#
# Disassembles $B/obj/static/lib/kernels/int_ops_ref.o (lib/kernels/int_ops_ref.c plus the static
# inline helpers of int_ops.h it inlines) and fails on
#   - x87 instructions (every mnemonic starting with f: fld, fstp, fadd, fild, fnstcw, ...);
#   - SSE/AVX floating-point arithmetic, comparisons and conversions: cvt*, vf* (FMA, fixupimm,
#     fpclass), {add,sub,mul,div,min,max,sqrt,rcp,rsqrt,round,hadd,hsub,addsub,dp,cmp*,comi,ucomi}
#     on ss/sd/ps/pd, ldmxcsr/stmxcsr;
#   - calls to anything outside a short list of integer helpers (no libm, no soft-float
#     __float*/__fix*/__*df3 helpers).
# Pure data moves and bitwise operations on xmm/ymm registers (movaps, movdqa, pxor, xorps,
# shufps, ...) are allowed: compilers use them for integer data, and they compute nothing.
# Exit status: 0 clean (or objdump missing: skipped with a message), 1 floating point found or
# the object is missing.
B=${1:-build}
OBJ=$B/obj/static/lib/kernels/int_ops_ref.o
if [ ! -f "$OBJ" ]; then
    echo "no_float: $OBJ not found (build the library into $B first)" >&2
    exit 1
fi
if ! command -v objdump >/dev/null 2>&1 || ! command -v nm >/dev/null 2>&1; then
    echo "no_float: objdump/nm not found, audit skipped" >&2
    exit 0
fi
status=0

# 1. instructions
bad=$(objdump -d --no-show-raw-insn "$OBJ" | awk -F '\t' '
    NF >= 2 && $1 ~ /^ *[0-9a-f]+:$/ {
        n = split($2, w, /[ \t]+/); m = w[1]; i = 1
        while ((m ~ /^(rep|repz|repnz|repe|repne|lock|notrack|bnd|data16|addr32|cs|ds|es|ss)$/) && i < n) { i++; m = w[i] }
        if (m ~ /^f/ ||
            m ~ /^v?cvt/ || m ~ /^vf/ ||
            m ~ /^v?(add|sub|mul|div|min|max|sqrt|rcp|rsqrt|round|hadd|hsub|addsub|dp|cmp[a-z]*|u?comi)(ss|sd|ps|pd|sh|ph)$/ ||
            m ~ /^v?(ld|st)mxcsr$/)
            print "  " $0
    }')
if [ -n "$bad" ]; then
    echo "no_float: floating-point instructions in $OBJ:" >&2
    echo "$bad" >&2
    status=1
fi

# 2. external calls: only integer helpers (and sanitizer/runtime hooks) may be referenced
ext=$(nm -u "$OBJ" | awk '{ print $NF }' | grep -v -E \
    '^(qnpu__[a-z0-9_]+|memcpy|memset|memmove|__stack_chk_fail|_GLOBAL_OFFSET_TABLE_|__(u)?(div|mod)ti3|__asan_.*|__ubsan_.*|__sanitizer_.*)$')
if [ -n "$ext" ]; then
    echo "no_float: $OBJ references symbols outside the integer whitelist:" >&2
    echo "$ext" | sed 's/^/  /' >&2
    status=1
fi

if [ $status -eq 0 ]; then
    echo "no_float: $OBJ: no floating-point instructions, no float helpers"
fi
exit $status
