/*
 * selfcheck.c: the suite behind `moekit check`. Each case builds seeded inputs once, runs the op through the public
 * API with the ISA capped at the ISA under test, restores every buffer the op may write, runs it again capped at
 * MK_ISA_REF, and compares in double: NMSE and max |diff| over the output views, bitwise equality of everything
 * outside them (row padding, a guard after every buffer, inputs the op must not modify).
 */
#include "selfcheck.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- tolerances ------------------------------------------------------------------------------------------------
 * NMSE bounds in the style of ggml test-backend-ops (default 1e-7; MUL_MAT and FLASH_ATTN_EXT 5e-4).
 *  - 1e-7 for element-wise and row ops: a kernel differs from the double-precision oracle by float rounding only.
 *  - 1e-6 for F32 GEMM / FFN / attention: dot products of up to 4608 terms summed in another order, plus exp.
 *  - 5e-4 for BF16 weights, caches or sinks: a fast kernel may round the activations (or the attention
 *    probabilities) to BF16 to use vdpbf16ps; the oracle keeps them in F32/double.
 *  - 5e-6 for knorm_rope into BF16: both sides round to BF16 (nearest even), so they differ only where the F32
 *    values fall on opposite sides of a rounding boundary (NMSE ~1e-9 for a good kernel, ~2e-6 for one at the F32
 *    bound). Truncating instead of rounding gives ~1.6e-5, which this bound rejects.
 * Gating adds an exact rule: both runs must pick the same expert set per token and the same counts. */
/* The NMSE averages over all outputs, so one wrong element among 10^4 can hide under a 5e-4 bound. The second rule
 * catches such local errors: max |out - ref| <= MKI_SELFCHECK_MAX_REL_FACTOR * sqrt(tol) * rms(ref). sqrt(tol) is
 * the relative RMS error the bound allows; the factor leaves room for the largest element of a legitimate kernel (a
 * BF16 output one ulp off at an element 5x the RMS is 0.02 x rms, under 20 x sqrt(5e-6) = 0.045). */
static const mki_selfcheck_tolerance tolerances[] = {
    {MK_OP_GROUPED_GEMM, MK_F32, 1e-6, "F32 weights"},
    {MK_OP_GROUPED_GEMM, MK_BF16, 5e-4, "BF16 weights"},
    {MK_OP_MOE_FFN, MK_F32, 1e-6, "F32 weights"},
    {MK_OP_MOE_FFN, MK_BF16, 5e-4, "BF16 weights"},
    {MK_OP_SWIGLU, MK_F32, 1e-7, ""},
    {MK_OP_MOE_GATE, MK_F32, 1e-7, "weights as a dense [T, E] matrix; expert sets and counts must be equal"},
    {MK_OP_ROPE, MK_F32, 1e-7, ""},
    {MK_OP_RMSNORM, MK_F32, 1e-7, ""},
    {MK_OP_RMSNORM_ADD, MK_F32, 1e-7, ""},
    {MK_OP_KNORM, MK_F32, 1e-7, ""},
    {MK_OP_KNORM_ROPE, MK_F32, 1e-7, "F32 k_out"},
    {MK_OP_KNORM_ROPE, MK_BF16, 5e-6, "BF16 k_out (both sides round to BF16)"},
    {MK_OP_SINK_ATTENTION, MK_F32, 1e-6, "F32 caches and sinks"},
    {MK_OP_SINK_ATTENTION, MK_BF16, 5e-4, "BF16 caches or sinks"},
};

const mki_selfcheck_tolerance *mki_selfcheck_tolerances(int *count) {
    if (count) *count = (int)(sizeof tolerances / sizeof tolerances[0]);
    return tolerances;
}

double mki_selfcheck_tol(mk_op op, mk_dtype dtype) {
    double f32 = 0.0;
    for (size_t i = 0; i < sizeof tolerances / sizeof tolerances[0]; i++) {
        if (tolerances[i].op != op) continue;
        if (tolerances[i].dtype == dtype) return tolerances[i].nmse;
        if (tolerances[i].dtype == MK_F32) f32 = tolerances[i].nmse;
    }
    return f32;
}

const char *mki_selfcheck_outcome_name(mki_selfcheck_outcome outcome) {
    switch (outcome) {
    case MKI_SELFCHECK_PASS: return "PASS";
    case MKI_SELFCHECK_FAIL: return "FAIL";
    case MKI_SELFCHECK_ORACLE: return "oracle";
    case MKI_SELFCHECK_ORACLE_BAD: return "ORACLE-BAD";
    case MKI_SELFCHECK_SKIP: return "skip";
    }
    return "?";
}

/* ---- case specifications ----------------------------------------------------------------------------------------- */
typedef struct sc_rows_spec { /* rmsnorm, rmsnorm_add, swiglu */
    int64_t n_rows, dim;
    int64_t pad_a, pad_b, pad_out; /* extra elements per row: x / residual / gate; branch / up; out */
    int in_place;                  /* rmsnorm: out = x; swiglu: out = gate */
    float range;                   /* inputs uniform in [-range, range] (0 = 1) */
} sc_rows_spec;

typedef struct sc_heads_spec { /* knorm, knorm_rope (the k view), rope (q and/or k) */
    int64_t n_tokens, head_dim;
    int64_t n_heads;               /* knorm, knorm_rope: k heads; rope: q heads (0 = q NULL) */
    int64_t n_heads_k;             /* rope: k heads (0 = k NULL) */
    int64_t token_pad, head_pad;   /* extra elements per token / per head of the input views */
    int fused;                     /* rope: q and k are views into one fused [T, q | k | v] row buffer */
    int64_t rotary_dim, rotary_offset;
    mk_rope_style style;
    double theta;
    int64_t max_positions;
    int64_t pos_start;             /* consecutive positions from here; -1 = random in [0, max_positions) */
    mk_dtype out_dtype;            /* knorm_rope: k_out dtype */
    int64_t out_token_pad;         /* knorm_rope: k_out token padding (a slot range of a bigger cache) */
    int in_place;                  /* knorm_rope: k_out = k */
} sc_heads_spec;

enum { SC_LOGITS_UNIFORM = 0, SC_LOGITS_TIES, SC_LOGITS_NAN };

typedef struct sc_gate_spec {
    int64_t n_tokens, n_experts, top_k;
    mk_score_func score_func;
    int bias;
    int64_t n_groups, topk_groups;
    int renormalize;
    float scale; /* routed_scaling_factor (0 = 1) */
    int64_t logits_pad;
    int logits;  /* SC_LOGITS_* */
    int counts;
} sc_gate_spec;

typedef struct sc_gemm_spec {
    int64_t n_groups;
    int64_t rows[8];      /* routed rows of each group */
    int64_t n, k;
    int gather;           /* row_index: rows of x drawn at random from x_rows */
    int64_t x_rows;
    int scatter;          /* out_index into y_rows rows; with accumulate repeats are allowed, else a permutation */
    int64_t y_rows;
    int accumulate, scale;
    int64_t x_pad, y_pad;
} sc_gemm_spec;

typedef struct sc_ffn_spec {
    int64_t n_tokens, hidden, n_experts, expert_dim, top_k, shared_dim;
    int missing;          /* about one slot in four gets id -1 */
    int64_t x_pad, y_pad;
    int lazy;             /* materialise only the routed experts' weights (the rest stay untouched zero pages) */
} sc_ffn_spec;

typedef struct sc_attn_spec {
    int64_t n_tokens, seq_len, n_heads_q, n_heads_kv, head_dim_qk, head_dim_v, n_sinks;
    mk_dtype sink_dtype;  /* cache dtype is the case dtype */
    int sink_v_zero;      /* sink_v.data = NULL */
    int sink_logit;
    int64_t window;
    int fused_q;          /* q is a view into a fused [T, q | k | v] row buffer */
    int64_t out_pad;
} sc_attn_spec;

typedef struct sc_case {
    mki_selfcheck_case pub;
    union {
        sc_rows_spec rows;
        sc_heads_spec heads;
        sc_gate_spec gate;
        sc_gemm_spec gemm;
        sc_ffn_spec ffn;
        sc_attn_spec attn;
    } u;
} sc_case;

#define PANGU_THETA 25.6e6
#define PANGU_MAX_POS 131072
#define Q 1 /* in the --quick subset */
#define F MK_F32
#define B MK_BF16

