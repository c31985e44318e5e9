/*
 * test_gemm_fast.c: the SIMD grouped GEMM and fused MoE FFN (kernels/simd/gemm.inc) and the packed weight format
 * (dispatch/pack.c), through the public API, for every SIMD ISA this CPU runs (mk_set_max_isa), against the
 * reference table (mk_set_max_isa(MK_ISA_REF)) on identical inputs.
 *
 *   - Exact: x integers in [-4, 4], W integers in [-2, 2] (exact in F32 and BF16, and so are the activations when
 *     the BF16 kernel rounds them), row scales in {0.5, 1, 2, -1}, y (accumulate) integers: every sum is exact, so
 *     the fast path must equal the reference bit for bit (threshold 0), for F32 and BF16 weights, raw and packed.
 *   - Random: NMSE against the reference within the selfcheck tolerance (dispatch/selfcheck.h: 1e-6 F32, 5e-4 BF16;
 *     MK_PACK_BF16_WIDEN keeps the F32 bound).
 *   - Shapes: groups of 0 .. 513 rows, N and K tails (N 1, 17, 33, 100; K 1, 3, 31, 130), gather / scatter /
 *     row_scale / accumulate, strided x and y, the openPangu-R-72B shapes (against an independent int64 loop for the
 *     GEMM, the reference with two tokens for the FFN).
 *   - Determinism: threads 1 == 2, two application threads calling at once == single calls, packed == raw (groups
 *     of more than 8 rows; fewer rows on raw weights take the direct path, another summation order), all bitwise;
 *     MK_PACK_BF16_WIDEN == F32 weights holding the same values (same FMA order), bitwise.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moekit.h"
#include "pack.h"
#include "selfcheck.h"
#include "test_util.h"

/* ---- ISAs under test ---------------------------------------------------------------------------------------- */
static int simd_isas(mk_isa out[2]) {
    int n = 0;
    if (mk_detected_isa() >= MK_ISA_AVX2) out[n++] = MK_ISA_AVX2;
    if (mk_detected_isa() >= MK_ISA_AVX512) out[n++] = MK_ISA_AVX512;
    return n;
}

static void set_isa(mk_isa isa) { cr_assert_eq(mk_set_max_isa(isa), MK_OK); }

/* ---- data --------------------------------------------------------------------------------------------------- */
/* Rounds a float to a bf16-representable value (truncation), so that the F32 and BF16 copies hold equal values. */
static float bf16_round(float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    u &= 0xffff0000u;
    memcpy(&v, &u, 4);
    return v;
}

typedef struct weights {
    float *f32;
    uint16_t *bf16;
    int64_t count;
} weights;

/* integer (lo..hi) or random uniform [-amp, amp] weights, bf16-representable in both copies */
static weights make_weights(int64_t count, tu_rng *r, int integer, float amp) {
    weights w;
    w.count = count;
    w.f32 = malloc(sizeof(float) * (size_t)(count > 0 ? count : 1));
    w.bf16 = malloc(sizeof(uint16_t) * (size_t)(count > 0 ? count : 1));
    cr_assert(w.f32 && w.bf16);
    if (integer)
        tu_fill_int(w.f32, count, r, -2, 2);
    else
        for (int64_t i = 0; i < count; i++) w.f32[i] = bf16_round(tu_rng_uniform(r, -amp, amp));
    cr_assert(tu_to_bf16_exact(w.bf16, w.f32, count));
    return w;
}

static void free_weights(weights *w) {
    free(w->f32);
    free(w->bf16);
}

static const void *wptr(const weights *w, mk_dtype dt) { return dt == MK_BF16 ? (const void *)w->bf16 : w->f32; }

static int same_bits(const float *a, const float *b, int64_t n, int64_t *first_bad) {
    for (int64_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], 4) != 0) {
            if (first_bad) *first_bad = i;
            return 0;
        }
    return 1;
}

/* ---- grouped GEMM problems ---------------------------------------------------------------------------------- */
typedef struct gemm_problem {
    int64_t G, n, k, M;
    int64_t *off;
    float *x;
    int64_t x_rows, x_stride;
    weights w;
    int32_t *row_index, *out_index;
    float *row_scale;
    int accumulate;
    float *y0;                /* initial y */
    int64_t y_rows, y_stride;
} gemm_problem;

/* rows[g] rows per group; gather/scatter/scale/accumulate switch the optional features on. Scatter with
 * accumulate repeats destinations (two routed rows per y row). */
static gemm_problem make_gemm(int64_t G, const int64_t *rows, int64_t n, int64_t k, int integer, int gather,
                              int scatter, int scale, int accumulate, uint64_t seed) {
    gemm_problem p;
    memset(&p, 0, sizeof p);
    tu_rng r;
    tu_rng_seed(&r, seed);
    p.G = G, p.n = n, p.k = k;
    p.off = malloc(sizeof(int64_t) * (size_t)(G + 1));
    p.off[0] = 0;
    for (int64_t g = 0; g < G; g++) p.off[g + 1] = p.off[g] + rows[g];
    p.M = p.off[G];
    const int64_t M1 = p.M > 0 ? p.M : 1;
    p.x_rows = gather ? p.M / 2 + 3 : p.M;
    p.x_stride = k + (gather ? 5 : 0);
    p.x = malloc(sizeof(float) * (size_t)((p.x_rows > 0 ? p.x_rows : 1) * p.x_stride));
    if (integer)
        tu_fill_int(p.x, p.x_rows * p.x_stride, &r, -4, 4);
    else
        tu_fill_uniform(p.x, p.x_rows * p.x_stride, &r, -1.0f, 1.0f);
    p.w = make_weights(G * n * k, &r, integer, 1.0f);
    if (gather) {
        p.row_index = malloc(sizeof(int32_t) * (size_t)M1);
        for (int64_t i = 0; i < p.M; i++) p.row_index[i] = (int32_t)tu_rng_int(&r, 0, (int)p.x_rows - 1);
    }
    p.accumulate = accumulate;
    if (scatter) {
        p.out_index = malloc(sizeof(int32_t) * (size_t)M1);
        if (accumulate) { /* every y row receives two routed rows (a scatter-add), in an order unlike the rows */
            p.y_rows = (p.M + 1) / 2;
            for (int64_t i = 0; i < p.M; i++) p.out_index[i] = (int32_t)((i * 7) % (p.y_rows > 0 ? p.y_rows : 1));
        } else { /* a permutation into a taller y */
            p.y_rows = p.M + 3;
            for (int64_t i = 0; i < p.M; i++) p.out_index[i] = (int32_t)(p.M - 1 - i + 2);
        }
    } else {
        p.y_rows = p.M;
    }
    if (scale) {
        static const float scales[4] = {0.5f, 1.0f, 2.0f, -1.0f};
        p.row_scale = malloc(sizeof(float) * (size_t)M1);
        for (int64_t i = 0; i < p.M; i++)
            p.row_scale[i] = integer ? scales[tu_rng_int(&r, 0, 3)] : tu_rng_uniform(&r, 0.1f, 1.0f);
    }
    p.y_stride = n + (scatter ? 3 : 0);
    p.y0 = malloc(sizeof(float) * (size_t)((p.y_rows > 0 ? p.y_rows : 1) * p.y_stride));
    if (integer)
        tu_fill_int(p.y0, p.y_rows * p.y_stride, &r, -3, 3);
    else
        tu_fill_uniform(p.y0, p.y_rows * p.y_stride, &r, -1.0f, 1.0f);
    return p;
}

