/*
 * test_gemm.c: mk_grouped_gemm.
 *
 * Exactness: x and W hold small integers in [-4, 4] (exact in float and bf16), row scales are powers of two or
 * 3/4, so every dot product, scale and sum is exact in float. The expected values come from a naive loop written
 * here with int64 dot products; comparison threshold 0 (bit-for-bit equal values).
 * One random-float case (k = 4608) compares against a double loop with NMSE <= 1e-9 (F32 weights, or BF16 weights
 * with bf16-exact activations), or the documented BF16 contract NMSE <= 5e-4 (BF16 weights, arbitrary activations:
 * a kernel may round the activations to BF16, docs/api.md).
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moekit.h"
#include "test_util.h"

/* The definition, rows visited group by group, int64 dot products (all inputs integers), then scale and add in
 * double (exact for the values used). want is [y_rows, ys] and starts as a copy of y. */
static void gemm_oracle(int64_t G, const int64_t *off, int64_t n, int64_t k, const float *x, int64_t xs,
                        const int32_t *row_index, const float *w, int64_t ys, const int32_t *out_index,
                        const float *row_scale, int accumulate, double *want) {
    for (int64_t g = 0; g < G; g++)
        for (int64_t r = off[g]; r < off[g + 1]; r++) {
            int64_t src = row_index ? row_index[r] : r, dst = out_index ? out_index[r] : r;
            for (int64_t j = 0; j < n; j++) {
                int64_t dot = 0;
                for (int64_t i = 0; i < k; i++)
                    dot += (int64_t)x[src * xs + i] * (int64_t)w[(g * n + j) * k + i];
                double s = row_scale ? (double)row_scale[r] : 1.0;
                double prev = accumulate ? want[dst * ys + j] : 0.0;
                want[dst * ys + j] = prev + s * (double)dot;
            }
        }
}

static mk_grouped_gemm_args base_args(int64_t G, const int64_t *off, int64_t n, int64_t k, const float *x,
                                      int64_t x_rows, const void *w, mk_dtype wd, float *y, int64_t y_rows) {
    mk_grouped_gemm_args a;
    memset(&a, 0, sizeof a);
    a.n_groups = G;
    a.group_offsets = off;
    a.n = n;
    a.k = k;
    a.x = x;
    a.x_rows = x_rows;
    a.w = w;
    a.w_dtype = wd;
    a.y = y;
    a.y_rows = y_rows;
    return a;
}

/* Compares count floats of y with want (double) exactly (threshold 0). */
static void expect_exact(const float *y, const double *want, int64_t count, const char *what) {
    int bad = 0;
    for (int64_t i = 0; i < count; i++)
        if (!((double)y[i] == want[i]) && bad++ < 5)
            cr_expect(0, "%s: y[%lld] = %.9g, want %.9g", what, (long long)i, (double)y[i], want[i]);
    cr_expect_eq(bad, 0, "%s: %d elements differ (threshold 0)", what, bad);
}

/* ============================================ integer exact shapes ============================================ */

typedef struct {
    int64_t G, n, k;
    int64_t off[10];
} gemm_shape;

ParameterizedTestParameters(gemm, integer_exact) {
    static gemm_shape shapes[] = {
        {3, 5, 7, {0, 2, 2, 5}},                    /* an empty middle group */
        {4, 37, 71, {0, 1, 1, 17, 33}},             /* one-row group, vector tails */
        {2, 130, 300, {0, 64, 100}},                /* bigger blocks */
        {1, 1, 1, {0, 1}},                          /* one row, 1x1 */
        {1, 16, 64, {0, 1}},                        /* one row (decode) */
        {5, 9, 16, {0, 0, 0, 3, 3, 3}},             /* empty groups around */
        {8, 8, 8, {0, 0, 0, 0, 0, 0, 0, 0, 1}},     /* only the last group has a row */
        {2, 2560, 32, {0, 3, 5}},                   /* wide n */
        {3, 25, 33, {0, 4, 9, 13}},                 /* n tails between one and two 16-wide vectors */
        {2, 63, 20, {0, 7, 30}},                    /* n = 32 + 31 */
        {1, 49, 5, {0, 3}},                         /* n = 32 + 17 */
        {3, 17, 129, {0, 20, 20, 45}},              /* n = 17, odd k > 128 */
    };
    return cr_make_param_array(gemm_shape, shapes, sizeof shapes / sizeof shapes[0]);
}

