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

#endif
