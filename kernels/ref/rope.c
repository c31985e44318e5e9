/*
 * rope.c: reference partial RoPE, rotating dims [rotary_offset, rotary_offset + rotary_dim) of every head of F32
 * q/k views in place, interleaved (GPT-J) or NeoX pairs. Angles and cos/sin are computed in double from the cache's
 * config on every call; the cache's float tables are never read, so the oracle checks them too.
 */
#include "ref.h"

#include <math.h>
#include <stdlib.h>


void mki_ref_rope_rotate(const mk_rope_config *config, int64_t position, double *slice) {
    const int64_t n_pairs = config->rotary_dim / 2;
    for (int64_t i = 0; i < n_pairs; i++) {
        const double angle = (double)position * pow(config->theta, -2.0 * (double)i / (double)config->rotary_dim);
        const double c = cos(angle), s = sin(angle);
        const int64_t ia = config->style == MK_ROPE_NEOX ? i : 2 * i;
        const int64_t ib = config->style == MK_ROPE_NEOX ? i + n_pairs : 2 * i + 1;
        const double a = slice[ia], b = slice[ib];
        slice[ia] = a * c - b * s;
        slice[ib] = b * c + a * s;
    }
}

static void rope_heads(const mk_rope_config *config, const int32_t *positions, const mk_heads *x, double *slice) {
    for (int64_t t = 0; t < x->n_tokens; t++) {
        for (int64_t h = 0; h < x->n_heads; h++) {
            for (int64_t i = 0; i < config->rotary_dim; i++)
                slice[i] = (double)mki_heads_get(x, t, h, config->rotary_offset + i);
            mki_ref_rope_rotate(config, positions[t], slice);
            for (int64_t i = 0; i < config->rotary_dim; i++)
                mki_heads_set(x, t, h, config->rotary_offset + i, (float)slice[i]);
        }
    }
}

mk_status mki_ref_rope(const mk_rope_cache *cache, const int32_t *positions, const mk_heads *q, const mk_heads *k) {
    const mk_rope_config *config = &cache->config;
    double *slice = malloc((size_t)config->rotary_dim * sizeof *slice);
    if (!slice)
        return mki_error(MK_ENOMEM, "mk_rope: cannot allocate %lld bytes of workspace",
                         (long long)(config->rotary_dim * (int64_t)sizeof(double)));
    if (q) rope_heads(config, positions, q, slice);
    if (k) rope_heads(config, positions, k, slice);
    free(slice);
    return MK_OK;
}
