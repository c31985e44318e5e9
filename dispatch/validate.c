/*
 * validate.c: argument validation for every op, in one place. Every backend is reached only through these checks,
 * so kernels can trust their arguments. A failed check names the argument and its value in mk_last_error() and
 * returns before anything is written.
 */
#include "internal.h"
#include "pack.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ------------------------------------------------------------------------------------------ */

static mk_status need_dim(const char *fn, const char *name, int64_t v) {
    if (v < 1) return mki_error(MK_EINVAL, "%s: %s = %lld must be >= 1", fn, name, (long long)v);
    return MK_OK;
}

static mk_status need_count(const char *fn, const char *name, int64_t v) {
    if (v < 0) return mki_error(MK_EINVAL, "%s: %s = %lld must be >= 0", fn, name, (long long)v);
    return MK_OK;
}

static mk_status need_ptr(const char *fn, const char *name, const void *p) {
    if (!p) return mki_error(MK_EINVAL, "%s: %s = NULL", fn, name);
    return MK_OK;
}

static mk_status need_dtype(const char *fn, const char *name, mk_dtype dt, int allow_bf16) {
    if (dt == MK_F32 || (allow_bf16 && dt == MK_BF16)) return MK_OK;
    return mki_error(MK_EINVAL, "%s: %s = %d is not %s", fn, name, (int)dt,
                     allow_bf16 ? "MK_F32 or MK_BF16" : "MK_F32 (this operand must be F32)");
}

/* Bytes spanned by n_rows rows of `inner` elements at `stride` elements apart; 0 on overflow of int64/size_t
 * (which the callers report), and also 0 when n_rows == 0 (nothing is touched). */
static int span_bytes(int64_t n_rows, int64_t stride, int64_t inner, size_t elem, size_t *bytes) {
    if (n_rows == 0) { *bytes = 0; return 1; }
    int64_t last, elems;
    if (__builtin_mul_overflow(n_rows - 1, stride, &last)) return 0;
    if (__builtin_add_overflow(last, inner, &elems)) return 0;
    size_t b;
    if (__builtin_mul_overflow((size_t)elems, elem, &b)) return 0;
    if (b > (size_t)INT64_MAX) return 0;
    *bytes = b;
    return 1;
}

static int overlap(const void *a, size_t abytes, const void *b, size_t bbytes) {
    if (!a || !b || abytes == 0 || bbytes == 0) return 0;
    const char *pa = a, *pb = b;
    return pa < pb + bbytes && pb < pa + abytes;
}

/* Product of three sizes times an element size, as bytes; 0 on overflow. */
static int volume_bytes(int64_t a, int64_t b, int64_t c, size_t elem, size_t *bytes) {
    int64_t ab, abc;
    size_t out;
    if (__builtin_mul_overflow(a, b, &ab) || __builtin_mul_overflow(ab, c, &abc)) return 0;
    if (__builtin_mul_overflow((size_t)abc, elem, &out) || out > (size_t)INT64_MAX) return 0;
    *bytes = out;
    return 1;
}

static int is_finite_float(float v) { return isfinite(v) != 0; }

/* ---- rows ---------------------------------------------------------------------------------------------------- */

mk_status mki_check_rows(const char *fn, const char *name, const float *p, const char *rows_name, int64_t n_rows,
                         const char *dim_name, int64_t dim, int64_t *stride) {
    mk_status st;
    if ((st = need_count(fn, rows_name, n_rows)) || (st = need_dim(fn, dim_name, dim))) return st;
    if (*stride == 0) *stride = dim;
    if (*stride < dim)
        return mki_error(MK_EINVAL, "%s: %s_stride = %lld must be 0 or >= %s = %lld", fn, name, (long long)*stride,
                         dim_name, (long long)dim);
    size_t bytes;
    if (!span_bytes(n_rows, *stride, dim, sizeof(float), &bytes))
        return mki_error(MK_EINVAL, "%s: %s = %lld with %s_stride = %lld overflows the address space", fn, rows_name,
                         (long long)n_rows, name, (long long)*stride);
    if (n_rows > 0 && !p) return mki_error(MK_EINVAL, "%s: %s = NULL", fn, name);
    return MK_OK;
}

