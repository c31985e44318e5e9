/*
 * test_gate.c: mk_moe_gate (top-k routing) and mk_expert_bias_update.
 *
 * Expected values are hand computed (sigmoid(0) = 0.5, sigmoid(ln 3) = 0.75, softmax of ln(1..4) = 0.1..0.4, ...)
 * or come from an independent selection written here: scores in double from the stored float logits, experts
 * sorted by (-select, index) with an insertion sort, groups scored and ranked separately.
 * Tolerances: ids and counts exact; weights |got - want| <= 1e-6 (they are <= 2.5); sum of a token's weights
 * within 1e-6 of routed_scaling_factor; bias updates within 1e-7 absolute (rate 1e-3 .. 3e-3 on biases ~0.1).
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moekit.h"
#include "test_util.h"

static mk_moe_gate_args gate_args(int64_t T, int64_t E, int64_t k, const float *logits, int32_t *ids, float *w,
                                  int32_t *counts) {
    mk_moe_gate_args a;
    memset(&a, 0, sizeof a);
    a.n_tokens = T;
    a.n_experts = E;
    a.top_k = k;
    a.logits = logits;
    a.logits_stride = 0;
    a.score_func = MK_SCORE_SIGMOID;
    a.expert_bias = NULL;
    a.n_groups = 0;
    a.topk_groups = 0;
    a.renormalize = 1;
    a.routed_scaling_factor = 2.5f;
    a.ids = ids;
    a.weights = w;
    a.counts = counts;
    return a;
}

static double sigm(double x) { return 1.0 / (1.0 + exp(-x)); }

static void expect_ids(const int32_t *got, const int32_t *want, int k, const char *what) {
    for (int j = 0; j < k; j++)
        if (got[j] != want[j]) {
            char g[256] = "", wv[256] = "";
            for (int i = 0; i < k; i++) {
                snprintf(g + strlen(g), sizeof g - strlen(g), "%d ", got[i]);
                snprintf(wv + strlen(wv), sizeof wv - strlen(wv), "%d ", want[i]);
            }
            cr_expect(0, "%s: ids [%s], want [%s]", what, g, wv);
            return;
        }
}

static void expect_weights(const float *got, const double *want, int k, const char *what) {
    for (int j = 0; j < k; j++)
        cr_expect(fabs((double)got[j] - want[j]) <= 1e-6, "%s: weight %d = %.9g, want %.9g", what, j, (double)got[j],
                  want[j]);
}

/* ============================================== hand cases =============================================== */

Test(gate, ties_go_to_lower_index_in_order) {
    enum { T = 3, E = 8, K = 4 };
    const float logits[T][E] = {{0, 0, 0, 0, 0, 0, 0, 0}, {1, 3, 3, 0, 3, -1, 3, 2}, {0, 0, 5, 0, 0, 0, 0, 0}};
    int32_t ids[T][K], counts[E];
    float w[T][K];
    for (int e = 0; e < E; e++) counts[e] = 999; /* overwritten, not accumulated */
    mk_moe_gate_args a = gate_args(T, E, K, &logits[0][0], &ids[0][0], &w[0][0], counts);
    TU_EXPECT_OK(mk_moe_gate(&a));
    const int32_t want[T][K] = {{0, 1, 2, 3}, {1, 2, 4, 6}, {2, 0, 1, 3}};
    expect_ids(ids[0], want[0], K, "all equal");
    expect_ids(ids[1], want[1], K, "four-way tie at 3");
    expect_ids(ids[2], want[2], K, "one winner, then ties");
    /* equal scores -> 2.5 / 4 each; token 2: sigmoid(5) and three 0.5 */
    const double eq[K] = {0.625, 0.625, 0.625, 0.625};
    expect_weights(w[0], eq, K, "token 0");
    expect_weights(w[1], eq, K, "token 1");
    double s5 = sigm(5.0), sum = s5 + 1.5;
    const double w2[K] = {s5 / sum * 2.5, 0.5 / sum * 2.5, 0.5 / sum * 2.5, 0.5 / sum * 2.5};
    expect_weights(w[2], w2, K, "token 2");
    const int32_t want_counts[E] = {2, 3, 3, 2, 1, 0, 1, 0};
    for (int e = 0; e < E; e++) cr_expect_eq(counts[e], want_counts[e], "counts[%d] = %d", e, counts[e]);
}

