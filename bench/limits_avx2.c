/*
 * limits_avx2.c: machine-limit kernels at AVX2 + FMA (compiled with -mavx2 -mfma, called only when the CPU has
 * them). Used as the machine limits on CPUs without AVX-512, and reported as the ymm FMA peak otherwise.
 */
#include "bench.h"

#include <immintrin.h>

float mkb_fma_f32_avx2(int64_t trips) {
    /* 12 chains, not 16: AVX2 has 16 ymm registers and the two constants need two of them; 12 still covers
     * latency x throughput (8). Distinct starting values keep the compiler from merging identical chains. */
    const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(0.001f);
    __m256 c0 = _mm256_set1_ps(0.00f), c1 = _mm256_set1_ps(0.01f), c2 = _mm256_set1_ps(0.02f);
    __m256 c3 = _mm256_set1_ps(0.03f), c4 = _mm256_set1_ps(0.04f), c5 = _mm256_set1_ps(0.05f);
    __m256 c6 = _mm256_set1_ps(0.06f), c7 = _mm256_set1_ps(0.07f), c8 = _mm256_set1_ps(0.08f);
    __m256 c9 = _mm256_set1_ps(0.09f), c10 = _mm256_set1_ps(0.10f), c11 = _mm256_set1_ps(0.11f);
    for (int64_t i = 0; i < trips; i++) {
        c0 = _mm256_fmadd_ps(c0, a, b); c1 = _mm256_fmadd_ps(c1, a, b);
        c2 = _mm256_fmadd_ps(c2, a, b); c3 = _mm256_fmadd_ps(c3, a, b);
        c4 = _mm256_fmadd_ps(c4, a, b); c5 = _mm256_fmadd_ps(c5, a, b);
        c6 = _mm256_fmadd_ps(c6, a, b); c7 = _mm256_fmadd_ps(c7, a, b);
        c8 = _mm256_fmadd_ps(c8, a, b); c9 = _mm256_fmadd_ps(c9, a, b);
        c10 = _mm256_fmadd_ps(c10, a, b); c11 = _mm256_fmadd_ps(c11, a, b);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                             _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

float mkb_read_avx2(const void *p, size_t bytes) {
    const float *f = (const float *)p;
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
    for (size_t i = 0; i < bytes / sizeof(float); i += 64) {
        s0 = _mm256_add_ps(s0, _mm256_load_ps(f + i));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(f + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(f + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(f + i + 24));
        s4 = _mm256_add_ps(s4, _mm256_load_ps(f + i + 32));
        s5 = _mm256_add_ps(s5, _mm256_load_ps(f + i + 40));
        s6 = _mm256_add_ps(s6, _mm256_load_ps(f + i + 48));
        s7 = _mm256_add_ps(s7, _mm256_load_ps(f + i + 56));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)),
                             _mm256_add_ps(_mm256_add_ps(s4, s5), _mm256_add_ps(s6, s7)));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}

void mkb_copy_avx2(void *dst, const void *src, size_t bytes) {
    float *d = (float *)dst;
    const float *s = (const float *)src;
    for (size_t i = 0; i < bytes / sizeof(float); i += 32) {
        __m256 a = _mm256_load_ps(s + i), b = _mm256_load_ps(s + i + 8);
        __m256 c = _mm256_load_ps(s + i + 16), e = _mm256_load_ps(s + i + 24);
        _mm256_store_ps(d + i, a);
        _mm256_store_ps(d + i + 8, b);
        _mm256_store_ps(d + i + 16, c);
        _mm256_store_ps(d + i + 24, e);
    }
}