/* ---- heads views --------------------------------------------------------------------------------------------- */

static size_t heads_bytes(const mk_heads *v) {
    size_t bytes = 0;
    span_bytes(v->n_tokens, v->token_stride, (v->n_heads - 1) * v->head_stride + v->head_dim, mk_dtype_size(v->dtype),
               &bytes);
    return bytes;
}

mk_status mki_check_heads(const char *fn, const char *name, const mk_heads *in, mk_heads *out, int allow_bf16) {
    if (!in) return mki_error(MK_EINVAL, "%s: %s = NULL", fn, name);
    mk_heads v = *in;
    /* The field names are formatted only on failure (this runs on every call). */
    if (!(v.dtype == MK_F32 || (allow_bf16 && v.dtype == MK_BF16)))
        return mki_error(MK_EINVAL, "%s: %s.dtype = %d is not %s", fn, name, (int)v.dtype,
                         allow_bf16 ? "MK_F32 or MK_BF16" : "MK_F32 (this operand must be F32)");
    if (v.n_tokens < 0)
        return mki_error(MK_EINVAL, "%s: %s.n_tokens = %lld must be >= 0", fn, name, (long long)v.n_tokens);
    if (v.n_heads < 1)
        return mki_error(MK_EINVAL, "%s: %s.n_heads = %lld must be >= 1", fn, name, (long long)v.n_heads);
    if (v.head_dim < 1)
        return mki_error(MK_EINVAL, "%s: %s.head_dim = %lld must be >= 1", fn, name, (long long)v.head_dim);
    if (v.head_stride == 0) v.head_stride = v.head_dim;
    if (v.head_stride < v.head_dim)
        return mki_error(MK_EINVAL, "%s: %s.head_stride = %lld must be 0 or >= head_dim = %lld", fn, name,
                         (long long)v.head_stride, (long long)v.head_dim);
    int64_t row; /* elements one token spans */
    if (__builtin_mul_overflow(v.n_heads - 1, v.head_stride, &row) || __builtin_add_overflow(row, v.head_dim, &row))
        return mki_error(MK_EINVAL, "%s: %s.n_heads = %lld with head_stride %lld overflows", fn, name,
                         (long long)v.n_heads, (long long)v.head_stride);
    if (v.token_stride == 0) {
        if (__builtin_mul_overflow(v.n_heads, v.head_stride, &v.token_stride))
            return mki_error(MK_EINVAL, "%s: %s.n_heads = %lld overflows", fn, name, (long long)v.n_heads);
    }
    if (v.token_stride < row)
        return mki_error(MK_EINVAL, "%s: %s.token_stride = %lld must be 0 or >= %lld (the span of one token)", fn,
                         name, (long long)v.token_stride, (long long)row);
    size_t bytes;
    if (!span_bytes(v.n_tokens, v.token_stride, row, mk_dtype_size(v.dtype), &bytes))
        return mki_error(MK_EINVAL, "%s: %s.n_tokens = %lld with token_stride %lld overflows", fn, name,
                         (long long)v.n_tokens, (long long)v.token_stride);
    if (v.n_tokens > 0 && !v.data) return mki_error(MK_EINVAL, "%s: %s.data = NULL", fn, name);
    *out = v;
    return MK_OK;
}

static mk_status need_same_shape(const char *fn, const char *a_name, const mk_heads *a, const char *b_name,
                                 const mk_heads *b) {
    if (a->n_tokens != b->n_tokens)
        return mki_error(MK_EINVAL, "%s: %s.n_tokens = %lld differs from %s.n_tokens = %lld", fn, b_name,
                         (long long)b->n_tokens, a_name, (long long)a->n_tokens);
    if (a->n_heads != b->n_heads)
        return mki_error(MK_EINVAL, "%s: %s.n_heads = %lld differs from %s.n_heads = %lld", fn, b_name,
                         (long long)b->n_heads, a_name, (long long)a->n_heads);
    if (a->head_dim != b->head_dim)
        return mki_error(MK_EINVAL, "%s: %s.head_dim = %lld differs from %s.head_dim = %lld", fn, b_name,
                         (long long)b->head_dim, a_name, (long long)a->head_dim);
    return MK_OK;
}