static void run_integer_case(const gemm_shape *s, mk_dtype wd, uint64_t seed) {
    tu_rng r;
    tu_rng_seed(&r, seed);
    int64_t M = s->off[s->G];
    int64_t x_rows = M > 0 ? M : 1;
    float *x = malloc(sizeof(float) * (size_t)(x_rows * s->k));
    float *w = malloc(sizeof(float) * (size_t)(s->G * s->n * s->k));
    uint16_t *wb = malloc(sizeof(uint16_t) * (size_t)(s->G * s->n * s->k));
    float *y = malloc(sizeof(float) * (size_t)(x_rows * s->n));
    double *want = malloc(sizeof(double) * (size_t)(x_rows * s->n));
    tu_fill_int(x, x_rows * s->k, &r, -4, 4);
    tu_fill_int(w, s->G * s->n * s->k, &r, -4, 4);
    cr_assert(tu_to_bf16_exact(wb, w, s->G * s->n * s->k));
    tu_fill_bits(y, x_rows * s->n, TU_SENTINEL_BITS); /* accumulate = 0: the NaN sentinel must not leak in */
    for (int64_t i = 0; i < x_rows * s->n; i++) want[i] = NAN;
    gemm_oracle(s->G, s->off, s->n, s->k, x, s->k, NULL, w, s->n, NULL, NULL, 0, want);
    mk_grouped_gemm_args a =
        base_args(s->G, s->off, s->n, s->k, x, x_rows, wd == MK_BF16 ? (const void *)wb : (const void *)w, wd, y,
                  x_rows);
    TU_ASSERT_OK(mk_grouped_gemm(&a));
    char what[96];
    snprintf(what, sizeof what, "G %lld n %lld k %lld M %lld %s", (long long)s->G, (long long)s->n, (long long)s->k,
             (long long)M, mk_dtype_name(wd));
    if (M > 0) expect_exact(y, want, M * s->n, what);
    else cr_expect(tu_same_bytes(y, &(uint32_t){TU_SENTINEL_BITS}, 4), "%s: M = 0 wrote y", what);
    free(x), free(w), free(wb), free(y), free(want);
}

ParameterizedTest(gemm_shape *s, gemm, integer_exact) {
    run_integer_case(s, MK_F32, 11 + (uint64_t)s->n);
    run_integer_case(s, MK_BF16, 12 + (uint64_t)s->n);
}

/* ============================================ gather / scatter ============================================ */

Test(gemm, row_index_gather) {
    enum { G = 2, N = 6, K = 9, XR = 6, M = 5 };
    const int64_t off[G + 1] = {0, 2, 5};
    const int32_t row_index[M] = {5, 0, 5, 2, 1}; /* repeats are fine for a gather */
    tu_rng r;
    tu_rng_seed(&r, 21);
    float x[XR * K], w[G * N * K], y[M * N];
    double want[M * N];
    tu_fill_int(x, XR * K, &r, -4, 4);
    tu_fill_int(w, G * N * K, &r, -4, 4);
    tu_fill_bits(y, M * N, TU_SENTINEL_BITS);
    gemm_oracle(G, off, N, K, x, K, row_index, w, N, NULL, NULL, 0, want);
    mk_grouped_gemm_args a = base_args(G, off, N, K, x, XR, w, MK_F32, y, M);
    a.row_index = row_index;
    TU_ASSERT_OK(mk_grouped_gemm(&a));
    expect_exact(y, want, M * N, "gather");
}