static void free_gemm(gemm_problem *p) {
    free(p->off), free(p->x), free(p->row_index), free(p->out_index), free(p->row_scale), free(p->y0);
    free_weights(&p->w);
}

/* Runs the problem (dtype dt; packed handle pk or raw) on the current table; returns y (caller frees). */
static float *run_gemm(const gemm_problem *p, mk_dtype dt, const mk_packed_weights *pk) {
    const size_t ny = (size_t)((p->y_rows > 0 ? p->y_rows : 1) * p->y_stride);
    float *y = malloc(sizeof(float) * ny);
    cr_assert(y);
    memcpy(y, p->y0, sizeof(float) * ny);
    mk_grouped_gemm_args a;
    memset(&a, 0, sizeof a);
    a.n_groups = p->G, a.group_offsets = p->off, a.n = p->n, a.k = p->k;
    a.x = p->x, a.x_rows = p->x_rows, a.x_stride = p->x_stride;
    a.row_index = p->row_index;
    a.w = pk ? NULL : wptr(&p->w, dt);
    a.w_dtype = dt;
    a.w_packed = pk;
    a.y = y, a.y_rows = p->y_rows, a.y_stride = p->y_stride;
    a.out_index = p->out_index, a.row_scale = p->row_scale, a.accumulate = p->accumulate;
    TU_ASSERT_OK(mk_grouped_gemm(&a));
    return y;
}

static mk_packed_weights *pack(const void *w, mk_dtype dt, int64_t G, int64_t n, int64_t k, mk_pack_mode mode) {
    mk_packed_weights *pk = NULL;
    TU_ASSERT_OK(mk_pack_weights(w, dt, G, n, k, mode, &pk));
    cr_assert(pk != NULL);
    return pk;
}

/* Every SIMD ISA, F32 and BF16, raw and packed, against the reference: bit-exact (integer data) or within the
 * selfcheck NMSE. The reference itself must give the same answer from raw and packed weights. */
static void check_gemm_vs_ref(const gemm_problem *p, int integer, const char *what) {
    const int64_t ny = p->y_rows * p->y_stride;
    mk_isa isas[2];
    const int n_isas = simd_isas(isas);
    for (int d = 0; d < 2; d++) {
        const mk_dtype dt = d ? MK_BF16 : MK_F32;
        mk_packed_weights *pk = pack(wptr(&p->w, dt), dt, p->G, p->n, p->k, MK_PACK_DEFAULT);
        set_isa(MK_ISA_REF);
        float *want = run_gemm(p, dt, NULL);
        float *want_packed = run_gemm(p, dt, pk);
        int64_t bad = -1;
        cr_expect(same_bits(want, want_packed, ny, &bad), "%s %s: reference raw != reference packed at %lld", what,
                  mk_dtype_name(dt), (long long)bad);
        for (int i = 0; i < n_isas; i++) {
            set_isa(isas[i]);
            cr_expect_str_eq(mk_kernel_name(MK_OP_GROUPED_GEMM), mk_isa_name(isas[i]));
            for (int use_pack = 0; use_pack < 2; use_pack++) {
                float *got = run_gemm(p, dt, use_pack ? pk : NULL);
                if (integer) {
                    bad = -1;
                    cr_expect(same_bits(want, got, ny, &bad),
                              "%s %s %s %s: element %lld = %.9g, reference %.9g (exact data: must be bit-equal)", what,
                              mk_isa_name(isas[i]), mk_dtype_name(dt), use_pack ? "packed" : "raw", (long long)bad,
                              bad >= 0 ? (double)got[bad] : 0.0, bad >= 0 ? (double)want[bad] : 0.0);
                } else {
                    const double tol = mki_selfcheck_tol(MK_OP_GROUPED_GEMM, dt);
                    const double e = tu_nmse(want, got, ny);
                    cr_expect(e <= tol, "%s %s %s %s: NMSE %.3g > %.3g", what, mk_isa_name(isas[i]),
                              mk_dtype_name(dt), use_pack ? "packed" : "raw", e, tol);
                }
                free(got);
            }
        }
        free(want), free(want_packed);
        mk_packed_weights_free(pk);
    }
    set_isa(MK_ISA_AVX512); /* back to the best ISA (the cap is clamped to the hardware) */
}

/* ============================================ grouped GEMM ================================================= */