/* An output view may be the very same memory as an input view (same data, dtype and strides) or disjoint from it;
 * a partial overlap would make the result depend on the kernel's order of work. */
static mk_status need_same_or_disjoint(const char *fn, const char *a_name, const mk_heads *a, const char *b_name,
                                       const mk_heads *b) {
    if (!overlap(a->data, heads_bytes(a), b->data, heads_bytes(b))) return MK_OK;
    if (a->data == b->data && a->dtype == b->dtype && a->token_stride == b->token_stride &&
        a->head_stride == b->head_stride)
        return MK_OK;
    return mki_error(MK_EINVAL, "%s: %s partially overlaps %s (must be the same view or disjoint)", fn, b_name,
                     a_name);
}


mk_status mki_check_rows_alias(const char *fn, const char *a_name, const float *a, int64_t a_stride,
                               const char *b_name, const float *b, int64_t b_stride, int64_t n_rows, int64_t dim,
                               int allow_same) {
    size_t ab = 0, bb = 0;
    span_bytes(n_rows, a_stride, dim, sizeof(float), &ab);
    span_bytes(n_rows, b_stride, dim, sizeof(float), &bb);
    if (!overlap(a, ab, b, bb)) return MK_OK;
    if (allow_same && a == b && a_stride == b_stride) return MK_OK;
    return mki_error(MK_EINVAL, "%s: %s overlaps %s (%s)", fn, b_name, a_name,
                     allow_same ? "must be the same rows with the same stride, or disjoint" : "must be disjoint");
}

/* ---- grouped GEMM -------------------------------------------------------------------------------------------- */

/* A packed weight handle given as argument `name` must be a live handle of shape [groups, n, k]. */
static mk_status need_packed(const char *fn, const char *name, const mk_packed_weights *p, int64_t groups, int64_t n,
                             int64_t k) {
    if (!mki_packed_valid(p))
        return mki_error(MK_EINVAL, "%s: %s is not a live mk_pack_weights handle (freed or corrupt)", fn, name);
    if (p->n_groups != groups || p->n != n || p->k != k)
        return mki_error(MK_EINVAL, "%s: %s holds [%lld, %lld, %lld] weights, expected [%lld, %lld, %lld]", fn, name,
                         (long long)p->n_groups, (long long)p->n, (long long)p->k, (long long)groups, (long long)n,
                         (long long)k);
    return MK_OK;
}