/* The suite. Labels say T (tokens), shapes, and what the case exercises; "(pangu)" marks openPangu-R-72B shapes. */
static const sc_case cases[] = {
    /* rmsnorm */
    {{MK_OP_RMSNORM, "T=1 x 5", F, Q}, .u.rows = {1, 5}},
    {{MK_OP_RMSNORM, "T=7 x 33, strided x and out", F, Q}, .u.rows = {7, 33, .pad_a = 7, .pad_out = 3}},
    {{MK_OP_RMSNORM, "T=3 x 100, in place", F, Q}, .u.rows = {3, 100, .in_place = 1}},
    {{MK_OP_RMSNORM, "T=0 x 33 (no rows: nothing written)", F, Q}, .u.rows = {0, 33}},
    {{MK_OP_RMSNORM, "T=16 x 4608 (pangu)", F, Q}, .u.rows = {16, 4608}},
    {{MK_OP_RMSNORM, "T=64 x 4608 (pangu)", F, 0}, .u.rows = {64, 4608}},
    /* rmsnorm_add */
    {{MK_OP_RMSNORM_ADD, "T=1 x 5", F, Q}, .u.rows = {1, 5}},
    {{MK_OP_RMSNORM_ADD, "T=7 x 33, strided residual and branch", F, Q}, .u.rows = {7, 33, .pad_a = 2, .pad_b = 9}},
    {{MK_OP_RMSNORM_ADD, "T=16 x 4608 (pangu)", F, Q}, .u.rows = {16, 4608}},
    {{MK_OP_RMSNORM_ADD, "T=64 x 4608 (pangu)", F, 0}, .u.rows = {64, 4608}},
    /* knorm */
    {{MK_OP_KNORM, "T=1, 1 head x 5", F, Q}, .u.heads = {1, 5, 1}},
    {{MK_OP_KNORM, "T=7, 3 heads x 33, strided heads", F, Q}, .u.heads = {7, 33, 3, .token_pad = 5, .head_pad = 3}},
    {{MK_OP_KNORM, "T=16, 4 heads x 192 (pangu)", F, Q}, .u.heads = {16, 192, 4}},
    {{MK_OP_KNORM, "128 sink keys, 4 heads x 192 (pangu)", F, Q}, .u.heads = {128, 192, 4}},
    /* knorm_rope */
    {{MK_OP_KNORM_ROPE, "T=3, 2 heads x 10, rope 4", F, Q},
     .u.heads = {3, 10, 2, .rotary_dim = 4, .theta = 10000, .max_positions = 16, .pos_start = 5}},
    {{MK_OP_KNORM_ROPE, "T=7, 3 heads x 33, rope 10 at dim 6, neox, strided", F, Q},
     .u.heads = {7, 33, 3, .token_pad = 4, .head_pad = 1, .rotary_dim = 10, .rotary_offset = 6, .style = MK_ROPE_NEOX,
                 .theta = 10000, .max_positions = 64, .pos_start = -1, .out_token_pad = 11}},
    {{MK_OP_KNORM_ROPE, "T=5, 2 heads x 100, rope 64, random pos, bf16 out", B, Q},
     .u.heads = {5, 100, 2, .rotary_dim = 64, .theta = PANGU_THETA, .max_positions = 4096, .pos_start = -1,
                 .out_dtype = B}},
    {{MK_OP_KNORM_ROPE, "T=4, 2 heads x 40, rope 16, in place", F, Q},
     .u.heads = {4, 40, 2, .rotary_dim = 16, .theta = 10000, .max_positions = 4096, .pos_start = 2047, .in_place = 1}},
    {{MK_OP_KNORM_ROPE, "T=16, 4 heads x 192, rope 64, pos 2040.. (pangu)", F, Q},
     .u.heads = {16, 192, 4, .rotary_dim = 64, .theta = PANGU_THETA, .max_positions = PANGU_MAX_POS,
                 .pos_start = 2040}},
    {{MK_OP_KNORM_ROPE, "T=16, 4 heads x 192, pos 2040.., into bf16 cache (pangu)", B, Q},
     .u.heads = {16, 192, 4, .rotary_dim = 64, .theta = PANGU_THETA, .max_positions = PANGU_MAX_POS,
                 .pos_start = 2040, .out_dtype = B, .out_token_pad = 4 * 192}},
    {{MK_OP_KNORM_ROPE, "T=64, 4 heads x 192, random pos < 131072 (pangu)", F, 0},
     .u.heads = {64, 192, 4, .rotary_dim = 64, .theta = PANGU_THETA, .max_positions = PANGU_MAX_POS,
                 .pos_start = -1}},
    /* rope */
    {{MK_OP_ROPE, "T=1, q 1 head x 4, rope 4", F, Q},
     .u.heads = {1, 4, 1, .rotary_dim = 4, .theta = 10000, .max_positions = 8, .pos_start = 3}},
    {{MK_OP_ROPE, "T=7, q 3 + k 1 heads x 33, rope 10", F, Q},
     .u.heads = {7, 33, 3, .n_heads_k = 1, .rotary_dim = 10, .theta = 10000, .max_positions = 4096,
                 .pos_start = 2045}},
    {{MK_OP_ROPE, "T=7, q 3 + k 1 heads x 33, rope 10 at dim 6, neox", F, Q},
     .u.heads = {7, 33, 3, .n_heads_k = 1, .token_pad = 2, .head_pad = 3, .rotary_dim = 10, .rotary_offset = 6,
                 .style = MK_ROPE_NEOX, .theta = 10000, .max_positions = 4096, .pos_start = -1}},
    {{MK_OP_ROPE, "T=5, k only 2 heads x 100, rope 64, random pos", F, Q},
     .u.heads = {5, 100, 0, .n_heads_k = 2, .rotary_dim = 64, .theta = PANGU_THETA, .max_positions = 4096,
                 .pos_start = -1}},
    {{MK_OP_ROPE, "T=4, q only 4 heads x 12, rope 12 (whole head), neox", F, Q},
     .u.heads = {4, 12, 4, .rotary_dim = 12, .style = MK_ROPE_NEOX, .theta = 500000, .max_positions = 4096,
                 .pos_start = 2048}},
    {{MK_OP_ROPE, "T=16, q 64 + k 4 heads x 192 in qkv, pos 2040.. (pangu)", F, Q},
     .u.heads = {16, 192, 64, .n_heads_k = 4, .fused = 1, .rotary_dim = 64, .theta = PANGU_THETA,
                 .max_positions = PANGU_MAX_POS, .pos_start = 2040}},
    {{MK_OP_ROPE, "T=64, q 64 heads x 192, random pos < 131072 (pangu)", F, 0},
     .u.heads = {64, 192, 64, .rotary_dim = 64, .theta = PANGU_THETA, .max_positions = PANGU_MAX_POS,
                 .pos_start = -1}},
    /* swiglu */
    {{MK_OP_SWIGLU, "T=1 x 5", F, Q}, .u.rows = {1, 5}},
    {{MK_OP_SWIGLU, "T=7 x 33, strided", F, Q}, .u.rows = {7, 33, .pad_a = 3, .pad_b = 1, .pad_out = 6}},
    {{MK_OP_SWIGLU, "T=3 x 100, out = gate", F, Q}, .u.rows = {3, 100, .pad_a = 4, .in_place = 1}},
    {{MK_OP_SWIGLU, "T=4 x 37, inputs in [-100, 100]", F, Q}, .u.rows = {4, 37, .range = 100}},
    {{MK_OP_SWIGLU, "T=16 x 1280 (pangu expert)", F, Q}, .u.rows = {16, 1280, .range = 4}},
    {{MK_OP_SWIGLU, "T=16 x 2560 (pangu shared)", F, Q}, .u.rows = {16, 2560, .range = 4}},
    /* moe_gate */
    {{MK_OP_MOE_GATE, "T=1, E=5, top-2, softmax", F, Q}, .u.gate = {1, 5, 2, MK_SCORE_SOFTMAX}},
    {{MK_OP_MOE_GATE, "T=7, E=33, top-3, sigmoid + bias, renorm", F, Q},
     .u.gate = {7, 33, 3, MK_SCORE_SIGMOID, .bias = 1, .renormalize = 1, .logits_pad = 5, .counts = 1}},
    {{MK_OP_MOE_GATE, "T=7, E=32, top-4, 4 groups keep 2, sigmoid + bias", F, Q},
     .u.gate = {7, 32, 4, MK_SCORE_SIGMOID, .bias = 1, .n_groups = 4, .topk_groups = 2, .renormalize = 1,
                .scale = 2.5f, .counts = 1}},
    {{MK_OP_MOE_GATE, "T=5, E=16, top-4, 4 groups keep 2, softmax", F, Q},
     .u.gate = {5, 16, 4, MK_SCORE_SOFTMAX, .n_groups = 4, .topk_groups = 2, .counts = 1}},
    {{MK_OP_MOE_GATE, "T=9, E=12, top-4, tied logits", F, Q},
     .u.gate = {9, 12, 4, MK_SCORE_SIGMOID, .renormalize = 1, .logits = SC_LOGITS_TIES, .counts = 1}},
    {{MK_OP_MOE_GATE, "T=4, E=10, top-8, NaN logits, sigmoid + bias", F, Q},
     .u.gate = {4, 10, 8, MK_SCORE_SIGMOID, .bias = 1, .renormalize = 1, .logits = SC_LOGITS_NAN, .counts = 1}},
    {{MK_OP_MOE_GATE, "T=4, E=10, top-3, NaN logits, softmax", F, Q},
     .u.gate = {4, 10, 3, MK_SCORE_SOFTMAX, .renormalize = 1, .logits = SC_LOGITS_NAN}},
    {{MK_OP_MOE_GATE, "T=3, E=20, top-20 (every expert), softmax, renorm", F, Q},
     .u.gate = {3, 20, 20, MK_SCORE_SOFTMAX, .renormalize = 1, .counts = 1}},
    {{MK_OP_MOE_GATE, "T=64, E=80, top-8, sigmoid + bias, renorm, x2.5 (pangu)", F, Q},
     .u.gate = {64, 80, 8, MK_SCORE_SIGMOID, .bias = 1, .renormalize = 1, .scale = 2.5f, .counts = 1}},
    {{MK_OP_MOE_GATE, "T=512, E=80, top-8, sigmoid + bias, renorm, x2.5 (pangu)", F, 0},
     .u.gate = {512, 80, 8, MK_SCORE_SIGMOID, .bias = 1, .renormalize = 1, .scale = 2.5f, .counts = 1}},
    /* grouped_gemm */
    {{MK_OP_GROUPED_GEMM, "3 groups rows {2,0,5}, N=5 K=33", F, Q}, .u.gemm = {3, {2, 0, 5}, 5, 33}},
    {{MK_OP_GROUPED_GEMM, "3 groups rows {2,0,5}, N=5 K=33", B, Q}, .u.gemm = {3, {2, 0, 5}, 5, 33}},
    {{MK_OP_GROUPED_GEMM, "4 groups rows {1,0,3,7}, N=33 K=100, gather, scatter-add", F, Q},
     .u.gemm = {4, {1, 0, 3, 7}, 33, 100, .gather = 1, .x_rows = 6, .scatter = 1, .y_rows = 4, .accumulate = 1,
                .scale = 1}},
    {{MK_OP_GROUPED_GEMM, "4 groups rows {1,0,3,7}, N=33 K=100, gather, scatter-add", B, Q},
     .u.gemm = {4, {1, 0, 3, 7}, 33, 100, .gather = 1, .x_rows = 6, .scatter = 1, .y_rows = 4, .accumulate = 1,
                .scale = 1}},
    {{MK_OP_GROUPED_GEMM, "2 groups rows {3,4}, N=17 K=7, strided, permuted out", F, Q},
     .u.gemm = {2, {3, 4}, 17, 7, .scatter = 1, .y_rows = 9, .x_pad = 3, .y_pad = 5}},
    {{MK_OP_GROUPED_GEMM, "3 empty groups (M=0: nothing written)", F, Q}, .u.gemm = {3, {0, 0, 0}, 8, 16}},
    {{MK_OP_GROUPED_GEMM, "8 groups rows {9,0,1,17,4,0,30,3}, N=64 K=256", B, Q},
     .u.gemm = {8, {9, 0, 1, 17, 4, 0, 30, 3}, 64, 256, .gather = 1, .x_rows = 16, .scale = 1}},
    {{MK_OP_GROUPED_GEMM, "gate+up: rows {0,1,5}, N=2560 K=4608, gather (pangu)", F, 0},
     .u.gemm = {3, {0, 1, 5}, 2560, 4608, .gather = 1, .x_rows = 4}},
    {{MK_OP_GROUPED_GEMM, "gate+up: rows {0,1,5}, N=2560 K=4608, gather (pangu)", B, 0},
     .u.gemm = {3, {0, 1, 5}, 2560, 4608, .gather = 1, .x_rows = 4}},
    {{MK_OP_GROUPED_GEMM, "down: rows {0,1,5}, N=4608 K=1280, scatter-add (pangu)", F, 0},
     .u.gemm = {3, {0, 1, 5}, 4608, 1280, .scatter = 1, .y_rows = 4, .accumulate = 1, .scale = 1}},
    {{MK_OP_GROUPED_GEMM, "down: rows {0,1,5}, N=4608 K=1280, scatter-add (pangu)", B, 0},
     .u.gemm = {3, {0, 1, 5}, 4608, 1280, .scatter = 1, .y_rows = 4, .accumulate = 1, .scale = 1}},
    /* moe_ffn */
    {{MK_OP_MOE_FFN, "T=1 x 5, E=3 x 7, top-2", F, Q}, .u.ffn = {1, 5, 3, 7, 2}},
    {{MK_OP_MOE_FFN, "T=7 x 33, E=6 x 10, top-3, some ids -1, shared 12", B, Q},
     .u.ffn = {7, 33, 6, 10, 3, 12, .missing = 1}},
    {{MK_OP_MOE_FFN, "T=4 x 64, E=8 x 32, top-8 (all), shared 16, strided", F, Q},
     .u.ffn = {4, 64, 8, 32, 8, 16, .x_pad = 3, .y_pad = 7}},
    {{MK_OP_MOE_FFN, "T=16 x 512, E=16 x 128, top-4, shared 256", B, Q},
     .u.ffn = {16, 512, 16, 128, 4, 256}},
    {{MK_OP_MOE_FFN, "T=2 x 4608, E=16 x 1280, top-8, shared 2560 (pangu widths)", F, 0},
     .u.ffn = {2, 4608, 16, 1280, 8, 2560, .lazy = 1}},
    {{MK_OP_MOE_FFN, "T=2 x 4608, E=80 x 1280, top-8, shared 2560 (pangu)", B, 0},
     .u.ffn = {2, 4608, 80, 1280, 8, 2560, .lazy = 1}},
    /* sink_attention: the case dtype is the cache dtype */
    {{MK_OP_SINK_ATTENTION, "T=1 S=1, H 1/1, D 5/3, no sinks", F, Q}, .u.attn = {1, 1, 1, 1, 5, 3, 0}},
    {{MK_OP_SINK_ATTENTION, "T=7 S=20, H 4/2, D 33/17, 1 sink", F, Q}, .u.attn = {7, 20, 4, 2, 33, 17, 1}},
    {{MK_OP_SINK_ATTENTION, "T=5 S=40, H 6/3, D 16/8, 3 sinks, window 8", F, Q},
     .u.attn = {5, 40, 6, 3, 16, 8, 3, .window = 8}},
    {{MK_OP_SINK_ATTENTION, "T=3 S=10, H 2/1, D 8/8, scalar sink logit only", F, Q},
     .u.attn = {3, 10, 2, 1, 8, 8, 0, .sink_logit = 1}},
    {{MK_OP_SINK_ATTENTION, "T=4 S=30, H 4/1, D 12/20, 2 sinks, sink_v NULL", B, Q},
     .u.attn = {4, 30, 4, 1, 12, 20, 2, .sink_v_zero = 1}},
    {{MK_OP_SINK_ATTENTION, "T=6 S=50, H 4/2, D 24/16, 5 sinks + logit, window 16", B, Q},
     .u.attn = {6, 50, 4, 2, 24, 16, 5, .sink_dtype = B, .sink_logit = 1, .window = 16}},
    {{MK_OP_SINK_ATTENTION, "T=S=3, H 4/2, D 16/16, 2 sinks, q in qkv, strided out", F, Q},
     .u.attn = {3, 3, 4, 2, 16, 16, 2, .fused_q = 1, .out_pad = 5}},
    {{MK_OP_SINK_ATTENTION, "decode T=1 S=300, H 64/4, D 192/128, 128 sinks (pangu)", F, Q},
     .u.attn = {1, 300, 64, 4, 192, 128, 128}},
    {{MK_OP_SINK_ATTENTION, "decode T=1 S=300, H 64/4, D 192/128, 128 sinks (pangu)", B, Q},
     .u.attn = {1, 300, 64, 4, 192, 128, 128, .sink_dtype = B}},
    {{MK_OP_SINK_ATTENTION, "decode T=4 S=2100, H 64/4, 128 sinks, window 128", F, 0},
     .u.attn = {4, 2100, 64, 4, 192, 128, 128, .window = 128}},
    {{MK_OP_SINK_ATTENTION, "prefill T=S=64, H 64/4, 128 sinks, q in qkv (pangu)", F, 0},
     .u.attn = {64, 64, 64, 4, 192, 128, 128, .fused_q = 1}},
    {{MK_OP_SINK_ATTENTION, "prefill T=S=64, H 64/4, D 192/128, 128 sinks (pangu)", B, 0},
     .u.attn = {64, 64, 64, 4, 192, 128, 128, .sink_dtype = B}},
};