Test(gemm, moe_weighted_scatter_add) {
    /* 4 tokens, top-2 over 3 experts: t0 {0,2}, t1 {1,2}, t2 {0,1}, t3 {2,0}. Routed rows sorted by expert:
     * g0: t0 t2 t3 | g1: t1 t2 | g2: t0 t1 t3; row_index = out_index = the token. y starts with integers and
     * accumulates scale * (x W^T). y has a row stride larger than n (padding must stay). */
    enum { T = 4, G = 3, N = 10, K = 12, M = 8, YS = 13 };
    const int64_t off[G + 1] = {0, 3, 5, 8};
    const int32_t tok[M] = {0, 2, 3, 1, 2, 0, 1, 3};
    const float scale[M] = {0.5f, 0.25f, 1.0f, 2.0f, 0.5f, 0.25f, 0.75f, 0.125f};
    tu_rng r;
    tu_rng_seed(&r, 22);
    float x[T * K], w[G * N * K], y[T * YS], y0[T * YS];
    double want[T * YS];
    tu_fill_int(x, T * K, &r, -4, 4);
    tu_fill_int(w, G * N * K, &r, -4, 4);
    tu_fill_int(y, T * YS, &r, -50, 50);
    memcpy(y0, y, sizeof y);
    for (int i = 0; i < T * YS; i++) want[i] = y[i];
    gemm_oracle(G, off, N, K, x, K, tok, w, YS, tok, scale, 1, want);
    mk_grouped_gemm_args a = base_args(G, off, N, K, x, T, w, MK_F32, y, T);
    a.row_index = tok, a.out_index = tok, a.row_scale = scale, a.accumulate = 1, a.y_stride = YS;
    TU_ASSERT_OK(mk_grouped_gemm(&a));
    for (int t = 0; t < T; t++) {
        char what[32];
        snprintf(what, sizeof what, "token %d", t);
        expect_exact(y + t * YS, want + t * YS, N, what);
        cr_expect(tu_same_bytes(y + t * YS + N, y0 + t * YS + N, sizeof(float) * (YS - N)), "y padding of row %d", t);
    }
}

Test(gemm, accumulate_and_row_scale_without_indices) {
    enum { G = 2, N = 5, K = 6, M = 4 };
    const int64_t off[G + 1] = {0, 1, 4};
    const float scale[M] = {-0.5f, 4.0f, 0.25f, 1.0f};
    tu_rng r;
    tu_rng_seed(&r, 23);
    float x[M * K], w[G * N * K], y[M * N];
    double want[M * N];
    tu_fill_int(x, M * K, &r, -4, 4);
    tu_fill_int(w, G * N * K, &r, -4, 4);
    tu_fill_int(y, M * N, &r, -9, 9);
    for (int i = 0; i < M * N; i++) want[i] = y[i];
    gemm_oracle(G, off, N, K, x, K, NULL, w, N, NULL, scale, 1, want);
    mk_grouped_gemm_args a = base_args(G, off, N, K, x, M, w, MK_F32, y, M);
    a.row_scale = scale, a.accumulate = 1;
    TU_ASSERT_OK(mk_grouped_gemm(&a));
    expect_exact(y, want, M * N, "accumulate + row_scale");
}

Test(gemm, scatter_add_without_row_scale) {
    /* accumulate = 1 with out_index repeats and no row_scale: y[dst] += x W^T for every routed row; n = 40 (one
     * full 32-column panel and a tail), y starts with integers */
    enum { T = 3, G = 2, N = 40, K = 9, M = 6 };
    const int64_t off[G + 1] = {0, 4, 6};
    const int32_t tok[M] = {0, 1, 2, 0, 2, 1};
    tu_rng r;
    tu_rng_seed(&r, 27);
    float x[T * K], w[G * N * K], y[T * N];
    double want[T * N];
    tu_fill_int(x, T * K, &r, -4, 4);
    tu_fill_int(w, G * N * K, &r, -4, 4);
    tu_fill_int(y, T * N, &r, -20, 20);
    for (int i = 0; i < T * N; i++) want[i] = y[i];
    gemm_oracle(G, off, N, K, x, K, tok, w, N, tok, NULL, 1, want);
    mk_grouped_gemm_args a = base_args(G, off, N, K, x, T, w, MK_F32, y, T);
    a.row_index = tok, a.out_index = tok, a.accumulate = 1;
    TU_ASSERT_OK(mk_grouped_gemm(&a));
    expect_exact(y, want, T * N, "scatter-add without row_scale");
}

