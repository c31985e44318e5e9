/*
 * norm.c: reference RMSNorm (plain, sandwich post-norm with residual add, per-head K-norm, and K-norm fused with
 * RoPE). Rows are row-major with resolved strides; heads are normalised mk_heads views (F32, or F32/BF16 for
 * knorm_rope's output). rmsnorm(v)[i] = v[i] / sqrt(mean(v^2) + eps) * weight[i], all in double.
 */
#include "ref.h"

#include <math.h>
#include <stdlib.h>

/* sqrt(mean(v^2) + eps) of a float row. eps = 0 on an all-zero row gives 0 and then 0/0 = NaN, as the formula. */
static double rms_of_row(const float *v, int64_t dim, float eps) {
    double sum_sq = 0.0;
    for (int64_t i = 0; i < dim; i++) sum_sq += (double)v[i] * (double)v[i];
    return sqrt(sum_sq / (double)dim + (double)eps);
}

mk_status mki_ref_rmsnorm(const float *x, int64_t x_stride, const float *weight, float eps, int64_t n_rows,
                          int64_t dim, float *out, int64_t out_stride) {
    for (int64_t r = 0; r < n_rows; r++) {
        const float *x_row = x + r * x_stride;
        float *out_row = out + r * out_stride;
        /* The whole sum of squares is taken before the first store, which is what lets out be x. */
        const double rms = rms_of_row(x_row, dim, eps);
        for (int64_t i = 0; i < dim; i++) out_row[i] = (float)((double)x_row[i] / rms * (double)weight[i]);
    }
    return MK_OK;
}

mk_status mki_ref_rmsnorm_add(float *residual, int64_t residual_stride, const float *branch, int64_t branch_stride,
                              const float *weight, float eps, int64_t n_rows, int64_t dim) {
    for (int64_t r = 0; r < n_rows; r++) {
        const float *branch_row = branch + r * branch_stride;
        float *residual_row = residual + r * residual_stride;
        const double rms = rms_of_row(branch_row, dim, eps);
        /* The normed branch is added in double and rounded once, with no intermediate F32 rounding. */
        for (int64_t i = 0; i < dim; i++)
            residual_row[i] =
                (float)((double)residual_row[i] + (double)branch_row[i] / rms * (double)weight[i]);
    }
    return MK_OK;
}

/* head[:head_dim] = rmsnorm(k[t, h]) * weight, in double. */
static void norm_head(const mk_heads *k, int64_t t, int64_t h, const float *weight, float eps, double *head) {
    double sum_sq = 0.0;
    for (int64_t i = 0; i < k->head_dim; i++) {
        head[i] = (double)mki_heads_get(k, t, h, i);
        sum_sq += head[i] * head[i];
    }
    const double rms = sqrt(sum_sq / (double)k->head_dim + (double)eps);
    for (int64_t i = 0; i < k->head_dim; i++) head[i] = head[i] / rms * (double)weight[i];
}

mk_status mki_ref_knorm(const mk_heads *k, const float *weight, float eps) {
    if (k->n_tokens == 0) return MK_OK;
    double *head = malloc((size_t)k->head_dim * sizeof *head);
    if (!head)
        return mki_error(MK_ENOMEM, "mk_knorm: cannot allocate %lld bytes of workspace",
                         (long long)(k->head_dim * (int64_t)sizeof(double)));
    for (int64_t t = 0; t < k->n_tokens; t++) {
        for (int64_t h = 0; h < k->n_heads; h++) {
            norm_head(k, t, h, weight, eps, head);
            for (int64_t i = 0; i < k->head_dim; i++) mki_heads_set(k, t, h, i, (float)head[i]);
        }
    }
    free(head);
    return MK_OK;
}

mk_status mki_ref_knorm_rope(const mk_heads *k, const float *weight, float eps, const mk_rope_cache *cache,
                             const int32_t *positions, const mk_heads *k_out) {
    if (k->n_tokens == 0) return MK_OK;
    const mk_rope_config *config = &cache->config;
    double *head = malloc((size_t)k->head_dim * sizeof *head);
    if (!head)
        return mki_error(MK_ENOMEM, "mk_knorm_rope: cannot allocate %lld bytes of workspace",
                         (long long)(k->head_dim * (int64_t)sizeof(double)));
    for (int64_t t = 0; t < k->n_tokens; t++) {
        for (int64_t h = 0; h < k->n_heads; h++) {
            /* The head is finished in a local buffer before any store because k_out may be k itself. The normed
             * key is rotated unrounded; only the final value is rounded (to F32, or F32 then BF16). */
            norm_head(k, t, h, weight, eps, head);
            mki_ref_rope_rotate(config, positions[t], head + config->rotary_offset);
            for (int64_t i = 0; i < k->head_dim; i++) mki_heads_set(k_out, t, h, i, (float)head[i]);
        }
    }
    free(head);
    return MK_OK;
}
