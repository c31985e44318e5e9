/*
 * simd.h: the SIMD kernel groups. Each group is one template, kernels/simd/<group>.inc, compiled once per ISA by
 * kernels/<isa>/<group>.c; its register function overrides the slots of the table that the group speeds up.
 * A register function may only be called on a CPU that runs its ISA (its unit is compiled with that ISA's flags).
 */
#ifndef MOEKIT_SIMD_H
#define MOEKIT_SIMD_H

#include "internal.h"

#define MKI_SIMD_GROUPS(X) X(norm) X(rope) X(gate) X(attention) X(gemm)

#define MKI_DECLARE_GROUP(g)                                                                                      \
    MKI_HIDDEN void mki_register_##g##_avx2(mki_kernel_table *t);                                                 \
    MKI_HIDDEN void mki_register_##g##_avx512(mki_kernel_table *t);
MKI_SIMD_GROUPS(MKI_DECLARE_GROUP)
#undef MKI_DECLARE_GROUP

MKI_HIDDEN void mki_table_init_avx2(mki_kernel_table *t);
MKI_HIDDEN void mki_table_init_avx512(mki_kernel_table *t);

#endif /* MOEKIT_SIMD_H */