mk_status mki_check_grouped_gemm(const mk_grouped_gemm_args *in, mk_grouped_gemm_args *out) {
    const char *fn = "mk_grouped_gemm";
    mk_status st;
    if (!in) return mki_error(MK_EINVAL, "%s: args = NULL", fn);
    mk_grouped_gemm_args a = *in;
    if ((st = need_dim(fn, "n_groups", a.n_groups)) || (st = need_dim(fn, "n", a.n)) ||
        (st = need_dim(fn, "k", a.k)) || (st = need_count(fn, "x_rows", a.x_rows)) ||
        (st = need_count(fn, "y_rows", a.y_rows)) || (st = need_ptr(fn, "group_offsets", a.group_offsets)))
        return st;
    if (a.w_packed) {
        /* the handle replaces w / w_dtype: w may be NULL, and w_dtype is normalised to the handle's dtype */
        if ((st = need_packed(fn, "w_packed", a.w_packed, a.n_groups, a.n, a.k))) return st;
        a.w = NULL;
        a.w_dtype = a.w_packed->dtype;
    } else if ((st = need_dtype(fn, "w_dtype", a.w_dtype, 1)) || (st = need_ptr(fn, "w", a.w))) {
        return st;
    }
    if (a.accumulate != 0 && a.accumulate != 1)
        return mki_error(MK_EINVAL, "%s: accumulate = %d must be 0 or 1", fn, a.accumulate);
    size_t wbytes;
    if (!volume_bytes(a.n_groups, a.n, a.k, mk_dtype_size(a.w_dtype), &wbytes))
        return mki_error(MK_EINVAL, "%s: w of [%lld, %lld, %lld] overflows", fn, (long long)a.n_groups,
                         (long long)a.n, (long long)a.k);
    if (a.w_packed) wbytes = 0; /* library-owned storage: cannot alias y */
    if (a.group_offsets[0] != 0)
        return mki_error(MK_EINVAL, "%s: group_offsets[0] = %lld must be 0", fn, (long long)a.group_offsets[0]);
    for (int64_t g = 0; g < a.n_groups; g++)
        if (a.group_offsets[g + 1] < a.group_offsets[g])
            return mki_error(MK_EINVAL, "%s: group_offsets[%lld] = %lld is below group_offsets[%lld] = %lld", fn,
                             (long long)(g + 1), (long long)a.group_offsets[g + 1], (long long)g,
                             (long long)a.group_offsets[g]);
    int64_t m = a.group_offsets[a.n_groups];
    if ((st = mki_check_rows(fn, "x", a.x, "x_rows", a.x_rows, "k", a.k, &a.x_stride)) ||
        (st = mki_check_rows(fn, "y", a.y, "y_rows", a.y_rows, "n", a.n, &a.y_stride)))
        return st;
    if (m > 0 && !a.x) return mki_error(MK_EINVAL, "%s: x = NULL", fn);
    if (m > 0 && !a.y) return mki_error(MK_EINVAL, "%s: y = NULL", fn);
    if (a.row_index) {
        for (int64_t r = 0; r < m; r++)
            if (a.row_index[r] < 0 || a.row_index[r] >= a.x_rows)
                return mki_error(MK_EINVAL, "%s: row_index[%lld] = %d is outside [0, x_rows = %lld)", fn,
                                 (long long)r, a.row_index[r], (long long)a.x_rows);
    } else if (m > a.x_rows) {
        return mki_error(MK_EINVAL, "%s: x_rows = %lld is below the %lld routed rows (and no row_index)", fn,
                         (long long)a.x_rows, (long long)m);
    }
    if (a.out_index) {
        unsigned char *seen = a.accumulate ? NULL : calloc((size_t)(a.y_rows ? a.y_rows : 1), 1);
        if (!a.accumulate && !seen) return mki_error(MK_ENOMEM, "%s: no memory to check out_index", fn);
        for (int64_t r = 0; r < m; r++) {
            int32_t d = a.out_index[r];
            if (d < 0 || d >= a.y_rows) {
                free(seen);
                return mki_error(MK_EINVAL, "%s: out_index[%lld] = %d is outside [0, y_rows = %lld)", fn,
                                 (long long)r, d, (long long)a.y_rows);
            }
            if (seen) {
                if (seen[d]) {
                    free(seen);
                    return mki_error(MK_EINVAL, "%s: out_index[%lld] = %d repeats a row, which needs accumulate = 1",
                                     fn, (long long)r, d);
                }
                seen[d] = 1;
            }
        }
        free(seen);
    } else if (m > a.y_rows) {
        return mki_error(MK_EINVAL, "%s: y_rows = %lld is below the %lld routed rows (and no out_index)", fn,
                         (long long)a.y_rows, (long long)m);
    }
    size_t xb = 0, yb = 0;
    span_bytes(a.x_rows, a.x_stride, a.k, sizeof(float), &xb);
    span_bytes(a.y_rows, a.y_stride, a.n, sizeof(float), &yb);
    if (overlap(a.x, xb, a.y, yb)) return mki_error(MK_EINVAL, "%s: y overlaps x", fn);
    if (overlap(a.w, wbytes, a.y, yb)) return mki_error(MK_EINVAL, "%s: y overlaps w", fn);
    *out = a;
    return MK_OK;
}

/* ---- MoE FFN ------------------------------------------------------------------------------------------------- */

