/*
 * moekit.h: the one public header of moekit, kernels for Mixture-of-Experts transformer blocks of the
 * openPangu-R-72B kind (grouped GEMM / fused expert FFN, top-k gating, partial RoPE, K-only RMSNorm,
 * sink attention) behind a runtime CPU dispatcher.
 *
 * Conventions (see docs/api.md for every op in detail):
 *  - Every entry point returns mk_status. On anything but MK_OK, mk_last_error() names the argument and value
 *    that was rejected, and no output has been written.
 *  - Tensors are row-major. Sizes are int64_t so that a negative size is detectable. Strides are counted in
 *    elements, not bytes; a stride of 0 means "contiguous" where the documentation says so.
 *  - Dimensions (hidden, head_dim, n_heads, n_experts, N, K, ...) must be >= 1. Row and token counts may be 0:
 *    the call then validates its arguments and does nothing.
 *  - Activations are F32. Weights, KV caches and sink tensors may be F32 or BF16 where stated.
 */
#ifndef MOEKIT_H
#define MOEKIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define MOEKIT_API
#else
#define MOEKIT_API __attribute__((visibility("default")))
#endif

/* ---------------------------------------------------------------------------------------------------------------
 * Version
 * ------------------------------------------------------------------------------------------------------------- */
#define MOEKIT_VERSION_MAJOR 0
#define MOEKIT_VERSION_MINOR 1
#define MOEKIT_VERSION_PATCH 0
#define MOEKIT_VERSION ((MOEKIT_VERSION_MAJOR << 16) | (MOEKIT_VERSION_MINOR << 8) | MOEKIT_VERSION_PATCH)

/* Runtime version of the library actually linked, in the MOEKIT_VERSION encoding. */
MOEKIT_API unsigned mk_version(void);
/* "MAJOR.MINOR.PATCH", static storage. */
MOEKIT_API const char *mk_version_string(void);

/* ---------------------------------------------------------------------------------------------------------------
 * Status and errors
 * ------------------------------------------------------------------------------------------------------------- */
typedef enum mk_status {
    MK_OK = 0,
    MK_EINVAL = 1,       /* an argument is invalid: NULL, out of range, inconsistent shapes, overflow */
    MK_ENOMEM = 2,       /* an allocation failed */
    MK_EUNSUPPORTED = 3, /* valid request that this build or CPU cannot serve (dtype, ISA, backend) */
    MK_EIO = 4,          /* a file could not be read or written */
    MK_EFORMAT = 5,      /* a file or buffer is corrupt or not in the expected format */
    MK_EINTERNAL = 6     /* a bug in moekit: please report it */
} mk_status;

/* A static, never-NULL description of a status ("MK_EINVAL: invalid argument"). */
MOEKIT_API const char *mk_status_str(mk_status status);
/* The message of the last failed call on this thread, naming the argument and value ("mk_rope: rotary_dim = 63
 * must be even"). Empty string when the last call succeeded. Valid until the next moekit call on this thread. */
MOEKIT_API const char *mk_last_error(void);

/* ---------------------------------------------------------------------------------------------------------------
 * Data types
 * ------------------------------------------------------------------------------------------------------------- */
typedef enum mk_dtype {
    MK_F32 = 0,
    MK_BF16 = 1 /* bfloat16 stored as uint16_t: the top 16 bits of an IEEE float */
} mk_dtype;

typedef uint16_t mk_bf16;

/* Size in bytes of one element, or 0 for an unknown dtype. */
MOEKIT_API size_t mk_dtype_size(mk_dtype dtype);
/* "f32" / "bf16" / "?" */
MOEKIT_API const char *mk_dtype_name(mk_dtype dtype);
/* Converts n elements between F32 and BF16 (either direction, or a plain copy for equal dtypes). F32 -> BF16
 * rounds to nearest even; NaN stays NaN. dst and src must not overlap. */
MOEKIT_API mk_status mk_convert(void *dst, mk_dtype dst_dtype, const void *src, mk_dtype src_dtype, int64_t n);