Test(gate, bias_changes_choice_but_not_weights) {
    /* logits [0, ln 3, -ln 3, -10] -> unbiased scores [0.5, 0.75, 0.25, sigmoid(-10) = 4.5397868702434395e-5] */
    enum { E = 4, K = 2 };
    const float logits[E] = {0.0f, logf(3.0f), -logf(3.0f), -10.0f};
    int32_t ids[K];
    float w[K];
    mk_moe_gate_args a = gate_args(1, E, K, logits, ids, w, NULL);

    /* no bias: top-2 = [1, 0], renormalised: 0.75/1.25*2.5 = 1.5, 0.5/1.25*2.5 = 1.0 */
    TU_EXPECT_OK(mk_moe_gate(&a));
    expect_ids(ids, (const int32_t[]){1, 0}, K, "no bias");
    expect_weights(w, (const double[]){1.5, 1.0}, K, "no bias");

    /* bias +0.4 on expert 2: select = [0.5, 0.75, 0.65, ~0] -> [1, 2]; weights from the unbiased 0.75 and 0.25,
     * which sum to 1 -> 1.875, 0.625 */
    const float bias[E] = {0.0f, 0.0f, 0.4f, 0.0f};
    a.expert_bias = bias;
    TU_EXPECT_OK(mk_moe_gate(&a));
    expect_ids(ids, (const int32_t[]){1, 2}, K, "bias on 2");
    expect_weights(w, (const double[]){1.875, 0.625}, K, "bias on 2");

    /* bias +0.9 on expert 3, no renormalisation: select e3 = 0.90005 wins; weights 2.5 * sigmoid(-10) and
     * 2.5 * 0.75 (a weight taken from the biased select value would be 2.25) */
    const float bias3[E] = {0.0f, 0.0f, 0.0f, 0.9f};
    a.expert_bias = bias3;
    a.renormalize = 0;
    TU_EXPECT_OK(mk_moe_gate(&a));
    expect_ids(ids, (const int32_t[]){3, 1}, K, "bias on 3");
    expect_weights(w, (const double[]){2.5 * 4.5397868702434395e-5, 1.875}, K, "bias on 3, no renormalize");

    /* no renormalisation, bias NULL, scale 1: the raw sigmoid scores */
    a.expert_bias = NULL;
    a.routed_scaling_factor = 1.0f;
    TU_EXPECT_OK(mk_moe_gate(&a));
    expect_ids(ids, (const int32_t[]){1, 0}, K, "raw");
    expect_weights(w, (const double[]){0.75, 0.5}, K, "raw sigmoid");
}

Test(gate, softmax_scoring_hand_case) {
    /* logits ln(1..4): softmax = [0.1, 0.2, 0.3, 0.4]; top-2 = [3, 2] */
    enum { E = 4, K = 2 };
    const float logits[E] = {0.0f, logf(2.0f), logf(3.0f), logf(4.0f)};
    int32_t ids[K];
    float w[K];
    mk_moe_gate_args a = gate_args(1, E, K, logits, ids, w, NULL);
    a.score_func = MK_SCORE_SOFTMAX;
    a.renormalize = 0;
    a.routed_scaling_factor = 1.0f;
    TU_EXPECT_OK(mk_moe_gate(&a));
    expect_ids(ids, (const int32_t[]){3, 2}, K, "softmax");
    expect_weights(w, (const double[]){0.4, 0.3}, K, "softmax, raw");
    a.renormalize = 1;
    a.routed_scaling_factor = 2.5f;
    TU_EXPECT_OK(mk_moe_gate(&a));
    expect_weights(w, (const double[]){4.0 / 7.0 * 2.5, 3.0 / 7.0 * 2.5}, K, "softmax, renormalised");
}

Test(gate, softmax_is_stable_for_large_logits) {
    /* logits 1000 + ln(1..4): exp(1000) overflows float and double, so this needs the max subtracted. Expected:
     * softmax of the stored floats, in double, with the max subtracted. */
    enum { E = 4, K = 2 };
    const float logits[E] = {1000.0f, 1000.0f + logf(2.0f), 1000.0f + logf(3.0f), 1000.0f + logf(4.0f)};
    int32_t ids[K];
    float w[K];
    mk_moe_gate_args a = gate_args(1, E, K, logits, ids, w, NULL);
    a.score_func = MK_SCORE_SOFTMAX;
    a.renormalize = 0;
    a.routed_scaling_factor = 1.0f;
    TU_EXPECT_OK(mk_moe_gate(&a));
    double den = 0;
    for (int e = 0; e < E; e++) den += exp((double)logits[e] - (double)logits[3]);
    expect_ids(ids, (const int32_t[]){3, 2}, K, "softmax +1000");
    expect_weights(w, (const double[]){1.0 / den, exp((double)logits[2] - (double)logits[3]) / den}, K,
                   "softmax +1000");
}