mk_status mki_check_moe_ffn(const mk_moe_ffn_args *in, mk_moe_ffn_args *out) {
    const char *fn = "mk_moe_ffn";
    mk_status st;
    if (!in) return mki_error(MK_EINVAL, "%s: args = NULL", fn);
    mk_moe_ffn_args a = *in;
    if ((st = need_count(fn, "n_tokens", a.n_tokens)) || (st = need_dim(fn, "hidden", a.hidden)) ||
        (st = need_dim(fn, "n_experts", a.n_experts)) || (st = need_dim(fn, "expert_dim", a.expert_dim)) ||
        (st = need_dim(fn, "top_k", a.top_k)) || (st = need_count(fn, "shared_dim", a.shared_dim)))
        return st;
    if (a.shared_dim == 0) a.packed_shared_gate = a.packed_shared_up = a.packed_shared_down = NULL;
    /* Each weight tensor is either a packed handle (its raw pointer may then be NULL) or raw data of w_dtype. */
    int any_raw = !a.packed_gate || !a.packed_up || !a.packed_down ||
                  (a.shared_dim > 0 && (!a.packed_shared_gate || !a.packed_shared_up || !a.packed_shared_down));
    if (any_raw && (st = need_dtype(fn, "w_dtype", a.w_dtype, 1))) return st;
    if ((a.packed_gate ? (st = need_packed(fn, "packed_gate", a.packed_gate, a.n_experts, a.expert_dim, a.hidden))
                       : (st = need_ptr(fn, "w_gate", a.w_gate))) ||
        (a.packed_up ? (st = need_packed(fn, "packed_up", a.packed_up, a.n_experts, a.expert_dim, a.hidden))
                     : (st = need_ptr(fn, "w_up", a.w_up))) ||
        (a.packed_down ? (st = need_packed(fn, "packed_down", a.packed_down, a.n_experts, a.hidden, a.expert_dim))
                       : (st = need_ptr(fn, "w_down", a.w_down))))
        return st;
    if (a.top_k > a.n_experts)
        return mki_error(MK_EINVAL, "%s: top_k = %lld exceeds n_experts = %lld", fn, (long long)a.top_k,
                         (long long)a.n_experts);
    size_t wb;
    if (!volume_bytes(a.n_experts, a.expert_dim, a.hidden, any_raw ? mk_dtype_size(a.w_dtype) : 4, &wb))
        return mki_error(MK_EINVAL, "%s: expert weights [%lld, %lld, %lld] overflow", fn, (long long)a.n_experts,
                         (long long)a.expert_dim, (long long)a.hidden);
    if (a.shared_dim > 0) {
        if ((a.packed_shared_gate
                 ? (st = need_packed(fn, "packed_shared_gate", a.packed_shared_gate, 1, a.shared_dim, a.hidden))
                 : (st = need_ptr(fn, "shared_gate", a.shared_gate))) ||
            (a.packed_shared_up
                 ? (st = need_packed(fn, "packed_shared_up", a.packed_shared_up, 1, a.shared_dim, a.hidden))
                 : (st = need_ptr(fn, "shared_up", a.shared_up))) ||
            (a.packed_shared_down
                 ? (st = need_packed(fn, "packed_shared_down", a.packed_shared_down, 1, a.hidden, a.shared_dim))
                 : (st = need_ptr(fn, "shared_down", a.shared_down))))
            return st;
        if (!volume_bytes(1, a.shared_dim, a.hidden, any_raw ? mk_dtype_size(a.w_dtype) : 4, &wb))
            return mki_error(MK_EINVAL, "%s: shared weights [%lld, %lld] overflow", fn, (long long)a.shared_dim,
                             (long long)a.hidden);
    }
    if (!any_raw) a.w_dtype = a.packed_gate->dtype; /* only names the dtype in verbose output */
    if ((st = mki_check_rows(fn, "x", a.x, "n_tokens", a.n_tokens, "hidden", a.hidden, &a.x_stride)) ||
        (st = mki_check_rows(fn, "y", a.y, "n_tokens", a.n_tokens, "hidden", a.hidden, &a.y_stride)))
        return st;
    int64_t slots;
    if (__builtin_mul_overflow(a.n_tokens, a.top_k, &slots) || slots > INT64_MAX / 8)
        return mki_error(MK_EINVAL, "%s: n_tokens = %lld times top_k overflows", fn, (long long)a.n_tokens);
    if (a.n_tokens > 0) {
        if ((st = need_ptr(fn, "expert_ids", a.expert_ids)) || (st = need_ptr(fn, "expert_weights", a.expert_weights)))
            return st;
        for (int64_t i = 0; i < slots; i++)
            if (a.expert_ids[i] < -1 || a.expert_ids[i] >= a.n_experts)
                return mki_error(MK_EINVAL, "%s: expert_ids[%lld] = %d is outside [-1, n_experts = %lld)", fn,
                                 (long long)i, a.expert_ids[i], (long long)a.n_experts);
    }
    if ((st = mki_check_rows_alias(fn, "x", a.x, a.x_stride, "y", a.y, a.y_stride, a.n_tokens, a.hidden, 0)))
        return st;
    *out = a;
    return MK_OK;
}

