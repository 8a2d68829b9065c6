/* machine.h — machine limits measured by `quantnpu bench`: the integer dot-product peak and the
 * memory bandwidth, so engine speeds can be reported as fractions of what the machine can do. */
#ifndef QNPU_CLI_MACHINE_H
#define QNPU_CLI_MACHINE_H

#include <stddef.h>

/* Integer multiply-accumulate peak in GOPS (1 MAC = 2 ops) over `threads` threads running
 * independent VPDPBUSD zmm chains (AVX-512 VNNI) for about `seconds`. Returns 0 when the CPU has
 * no AVX-512 VNNI (or the build is not x86-64). *what names the instruction measured. */
double machine_int_peak_gops(int threads, double seconds, const char **what);

/* Read bandwidth in GB/s: `threads` threads summing disjoint parts of a buffer of `bytes`
 * (allocated and written once, then read `reps` times; the best pass counts). 0 on failure. */
double machine_read_gbs(int threads, size_t bytes, int reps);

/* Debian's BLIS 0.9 predates AMD's family 0x1A (Zen 5) and runs its generic C kernels there,
 * 2-4x slower than its AVX-512 ones. When BLIS_ARCH_TYPE is not set and the CPU is such an AMD
 * part with AVX-512 F/DQ/BW/VL, select BLIS's skx sub-configuration (the AVX-512 kernels) through
 * BLIS_ARCH_TYPE, which BLIS reads when it initializes. Call first thing in main, before any
 * thread starts; a no-op elsewhere. Returns 1 if it set the variable. */
int machine_pick_blis_arch(void);

#endif
