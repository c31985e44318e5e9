/*
 * test_norm.c: mk_rmsnorm, mk_rmsnorm_add, mk_knorm, mk_knorm_rope.
 *
 * Expected values: hand computation, or the definition rmsnorm(v)[i] = v[i] / sqrt(mean(v^2) + eps) * w[i]
 * evaluated in double in this file (and, for knorm_rope, the closed-form double RoPE of test_util.c).
 * Tolerances (stated per check):
 *   - hand cases: |got - want| <= 1e-6 * |want| + 1e-7
 *   - random rows: per element |got - want| <= 1e-5 * |want| + 1e-6 (float result of a double-exact formula;
 *     catches an un-refined rsqrt approximation, ~6e-5 relative)
 *   - knorm_rope F32: |got - want| <= 1e-5 * (1 + |want|); BF16 output: <= 2^-8 * |want| + 1e-5 (half a bf16 ulp,
 *     i.e. round-to-nearest; truncation would exceed it)
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "moekit.h"
#include "test_util.h"

#define QKV_ROW 13568 /* 64*192 + 4*192 + 4*128 */
#define K_OFF 12288   /* K block inside the fused row */
#define HK 4
#define HD 192

static int close_rel(double got, double want, double rel, double abs_tol) {
    return fabs(got - want) <= rel * fabs(want) + abs_tol; /* false for NaN */
}

/* The definition, in double, for one row. */
static void rms_row_f64(const float *x, const float *w, double eps, int64_t dim, double *out) {
    double ss = 0.0;
    for (int64_t i = 0; i < dim; i++) ss += (double)x[i] * (double)x[i];
    double inv = 1.0 / sqrt(ss / (double)dim + eps);
    for (int64_t i = 0; i < dim; i++) out[i] = (double)x[i] * inv * (double)w[i];
}

/* ================================================ mk_rmsnorm ================================================ */

Test(norm, rmsnorm_constant_row) {
    /* x = c everywhere: mean(x^2) = c^2, so out[i] = w[i] * c / sqrt(c^2 + eps). */
    static const int64_t dims[] = {1, 7, 8, 16, 37, 4608};
    const float c = 3.0f, eps = 1e-5f;
    for (int d = 0; d < (int)TU_ARRAY_LEN(dims); d++) {
        int64_t dim = dims[d];
        float *x = malloc(sizeof(float) * dim), *w = malloc(sizeof(float) * dim), *o = malloc(sizeof(float) * dim);
        for (int64_t i = 0; i < dim; i++) {
            x[i] = c;
            w[i] = 0.5f + 0.25f * (float)(i % 4); /* 0.5, 0.75, 1, 1.25 */
        }
        TU_ASSERT_OK(mk_rmsnorm(x, 0, w, eps, 1, dim, o, 0));
        double base = 3.0 / sqrt(9.0 + (double)eps);
        for (int64_t i = 0; i < dim; i++)
            cr_expect(close_rel(o[i], (double)w[i] * base, 1e-6, 1e-7), "dim %lld i %lld: got %.9g want %.9g",
                      (long long)dim, (long long)i, (double)o[i], (double)w[i] * base);
        free(x), free(w), free(o);
    }
}

Test(norm, rmsnorm_eps_is_inside_the_sqrt) {
    /* c = 1, eps = 3: 1 / sqrt(1 + 3) = 0.5 (eps outside the sqrt would give 1/(1+3) or 1/1 + ...). */
    float x[5] = {1, 1, 1, 1, 1}, w[5] = {1, 2, 4, -2, 0}, o[5];
    TU_ASSERT_OK(mk_rmsnorm(x, 0, w, 3.0f, 1, 5, o, 0));
    const float want[5] = {0.5f, 1.0f, 2.0f, -1.0f, 0.0f};
    for (int i = 0; i < 5; i++) cr_expect(close_rel(o[i], want[i], 1e-6, 1e-7), "i %d: %.9g", i, (double)o[i]);
    /* A zero row with eps > 0 gives exact zeros, not NaN. */
    float z[8] = {0}, w8[8] = {1, 1, 1, 1, 1, 1, 1, 1}, oz[8];
    tu_fill_bits(oz, 8, TU_SENTINEL_BITS);
    TU_ASSERT_OK(mk_rmsnorm(z, 0, w8, 1e-5f, 1, 8, oz, 0));
    for (int i = 0; i < 8; i++) cr_expect(oz[i] == 0.0f, "zero row, i %d: %g", i, (double)oz[i]);
}

Test(norm, rmsnorm_hand_case) {
    /* x = [1,2,3,4]: mean(x^2) = 30/4 = 7.5, sqrt(7.5) = 2.7386127875258306, eps = 0. */
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 0.5f, 2, -1}, o[4];
    TU_ASSERT_OK(mk_rmsnorm(x, 0, w, 0.0f, 1, 4, o, 0));
    const double want[4] = {0.36514837167011072, 0.36514837167011072, 2.1908902300206643, -1.4605934866804429};
    for (int i = 0; i < 4; i++)
        cr_expect(close_rel(o[i], want[i], 1e-6, 1e-7), "i %d: got %.9g want %.9g", i, (double)o[i], want[i]);
}