/* ---- gating -------------------------------------------------------------------------------------------------- */

mk_status mki_check_moe_gate(const mk_moe_gate_args *in, mk_moe_gate_args *out) {
    const char *fn = "mk_moe_gate";
    mk_status st;
    if (!in) return mki_error(MK_EINVAL, "%s: args = NULL", fn);
    mk_moe_gate_args a = *in;
    if ((st = need_count(fn, "n_tokens", a.n_tokens)) || (st = need_dim(fn, "n_experts", a.n_experts)) ||
        (st = need_dim(fn, "top_k", a.top_k)))
        return st;
    if (a.n_experts > INT32_MAX)
        return mki_error(MK_EINVAL, "%s: n_experts = %lld does not fit the int32 ids", fn, (long long)a.n_experts);
    if (a.top_k > a.n_experts)
        return mki_error(MK_EINVAL, "%s: top_k = %lld exceeds n_experts = %lld", fn, (long long)a.top_k,
                         (long long)a.n_experts);
    if (a.score_func != MK_SCORE_SIGMOID && a.score_func != MK_SCORE_SOFTMAX)
        return mki_error(MK_EINVAL, "%s: score_func = %d is not MK_SCORE_SIGMOID or MK_SCORE_SOFTMAX", fn,
                         (int)a.score_func);
    if (a.renormalize != 0 && a.renormalize != 1)
        return mki_error(MK_EINVAL, "%s: renormalize = %d must be 0 or 1", fn, a.renormalize);
    if (!is_finite_float(a.routed_scaling_factor) || a.routed_scaling_factor <= 0.0f)
        return mki_error(MK_EINVAL, "%s: routed_scaling_factor = %g must be finite and > 0", fn,
                         (double)a.routed_scaling_factor);
    if (a.n_groups < 0) return mki_error(MK_EINVAL, "%s: n_groups = %lld must be >= 0", fn, (long long)a.n_groups);
    if (a.n_groups > 1) {
        if (a.n_experts % a.n_groups != 0)
            return mki_error(MK_EINVAL, "%s: n_groups = %lld does not divide n_experts = %lld", fn,
                             (long long)a.n_groups, (long long)a.n_experts);
        if (a.topk_groups < 1 || a.topk_groups > a.n_groups)
            return mki_error(MK_EINVAL, "%s: topk_groups = %lld must be in [1, n_groups = %lld]", fn,
                             (long long)a.topk_groups, (long long)a.n_groups);
        if (a.top_k > a.topk_groups * (a.n_experts / a.n_groups))
            return mki_error(MK_EINVAL, "%s: top_k = %lld exceeds the %lld experts of the topk_groups = %lld groups",
                             fn, (long long)a.top_k, (long long)(a.topk_groups * (a.n_experts / a.n_groups)),
                             (long long)a.topk_groups);
    }
    if ((st = mki_check_rows(fn, "logits", a.logits, "n_tokens", a.n_tokens, "n_experts", a.n_experts, &a.logits_stride))) return st;
    size_t outb;
    if (!volume_bytes(a.n_tokens, a.top_k, 1, sizeof(float), &outb))
        return mki_error(MK_EINVAL, "%s: n_tokens = %lld times top_k overflows", fn, (long long)a.n_tokens);
    if (a.n_tokens > 0) {
        if ((st = need_ptr(fn, "ids", a.ids)) || (st = need_ptr(fn, "weights", a.weights))) return st;
        if (overlap(a.ids, outb, a.weights, outb)) return mki_error(MK_EINVAL, "%s: ids overlaps weights", fn);
    }
    *out = a;
    return MK_OK;
}

