/* norm kernels for avx2: the template kernels/simd/norm.inc compiled with this ISA's flags. */
#include "simd/vec.h"
#include "simd/simd.h"
#include "simd/norm.inc"