/* p = [0.9, 0.1 | 0.88, 0.89 | 0.2, 0.3 | 0.91, 0.01], 4 groups of 2; logits = logit(p). */
static void group_logits(float *logits) {
    const double p[8] = {0.9, 0.1, 0.88, 0.89, 0.2, 0.3, 0.91, 0.01};
    for (int e = 0; e < 8; e++) logits[e] = (float)log(p[e] / (1.0 - p[e]));
}

static void weights_from(const float *logits, const int32_t *ids, int k, double scale, double *w) {
    double s = 0;
    for (int j = 0; j < k; j++) s += sigm(logits[ids[j]]);
    for (int j = 0; j < k; j++) w[j] = sigm(logits[ids[j]]) / s * scale;
}

Test(gate, group_limited_selection_changes_the_answer) {
    enum { E = 8, K = 3 };
    float logits[E];
    group_logits(logits);
    int32_t ids[K];
    float w[K];
    double ww[K];
    mk_moe_gate_args a = gate_args(1, E, K, logits, ids, w, NULL);

    /* plain top-3: 0.91 (6), 0.9 (0), 0.89 (3) */
    TU_EXPECT_OK(mk_moe_gate(&a));
    const int32_t plain[K] = {6, 0, 3};
    expect_ids(ids, plain, K, "plain");
    weights_from(logits, plain, K, 2.5, ww);
    expect_weights(w, ww, K, "plain");

    /* n_groups = 1 is plain top-k */
    a.n_groups = 1, a.topk_groups = 1;
    TU_EXPECT_OK(mk_moe_gate(&a));
    expect_ids(ids, plain, K, "n_groups = 1");

    /* DeepSeek-V2 rule (no bias: group score = its max): g0 0.9, g1 0.89, g2 0.3, g3 0.91 -> keep g3, g0
     * -> experts {0, 1, 6, 7} -> [6, 0, 1] */
    a.n_groups = 4, a.topk_groups = 2;
    TU_EXPECT_OK(mk_moe_gate(&a));
    const int32_t v2[K] = {6, 0, 1};
    expect_ids(ids, v2, K, "groups, max rule");
    weights_from(logits, v2, K, 2.5, ww);
    expect_weights(w, ww, K, "groups, max rule");

    /* noaux_tc rule (bias given, all zero: group score = sum of its top 2): g0 1.0, g1 1.77, g2 0.5, g3 0.92 ->
     * keep g1, g0 -> experts {0, 1, 2, 3} -> [0, 3, 2] */
    const float zero_bias[E] = {0};
    a.expert_bias = zero_bias;
    TU_EXPECT_OK(mk_moe_gate(&a));
    const int32_t v3[K] = {0, 3, 2};
    expect_ids(ids, v3, K, "groups, top-2 sum rule");
    weights_from(logits, v3, K, 2.5, ww);
    expect_weights(w, ww, K, "groups, top-2 sum rule");
}

Test(gate, nan_is_never_selected) {
    enum { E = 6 };
    const float nan = NAN;
    const float logits[3][E] = {{nan, 1, nan, 2, 0, nan}, {nan, 1, nan, 2, 0, nan}, {nan, nan, nan, nan, nan, nan}};
    /* k = 3: [3, 1, 4] */
    int32_t ids3[3];
    float w3[3];
    mk_moe_gate_args a = gate_args(1, E, 3, logits[0], ids3, w3, NULL);
    TU_EXPECT_OK(mk_moe_gate(&a));
    expect_ids(ids3, (const int32_t[]){3, 1, 4}, 3, "k = 3");
    double s = sigm(2) + sigm(1) + 0.5;
    expect_weights(w3, (const double[]){sigm(2) / s * 2.5, sigm(1) / s * 2.5, 0.5 / s * 2.5}, 3, "k = 3");

    /* k = 4 with 3 valid experts: last slot -1 / 0; all-NaN token: all -1 / 0; counts ignore the -1 slots */
    int32_t ids4[2][4], counts[E];
    float w4[2][4];
    a = gate_args(2, E, 4, logits[1], &ids4[0][0], &w4[0][0], counts);
    TU_EXPECT_OK(mk_moe_gate(&a));
    expect_ids(ids4[0], (const int32_t[]){3, 1, 4, -1}, 4, "k = 4, 3 valid");
    expect_weights(w4[0], (const double[]){sigm(2) / s * 2.5, sigm(1) / s * 2.5, 0.5 / s * 2.5, 0.0}, 4,
                   "k = 4, 3 valid");
    expect_ids(ids4[1], (const int32_t[]){-1, -1, -1, -1}, 4, "all NaN");
    expect_weights(w4[1], (const double[]){0, 0, 0, 0}, 4, "all NaN");
    const int32_t want_counts[E] = {0, 1, 0, 1, 1, 0};
    for (int e = 0; e < E; e++) cr_expect_eq(counts[e], want_counts[e], "counts[%d] = %d", e, counts[e]);

    /* a NaN bias makes its expert's select value NaN: never chosen */
    const float zeros[4] = {0, 0, 0, 0}, bias[4] = {nan, 0, 0, 0};
    int32_t ids2[2];
    float w2[2];
    a = gate_args(1, 4, 2, zeros, ids2, w2, NULL);
    a.expert_bias = bias;
    TU_EXPECT_OK(mk_moe_gate(&a));
    expect_ids(ids2, (const int32_t[]){1, 2}, 2, "NaN bias");
}