/* A strided 3-D view [n_tokens, n_heads, head_dim] of F32 or BF16 data, as used for q, k, v, KV caches and sinks.
 * Strides are in elements; 0 means contiguous (token_stride = n_heads * head_dim, head_stride = head_dim). The
 * innermost dimension is always contiguous. */
typedef struct mk_heads {
    void *data;
    mk_dtype dtype;
    int64_t n_tokens;
    int64_t n_heads;
    int64_t head_dim;
    int64_t token_stride;
    int64_t head_stride;
} mk_heads;

/* ---------------------------------------------------------------------------------------------------------------
 * Runtime: ISA selection, threads, CPU description
 * ------------------------------------------------------------------------------------------------------------- */
typedef enum mk_isa {
    MK_ISA_REF = 0,    /* plain C reference kernels (double accumulation): the oracle */
    MK_ISA_AVX2 = 1,   /* x86-64 AVX2 + FMA */
    MK_ISA_AVX512 = 2, /* x86-64 AVX-512 F/BW/VL/DQ (BF16 and VNNI used where present) */
    MK_ISA_COUNT = 3
} mk_isa;

/* "ref" / "avx2" / "avx512" / "?" */
MOEKIT_API const char *mk_isa_name(mk_isa isa);
/* The best ISA the CPU and OS support (XCR0 checked), regardless of any cap. */
MOEKIT_API mk_isa mk_detected_isa(void);
/* The ISA whose kernel table is in use: min(detected, cap). The cap comes from mk_set_max_isa() if it was called,
 * else from MOEKIT_MAX_ISA=ref|avx2|avx512, else none. */
MOEKIT_API mk_isa mk_selected_isa(void);
/* Caps the ISA (clamped to what the hardware has); takes precedence over MOEKIT_MAX_ISA. May be called at any
 * time; calls already running finish on the table they started with. */
MOEKIT_API mk_status mk_set_max_isa(mk_isa isa);
/* Parses "ref" / "avx2" / "avx512" (case-insensitive). */
MOEKIT_API mk_status mk_isa_from_name(const char *name, mk_isa *isa);

/* Threads used by kernels that split work (default: MOEKIT_NUM_THREADS, else the physical cores available to the
 * process). n must be >= 1; values above the number of available cores are allowed (oversubscription). */
MOEKIT_API mk_status mk_set_num_threads(int n_threads);
MOEKIT_API int mk_get_num_threads(void);

typedef struct mk_cpu_info {
    char vendor[16];
    char brand[64];
    int family, model;
    /* instruction-set features, each 0 or 1, already combined with OS support (XCR0) */
    int sse42, avx, avx2, fma, f16c;
    int avx512f, avx512bw, avx512vl, avx512dq, avx512_bf16, avx512_vnni, avx_vnni;
    int neon; /* aarch64 */
    /* topology (from hwloc; fallbacks from sysconf and constants when it reports nothing) */
    int n_cores;          /* physical cores available to this process */
    int n_pus;            /* hardware threads available to this process */
    int n_numa_nodes;
    int64_t l1d_bytes, l2_bytes, l3_bytes; /* per core for L1/L2; total L3 */
    int topology_from_hwloc; /* 1 when hwloc supplied the numbers above, 0 when they are fallbacks */
} mk_cpu_info;

MOEKIT_API mk_status mk_get_cpu_info(mk_cpu_info *info);

/* Every op of the library, for introspection (mk_kernel_name) and verbose output. */
typedef enum mk_op {
    MK_OP_GROUPED_GEMM = 0,
    MK_OP_MOE_FFN,
    MK_OP_SWIGLU,
    MK_OP_MOE_GATE,
    MK_OP_ROPE,
    MK_OP_RMSNORM,
    MK_OP_RMSNORM_ADD,
    MK_OP_KNORM,
    MK_OP_KNORM_ROPE,
    MK_OP_SINK_ATTENTION,
    MK_OP_COUNT
} mk_op;

/* "grouped_gemm", "moe_ffn", ... */
MOEKIT_API const char *mk_op_name(mk_op op);
/* Name of the kernel that the selected table uses for op, e.g. "ref" or "avx512". */
MOEKIT_API const char *mk_kernel_name(mk_op op);

