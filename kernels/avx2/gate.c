/* gate kernels for avx2: the template kernels/simd/gate.inc compiled with this ISA's flags. */
#include "simd/vec.h"
#include "simd/simd.h"
#include "simd/gate.inc"