Test(gate, top_k_equals_n_experts) {
    enum { E = 5 };
    const float logits[E] = {0.3f, -1.0f, 2.0f, 0.5f, 1.0f};
    int32_t ids[E];
    float w[E];
    mk_moe_gate_args a = gate_args(1, E, E, logits, ids, w, NULL);
    TU_EXPECT_OK(mk_moe_gate(&a));
    const int32_t want[E] = {2, 4, 3, 0, 1};
    expect_ids(ids, want, E, "k = E");
    double ww[E];
    weights_from(logits, want, E, 2.5, ww);
    expect_weights(w, ww, E, "k = E");
}

/* ======================================= independent selection oracle ======================================= */

typedef struct {
    int n_experts, top_k, n_groups, topk_groups, renormalize, softmax;
    const float *bias;
    double scale;
} oracle_cfg;

/* idx sorted by (-val, index); NaN entries excluded; returns the count kept. */
static int rank_desc(const double *val, const unsigned char *eligible, int n, int *idx) {
    int m = 0;
    for (int e = 0; e < n; e++) {
        if ((eligible && !eligible[e]) || isnan(val[e])) continue;
        int p = m++;
        while (p > 0 && val[idx[p - 1]] < val[e]) { /* strict: equal values keep index order */
            idx[p] = idx[p - 1];
            p--;
        }
        idx[p] = e;
    }
    return m;
}

/* Returns 0 if a near-tie makes the answer fragile (the caller then redraws the logits), 1 otherwise. */
static int oracle_token(const oracle_cfg *c, const float *logits, int32_t *ids, double *w) {
    int E = c->n_experts;
    double score[128], sel[128], gscore[128];
    int idx[128], gidx[128];
    unsigned char elig[128];
    if (c->softmax) {
        double mx = -INFINITY, den = 0;
        for (int e = 0; e < E; e++) mx = fmax(mx, logits[e]);
        for (int e = 0; e < E; e++) den += exp((double)logits[e] - mx);
        for (int e = 0; e < E; e++) score[e] = exp((double)logits[e] - mx) / den;
    } else {
        for (int e = 0; e < E; e++) score[e] = sigm(logits[e]);
    }
    for (int e = 0; e < E; e++) sel[e] = score[e] + (c->bias ? (double)c->bias[e] : 0.0);
    for (int e = 0; e < E; e++) elig[e] = 1;
    if (c->n_groups > 1) {
        int G = c->n_groups, gs = E / G;
        for (int g = 0; g < G; g++) {
            double top1 = -INFINITY, top2 = -INFINITY;
            for (int e = g * gs; e < (g + 1) * gs; e++) {
                if (sel[e] > top1) top2 = top1, top1 = sel[e];
                else if (sel[e] > top2) top2 = sel[e];
            }
            gscore[g] = c->bias ? top1 + top2 : top1;
        }
        int ng = rank_desc(gscore, NULL, G, gidx);
        if (ng > c->topk_groups && fabs(gscore[gidx[c->topk_groups - 1]] - gscore[gidx[c->topk_groups]]) < 1e-5)
            return 0;
        for (int e = 0; e < E; e++) elig[e] = 0;
        for (int j = 0; j < c->topk_groups && j < ng; j++)
            for (int e = gidx[j] * gs; e < (gidx[j] + 1) * gs; e++) elig[e] = 1;
    }
    int m = rank_desc(sel, elig, E, idx);
    for (int j = 0; j + 1 < m && j < c->top_k; j++)
        if (fabs(sel[idx[j]] - sel[idx[j + 1]]) < 1e-5) return 0;
    double sum = 0;
    for (int j = 0; j < c->top_k; j++) {
        ids[j] = j < m ? idx[j] : -1;
        w[j] = j < m ? score[idx[j]] : 0.0;
        sum += w[j];
    }
    for (int j = 0; j < c->top_k; j++) w[j] = (c->renormalize && sum > 0 ? w[j] / sum : w[j]) * c->scale;
    return 1;
}