/* ---------------------------------------------------------------------------------------------------------------
 * 1. Grouped GEMM over experts (replaces ggml MUL_MAT_ID, megablocks gmm, oneDNN grouped matmul)
 *
 * The M routed rows are split into n_groups consecutive groups: rows [group_offsets[g], group_offsets[g+1]) belong
 * to group g, group_offsets[0] = 0, offsets non-decreasing (empty groups allowed), M = group_offsets[n_groups].
 * For routed row r of group g:
 *     src = row_index ? row_index[r] : r           (row of x, < x_rows)
 *     dst = out_index ? out_index[r] : r           (row of y, < y_rows)
 *     v   = x[src, :] . W[g]^T                      (W[g] is [n, k], so v has n values)
 *     y[dst, :] = (accumulate ? y[dst, :] : 0) + (row_scale ? row_scale[r] : 1) * v
 * Rows sharing a dst with accumulate = 1 are summed (the weighted scatter-add of MoE outputs); without
 * accumulate, a dst must not repeat (checked).
 * ------------------------------------------------------------------------------------------------------------- */
/* Packed expert weights: [n_groups, n, k] weights re-laid once (at model load) for the micro-kernels. A packed
 * handle is self-describing and usable by every ISA (the reference reads it through an accessor), so results do
 * not depend on the ISA that was selected when it was packed. Packing copies: the source may be freed afterwards.
 *   MK_PACK_DEFAULT   F32 weights: FP32 FMA. BF16 weights: vdpbf16ps where the CPU has AVX512_BF16, with the
 *                     activations rounded to BF16 and FP32 accumulation (NMSE <= 5e-4 against the reference).
 *   MK_PACK_BF16_WIDEN BF16 weights widened to FP32 in the kernel: activations stay exact (NMSE <= 1e-6). */
typedef enum mk_pack_mode { MK_PACK_DEFAULT = 0, MK_PACK_BF16_WIDEN = 1 } mk_pack_mode;
typedef struct mk_packed_weights mk_packed_weights;

MOEKIT_API mk_status mk_pack_weights(const void *w, mk_dtype dtype, int64_t n_groups, int64_t n, int64_t k,
                                     mk_pack_mode mode, mk_packed_weights **packed);
MOEKIT_API void mk_packed_weights_free(mk_packed_weights *packed);
/* Bytes held by a packed handle (0 for NULL). */
MOEKIT_API size_t mk_packed_weights_bytes(const mk_packed_weights *packed);

typedef struct mk_grouped_gemm_args {
    int64_t n_groups;
    const int64_t *group_offsets; /* [n_groups + 1] */
    int64_t n, k;                 /* output width N and reduction length K */
    const float *x;               /* [x_rows, k] with row stride x_stride (0 = k) */
    int64_t x_rows, x_stride;
    const int32_t *row_index;     /* optional [M] */
    const void *w;                /* [n_groups, n, k] contiguous, dtype w_dtype */
    mk_dtype w_dtype;             /* MK_F32 or MK_BF16 */
    float *y;                     /* [y_rows, n] with row stride y_stride (0 = n) */
    int64_t y_rows, y_stride;
    const int32_t *out_index;     /* optional [M] */
    const float *row_scale;       /* optional [M] */
    int accumulate;               /* 0: overwrite, 1: add into y */
    const mk_packed_weights *w_packed; /* optional: used instead of w / w_dtype (its n_groups, n, k must match) */
} mk_grouped_gemm_args;

MOEKIT_API mk_status mk_grouped_gemm(const mk_grouped_gemm_args *args);

/* ---------------------------------------------------------------------------------------------------------------
 * 2. Fused MoE expert FFN (replaces vLLM fused_moe / ggml MUL_MAT_ID x3 + GLU) and SwiGLU
 *
 *     y[t] = sum_j weights[t, j] * down_e(silu(gate_e x[t]) * up_e x[t])    e = ids[t, j]; ids of -1 are skipped
 *          + down_s(silu(gate_s x[t]) * up_s x[t])                          only when shared_dim > 0
 * gate_e, up_e: [expert_dim, hidden]; down_e: [hidden, expert_dim]; stacked over experts as [n_experts, ...].
 * y is overwritten. silu(v) = v / (1 + exp(-v)).
 * ------------------------------------------------------------------------------------------------------------- */