#undef Q
#undef F
#undef B

#define N_CASES ((int)(sizeof cases / sizeof cases[0]))

int mki_selfcheck_n_cases(int quick) {
    int n = 0;
    for (int i = 0; i < N_CASES; i++) n += !quick || cases[i].pub.quick;
    return n;
}

const mki_selfcheck_case *mki_selfcheck_get_case(int case_index) {
    if (case_index < 0 || case_index >= N_CASES) return NULL;
    return &cases[case_index].pub;
}

/* ---- deterministic inputs ------------------------------------------------------------------------------------- */
typedef struct sc_rng { uint64_t state; } sc_rng;

static uint64_t rng_next(sc_rng *r) { /* splitmix64 */
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rng_uniform(sc_rng *r, float lo, float hi) {
    return lo + (hi - lo) * (float)((double)(rng_next(r) >> 40) * 0x1p-24);
}

static int64_t rng_below(sc_rng *r, int64_t n) { return (int64_t)(rng_next(r) % (uint64_t)n); }

/* ---- one case instance: allocations, buffers checked for stray writes, output views -------------------------- */
enum { SC_F32, SC_BF16, SC_I32 };
#define SC_GUARD 16        /* elements after every checked buffer: a write there is a stray write */
#define SC_MAX_ALLOCS 32
#define SC_MAX_BUFS 8
#define SC_MAX_VIEWS 8
#define SC_MAX_RUNS 3         /* calls under SC_REPEAT_BELOW_S run 3 times, under 4x that twice, longer ones once */
#define SC_REPEAT_BELOW_S 0.05

typedef struct sc_buffer { /* a buffer whose every element is accounted for after a run */
    void *data;
    int kind;
    int64_t n; /* elements, guard included */
    void *snapshot;
} sc_buffer;

typedef struct sc_view { /* the part of a buffer the op writes: n0 x n1 x n2 from offset, strides s0, s1 */
    int buf;
    int64_t offset, n0, n1, n2, s0, s1;
} sc_view;

typedef struct sc_inst {
    const sc_case *c;
    sc_rng rng;
    int oom;
    int broken; /* an output or buffer could not be registered (SC_MAX_* too small): a harness bug */
    struct { void *p; size_t bytes; } allocs[SC_MAX_ALLOCS];
    int n_allocs;
    sc_buffer bufs[SC_MAX_BUFS];
    int n_bufs;
    sc_view views[SC_MAX_VIEWS];
    int n_views;
    mk_rope_cache *rope;
    /* the call */
    float *ra, *rb, *rout, *weight; /* rows ops: x / residual / gate, branch / up, out */
    int64_t sa, sb, sout;
    mk_heads hq, hk, hout;          /* heads ops */
    int32_t *positions;
    mk_moe_gate_args gate;
    mk_grouped_gemm_args gemm;
    mk_moe_ffn_args ffn;
    mk_attn_args attn;
} sc_inst;

static void *sc_alloc(sc_inst *in, int64_t n, size_t elem) {
    if (in->oom || in->n_allocs == SC_MAX_ALLOCS) {
        in->oom = 1;
        return NULL;
    }
    size_t bytes = (size_t)(n > 0 ? n : 1) * elem;
    void *p = calloc(1, bytes); /* calloc: large untouched parts stay unmapped zero pages (lazy expert weights) */
    if (!p) {
        in->oom = 1;
        return NULL;
    }
    in->allocs[in->n_allocs].p = p;
    in->allocs[in->n_allocs].bytes = bytes;
    in->n_allocs++;
    return p;
}

static void fill_f32(sc_inst *in, float *p, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) p[i] = rng_uniform(&in->rng, lo, hi);
}

