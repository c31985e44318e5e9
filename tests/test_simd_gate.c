/*
 * test_simd_gate.c: the SIMD mk_moe_gate kernels (kernels/simd/gate.inc) against the reference, through the public
 * API. For each ISA in {avx2, avx512} that this CPU runs, the same inputs go through mk_moe_gate under
 * mk_set_max_isa(isa) and under mk_set_max_isa(MK_ISA_REF) (the oracle, kernels/ref/gate.c):
 *   - ids identical, slot by slot (order included);
 *   - weights: NMSE <= the moe_gate tolerance of dispatch/selfcheck.h (1e-7); slots with id -1 exactly 0;
 *   - counts identical (pre-filled with garbage: they must be overwritten);
 *   - nothing written outside ids / weights / counts (guard elements after each);
 *   - mk_kernel_name(MK_OP_MOE_GATE) is the ISA's name, so the comparison is never ref against ref.
 *
 * Near-tie limit. The reference computes scores and select = score + bias in double, the SIMD kernels in float, so
 * two select values closer than the float error of the score computation (a few ulp, ~1e-6 relative) may be
 * ordered differently; exactly equal values (equal logits and equal biases) are bitwise equal in both and go to the
 * lower index in both. The test data therefore contains exact ties on purpose but no near-ties: every generated row
 * is checked in double (separated()) and redrawn when two distinct select values, or two distinct group scores,
 * are closer than SEP_REL = 1e-6 relative (or, with a bias, SEP_ABS_BIAS = 3e-7 absolute: the float error of
 * score + bias is relative to the terms, not to a sum that cancels). Logits stay in [-6, 6], far from -87 where
 * float sigmoid / softmax scores would lose resolution (denormals). Outside these limits a SIMD kernel may order
 * two nearly equal experts differently from the reference; that is a documented property, not a bug.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moekit.h"
#include "selfcheck.h"
#include "test_util.h"

#define SEP_REL 1e-6 /* ~8 float ulps */
#define SEP_ABS_BIAS 3e-7 /* ~2.5 float ulps of the largest select (score <= 1 plus |bias| <= 0.25) */
#define GUARD 16
#define GARBAGE_ID 0x5a5a5a5a

static double gate_tol(void) { return mki_selfcheck_tol(MK_OP_MOE_GATE, MK_F32); }

/* ---- a gating problem ---------------------------------------------------------------------------------------- */
typedef struct problem {
    int64_t T, E, k, stride; /* stride 0 = E */
    mk_score_func func;
    int use_bias, renorm;
    int64_t n_groups, topk_groups;
    float scale;
    int with_counts;
    int misalign; /* 1: logits, bias, ids, weights, counts start one element past an aligned address */
    const char *label;
} problem;

/* ---- the double-precision view of a row, for the separation check only (mirrors the documented semantics) ---- */
static void scores_f64(const float *l, int64_t E, mk_score_func func, double *s) {
    if (func == MK_SCORE_SIGMOID) {
        for (int64_t e = 0; e < E; e++) s[e] = 1.0 / (1.0 + exp(-(double)l[e]));
        return;
    }
    double mx = -INFINITY, sum = 0.0;
    for (int64_t e = 0; e < E; e++)
        if (!isnan(l[e]) && l[e] > mx) mx = l[e];
    for (int64_t e = 0; e < E; e++) sum += isnan(l[e]) ? 0.0 : exp((double)l[e] - mx);
    for (int64_t e = 0; e < E; e++) s[e] = isnan(l[e]) ? NAN : exp((double)l[e] - mx) / sum;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* 1 when no two distinct non-NaN values of v[0, n) are within SEP_REL relative (or abs_floor absolute: the float
 * error of score + bias is relative to the terms, not to a sum that cancels) of each other. Sorts v. */
static int values_separated(double *v, int64_t n, double abs_floor) {
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++)
        if (!isnan(v[i])) v[m++] = v[i];
    qsort(v, (size_t)m, sizeof *v, cmp_double);
    for (int64_t i = 1; i < m; i++) {
        if (v[i] == v[i - 1] || isinf(v[i]) || isinf(v[i - 1])) continue;
        double scale = fmax(fabs(v[i]), fabs(v[i - 1]));
        if (v[i] - v[i - 1] <= fmax(SEP_REL * scale, abs_floor)) return 0;
    }
    return 1;
}