static void rmsnorm_random_case(int64_t n_rows, int64_t dim, int64_t xs, int64_t os, uint64_t seed) {
    tu_rng r;
    tu_rng_seed(&r, seed);
    int64_t xs_eff = xs ? xs : dim, os_eff = os ? os : dim;
    float *x = malloc(sizeof(float) * (size_t)(n_rows * xs_eff));
    float *w = malloc(sizeof(float) * (size_t)dim);
    float *o = malloc(sizeof(float) * (size_t)(n_rows * os_eff));
    float *x0 = malloc(sizeof(float) * (size_t)(n_rows * xs_eff));
    double *want = malloc(sizeof(double) * (size_t)dim);
    tu_fill_uniform(x, n_rows * xs_eff, &r, -2.0f, 2.0f);
    tu_fill_uniform(w, dim, &r, 0.5f, 1.5f);
    tu_fill_bits(o, n_rows * os_eff, TU_SENTINEL_BITS);
    memcpy(x0, x, sizeof(float) * (size_t)(n_rows * xs_eff));
    TU_ASSERT_OK(mk_rmsnorm(x, xs, w, 1e-5f, n_rows, dim, o, os));
    int bad = 0;
    for (int64_t rr = 0; rr < n_rows; rr++) {
        rms_row_f64(x + rr * xs_eff, w, 1e-5f, dim, want);
        for (int64_t i = 0; i < dim; i++)
            if (!close_rel(o[rr * os_eff + i], want[i], 1e-5, 1e-6) && bad++ < 5)
                cr_expect(0, "dim %lld row %lld i %lld: got %.9g want %.9g", (long long)dim, (long long)rr,
                          (long long)i, (double)o[rr * os_eff + i], want[i]);
        for (int64_t i = dim; i < os_eff; i++)
            cr_expect(tu_same_bytes(&o[rr * os_eff + i], &(uint32_t){TU_SENTINEL_BITS}, 4),
                      "out padding row %lld col %lld written", (long long)rr, (long long)i);
    }
    cr_expect_eq(bad, 0, "%d elements out of tolerance", bad);
    cr_expect(tu_same_bytes(x, x0, sizeof(float) * (size_t)(n_rows * xs_eff)), "x was modified");
    free(x), free(w), free(o), free(x0), free(want);
}

Test(norm, rmsnorm_random_strided) {
    rmsnorm_random_case(5, 4608, 4608 + 13, 4608 + 5, 1);
    rmsnorm_random_case(3, 100, 0, 0, 2);
    rmsnorm_random_case(4, 131, 140, 0, 3);
    rmsnorm_random_case(2, 3, 0, 8, 4);
}

Test(norm, rmsnorm_in_place) {
    tu_rng r;
    tu_rng_seed(&r, 11);
    enum { R = 3, D = 200, S = 211 };
    static float x[R * S], x0[R * S], w[D];
    static double want[D];
    tu_fill_uniform(x, R * S, &r, -3.0f, 3.0f);
    tu_fill_uniform(w, D, &r, -1.0f, 1.0f);
    memcpy(x0, x, sizeof x);
    TU_ASSERT_OK(mk_rmsnorm(x, S, w, 1e-5f, R, D, x, S));
    for (int rr = 0; rr < R; rr++) {
        rms_row_f64(x0 + rr * S, w, 1e-5f, D, want);
        for (int i = 0; i < D; i++)
            cr_expect(close_rel(x[rr * S + i], want[i], 1e-5, 1e-6), "row %d i %d: got %.9g want %.9g", rr, i,
                      (double)x[rr * S + i], want[i]);
        cr_expect(tu_same_bytes(x + rr * S + D, x0 + rr * S + D, sizeof(float) * (S - D)), "padding of row %d", rr);
    }
}

Test(norm, rmsnorm_zero_rows_writes_nothing) {
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 1}, o[4];
    tu_fill_bits(o, 4, TU_SENTINEL_BITS);
    TU_EXPECT_OK(mk_rmsnorm(x, 0, w, 1e-5f, 0, 4, o, 0));
    for (int i = 0; i < 4; i++) cr_expect(tu_same_bytes(&o[i], &(uint32_t){TU_SENTINEL_BITS}, 4), "o[%d] written", i);
}

