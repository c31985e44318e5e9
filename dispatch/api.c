/*
 * api.c: the public entry points of the ops. Each one clears the error, validates through validate.c, returns early
 * when there is no work, then calls the slot of the selected kernel table (mki_table) with trusted arguments.
 */
#include "internal.h"
#include "ref/ref.h"

#include <math.h>
#include <string.h>

static mk_status need_eps(const char *fn, float eps) {
    if (!isfinite(eps) || eps < 0.0f) return mki_error(MK_EINVAL, "%s: eps = %g must be finite and >= 0", fn, (double)eps);
    return MK_OK;
}

static mk_status need_weight(const char *fn, const float *weight) {
    if (!weight) return mki_error(MK_EINVAL, "%s: weight = NULL", fn);
    return MK_OK;
}

/* ---- grouped GEMM and MoE FFN -------------------------------------------------------------------------------- */

MOEKIT_API mk_status mk_grouped_gemm(const mk_grouped_gemm_args *args) {
    mki_clear_error();
    mk_grouped_gemm_args a;
    mk_status st = mki_check_grouped_gemm(args, &a);
    if (st) return st;
    int64_t rows = a.group_offsets[a.n_groups];
    if (rows == 0) return MK_OK;
    const mki_kernel_table *t = mki_table();
    uint64_t t0 = mki_verbose_enter(MK_OP_GROUPED_GEMM, t);
    st = t->grouped_gemm(&a);
    if (t0)
        mki_verbose_exit(MK_OP_GROUPED_GEMM, t, t0, "groups=%lld,rows=%lld,n=%lld,k=%lld,w=%s", (long long)a.n_groups,
                         (long long)rows, (long long)a.n, (long long)a.k, mk_dtype_name(a.w_dtype));
    return st;
}

MOEKIT_API mk_status mk_moe_ffn(const mk_moe_ffn_args *args) {
    mki_clear_error();
    mk_moe_ffn_args a;
    mk_status st = mki_check_moe_ffn(args, &a);
    if (st) return st;
    if (a.n_tokens == 0) return MK_OK;
    const mki_kernel_table *t = mki_table();
    uint64_t t0 = mki_verbose_enter(MK_OP_MOE_FFN, t);
    st = t->moe_ffn(&a);
    if (t0)
        mki_verbose_exit(MK_OP_MOE_FFN, t, t0, "tokens=%lld,hidden=%lld,experts=%lld,expert_dim=%lld,top_k=%lld,"
                         "shared_dim=%lld,w=%s", (long long)a.n_tokens, (long long)a.hidden, (long long)a.n_experts,
                         (long long)a.expert_dim, (long long)a.top_k, (long long)a.shared_dim,
                         mk_dtype_name(a.w_dtype));
    return st;
}

MOEKIT_API mk_status mk_swiglu(const float *gate, int64_t gate_stride, const float *up, int64_t up_stride, float *out,
                               int64_t out_stride, int64_t n_rows, int64_t dim) {
    const char *fn = "mk_swiglu";
    mki_clear_error();
    mk_status st;
    if ((st = mki_check_rows(fn, "gate", gate, "n_rows", n_rows, "dim", dim, &gate_stride)) ||
        (st = mki_check_rows(fn, "up", up, "n_rows", n_rows, "dim", dim, &up_stride)) ||
        (st = mki_check_rows(fn, "out", out, "n_rows", n_rows, "dim", dim, &out_stride)) ||
        (st = mki_check_rows_alias(fn, "gate", gate, gate_stride, "out", out, out_stride, n_rows, dim, 1)) ||
        (st = mki_check_rows_alias(fn, "up", up, up_stride, "out", out, out_stride, n_rows, dim, 1)))
        return st;
    if (n_rows == 0) return MK_OK;
    const mki_kernel_table *t = mki_table();
    uint64_t t0 = mki_verbose_enter(MK_OP_SWIGLU, t);
    st = t->swiglu(gate, gate_stride, up, up_stride, out, out_stride, n_rows, dim);
    if (t0) mki_verbose_exit(MK_OP_SWIGLU, t, t0, "rows=%lld,dim=%lld", (long long)n_rows, (long long)dim);
    return st;
}

/* ---- gating -------------------------------------------------------------------------------------------------- */

MOEKIT_API mk_status mk_moe_gate(const mk_moe_gate_args *args) {
    mki_clear_error();
    mk_moe_gate_args a;
    mk_status st = mki_check_moe_gate(args, &a);
    if (st) return st;
    if (a.n_tokens == 0) {
        if (a.counts) memset(a.counts, 0, (size_t)a.n_experts * sizeof *a.counts);
        return MK_OK;
    }
    const mki_kernel_table *t = mki_table();
    uint64_t t0 = mki_verbose_enter(MK_OP_MOE_GATE, t);
    st = t->moe_gate(&a);
    if (t0)
        mki_verbose_exit(MK_OP_MOE_GATE, t, t0, "tokens=%lld,experts=%lld,top_k=%lld,score=%s,groups=%lld",
                         (long long)a.n_tokens, (long long)a.n_experts, (long long)a.top_k,
                         a.score_func == MK_SCORE_SIGMOID ? "sigmoid" : "softmax", (long long)a.n_groups);
    return st;
}

