/*
 * moe_ffn.c: reference fused MoE expert FFN, y[t] = sum_j w[t,j] * down_e(silu(gate_e x[t]) * up_e x[t]) + shared,
 * and SwiGLU. x and y are row-major [n_tokens, hidden] with resolved strides; the expert weights are stacked
 * contiguous [n_experts, rows, cols] (shared ones [rows, cols]), F32 or BF16 widened exactly, or packed handles
 * (mk_pack_weights) read element by element through mki_weights_get (pack.h).
 */
#include "ref.h"
#include "pack.h"

#include <math.h>
#include <stdlib.h>

static double silu(double v) { return v / (1.0 + exp(-v)); }

/* acc[:hidden] += weight * down(silu(gate x) * up x) for one SwiGLU MLP of width `width`: group e of gate/up
 * ([width, hidden] each) and of down ([hidden, width]). The intermediate h stays in double: the oracle never rounds
 * it, so a fast kernel that stores h as F32 or BF16 differs by that rounding only. */
static void add_swiglu_mlp(const mki_weights *gate, const mki_weights *up, const mki_weights *down, int64_t e,
                           int64_t hidden, int64_t width, const float *x, double weight, double *h, double *acc) {
    for (int64_t i = 0; i < width; i++) {
        double g = 0.0, u = 0.0;
        for (int64_t c = 0; c < hidden; c++) {
            g += (double)mki_weights_get(gate, width, hidden, e, i, c) * (double)x[c];
            u += (double)mki_weights_get(up, width, hidden, e, i, c) * (double)x[c];
        }
        h[i] = silu(g) * u;
    }
    for (int64_t o = 0; o < hidden; o++) {
        double d = 0.0;
        for (int64_t i = 0; i < width; i++) d += (double)mki_weights_get(down, hidden, width, e, o, i) * h[i];
        acc[o] += weight * d;
    }
}

mk_status mki_ref_moe_ffn(const mk_moe_ffn_args *a) {
    if (a->n_tokens == 0) return MK_OK;
    const int64_t h_len = a->expert_dim > a->shared_dim ? a->expert_dim : a->shared_dim;
    double *h = malloc((size_t)h_len * sizeof *h);
    double *acc = malloc((size_t)a->hidden * sizeof *acc);
    if (!h || !acc) {
        free(h);
        free(acc);
        return mki_error(MK_ENOMEM, "mk_moe_ffn: cannot allocate %lld bytes of workspace",
                         (long long)((h_len + a->hidden) * (int64_t)sizeof(double)));
    }
    const mki_weights gate = mki_weights_of(a->w_gate, a->w_dtype, a->packed_gate);
    const mki_weights up = mki_weights_of(a->w_up, a->w_dtype, a->packed_up);
    const mki_weights down = mki_weights_of(a->w_down, a->w_dtype, a->packed_down);
    const mki_weights s_gate = mki_weights_of(a->shared_gate, a->w_dtype, a->packed_shared_gate);
    const mki_weights s_up = mki_weights_of(a->shared_up, a->w_dtype, a->packed_shared_up);
    const mki_weights s_down = mki_weights_of(a->shared_down, a->w_dtype, a->packed_shared_down);

    for (int64_t t = 0; t < a->n_tokens; t++) {
        const float *x_row = a->x + t * a->x_stride;
        for (int64_t o = 0; o < a->hidden; o++) acc[o] = 0.0;
        for (int64_t j = 0; j < a->top_k; j++) {
            const int32_t e = a->expert_ids[t * a->top_k + j];
            if (e < 0) continue; /* -1: a slot the gate could not fill */
            /* A weight of 0 is still computed, so that inf/NaN in an expert's output propagates like the maths. */
            const double weight = (double)a->expert_weights[t * a->top_k + j];
            add_swiglu_mlp(&gate, &up, &down, e, a->hidden, a->expert_dim, x_row, weight, h, acc);
        }
        if (a->shared_dim > 0)
            add_swiglu_mlp(&s_gate, &s_up, &s_down, 0, a->hidden, a->shared_dim, x_row, 1.0, h, acc);
        /* Written only after the whole token is summed, so y may even be x itself (same stride). */
        float *y_row = a->y + t * a->y_stride;
        for (int64_t o = 0; o < a->hidden; o++) y_row[o] = (float)acc[o];
    }
    free(h);
    free(acc);
    return MK_OK;
}

mk_status mki_ref_swiglu(const float *gate, int64_t gate_stride, const float *up, int64_t up_stride, float *out,
                         int64_t out_stride, int64_t n_rows, int64_t dim) {
    for (int64_t r = 0; r < n_rows; r++) {
        const float *g = gate + r * gate_stride;
        const float *u = up + r * up_stride;
        float *o = out + r * out_stride;
        /* Both inputs of element i are read before it is written, which is what lets out equal gate or up. */
        for (int64_t i = 0; i < dim; i++) o[i] = (float)(silu((double)g[i]) * (double)u[i]);
    }
    return MK_OK;
}