Test(norm, rmsnorm_bad_arguments) {
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8}, w[4] = {1, 1, 1, 1}, o[8], keep[8];
    tu_fill_bits(o, 8, TU_SENTINEL_BITS);
    memcpy(keep, o, sizeof o);
    TU_EXPECT_FAIL(mk_rmsnorm(NULL, 0, w, 1e-5f, 2, 4, o, 0), MK_EINVAL, "x");
    TU_EXPECT_FAIL(mk_rmsnorm(x, 0, NULL, 1e-5f, 2, 4, o, 0), MK_EINVAL, "weight");
    TU_EXPECT_FAIL(mk_rmsnorm(x, 0, w, 1e-5f, 2, 4, NULL, 0), MK_EINVAL, "out");
    TU_EXPECT_FAIL(mk_rmsnorm(x, 0, w, 1e-5f, 2, 0, o, 0), MK_EINVAL, "dim");
    TU_EXPECT_FAIL(mk_rmsnorm(x, 0, w, 1e-5f, 2, -4, o, 0), MK_EINVAL, "dim");
    TU_EXPECT_FAIL(mk_rmsnorm(x, 0, w, 1e-5f, -1, 4, o, 0), MK_EINVAL, "n_rows");
    TU_EXPECT_FAIL(mk_rmsnorm(x, 0, w, -1e-5f, 2, 4, o, 0), MK_EINVAL, "eps");
    TU_EXPECT_FAIL(mk_rmsnorm(x, 0, w, NAN, 2, 4, o, 0), MK_EINVAL, "eps");
    TU_EXPECT_FAIL(mk_rmsnorm(x, 0, w, INFINITY, 2, 4, o, 0), MK_EINVAL, "eps");
    TU_EXPECT_FAIL(mk_rmsnorm(x, -4, w, 1e-5f, 2, 4, o, 0), MK_EINVAL, "x_stride");
    TU_EXPECT_FAIL(mk_rmsnorm(x, 0, w, 1e-5f, 2, 4, o, -1), MK_EINVAL, "out_stride");
    TU_EXPECT_FAIL(mk_rmsnorm(x, 0, w, 1e-5f, INT64_MAX / 2, 4, o, 0), MK_EINVAL, "n_rows");
    TU_EXPECT_FAIL2(mk_rmsnorm(x, INT64_MAX / 2, w, 1e-5f, 3, 4, o, 0), MK_EINVAL, "x_stride", "n_rows");
    TU_EXPECT_FAIL(mk_rmsnorm(x, 3, w, 1e-5f, 2, 4, o, 0), MK_EINVAL, "x_stride");   /* 0 < stride < dim */
    TU_EXPECT_FAIL(mk_rmsnorm(x, 0, w, 1e-5f, 2, 4, o, 2), MK_EINVAL, "out_stride"); /* rows would overlap */
    cr_expect(tu_same_bytes(o, keep, sizeof o), "a failed mk_rmsnorm wrote into out");
    /* out partially overlapping x (not the same rows): MK_EINVAL, x untouched */
    float xx[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, xkeep[12];
    memcpy(xkeep, xx, sizeof xx);
    TU_EXPECT_FAIL2(mk_rmsnorm(xx, 0, w, 1e-5f, 2, 4, xx + 2, 0), MK_EINVAL, "out", "x");
    TU_EXPECT_FAIL2(mk_rmsnorm(xx, 4, w, 1e-5f, 2, 4, xx, 6), MK_EINVAL, "out", "x"); /* same pointer, other stride */
    cr_expect(tu_same_bytes(xx, xkeep, sizeof xx), "a failed overlapping mk_rmsnorm wrote");
    /* zero rows: data pointers may be NULL */
    TU_EXPECT_OK(mk_rmsnorm(NULL, 0, w, 1e-5f, 0, 4, NULL, 0));
}

/* ============================================== mk_rmsnorm_add ============================================== */

Test(norm, rmsnorm_add_hand_case) {
    /* row 0: branch [2,2,2,2] -> rms 2 -> normed [1,1,1,1] * w [1,2,3,4]; residual [1,1,1,1] -> [2,3,4,5].
     * row 1: branch [3,4,0,0] -> mean sq 25/4 -> rms 2.5 -> [1.2,1.6,0,0] * w -> [1.2,3.2,0,0];
     *        residual [10,-10,0,0.5] -> [11.2,-6.8,0,0.5]. eps = 0. */
    float res[8] = {1, 1, 1, 1, 10, -10, 0, 0.5f};
    const float br[8] = {2, 2, 2, 2, 3, 4, 0, 0};
    const float w[4] = {1, 2, 3, 4};
    float br0[8];
    memcpy(br0, br, sizeof br);
    TU_ASSERT_OK(mk_rmsnorm_add(res, 0, br, 0, w, 0.0f, 2, 4));
    const double want[8] = {2, 3, 4, 5, 11.2, -6.8, 0, 0.5};
    for (int i = 0; i < 8; i++)
        cr_expect(close_rel(res[i], want[i], 1e-6, 1e-7), "i %d: got %.9g want %.9g", i, (double)res[i], want[i]);
    cr_expect(tu_same_bytes(br, br0, sizeof br), "branch was modified");
}

Test(norm, rmsnorm_add_random_strided) {
    enum { R = 4, D = 4608, RS = D + 7, BS = D + 32 };
    tu_rng r;
    tu_rng_seed(&r, 21);
    float *res = malloc(sizeof(float) * R * RS), *res0 = malloc(sizeof(float) * R * RS);
    float *br = malloc(sizeof(float) * R * BS), *w = malloc(sizeof(float) * D);
    double *nb = malloc(sizeof(double) * D);
    tu_fill_uniform(res, R * RS, &r, -4.0f, 4.0f);
    tu_fill_uniform(br, R * BS, &r, -1.0f, 1.0f);
    tu_fill_uniform(w, D, &r, 0.01f, 0.05f); /* small post-norm gains, like the depth-scaled sandwich norm */
    memcpy(res0, res, sizeof(float) * R * RS);
    TU_ASSERT_OK(mk_rmsnorm_add(res, RS, br, BS, w, 1e-5f, R, D));
    int bad = 0;
    for (int rr = 0; rr < R; rr++) {
        rms_row_f64(br + rr * BS, w, 1e-5f, D, nb);
        for (int i = 0; i < D; i++) {
            double want = (double)res0[rr * RS + i] + nb[i];
            if (!close_rel(res[rr * RS + i], want, 2e-6, 1e-6) && bad++ < 5)
                cr_expect(0, "row %d i %d: got %.9g want %.9g", rr, i, (double)res[rr * RS + i], want);
        }
        cr_expect(tu_same_bytes(res + rr * RS + D, res0 + rr * RS + D, sizeof(float) * (RS - D)), "padding %d", rr);
    }
    cr_expect_eq(bad, 0, "%d elements out of tolerance", bad);
    free(res), free(res0), free(br), free(w), free(nb);
}