/* O(n_experts) and run once per training step: no kernel table slot, the reference is the only implementation. */
MOEKIT_API mk_status mk_expert_bias_update(float *expert_bias, const int32_t *counts, int64_t n_experts, float rate,
                                           mk_bias_rule rule, int zero_mean) {
    const char *fn = "mk_expert_bias_update";
    mki_clear_error();
    if (n_experts < 1) return mki_error(MK_EINVAL, "%s: n_experts = %lld must be >= 1", fn, (long long)n_experts);
    if (!expert_bias) return mki_error(MK_EINVAL, "%s: expert_bias = NULL", fn);
    if (!counts) return mki_error(MK_EINVAL, "%s: counts = NULL", fn);
    if (!isfinite(rate) || rate < 0.0f) return mki_error(MK_EINVAL, "%s: rate = %g must be finite and >= 0", fn, (double)rate);
    if (rule != MK_BIAS_SIGN && rule != MK_BIAS_ADAPTIVE)
        return mki_error(MK_EINVAL, "%s: rule = %d is not MK_BIAS_SIGN or MK_BIAS_ADAPTIVE", fn, (int)rule);
    if (zero_mean != 0 && zero_mean != 1) return mki_error(MK_EINVAL, "%s: zero_mean = %d must be 0 or 1", fn, zero_mean);
    for (int64_t e = 0; e < n_experts; e++)
        if (counts[e] < 0)
            return mki_error(MK_EINVAL, "%s: counts[%lld] = %d must be >= 0", fn, (long long)e, counts[e]);
    return mki_ref_expert_bias_update(expert_bias, counts, n_experts, rate, rule, zero_mean);
}

/* ---- RoPE ---------------------------------------------------------------------------------------------------- */

MOEKIT_API mk_status mk_rope(const mk_rope_cache *cache, const int32_t *positions, const mk_heads *q,
                             const mk_heads *k) {
    const char *fn = "mk_rope";
    mki_clear_error();
    mk_status st;
    mk_heads qn, kn;
    if (!q && !k) return mki_error(MK_EINVAL, "%s: q = NULL and k = NULL (at least one is needed)", fn);
    if (q && (st = mki_check_heads(fn, "q", q, &qn, 0))) return st;
    if (k && (st = mki_check_heads(fn, "k", k, &kn, 0))) return st;
    if (q && k && q->n_tokens != k->n_tokens)
        return mki_error(MK_EINVAL, "%s: k.n_tokens = %lld differs from q.n_tokens = %lld", fn,
                         (long long)k->n_tokens, (long long)q->n_tokens);
    int64_t n_tokens = q ? qn.n_tokens : kn.n_tokens;
    if (q && (st = mki_check_rope_use(fn, cache, positions, n_tokens, qn.head_dim))) return st;
    if (k && (st = mki_check_rope_use(fn, cache, positions, n_tokens, kn.head_dim))) return st;
    if (q && k && (qn.data == kn.data) && n_tokens > 0)
        return mki_error(MK_EINVAL, "%s: q and k are the same view (would rotate twice)", fn);
    if (n_tokens == 0) return MK_OK;
    const mki_kernel_table *t = mki_table();
    uint64_t t0 = mki_verbose_enter(MK_OP_ROPE, t);
    st = t->rope(cache, positions, q ? &qn : NULL, k ? &kn : NULL);
    if (t0)
        mki_verbose_exit(MK_OP_ROPE, t, t0, "tokens=%lld,q_heads=%lld,k_heads=%lld,rotary_dim=%lld,style=%s",
                         (long long)n_tokens, (long long)(q ? qn.n_heads : 0), (long long)(k ? kn.n_heads : 0),
                         (long long)cache->config.rotary_dim,
                         cache->config.style == MK_ROPE_NEOX ? "neox" : "interleaved");
    return st;
}

/* ---- norms --------------------------------------------------------------------------------------------------- */

MOEKIT_API mk_status mk_rmsnorm(const float *x, int64_t x_stride, const float *weight, float eps, int64_t n_rows,
                                int64_t dim, float *out, int64_t out_stride) {
    const char *fn = "mk_rmsnorm";
    mki_clear_error();
    mk_status st;
    if ((st = mki_check_rows(fn, "x", x, "n_rows", n_rows, "dim", dim, &x_stride)) ||
        (st = mki_check_rows(fn, "out", out, "n_rows", n_rows, "dim", dim, &out_stride)) || (st = need_weight(fn, weight)) ||
        (st = need_eps(fn, eps)) ||
        (st = mki_check_rows_alias(fn, "x", x, x_stride, "out", out, out_stride, n_rows, dim, 1)))
        return st;
    if (n_rows == 0) return MK_OK;
    const mki_kernel_table *t = mki_table();
    uint64_t t0 = mki_verbose_enter(MK_OP_RMSNORM, t);
    st = t->rmsnorm(x, x_stride, weight, eps, n_rows, dim, out, out_stride);
    if (t0) mki_verbose_exit(MK_OP_RMSNORM, t, t0, "rows=%lld,dim=%lld", (long long)n_rows, (long long)dim);
    return st;
}