Test(gemm_fast, exact_integer_tails_and_options) {
    static const int64_t ns[] = {1, 17, 33, 100}, ks[] = {1, 3, 31, 130};
    const int64_t rows[4] = {3, 0, 15, 29};
    for (int in = 0; in < 4; in++)
        for (int ik = 0; ik < 4; ik++)
            for (int opt = 0; opt < 3; opt++) {
                /* 0: plain; 1: gather + permuted scatter + scale; 2: gather + scatter-add + scale + accumulate */
                gemm_problem p = make_gemm(4, rows, ns[in], ks[ik], 1, opt > 0, opt > 0, opt > 0, opt == 2,
                                           100 + (uint64_t)(in * 16 + ik * 4 + opt));
                char what[96];
                snprintf(what, sizeof what, "n %lld k %lld opt %d", (long long)ns[in], (long long)ks[ik], opt);
                check_gemm_vs_ref(&p, 1, what);
                free_gemm(&p);
            }
}

Test(gemm_fast, exact_integer_group_sizes_0_to_513) {
    /* every row count that lands on a different tile split (MR 14 on AVX-512, 6 on AVX2), up to 513 */
    int64_t rows[40];
    int G = 0;
    for (int m = 0; m <= 17; m++) rows[G++] = m;
    static const int64_t more[] = {27, 28, 29, 42, 43, 64, 127, 128, 129, 513};
    for (int i = 0; i < (int)TU_ARRAY_LEN(more); i++) rows[G++] = more[i];
    gemm_problem p = make_gemm(G, rows, 40, 37, 1, 1, 1, 1, 1, 7);
    check_gemm_vs_ref(&p, 1, "groups 0..513 rows, scatter-add");
    free_gemm(&p);
    gemm_problem q = make_gemm(G, rows, 64, 96, 1, 0, 0, 0, 0, 8);
    check_gemm_vs_ref(&q, 1, "groups 0..513 rows, plain");
    free_gemm(&q);
}

Test(gemm_fast, exact_integer_long_k_blocks) {
    /* k long enough for several k blocks (partial sums stored and reloaded) and rows for several row tiles */
    const int64_t rows[3] = {1, 40, 9};
    gemm_problem p = make_gemm(3, rows, 70, 2200, 1, 1, 1, 1, 1, 9);
    check_gemm_vs_ref(&p, 1, "k 2200");
    free_gemm(&p);
}

Test(gemm_fast, random_nmse) {
    const int64_t rows[5] = {1, 7, 0, 33, 130};
    gemm_problem p = make_gemm(5, rows, 100, 300, 0, 1, 1, 1, 1, 11);
    check_gemm_vs_ref(&p, 0, "random scatter-add");
    free_gemm(&p);
    const int64_t rows2[2] = {2, 20};
    gemm_problem q = make_gemm(2, rows2, 33, 1000, 0, 0, 0, 0, 0, 12);
    check_gemm_vs_ref(&q, 0, "random plain k 1000");
    free_gemm(&q);
}

/* BF16 widened to F32 (MK_PACK_BF16_WIDEN) must compute exactly what F32 weights with the same values give (same
 * k order), so it holds the F32 bound; and raw weights (repacked on the fly) equal packed ones bit for bit. Every
 * group has more than 8 rows: raw weights with <= 8 rows per group take the direct path, which sums in another
 * order (checked against the reference by the other tests). */
Test(gemm_fast, widen_equals_f32_and_packed_equals_raw) {
    const int64_t rows[4] = {9, 17, 30, 0};
    gemm_problem p = make_gemm(4, rows, 65, 257, 0, 1, 1, 1, 1, 13);
    const int64_t ny = p.y_rows * p.y_stride;
    mk_packed_weights *pw = pack(p.w.bf16, MK_BF16, p.G, p.n, p.k, MK_PACK_BF16_WIDEN);
    mk_packed_weights *pd = pack(p.w.bf16, MK_BF16, p.G, p.n, p.k, MK_PACK_DEFAULT);
    mk_packed_weights *pf = pack(p.w.f32, MK_F32, p.G, p.n, p.k, MK_PACK_DEFAULT);
    set_isa(MK_ISA_REF);
    float *want = run_gemm(&p, MK_F32, NULL);
    mk_isa isas[2];
    const int n_isas = simd_isas(isas);
    for (int i = 0; i < n_isas; i++) {
        set_isa(isas[i]);
        float *f32 = run_gemm(&p, MK_F32, NULL), *f32p = run_gemm(&p, MK_F32, pf);
        float *wid = run_gemm(&p, MK_BF16, pw), *def = run_gemm(&p, MK_BF16, pd), *raw = run_gemm(&p, MK_BF16, NULL);
        int64_t bad = -1;
        cr_expect(same_bits(f32, wid, ny, &bad), "%s: widened BF16 != F32 at %lld", mk_isa_name(isas[i]),
                  (long long)bad);
        cr_expect(same_bits(f32, f32p, ny, &bad), "%s: F32 packed != raw at %lld", mk_isa_name(isas[i]),
                  (long long)bad);
        cr_expect(same_bits(def, raw, ny, &bad), "%s: BF16 packed != raw at %lld", mk_isa_name(isas[i]),
                  (long long)bad);
        const double tol32 = mki_selfcheck_tol(MK_OP_GROUPED_GEMM, MK_F32);
        cr_expect(tu_nmse(want, wid, ny) <= tol32, "%s: widened NMSE %.3g", mk_isa_name(isas[i]),
                  tu_nmse(want, wid, ny));
        free(f32), free(f32p), free(wid), free(def), free(raw);
    }
    set_isa(MK_ISA_AVX512); /* back to the best ISA (the cap is clamped to the hardware) */
    free(want);
    mk_packed_weights_free(pw), mk_packed_weights_free(pd), mk_packed_weights_free(pf);
    free_gemm(&p);
}

/* The openPangu-R-72B expert shapes, gate+up (N 2560, K 4608) and down (N 4608, K 1280), with 1, 5 and 16 rows per
 * expert (the streaming and the blocked paths), integer data, against an int64 loop written here. */
