/* table.c: the avx2 kernel table: the reference table, then every SIMD group overrides the slots it speeds up.
 * Compiled with avx2 flags, so it is only ever called on a CPU that runs avx2 (see dispatch/table.c). */
#include "simd/simd.h"

void mki_table_init_avx2(mki_kernel_table *t) {
    mki_table_init_ref(t);
    t->name = "avx2";
    t->isa = MK_ISA_AVX2;
#define MKI_REGISTER_GROUP(g) mki_register_##g##_avx2(t);
    MKI_SIMD_GROUPS(MKI_REGISTER_GROUP)
#undef MKI_REGISTER_GROUP
}