MOEKIT_API mk_status mk_rmsnorm_add(float *residual, int64_t residual_stride, const float *branch,
                                    int64_t branch_stride, const float *weight, float eps, int64_t n_rows,
                                    int64_t dim) {
    const char *fn = "mk_rmsnorm_add";
    mki_clear_error();
    mk_status st;
    if ((st = mki_check_rows(fn, "residual", residual, "n_rows", n_rows, "dim", dim, &residual_stride)) ||
        (st = mki_check_rows(fn, "branch", branch, "n_rows", n_rows, "dim", dim, &branch_stride)) || (st = need_weight(fn, weight)) ||
        (st = need_eps(fn, eps)) ||
        (st = mki_check_rows_alias(fn, "branch", branch, branch_stride, "residual", residual, residual_stride, n_rows,
                                   dim, 0)))
        return st;
    if (n_rows == 0) return MK_OK;
    const mki_kernel_table *t = mki_table();
    uint64_t t0 = mki_verbose_enter(MK_OP_RMSNORM_ADD, t);
    st = t->rmsnorm_add(residual, residual_stride, branch, branch_stride, weight, eps, n_rows, dim);
    if (t0) mki_verbose_exit(MK_OP_RMSNORM_ADD, t, t0, "rows=%lld,dim=%lld", (long long)n_rows, (long long)dim);
    return st;
}

MOEKIT_API mk_status mk_knorm(const mk_heads *k, const float *weight, float eps) {
    const char *fn = "mk_knorm";
    mki_clear_error();
    mk_status st;
    mk_heads kn;
    if ((st = mki_check_heads(fn, "k", k, &kn, 0)) || (st = need_weight(fn, weight)) || (st = need_eps(fn, eps)))
        return st;
    if (kn.n_tokens == 0) return MK_OK;
    const mki_kernel_table *t = mki_table();
    uint64_t t0 = mki_verbose_enter(MK_OP_KNORM, t);
    st = t->knorm(&kn, weight, eps);
    if (t0)
        mki_verbose_exit(MK_OP_KNORM, t, t0, "tokens=%lld,heads=%lld,head_dim=%lld", (long long)kn.n_tokens,
                         (long long)kn.n_heads, (long long)kn.head_dim);
    return st;
}

MOEKIT_API mk_status mk_knorm_rope(const mk_heads *k, const float *weight, float eps, const mk_rope_cache *cache,
                                   const int32_t *positions, const mk_heads *k_out) {
    const char *fn = "mk_knorm_rope";
    mki_clear_error();
    mk_status st;
    mk_heads kn, on;
    if ((st = mki_check_heads(fn, "k", k, &kn, 0)) || (st = mki_check_heads(fn, "k_out", k_out, &on, 1)) ||
        (st = need_weight(fn, weight)) || (st = need_eps(fn, eps)) ||
        (st = mki_check_heads_alias(fn, "k", &kn, "k_out", &on)) ||
        (st = mki_check_rope_use(fn, cache, positions, kn.n_tokens, kn.head_dim)))
        return st;
    if (kn.n_tokens == 0) return MK_OK;
    const mki_kernel_table *t = mki_table();
    uint64_t t0 = mki_verbose_enter(MK_OP_KNORM_ROPE, t);
    st = t->knorm_rope(&kn, weight, eps, cache, positions, &on);
    if (t0)
        mki_verbose_exit(MK_OP_KNORM_ROPE, t, t0, "tokens=%lld,heads=%lld,head_dim=%lld,rotary_dim=%lld,out=%s",
                         (long long)kn.n_tokens, (long long)kn.n_heads, (long long)kn.head_dim,
                         (long long)cache->config.rotary_dim, mk_dtype_name(on.dtype));
    return st;
}

/* ---- attention ----------------------------------------------------------------------------------------------- */

MOEKIT_API mk_status mk_sink_attention(const mk_attn_args *args) {
    mki_clear_error();
    mk_attn_args a;
    mk_status st = mki_check_attn(args, &a);
    if (st) return st;
    if (a.q.n_tokens == 0) return MK_OK;
    const mki_kernel_table *t = mki_table();
    uint64_t t0 = mki_verbose_enter(MK_OP_SINK_ATTENTION, t);
    st = t->sink_attention(&a);
    if (t0)
        mki_verbose_exit(MK_OP_SINK_ATTENTION, t, t0, "T=%lld,S=%lld,hq=%lld,hk=%lld,dk=%lld,dv=%lld,sinks=%lld,"
                         "window=%lld,kv=%s", (long long)a.q.n_tokens, (long long)a.k_cache.n_tokens,
                         (long long)a.q.n_heads, (long long)a.k_cache.n_heads, (long long)a.q.head_dim,
                         (long long)a.v_cache.head_dim, (long long)a.sink_k.n_tokens, (long long)a.window,
                         mk_dtype_name(a.k_cache.dtype));
    return st;
}
