/*
 * limits_avx512.c: machine-limit kernels at AVX-512 (compiled with AVX-512 F/BF16 flags, called only when
 * mk_get_cpu_info reports the features). FMA and vdpbf16ps peaks use 16 independent accumulator chains, more than
 * latency x throughput (4 cycles x 2 per cycle on Zen 5), so the loop is throughput bound.
 */
#include "bench.h"

#include <immintrin.h>

float mkb_fma_f32_avx512(int64_t trips) {
    /* acc = acc * a + b converges to b / (1 - a): no overflow, no denormals. */
    const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(0.001f);
    /* distinct starting values: identical chains would be merged into one by the compiler */
    __m512 c0 = _mm512_set1_ps(0.00f), c1 = _mm512_set1_ps(0.01f), c2 = _mm512_set1_ps(0.02f), c3 = _mm512_set1_ps(0.03f);
    __m512 c4 = _mm512_set1_ps(0.04f), c5 = _mm512_set1_ps(0.05f), c6 = _mm512_set1_ps(0.06f), c7 = _mm512_set1_ps(0.07f);
    __m512 c8 = _mm512_set1_ps(0.08f), c9 = _mm512_set1_ps(0.09f), c10 = _mm512_set1_ps(0.10f), c11 = _mm512_set1_ps(0.11f);
    __m512 c12 = _mm512_set1_ps(0.12f), c13 = _mm512_set1_ps(0.13f), c14 = _mm512_set1_ps(0.14f), c15 = _mm512_set1_ps(0.15f);
    for (int64_t i = 0; i < trips; i++) {
        c0 = _mm512_fmadd_ps(c0, a, b); c1 = _mm512_fmadd_ps(c1, a, b);
        c2 = _mm512_fmadd_ps(c2, a, b); c3 = _mm512_fmadd_ps(c3, a, b);
        c4 = _mm512_fmadd_ps(c4, a, b); c5 = _mm512_fmadd_ps(c5, a, b);
        c6 = _mm512_fmadd_ps(c6, a, b); c7 = _mm512_fmadd_ps(c7, a, b);
        c8 = _mm512_fmadd_ps(c8, a, b); c9 = _mm512_fmadd_ps(c9, a, b);
        c10 = _mm512_fmadd_ps(c10, a, b); c11 = _mm512_fmadd_ps(c11, a, b);
        c12 = _mm512_fmadd_ps(c12, a, b); c13 = _mm512_fmadd_ps(c13, a, b);
        c14 = _mm512_fmadd_ps(c14, a, b); c15 = _mm512_fmadd_ps(c15, a, b);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)),
                                       _mm512_add_ps(_mm512_add_ps(c12, c13), _mm512_add_ps(c14, c15))));
    return _mm512_reduce_add_ps(s);
}

float mkb_dpbf16_avx512(int64_t trips) {
    /* Tiny bf16 products keep the accumulators finite for any trip count a benchmark uses. */
    const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3a83);  /* ~1e-3 */
    const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3a83);
    /* distinct starting values: identical chains would be merged into one by the compiler */
    __m512 c0 = _mm512_set1_ps(0.00f), c1 = _mm512_set1_ps(0.01f), c2 = _mm512_set1_ps(0.02f), c3 = _mm512_set1_ps(0.03f);
    __m512 c4 = _mm512_set1_ps(0.04f), c5 = _mm512_set1_ps(0.05f), c6 = _mm512_set1_ps(0.06f), c7 = _mm512_set1_ps(0.07f);
    __m512 c8 = _mm512_set1_ps(0.08f), c9 = _mm512_set1_ps(0.09f), c10 = _mm512_set1_ps(0.10f), c11 = _mm512_set1_ps(0.11f);
    __m512 c12 = _mm512_set1_ps(0.12f), c13 = _mm512_set1_ps(0.13f), c14 = _mm512_set1_ps(0.14f), c15 = _mm512_set1_ps(0.15f);
    for (int64_t i = 0; i < trips; i++) {
        c0 = _mm512_dpbf16_ps(c0, a, b); c1 = _mm512_dpbf16_ps(c1, a, b);
        c2 = _mm512_dpbf16_ps(c2, a, b); c3 = _mm512_dpbf16_ps(c3, a, b);
        c4 = _mm512_dpbf16_ps(c4, a, b); c5 = _mm512_dpbf16_ps(c5, a, b);
        c6 = _mm512_dpbf16_ps(c6, a, b); c7 = _mm512_dpbf16_ps(c7, a, b);
        c8 = _mm512_dpbf16_ps(c8, a, b); c9 = _mm512_dpbf16_ps(c9, a, b);
        c10 = _mm512_dpbf16_ps(c10, a, b); c11 = _mm512_dpbf16_ps(c11, a, b);
        c12 = _mm512_dpbf16_ps(c12, a, b); c13 = _mm512_dpbf16_ps(c13, a, b);
        c14 = _mm512_dpbf16_ps(c14, a, b); c15 = _mm512_dpbf16_ps(c15, a, b);
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)),
                                       _mm512_add_ps(_mm512_add_ps(c12, c13), _mm512_add_ps(c14, c15))));
    return _mm512_reduce_add_ps(s);
}

/* Streaming read: 8 independent sums of 64-byte loads (bytes must be a multiple of 512). */
float mkb_read_avx512(const void *p, size_t bytes) {
    const float *f = (const float *)p;
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
    for (size_t i = 0; i < bytes / sizeof(float); i += 128) {
        s0 = _mm512_add_ps(s0, _mm512_load_ps(f + i));
        s1 = _mm512_add_ps(s1, _mm512_load_ps(f + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_load_ps(f + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_load_ps(f + i + 48));
        s4 = _mm512_add_ps(s4, _mm512_load_ps(f + i + 64));
        s5 = _mm512_add_ps(s5, _mm512_load_ps(f + i + 80));
        s6 = _mm512_add_ps(s6, _mm512_load_ps(f + i + 96));
        s7 = _mm512_add_ps(s7, _mm512_load_ps(f + i + 112));
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)),
                             _mm512_add_ps(_mm512_add_ps(s4, s5), _mm512_add_ps(s6, s7)));
    return _mm512_reduce_add_ps(s);
}

/* Copy with ordinary (write-allocate) stores, as the kernels write their outputs; bytes a multiple of 256. */
void mkb_copy_avx512(void *dst, const void *src, size_t bytes) {
    float *d = (float *)dst;
    const float *s = (const float *)src;
    for (size_t i = 0; i < bytes / sizeof(float); i += 64) {
        __m512 a = _mm512_load_ps(s + i), b = _mm512_load_ps(s + i + 16);
        __m512 c = _mm512_load_ps(s + i + 32), e = _mm512_load_ps(s + i + 48);
        _mm512_store_ps(d + i, a);
        _mm512_store_ps(d + i + 16, b);
        _mm512_store_ps(d + i + 32, c);
        _mm512_store_ps(d + i + 48, e);
    }
}
