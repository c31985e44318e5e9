/* grouped GEMM and fused MoE FFN kernels for avx2: the template kernels/simd/gemm.inc compiled with this ISA's flags. */
#include "simd/vec.h"
#include "simd/simd.h"
#include "simd/gemm.inc"