static void real_shape_case(int64_t n, int64_t k) {
    const int64_t rows[3] = {1, 5, 16};
    gemm_problem p = make_gemm(3, rows, n, k, 1, 1, 0, 0, 0, 21 + (uint64_t)n);
    double *want = malloc(sizeof(double) * (size_t)(p.M * n));
    for (int64_t g = 0; g < p.G; g++)
        for (int64_t r = p.off[g]; r < p.off[g + 1]; r++) {
            const float *xr = p.x + (int64_t)p.row_index[r] * p.x_stride;
            for (int64_t j = 0; j < n; j++) {
                const float *wr = p.w.f32 + (g * n + j) * k;
                int64_t dot = 0;
                for (int64_t c = 0; c < k; c++) dot += (int64_t)xr[c] * (int64_t)wr[c];
                want[r * n + j] = (double)dot;
            }
        }
    mk_isa isas[2];
    const int n_isas = simd_isas(isas);
    for (int d = 0; d < 2; d++) {
        const mk_dtype dt = d ? MK_BF16 : MK_F32;
        mk_packed_weights *pk = pack(wptr(&p.w, dt), dt, p.G, n, k, MK_PACK_DEFAULT);
        for (int i = 0; i < n_isas; i++) {
            set_isa(isas[i]);
            for (int use_pack = 0; use_pack < 2; use_pack++) {
                float *got = run_gemm(&p, dt, use_pack ? pk : NULL);
                int64_t bad = -1;
                for (int64_t q = 0; q < p.M * n && bad < 0; q++)
                    if ((double)got[q] != want[q]) bad = q;
                cr_expect(bad < 0, "n %lld k %lld %s %s %s: element %lld = %.9g, want %.9g", (long long)n, (long long)k,
                          mk_isa_name(isas[i]), mk_dtype_name(dt), use_pack ? "packed" : "raw", (long long)bad,
                          bad >= 0 ? (double)got[bad] : 0.0, bad >= 0 ? want[bad] : 0.0);
                free(got);
            }
        }
        mk_packed_weights_free(pk);
    }
    set_isa(MK_ISA_AVX512); /* back to the best ISA (the cap is clamped to the hardware) */
    free(want);
    free_gemm(&p);
}

Test(gemm_fast, pangu_shapes_exact, .timeout = 120) {
    real_shape_case(2560, 4608);
    real_shape_case(4608, 1280);
}

/* Enough work for two threads (several units, scatter-add with repeated destinations): 1 and 2 threads must give
 * the same bits. */
Test(gemm_fast, threads_1_vs_2_bitwise) {
    const int64_t rows[5] = {40, 3, 0, 90, 17};
    gemm_problem p = make_gemm(5, rows, 600, 700, 0, 1, 1, 1, 1, 31);
    const int64_t ny = p.y_rows * p.y_stride;
    mk_isa isas[2];
    const int n_isas = simd_isas(isas);
    for (int d = 0; d < 2; d++) {
        const mk_dtype dt = d ? MK_BF16 : MK_F32;
        for (int i = 0; i < n_isas; i++) {
            set_isa(isas[i]);
            TU_ASSERT_OK(mk_set_num_threads(1));
            float *one = run_gemm(&p, dt, NULL);
            TU_ASSERT_OK(mk_set_num_threads(2));
            float *two = run_gemm(&p, dt, NULL);
            int64_t bad = -1;
            cr_expect(same_bits(one, two, ny, &bad), "%s %s: 1 thread != 2 threads at %lld", mk_isa_name(isas[i]),
                      mk_dtype_name(dt), (long long)bad);
            free(one), free(two);
        }
    }
    set_isa(MK_ISA_AVX512); /* back to the best ISA (the cap is clamped to the hardware) */
    free_gemm(&p);
}

typedef struct caller {
    const gemm_problem *p;
    mk_dtype dt;
    const float *want;
    int mismatches;
} caller;

static void *caller_main(void *v) {
    caller *c = (caller *)v;
    const int64_t ny = c->p->y_rows * c->p->y_stride;
    for (int it = 0; it < 12; it++) {
        /* run_gemm asserts, which is not allowed off the main thread: call the API directly */
        float *y = malloc(sizeof(float) * (size_t)ny);
        memcpy(y, c->p->y0, sizeof(float) * (size_t)ny);
        mk_grouped_gemm_args a;
        memset(&a, 0, sizeof a);
        a.n_groups = c->p->G, a.group_offsets = c->p->off, a.n = c->p->n, a.k = c->p->k;
        a.x = c->p->x, a.x_rows = c->p->x_rows, a.x_stride = c->p->x_stride, a.row_index = c->p->row_index;
        a.w = wptr(&c->p->w, c->dt), a.w_dtype = c->dt;
        a.y = y, a.y_rows = c->p->y_rows, a.y_stride = c->p->y_stride;
        a.out_index = c->p->out_index, a.row_scale = c->p->row_scale, a.accumulate = c->p->accumulate;
        if (mk_grouped_gemm(&a) != MK_OK || !same_bits(y, c->want, ny, NULL)) c->mismatches++;
        free(y);
    }
    return NULL;
}

Test(gemm_fast, two_callers_at_once) {
    const int64_t rows_a[3] = {20, 50, 7}, rows_b[2] = {64, 1};
    gemm_problem pa = make_gemm(3, rows_a, 300, 500, 0, 1, 1, 1, 1, 41);
    gemm_problem pb = make_gemm(2, rows_b, 257, 700, 0, 0, 0, 0, 0, 42);
    mk_isa isas[2];
    const int n_isas = simd_isas(isas);
    TU_ASSERT_OK(mk_set_num_threads(2));
    for (int i = 0; i < n_isas; i++) {
        set_isa(isas[i]);
        float *wa = run_gemm(&pa, MK_BF16, NULL), *wb = run_gemm(&pb, MK_F32, NULL);
        caller ca = {&pa, MK_BF16, wa, 0}, cb = {&pb, MK_F32, wb, 0};
        pthread_t ta, tb;
        cr_assert_eq(pthread_create(&ta, NULL, caller_main, &ca), 0);
        cr_assert_eq(pthread_create(&tb, NULL, caller_main, &cb), 0);
        pthread_join(ta, NULL);
        pthread_join(tb, NULL);
        cr_expect_eq(ca.mismatches, 0, "%s: caller A differed from a single call %d times", mk_isa_name(isas[i]),
                     ca.mismatches);
        cr_expect_eq(cb.mismatches, 0, "%s: caller B differed from a single call %d times", mk_isa_name(isas[i]),
                     cb.mismatches);
        free(wa), free(wb);
    }
    set_isa(MK_ISA_AVX512); /* back to the best ISA (the cap is clamped to the hardware) */
    free_gemm(&pa), free_gemm(&pb);
}