Test(gemm, out_index_overwrite_leaves_other_rows) {
    /* distinct out_index, accumulate 0: the 3 target rows are overwritten (NaN there must not leak), the other
     * rows of y are untouched; x has a row stride larger than k. */
    enum { G = 2, N = 7, K = 5, XS = 8, M = 3, YR = 6 };
    const int64_t off[G + 1] = {0, 2, 3};
    const int32_t out_index[M] = {4, 0, 2};
    tu_rng r;
    tu_rng_seed(&r, 24);
    float x[M * XS], w[G * N * K], y[YR * N], y0[YR * N];
    double want[YR * N];
    tu_fill_int(x, M * XS, &r, -4, 4);
    tu_fill_int(w, G * N * K, &r, -4, 4);
    tu_fill_bits(y, YR * N, TU_SENTINEL_BITS);
    memcpy(y0, y, sizeof y);
    gemm_oracle(G, off, N, K, x, XS, NULL, w, N, out_index, NULL, 0, want);
    mk_grouped_gemm_args a = base_args(G, off, N, K, x, M, w, MK_F32, y, YR);
    a.x_stride = XS, a.out_index = out_index;
    TU_ASSERT_OK(mk_grouped_gemm(&a));
    for (int m = 0; m < M; m++) expect_exact(y + out_index[m] * N, want + out_index[m] * N, N, "target row");
    const int untouched_rows[3] = {1, 3, 5};
    for (int i = 0; i < 3; i++)
        cr_expect(tu_same_bytes(y + untouched_rows[i] * N, y0 + untouched_rows[i] * N, sizeof(float) * N),
                  "row %d of y is not a target but was written", untouched_rows[i]);
}

/* ============================================== random floats ============================================== */

Test(gemm, random_float_and_bf16_large_k) {
    /* x . W^T with k = 4608 against a double loop.
     *  - F32 weights: NMSE <= 1e-9 (float rounding of 4608-term sums is ~1e-13).
     *  - BF16 weights, activations on a bf16 grid: a kernel may round activations to BF16 for vdpbf16ps
     *    (docs/api.md), but these are exact in BF16 and the products of two BF16 values are exact in F32, so
     *    only F32 accumulation error remains: NMSE <= 1e-9 still.
     *  - BF16 weights, arbitrary activations: the documented contract, NMSE <= 5e-4 and
     *    max |err| <= 20 sqrt(5e-4) rms(want). */
    enum { G = 4, N = 64, K = 4608, M = 16 };
    const int64_t off[G + 1] = {0, 5, 5, 12, 16};
    tu_rng r;
    tu_rng_seed(&r, 25);
    float *x = malloc(sizeof(float) * M * K), *xg = malloc(sizeof(float) * M * K);
    float *w = malloc(sizeof(float) * G * N * K), y[M * N];
    uint16_t *wb = malloc(sizeof(uint16_t) * G * N * K);
    double want[M * N], want_g[M * N];
    tu_fill_uniform(x, M * K, &r, -1.0f, 1.0f);
    tu_fill_grid(xg, M * K, &r, 255, 8);    /* multiples of 1/256 in (-1, 1): exact in bf16 */
    tu_fill_grid(w, G * N * K, &r, 127, 7); /* multiples of 1/128 in [-0.99, 0.99]: exact in bf16 */
    cr_assert(tu_to_bf16_exact(wb, w, G * N * K));
    double rms = 0;
    for (int g = 0; g < G; g++)
        for (int64_t m = off[g]; m < off[g + 1]; m++)
            for (int j = 0; j < N; j++) {
                double s = 0, sg = 0;
                for (int i = 0; i < K; i++) {
                    s += (double)x[m * K + i] * (double)w[((int64_t)g * N + j) * K + i];
                    sg += (double)xg[m * K + i] * (double)w[((int64_t)g * N + j) * K + i];
                }
                want[m * N + j] = s, want_g[m * N + j] = sg;
                rms += s * s;
            }
    rms = sqrt(rms / (M * N));
    static const struct {
        int bf16, grid;
        double tol;
        const char *what;
    } runs[] = {{0, 0, 1e-9, "f32 weights"},
                {1, 1, 1e-9, "bf16 weights, bf16-exact activations"},
                {1, 0, 5e-4, "bf16 weights, arbitrary activations"}};
    for (int p = 0; p < 3; p++) {
        tu_fill_bits(y, M * N, TU_SENTINEL_BITS);
        mk_grouped_gemm_args a = base_args(G, off, N, K, runs[p].grid ? xg : x, M,
                                           runs[p].bf16 ? (const void *)wb : (const void *)w,
                                           runs[p].bf16 ? MK_BF16 : MK_F32, y, M);
        TU_ASSERT_OK(mk_grouped_gemm(&a));
        const double *wt = runs[p].grid ? want_g : want;
        double nmse = tu_nmse_d(wt, y, M * N);
        cr_expect(nmse <= runs[p].tol, "%s: NMSE %.3g > %.0e", runs[p].what, nmse, runs[p].tol);
        if (runs[p].tol > 1e-6) {
            double mad = tu_max_abs_diff_d(wt, y, M * N);
            cr_expect(mad <= 20 * sqrt(runs[p].tol) * rms, "%s: max abs error %.3g > 20 sqrt(tol) rms = %.3g",
                      runs[p].what, mad, 20 * sqrt(runs[p].tol) * rms);
        }
    }
    free(x), free(xg), free(w), free(wb);
}