static int separated(const problem *p, const float *l, const float *bias) {
    int64_t E = p->E;
    double *s = malloc(sizeof(double) * (size_t)E), *sel = malloc(sizeof(double) * (size_t)E);
    double *tmp = malloc(sizeof(double) * (size_t)E);
    scores_f64(l, E, p->func, s);
    for (int64_t e = 0; e < E; e++) sel[e] = s[e] + (bias ? (double)bias[e] : 0.0);
    memcpy(tmp, sel, sizeof(double) * (size_t)E);
    const double floor_abs = bias ? SEP_ABS_BIAS : 0.0;
    int ok = values_separated(tmp, E, floor_abs);
    if (ok && p->n_groups > 1) {
        int64_t gs = E / p->n_groups;
        for (int64_t g = 0; g < p->n_groups; g++) {
            double b1 = -INFINITY, b2 = -INFINITY;
            for (int64_t e = g * gs; e < (g + 1) * gs; e++) {
                if (isnan(sel[e])) continue;
                if (sel[e] > b1) b2 = b1, b1 = sel[e];
                else if (sel[e] > b2) b2 = sel[e];
            }
            tmp[g] = (bias && gs > 1 && b2 > -INFINITY) ? b1 + b2 : b1;
        }
        ok = values_separated(tmp, p->n_groups, floor_abs);
    }
    free(s), free(sel), free(tmp);
    return ok;
}

/* ---- logit generators (row t of T, E experts); each may be redrawn until separated() -------------------------- */
typedef void (*row_gen)(float *row, int64_t E, int64_t t, tu_rng *r);

static void gen_uniform(float *row, int64_t E, int64_t t, tu_rng *r) {
    (void)t;
    tu_fill_uniform(row, E, r, -6.0f, 6.0f);
}

/* Few distinct values (integers in [-2, 2] times 0.75): many exact ties, plus every 5th row entirely equal. */
static void gen_ties(float *row, int64_t E, int64_t t, tu_rng *r) {
    if (t % 5 == 3) {
        tu_fill_const(row, E, 0.25f * (float)(t % 7) - 0.5f);
        return;
    }
    for (int64_t e = 0; e < E; e++) row[e] = 0.75f * (float)tu_rng_int(r, -2, 2);
}

/* Uniform with some NaN logits; every 4th row all NaN; row 1 has +-inf logits too. */
static void gen_nan(float *row, int64_t E, int64_t t, tu_rng *r) {
    tu_fill_uniform(row, E, r, -6.0f, 6.0f);
    if (t % 4 == 2) {
        for (int64_t e = 0; e < E; e++) row[e] = NAN;
        return;
    }
    for (int64_t e = 0; e < E; e++)
        if (tu_rng_int(r, 0, 3) == 0) row[e] = NAN;
    if (t % 4 == 1) {
        row[E - 1] = -INFINITY;
        if (E > 2) row[E / 2] = INFINITY;
    }
}

/* Mostly NaN: fewer non-NaN experts than top_k in most rows (-1 fill). */
static void gen_sparse(float *row, int64_t E, int64_t t, tu_rng *r) {
    for (int64_t e = 0; e < E; e++) row[e] = NAN;
    int n_real = (int)(t % 4);
    for (int i = 0; i < n_real; i++) row[tu_rng_int(r, 0, (int)E - 1)] = tu_rng_uniform(r, -3.0f, 3.0f);
}

/* ---- running one problem ------------------------------------------------------------------------------------- */
typedef struct buffers {
    float *logits, *bias;
} buffers;