Test(gemm_fast, kernel_names) {
    mk_isa isas[2];
    const int n_isas = simd_isas(isas);
    cr_assert(n_isas >= 1 || mk_detected_isa() == MK_ISA_REF);
    for (int i = 0; i < n_isas; i++) {
        set_isa(isas[i]);
        cr_expect_str_eq(mk_kernel_name(MK_OP_GROUPED_GEMM), mk_isa_name(isas[i]));
        cr_expect_str_eq(mk_kernel_name(MK_OP_MOE_FFN), mk_isa_name(isas[i]));
    }
    set_isa(MK_ISA_REF);
    cr_expect_str_eq(mk_kernel_name(MK_OP_GROUPED_GEMM), "ref");
    cr_expect_str_eq(mk_kernel_name(MK_OP_MOE_FFN), "ref");
}

/* ============================================ fused FFN ==================================================== */
typedef struct ffn_problem {
    int64_t T, H, E, F, K, SD, xs, ys;
    float *x;
    int32_t *ids;
    float *wts;
    weights g, u, d, sg, su, sd;
} ffn_problem;

/* minus_every: every n-th slot is -1 (with a NaN weight, which must never be read); 0 = none. x_pad/y_pad: row
 * padding of x and y. sparse: only allocate touched experts' pages (real shapes). */
static ffn_problem make_ffn(int64_t T, int64_t H, int64_t E, int64_t F, int64_t K, int64_t SD, int minus_every,
                            int64_t pad, uint64_t seed) {
    ffn_problem p;
    memset(&p, 0, sizeof p);
    tu_rng r;
    tu_rng_seed(&r, seed);
    p.T = T, p.H = H, p.E = E, p.F = F, p.K = K, p.SD = SD, p.xs = H + pad, p.ys = H + 2 * pad;
    p.x = malloc(sizeof(float) * (size_t)(T * p.xs));
    tu_fill_uniform(p.x, T * p.xs, &r, -1.0f, 1.0f);
    p.ids = malloc(sizeof(int32_t) * (size_t)(T * K));
    p.wts = malloc(sizeof(float) * (size_t)(T * K));
    for (int64_t t = 0; t < T; t++) {
        const int64_t first = tu_rng_int(&r, 0, (int)E - 1);
        for (int64_t j = 0; j < K; j++) {
            p.ids[t * K + j] = (int32_t)((first + j * 3) % E);
            p.wts[t * K + j] = tu_rng_uniform(&r, 0.05f, 1.0f);
            if (minus_every && (t * K + j) % minus_every == minus_every - 1) {
                p.ids[t * K + j] = -1;
                tu_fill_bits(&p.wts[t * K + j], 1, 0x7fc00000u);
            }
        }
    }
    const float ah = 2.0f / sqrtf((float)H);
    p.g = make_weights(E * F * H, &r, 0, ah);
    p.u = make_weights(E * F * H, &r, 0, ah);
    p.d = make_weights(E * H * F, &r, 0, 2.0f / sqrtf((float)F));
    const int64_t sn = SD > 0 ? SD * H : 1;
    p.sg = make_weights(sn, &r, 0, ah);
    p.su = make_weights(sn, &r, 0, ah);
    p.sd = make_weights(sn, &r, 0, SD > 0 ? 2.0f / sqrtf((float)SD) : 1.0f);
    return p;
}

static void free_ffn(ffn_problem *p) {
    free(p->x), free(p->ids), free(p->wts);
    free_weights(&p->g), free_weights(&p->u), free_weights(&p->d);
    free_weights(&p->sg), free_weights(&p->su), free_weights(&p->sd);
}

typedef struct ffn_packs {
    mk_packed_weights *g, *u, *d, *sg, *su, *sd;
} ffn_packs;

static ffn_packs pack_ffn(const ffn_problem *p, mk_dtype dt) {
    ffn_packs k;
    memset(&k, 0, sizeof k);
    k.g = pack(wptr(&p->g, dt), dt, p->E, p->F, p->H, MK_PACK_DEFAULT);
    k.u = pack(wptr(&p->u, dt), dt, p->E, p->F, p->H, MK_PACK_DEFAULT);
    k.d = pack(wptr(&p->d, dt), dt, p->E, p->H, p->F, MK_PACK_DEFAULT);
    if (p->SD > 0) {
        k.sg = pack(wptr(&p->sg, dt), dt, 1, p->SD, p->H, MK_PACK_DEFAULT);
        k.su = pack(wptr(&p->su, dt), dt, 1, p->SD, p->H, MK_PACK_DEFAULT);
        k.sd = pack(wptr(&p->sd, dt), dt, 1, p->H, p->SD, MK_PACK_DEFAULT);
    }
    return k;
}

static void free_packs(ffn_packs *k) {
    mk_packed_weights_free(k->g), mk_packed_weights_free(k->u), mk_packed_weights_free(k->d);
    mk_packed_weights_free(k->sg), mk_packed_weights_free(k->su), mk_packed_weights_free(k->sd);
}