/* ============================================== packed weights ============================================== */

Test(gemm, packed_weights_integer_exact) {
    /* The same integer problem through mk_pack_weights handles (F32; BF16 in both modes). n = 37 leaves a partial
     * 32-column panel and k = 71 an odd BF16 pair; the source is overwritten after packing (packing copies).
     * Integers stay exact even if the activations are rounded to BF16 (MK_PACK_DEFAULT), so threshold 0. */
    enum { G = 4, N = 37, K = 71, M = 33 };
    const int64_t off[G + 1] = {0, 1, 1, 17, 33};
    tu_rng r;
    tu_rng_seed(&r, 26);
    static float x[M * K], w[G * N * K], y[M * N], scale[M];
    static uint16_t wb[G * N * K];
    static double want[M * N];
    static const float pow2[4] = {0.5f, 2.0f, -0.25f, 1.0f};
    for (int i = 0; i < M; i++) scale[i] = pow2[i % 4];
    tu_fill_int(x, M * K, &r, -4, 4);
    static const struct {
        mk_dtype dt;
        mk_pack_mode mode;
    } cfg[] = {{MK_F32, MK_PACK_DEFAULT}, {MK_BF16, MK_PACK_DEFAULT}, {MK_BF16, MK_PACK_BF16_WIDEN}};
    for (int c = 0; c < 3; c++) {
        tu_fill_int(w, G * N * K, &r, -4, 4);
        cr_assert(tu_to_bf16_exact(wb, w, G * N * K));
        for (int i = 0; i < M * N; i++) want[i] = 0;
        gemm_oracle(G, off, N, K, x, K, NULL, w, N, NULL, scale, 0, want);
        mk_packed_weights *pk = NULL;
        TU_ASSERT_OK(mk_pack_weights(cfg[c].dt == MK_BF16 ? (const void *)wb : (const void *)w, cfg[c].dt, G, N, K,
                                     cfg[c].mode, &pk));
        cr_assert_not_null(pk);
        cr_expect(mk_packed_weights_bytes(pk) >= (size_t)(G * N * K) * mk_dtype_size(cfg[c].dt),
                  "packed bytes %zu below the tensor size", mk_packed_weights_bytes(pk));
        tu_fill_bits(w, G * N * K, TU_SENTINEL_BITS); /* the handle must not refer to the source */
        tu_fill_u16(wb, G * N * K, TU_SENTINEL_BF16);
        tu_fill_bits(y, M * N, TU_SENTINEL_BITS);
        mk_grouped_gemm_args a = base_args(G, off, N, K, x, M, NULL, MK_F32, y, M);
        a.w_packed = pk, a.row_scale = scale;
        TU_EXPECT_OK(mk_grouped_gemm(&a));
        char what[64];
        snprintf(what, sizeof what, "packed %s mode %d", mk_dtype_name(cfg[c].dt), (int)cfg[c].mode);
        expect_exact(y, want, M * N, what);
        /* a handle whose shape does not match the arguments */
        a.n = N - 1;
        TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "w_packed");
        a.n = N, a.n_groups = G - 1;
        const int64_t off3[G] = {0, 1, 1, 17};
        a.group_offsets = off3;
        TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "w_packed");
        mk_packed_weights_free(pk);
    }
    cr_expect_eq(mk_packed_weights_bytes(NULL), 0u);
}