typedef struct mk_moe_ffn_args {
    int64_t n_tokens, hidden, n_experts, expert_dim, top_k;
    const float *x;                  /* [n_tokens, hidden], row stride x_stride (0 = hidden) */
    int64_t x_stride;
    const int32_t *expert_ids;       /* [n_tokens, top_k], each in [0, n_experts) or -1 */
    const float *expert_weights;     /* [n_tokens, top_k] */
    mk_dtype w_dtype;                /* dtype of all weight tensors, MK_F32 or MK_BF16 */
    const void *w_gate;              /* [n_experts, expert_dim, hidden] */
    const void *w_up;                /* [n_experts, expert_dim, hidden] */
    const void *w_down;              /* [n_experts, hidden, expert_dim] */
    int64_t shared_dim;              /* width of the always-on shared expert; 0 = none */
    const void *shared_gate;         /* [shared_dim, hidden] */
    const void *shared_up;           /* [shared_dim, hidden] */
    const void *shared_down;         /* [hidden, shared_dim] */
    float *y;                        /* [n_tokens, hidden], row stride y_stride (0 = hidden) */
    int64_t y_stride;
    /* optional packed forms (mk_pack_weights), used instead of the raw pointers above when not NULL:
     * gate/up [n_experts, expert_dim, hidden], down [n_experts, hidden, expert_dim], shared ones with 1 group */
    const mk_packed_weights *packed_gate, *packed_up, *packed_down;
    const mk_packed_weights *packed_shared_gate, *packed_shared_up, *packed_shared_down;
} mk_moe_ffn_args;

MOEKIT_API mk_status mk_moe_ffn(const mk_moe_ffn_args *args);

/* out[r, i] = silu(gate[r, i]) * up[r, i] for r < n_rows, i < dim. Strides in elements (0 = dim). out may equal
 * gate or up (same stride); other overlaps are undefined. */
MOEKIT_API mk_status mk_swiglu(const float *gate, int64_t gate_stride, const float *up, int64_t up_stride,
                               float *out, int64_t out_stride, int64_t n_rows, int64_t dim);

/* ---------------------------------------------------------------------------------------------------------------
 * 3. Top-k gating (replaces vLLM grouped_topk / FusedMoE routing, ggml sigmoid+add+argsort_top_k+get_rows)
 *
 * Per token t:
 *   score[e]  = sigmoid(logit[e])  or  softmax(logit)[e]                (score_func)
 *   select[e] = score[e] + (expert_bias ? expert_bias[e] : 0)           (the bias changes the choice only)
 *   group-limited selection when n_groups > 1: experts are split into n_groups equal consecutive groups; a group's
 *     score is the sum of its top-2 select values when expert_bias is given (DeepSeek-V3 noaux_tc), else its
 *     largest select value (DeepSeek-V2); only experts of the best topk_groups groups stay eligible.
 *   ids[t, :]  = the top_k eligible experts by select, in descending order; ties go to the lower expert index;
 *                a NaN select value is never chosen (if fewer than top_k experts are eligible and not NaN, the
 *                remaining slots get id -1 and weight 0).
 *   weights    = score[ids] (unbiased), divided by their sum when renormalize (and the sum is > 0), then
 *                multiplied by routed_scaling_factor.
 *   counts[e]  = number of tokens of this call that chose e, when counts is not NULL (overwritten, so it is all
 *                zeros after a call with n_tokens = 0).
 * ------------------------------------------------------------------------------------------------------------- */
typedef enum mk_score_func { MK_SCORE_SIGMOID = 0, MK_SCORE_SOFTMAX = 1 } mk_score_func;