static void random_gate_case(oracle_cfg c, int T, int64_t stride, uint64_t seed) {
    tu_rng r;
    tu_rng_seed(&r, seed);
    int E = c.n_experts, K = c.top_k;
    float *logits = malloc(sizeof(float) * (size_t)(T * stride));
    int32_t *want_ids = malloc(sizeof(int32_t) * (size_t)(T * K)), *ids = malloc(sizeof(int32_t) * (size_t)(T * K));
    double *want_w = malloc(sizeof(double) * (size_t)(T * K));
    float *w = malloc(sizeof(float) * (size_t)(T * K));
    int32_t counts[128], want_counts[128] = {0};
    tu_fill_bits(logits, T * stride, 0x7fc00badu); /* the stride padding is NaN: must never be read as a logit */
    for (int t = 0; t < T; t++) {
        do tu_fill_uniform(logits + t * stride, E, &r, -4.0f, 4.0f);
        while (!oracle_token(&c, logits + t * stride, want_ids + t * K, want_w + t * K));
        for (int j = 0; j < K; j++)
            if (want_ids[t * K + j] >= 0) want_counts[want_ids[t * K + j]]++;
    }
    mk_moe_gate_args a = gate_args(T, E, K, logits, ids, w, counts);
    a.logits_stride = stride == E ? 0 : stride;
    a.score_func = c.softmax ? MK_SCORE_SOFTMAX : MK_SCORE_SIGMOID;
    a.expert_bias = c.bias;
    a.n_groups = c.n_groups;
    a.topk_groups = c.topk_groups;
    a.renormalize = c.renormalize;
    a.routed_scaling_factor = (float)c.scale;
    TU_ASSERT_OK(mk_moe_gate(&a));
    int bad = 0;
    for (int t = 0; t < T; t++) {
        double sum = 0;
        for (int j = 0; j < K; j++) {
            sum += w[t * K + j];
            if ((ids[t * K + j] != want_ids[t * K + j] || !(fabs(w[t * K + j] - want_w[t * K + j]) <= 1e-6)) &&
                bad++ < 5)
                cr_expect(0, "token %d slot %d: id %d weight %.9g, want id %d weight %.9g", t, j, ids[t * K + j],
                          (double)w[t * K + j], want_ids[t * K + j], want_w[t * K + j]);
        }
        if (c.renormalize)
            cr_expect(fabs(sum - c.scale) <= 1e-6, "token %d: weights sum to %.9g, want %.9g", t, sum, c.scale);
    }
    cr_expect_eq(bad, 0, "%d slots differ from the independent selection", bad);
    for (int e = 0; e < E; e++) cr_expect_eq(counts[e], want_counts[e], "counts[%d] = %d, want %d", e, counts[e],
                                             want_counts[e]);
    free(logits), free(want_ids), free(ids), free(want_w), free(w);
}

Test(gate, real_shape_sigmoid_with_bias) {
    /* openPangu-R-72B routing: 80 experts, top 8, sigmoid, bias for selection, renormalise, x2.5 */
    tu_rng r;
    tu_rng_seed(&r, 7);
    float bias[80];
    tu_fill_uniform(bias, 80, &r, -0.1f, 0.1f);
    oracle_cfg c = {.n_experts = 80, .top_k = 8, .renormalize = 1, .bias = bias, .scale = 2.5};
    random_gate_case(c, 64, 83, 1001);
    c.bias = NULL;
    random_gate_case(c, 33, 80, 1002);
}

Test(gate, real_shape_softmax) {
    oracle_cfg c = {.n_experts = 80, .top_k = 8, .renormalize = 0, .softmax = 1, .scale = 1.0};
    random_gate_case(c, 40, 80, 1003);
    c.renormalize = 1, c.scale = 2.5;
    random_gate_case(c, 17, 96, 1004);
}

Test(gate, real_shape_grouped) {
    tu_rng r;
    tu_rng_seed(&r, 8);
    float bias[80];
    tu_fill_uniform(bias, 80, &r, -0.05f, 0.05f);
    oracle_cfg c = {.n_experts = 80, .top_k = 8, .n_groups = 8, .topk_groups = 3, .renormalize = 1, .scale = 2.5};
    random_gate_case(c, 48, 80, 1005); /* max rule */
    c.bias = bias;
    random_gate_case(c, 48, 80, 1006); /* top-2 sum rule */
}