static void fill_bf16(sc_inst *in, uint16_t *p, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) p[i] = mki_f32_to_bf16(rng_uniform(&in->rng, lo, hi));
}

static void fill(sc_inst *in, void *p, mk_dtype dtype, int64_t n, float lo, float hi) {
    if (dtype == MK_BF16)
        fill_bf16(in, p, n, lo, hi);
    else
        fill_f32(in, p, n, lo, hi);
}

/* n elements of dtype plus the guard, all random in [lo, hi]. */
static void *new_filled(sc_inst *in, mk_dtype dtype, int64_t n, float lo, float hi) {
    void *p = sc_alloc(in, n + SC_GUARD, mk_dtype_size(dtype));
    if (p) fill(in, p, dtype, n + SC_GUARD, lo, hi);
    return p;
}

/* Registers the allocation holding p as checked: after a run, every element of it must be unchanged unless it lies in
 * one of its views. Returns the buffer index, or -1. */
static int check_buffer(sc_inst *in, void *p, int kind) {
    for (int b = 0; b < in->n_bufs; b++)
        if (in->bufs[b].data == p) return b;
    int a = 0;
    while (a < in->n_allocs && in->allocs[a].p != p) a++;
    if (a == in->n_allocs || in->n_bufs == SC_MAX_BUFS) { /* a case the harness cannot account for: say so */
        in->broken = 1;
        return -1;
    }
    sc_buffer *b = &in->bufs[in->n_bufs];
    b->data = p;
    b->kind = kind;
    b->n = (int64_t)(in->allocs[a].bytes / (kind == SC_BF16 ? 2 : 4));
    b->snapshot = malloc(in->allocs[a].bytes);
    if (!b->snapshot) {
        in->oom = 1;
        return -1;
    }
    memcpy(b->snapshot, p, in->allocs[a].bytes);
    return in->n_bufs++;
}

static void add_view(sc_inst *in, void *base, int kind, int64_t offset, int64_t n0, int64_t n1, int64_t n2, int64_t s0,
                     int64_t s1) {
    int b = check_buffer(in, base, kind);
    if (b < 0 || in->n_views == SC_MAX_VIEWS) {
        in->broken = 1;
        return;
    }
    in->views[in->n_views++] = (sc_view){b, offset, n0, n1, n2, s0, s1};
}

static void add_rows_view(sc_inst *in, void *base, int kind, int64_t n_rows, int64_t dim, int64_t stride) {
    add_view(in, base, kind, 0, n_rows, 1, dim, stride, stride);
}

static void add_heads_view(sc_inst *in, void *base, int kind, const mk_heads *h) {
    int64_t offset = (int64_t)(((const char *)h->data - (const char *)base) / (kind == SC_BF16 ? 2 : 4));
    add_view(in, base, kind, offset, h->n_tokens, h->n_heads, h->head_dim, h->token_stride, h->head_stride);
}

static int in_view(const sc_view *v, int64_t e) {
    if (e < v->offset || v->s0 < 1 || v->s1 < 1) return 0;
    int64_t rel = e - v->offset, r0 = rel / v->s0, rem = rel % v->s0;
    if (r0 >= v->n0) return 0;
    return rem / v->s1 < v->n1 && rem % v->s1 < v->n2;
}

static void sc_free(sc_inst *in) {
    for (int b = 0; b < in->n_bufs; b++) free(in->bufs[b].snapshot);
    for (int a = 0; a < in->n_allocs; a++) free(in->allocs[a].p);
    mk_rope_cache_destroy(in->rope);
}

static mk_heads heads_view(void *data, mk_dtype dtype, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                           int64_t token_stride, int64_t head_stride) {
    mk_heads h = {0};
    h.data = data;
    h.dtype = dtype;
    h.n_tokens = n_tokens;
    h.n_heads = n_heads;
    h.head_dim = head_dim;
    h.token_stride = token_stride;
    h.head_stride = head_stride;
    return h;
}

/* A [n_tokens, n_heads, head_dim] view with padded strides inside a new random buffer. */
static mk_heads new_heads(sc_inst *in, mk_dtype dtype, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                          int64_t token_pad, int64_t head_pad, float range) {
    const int64_t head_stride = head_dim + head_pad, token_stride = n_heads * head_stride + token_pad;
    void *data = new_filled(in, dtype, n_tokens * token_stride, -range, range);
    return heads_view(data, dtype, n_tokens, n_heads, head_dim, token_stride, head_stride);
}