static void run_isa(const problem *p, const buffers *in, mk_isa isa, int32_t *ids, float *w, int32_t *counts) {
    const int64_t nk = p->T * p->k;
    for (int64_t i = 0; i < nk + GUARD; i++) ids[i] = GARBAGE_ID, w[i] = -7.0f;
    for (int64_t e = 0; e < p->E + GUARD; e++) counts[e] = GARBAGE_ID;
    TU_ASSERT_OK(mk_set_max_isa(isa));
    cr_assert_str_eq(mk_kernel_name(MK_OP_MOE_GATE), mk_isa_name(isa), "%s: kernel '%s' under cap %s", p->label,
                     mk_kernel_name(MK_OP_MOE_GATE), mk_isa_name(isa));
    mk_moe_gate_args a = {
        .n_tokens = p->T, .n_experts = p->E, .top_k = p->k, .logits = in->logits, .logits_stride = p->stride,
        .score_func = p->func, .expert_bias = p->use_bias ? in->bias : NULL, .n_groups = p->n_groups,
        .topk_groups = p->topk_groups, .renormalize = p->renorm, .routed_scaling_factor = p->scale,
        .ids = ids, .weights = w, .counts = p->with_counts ? counts : NULL,
    };
    TU_ASSERT_OK(mk_moe_gate(&a));
    for (int64_t i = nk; i < nk + GUARD; i++) {
        cr_assert_eq(ids[i], GARBAGE_ID, "%s [%s]: ids guard %lld written", p->label, mk_isa_name(isa), (long long)i);
        cr_assert_eq(w[i], -7.0f, "%s [%s]: weights guard %lld written", p->label, mk_isa_name(isa), (long long)i);
    }
    for (int64_t e = p->E; e < p->E + GUARD; e++)
        cr_assert_eq(counts[e], GARBAGE_ID, "%s [%s]: counts guard written", p->label, mk_isa_name(isa));
}

/* Generates the inputs of p (rows from gen, redrawn until separated), runs ref and every SIMD ISA <= detected,
 * compares. Returns the number of ISAs compared. */
static int check_problem(const problem *p, row_gen gen, uint64_t seed) {
    const int64_t T = p->T, E = p->E, k = p->k, stride = p->stride ? p->stride : E, off = p->misalign ? 1 : 0;
    tu_rng r;
    tu_rng_seed(&r, seed);
    float *logits_base = malloc(sizeof(float) * (size_t)(T * stride + 16));
    float *bias_base = malloc(sizeof(float) * (size_t)(E + 16));
    float *logits = logits_base + off, *bias = bias_base + off;
    tu_fill_const(logits_base, T * stride + 16, 1e30f); /* the stride padding must never be read as a logit */
    tu_fill_grid(bias, E, &r, 256, 10); /* multiples of 2^-10 in [-0.25, 0.25]: exact, often equal */
    for (int64_t t = 0; t < T; t++) {
        float *row = logits + t * stride;
        int attempt = 0;
        do {
            cr_assert(attempt++ < 1000, "%s: row %lld: no separated row after 1000 draws", p->label, (long long)t);
            gen(row, E, t, &r);
        } while (!separated(p, row, p->use_bias ? bias : NULL));
    }

    const int64_t nk = T * k;
    int32_t *ids_ref = malloc(sizeof(int32_t) * (size_t)(nk + GUARD + 1));
    float *w_ref = malloc(sizeof(float) * (size_t)(nk + GUARD + 1));
    int32_t *cnt_ref = malloc(sizeof(int32_t) * (size_t)(E + GUARD + 1));
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(nk + GUARD + 1));
    float *w = malloc(sizeof(float) * (size_t)(nk + GUARD + 1));
    int32_t *cnt = malloc(sizeof(int32_t) * (size_t)(E + GUARD + 1));
    buffers in = {.logits = logits, .bias = bias};

    run_isa(p, &in, MK_ISA_REF, ids_ref + off, w_ref + off, cnt_ref + off);
    /* sanity of the oracle's output, so a broken comparison cannot pass silently */
    for (int64_t i = 0; i < nk; i++)
        cr_assert(ids_ref[off + i] >= -1 && ids_ref[off + i] < E, "%s: ref id %d", p->label, ids_ref[off + i]);

    int compared = 0;
    const mk_isa isas[] = {MK_ISA_AVX2, MK_ISA_AVX512};
    for (int ii = 0; ii < 2; ii++) {
        mk_isa isa = isas[ii];
        if (isa > mk_detected_isa()) continue;
        run_isa(p, &in, isa, ids + off, w + off, cnt + off);
        const char *name = mk_isa_name(isa);
        int64_t bad = 0;
        for (int64_t i = 0; i < nk && bad < 5; i++) {
            if (ids[off + i] != ids_ref[off + i]) {
                int64_t t = i / k;
                cr_expect_fail("%s [%s]: token %lld slot %lld: id %d, ref %d", p->label, name, (long long)t,
                               (long long)(i % k), ids[off + i], ids_ref[off + i]);
                bad++;
            }
            if (ids_ref[off + i] < 0)
                cr_expect_eq(w[off + i], 0.0f, "%s [%s]: weight of an empty slot = %g", p->label, name,
                             (double)w[off + i]);
        }
        double nmse = tu_nmse(w_ref + off, w + off, nk);
        cr_expect(nmse <= gate_tol(), "%s [%s]: weights NMSE %.3g > %.3g", p->label, name, nmse, gate_tol());
        if (p->with_counts)
            for (int64_t e = 0; e < E; e++)
                cr_expect_eq(cnt[off + e], cnt_ref[off + e], "%s [%s]: counts[%lld] = %d, ref %d", p->label, name,
                             (long long)e, cnt[off + e], cnt_ref[off + e]);
        compared++;
    }
    TU_ASSERT_OK(mk_set_max_isa(MK_ISA_AVX512));
    free(logits_base), free(bias_base), free(ids_ref), free(w_ref), free(cnt_ref), free(ids), free(w), free(cnt);
    return compared;
}

