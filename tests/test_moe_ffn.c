/*
 * test_moe_ffn.c: mk_moe_ffn (fused routed + shared expert FFN) and mk_swiglu.
 *
 * Expected values: hand-computed constants (silu(2) = 1.7615941559557646, ...) and an independent double loop
 * written here (per token, per slot: gate/up dot products, silu, down projection, weighted sum; plus the shared
 * expert). It does not call mk_grouped_gemm or mk_swiglu.
 * Tolerances: hand cases |got - want| <= 1e-6 * |want| + 1e-6; random cases with F32 weights NMSE <= 1e-10 and
 * max |got - want| <= 1e-5 * max |want|; with BF16 weights (bf16-exact values) the documented contract (docs/api.md:
 * a kernel may round the activations to BF16 for vdpbf16ps) NMSE <= 5e-4 and max |err| <= 20 sqrt(5e-4) rms;
 * swiglu per element <= 2e-6 * |want| + 1e-7.
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moekit.h"
#include "test_util.h"

static double silu_d(double v) { return v / (1.0 + exp(-v)); }

static int close_rel(double got, double want, double rel, double abs_tol) {
    return fabs(got - want) <= rel * fabs(want) + abs_tol;
}

/* One SwiGLU expert in double: out[h] += scale * down(silu(gate x) * up x); weights as float arrays. */
static void expert_f64(const float *x, int64_t H, int64_t F, const float *wg, const float *wu, const float *wd,
                       double scale, double *out) {
    double *act = malloc(sizeof(double) * (size_t)F);
    for (int64_t f = 0; f < F; f++) {
        double g = 0, u = 0;
        for (int64_t h = 0; h < H; h++) {
            g += (double)wg[f * H + h] * (double)x[h];
            u += (double)wu[f * H + h] * (double)x[h];
        }
        act[f] = silu_d(g) * u;
    }
    for (int64_t h = 0; h < H; h++) {
        double s = 0;
        for (int64_t f = 0; f < F; f++) s += (double)wd[h * F + f] * act[f];
        out[h] += scale * s;
    }
    free(act);
}

typedef struct {
    int64_t T, H, E, F, K, SD, xs, ys;
    float *x, *wts, *wg, *wu, *wd, *sg, *su, *sdn;
    int32_t *ids;
} ffn_case;

static void ffn_oracle(const ffn_case *c, double *want /* [T, H] */) {
    for (int64_t t = 0; t < c->T; t++) {
        double *o = want + t * c->H;
        for (int64_t h = 0; h < c->H; h++) o[h] = 0;
        for (int64_t j = 0; j < c->K; j++) {
            int32_t e = c->ids[t * c->K + j];
            if (e < 0) continue;
            expert_f64(c->x + t * c->xs, c->H, c->F, c->wg + (int64_t)e * c->F * c->H, c->wu + (int64_t)e * c->F * c->H,
                       c->wd + (int64_t)e * c->H * c->F, (double)c->wts[t * c->K + j], o);
        }
        if (c->SD > 0) expert_f64(c->x + t * c->xs, c->H, c->SD, c->sg, c->su, c->sdn, 1.0, o);
    }
}

static mk_moe_ffn_args ffn_args(const ffn_case *c, mk_dtype wd, const void *wg, const void *wu, const void *wdn,
                                const void *sg, const void *su, const void *sdn, float *y) {
    mk_moe_ffn_args a;
    memset(&a, 0, sizeof a);
    a.n_tokens = c->T, a.hidden = c->H, a.n_experts = c->E, a.expert_dim = c->F, a.top_k = c->K;
    a.x = c->x, a.x_stride = c->xs == c->H ? 0 : c->xs;
    a.expert_ids = c->ids, a.expert_weights = c->wts;
    a.w_dtype = wd, a.w_gate = wg, a.w_up = wu, a.w_down = wdn;
    a.shared_dim = c->SD, a.shared_gate = sg, a.shared_up = su, a.shared_down = sdn;
    a.y = y, a.y_stride = c->ys == c->H ? 0 : c->ys;
    return a;
}