Test(gate, zero_tokens_writes_nothing_but_zero_counts) {
    /* docs/api.md: n_tokens = 0 writes nothing, except counts, which is overwritten by definition (zeros) */
    float logits[8] = {0};
    int32_t ids[2] = {77, 77}, counts[8];
    float w[2] = {12345.0f, 12345.0f};
    for (int e = 0; e < 8; e++) counts[e] = 55;
    mk_moe_gate_args a = gate_args(0, 8, 2, logits, ids, w, counts);
    TU_EXPECT_OK(mk_moe_gate(&a));
    cr_expect(ids[0] == 77 && ids[1] == 77 && w[0] == 12345.0f && w[1] == 12345.0f, "n_tokens = 0 wrote output");
    for (int e = 0; e < 8; e++) cr_expect_eq(counts[e], 0, "counts[%d] = %d, want 0", e, counts[e]);
    /* with no tokens, logits, ids and weights may be NULL */
    a = gate_args(0, 8, 2, NULL, NULL, NULL, NULL);
    TU_EXPECT_OK(mk_moe_gate(&a));
}

Test(gate, softmax_ignores_nan_logits) {
    /* logits [0, ln 2, NaN, ln 3, ln 4]: the NaN expert gets a NaN score and stays out of the denominator, so the
     * others keep softmax = [0.1, 0.2, -, 0.3, 0.4]; top-2 = [4, 3] with 0.4, 0.3 */
    const float logits[5] = {0.0f, logf(2.0f), NAN, logf(3.0f), logf(4.0f)};
    int32_t ids[2];
    float w[2];
    mk_moe_gate_args a = gate_args(1, 5, 2, logits, ids, w, NULL);
    a.score_func = MK_SCORE_SOFTMAX, a.renormalize = 0, a.routed_scaling_factor = 1.0f;
    TU_EXPECT_OK(mk_moe_gate(&a));
    expect_ids(ids, (const int32_t[]){4, 3}, 2, "softmax with a NaN logit");
    expect_weights(w, (const double[]){0.4, 0.3}, 2, "softmax with a NaN logit");
}

Test(gate, group_ties_go_to_lower_group) {
    /* select = [0.5, 0.1 | 0.2, 0.5] (logits 0, logit(0.1), logit(0.2), 0), 2 groups, keep 1, top 2, no bias
     * (group score = max): both groups score exactly 0.5 -> group 0 -> [0, 1]. Choosing group 1 would give [3, 2];
     * plain top-2 gives [0, 3]. */
    const float logits[4] = {0.0f, (float)log(0.1 / 0.9), (float)log(0.2 / 0.8), 0.0f};
    int32_t ids[2];
    float w[2];
    mk_moe_gate_args a = gate_args(1, 4, 2, logits, ids, w, NULL);
    a.n_groups = 2, a.topk_groups = 1;
    TU_EXPECT_OK(mk_moe_gate(&a));
    expect_ids(ids, (const int32_t[]){0, 1}, 2, "tied groups");
    a.n_groups = 0;
    TU_EXPECT_OK(mk_moe_gate(&a));
    expect_ids(ids, (const int32_t[]){0, 3}, 2, "plain (tie between experts 0 and 3)");
}

Test(gate, bad_arguments) {
    enum { T = 2, E = 8, K = 2 };
    float logits[T * E] = {0}, w[T * K], wkeep[T * K];
    int32_t ids[T * K], ikeep[T * K], counts[E], ckeep[E];
    for (int i = 0; i < T * K; i++) ids[i] = 77, w[i] = 12345.0f;
    for (int e = 0; e < E; e++) counts[e] = 55;
    memcpy(wkeep, w, sizeof w), memcpy(ikeep, ids, sizeof ids), memcpy(ckeep, counts, sizeof counts);
    const mk_moe_gate_args good = gate_args(T, E, K, logits, ids, w, counts);
    mk_moe_gate_args a;

    TU_EXPECT_FAIL(mk_moe_gate(NULL), MK_EINVAL, "args");
    a = good, a.logits = NULL;
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "logits");
    a = good, a.ids = NULL;
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "ids");
    a = good, a.weights = NULL;
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "weights");
    a = good, a.n_experts = 0;
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "n_experts");
    a = good, a.top_k = 0;
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "top_k");
    a = good, a.top_k = E + 1;
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "top_k");
    a = good, a.n_tokens = -1;
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "n_tokens");
    a = good, a.n_tokens = INT64_MAX / 2, a.n_experts = 4, a.top_k = 2;
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "n_tokens");
    a = good, a.logits_stride = -1;
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "logits_stride");
    a = good, a.logits_stride = E - 1; /* rows would overlap: 0 or >= n_experts */
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "logits_stride");
    a = good, a.weights = (float *)(void *)(ids + 1); /* ids and weights overlap */
    TU_EXPECT_FAIL2(mk_moe_gate(&a), MK_EINVAL, "ids", "weights");
    a = good, a.score_func = (mk_score_func)2;
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "score_func");
    a = good, a.n_groups = 3; /* 8 % 3 != 0 */
    a.topk_groups = 1;
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "n_groups");
    a = good, a.n_groups = -2;
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "n_groups");
    a = good, a.n_groups = 4, a.topk_groups = 0;
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "topk_groups");
    a = good, a.n_groups = 4, a.topk_groups = 5;
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "topk_groups");
    a = good, a.n_groups = 4, a.topk_groups = 1, a.top_k = 3; /* only 1 group of 2 experts eligible */
    TU_EXPECT_FAIL2(mk_moe_gate(&a), MK_EINVAL, "top_k", "topk_groups");
    a = good, a.renormalize = 2;
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "renormalize");
    a = good, a.routed_scaling_factor = 0.0f;
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "routed_scaling_factor");
    a = good, a.routed_scaling_factor = -2.5f;
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "routed_scaling_factor");
    a = good, a.routed_scaling_factor = NAN;
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "routed_scaling_factor");
    a = good, a.routed_scaling_factor = INFINITY;
    TU_EXPECT_FAIL(mk_moe_gate(&a), MK_EINVAL, "routed_scaling_factor");
    cr_expect(tu_same_bytes(ids, ikeep, sizeof ids), "a failed mk_moe_gate wrote ids");
    cr_expect(tu_same_bytes(w, wkeep, sizeof w), "a failed mk_moe_gate wrote weights");
    cr_expect(tu_same_bytes(counts, ckeep, sizeof counts), "a failed mk_moe_gate wrote counts");
}