/* Runs on the current table; returns y [T][ys] (padding keeps the sentinel; caller frees). */
static float *run_ffn(const ffn_problem *p, mk_dtype dt, const ffn_packs *k) {
    float *y = malloc(sizeof(float) * (size_t)(p->T * p->ys));
    cr_assert(y);
    tu_fill_bits(y, p->T * p->ys, TU_SENTINEL_BITS);
    mk_moe_ffn_args a;
    memset(&a, 0, sizeof a);
    a.n_tokens = p->T, a.hidden = p->H, a.n_experts = p->E, a.expert_dim = p->F, a.top_k = p->K;
    a.x = p->x, a.x_stride = p->xs, a.expert_ids = p->ids, a.expert_weights = p->wts, a.w_dtype = dt;
    a.w_gate = wptr(&p->g, dt), a.w_up = wptr(&p->u, dt), a.w_down = wptr(&p->d, dt);
    a.shared_dim = p->SD;
    if (p->SD > 0) a.shared_gate = wptr(&p->sg, dt), a.shared_up = wptr(&p->su, dt), a.shared_down = wptr(&p->sd, dt);
    a.y = y, a.y_stride = p->ys;
    if (k) {
        a.packed_gate = k->g, a.packed_up = k->u, a.packed_down = k->d;
        a.packed_shared_gate = k->sg, a.packed_shared_up = k->su, a.packed_shared_down = k->sd;
        a.w_gate = a.w_up = a.w_down = NULL; /* the handles replace the raw pointers */
        a.shared_gate = a.shared_up = a.shared_down = NULL;
    }
    TU_ASSERT_OK(mk_moe_ffn(&a));
    return y;
}

static double ffn_nmse(const ffn_problem *p, const float *want, const float *got, int *pad_ok) {
    double num = 0.0, den = 0.0;
    *pad_ok = 1;
    for (int64_t t = 0; t < p->T; t++) {
        for (int64_t h = 0; h < p->H; h++) {
            const double w = want[t * p->ys + h], d = (double)got[t * p->ys + h] - w;
            num += d * d, den += w * w;
        }
        for (int64_t h = p->H; h < p->ys; h++)
            if (!tu_same_bytes(&got[t * p->ys + h], &(uint32_t){TU_SENTINEL_BITS}, 4)) *pad_ok = 0;
    }
    return den > 0 ? num / den : (num == 0 ? 0 : INFINITY);
}

static void check_ffn_vs_ref(const ffn_problem *p, const char *what, int with_packed) {
    mk_isa isas[2];
    const int n_isas = simd_isas(isas);
    for (int d = 0; d < 2; d++) {
        const mk_dtype dt = d ? MK_BF16 : MK_F32;
        ffn_packs k;
        memset(&k, 0, sizeof k);
        if (with_packed) k = pack_ffn(p, dt);
        set_isa(MK_ISA_REF);
        float *want = run_ffn(p, dt, NULL);
        const double tol = mki_selfcheck_tol(MK_OP_MOE_FFN, dt);
        for (int i = 0; i < n_isas; i++) {
            set_isa(isas[i]);
            cr_expect_str_eq(mk_kernel_name(MK_OP_MOE_FFN), mk_isa_name(isas[i]));
            float *raw = run_ffn(p, dt, NULL);
            int pad_ok;
            const double e = ffn_nmse(p, want, raw, &pad_ok);
            cr_expect(e <= tol, "%s %s %s raw: NMSE %.3g > %.3g", what, mk_isa_name(isas[i]), mk_dtype_name(dt), e, tol);
            cr_expect(pad_ok, "%s %s %s: y padding written", what, mk_isa_name(isas[i]), mk_dtype_name(dt));
            if (with_packed) { /* experts with few rows take the direct path on raw weights: compare to the oracle */
                float *pk = run_ffn(p, dt, &k);
                const double ep = ffn_nmse(p, want, pk, &pad_ok);
                cr_expect(ep <= tol, "%s %s %s packed: NMSE %.3g > %.3g", what, mk_isa_name(isas[i]),
                          mk_dtype_name(dt), ep, tol);
                cr_expect(pad_ok, "%s %s %s packed: y padding written", what, mk_isa_name(isas[i]), mk_dtype_name(dt));
                free(pk);
            }
            free(raw);
        }
        free(want);
        if (with_packed) free_packs(&k);
    }
    set_isa(MK_ISA_AVX512); /* back to the best ISA (the cap is clamped to the hardware) */
}

Test(gemm_fast, ffn_small_and_tail_shapes_vs_ref) {
    static const struct { int64_t T, H, E, F, K, SD; int minus; int64_t pad; } c[] = {
        {5, 3, 4, 2, 2, 2, 0, 0},        /* tiny, shared expert */
        {6, 3, 4, 2, 2, 0, 3, 1},        /* no shared expert, -1 slots */
        {37, 64, 8, 48, 2, 32, 7, 3},    /* odd widths, strided x and y */
        {3, 100, 5, 33, 2, 17, 0, 0},    /* N and K tails everywhere, odd widths (BF16 pair padding) */
        {20, 130, 16, 31, 4, 0, 5, 0},   /* experts of 0..few rows */
        {40, 96, 4, 40, 4, 64, 0, 2},    /* experts with many rows (several row tiles) */
        {4, 8, 4, 4, 2, 0, 1, 0},        /* every slot -1 and no shared expert: y = 0 */
    };
    for (int i = 0; i < (int)TU_ARRAY_LEN(c); i++) {
        ffn_problem p = make_ffn(c[i].T, c[i].H, c[i].E, c[i].F, c[i].K, c[i].SD, c[i].minus, c[i].pad, 500 + (uint64_t)i);
        char what[64];
        snprintf(what, sizeof what, "case %d", i);
        check_ffn_vs_ref(&p, what, 1);
        free_ffn(&p);
    }
}

Test(gemm_fast, ffn_long_k_blocks_vs_ref) {
    /* hidden and expert widths long enough for several k blocks in both projections */
    ffn_problem p = make_ffn(30, 1100, 6, 1000, 3, 520, 0, 0, 601);
    check_ffn_vs_ref(&p, "k blocks", 1);
    free_ffn(&p);
}

/* openPangu-R-72B: hidden 4608, 80 experts of width 1280, top-8, shared expert 2560, two tokens routed to the same
 * eight experts in different slot orders. Only the routed experts' weights are filled (the rest stay untouched
 * zero pages), raw weights, against the reference. */