/* ---- setup per op ------------------------------------------------------------------------------------------------ */
static mk_status setup_rows(sc_inst *in) {
    const sc_rows_spec *s = &in->c->u.rows;
    const int64_t rows = s->n_rows, dim = s->dim;
    const float range = s->range > 0 ? s->range : 1.0f;
    in->sa = dim + s->pad_a;
    in->sb = dim + s->pad_b;
    in->sout = dim + s->pad_out;
    in->ra = new_filled(in, MK_F32, rows * in->sa, -range, range);
    if (in->c->pub.op != MK_OP_RMSNORM) in->rb = new_filled(in, MK_F32, rows * in->sb, -range, range);
    if (in->c->pub.op != MK_OP_SWIGLU) in->weight = new_filled(in, MK_F32, dim, 0.5f, 1.5f);
    if (in->oom) return MK_ENOMEM;
    if (in->c->pub.op != MK_OP_SWIGLU) { /* rows of the normed input 1/16 .. 16 apart: the result must not care */
        float *normed = in->c->pub.op == MK_OP_RMSNORM ? in->ra : in->rb;
        const int64_t stride = in->c->pub.op == MK_OP_RMSNORM ? in->sa : in->sb;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = 0; i < dim; i++) normed[r * stride + i] *= ldexpf(1.0f, 2 * (int)(r % 5) - 4);
    }
    if (s->in_place) {
        in->rout = in->ra;
        in->sout = in->sa;
    } else if (in->c->pub.op != MK_OP_RMSNORM_ADD) {
        in->rout = new_filled(in, MK_F32, rows * in->sout, -1.0f, 1.0f);
        if (in->oom) return MK_ENOMEM;
    }
    if (in->c->pub.op == MK_OP_RMSNORM_ADD) {
        add_rows_view(in, in->ra, SC_F32, rows, dim, in->sa); /* residual, in place */
        check_buffer(in, in->rb, SC_F32);
    } else {
        add_rows_view(in, in->rout, SC_F32, rows, dim, in->sout);
        check_buffer(in, in->ra, SC_F32);
        if (in->rb) check_buffer(in, in->rb, SC_F32);
    }
    return in->oom ? MK_ENOMEM : MK_OK;
}

static int32_t *new_positions(sc_inst *in, int64_t n_tokens, int64_t start, int64_t max_positions) {
    int32_t *p = sc_alloc(in, n_tokens, sizeof *p);
    for (int64_t t = 0; p && t < n_tokens; t++)
        p[t] = (int32_t)(start >= 0 ? start + t : (t == 0 ? max_positions - 1 : rng_below(&in->rng, max_positions)));
    return p;
}

static mk_status setup_heads(sc_inst *in) {
    const sc_heads_spec *s = &in->c->u.heads;
    const mk_op op = in->c->pub.op;
    mk_status st;
    if (op != MK_OP_KNORM) {
        const mk_rope_config rc = {.rotary_dim = s->rotary_dim, .rotary_offset = s->rotary_offset, .style = s->style,
                                   .theta = s->theta, .max_positions = s->max_positions};
        if ((st = mk_rope_cache_create(&rc, &in->rope))) return st;
        in->positions = new_positions(in, s->n_tokens, s->pos_start, s->max_positions);
    }
    if (op == MK_OP_ROPE && s->fused) {
        /* one [T, q | k | v] row per token, as the fused QKV projection leaves it; v is 128 wide */
        const int64_t q_width = s->n_heads * s->head_dim, row = q_width + s->n_heads_k * (s->head_dim + 128);
        float *qkv = new_filled(in, MK_F32, s->n_tokens * row, -2.0f, 2.0f);
        if (in->oom) return MK_ENOMEM;
        in->hq = heads_view(qkv, MK_F32, s->n_tokens, s->n_heads, s->head_dim, row, s->head_dim);
        in->hk = heads_view(qkv + q_width, MK_F32, s->n_tokens, s->n_heads_k, s->head_dim, row, s->head_dim);
        add_heads_view(in, qkv, SC_F32, &in->hq);
        add_heads_view(in, qkv, SC_F32, &in->hk);
        return in->oom ? MK_ENOMEM : MK_OK;
    }
    if (op == MK_OP_ROPE) {
        if (s->n_heads)
            in->hq = new_heads(in, MK_F32, s->n_tokens, s->n_heads, s->head_dim, s->token_pad, s->head_pad, 2.0f);
        if (s->n_heads_k)
            in->hk = new_heads(in, MK_F32, s->n_tokens, s->n_heads_k, s->head_dim, s->token_pad + 1, s->head_pad, 2.0f);
        if (in->oom) return MK_ENOMEM;
        if (s->n_heads) add_heads_view(in, in->hq.data, SC_F32, &in->hq);
        if (s->n_heads_k) add_heads_view(in, in->hk.data, SC_F32, &in->hk);
        return in->oom ? MK_ENOMEM : MK_OK;
    }
    /* knorm, knorm_rope: k with heads of different magnitude */
    in->hk = new_heads(in, MK_F32, s->n_tokens, s->n_heads, s->head_dim, s->token_pad, s->head_pad, 1.0f);
    in->weight = new_filled(in, MK_F32, s->head_dim, 0.5f, 1.5f);
    if (in->oom) return MK_ENOMEM;
    float *k = in->hk.data;
    for (int64_t t = 0; t < s->n_tokens; t++)
        for (int64_t h = 0; h < s->n_heads; h++)
            for (int64_t i = 0; i < s->head_dim; i++)
                k[t * in->hk.token_stride + h * in->hk.head_stride + i] *= ldexpf(1.0f, (int)((t + 2 * h) % 7) - 3);
    if (op == MK_OP_KNORM || s->in_place) {
        in->hout = in->hk;
        add_heads_view(in, k, SC_F32, &in->hk);
        return in->oom ? MK_ENOMEM : MK_OK;
    }
    const int kind = s->out_dtype == MK_BF16 ? SC_BF16 : SC_F32;
    in->hout = new_heads(in, s->out_dtype, s->n_tokens, s->n_heads, s->head_dim, s->out_token_pad, 0, 1.0f);
    if (in->oom) return MK_ENOMEM;
    add_heads_view(in, in->hout.data, kind, &in->hout);
    check_buffer(in, k, SC_F32); /* k is not modified */
    return in->oom ? MK_ENOMEM : MK_OK;
}

static mk_status setup_gate(sc_inst *in) {
    const sc_gate_spec *s = &in->c->u.gate;
    const int64_t T = s->n_tokens, E = s->n_experts, stride = E + s->logits_pad;
    float *logits = new_filled(in, MK_F32, T * stride, -4.0f, 4.0f);
    float *bias = s->bias ? new_filled(in, MK_F32, E, -0.15f, 0.15f) : NULL;
    int32_t *ids = sc_alloc(in, T * s->top_k + SC_GUARD, sizeof *ids);
    float *weights = new_filled(in, MK_F32, T * s->top_k, -1.0f, 1.0f);
    int32_t *counts = s->counts ? sc_alloc(in, E + SC_GUARD, sizeof *counts) : NULL;
    if (in->oom) return MK_ENOMEM;
    for (int64_t i = 0; i < T * s->top_k + SC_GUARD; i++) ids[i] = (int32_t)(1000000 + i); /* never a valid id */
    for (int64_t i = 0; counts && i < E + SC_GUARD; i++) counts[i] = -7;
    for (int64_t t = 0; t < T; t++) {
        float *row = logits + t * stride;
        if (s->logits == SC_LOGITS_TIES) /* five distinct values: many exact ties, broken by the lower index */
            for (int64_t e = 0; e < E; e++) row[e] = 0.5f * (float)(rng_below(&in->rng, 5) - 2);
        if (s->logits == SC_LOGITS_NAN) { /* token 0: all NaN; 1: fewer than top_k valid; 2: one NaN; 3: none */
            int64_t n_nan = t == 0 ? E : t == 1 ? E - s->top_k / 2 : t == 2 ? 1 : 0;
            for (int64_t j = 0; j < n_nan; j++) row[(j * 7 + t) % E] = NAN;
        }
    }
    in->gate = (mk_moe_gate_args){.n_tokens = T, .n_experts = E, .top_k = s->top_k, .logits = logits,
                                  .logits_stride = stride, .score_func = s->score_func, .expert_bias = bias,
                                  .n_groups = s->n_groups, .topk_groups = s->topk_groups,
                                  .renormalize = s->renormalize,
                                  .routed_scaling_factor = s->scale > 0 ? s->scale : 1.0f, .ids = ids,
                                  .weights = weights, .counts = counts};
    add_view(in, ids, SC_I32, 0, 1, 1, T * s->top_k, T * s->top_k, T * s->top_k);
    add_view(in, weights, SC_F32, 0, 1, 1, T * s->top_k, T * s->top_k, T * s->top_k);
    if (counts) add_view(in, counts, SC_I32, 0, 1, 1, E, E, E);
    check_buffer(in, logits, SC_F32);
    return in->oom ? MK_ENOMEM : MK_OK;
}