/* ================================================ hand case ================================================ */

Test(moe_ffn, hand_case_one_expert_then_shared) {
    /* hidden 2, expert_dim 1, 2 experts, top 1, token x = [2, 3], routed to expert 1 with weight 0.5.
     * expert 1: gate [1, 0] -> 2, up [0, 1] -> 3, down [1; 2]: h = silu(2) * 3 = 5.284782467867294,
     *           y = 0.5 * [h, 2h] = [2.642391233933647, 5.284782467867294].
     * expert 0 holds 7s everywhere: using it by mistake changes the answer.
     * shared (dim 1): gate [0, 1] -> 3, up [1, 0] -> 2, down [1; -1]: silu(3) * 2 = 5.7154447609345995,
     *           y = [8.357835994868246, -0.4306622930673054]. */
    const float x[2] = {2, 3};
    const float wg[2][1][2] = {{{7, 7}}, {{1, 0}}}, wu[2][1][2] = {{{7, 7}}, {{0, 1}}};
    const float wd[2][2][1] = {{{7}, {7}}, {{1}, {2}}};
    const int32_t ids[1] = {1};
    const float wts[1] = {0.5f};
    const float sg[2] = {0, 1}, su[2] = {1, 0}, sdn[2] = {1, -1};
    float y[2];
    mk_moe_ffn_args a;
    memset(&a, 0, sizeof a);
    a.n_tokens = 1, a.hidden = 2, a.n_experts = 2, a.expert_dim = 1, a.top_k = 1;
    a.x = x, a.expert_ids = ids, a.expert_weights = wts, a.w_dtype = MK_F32;
    a.w_gate = wg, a.w_up = wu, a.w_down = wd, a.y = y;
    tu_fill_bits(y, 2, TU_SENTINEL_BITS);
    TU_EXPECT_OK(mk_moe_ffn(&a));
    cr_expect(close_rel(y[0], 2.642391233933647, 1e-6, 1e-6), "routed only: y0 = %.9g", (double)y[0]);
    cr_expect(close_rel(y[1], 5.284782467867294, 1e-6, 1e-6), "routed only: y1 = %.9g", (double)y[1]);
    a.shared_dim = 1, a.shared_gate = sg, a.shared_up = su, a.shared_down = sdn;
    tu_fill_bits(y, 2, TU_SENTINEL_BITS);
    TU_EXPECT_OK(mk_moe_ffn(&a));
    cr_expect(close_rel(y[0], 8.357835994868246, 1e-6, 1e-6), "with shared: y0 = %.9g", (double)y[0]);
    cr_expect(close_rel(y[1], -0.4306622930673054, 1e-6, 1e-6), "with shared: y1 = %.9g", (double)y[1]);
}

/* ============================================ random vs the loop ============================================ */