Test(gemm, pack_weights_bad_arguments) {
    float w[2 * 3 * 4] = {0};
    static int marker;
    mk_packed_weights *const sentinel = (mk_packed_weights *)(void *)&marker;
    mk_packed_weights *pk = sentinel;
    TU_EXPECT_FAIL(mk_pack_weights(NULL, MK_F32, 2, 3, 4, MK_PACK_DEFAULT, &pk), MK_EINVAL, "w");
    TU_EXPECT_FAIL(mk_pack_weights(w, MK_F32, 2, 3, 4, MK_PACK_DEFAULT, NULL), MK_EINVAL, "packed");
    TU_EXPECT_FAIL(mk_pack_weights(w, (mk_dtype)5, 2, 3, 4, MK_PACK_DEFAULT, &pk), MK_EINVAL, "dtype");
    TU_EXPECT_FAIL(mk_pack_weights(w, MK_F32, 0, 3, 4, MK_PACK_DEFAULT, &pk), MK_EINVAL, "n_groups");
    TU_EXPECT_FAIL(mk_pack_weights(w, MK_F32, 2, 0, 4, MK_PACK_DEFAULT, &pk), MK_EINVAL, "n");
    TU_EXPECT_FAIL(mk_pack_weights(w, MK_F32, 2, 3, -4, MK_PACK_DEFAULT, &pk), MK_EINVAL, "k");
    TU_EXPECT_FAIL(mk_pack_weights(w, MK_F32, 2, 3, 4, (mk_pack_mode)9, &pk), MK_EINVAL, "mode");
    TU_EXPECT_FAIL(mk_pack_weights(w, MK_F32, INT64_MAX / 2, 3, 4, MK_PACK_DEFAULT, &pk), MK_EINVAL, "w");
    cr_expect(pk == sentinel, "a failed mk_pack_weights wrote *packed");
}

/* ================================================ bad input ================================================ */

Test(gemm, zero_rows_writes_nothing) {
    const int64_t off[3] = {0, 0, 0};
    float x[4] = {1, 2, 3, 4}, w[2 * 2 * 4] = {0}, y[8];
    tu_fill_bits(y, 8, TU_SENTINEL_BITS);
    mk_grouped_gemm_args a = base_args(2, off, 2, 4, x, 1, w, MK_F32, y, 4);
    TU_EXPECT_OK(mk_grouped_gemm(&a));
    for (int i = 0; i < 8; i++) cr_expect(tu_same_bytes(&y[i], &(uint32_t){TU_SENTINEL_BITS}, 4), "y[%d] written", i);
}

