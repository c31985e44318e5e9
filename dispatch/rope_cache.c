/*
 * rope_cache.c: cos/sin tables for partial RoPE, [max_positions][rotary_dim / 2] floats each. The angle
 * position * theta^(-2i / rotary_dim) is formed in double: at theta = 25.6e6 and positions near 1e5 a float angle
 * would be off by ~0.008 rad, far more than the 1-ulp error of the final cos/sin.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

MOEKIT_API mk_status mk_rope_cache_create(const mk_rope_config *config, mk_rope_cache **cache) {
    const char *fn = "mk_rope_cache_create";
    mki_clear_error();
    if (!cache) return mki_error(MK_EINVAL, "%s: cache = NULL", fn);
    if (!config) return mki_error(MK_EINVAL, "%s: config = NULL", fn);
    const mk_rope_config c = *config;
    if (c.rotary_dim < 2 || c.rotary_dim % 2 != 0)
        return mki_error(MK_EINVAL, "%s: rotary_dim = %lld must be even and >= 2", fn, (long long)c.rotary_dim);
    if (c.rotary_offset < 0)
        return mki_error(MK_EINVAL, "%s: rotary_offset = %lld must be >= 0", fn, (long long)c.rotary_offset);
    if (c.rotary_offset > INT64_MAX - c.rotary_dim)
        return mki_error(MK_EINVAL, "%s: rotary_offset = %lld overflows", fn, (long long)c.rotary_offset);
    if (c.style != MK_ROPE_INTERLEAVED && c.style != MK_ROPE_NEOX)
        return mki_error(MK_EINVAL, "%s: style = %d is not MK_ROPE_INTERLEAVED or MK_ROPE_NEOX", fn, (int)c.style);
    if (!isfinite(c.theta) || !(c.theta > 1.0))
        return mki_error(MK_EINVAL, "%s: theta = %g must be finite and > 1", fn, c.theta);
    if (c.max_positions < 1 || c.max_positions > INT32_MAX)
        return mki_error(MK_EINVAL, "%s: max_positions = %lld must be in [1, 2^31 - 1]", fn,
                         (long long)c.max_positions);
    int64_t n_pairs = c.rotary_dim / 2;
    size_t count;
    if (__builtin_mul_overflow((size_t)c.max_positions, (size_t)n_pairs, &count) || count > SIZE_MAX / sizeof(float))
        return mki_error(MK_EINVAL, "%s: max_positions = %lld times rotary_dim / 2 overflows", fn,
                         (long long)c.max_positions);
    mk_rope_cache *r = calloc(1, sizeof *r);
    if (r) {
        r->cos_table = malloc(count * sizeof(float));
        r->sin_table = malloc(count * sizeof(float));
    }
    if (!r || !r->cos_table || !r->sin_table) {
        mk_rope_cache_destroy(r);
        return mki_error(MK_ENOMEM, "%s: no memory for 2 x %zu floats", fn, count);
    }
    r->config = c;
    r->n_pairs = n_pairs;
    double *inv_freq = malloc((size_t)n_pairs * sizeof(double));
    if (!inv_freq) {
        mk_rope_cache_destroy(r);
        return mki_error(MK_ENOMEM, "%s: no memory", fn);
    }
    for (int64_t i = 0; i < n_pairs; i++) inv_freq[i] = pow(c.theta, -2.0 * (double)i / (double)c.rotary_dim);
    for (int64_t p = 0; p < c.max_positions; p++) {
        for (int64_t i = 0; i < n_pairs; i++) {
            double angle = (double)p * inv_freq[i];
            r->cos_table[p * n_pairs + i] = (float)cos(angle);
            r->sin_table[p * n_pairs + i] = (float)sin(angle);
        }
    }
    free(inv_freq);
    *cache = r;
    return MK_OK;
}

MOEKIT_API void mk_rope_cache_destroy(mk_rope_cache *cache) {
    if (!cache) return;
    free(cache->cos_table);
    free(cache->sin_table);
    free(cache);
}

MOEKIT_API mk_status mk_rope_cache_config(const mk_rope_cache *cache, mk_rope_config *config) {
    mki_clear_error();
    if (!cache) return mki_error(MK_EINVAL, "mk_rope_cache_config: cache = NULL");
    if (!config) return mki_error(MK_EINVAL, "mk_rope_cache_config: config = NULL");
    *config = cache->config;
    return MK_OK;
}