static mk_status setup_gemm(sc_inst *in) {
    const sc_gemm_spec *s = &in->c->u.gemm;
    const mk_dtype w_dtype = in->c->pub.dtype;
    int64_t *offsets = sc_alloc(in, s->n_groups + 1, sizeof *offsets);
    if (in->oom) return MK_ENOMEM;
    for (int64_t g = 0; g < s->n_groups; g++) offsets[g + 1] = offsets[g] + s->rows[g];
    const int64_t M = offsets[s->n_groups];
    const int64_t x_rows = s->gather ? s->x_rows : M, y_rows = s->scatter ? s->y_rows : M;
    const int64_t xs = s->k + s->x_pad, ys = s->n + s->y_pad;
    float *x = new_filled(in, MK_F32, x_rows * xs, -1.0f, 1.0f);
    void *w = new_filled(in, w_dtype, s->n_groups * s->n * s->k, -1.0f, 1.0f);
    float *y = new_filled(in, MK_F32, y_rows * ys, -1.0f, 1.0f);
    int32_t *row_index = s->gather ? sc_alloc(in, M, sizeof *row_index) : NULL;
    int32_t *out_index = s->scatter ? sc_alloc(in, M > y_rows ? M : y_rows, sizeof *out_index) : NULL;
    float *row_scale = s->scale ? new_filled(in, MK_F32, M, 0.0f, 1.0f) : NULL;
    if (in->oom) return MK_ENOMEM;
    for (int64_t r = 0; row_index && r < M; r++) row_index[r] = (int32_t)rng_below(&in->rng, x_rows);
    if (out_index && s->accumulate) {
        for (int64_t r = 0; r < M; r++) out_index[r] = (int32_t)rng_below(&in->rng, y_rows);
    } else if (out_index) { /* distinct destinations: the first M of a random permutation of y's rows */
        for (int64_t r = 0; r < y_rows; r++) out_index[r] = (int32_t)r;
        for (int64_t r = y_rows - 1; r > 0; r--) {
            int64_t j = rng_below(&in->rng, r + 1);
            int32_t tmp = out_index[r];
            out_index[r] = out_index[j];
            out_index[j] = tmp;
        }
    }
    in->gemm = (mk_grouped_gemm_args){.n_groups = s->n_groups, .group_offsets = offsets, .n = s->n, .k = s->k,
                                      .x = x, .x_rows = x_rows, .x_stride = xs, .row_index = row_index, .w = w,
                                      .w_dtype = w_dtype, .y = y, .y_rows = y_rows, .y_stride = ys,
                                      .out_index = out_index, .row_scale = row_scale, .accumulate = s->accumulate};
    add_rows_view(in, y, SC_F32, y_rows, s->n, ys);
    check_buffer(in, x, SC_F32);
    return in->oom ? MK_ENOMEM : MK_OK;
}

static mk_status setup_ffn(sc_inst *in) {
    const sc_ffn_spec *s = &in->c->u.ffn;
    const mk_dtype w_dtype = in->c->pub.dtype;
    const int64_t T = s->n_tokens, H = s->hidden, E = s->n_experts, D = s->expert_dim, K = s->top_k;
    const int64_t xs = H + s->x_pad, ys = H + s->y_pad, per_expert = D * H;
    const size_t wsize = mk_dtype_size(w_dtype);
    float *x = new_filled(in, MK_F32, T * xs, -1.0f, 1.0f);
    int32_t *ids = sc_alloc(in, T * K, sizeof *ids);
    float *weights = new_filled(in, MK_F32, T * K, 0.05f, 1.0f);
    int32_t *perm = sc_alloc(in, E, sizeof *perm);
    char *w_gate = sc_alloc(in, E * per_expert, wsize), *w_up = sc_alloc(in, E * per_expert, wsize);
    char *w_down = sc_alloc(in, E * per_expert, wsize);
    unsigned char *routed = sc_alloc(in, E, 1);
    if (in->oom) return MK_ENOMEM;
    for (int64_t t = 0; t < T; t++) { /* top_k distinct experts per token: a partial Fisher-Yates shuffle */
        for (int64_t e = 0; e < E; e++) perm[e] = (int32_t)e;
        for (int64_t j = 0; j < K; j++) {
            int64_t pick = j + rng_below(&in->rng, E - j);
            int32_t tmp = perm[j];
            perm[j] = perm[pick];
            perm[pick] = tmp;
            ids[t * K + j] = (s->missing && rng_below(&in->rng, 4) == 0) ? -1 : perm[j];
            if (ids[t * K + j] >= 0) routed[ids[t * K + j]] = 1;
        }
    }
    /* weights scaled by 1/sqrt(fan_in) so that activations stay O(1) at every width */
    const float a_in = sqrtf(3.0f / (float)H), a_mid = sqrtf(3.0f / (float)D);
    for (int64_t e = 0; e < E; e++) {
        if (s->lazy && !routed[e]) continue;
        fill(in, w_gate + (size_t)(e * per_expert) * wsize, w_dtype, per_expert, -a_in, a_in);
        fill(in, w_up + (size_t)(e * per_expert) * wsize, w_dtype, per_expert, -a_in, a_in);
        fill(in, w_down + (size_t)(e * per_expert) * wsize, w_dtype, per_expert, -a_mid, a_mid);
    }
    void *s_gate = NULL, *s_up = NULL, *s_down = NULL;
    if (s->shared_dim) {
        const float a_sh = sqrtf(3.0f / (float)s->shared_dim);
        s_gate = new_filled(in, w_dtype, s->shared_dim * H, -a_in, a_in);
        s_up = new_filled(in, w_dtype, s->shared_dim * H, -a_in, a_in);
        s_down = new_filled(in, w_dtype, s->shared_dim * H, -a_sh, a_sh);
    }
    float *y = new_filled(in, MK_F32, T * ys, -1.0f, 1.0f);
    if (in->oom) return MK_ENOMEM;
    in->ffn = (mk_moe_ffn_args){.n_tokens = T, .hidden = H, .n_experts = E, .expert_dim = D, .top_k = K, .x = x,
                                .x_stride = xs, .expert_ids = ids, .expert_weights = weights, .w_dtype = w_dtype,
                                .w_gate = w_gate, .w_up = w_up, .w_down = w_down, .shared_dim = s->shared_dim,
                                .shared_gate = s_gate, .shared_up = s_up, .shared_down = s_down, .y = y,
                                .y_stride = ys};
    add_rows_view(in, y, SC_F32, T, H, ys);
    check_buffer(in, x, SC_F32);
    return in->oom ? MK_ENOMEM : MK_OK;
}

static mk_status setup_attn(sc_inst *in) {
    const sc_attn_spec *s = &in->c->u.attn;
    const mk_dtype kv = in->c->pub.dtype, sink = s->sink_dtype;
    const int64_t T = s->n_tokens, S = s->seq_len, Hq = s->n_heads_q, Hk = s->n_heads_kv;
    const int64_t Dk = s->head_dim_qk, Dv = s->head_dim_v, Ns = s->n_sinks;
    mk_attn_args *a = &in->attn;
    /* q large enough that the softmax is peaked rather than flat */
    if (s->fused_q) {
        const int64_t row = Hq * Dk + Hk * (Dk + Dv);
        float *qkv = new_filled(in, MK_F32, T * row, -4.0f, 4.0f);
        a->q = heads_view(qkv, MK_F32, T, Hq, Dk, row, Dk);
    } else {
        a->q = new_heads(in, MK_F32, T, Hq, Dk, 0, 0, 4.0f);
    }
    a->k_cache = new_heads(in, kv, S, Hk, Dk, 0, 0, 1.0f);
    a->v_cache = new_heads(in, kv, S, Hk, Dv, 0, 0, 1.0f);
    a->sink_k = heads_view(NULL, sink, 0, Hk, Dk, 0, 0);
    a->sink_v = heads_view(NULL, sink, 0, Hk, Dv, 0, 0);
    if (Ns) {
        a->sink_k = new_heads(in, sink, Ns, Hk, Dk, 0, 0, 1.0f);
        if (s->sink_v_zero)
            a->sink_v.n_tokens = Ns;
        else
            a->sink_v = new_heads(in, sink, Ns, Hk, Dv, 0, 0, 1.0f);
    }
    float *sink_logit = s->sink_logit ? new_filled(in, MK_F32, Hq, -1.0f, 3.0f) : NULL;
    a->sink_logit = sink_logit;
    a->window = s->window;
    a->scale = 1.0f / sqrtf((float)Dk);
    a->out = new_heads(in, MK_F32, T, Hq, Dv, s->out_pad, 0, 1.0f);
    if (in->oom) return MK_ENOMEM;
    add_heads_view(in, a->out.data, SC_F32, &a->out);
    check_buffer(in, a->q.data, SC_F32);
    check_buffer(in, a->k_cache.data, kv == MK_BF16 ? SC_BF16 : SC_F32);
    check_buffer(in, a->v_cache.data, kv == MK_BF16 ? SC_BF16 : SC_F32);
    return in->oom ? MK_ENOMEM : MK_OK;
}