Test(gemm, bad_arguments) {
    enum { G = 2, N = 3, K = 4, M = 4 };
    const int64_t off[G + 1] = {0, 2, 4};
    float x[M * K], w[G * N * K], y[M * N], keep[M * N];
    tu_fill_const(x, M * K, 1.0f);
    tu_fill_const(w, G * N * K, 1.0f);
    tu_fill_const(y, M * N, 12345.0f);
    memcpy(keep, y, sizeof y);
    const mk_grouped_gemm_args good = base_args(G, off, N, K, x, M, w, MK_F32, y, M);
    mk_grouped_gemm_args a;
    TU_EXPECT_OK(mk_grouped_gemm(&good)); /* the baseline is valid (then restore y) */
    memcpy(y, keep, sizeof y);

    TU_EXPECT_FAIL(mk_grouped_gemm(NULL), MK_EINVAL, "args");
    a = good, a.group_offsets = NULL;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "group_offsets");
    a = good, a.x = NULL;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "x");
    a = good, a.w = NULL;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "w");
    a = good, a.y = NULL;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "y");
    a = good, a.n_groups = 0;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "n_groups");
    a = good, a.n_groups = -1;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "n_groups");
    a = good, a.n = 0;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "n");
    a = good, a.k = -3;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "k");
    a = good, a.w_dtype = (mk_dtype)3;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "w_dtype");
    a = good, a.x_stride = -1;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "x_stride");
    a = good, a.y_stride = -1;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "y_stride");
    a = good, a.x_rows = -1;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "x_rows");
    a = good, a.x_stride = K - 1;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "x_stride");
    a = good, a.y_stride = N - 1;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "y_stride");
    a = good, a.accumulate = 2;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "accumulate");

    const int64_t off_first[G + 1] = {1, 2, 4}, off_decr[G + 1] = {0, 3, 2}, off_neg[G + 1] = {0, -1, 4};
    a = good, a.group_offsets = off_first;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "group_offsets");
    a = good, a.group_offsets = off_decr;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "group_offsets");
    a = good, a.group_offsets = off_neg;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "group_offsets");
    /* without indices, routed row r reads x[r] and writes y[r]: M = 4 > x_rows / y_rows */
    a = good, a.x_rows = 3;
    TU_EXPECT_FAIL2(mk_grouped_gemm(&a), MK_EINVAL, "x_rows", "group_offsets");
    a = good, a.y_rows = 3;
    TU_EXPECT_FAIL2(mk_grouped_gemm(&a), MK_EINVAL, "y_rows", "group_offsets");

    const int32_t ri_big[M] = {0, 1, 2, 4}, ri_neg[M] = {0, -1, 2, 3};
    a = good, a.row_index = ri_big;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "row_index");
    a = good, a.row_index = ri_neg;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "row_index");
    const int32_t oi_big[M] = {0, 1, 2, 4}, oi_neg[M] = {-1, 1, 2, 3}, oi_dup[M] = {0, 1, 1, 3};
    a = good, a.out_index = oi_big;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "out_index");
    a = good, a.out_index = oi_neg;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "out_index");
    a = good, a.out_index = oi_dup, a.accumulate = 0; /* duplicates need accumulate */
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "out_index");

    /* overflow: y_rows * y_stride and x_rows * k do not fit in int64 */
    a = good, a.y_rows = INT64_MAX / 2, a.n = 4, a.y_stride = 0;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "y_rows");
    a = good, a.x_rows = INT64_MAX / 2;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "x_rows");
    cr_expect(tu_same_bytes(y, keep, sizeof y), "a failed mk_grouped_gemm wrote into y");

    /* y must not overlap x or w (checked) */
    float xy[M * K + M * N], xykeep[M * K + M * N];
    tu_fill_const(xy, M * K + M * N, 1.0f);
    memcpy(xykeep, xy, sizeof xy);
    a = good, a.x = xy, a.y = xy + M * K - 1;
    TU_EXPECT_FAIL2(mk_grouped_gemm(&a), MK_EINVAL, "y", "x");
    a = good, a.w = xy, a.y = xy + 4;
    TU_EXPECT_FAIL2(mk_grouped_gemm(&a), MK_EINVAL, "y", "w");
    cr_expect(tu_same_bytes(xy, xykeep, sizeof xy), "a failed overlapping mk_grouped_gemm wrote");

    /* the duplicate rule does not apply with accumulate = 1 */
    a = good, a.out_index = oi_dup, a.accumulate = 1;
    TU_EXPECT_OK(mk_grouped_gemm(&a));
}