Test(gemm_fast, ffn_pangu_shape_vs_ref, .timeout = 120) {
    const int64_t T = 2, H = 4608, E = 80, F = 1280, K = 8, SD = 2560;
    tu_rng r;
    tu_rng_seed(&r, 777);
    const size_t expert = (size_t)(F * H);
    uint16_t *g = calloc((size_t)E * expert, 2), *u = calloc((size_t)E * expert, 2), *d = calloc((size_t)E * expert, 2);
    uint16_t *sg = malloc(2 * (size_t)(SD * H)), *su = malloc(2 * (size_t)(SD * H)), *sd = malloc(2 * (size_t)(SD * H));
    float *x = malloc(sizeof(float) * (size_t)(T * H)), *tmp = malloc(sizeof(float) * (size_t)(SD * H));
    cr_assert(g && u && d && sg && su && sd && x && tmp);
    int32_t ids[T * K];
    float wts[T * K];
    for (int64_t j = 0; j < K; j++) {
        ids[j] = (int32_t)(3 + 9 * j);            /* experts 3, 12, ..., 66 */
        ids[K + j] = (int32_t)(3 + 9 * (K - 1 - j)); /* the same eight, reversed */
        wts[j] = tu_rng_uniform(&r, 0.05f, 0.3f);
        wts[K + j] = tu_rng_uniform(&r, 0.05f, 0.3f);
    }
    const float ah = 2.0f / sqrtf((float)H), af = 2.0f / sqrtf((float)F), as = 2.0f / sqrtf((float)SD);
    for (int64_t j = 0; j < K; j++) {
        const size_t base = (size_t)ids[j] * expert;
        for (int m = 0; m < 3; m++) {
            uint16_t *w = m == 0 ? g : m == 1 ? u : d;
            for (size_t i = 0; i < expert; i++) tmp[i] = bf16_round(tu_rng_uniform(&r, -1.0f, 1.0f) * (m == 2 ? af : ah));
            cr_assert(tu_to_bf16_exact(w + base, tmp, (int64_t)expert));
        }
    }
    for (int m = 0; m < 3; m++) {
        uint16_t *w = m == 0 ? sg : m == 1 ? su : sd;
        for (int64_t i = 0; i < SD * H; i++) tmp[i] = bf16_round(tu_rng_uniform(&r, -1.0f, 1.0f) * (m == 2 ? as : ah));
        cr_assert(tu_to_bf16_exact(w, tmp, SD * H));
    }
    tu_fill_uniform(x, T * H, &r, -1.0f, 1.0f);
    mk_moe_ffn_args a;
    memset(&a, 0, sizeof a);
    a.n_tokens = T, a.hidden = H, a.n_experts = E, a.expert_dim = F, a.top_k = K, a.x = x;
    a.expert_ids = ids, a.expert_weights = wts, a.w_dtype = MK_BF16, a.w_gate = g, a.w_up = u, a.w_down = d;
    a.shared_dim = SD, a.shared_gate = sg, a.shared_up = su, a.shared_down = sd;
    float *want = malloc(sizeof(float) * (size_t)(T * H)), *got = malloc(sizeof(float) * (size_t)(T * H));
    set_isa(MK_ISA_REF);
    a.y = want;
    TU_ASSERT_OK(mk_moe_ffn(&a));
    mk_isa isas[2];
    const int n_isas = simd_isas(isas);
    mk_packed_weights *psd = pack(sd, MK_BF16, 1, H, SD, MK_PACK_DEFAULT);
    for (int i = 0; i < n_isas; i++) {
        set_isa(isas[i]);
        for (int v = 0; v < 2; v++) {
            a.packed_shared_down = v ? psd : NULL; /* raw, then one packed operand mixed with raw ones */
            a.y = got;
            tu_fill_bits(got, T * H, TU_SENTINEL_BITS);
            TU_ASSERT_OK(mk_moe_ffn(&a));
            const double e = tu_nmse(want, got, T * H), tol = mki_selfcheck_tol(MK_OP_MOE_FFN, MK_BF16);
            cr_expect(e <= tol, "%s%s: NMSE %.3g > %.3g", mk_isa_name(isas[i]), v ? " (packed shared down)" : "", e, tol);
        }
        a.packed_shared_down = NULL;
    }
    set_isa(MK_ISA_AVX512); /* back to the best ISA (the cap is clamped to the hardware) */
    mk_packed_weights_free(psd);
    free(g), free(u), free(d), free(sg), free(su), free(sd), free(x), free(tmp), free(want), free(got);
}

Test(gemm_fast, ffn_threads_1_vs_2_bitwise) {
    ffn_problem p = make_ffn(64, 512, 16, 192, 4, 256, 9, 0, 801);
    mk_isa isas[2];
    const int n_isas = simd_isas(isas);
    for (int d = 0; d < 2; d++) {
        const mk_dtype dt = d ? MK_BF16 : MK_F32;
        for (int i = 0; i < n_isas; i++) {
            set_isa(isas[i]);
            TU_ASSERT_OK(mk_set_num_threads(1));
            float *one = run_ffn(&p, dt, NULL);
            TU_ASSERT_OK(mk_set_num_threads(2));
            float *two = run_ffn(&p, dt, NULL);
            int64_t bad = -1;
            cr_expect(same_bits(one, two, p.T * p.ys, &bad), "%s %s: 1 thread != 2 threads at %lld",
                      mk_isa_name(isas[i]), mk_dtype_name(dt), (long long)bad);
            free(one), free(two);
        }
    }
    set_isa(MK_ISA_AVX512); /* back to the best ISA (the cap is clamped to the hardware) */
    free_ffn(&p);
}

/* ============================================ packed weights API =========================================== */