Test(norm, rmsnorm_add_bad_arguments) {
    float res[8], keep[8], br[8] = {1, 2, 3, 4, 5, 6, 7, 8}, w[4] = {1, 1, 1, 1};
    tu_fill_const(res, 8, 12345.0f);
    memcpy(keep, res, sizeof res);
    TU_EXPECT_FAIL(mk_rmsnorm_add(NULL, 0, br, 0, w, 1e-5f, 2, 4), MK_EINVAL, "residual");
    TU_EXPECT_FAIL(mk_rmsnorm_add(res, 0, NULL, 0, w, 1e-5f, 2, 4), MK_EINVAL, "branch");
    TU_EXPECT_FAIL(mk_rmsnorm_add(res, 0, br, 0, NULL, 1e-5f, 2, 4), MK_EINVAL, "weight");
    TU_EXPECT_FAIL(mk_rmsnorm_add(res, 0, br, 0, w, 1e-5f, 2, 0), MK_EINVAL, "dim");
    TU_EXPECT_FAIL(mk_rmsnorm_add(res, 0, br, 0, w, 1e-5f, -2, 4), MK_EINVAL, "n_rows");
    TU_EXPECT_FAIL(mk_rmsnorm_add(res, 0, br, 0, w, -1.0f, 2, 4), MK_EINVAL, "eps");
    TU_EXPECT_FAIL(mk_rmsnorm_add(res, 0, br, 0, w, NAN, 2, 4), MK_EINVAL, "eps");
    TU_EXPECT_FAIL(mk_rmsnorm_add(res, -1, br, 0, w, 1e-5f, 2, 4), MK_EINVAL, "residual_stride");
    TU_EXPECT_FAIL(mk_rmsnorm_add(res, 0, br, -1, w, 1e-5f, 2, 4), MK_EINVAL, "branch_stride");
    TU_EXPECT_FAIL(mk_rmsnorm_add(res, 0, br, 0, w, 1e-5f, INT64_MAX / 2, 4), MK_EINVAL, "n_rows");
    TU_EXPECT_FAIL(mk_rmsnorm_add(res, 2, br, 0, w, 1e-5f, 2, 4), MK_EINVAL, "residual_stride");
    TU_EXPECT_FAIL(mk_rmsnorm_add(res, 0, br, 3, w, 1e-5f, 2, 4), MK_EINVAL, "branch_stride");
    /* branch must be disjoint from residual */
    TU_EXPECT_FAIL2(mk_rmsnorm_add(res, 0, res + 2, 0, w, 1e-5f, 1, 4), MK_EINVAL, "branch", "residual");
    TU_EXPECT_FAIL2(mk_rmsnorm_add(res, 0, res, 0, w, 1e-5f, 2, 4), MK_EINVAL, "branch", "residual");
    cr_expect(tu_same_bytes(res, keep, sizeof res), "a failed mk_rmsnorm_add wrote into residual");
    TU_EXPECT_OK(mk_rmsnorm_add(res, 0, br, 0, w, 1e-5f, 0, 4));
    cr_expect(tu_same_bytes(res, keep, sizeof res), "n_rows = 0 wrote into residual");
    TU_EXPECT_OK(mk_rmsnorm_add(NULL, 0, NULL, 0, w, 1e-5f, 0, 4)); /* zero rows: data may be NULL */
}

/* ================================================= mk_knorm ================================================= */

/* T tokens of a fused qkv row [Q 12288 | K 768 | V 512]; returns the buffer. */
static float *fused_rows(int64_t T, tu_rng *r) {
    float *buf = malloc(sizeof(float) * (size_t)(T * QKV_ROW));
    tu_fill_uniform(buf, T * QKV_ROW, r, -2.0f, 2.0f);
    return buf;
}

Test(norm, knorm_constant_heads_in_fused_row) {
    /* Each head constant c(t,h) (different per head, different signs): per-head normalisation gives
     * w[i] * c / sqrt(c^2 + eps); normalising the whole token jointly would give something else. */
    enum { T = 3 };
    tu_rng r;
    tu_rng_seed(&r, 5);
    float *buf = fused_rows(T, &r);
    float w[HD];
    for (int i = 0; i < HD; i++) w[i] = 0.25f + (float)i / 64.0f;
    const float cs[HK] = {0.5f, -2.0f, 8.0f, -0.125f};
    for (int t = 0; t < T; t++)
        for (int h = 0; h < HK; h++)
            for (int i = 0; i < HD; i++) buf[t * QKV_ROW + K_OFF + h * HD + i] = cs[h] * (float)(t + 1);
    float *before = malloc(sizeof(float) * T * QKV_ROW);
    memcpy(before, buf, sizeof(float) * T * QKV_ROW);
    mk_heads k = tu_heads(buf + K_OFF, MK_F32, T, HK, HD, QKV_ROW, 0);
    const float eps = 1e-5f;
    TU_ASSERT_OK(mk_knorm(&k, w, eps));
    for (int t = 0; t < T; t++)
        for (int h = 0; h < HK; h++) {
            double c = (double)cs[h] * (t + 1);
            double f = c / sqrt(c * c + (double)eps);
            for (int i = 0; i < HD; i++) {
                float got = buf[t * QKV_ROW + K_OFF + h * HD + i];
                cr_expect(close_rel(got, w[i] * f, 1e-6, 1e-7), "t %d h %d i %d: got %.9g want %.9g", t, h, i,
                          (double)got, w[i] * f);
            }
            /* Q and V parts of the row are untouched, bit for bit. */
            cr_expect(tu_same_bytes(buf + t * QKV_ROW, before + t * QKV_ROW, sizeof(float) * K_OFF), "Q of t %d", t);
            cr_expect(tu_same_bytes(buf + t * QKV_ROW + K_OFF + HK * HD, before + t * QKV_ROW + K_OFF + HK * HD,
                                    sizeof(float) * (QKV_ROW - K_OFF - HK * HD)),
                      "V of t %d", t);
        }
    free(buf), free(before);
}