/* ---- attention ----------------------------------------------------------------------------------------------- */

mk_status mki_check_attn(const mk_attn_args *in, mk_attn_args *out) {
    const char *fn = "mk_sink_attention";
    mk_status st;
    if (!in) return mki_error(MK_EINVAL, "%s: args = NULL", fn);
    mk_attn_args a = *in;
    if ((st = mki_check_heads(fn, "q", &in->q, &a.q, 0)) ||
        (st = mki_check_heads(fn, "k_cache", &in->k_cache, &a.k_cache, 1)) ||
        (st = mki_check_heads(fn, "v_cache", &in->v_cache, &a.v_cache, 1)) ||
        (st = mki_check_heads(fn, "out", &in->out, &a.out, 0)))
        return st;
    int64_t n_q = a.q.n_tokens, n_kv = a.k_cache.n_tokens;
    int64_t hq = a.q.n_heads, hk = a.k_cache.n_heads, dk = a.q.head_dim, dv = a.v_cache.head_dim;
    if (a.v_cache.n_tokens != n_kv)
        return mki_error(MK_EINVAL, "%s: v_cache.n_tokens = %lld differs from k_cache.n_tokens = %lld", fn,
                         (long long)a.v_cache.n_tokens, (long long)n_kv);
    if (n_q > n_kv)
        return mki_error(MK_EINVAL, "%s: q.n_tokens = %lld exceeds the %lld cache tokens (queries are the last "
                         "q.n_tokens positions of the cache)", fn, (long long)n_q, (long long)n_kv);
    if (a.v_cache.n_heads != hk)
        return mki_error(MK_EINVAL, "%s: v_cache.n_heads = %lld differs from k_cache.n_heads = %lld", fn,
                         (long long)a.v_cache.n_heads, (long long)hk);
    if (hq % hk != 0)
        return mki_error(MK_EINVAL, "%s: q.n_heads = %lld is not a multiple of k_cache.n_heads = %lld", fn,
                         (long long)hq, (long long)hk);
    if (a.k_cache.head_dim != dk)
        return mki_error(MK_EINVAL, "%s: k_cache.head_dim = %lld differs from q.head_dim = %lld", fn,
                         (long long)a.k_cache.head_dim, (long long)dk);
    if (a.out.n_tokens != n_q || a.out.n_heads != hq || a.out.head_dim != dv)
        return mki_error(MK_EINVAL, "%s: out is [%lld, %lld, %lld], expected [q.n_tokens = %lld, q.n_heads = %lld, "
                         "v_cache.head_dim = %lld]", fn, (long long)a.out.n_tokens, (long long)a.out.n_heads,
                         (long long)a.out.head_dim, (long long)n_q, (long long)hq, (long long)dv);
    if ((st = need_count(fn, "sink_k.n_tokens", in->sink_k.n_tokens))) return st;
    int64_t n_sinks = in->sink_k.n_tokens;
    if (n_sinks > 0) {
        if ((st = mki_check_heads(fn, "sink_k", &in->sink_k, &a.sink_k, 1))) return st;
        if (a.sink_k.n_heads != hk || a.sink_k.head_dim != dk)
            return mki_error(MK_EINVAL, "%s: sink_k is [%lld, %lld, %lld], expected [n_sinks, k_cache.n_heads = %lld, "
                             "q.head_dim = %lld]", fn, (long long)n_sinks, (long long)a.sink_k.n_heads,
                             (long long)a.sink_k.head_dim, (long long)hk, (long long)dk);
        if (in->sink_v.data) {
            if ((st = mki_check_heads(fn, "sink_v", &in->sink_v, &a.sink_v, 1))) return st;
            if (a.sink_v.n_tokens != n_sinks || a.sink_v.n_heads != hk || a.sink_v.head_dim != dv)
                return mki_error(MK_EINVAL, "%s: sink_v is [%lld, %lld, %lld], expected [sink_k.n_tokens = %lld, "
                                 "k_cache.n_heads = %lld, v_cache.head_dim = %lld]", fn, (long long)a.sink_v.n_tokens,
                                 (long long)a.sink_v.n_heads, (long long)a.sink_v.head_dim, (long long)n_sinks,
                                 (long long)hk, (long long)dv);
        } else {
            memset(&a.sink_v, 0, sizeof a.sink_v); /* zeros: sinks soak up mass and add nothing */
            a.sink_v.n_tokens = n_sinks;
            a.sink_v.n_heads = hk;
            a.sink_v.head_dim = dv;
            a.sink_v.head_stride = dv;
            a.sink_v.token_stride = hk * dv;
        }
    } else {
        memset(&a.sink_k, 0, sizeof a.sink_k);
        memset(&a.sink_v, 0, sizeof a.sink_v);
    }
    if (a.window < 0) return mki_error(MK_EINVAL, "%s: window = %lld must be >= 0", fn, (long long)a.window);
    if (!is_finite_float(a.scale) || a.scale <= 0.0f)
        return mki_error(MK_EINVAL, "%s: scale = %g must be finite and > 0", fn, (double)a.scale);
    /* out is written while q, caches and sinks are read: it must not share memory with any of them */
    const mk_heads *ins[] = {&a.q, &a.k_cache, &a.v_cache, &a.sink_k, &a.sink_v};
    const char *names[] = {"q", "k_cache", "v_cache", "sink_k", "sink_v"};
    for (int i = 0; i < 5; i++)
        if (ins[i]->data && overlap(ins[i]->data, heads_bytes(ins[i]), a.out.data, heads_bytes(&a.out)))
            return mki_error(MK_EINVAL, "%s: out overlaps %s", fn, names[i]);
    *out = a;
    return MK_OK;
}