/* =========================================== mk_expert_bias_update =========================================== */

static void expect_bias(const float *got, const double *want, int n, const char *what) {
    for (int e = 0; e < n; e++)
        cr_expect(fabs((double)got[e] - want[e]) <= 1e-7, "%s: bias[%d] = %.9g, want %.9g", what, e, (double)got[e],
                  want[e]);
}

Test(bias_update, sign_rule) {
    /* counts [10, 2, 6, 6]: mean 6, dev [-4, 4, 0, 0] -> delta rate * [-1, 1, 0, 0] (sign(0) = 0) */
    const float r = 0.001f;
    float b[4] = {0.1f, 0.2f, 0.3f, 0.4f};
    TU_EXPECT_OK(mk_expert_bias_update(b, (const int32_t[]){10, 2, 6, 6}, 4, r, MK_BIAS_SIGN, 0));
    expect_bias(b, (const double[]){0.1f - (double)r, 0.2f + (double)r, 0.3f, 0.4f}, 4, "sign [10,2,6,6]");
    /* counts [3, 0, 0, 0]: mean 0.75, dev [-2.25, .75, .75, .75] -> [-r, r, r, r] */
    float c[4] = {0, 0, 0, 0};
    TU_EXPECT_OK(mk_expert_bias_update(c, (const int32_t[]){3, 0, 0, 0}, 4, r, MK_BIAS_SIGN, 0));
    expect_bias(c, (const double[]){-(double)r, r, r, r}, 4, "sign [3,0,0,0]");
}