static mk_status sc_setup(sc_inst *in) {
    switch (in->c->pub.op) {
    case MK_OP_RMSNORM:
    case MK_OP_RMSNORM_ADD:
    case MK_OP_SWIGLU: return setup_rows(in);
    case MK_OP_KNORM:
    case MK_OP_KNORM_ROPE:
    case MK_OP_ROPE: return setup_heads(in);
    case MK_OP_MOE_GATE: return setup_gate(in);
    case MK_OP_GROUPED_GEMM: return setup_gemm(in);
    case MK_OP_MOE_FFN: return setup_ffn(in);
    case MK_OP_SINK_ATTENTION: return setup_attn(in);
    default: return MK_EINVAL;
    }
}

/* ---- the call, through the public API ------------------------------------------------------------------------- */
static mk_status sc_call(sc_inst *in) {
    const sc_case *c = in->c;
    switch (c->pub.op) {
    case MK_OP_RMSNORM:
        return mk_rmsnorm(in->ra, in->sa, in->weight, 1e-5f, c->u.rows.n_rows, c->u.rows.dim, in->rout, in->sout);
    case MK_OP_RMSNORM_ADD:
        return mk_rmsnorm_add(in->ra, in->sa, in->rb, in->sb, in->weight, 1e-5f, c->u.rows.n_rows, c->u.rows.dim);
    case MK_OP_SWIGLU:
        return mk_swiglu(in->ra, in->sa, in->rb, in->sb, in->rout, in->sout, c->u.rows.n_rows, c->u.rows.dim);
    case MK_OP_KNORM: return mk_knorm(&in->hk, in->weight, 1e-5f);
    case MK_OP_KNORM_ROPE: return mk_knorm_rope(&in->hk, in->weight, 1e-5f, in->rope, in->positions, &in->hout);
    case MK_OP_ROPE:
        return mk_rope(in->rope, in->positions, in->hq.data ? &in->hq : NULL, in->hk.data ? &in->hk : NULL);
    case MK_OP_MOE_GATE: return mk_moe_gate(&in->gate);
    case MK_OP_GROUPED_GEMM: return mk_grouped_gemm(&in->gemm);
    case MK_OP_MOE_FFN: return mk_moe_ffn(&in->ffn);
    case MK_OP_SINK_ATTENTION: return mk_sink_attention(&in->attn);
    default: return MK_EINVAL;
    }
}

/* ---- outputs -------------------------------------------------------------------------------------------------- */
typedef struct sc_outputs {
    double *values;   /* compared by NMSE */
    int32_t *exact;   /* compared for equality (gating: expert membership [T, E], then counts [E]) */
    int64_t n_values, n_exact;
    int64_t n_invalid, n_clobbered;
    int64_t n_unrepeatable; /* outputs that a repeated run on the same inputs did not reproduce bit for bit */
} sc_outputs;

static int sc_suspect(const sc_outputs *o) { return o->n_invalid || o->n_clobbered || o->n_unrepeatable; }

static double buf_get(const sc_buffer *b, const void *data, int64_t e) {
    if (b->kind == SC_BF16) return (double)mki_bf16_to_f32(((const uint16_t *)data)[e]);
    if (b->kind == SC_I32) return (double)((const int32_t *)data)[e];
    return (double)((const float *)data)[e];
}

/* Restores every checked buffer to its initial contents, so both runs see the same inputs and initial outputs. */
static void sc_restore(sc_inst *in) {
    for (int b = 0; b < in->n_bufs; b++)
        memcpy(in->bufs[b].data, in->bufs[b].snapshot, (size_t)in->bufs[b].n * (in->bufs[b].kind == SC_BF16 ? 2 : 4));
}

/* Gating, order-free: the weights scattered into a dense [T, E] matrix (values), the chosen sets and the counts
 * (exact). An id outside [-1, E), a repeated id, or a -1 slot with a nonzero weight is invalid. */
static void collect_gate(const sc_inst *in, sc_outputs *o) {
    const mk_moe_gate_args *g = &in->gate;
    const int64_t T = g->n_tokens, E = g->n_experts, K = g->top_k;
    memset(o->values, 0, (size_t)(T * E) * sizeof *o->values);
    memset(o->exact, 0, (size_t)(T * E) * sizeof *o->exact);
    for (int64_t t = 0; t < T; t++) {
        for (int64_t j = 0; j < K; j++) {
            const int32_t id = g->ids[t * K + j];
            const float w = g->weights[t * K + j];
            if (!isfinite(w) || id < -1 || id >= E || (id == -1 && w != 0.0f) || (id >= 0 && o->exact[t * E + id])) {
                o->n_invalid++;
                continue;
            }
            if (id < 0) continue;
            o->exact[t * E + id] = 1;
            o->values[t * E + id] = (double)w;
        }
    }
    o->n_values = T * E;
    o->n_exact = T * E;
    if (g->counts) {
        memcpy(o->exact + T * E, g->counts, (size_t)E * sizeof *g->counts);
        o->n_exact += E;
    }
}

static void collect(const sc_inst *in, sc_outputs *o) {
    o->n_values = o->n_exact = o->n_invalid = o->n_clobbered = o->n_unrepeatable = 0;
    if (in->c->pub.op == MK_OP_MOE_GATE) {
        collect_gate(in, o);
    } else {
        for (int v = 0; v < in->n_views; v++) {
            const sc_view *w = &in->views[v];
            const sc_buffer *b = &in->bufs[w->buf];
            for (int64_t r0 = 0; r0 < w->n0; r0++)
                for (int64_t r1 = 0; r1 < w->n1; r1++)
                    for (int64_t i = 0; i < w->n2; i++) {
                        double x = buf_get(b, b->data, w->offset + r0 * w->s0 + r1 * w->s1 + i);
                        if (!isfinite(x)) o->n_invalid++;
                        o->values[o->n_values++] = x;
                    }
        }
    }
    /* stray writes: every element outside the views must hold its initial bits */
    for (int bi = 0; bi < in->n_bufs; bi++) {
        const sc_buffer *b = &in->bufs[bi];
        const size_t esize = b->kind == SC_BF16 ? 2 : 4;
        for (int64_t e = 0; e < b->n; e++) {
            if (!memcmp((const char *)b->data + e * esize, (const char *)b->snapshot + e * esize, esize)) continue;
            int inside = 0;
            for (int v = 0; v < in->n_views && !inside; v++)
                inside = in->views[v].buf == bi && in_view(&in->views[v], e);
            o->n_clobbered += !inside;
        }
    }
}