static void knorm_random_case(int64_t T, int64_t H, int64_t D, int64_t ts, int64_t hs, int64_t offset, uint64_t seed) {
    tu_rng r;
    tu_rng_seed(&r, seed);
    int64_t hs_e = hs ? hs : D, ts_e = ts ? ts : H * D;
    int64_t n = offset + (T - 1) * ts_e + (H - 1) * hs_e + D + 16;
    float *buf = malloc(sizeof(float) * (size_t)n), *before = malloc(sizeof(float) * (size_t)n);
    float *w = malloc(sizeof(float) * (size_t)D);
    double *want = malloc(sizeof(double) * (size_t)D);
    char *is_k = calloc((size_t)n, 1);
    tu_fill_uniform(buf, n, &r, -3.0f, 3.0f);
    tu_fill_uniform(w, D, &r, 0.5f, 1.5f);
    memcpy(before, buf, sizeof(float) * (size_t)n);
    mk_heads k = tu_heads(buf + offset, MK_F32, T, H, D, ts, hs);
    TU_ASSERT_OK(mk_knorm(&k, w, 1e-5f));
    int bad = 0;
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            int64_t base = offset + t * ts_e + h * hs_e;
            rms_row_f64(before + base, w, 1e-5f, D, want);
            for (int64_t i = 0; i < D; i++) {
                is_k[base + i] = 1;
                if (!close_rel(buf[base + i], want[i], 1e-5, 1e-6) && bad++ < 5)
                    cr_expect(0, "t %lld h %lld i %lld: got %.9g want %.9g", (long long)t, (long long)h, (long long)i,
                              (double)buf[base + i], want[i]);
            }
        }
    cr_expect_eq(bad, 0, "%d elements out of tolerance", bad);
    for (int64_t j = 0; j < n; j++)
        if (!is_k[j] && !tu_same_bytes(&buf[j], &before[j], 4)) {
            cr_expect(0, "element %lld outside the view was written", (long long)j);
            break;
        }
    free(buf), free(before), free(w), free(want), free(is_k);
}

Test(norm, knorm_random_views) {
    knorm_random_case(3, HK, HD, QKV_ROW, 0, K_OFF, 31);  /* K inside the fused qkv row */
    knorm_random_case(5, HK, HD, 0, 0, 0, 32);            /* contiguous */
    knorm_random_case(2, 3, 192, 3 * 200 + 8, 200, 4, 33); /* gaps between heads and tokens */
    knorm_random_case(4, 2, 13, 0, 0, 0, 34);             /* odd head_dim (vector tails) */
    knorm_random_case(1, 128 * 4, HD, 0, 0, 0, 35);       /* the sink keys at load time: [128, 4, 192] as 1 x 512 */
}

Test(norm, knorm_bad_arguments) {
    float buf[2 * HK * HD], keep[2 * HK * HD], w[HD];
    tu_fill_const(buf, 2 * HK * HD, 12345.0f);
    tu_fill_const(w, HD, 1.0f);
    memcpy(keep, buf, sizeof buf);
    mk_heads k = tu_heads(buf, MK_F32, 2, HK, HD, 0, 0), b;
    TU_EXPECT_FAIL(mk_knorm(NULL, w, 1e-5f), MK_EINVAL, "k");
    TU_EXPECT_FAIL(mk_knorm(&k, NULL, 1e-5f), MK_EINVAL, "weight");
    TU_EXPECT_FAIL(mk_knorm(&k, w, -1e-5f), MK_EINVAL, "eps");
    TU_EXPECT_FAIL(mk_knorm(&k, w, NAN), MK_EINVAL, "eps");
    b = k, b.data = NULL;
    TU_EXPECT_FAIL(mk_knorm(&b, w, 1e-5f), MK_EINVAL, "k");
    b = k, b.head_dim = 0;
    TU_EXPECT_FAIL(mk_knorm(&b, w, 1e-5f), MK_EINVAL, "head_dim");
    b = k, b.n_heads = 0;
    TU_EXPECT_FAIL(mk_knorm(&b, w, 1e-5f), MK_EINVAL, "n_heads");
    b = k, b.n_heads = -1;
    TU_EXPECT_FAIL(mk_knorm(&b, w, 1e-5f), MK_EINVAL, "n_heads");
    b = k, b.n_tokens = -1;
    TU_EXPECT_FAIL(mk_knorm(&b, w, 1e-5f), MK_EINVAL, "n_tokens");
    b = k, b.dtype = MK_BF16; /* k must be F32 */
    TU_EXPECT_FAIL(mk_knorm(&b, w, 1e-5f), MK_EINVAL, "k");
    b = k, b.dtype = (mk_dtype)9;
    TU_EXPECT_FAIL2(mk_knorm(&b, w, 1e-5f), MK_EINVAL, "k", "dtype");
    b = k, b.token_stride = -1;
    TU_EXPECT_FAIL(mk_knorm(&b, w, 1e-5f), MK_EINVAL, "token_stride");
    b = k, b.head_stride = -1;
    TU_EXPECT_FAIL(mk_knorm(&b, w, 1e-5f), MK_EINVAL, "head_stride");
    b = k, b.head_stride = HD - 1; /* heads would overlap */
    TU_EXPECT_FAIL(mk_knorm(&b, w, 1e-5f), MK_EINVAL, "head_stride");
    b = k, b.token_stride = HK * HD - 1; /* shorter than one token's span */
    TU_EXPECT_FAIL(mk_knorm(&b, w, 1e-5f), MK_EINVAL, "token_stride");
    b = k, b.n_tokens = INT64_MAX / 2, b.n_heads = 1, b.head_dim = 4;
    TU_EXPECT_FAIL(mk_knorm(&b, w, 1e-5f), MK_EINVAL, "n_tokens");
    cr_expect(tu_same_bytes(buf, keep, sizeof buf), "a failed mk_knorm wrote into k");
    b = k, b.n_tokens = 0;
    TU_EXPECT_OK(mk_knorm(&b, w, 1e-5f));
    cr_expect(tu_same_bytes(buf, keep, sizeof buf), "n_tokens = 0 wrote into k");
}