/* packed: -1 = raw weight pointers, else every weight tensor goes through mk_pack_weights with that mode. */
static void run_ffn_case_p(int64_t T, int64_t H, int64_t E, int64_t F, int64_t K, int64_t SD, int64_t xs, int64_t ys,
                           int minus_one_every, mk_dtype wdt, int packed, uint64_t seed) {
    tu_rng r;
    tu_rng_seed(&r, seed);
    ffn_case c = {.T = T, .H = H, .E = E, .F = F, .K = K, .SD = SD, .xs = xs, .ys = ys};
    c.x = malloc(sizeof(float) * (size_t)(T * xs));
    c.wts = malloc(sizeof(float) * (size_t)(T * K));
    c.ids = malloc(sizeof(int32_t) * (size_t)(T * K));
    c.wg = malloc(sizeof(float) * (size_t)(E * F * H));
    c.wu = malloc(sizeof(float) * (size_t)(E * F * H));
    c.wd = malloc(sizeof(float) * (size_t)(E * H * F));
    int64_t sdn_n = SD > 0 ? SD * H : 1;
    c.sg = malloc(sizeof(float) * (size_t)sdn_n);
    c.su = malloc(sizeof(float) * (size_t)sdn_n);
    c.sdn = malloc(sizeof(float) * (size_t)sdn_n);
    tu_fill_uniform(c.x, T * xs, &r, -1.0f, 1.0f);
    /* weights on a 1/64 grid: exact in bf16, so the BF16 run has the same exact expected values */
    tu_fill_grid(c.wg, E * F * H, &r, 63, 6);
    tu_fill_grid(c.wu, E * F * H, &r, 63, 6);
    tu_fill_grid(c.wd, E * H * F, &r, 63, 6);
    tu_fill_grid(c.sg, sdn_n, &r, 63, 6);
    tu_fill_grid(c.su, sdn_n, &r, 63, 6);
    tu_fill_grid(c.sdn, sdn_n, &r, 63, 6);
    for (int64_t t = 0; t < T; t++) {
        /* K distinct experts per token, as a router produces */
        int64_t first = tu_rng_int(&r, 0, (int)E - 1);
        for (int64_t j = 0; j < K; j++) {
            c.ids[t * K + j] = (int32_t)((first + j * 3) % E);
            c.wts[t * K + j] = tu_rng_uniform(&r, 0.05f, 1.0f);
            if (minus_one_every && (t * K + j) % minus_one_every == minus_one_every - 1) {
                c.ids[t * K + j] = -1;
                tu_fill_bits(&c.wts[t * K + j], 1, 0x7fc00000u); /* NaN weight in a skipped slot: must not be used */
            }
        }
    }
    double *want = malloc(sizeof(double) * (size_t)(T * H));
    ffn_oracle(&c, want);

    float *y = malloc(sizeof(float) * (size_t)(T * ys));
    float *got = malloc(sizeof(float) * (size_t)(T * H > 0 ? T * H : 1));
    tu_fill_bits(y, T * ys, TU_SENTINEL_BITS);
    const void *pg = c.wg, *pu = c.wu, *pd = c.wd, *psg = c.sg, *psu = c.su, *psd = c.sdn;
    uint16_t *bg = NULL, *bu = NULL, *bd = NULL, *bsg = NULL, *bsu = NULL, *bsd = NULL;
    if (wdt == MK_BF16) {
        bg = malloc(2 * (size_t)(E * F * H)), bu = malloc(2 * (size_t)(E * F * H)), bd = malloc(2 * (size_t)(E * H * F));
        bsg = malloc(2 * (size_t)sdn_n), bsu = malloc(2 * (size_t)sdn_n), bsd = malloc(2 * (size_t)sdn_n);
        cr_assert(tu_to_bf16_exact(bg, c.wg, E * F * H) && tu_to_bf16_exact(bu, c.wu, E * F * H) &&
                  tu_to_bf16_exact(bd, c.wd, E * H * F) && tu_to_bf16_exact(bsg, c.sg, sdn_n) &&
                  tu_to_bf16_exact(bsu, c.su, sdn_n) && tu_to_bf16_exact(bsd, c.sdn, sdn_n));
        pg = bg, pu = bu, pd = bd, psg = bsg, psu = bsu, psd = bsd;
    }
    if (SD == 0) psg = psu = psd = NULL;
    mk_moe_ffn_args a = ffn_args(&c, wdt, pg, pu, pd, psg, psu, psd, y);
    mk_packed_weights *pk[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
    if (packed >= 0) {
        const mk_pack_mode mode = (mk_pack_mode)packed;
        TU_ASSERT_OK(mk_pack_weights(pg, wdt, E, F, H, mode, &pk[0]));
        TU_ASSERT_OK(mk_pack_weights(pu, wdt, E, F, H, mode, &pk[1]));
        TU_ASSERT_OK(mk_pack_weights(pd, wdt, E, H, F, mode, &pk[2]));
        a.packed_gate = pk[0], a.packed_up = pk[1], a.packed_down = pk[2];
        a.w_gate = a.w_up = a.w_down = NULL; /* a packed handle replaces the raw pointer */
        if (SD > 0) {
            TU_ASSERT_OK(mk_pack_weights(psg, wdt, 1, SD, H, mode, &pk[3]));
            TU_ASSERT_OK(mk_pack_weights(psu, wdt, 1, SD, H, mode, &pk[4]));
            TU_ASSERT_OK(mk_pack_weights(psd, wdt, 1, H, SD, mode, &pk[5]));
            a.packed_shared_gate = pk[3], a.packed_shared_up = pk[4], a.packed_shared_down = pk[5];
            a.shared_gate = a.shared_up = a.shared_down = NULL;
        }
    }
    TU_ASSERT_OK(mk_moe_ffn(&a));
    for (int i = 0; i < 6; i++) mk_packed_weights_free(pk[i]);
    double maxw = 0;
    for (int64_t t = 0; t < T; t++) {
        memcpy(got + t * H, y + t * ys, sizeof(float) * (size_t)H);
        for (int64_t h = 0; h < H; h++) maxw = fmax(maxw, fabs(want[t * H + h]));
        for (int64_t h = H; h < ys; h++)
            if (!tu_same_bytes(&y[t * ys + h], &(uint32_t){TU_SENTINEL_BITS}, 4)) {
                cr_expect(0, "y padding of row %lld written", (long long)t);
                break;
            }
    }
    double nmse = tu_nmse_d(want, got, T * H), mad = tu_max_abs_diff_d(want, got, T * H);
    if (wdt == MK_F32 || packed == MK_PACK_BF16_WIDEN) {
        /* F32 weights, or BF16 weights widened with exact activations: float rounding only */
        cr_expect(nmse <= 1e-10, "T %lld H %lld E %lld F %lld K %lld SD %lld %s packed %d: NMSE %.3g > 1e-10",
                  (long long)T, (long long)H, (long long)E, (long long)F, (long long)K, (long long)SD,
                  mk_dtype_name(wdt), packed, nmse);
        cr_expect(mad <= 1e-5 * maxw, "T %lld H %lld %s packed %d: max abs diff %.3g > 1e-5 * %.3g", (long long)T,
                  (long long)H, mk_dtype_name(wdt), packed, mad, maxw);
    } else {
        /* documented BF16 contract: activations (x, and h before the down projection) may be rounded to BF16 */
        double rms = 0;
        for (int64_t i = 0; i < T * H; i++) rms += want[i] * want[i];
        rms = sqrt(rms / (double)(T * H));
        cr_expect(nmse <= 5e-4, "T %lld H %lld E %lld F %lld K %lld SD %lld bf16: NMSE %.3g > 5e-4", (long long)T,
                  (long long)H, (long long)E, (long long)F, (long long)K, (long long)SD, nmse);
        cr_expect(mad <= 20 * sqrt(5e-4) * rms, "T %lld H %lld bf16: max abs diff %.3g > 20 sqrt(5e-4) rms = %.3g",
                  (long long)T, (long long)H, mad, 20 * sqrt(5e-4) * rms);
    }
    free(c.x), free(c.wts), free(c.ids), free(c.wg), free(c.wu), free(c.wd), free(c.sg), free(c.su), free(c.sdn);
    free(want), free(y), free(got), free(bg), free(bu), free(bd), free(bsg), free(bsu), free(bsd);
}

static void run_ffn_case(int64_t T, int64_t H, int64_t E, int64_t F, int64_t K, int64_t SD, int64_t xs, int64_t ys,
                         int minus_one_every, mk_dtype wdt, uint64_t seed) {
    run_ffn_case_p(T, H, E, F, K, SD, xs, ys, minus_one_every, wdt, -1, seed);
}

Test(moe_ffn, packed_weights) {
    /* the same cases through packed handles: F32, BF16 default (documented 5e-4), BF16 widened (exact activations) */
    run_ffn_case_p(37, 64, 8, 48, 2, 32, 70, 66, 7, MK_F32, MK_PACK_DEFAULT, 110);
    run_ffn_case_p(37, 64, 8, 48, 2, 32, 70, 66, 7, MK_BF16, MK_PACK_DEFAULT, 111);
    run_ffn_case_p(37, 64, 8, 48, 2, 32, 70, 66, 7, MK_BF16, MK_PACK_BF16_WIDEN, 112);
    run_ffn_case_p(5, 3, 4, 2, 2, 2, 3, 3, 3, MK_F32, MK_PACK_DEFAULT, 113); /* tiny: partial panels everywhere */
    run_ffn_case_p(9, 512, 8, 128, 4, 0, 512, 512, 0, MK_BF16, MK_PACK_BF16_WIDEN, 114);
}

Test(moe_ffn, tiny_with_shared_vs_double_loop) {
    /* hidden 3, expert_dim 2, 4 experts, top 2, shared expert of width 2 */
    run_ffn_case(5, 3, 4, 2, 2, 2, 3, 3, 0, MK_F32, 101);
    run_ffn_case(5, 3, 4, 2, 2, 0, 3, 3, 0, MK_F32, 102); /* no shared expert */
}

Test(moe_ffn, minus_one_ids_are_skipped) {
    run_ffn_case(6, 3, 4, 2, 2, 2, 3, 3, 3, MK_F32, 103);  /* every 3rd slot is -1 (NaN weight) */
    run_ffn_case(4, 8, 4, 4, 2, 0, 8, 8, 1, MK_F32, 104);  /* every slot -1, no shared: y = 0 */
}

Test(moe_ffn, all_slots_skipped_gives_zero) {
    const float x[3] = {1, 2, 3}, w[4 * 2 * 3] = {0}, nanw[2] = {NAN, NAN};
    const int32_t ids[2] = {-1, -1};
    float y[3];
    tu_fill_bits(y, 3, TU_SENTINEL_BITS);
    mk_moe_ffn_args a;
    memset(&a, 0, sizeof a);
    a.n_tokens = 1, a.hidden = 3, a.n_experts = 4, a.expert_dim = 2, a.top_k = 2;
    a.x = x, a.expert_ids = ids, a.expert_weights = nanw, a.w_dtype = MK_F32;
    a.w_gate = w, a.w_up = w, a.w_down = w, a.y = y;
    TU_EXPECT_OK(mk_moe_ffn(&a));
    for (int h = 0; h < 3; h++) cr_expect(y[h] == 0.0f, "y[%d] = %g, want 0 (y is overwritten)", h, (double)y[h]);
}

Test(moe_ffn, medium_strided_f32_and_bf16) {
    run_ffn_case(37, 64, 8, 48, 2, 32, 70, 66, 7, MK_F32, 105);
    run_ffn_case(37, 64, 8, 48, 2, 32, 70, 66, 7, MK_BF16, 106);
    run_ffn_case(9, 512, 8, 128, 4, 64, 512, 520, 0, MK_F32, 107);
    run_ffn_case(9, 512, 8, 128, 4, 64, 512, 512, 0, MK_BF16, 108);
    run_ffn_case(1, 33, 80, 17, 8, 0, 33, 33, 0, MK_F32, 109); /* decode, 80 experts, top 8 */
}

Test(moe_ffn, zero_tokens_writes_nothing) {
    const float x[3] = {1, 2, 3}, w[4 * 2 * 3] = {0}, wts[2] = {1, 1};
    const int32_t ids[2] = {0, 1};
    float y[3];
    tu_fill_bits(y, 3, TU_SENTINEL_BITS);
    mk_moe_ffn_args a;
    memset(&a, 0, sizeof a);
    a.n_tokens = 0, a.hidden = 3, a.n_experts = 4, a.expert_dim = 2, a.top_k = 2;
    a.x = x, a.expert_ids = ids, a.expert_weights = wts, a.w_dtype = MK_F32;
    a.w_gate = w, a.w_up = w, a.w_down = w, a.y = y;
    TU_EXPECT_OK(mk_moe_ffn(&a));
    for (int h = 0; h < 3; h++) cr_expect(tu_same_bytes(&y[h], &(uint32_t){TU_SENTINEL_BITS}, 4), "y[%d] written", h);
    /* with no tokens, x, y, ids and weights may be NULL */
    a.x = NULL, a.y = NULL, a.expert_ids = NULL, a.expert_weights = NULL;
    TU_EXPECT_OK(mk_moe_ffn(&a));
}

Test(moe_ffn, bad_arguments) {
    enum { T = 2, H = 3, E = 4, F = 2, K = 2, SD = 2 };
    const float x[T * H] = {1, 2, 3, 4, 5, 6}, w[E * F * H] = {0}, s[SD * H] = {0}, wts[T * K] = {1, 1, 1, 1};
    const int32_t ids[T * K] = {0, 1, 2, 3};
    float y[T * H], keep[T * H];
    tu_fill_const(y, T * H, 12345.0f);
    memcpy(keep, y, sizeof y);
    mk_moe_ffn_args good;
    memset(&good, 0, sizeof good);
    good.n_tokens = T, good.hidden = H, good.n_experts = E, good.expert_dim = F, good.top_k = K;
    good.x = x, good.expert_ids = ids, good.expert_weights = wts, good.w_dtype = MK_F32;
    good.w_gate = w, good.w_up = w, good.w_down = w, good.y = y;
    good.shared_dim = SD, good.shared_gate = s, good.shared_up = s, good.shared_down = s;
    mk_moe_ffn_args a;
    TU_EXPECT_OK(mk_moe_ffn(&good)); /* the baseline is valid */
    memcpy(y, keep, sizeof y);

    TU_EXPECT_FAIL(mk_moe_ffn(NULL), MK_EINVAL, "args");
    a = good, a.x = NULL;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "x");
    a = good, a.expert_ids = NULL;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "expert_ids");
    a = good, a.expert_weights = NULL;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "expert_weights");
    a = good, a.w_gate = NULL;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "w_gate");
    a = good, a.w_up = NULL;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "w_up");
    a = good, a.w_down = NULL;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "w_down");
    a = good, a.y = NULL;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "y");
    a = good, a.shared_gate = NULL;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "shared_gate");
    a = good, a.shared_up = NULL;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "shared_up");
    a = good, a.shared_down = NULL;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "shared_down");
    a = good, a.shared_dim = -1;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "shared_dim");
    a = good, a.hidden = 0;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "hidden");
    a = good, a.n_experts = 0;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "n_experts");
    a = good, a.expert_dim = 0;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "expert_dim");
    a = good, a.top_k = 0;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "top_k");
    a = good, a.top_k = E + 1;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "top_k");
    a = good, a.n_tokens = -1;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "n_tokens");
    a = good, a.n_tokens = INT64_MAX / 2, a.hidden = 4;
    TU_EXPECT_FAIL2(mk_moe_ffn(&a), MK_EINVAL, "n_tokens", "hidden");
    a = good, a.w_dtype = (mk_dtype)2;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "w_dtype");
    a = good, a.x_stride = -1;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "x_stride");
    a = good, a.y_stride = -3;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "y_stride");
    a = good, a.x_stride = H - 1;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "x_stride");
    a = good, a.y_stride = H - 1;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "y_stride");
    a = good, a.y = (float *)(void *)x + 1, a.x = x; /* y overlaps x */
    TU_EXPECT_FAIL2(mk_moe_ffn(&a), MK_EINVAL, "y", "x");
    const int32_t ids_big[T * K] = {0, 1, 2, 4}, ids_neg[T * K] = {0, -2, 2, 3};
    a = good, a.expert_ids = ids_big;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "expert_ids");
    a = good, a.expert_ids = ids_neg;
    TU_EXPECT_FAIL(mk_moe_ffn(&a), MK_EINVAL, "expert_ids");
    cr_expect(tu_same_bytes(y, keep, sizeof y), "a failed mk_moe_ffn wrote into y");

    /* shared_dim = 0 allows NULL shared pointers */
    a = good, a.shared_dim = 0, a.shared_gate = a.shared_up = a.shared_down = NULL;
    TU_EXPECT_OK(mk_moe_ffn(&a));
}