static int64_t output_count(const sc_inst *in) {
    if (in->c->pub.op == MK_OP_MOE_GATE) return in->gate.n_tokens * in->gate.n_experts;
    int64_t n = 0;
    for (int v = 0; v < in->n_views; v++) n += in->views[v].n0 * in->views[v].n1 * in->views[v].n2;
    return n;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Runs capped at isa: restore the inputs, call, time, collect into o. Short calls are repeated on restored inputs
 * (SC_MAX_RUNS), collecting into scratch: the reported time is the best one, and every repeat must reproduce the
 * first run's outputs bit for bit (o->n_unrepeatable counts the outputs that did not). The op's error
 * message goes to note. */
static mk_status run_capped(sc_inst *in, mk_isa isa, sc_outputs *o, sc_outputs *scratch, double *seconds,
                            char *note, size_t note_size) {
    mk_status st = MK_OK;
    for (int run = 0; run < SC_MAX_RUNS; run++) {
        sc_outputs *dst = run == 0 ? o : scratch;
        sc_restore(in);
        mk_set_max_isa(isa);
        const double t0 = now_seconds();
        st = sc_call(in);
        const double t = now_seconds() - t0;
        if (st != MK_OK) {
            snprintf(note, note_size, "%s: %s", mk_status_str(st), mk_last_error());
            if (run == 0) collect(in, o);
            break;
        }
        collect(in, dst);
        if (run == 0 || t < *seconds) *seconds = t;
        if (run > 0) {
            for (int64_t i = 0; i < o->n_values; i++)
                o->n_unrepeatable += memcmp(&o->values[i], &dst->values[i], sizeof(double)) != 0;
            for (int64_t i = 0; i < o->n_exact; i++) o->n_unrepeatable += o->exact[i] != dst->exact[i];
        }
        if (t > SC_REPEAT_BELOW_S && run >= 1) break;
        if (t > 4 * SC_REPEAT_BELOW_S) break; /* long calls run once */
    }
    return st;
}

static void note_problems(char *note, size_t size, const char *who, const sc_outputs *o) {
    const struct { int64_t n; const char *what; } problems[] = {
        {o->n_invalid, "invalid outputs (non-finite, bad expert id)"},
        {o->n_clobbered, "elements written outside the outputs"},
        {o->n_unrepeatable, "outputs differ when the call is repeated on the same inputs"},
    };
    for (size_t i = 0; i < sizeof problems / sizeof problems[0]; i++) {
        size_t len = strlen(note);
        if (problems[i].n && len + 1 < size)
            snprintf(note + len, size - len, "%s%s: %lld %s", len ? "; " : "", who, (long long)problems[i].n,
                     problems[i].what);
    }
}

const char *mki_selfcheck_impl(mk_op op, mk_isa isa) {
    if ((int)op < 0 || op >= MK_OP_COUNT) return NULL;
    const mki_kernel_table *t = mki_table_for(isa);
    return t ? t->impl[op] : NULL;
}

mk_status mki_selfcheck_run(int case_index, mk_isa isa, mki_selfcheck_result *r) {
    if (!r) return MK_EINVAL;
    memset(r, 0, sizeof *r);
    r->ids_equal = -1;
    r->impl = "?";
    if (case_index < 0 || case_index >= N_CASES || (int)isa < 0 || isa >= MK_ISA_COUNT) return MK_EINVAL;
    const sc_case *c = &cases[case_index];
    r->tol = mki_selfcheck_tol(c->pub.op, c->pub.dtype);

    const char *impl = mki_selfcheck_impl(c->pub.op, isa);
    if (!impl) {
        r->outcome = MKI_SELFCHECK_SKIP;
        snprintf(r->note, sizeof r->note, "this CPU cannot run %s", mk_isa_name(isa));
        return MK_OK;
    }
    r->impl = impl;
    if (isa != MK_ISA_REF && strcmp(impl, "ref") == 0) {
        r->outcome = MKI_SELFCHECK_SKIP;
        snprintf(r->note, sizeof r->note, "no %s kernel for %s (inherits ref)", mk_isa_name(isa),
                 mk_op_name(c->pub.op));
        return MK_OK;
    }

    sc_inst *in = calloc(1, sizeof *in);
    if (!in) return MK_ENOMEM;
    in->c = c;
    in->rng.state = 0x6d6f656b6974ull ^ ((uint64_t)(case_index + 1) * 0x9e3779b97f4a7c15ull);
    mk_status st = sc_setup(in);
    if (st == MK_OK && in->broken && !in->oom) st = MK_EINTERNAL;
    sc_outputs out[3] = {{0}, {0}, {0}}; /* under test, oracle, scratch for repeats */
    const int64_t n_values = output_count(in), n_exact = n_values + (in->gate.counts ? in->gate.n_experts : 0);
    for (int i = 0; i < 3 && st == MK_OK; i++) {
        out[i].values = malloc((size_t)(n_values + 1) * sizeof(double));
        out[i].exact = malloc((size_t)(n_exact + 1) * sizeof(int32_t));
        if (!out[i].values || !out[i].exact) st = MK_ENOMEM;
    }
    if (st != MK_OK || in->oom) {
        const int oom = st == MK_ENOMEM || in->oom;
        if (oom)
            snprintf(r->note, sizeof r->note, "setup: not enough memory for the inputs");
        else if (st == MK_EINTERNAL)
            snprintf(r->note, sizeof r->note, "setup: the harness could not register every buffer (raise SC_MAX_*)");
        else
            snprintf(r->note, sizeof r->note, "setup: %s: %s", mk_status_str(st), mk_last_error());
        r->outcome = isa == MK_ISA_REF ? MKI_SELFCHECK_ORACLE_BAD : MKI_SELFCHECK_FAIL;
        for (int i = 0; i < 3; i++) {
            free(out[i].values);
            free(out[i].exact);
        }
        sc_free(in);
        free(in);
        return oom ? MK_ENOMEM : MK_OK;
    }
    r->n_outputs = n_values;

    const mk_isa previous = mk_selected_isa(); /* restored below: equivalent to the cap in force before */
    if (isa == MK_ISA_REF) {
        /* every oracle output must be finite (gating: a -1 slot has weight 0), nothing clobbered, repeats identical */
        mk_status s_ref = run_capped(in, MK_ISA_REF, &out[0], &out[2], &r->seconds, r->note, sizeof r->note);
        r->ref_seconds = r->seconds;
        r->n_invalid = out[0].n_invalid;
        r->n_clobbered = out[0].n_clobbered;
        r->n_unrepeatable = out[0].n_unrepeatable;
        note_problems(r->note, sizeof r->note, "oracle", &out[0]);
        r->outcome = (s_ref == MK_OK && !sc_suspect(&out[0])) ? MKI_SELFCHECK_ORACLE : MKI_SELFCHECK_ORACLE_BAD;
    } else {
        char ref_note[160] = "";
        mk_status s_isa = run_capped(in, isa, &out[0], &out[2], &r->seconds, r->note, sizeof r->note);
        mk_status s_ref = run_capped(in, MK_ISA_REF, &out[1], &out[2], &r->ref_seconds, ref_note, sizeof ref_note);
        r->n_invalid = out[0].n_invalid;
        r->n_clobbered = out[0].n_clobbered;
        r->n_unrepeatable = out[0].n_unrepeatable;
        double num = 0.0, den = 0.0, max_abs = 0.0;
        int saw_nan = 0;
        for (int64_t i = 0; i < n_values; i++) {
            const double d = out[0].values[i] - out[1].values[i];
            if (isnan(d))
                saw_nan = 1;
            else if (fabs(d) > max_abs)
                max_abs = fabs(d);
            num += d * d;
            den += out[1].values[i] * out[1].values[i];
        }
        r->max_abs = saw_nan ? NAN : max_abs;
        r->nmse = den > 0.0 ? num / den : (num == 0.0 ? 0.0 : (isnan(num) ? NAN : INFINITY));
        const double rms = n_values > 0 ? sqrt(den / (double)n_values) : 0.0;
        r->max_rel = rms > 0.0 ? r->max_abs / rms : (r->max_abs == 0.0 ? 0.0 : (saw_nan ? NAN : INFINITY));
        if (c->pub.op == MK_OP_MOE_GATE)
            r->ids_equal = out[0].n_exact == out[1].n_exact &&
                           !memcmp(out[0].exact, out[1].exact, (size_t)out[0].n_exact * sizeof(int32_t));
        note_problems(r->note, sizeof r->note, mk_isa_name(isa), &out[0]);
        const int oracle_ok = s_ref == MK_OK && !sc_suspect(&out[1]);
        if (!oracle_ok) {
            size_t len = strlen(r->note);
            snprintf(r->note + len, sizeof r->note - len, "%soracle failed: %s", len ? "; " : "",
                     ref_note[0] ? ref_note : "invalid, stray or unrepeatable outputs");
        }
        const double max_rel_bound = MKI_SELFCHECK_MAX_REL_FACTOR * sqrt(r->tol);
        const int pass = s_isa == MK_OK && oracle_ok && !sc_suspect(&out[0]) && r->nmse <= r->tol &&
                         r->max_rel <= max_rel_bound && r->ids_equal != 0;
        r->outcome = pass ? MKI_SELFCHECK_PASS : MKI_SELFCHECK_FAIL;
        if (!pass && !r->note[0]) {
            if (r->ids_equal == 0)
                snprintf(r->note, sizeof r->note, "different expert sets or counts");
            else if (!(r->nmse <= r->tol))
                snprintf(r->note, sizeof r->note, "nmse %.3g > tol %.3g", r->nmse, r->tol);
            else
                snprintf(r->note, sizeof r->note, "a local error: max |out - ref| = %.3g is %.3g x rms(ref), above "
                         "%g x sqrt(tol) = %.3g", r->max_abs, r->max_rel, MKI_SELFCHECK_MAX_REL_FACTOR, max_rel_bound);
        }
    }
    mk_set_max_isa(previous);
    for (int i = 0; i < 3; i++) {
        free(out[i].values);
        free(out[i].exact);
    }
    sc_free(in);
    free(in);
    return MK_OK;
}
