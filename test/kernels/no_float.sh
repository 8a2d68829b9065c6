#!/bin/sh
# no_float.sh — audit that the integer engine's run-time code uses no floating point.
#
#   sh test/kernels/no_float.sh [BUILD_DIR]          (default BUILD_DIR: build)
#
# Disassembles (objdump -dr) what the decoder loop runs, from $B/obj/static/lib/:
#   - engine/decoder.o and kernels/int_ops_ref.o, whole (with the static inline helpers of
#     int_ops.h / int_gemm.h they inline);
#   - the integer GEMM objects kernels/int_gemm_{ref,avx2,vnni}.o, all but the load-time helper
#     qnpu__igemm_multipliers (which turns float scales into multipliers);
#   - kernels/requant.o, all but qnpu__quantize_multiplier (load time, double by design);
#   - qnpu__hadamard_apply_i64 of rotate/hadamard.o and qnpu__fwht_i64 of kernels/fwht.o (the
#     integer online R4);
# and fails on
#   - x87 instructions (every mnemonic starting with f: fld, fstp, fadd, fild, fnstcw, ...);
#   - SSE/AVX floating-point arithmetic, comparisons and conversions: cvt*, vf* (FMA, fixupimm,
#     fpclass), {add,sub,mul,div,min,max,sqrt,rcp,rsqrt,round,hadd,hsub,addsub,dp,cmp*,comi,ucomi}
#     on ss/sd/ps/pd, ldmxcsr/stmxcsr;
#   - calls or references to anything outside a short list of integer helpers (no libm, no
#     soft-float __float*/__fix*/__*df3 helpers).
# Pure data moves and bitwise operations on xmm/ymm/zmm registers (movaps, movdqa, pxor, xorps,
# shufps, ...) are allowed: compilers use them for integer data, and they compute nothing.
# Exit status: 0 clean (or objdump missing: skipped with a message), 1 floating point found or
# an object missing.
B=${1:-build}
O=$B/obj/static/lib
if ! command -v objdump >/dev/null 2>&1; then
    echo "no_float: objdump not found, audit skipped" >&2
    exit 0
fi
status=0

# audit OBJ MODE FUNCS: MODE "all" (FUNCS ignored), "only" (just FUNCS), "except" (all but FUNCS);
# FUNCS is a space-separated list of symbol names.
audit() {
    obj=$O/$1
    if [ ! -f "$obj" ]; then
        echo "no_float: $obj not found (build the library into $B first)" >&2
        status=1
        return
    fi
    out=$(objdump -dr --no-show-raw-insn "$obj" | awk -v mode="$2" -v funcs=" $3 " '
        /^[0-9a-f]+ <[^>]+>:$/ {
            f = $2; gsub(/[<>:]/, "", f)
            on = mode == "all" || (mode == "only" && index(funcs, " " f " ")) ||
                 (mode == "except" && !index(funcs, " " f " "))
            next
        }
        !on { next }
        # relocations name every symbol the code calls or reads
        $0 ~ /R_X86_64_/ {
            s = $NF; sub(/[-+].*$/, "", s)
            if (s !~ /^(qnpu__[a-z0-9_]+|memcpy|memset|memmove|__stack_chk_fail|_GLOBAL_OFFSET_TABLE_|__(u)?(div|mod)ti3|__cpu_model|__cpu_features2|__cpu_indicator_init|__asan_.*|__ubsan_.*|__sanitizer_.*|\.text.*|\.rodata.*|\.data.*|\.bss.*|\.L.*)$/)
                print "  " f ": references " s
            next
        }
        NF >= 2 && $1 ~ /^ *[0-9a-f]+:$/ {
            split($0, t, "\t"); n = split(t[2], w, /[ \t]+/); m = w[1]; i = 1
            while ((m ~ /^(rep|repz|repnz|repe|repne|lock|notrack|bnd|data16|addr32|cs|ds|es|ss)$/) && i < n) { i++; m = w[i] }
            if (m ~ /^f/ ||
                m ~ /^v?cvt/ || m ~ /^vf/ ||
                m ~ /^v?(add|sub|mul|div|min|max|sqrt|rcp|rsqrt|round|hadd|hsub|addsub|dp|cmp[a-z]*|u?comi)(ss|sd|ps|pd|sh|ph)$/ ||
                m ~ /^v?(ld|st)mxcsr$/)
                print "  " f ": " t[2]
        }')
    if [ -n "$out" ]; then
        echo "no_float: floating point in $obj:" >&2
        echo "$out" >&2
        status=1
    else
        echo "no_float: $1 ($2${3:+: $3}): no floating-point instructions, no float helpers"
    fi
}

audit engine/decoder.o all
audit kernels/int_ops_ref.o all
for k in ref avx2 vnni; do
    audit kernels/int_gemm_$k.o except qnpu__igemm_multipliers
done
audit kernels/requant.o except qnpu__quantize_multiplier
audit rotate/hadamard.o only qnpu__hadamard_apply_i64
audit kernels/fwht.o only qnpu__fwht_i64
exit $status