typedef struct mk_moe_gate_args {
    int64_t n_tokens, n_experts, top_k;   /* 1 <= top_k <= n_experts */
    const float *logits;                  /* [n_tokens, n_experts], row stride logits_stride (0 = n_experts) */
    int64_t logits_stride;
    mk_score_func score_func;
    const float *expert_bias;             /* optional [n_experts] */
    int64_t n_groups, topk_groups;        /* 0 or 1 = plain top-k; else n_experts % n_groups == 0,
                                             1 <= topk_groups <= n_groups, top_k <= topk_groups * group size */
    int renormalize;                      /* 0 or 1 */
    float routed_scaling_factor;          /* multiplies the final weights; must be finite and > 0 */
    int32_t *ids;                         /* out [n_tokens, top_k] */
    float *weights;                       /* out [n_tokens, top_k] */
    int32_t *counts;                      /* optional out [n_experts] */
} mk_moe_gate_args;

MOEKIT_API mk_status mk_moe_gate(const mk_moe_gate_args *args);

/* Aux-loss-free load balancing: one bias step from the per-expert token counts of a batch (training only; at
 * inference the bias is a frozen constant). With mean = average count, dev_e = mean - counts[e]:
 *   MK_BIAS_SIGN     (DeepSeek-V3):  delta_e = rate * sign(dev_e)
 *   MK_BIAS_ADAPTIVE (moekit's own): delta_e = rate * clamp(dev_e / mean, -1, 1)
 *     (a step proportional to the relative load deviation, capped at rate: small imbalances take small steps,
 *      which damps the oscillation of the pure sign rule; see docs/api.md)
 * With zero_mean, the mean of delta is subtracted so that sum(bias) is preserved. When every count is 0 nothing
 * changes. bias[e] += delta_e. */
typedef enum mk_bias_rule { MK_BIAS_SIGN = 0, MK_BIAS_ADAPTIVE = 1 } mk_bias_rule;

MOEKIT_API mk_status mk_expert_bias_update(float *expert_bias, const int32_t *counts, int64_t n_experts,
                                           float rate, mk_bias_rule rule, int zero_mean);

/* ---------------------------------------------------------------------------------------------------------------
 * 4. Partial RoPE (replaces vLLM get_rope(rotary_dim < head_dim), ggml_rope_ext with n_dims < head_dim)
 *
 * Rotates dims [rotary_offset, rotary_offset + rotary_dim) of every head, in place; other dims are untouched.
 * Pair i (i < rotary_dim / 2) has frequency theta^(-2i / rotary_dim) and angle position * frequency:
 *   MK_ROPE_INTERLEAVED (GPT-J, openPangu): pairs (2i, 2i+1) of the slice
 *   MK_ROPE_NEOX                           : pairs (i, i + rotary_dim/2) of the slice
 *   (a, b) -> (a cos - b sin, b cos + a sin)
 * The cache holds cos/sin for positions [0, max_positions), computed from a double-precision angle.
 * ------------------------------------------------------------------------------------------------------------- */
typedef enum mk_rope_style { MK_ROPE_INTERLEAVED = 0, MK_ROPE_NEOX = 1 } mk_rope_style;

typedef struct mk_rope_config {
    int64_t rotary_dim;     /* even, >= 2 */
    int64_t rotary_offset;  /* first rotated dim, usually 0 */
    mk_rope_style style;
    double theta;           /* base, > 1 (openPangu-R-72B: 25.6e6) */
    int64_t max_positions;  /* >= 1 */
} mk_rope_config;

typedef struct mk_rope_cache mk_rope_cache;

MOEKIT_API mk_status mk_rope_cache_create(const mk_rope_config *config, mk_rope_cache **cache);
MOEKIT_API void mk_rope_cache_destroy(mk_rope_cache *cache);
/* The configuration a cache was created with. */
MOEKIT_API mk_status mk_rope_cache_config(const mk_rope_cache *cache, mk_rope_config *config);

/* Rotates q and/or k (either may be NULL, not both; F32 views) in place. positions has one entry per token
 * (q->n_tokens == k->n_tokens when both are given), each in [0, max_positions). */
MOEKIT_API mk_status mk_rope(const mk_rope_cache *cache, const int32_t *positions, const mk_heads *q,
                             const mk_heads *k);