/* Every test needs at least one SIMD ISA to mean anything. */
static void need_simd(void) {
    if (mk_detected_isa() < MK_ISA_AVX2) cr_skip_test("no AVX2 on this CPU: nothing to compare against ref");
}

static problem pangu(int64_t T) {
    problem p = {.T = T, .E = 80, .k = 8, .func = MK_SCORE_SIGMOID, .use_bias = 1, .renorm = 1, .scale = 2.5f,
                 .with_counts = 1, .label = "pangu"};
    return p;
}

/* ================================================================================================ tests */

Test(simd_gate, kernel_name_per_cap) {
    need_simd();
    const mk_isa isas[] = {MK_ISA_REF, MK_ISA_AVX2, MK_ISA_AVX512};
    for (int i = 0; i < 3; i++) {
        if (isas[i] > mk_detected_isa()) continue;
        TU_ASSERT_OK(mk_set_max_isa(isas[i]));
        cr_expect_str_eq(mk_kernel_name(MK_OP_MOE_GATE), mk_isa_name(isas[i]));
    }
}

Test(simd_gate, pangu_shapes) {
    need_simd();
    static const int64_t Ts[] = {1, 7, 512};
    for (int i = 0; i < 3; i++) {
        problem p = pangu(Ts[i]);
        char label[64];
        snprintf(label, sizeof label, "pangu T=%lld", (long long)Ts[i]);
        p.label = label;
        cr_expect_gt(check_problem(&p, gen_uniform, 100 + (uint64_t)i), 0);
    }
}

/* The T=512 case split over 1, 2 and 3 threads: same result as the reference each time. */
Test(simd_gate, pangu_threads) {
    need_simd();
    for (int n = 1; n <= 3; n++) {
        TU_ASSERT_OK(mk_set_num_threads(n));
        problem p = pangu(1024);
        p.label = n == 1 ? "pangu T=1024, 1 thread" : n == 2 ? "pangu T=1024, 2 threads" : "pangu T=1024, 3 threads";
        check_problem(&p, gen_uniform, 7);
    }
}