/* ================================================== swiglu ================================================== */

Test(swiglu, hand_case) {
    /* silu(0)*1 = 0, silu(1)*2 = 1.4621171572600098, silu(-1)*3 = -0.8068242641099853, silu(2)*4 = 7.0463766238230585 */
    const float g[4] = {0, 1, -1, 2}, u[4] = {1, 2, 3, 4};
    float o[4];
    TU_EXPECT_OK(mk_swiglu(g, 0, u, 0, o, 0, 1, 4));
    const double want[4] = {0.0, 1.4621171572600098, -0.8068242641099853, 7.0463766238230585};
    for (int i = 0; i < 4; i++)
        cr_expect(close_rel(o[i], want[i], 2e-6, 1e-7), "i %d: %.9g want %.9g", i, (double)o[i], want[i]);
}

Test(swiglu, extreme_gates_stay_finite) {
    /* silu(-1000) = -0 (exp overflow must not give NaN), silu(-100) ~ -3.7e-42, silu(100) = 100, silu(1000) = 1000 */
    const float g[6] = {-1000, -100, 100, 1000, -30, 30}, u[6] = {1, 1, 1, 1, 2, 2};
    float o[6];
    TU_EXPECT_OK(mk_swiglu(g, 0, u, 0, o, 0, 1, 6));
    for (int i = 0; i < 6; i++) {
        double want = silu_d(g[i]) * u[i];
        cr_expect(isfinite(o[i]) && close_rel(o[i], want, 2e-6, 1e-7), "gate %g: got %.9g want %.9g", (double)g[i],
                  (double)o[i], want);
    }
}