Test(gemm_fast, pack_layout_accessor_roundtrip) {
    /* every element of a packed tensor reads back through the documented layout (pack.h), for odd n and k */
    tu_rng r;
    tu_rng_seed(&r, 901);
    const int64_t G = 3, n = 45, k = 37;
    weights w = make_weights(G * n * k, &r, 0, 1.0f);
    for (int d = 0; d < 2; d++) {
        const mk_dtype dt = d ? MK_BF16 : MK_F32;
        mk_packed_weights *pk = pack(wptr(&w, dt), dt, G, n, k, MK_PACK_DEFAULT);
        int bad = 0;
        for (int64_t g = 0; g < G; g++)
            for (int64_t i = 0; i < n; i++)
                for (int64_t c = 0; c < k; c++)
                    if (mki_packed_get(pk, g, i, c) != w.f32[(g * n + i) * k + c]) bad++;
        cr_expect_eq(bad, 0, "%s: %d elements read back wrong", mk_dtype_name(dt), bad);
        /* the padding (columns n .. 63 of the last panel, the odd half of the last BF16 pair) is zero */
        const int64_t panels = (n + 31) / 32, steps = dt == MK_BF16 ? (k + 1) / 2 : k;
        const size_t payload = (size_t)(G * panels * steps * 32) * 4;
        cr_expect(mk_packed_weights_bytes(pk) >= payload, "bytes %zu < payload %zu", mk_packed_weights_bytes(pk),
                  payload);
        if (dt == MK_BF16) cr_expect_eq(mki_packed_get(pk, 0, 3, k), 0.0f); /* k odd: pad half of the last pair */
        cr_expect_eq(mki_packed_get(pk, G - 1, n, 0), 0.0f);
        cr_expect_eq(mki_packed_get(pk, G - 1, 63, k - 1), 0.0f);
        mk_packed_weights_free(pk);
    }
    free_weights(&w);
    mk_packed_weights_free(NULL); /* no-op */
    cr_expect_eq(mk_packed_weights_bytes(NULL), 0u);
}

Test(gemm_fast, pack_bad_arguments_are_named) {
    float w[8] = {0};
    mk_packed_weights *pk = NULL;
    TU_EXPECT_FAIL(mk_pack_weights(NULL, MK_F32, 1, 2, 4, MK_PACK_DEFAULT, &pk), MK_EINVAL, "w");
    TU_EXPECT_FAIL(mk_pack_weights(w, MK_F32, 1, 2, 4, MK_PACK_DEFAULT, NULL), MK_EINVAL, "packed");
    TU_EXPECT_FAIL(mk_pack_weights(w, (mk_dtype)7, 1, 2, 4, MK_PACK_DEFAULT, &pk), MK_EINVAL, "dtype");
    TU_EXPECT_FAIL(mk_pack_weights(w, MK_F32, 0, 2, 4, MK_PACK_DEFAULT, &pk), MK_EINVAL, "n_groups");
    TU_EXPECT_FAIL(mk_pack_weights(w, MK_F32, 1, 0, 4, MK_PACK_DEFAULT, &pk), MK_EINVAL, "n");
    TU_EXPECT_FAIL(mk_pack_weights(w, MK_F32, 1, 2, -1, MK_PACK_DEFAULT, &pk), MK_EINVAL, "k");
    TU_EXPECT_FAIL(mk_pack_weights(w, MK_F32, 1, 2, 4, (mk_pack_mode)5, &pk), MK_EINVAL, "mode");
    TU_EXPECT_FAIL(mk_pack_weights(w, MK_F32, INT64_MAX / 2, 1 << 20, 1 << 20, MK_PACK_DEFAULT, &pk), MK_EINVAL, "w");
    cr_expect(pk == NULL, "a failed pack wrote the handle");
}

Test(gemm_fast, pack_gemm_and_ffn_validate_handles) {
    float w[2 * 3 * 4] = {0}, x[8] = {0}, y[8];
    const int64_t off[3] = {0, 1, 2};
    mk_packed_weights *pk = pack(w, MK_F32, 2, 3, 4, MK_PACK_DEFAULT);
    mk_grouped_gemm_args a;
    memset(&a, 0, sizeof a);
    a.n_groups = 2, a.group_offsets = off, a.n = 3, a.k = 4, a.x = x, a.x_rows = 2, a.y = y, a.y_rows = 2;
    a.w_packed = pk, a.w_dtype = (mk_dtype)99; /* w and w_dtype are ignored with a handle */
    TU_EXPECT_OK(mk_grouped_gemm(&a));
    a.n = 2;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "w_packed");
    a.n = 3, a.n_groups = 1;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "w_packed");
    a.n_groups = 2, a.w_packed = NULL;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "w_dtype"); /* without a handle, the raw fields are checked */
    a.w_dtype = MK_F32;
    TU_EXPECT_FAIL(mk_grouped_gemm(&a), MK_EINVAL, "w");

    /* FFN: hidden 4, expert_dim 3, 2 experts: gate/up [2, 3, 4], down [2, 4, 3] */
    mk_packed_weights *pd = pack(w, MK_F32, 2, 4, 3, MK_PACK_DEFAULT);
    const int32_t ids[2] = {0, 1};
    const float wts[2] = {0.5f, 0.5f};
    mk_moe_ffn_args f;
    memset(&f, 0, sizeof f);
    f.n_tokens = 2, f.hidden = 4, f.n_experts = 2, f.expert_dim = 3, f.top_k = 1, f.x = x, f.expert_ids = ids;
    f.expert_weights = wts, f.w_dtype = MK_F32, f.y = y;
    f.packed_gate = pk, f.packed_up = pk, f.packed_down = pd;
    TU_EXPECT_OK(mk_moe_ffn(&f));
    f.packed_down = pk; /* [2, 3, 4] where [2, 4, 3] is needed */
    TU_EXPECT_FAIL(mk_moe_ffn(&f), MK_EINVAL, "packed_down");
    f.packed_down = NULL; /* then the raw w_down is required */
    TU_EXPECT_FAIL(mk_moe_ffn(&f), MK_EINVAL, "w_down");
    f.packed_down = pd, f.packed_up = pd;
    TU_EXPECT_FAIL(mk_moe_ffn(&f), MK_EINVAL, "packed_up");
    mk_packed_weights_free(pk);
    mk_packed_weights_free(pd);
}