/* Independent of the reference: the pangu output is a set of 8 distinct valid experts whose weights sum to 2.5. */
Test(simd_gate, pangu_self_consistent) {
    need_simd();
    enum { T = 33, E = 80, K = 8 };
    tu_rng r;
    tu_rng_seed(&r, 5);
    float logits[T * E], bias[E], w[T * K];
    int32_t ids[T * K], counts[E];
    tu_fill_uniform(logits, T * E, &r, -4.0f, 4.0f);
    tu_fill_grid(bias, E, &r, 256, 10);
    TU_ASSERT_OK(mk_set_max_isa(MK_ISA_AVX512));
    mk_moe_gate_args a = {.n_tokens = T, .n_experts = E, .top_k = K, .logits = logits, .expert_bias = bias,
                          .renormalize = 1, .routed_scaling_factor = 2.5f, .ids = ids, .weights = w, .counts = counts};
    TU_ASSERT_OK(mk_moe_gate(&a));
    int64_t total = 0;
    for (int e = 0; e < E; e++) total += counts[e];
    cr_expect_eq(total, T * K);
    for (int t = 0; t < T; t++) {
        double sum = 0;
        for (int j = 0; j < K; j++) {
            cr_assert(ids[t * K + j] >= 0 && ids[t * K + j] < E);
            for (int i = 0; i < j; i++) cr_expect_neq(ids[t * K + i], ids[t * K + j], "token %d repeats an id", t);
            if (j > 0) {
                int p = ids[t * K + j - 1], q = ids[t * K + j];
                double sp = 1 / (1 + exp(-(double)logits[t * E + p])) + bias[p];
                double sq = 1 / (1 + exp(-(double)logits[t * E + q])) + bias[q];
                cr_expect(sp > sq, "token %d: slot %d select %.9g not above slot %d %.9g", t, j - 1, sp, j, sq);
            }
            sum += w[t * K + j];
        }
        cr_expect(fabs(sum - 2.5) < 1e-5, "token %d: weights sum to %.9g", t, sum);
    }
}

Test(simd_gate, softmax_and_no_bias) {
    need_simd();
    problem p = pangu(64);
    p.func = MK_SCORE_SOFTMAX;
    p.label = "softmax + bias, renorm";
    check_problem(&p, gen_uniform, 11);
    p.use_bias = 0;
    p.renorm = 0;
    p.scale = 1.0f;
    p.label = "softmax, no bias, no renorm";
    check_problem(&p, gen_uniform, 12);
    p.func = MK_SCORE_SIGMOID;
    p.label = "sigmoid, no bias, no renorm";
    check_problem(&p, gen_uniform, 13);
    p.renorm = 1;
    p.scale = 0.5f;
    p.label = "sigmoid, no bias, renorm x0.5";
    check_problem(&p, gen_uniform, 14);
}

Test(simd_gate, exact_ties) {
    need_simd();
    static const int64_t Es[] = {80, 16, 33, 512};
    static const int64_t Ks[] = {8, 16, 5, 32};
    for (int i = 0; i < 4; i++) {
        for (int b = 0; b < 2; b++) {
            for (int f = 0; f < 2; f++) {
                problem p = {.T = 20, .E = Es[i], .k = Ks[i], .func = f ? MK_SCORE_SOFTMAX : MK_SCORE_SIGMOID,
                             .use_bias = b, .renorm = 1, .scale = 2.5f, .with_counts = 1};
                char label[96];
                snprintf(label, sizeof label, "ties E=%lld k=%lld bias=%d %s", (long long)Es[i], (long long)Ks[i], b,
                         f ? "softmax" : "sigmoid");
                p.label = label;
                check_problem(&p, gen_ties, 20 + (uint64_t)i);
            }
        }
    }
}