/* ---------------------------------------------------------------------------------------------------------------
 * 5. RMSNorm, the sandwich post-norm, K-norm (replaces vLLM rms_norm / fused_add_rms_norm, ggml rms_norm+mul)
 *
 *   rmsnorm(v)[i] = v[i] / sqrt(mean(v^2) + eps) * weight[i]
 * ------------------------------------------------------------------------------------------------------------- */
/* out[r] = rmsnorm(x[r]) for n_rows rows of dim values. out may equal x (same stride). eps must be >= 0 and
 * finite. */
MOEKIT_API mk_status mk_rmsnorm(const float *x, int64_t x_stride, const float *weight, float eps, int64_t n_rows,
                                int64_t dim, float *out, int64_t out_stride);

/* The sandwich post-norm and residual add: residual[r] += rmsnorm(branch[r]) * weight. */
MOEKIT_API mk_status mk_rmsnorm_add(float *residual, int64_t residual_stride, const float *branch,
                                    int64_t branch_stride, const float *weight, float eps, int64_t n_rows,
                                    int64_t dim);

/* In place: every [head_dim] head of k (F32) becomes rmsnorm(head) * weight[head_dim]. Queries are never
 * normed in openPangu; this op exists for keys (and for the sink keys at load time). */
MOEKIT_API mk_status mk_knorm(const mk_heads *k, const float *weight, float eps);

/* The fused key path: k_out[t, h] = rope(rmsnorm(k[t, h]) * weight, positions[t]). k (F32) is not modified;
 * k_out (F32 or BF16, same shape as k) is typically a view of the KV-cache slots of these tokens. k_out may be
 * the same memory as k when both are F32 with equal strides. */
MOEKIT_API mk_status mk_knorm_rope(const mk_heads *k, const float *weight, float eps, const mk_rope_cache *cache,
                                   const int32_t *positions, const mk_heads *k_out);

/* ---------------------------------------------------------------------------------------------------------------
 * 6. Sink attention (replaces vLLM StaticSinkAttention / OpenPanguSinkAttention, ggml FLASH_ATTN_EXT + sinks)
 *
 * q [T, Hq, Dk] F32, K cache [S, Hk, Dk], V cache [S, Hk, Dv] (F32 or BF16), sinks K [Ns, Hk, Dk] and V
 * [Ns, Hk, Dv] (F32 or BF16; Ns may be 0; sink_v.data = NULL means zero values). Query t sits at position
 * S - T + t and sees cache keys j <= S - T + t (and, with window > 0, only j > S - T + t - window), plus every
 * sink, never masked. Query head h uses KV head h / (Hq / Hk). Logits are scale * q.k; with sink_logit (one per
 * query head, gpt-oss style) exp(sink_logit[h]) joins the softmax denominator with no value. All of it is one
 * softmax:
 *   out[t, h] = (sum_s e^{l_s} sink_v[s] + sum_j e^{l_j} v[j]) / (sum_s e^{l_s} + sum_j e^{l_j} + e^{sink_logit})
 * ------------------------------------------------------------------------------------------------------------- */
typedef struct mk_attn_args {
    mk_heads q;             /* [T, Hq, Dk] F32 */
    mk_heads k_cache;       /* [S, Hk, Dk] F32 or BF16 */
    mk_heads v_cache;       /* [S, Hk, Dv] F32 or BF16 */
    mk_heads sink_k;        /* [Ns, Hk, Dk]; n_tokens = 0 for no sink tokens */
    mk_heads sink_v;        /* [Ns, Hk, Dv]; data NULL = zeros */
    const float *sink_logit;/* optional [Hq] */
    int64_t window;         /* 0 = full causal; else the number of most recent cache keys a query sees (itself
                               included) */
    float scale;            /* logit scale, > 0 and finite (openPangu: 1/sqrt(192)) */
    mk_heads out;           /* [T, Hq, Dv] F32 */
} mk_attn_args;

MOEKIT_API mk_status mk_sink_attention(const mk_attn_args *args);

#ifdef __cplusplus
}
#endif

#endif /* MOEKIT_H */