static void swiglu_random(int64_t R, int64_t D, int64_t gs, int64_t us, int64_t os, uint64_t seed) {
    tu_rng r;
    tu_rng_seed(&r, seed);
    int64_t gse = gs ? gs : D, use = us ? us : D, ose = os ? os : D;
    float *g = malloc(sizeof(float) * (size_t)(R * gse)), *u = malloc(sizeof(float) * (size_t)(R * use));
    float *o = malloc(sizeof(float) * (size_t)(R * ose));
    tu_fill_uniform(g, R * gse, &r, -8.0f, 8.0f);
    tu_fill_uniform(u, R * use, &r, -2.0f, 2.0f);
    tu_fill_bits(o, R * ose, TU_SENTINEL_BITS);
    TU_ASSERT_OK(mk_swiglu(g, gs, u, us, o, os, R, D));
    int bad = 0;
    for (int64_t rr = 0; rr < R; rr++) {
        for (int64_t i = 0; i < D; i++) {
            double want = silu_d(g[rr * gse + i]) * u[rr * use + i];
            if (!close_rel(o[rr * ose + i], want, 2e-6, 1e-7) && bad++ < 5)
                cr_expect(0, "row %lld i %lld: got %.9g want %.9g", (long long)rr, (long long)i,
                          (double)o[rr * ose + i], want);
        }
        for (int64_t i = D; i < ose; i++)
            if (!tu_same_bytes(&o[rr * ose + i], &(uint32_t){TU_SENTINEL_BITS}, 4)) {
                cr_expect(0, "out padding of row %lld written", (long long)rr);
                break;
            }
    }
    cr_expect_eq(bad, 0, "%d elements out of tolerance", bad);
    free(g), free(u), free(o);
}