/* Equal logits with zero bias on every expert: the answer is experts 0 .. k-1 in order (checked directly). */
Test(simd_gate, whole_row_equal_is_index_order) {
    need_simd();
    enum { E = 100, K = 12 };
    float logits[E];
    int32_t ids[K];
    float w[K];
    tu_fill_const(logits, E, 0.3f);
    const mk_isa isas[] = {MK_ISA_AVX2, MK_ISA_AVX512};
    for (int i = 0; i < 2; i++) {
        if (isas[i] > mk_detected_isa()) continue;
        TU_ASSERT_OK(mk_set_max_isa(isas[i]));
        for (int f = 0; f < 2; f++) {
            mk_moe_gate_args a = {.n_tokens = 1, .n_experts = E, .top_k = K, .logits = logits,
                                  .score_func = f ? MK_SCORE_SOFTMAX : MK_SCORE_SIGMOID, .renormalize = 1,
                                  .routed_scaling_factor = 1.0f, .ids = ids, .weights = w};
            TU_ASSERT_OK(mk_moe_gate(&a));
            for (int j = 0; j < K; j++) {
                cr_expect_eq(ids[j], j, "[%s] slot %d: id %d", mk_isa_name(isas[i]), j, ids[j]);
                cr_expect(fabsf(w[j] - 1.0f / K) < 1e-6f, "[%s] slot %d: weight %g", mk_isa_name(isas[i]), j,
                          (double)w[j]);
            }
        }
    }
}

Test(simd_gate, nan_logits) {
    need_simd();
    static const int64_t Es[] = {80, 10, 33};
    static const int64_t Ks[] = {8, 8, 3};
    for (int i = 0; i < 3; i++) {
        for (int f = 0; f < 2; f++) {
            problem p = {.T = 16, .E = Es[i], .k = Ks[i], .func = f ? MK_SCORE_SOFTMAX : MK_SCORE_SIGMOID,
                         .use_bias = 1, .renorm = 1, .scale = 2.5f, .with_counts = 1};
            char label[96];
            snprintf(label, sizeof label, "NaN E=%lld k=%lld %s", (long long)Es[i], (long long)Ks[i],
                     f ? "softmax" : "sigmoid");
            p.label = label;
            check_problem(&p, gen_nan, 30 + (uint64_t)i);
            snprintf(label, sizeof label, "mostly NaN E=%lld k=%lld %s", (long long)Es[i], (long long)Ks[i],
                     f ? "softmax" : "sigmoid");
            check_problem(&p, gen_sparse, 40 + (uint64_t)i);
        }
    }
}

/* An all-NaN row gives ids -1 and weights 0 in every slot (checked directly). */
Test(simd_gate, all_nan_row_fills_minus_one) {
    need_simd();
    enum { E = 80, K = 8 };
    float logits[2 * E];
    int32_t ids[2 * K], counts[E];
    float w[2 * K];
    for (int e = 0; e < E; e++) logits[e] = NAN, logits[E + e] = e == 7 ? 1.0f : NAN;
    const mk_isa isas[] = {MK_ISA_AVX2, MK_ISA_AVX512};
    for (int i = 0; i < 2; i++) {
        if (isas[i] > mk_detected_isa()) continue;
        TU_ASSERT_OK(mk_set_max_isa(isas[i]));
        mk_moe_gate_args a = {.n_tokens = 2, .n_experts = E, .top_k = K, .logits = logits, .renormalize = 1,
                              .routed_scaling_factor = 2.5f, .ids = ids, .weights = w, .counts = counts};
        TU_ASSERT_OK(mk_moe_gate(&a));
        for (int j = 0; j < K; j++) {
            cr_expect_eq(ids[j], -1, "[%s] all-NaN row slot %d: id %d", mk_isa_name(isas[i]), j, ids[j]);
            cr_expect_eq(w[j], 0.0f);
            cr_expect_eq(ids[K + j], j == 0 ? 7 : -1, "[%s] one-expert row slot %d: id %d", mk_isa_name(isas[i]), j,
                         ids[K + j]);
            cr_expect_eq(w[K + j], j == 0 ? 2.5f : 0.0f);
        }
        for (int e = 0; e < E; e++) cr_expect_eq(counts[e], e == 7 ? 1 : 0);
    }
}