/* =============================================== mk_knorm_rope ============================================== */

static const double kTheta = 25.6e6;

static mk_rope_cache *make_cache(int64_t rot, int64_t off, mk_rope_style st, int64_t maxpos) {
    mk_rope_config cfg = {.rotary_dim = rot, .rotary_offset = off, .style = st, .theta = kTheta,
                          .max_positions = maxpos};
    mk_rope_cache *c = NULL;
    mk_status s = mk_rope_cache_create(&cfg, &c);
    cr_assert_eq(s, MK_OK, "mk_rope_cache_create: %s", mk_last_error());
    cr_assert_not_null(c);
    return c;
}

/* want[t][h][i] = rope(rmsnorm(k[t,h]) * w, pos[t]) in double. */
static void knorm_rope_want(const mk_heads *k, const float *w, float eps, const int32_t *pos, int64_t rot,
                            int64_t off, mk_rope_style st, double *want) {
    int64_t D = k->head_dim;
    float *row = malloc(sizeof(float) * (size_t)D);
    for (int64_t t = 0; t < k->n_tokens; t++)
        for (int64_t h = 0; h < k->n_heads; h++) {
            for (int64_t i = 0; i < D; i++) row[i] = (float)tu_heads_get(k, t, h, i);
            double *o = want + (t * k->n_heads + h) * D;
            rms_row_f64(row, w, eps, D, o);
            tu_rope_head_f64(o, off, rot, st, kTheta, (double)pos[t]);
        }
    free(row);
}

static void knorm_rope_case(mk_rope_style st, int64_t off, mk_dtype out_dtype, int in_place, uint64_t seed) {
    enum { T = 5 };
    const int32_t pos[T] = {0, 7, 2048, 100000, 131071};
    tu_rng r;
    tu_rng_seed(&r, seed);
    float *buf = fused_rows(T, &r), *before = malloc(sizeof(float) * T * QKV_ROW);
    memcpy(before, buf, sizeof(float) * T * QKV_ROW);
    float w[HD];
    tu_fill_uniform(w, HD, &r, 0.5f, 1.5f);
    mk_rope_cache *cache = make_cache(64, off, st, 131072);
    mk_heads k = tu_heads(buf + K_OFF, MK_F32, T, HK, HD, QKV_ROW, 0);
    double *want = malloc(sizeof(double) * T * HK * HD);
    knorm_rope_want(&k, w, 1e-5f, pos, 64, off, st, want);

    /* k_out: a KV-cache slot view [T, 4, 192] with a token stride larger than 4*192 (padding must stay). */
    const int64_t OTS = HK * HD + 40;
    size_t esz = out_dtype == MK_BF16 ? 2 : 4;
    void *obuf = NULL;
    mk_heads ko;
    if (in_place) {
        ko = k;
    } else {
        obuf = malloc(esz * (size_t)(T * OTS));
        if (out_dtype == MK_BF16)
            tu_fill_u16(obuf, T * OTS, TU_SENTINEL_BF16);
        else
            tu_fill_bits(obuf, T * OTS, TU_SENTINEL_BITS);
        ko = tu_heads(obuf, out_dtype, T, HK, HD, OTS, 0);
    }
    TU_ASSERT_OK(mk_knorm_rope(&k, w, 1e-5f, cache, pos, &ko));
    int bad = 0;
    for (int t = 0; t < T; t++)
        for (int h = 0; h < HK; h++)
            for (int i = 0; i < HD; i++) {
                double wv = want[(t * HK + h) * HD + i], got = tu_heads_get(&ko, t, h, i);
                int ok = out_dtype == MK_BF16 ? close_rel(got, wv, 1.0 / 256.0, 1e-5) : close_rel(got, wv, 1e-5, 1e-5);
                if (!ok && bad++ < 5)
                    cr_expect(0, "style %d off %lld %s%s: t %d (pos %d) h %d i %d: got %.9g want %.9g", (int)st,
                              (long long)off, mk_dtype_name(out_dtype), in_place ? " in place" : "", t, pos[t], h, i,
                              got, wv);
            }
    cr_expect_eq(bad, 0, "%d elements out of tolerance", bad);
    if (!in_place) {
        cr_expect(tu_same_bytes(buf, before, sizeof(float) * T * QKV_ROW), "k (or its fused row) was modified");
        for (int t = 0; t < T; t++)
            for (int64_t j = HK * HD; j < OTS; j++) {
                int untouched = out_dtype == MK_BF16 ? ((uint16_t *)obuf)[t * OTS + j] == TU_SENTINEL_BF16
                                                     : tu_same_bytes(&((float *)obuf)[t * OTS + j],
                                                                     &(uint32_t){TU_SENTINEL_BITS}, 4);
                if (!untouched) {
                    cr_expect(0, "k_out padding t %d j %lld written", t, (long long)j);
                    break;
                }
            }
    } else {
        for (int t = 0; t < T; t++) {
            cr_expect(tu_same_bytes(buf + t * QKV_ROW, before + t * QKV_ROW, sizeof(float) * K_OFF), "Q t %d", t);
            cr_expect(tu_same_bytes(buf + t * QKV_ROW + K_OFF + HK * HD, before + t * QKV_ROW + K_OFF + HK * HD,
                                    sizeof(float) * (QKV_ROW - K_OFF - HK * HD)),
                      "V t %d", t);
        }
    }
    mk_rope_cache_destroy(cache);
    free(buf), free(before), free(want), free(obuf);
}