Test(swiglu, random_strided) {
    swiglu_random(3, 1000, 0, 0, 0, 201);
    swiglu_random(4, 1280, 2560, 1290, 1300, 202); /* gate/up halves of a fused [gate | up] row */
    swiglu_random(5, 7, 9, 8, 11, 203);
    swiglu_random(1, 1, 0, 0, 0, 204);
}

Test(swiglu, in_place_on_gate_and_on_up) {
    enum { R = 2, D = 67 };
    tu_rng r;
    tu_rng_seed(&r, 205);
    float g[R * D], u[R * D], g0[R * D], u0[R * D];
    tu_fill_uniform(g, R * D, &r, -6.0f, 6.0f);
    tu_fill_uniform(u, R * D, &r, -2.0f, 2.0f);
    memcpy(g0, g, sizeof g), memcpy(u0, u, sizeof u);
    TU_ASSERT_OK(mk_swiglu(g, 0, u, 0, g, 0, R, D)); /* out == gate */
    for (int i = 0; i < R * D; i++) {
        double want = silu_d(g0[i]) * u0[i];
        cr_expect(close_rel(g[i], want, 2e-6, 1e-7), "out == gate, i %d: got %.9g want %.9g", i, (double)g[i], want);
    }
    memcpy(g, g0, sizeof g);
    TU_ASSERT_OK(mk_swiglu(g, 0, u, 0, u, 0, R, D)); /* out == up */
    for (int i = 0; i < R * D; i++) {
        double want = silu_d(g0[i]) * u0[i];
        cr_expect(close_rel(u[i], want, 2e-6, 1e-7), "out == up, i %d: got %.9g want %.9g", i, (double)u[i], want);
    }
}

