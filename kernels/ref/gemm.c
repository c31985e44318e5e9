/*
 * gemm.c: reference grouped GEMM over experts, y[dst] = (accumulate ? y[dst] : 0) + scale * x[src] . W[g]^T.
 * x [x_rows, k] and y [y_rows, n] are row-major with resolved row strides; W is [n_groups, n, k] contiguous, F32 or
 * BF16 (widened exactly), or a packed handle (w_packed) read element by element through mki_weights_get (pack.h).
 * Every dot product is accumulated in double and rounded to float once, at the store.
 */
#include "ref.h"
#include "pack.h"

mk_status mki_ref_grouped_gemm(const mk_grouped_gemm_args *a) {
    const mki_weights w = mki_weights_of(a->w, a->w_dtype, a->w_packed);
    for (int64_t g = 0; g < a->n_groups; g++) {
        for (int64_t r = a->group_offsets[g]; r < a->group_offsets[g + 1]; r++) {
            const int64_t src = a->row_index ? (int64_t)a->row_index[r] : r;
            const int64_t dst = a->out_index ? (int64_t)a->out_index[r] : r;
            const double scale = a->row_scale ? (double)a->row_scale[r] : 1.0;
            const float *x_row = a->x + src * a->x_stride;
            float *y_row = a->y + dst * a->y_stride;
            for (int64_t i = 0; i < a->n; i++) {
                double v = 0.0;
                for (int64_t c = 0; c < a->k; c++)
                    v += (double)x_row[c] * (double)mki_weights_get(&w, a->n, a->k, g, i, c);
                /* One rounding per stored value: the old y is widened and the scaled product added in double, so
                 * a scatter-add of several rows rounds once per row, in routed-row order. */
                if (a->accumulate)
                    y_row[i] = (float)((double)y_row[i] + scale * v);
                else
                    y_row[i] = (float)(scale * v);
            }
        }
    }
    return MK_OK;
}