Test(norm, knorm_rope_f32_interleaved) { knorm_rope_case(MK_ROPE_INTERLEAVED, 0, MK_F32, 0, 41); }
Test(norm, knorm_rope_f32_neox_offset) { knorm_rope_case(MK_ROPE_NEOX, 64, MK_F32, 0, 42); }
Test(norm, knorm_rope_bf16_out) { knorm_rope_case(MK_ROPE_INTERLEAVED, 0, MK_BF16, 0, 43); }
Test(norm, knorm_rope_bf16_out_neox) { knorm_rope_case(MK_ROPE_NEOX, 0, MK_BF16, 0, 44); }
Test(norm, knorm_rope_in_place_alias) { knorm_rope_case(MK_ROPE_INTERLEAVED, 0, MK_F32, 1, 45); }

Test(norm, knorm_rope_bf16_rounding_is_nearest) {
    /* A head of 2s with eps = 0 normalises to exactly 1, and position 0 is the identity, so k_out[i] = bf16(w[i]).
     * The weights sit between the bf16 neighbours 1 and 1 + 1/128 (or 1 + 1/128 and 1 + 2/128), where
     * round-to-nearest and truncation differ: 1 + 3/512 is above the tie and must round up. */
    float k[HD], w[HD];
    uint16_t out[HD];
    for (int i = 0; i < HD; i++) {
        k[i] = 2.0f;
        w[i] = 1.0f + 3.0f / 512.0f; /* 0x3f80c000: bf16 candidates 0x3f80 (1.0) and 0x3f81 (1.0078125) */
    }
    w[1] = 1.0f + 1.0f / 512.0f;     /* 0x3f804000: below the tie -> 0x3f80 */
    w[2] = 1.0f + 1.0f / 256.0f;     /* 0x3f808000: exact tie, even -> 0x3f80 */
    w[3] = 1.0f + 3.0f / 256.0f;     /* 0x3f818000: exact tie, odd -> 0x3f82 */
    mk_rope_cache *cache = make_cache(64, 0, MK_ROPE_INTERLEAVED, 4);
    mk_heads kv = tu_heads(k, MK_F32, 1, 1, HD, 0, 0), ko = tu_heads(out, MK_BF16, 1, 1, HD, 0, 0);
    const int32_t pos[1] = {0};
    TU_ASSERT_OK(mk_knorm_rope(&kv, w, 0.0f, cache, pos, &ko));
    /* Elements 0 and 4.. (w = 1 + 3/512) sit 2^-9 above a tie, far beyond any float error of the norm: they must be
     * 0x3f81 exactly. Elements 2 and 3 are exact ties, where a few ulps of float error in 2/sqrt(4) may move the
     * result either way: only the two neighbours are accepted there. */
    cr_expect_eq(out[0], 0x3f81u, "1+3/512: got 0x%04x (truncation gives 0x3f80)", out[0]);
    for (int i = 4; i < HD; i++)
        if (out[i] != 0x3f81u) {
            cr_expect(0, "i %d: got 0x%04x want 0x3f81", i, out[i]);
            break;
        }
    cr_expect_eq(out[1], 0x3f80u, "1+1/512: got 0x%04x", out[1]);
    cr_expect(out[2] == 0x3f80u || out[2] == 0x3f81u, "1+1/256: got 0x%04x", out[2]);
    cr_expect(out[3] == 0x3f81u || out[3] == 0x3f82u, "1+3/256: got 0x%04x", out[3]);
    mk_rope_cache_destroy(cache);
}