/* The same-or-disjoint rule for in-place head ops (mk_knorm_rope's k_out). */
mk_status mki_check_heads_alias(const char *fn, const char *a_name, const mk_heads *a, const char *b_name,
                                const mk_heads *b) {
    mk_status st = need_same_shape(fn, a_name, a, b_name, b);
    if (st) return st;
    return need_same_or_disjoint(fn, a_name, a, b_name, b);
}

/* ---- RoPE use ------------------------------------------------------------------------------------------------ */

mk_status mki_check_rope_use(const char *fn, const mk_rope_cache *cache, const int32_t *positions, int64_t n_tokens,
                             int64_t head_dim) {
    if (!cache) return mki_error(MK_EINVAL, "%s: cache = NULL", fn);
    const mk_rope_config *c = &cache->config;
    if (c->rotary_offset + c->rotary_dim > head_dim)
        return mki_error(MK_EINVAL, "%s: rotary_offset + rotary_dim = %lld + %lld exceeds head_dim = %lld", fn,
                         (long long)c->rotary_offset, (long long)c->rotary_dim, (long long)head_dim);
    if (n_tokens == 0) return MK_OK;
    if (!positions) return mki_error(MK_EINVAL, "%s: positions = NULL", fn);
    for (int64_t t = 0; t < n_tokens; t++)
        if (positions[t] < 0 || positions[t] >= c->max_positions)
            return mki_error(MK_EINVAL, "%s: positions[%lld] = %d is outside [0, max_positions = %lld)", fn,
                             (long long)t, positions[t], (long long)c->max_positions);
    return MK_OK;
}
