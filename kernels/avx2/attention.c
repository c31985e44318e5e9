/* attention kernels for avx2: the template kernels/simd/attention.inc compiled with this ISA's flags. */
#include "simd/vec.h"
#include "simd/simd.h"
#include "simd/attention.inc"