Test(norm, knorm_rope_bad_arguments) {
    enum { T = 2 };
    float k[T * HK * HD], w[HD];
    uint16_t out[T * HK * HD], keep[T * HK * HD];
    tu_fill_const(k, T * HK * HD, 1.0f);
    tu_fill_const(w, HD, 1.0f);
    tu_fill_u16(out, T * HK * HD, TU_SENTINEL_BF16);
    memcpy(keep, out, sizeof out);
    mk_rope_cache *cache = make_cache(64, 0, MK_ROPE_INTERLEAVED, 16);
    mk_rope_cache *wide = make_cache(64, 160, MK_ROPE_INTERLEAVED, 16); /* 160 + 64 > 192 */
    const int32_t pos[T] = {3, 4}, badpos[T] = {3, 16}, negpos[T] = {-1, 0};
    mk_heads kv = tu_heads(k, MK_F32, T, HK, HD, 0, 0), ko = tu_heads(out, MK_BF16, T, HK, HD, 0, 0), b;

    TU_EXPECT_FAIL(mk_knorm_rope(NULL, w, 1e-5f, cache, pos, &ko), MK_EINVAL, "k");
    TU_EXPECT_FAIL(mk_knorm_rope(&kv, NULL, 1e-5f, cache, pos, &ko), MK_EINVAL, "weight");
    TU_EXPECT_FAIL(mk_knorm_rope(&kv, w, -1.0f, cache, pos, &ko), MK_EINVAL, "eps");
    TU_EXPECT_FAIL(mk_knorm_rope(&kv, w, 1e-5f, NULL, pos, &ko), MK_EINVAL, "cache");
    TU_EXPECT_FAIL(mk_knorm_rope(&kv, w, 1e-5f, cache, NULL, &ko), MK_EINVAL, "positions");
    TU_EXPECT_FAIL(mk_knorm_rope(&kv, w, 1e-5f, cache, pos, NULL), MK_EINVAL, "k_out");
    TU_EXPECT_FAIL(mk_knorm_rope(&kv, w, 1e-5f, cache, badpos, &ko), MK_EINVAL, "positions");
    TU_EXPECT_FAIL(mk_knorm_rope(&kv, w, 1e-5f, cache, negpos, &ko), MK_EINVAL, "positions");
    TU_EXPECT_FAIL2(mk_knorm_rope(&kv, w, 1e-5f, wide, pos, &ko), MK_EINVAL, "rotary_offset", "rotary_dim");
    b = ko, b.head_dim = HD - 2;
    TU_EXPECT_FAIL(mk_knorm_rope(&kv, w, 1e-5f, cache, pos, &b), MK_EINVAL, "k_out");
    b = ko, b.n_heads = HK - 1;
    TU_EXPECT_FAIL(mk_knorm_rope(&kv, w, 1e-5f, cache, pos, &b), MK_EINVAL, "k_out");
    b = ko, b.n_tokens = T - 1;
    TU_EXPECT_FAIL(mk_knorm_rope(&kv, w, 1e-5f, cache, pos, &b), MK_EINVAL, "k_out");
    b = ko, b.data = NULL;
    TU_EXPECT_FAIL(mk_knorm_rope(&kv, w, 1e-5f, cache, pos, &b), MK_EINVAL, "k_out");
    b = ko, b.dtype = (mk_dtype)4;
    TU_EXPECT_FAIL2(mk_knorm_rope(&kv, w, 1e-5f, cache, pos, &b), MK_EINVAL, "k_out", "dtype");
    b = kv, b.dtype = MK_BF16; /* k must be F32 */
    TU_EXPECT_FAIL(mk_knorm_rope(&b, w, 1e-5f, cache, pos, &ko), MK_EINVAL, "k");
    cr_expect(tu_same_bytes(out, keep, sizeof out), "a failed mk_knorm_rope wrote into k_out");

    /* k_out partially overlapping k (shifted by one head), or the same memory with another stride: MK_EINVAL */
    float big[3 * HK * HD], bigkeep[3 * HK * HD];
    tu_fill_const(big, 3 * HK * HD, 1.0f);
    memcpy(bigkeep, big, sizeof big);
    mk_heads k2 = tu_heads(big, MK_F32, T, HK, HD, 0, 0), o2 = tu_heads(big + HD, MK_F32, T, HK, HD, 0, 0);
    TU_EXPECT_FAIL2(mk_knorm_rope(&k2, w, 1e-5f, cache, pos, &o2), MK_EINVAL, "k_out", "k");
    o2 = tu_heads(big, MK_F32, T, HK, HD, HK * HD + 8, 0);
    TU_EXPECT_FAIL2(mk_knorm_rope(&k2, w, 1e-5f, cache, pos, &o2), MK_EINVAL, "k_out", "k");
    o2 = tu_heads(big, MK_BF16, T, HK, HD, 0, 0); /* same data, other dtype */
    TU_EXPECT_FAIL2(mk_knorm_rope(&k2, w, 1e-5f, cache, pos, &o2), MK_EINVAL, "k_out", "k");
    cr_expect(tu_same_bytes(big, bigkeep, sizeof big), "a failed overlapping mk_knorm_rope wrote");

    /* zero tokens: OK, nothing written */
    mk_heads k0 = kv, o0 = ko;
    k0.n_tokens = 0, o0.n_tokens = 0;
    TU_EXPECT_OK(mk_knorm_rope(&k0, w, 1e-5f, cache, pos, &o0));
    cr_expect(tu_same_bytes(out, keep, sizeof out), "n_tokens = 0 wrote into k_out");
    mk_rope_cache_destroy(cache);
    mk_rope_cache_destroy(wide);
}