Test(bias_update, adaptive_rule) {
    const double r = 0.003f;
    /* counts [10, 2, 6, 6]: dev/mean = [-2/3, 2/3, 0, 0] */
    float b[4] = {0, 0, 0, 0};
    TU_EXPECT_OK(mk_expert_bias_update(b, (const int32_t[]){10, 2, 6, 6}, 4, (float)r, MK_BIAS_ADAPTIVE, 0));
    expect_bias(b, (const double[]){-r * 2 / 3, r * 2 / 3, 0, 0}, 4, "adaptive [10,2,6,6]");
    /* counts [20, 0, 2, 2]: mean 6, dev [-14, 6, 4, 4], /mean = [-2.33, 1, 0.67, 0.67] -> clamp -> [-1, 1, 2/3, 2/3] */
    float c[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    TU_EXPECT_OK(mk_expert_bias_update(c, (const int32_t[]){20, 0, 2, 2}, 4, (float)r, MK_BIAS_ADAPTIVE, 0));
    expect_bias(c, (const double[]){0.5 - r, 0.5 + r, 0.5 + r * 2 / 3, 0.5 + r * 2 / 3}, 4, "adaptive clamp");
}

Test(bias_update, zero_mean_keeps_the_sum) {
    const double r = 0.003f;
    /* sign, counts [3, 0, 0, 0]: delta r*[-1, 1, 1, 1], mean r/2 -> r*[-1.5, .5, .5, .5] */
    float b[4] = {0.1f, -0.2f, 0.3f, 0.0f};
    TU_EXPECT_OK(mk_expert_bias_update(b, (const int32_t[]){3, 0, 0, 0}, 4, (float)r, MK_BIAS_SIGN, 1));
    expect_bias(b, (const double[]){0.1f - 1.5 * r, -0.2f + 0.5 * r, 0.3f + 0.5 * r, 0.5 * r}, 4, "sign zero_mean");
    /* adaptive, counts [20, 0, 2, 2]: delta r*[-1, 1, 2/3, 2/3], mean r/3 -> r*[-4/3, 2/3, 1/3, 1/3] */
    float c[4] = {0, 0, 0, 0};
    TU_EXPECT_OK(mk_expert_bias_update(c, (const int32_t[]){20, 0, 2, 2}, 4, (float)r, MK_BIAS_ADAPTIVE, 1));
    expect_bias(c, (const double[]){-r * 4 / 3, r * 2 / 3, r / 3, r / 3}, 4, "adaptive zero_mean");

    /* 80 experts, random counts: the sum is preserved (to float rounding of 80 values ~0.1: <= 1e-6) */
    tu_rng rng;
    tu_rng_seed(&rng, 9);
    float bias[80];
    int32_t counts[80];
    tu_fill_uniform(bias, 80, &rng, -0.2f, 0.2f);
    for (int rule = 0; rule < 2; rule++) {
        for (int e = 0; e < 80; e++) counts[e] = tu_rng_int(&rng, 0, 500);
        double s0 = 0, s1 = 0;
        for (int e = 0; e < 80; e++) s0 += bias[e];
        TU_EXPECT_OK(mk_expert_bias_update(bias, counts, 80, 1e-3f, (mk_bias_rule)rule, 1));
        for (int e = 0; e < 80; e++) s1 += bias[e];
        cr_expect(fabs(s1 - s0) <= 1e-6, "rule %d: sum %.9g -> %.9g", rule, s0, s1);
    }
}

Test(bias_update, all_zero_counts_change_nothing) {
    const int32_t zero[5] = {0, 0, 0, 0, 0};
    for (int rule = 0; rule < 2; rule++)
        for (int zm = 0; zm < 2; zm++) {
            float b[5] = {0.1f, -0.3f, 0.0f, 2.0f, -0.0f}, keep[5];
            memcpy(keep, b, sizeof b);
            TU_EXPECT_OK(mk_expert_bias_update(b, zero, 5, 0.01f, (mk_bias_rule)rule, zm));
            cr_expect(tu_same_bytes(b, keep, sizeof b), "rule %d zero_mean %d: bias changed with all-zero counts",
                      rule, zm);
        }
}

Test(bias_update, bad_arguments) {
    float b[4] = {0.1f, 0.2f, 0.3f, 0.4f}, keep[4];
    memcpy(keep, b, sizeof b);
    const int32_t counts[4] = {1, 2, 3, 4};
    TU_EXPECT_FAIL(mk_expert_bias_update(NULL, counts, 4, 1e-3f, MK_BIAS_SIGN, 0), MK_EINVAL, "expert_bias");
    TU_EXPECT_FAIL(mk_expert_bias_update(b, NULL, 4, 1e-3f, MK_BIAS_SIGN, 0), MK_EINVAL, "counts");
    TU_EXPECT_FAIL(mk_expert_bias_update(b, counts, 0, 1e-3f, MK_BIAS_SIGN, 0), MK_EINVAL, "n_experts");
    TU_EXPECT_FAIL(mk_expert_bias_update(b, counts, -4, 1e-3f, MK_BIAS_SIGN, 0), MK_EINVAL, "n_experts");
    TU_EXPECT_FAIL(mk_expert_bias_update(b, counts, 4, 1e-3f, (mk_bias_rule)7, 0), MK_EINVAL, "rule");
    TU_EXPECT_FAIL(mk_expert_bias_update(b, counts, 4, NAN, MK_BIAS_SIGN, 0), MK_EINVAL, "rate");
    TU_EXPECT_FAIL(mk_expert_bias_update(b, counts, 4, INFINITY, MK_BIAS_ADAPTIVE, 0), MK_EINVAL, "rate");
    TU_EXPECT_FAIL(mk_expert_bias_update(b, counts, 4, -1e-3f, MK_BIAS_SIGN, 0), MK_EINVAL, "rate");
    TU_EXPECT_FAIL(mk_expert_bias_update(b, counts, 4, 1e-3f, MK_BIAS_SIGN, 2), MK_EINVAL, "zero_mean");
    TU_EXPECT_FAIL(mk_expert_bias_update(b, (const int32_t[]){1, 2, -3, 4}, 4, 1e-3f, MK_BIAS_SIGN, 0), MK_EINVAL,
                   "counts");
    cr_expect(tu_same_bytes(b, keep, sizeof b), "a failed mk_expert_bias_update changed the bias");
}