Test(simd_gate, odd_expert_counts) {
    need_simd();
    static const int64_t Es[] = {5, 17, 33, 100, 257, 512, 1, 8, 16, 31};
    for (int i = 0; i < (int)TU_ARRAY_LEN(Es); i++) {
        const int64_t E = Es[i];
        int64_t ks[5] = {1, E < 8 ? E : 8, E, E < 32 ? E : 32, E > 2 ? E / 2 : 1};
        for (int j = 0; j < 5; j++) {
            if (ks[j] > 32) continue; /* k > 32 is the reference fallback, tested below */
            for (int f = 0; f < 2; f++) {
                problem p = {.T = 9, .E = E, .k = ks[j], .func = f ? MK_SCORE_SOFTMAX : MK_SCORE_SIGMOID,
                             .use_bias = (i + j) % 2, .renorm = 1, .scale = 2.5f, .with_counts = 1};
                char label[96];
                snprintf(label, sizeof label, "E=%lld k=%lld bias=%d %s", (long long)E, (long long)ks[j], p.use_bias,
                         f ? "softmax" : "sigmoid");
                p.label = label;
                check_problem(&p, gen_uniform, 50 + (uint64_t)(i * 10 + j));
            }
        }
    }
}

Test(simd_gate, group_limited) {
    need_simd();
    static const struct { int64_t E, k, groups, keep; } g[] = {
        {64, 8, 8, 4}, {80, 8, 5, 2}, {80, 8, 5, 1}, {32, 4, 4, 2}, {256, 8, 8, 4}, {12, 3, 12, 3}, {80, 8, 80, 8},
    };
    for (int i = 0; i < (int)TU_ARRAY_LEN(g); i++) {
        for (int b = 0; b < 2; b++) {
            for (int f = 0; f < 2; f++) {
                problem p = {.T = 24, .E = g[i].E, .k = g[i].k, .func = f ? MK_SCORE_SOFTMAX : MK_SCORE_SIGMOID,
                             .use_bias = b, .n_groups = g[i].groups, .topk_groups = g[i].keep, .renorm = 1,
                             .scale = 2.5f, .with_counts = 1};
                char label[128];
                snprintf(label, sizeof label, "groups E=%lld k=%lld %lld keep %lld bias=%d %s", (long long)g[i].E,
                         (long long)g[i].k, (long long)g[i].groups, (long long)g[i].keep, b,
                         f ? "softmax" : "sigmoid");
                p.label = label;
                check_problem(&p, gen_uniform, 60 + (uint64_t)i);
                check_problem(&p, gen_nan, 70 + (uint64_t)i);
                check_problem(&p, gen_ties, 80 + (uint64_t)i);
            }
        }
    }
}

Test(simd_gate, strided_and_unaligned) {
    need_simd();
    problem p = pangu(37);
    p.stride = 83;
    p.label = "pangu, logits_stride 83";
    check_problem(&p, gen_uniform, 90);
    p.misalign = 1;
    p.label = "pangu, stride 83, misaligned";
    check_problem(&p, gen_uniform, 91);
    p.stride = 0;
    p.label = "pangu, misaligned";
    check_problem(&p, gen_nan, 92);
    p.E = 33, p.k = 3, p.stride = 40, p.n_groups = 3, p.topk_groups = 2, p.func = MK_SCORE_SOFTMAX;
    p.label = "E=33 groups, stride 40, misaligned";
    check_problem(&p, gen_uniform, 93);
}

/* Beyond the fast path (n_experts > 512 or top_k > 32) the kernel hands the call to the reference. */
Test(simd_gate, reference_fallback_shapes) {
    need_simd();
    problem p = {.T = 5, .E = 600, .k = 8, .func = MK_SCORE_SIGMOID, .use_bias = 1, .renorm = 1, .scale = 2.5f,
                 .with_counts = 1, .label = "E=600 (fallback)"};
    check_problem(&p, gen_uniform, 100);
    p.E = 80, p.k = 40, p.label = "k=40 (fallback)";
    check_problem(&p, gen_uniform, 101);
}