Test(swiglu, bad_arguments_and_zero_rows) {
    float g[8] = {1, 2, 3, 4, 5, 6, 7, 8}, u[8] = {1, 1, 1, 1, 1, 1, 1, 1}, o[8], keep[8];
    tu_fill_bits(o, 8, TU_SENTINEL_BITS);
    memcpy(keep, o, sizeof o);
    TU_EXPECT_FAIL(mk_swiglu(NULL, 0, u, 0, o, 0, 2, 4), MK_EINVAL, "gate");
    TU_EXPECT_FAIL(mk_swiglu(g, 0, NULL, 0, o, 0, 2, 4), MK_EINVAL, "up");
    TU_EXPECT_FAIL(mk_swiglu(g, 0, u, 0, NULL, 0, 2, 4), MK_EINVAL, "out");
    TU_EXPECT_FAIL(mk_swiglu(g, 0, u, 0, o, 0, 2, 0), MK_EINVAL, "dim");
    TU_EXPECT_FAIL(mk_swiglu(g, 0, u, 0, o, 0, -1, 4), MK_EINVAL, "n_rows");
    TU_EXPECT_FAIL(mk_swiglu(g, -4, u, 0, o, 0, 2, 4), MK_EINVAL, "gate_stride");
    TU_EXPECT_FAIL(mk_swiglu(g, 0, u, -4, o, 0, 2, 4), MK_EINVAL, "up_stride");
    TU_EXPECT_FAIL(mk_swiglu(g, 0, u, 0, o, -4, 2, 4), MK_EINVAL, "out_stride");
    TU_EXPECT_FAIL(mk_swiglu(g, 0, u, 0, o, 0, INT64_MAX / 2, 4), MK_EINVAL, "n_rows");
    TU_EXPECT_FAIL(mk_swiglu(g, 0, u, 0, o, 3, 2, 4), MK_EINVAL, "out_stride");
    TU_EXPECT_FAIL(mk_swiglu(g, 2, u, 0, o, 0, 2, 4), MK_EINVAL, "gate_stride");
    cr_expect(tu_same_bytes(o, keep, sizeof o), "a failed mk_swiglu wrote into out");
    TU_EXPECT_OK(mk_swiglu(g, 0, u, 0, o, 0, 0, 4));
    cr_expect(tu_same_bytes(o, keep, sizeof o), "n_rows = 0 wrote into out");
    TU_EXPECT_OK(mk_swiglu(NULL, 0, NULL, 0, NULL, 0, 0, 4)); /* zero rows: pointers may be NULL */
    /* out may be gate or up (same pointer and stride); any other overlap is MK_EINVAL */
    float gg[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, gkeep[12];
    memcpy(gkeep, gg, sizeof gg);
    TU_EXPECT_FAIL2(mk_swiglu(gg, 0, u, 0, gg + 1, 0, 2, 4), MK_EINVAL, "out", "gate");
    TU_EXPECT_FAIL2(mk_swiglu(g, 0, gg, 4, gg, 6, 2, 4), MK_EINVAL, "out", "up");
    cr_expect(tu_same_bytes(gg, gkeep, sizeof gg), "a failed overlapping mk_swiglu wrote");
    /* gate and up may overlap each other (both only read) */
    TU_EXPECT_OK(mk_swiglu(gg, 0, gg + 1, 0, o, 0, 2, 4));
}
