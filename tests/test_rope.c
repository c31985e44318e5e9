/*
 * test_rope.c: mk_rope_cache_* and mk_rope (partial RoPE, interleaved and neox).
 *
 * Expected values come from tu_rope_head_f64 (test_util.c): the rotation written out in double with the angle
 * pos * theta^(-2i/rotary_dim) and cos/sin evaluated in double, no table; or from hand-computed constants.
 * Tolerances:
 *   - position 0: exact (cos = 1, sin = 0 give the input back)
 *   - untouched dims: bit for bit
 *   - vs the double formula (inputs uniform in [-1, 1]): NMSE over the rotated dims <= 1e-10 AND max abs error
 *     <= 2e-6 (a float cos/sin table from a double angle is within ~3e-7; an angle computed in float at position
 *     100000 is off by ~6e-3 rad and fails both)
 *   - norm of each rotated pair: |(a'^2 + b'^2) - (a^2 + b^2)| <= 2e-6 * (a^2 + b^2) + 1e-12
 *   - hand constants: 1e-6 absolute
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moekit.h"
#include "test_util.h"

#define QKV_ROW 13568
#define K_OFF 12288
#define HD 192
static const double kTheta = 25.6e6;

static mk_rope_cache *make_cache_t(int64_t rot, int64_t off, mk_rope_style st, double theta, int64_t maxpos) {
    mk_rope_config cfg = {.rotary_dim = rot, .rotary_offset = off, .style = st, .theta = theta,
                          .max_positions = maxpos};
    mk_rope_cache *c = NULL;
    mk_status s = mk_rope_cache_create(&cfg, &c);
    cr_assert_eq(s, MK_OK, "mk_rope_cache_create: %s", mk_last_error());
    cr_assert_not_null(c);
    return c;
}

/* ============================================== cache creation ============================================== */

Test(rope, cache_config_roundtrip) {
    mk_rope_cache *c = make_cache_t(64, 8, MK_ROPE_NEOX, kTheta, 1000);
    mk_rope_config got;
    memset(&got, 0xab, sizeof got);
    TU_EXPECT_OK(mk_rope_cache_config(c, &got));
    cr_expect_eq(got.rotary_dim, 64);
    cr_expect_eq(got.rotary_offset, 8);
    cr_expect_eq(got.style, MK_ROPE_NEOX);
    cr_expect(got.theta == kTheta, "theta %.17g", got.theta);
    cr_expect_eq(got.max_positions, 1000);
    TU_EXPECT_FAIL(mk_rope_cache_config(NULL, &got), MK_EINVAL, "cache");
    TU_EXPECT_FAIL(mk_rope_cache_config(c, NULL), MK_EINVAL, "config");
    mk_rope_cache_destroy(c);
}

Test(rope, cache_create_bad_arguments) {
    const mk_rope_config good = {.rotary_dim = 64, .rotary_offset = 0, .style = MK_ROPE_INTERLEAVED,
                                 .theta = kTheta, .max_positions = 128};
    static int marker;
    mk_rope_cache *const sentinel = (mk_rope_cache *)(void *)&marker;
    mk_rope_cache *c = sentinel;
    mk_rope_config b;
    TU_EXPECT_FAIL(mk_rope_cache_create(NULL, &c), MK_EINVAL, "config");
    TU_EXPECT_FAIL(mk_rope_cache_create(&good, NULL), MK_EINVAL, "cache");
    b = good, b.rotary_dim = 63;
    TU_EXPECT_FAIL(mk_rope_cache_create(&b, &c), MK_EINVAL, "rotary_dim");
    b = good, b.rotary_dim = 0;
    TU_EXPECT_FAIL(mk_rope_cache_create(&b, &c), MK_EINVAL, "rotary_dim");
    b = good, b.rotary_dim = -2;
    TU_EXPECT_FAIL(mk_rope_cache_create(&b, &c), MK_EINVAL, "rotary_dim");
    b = good, b.rotary_offset = -1;
    TU_EXPECT_FAIL(mk_rope_cache_create(&b, &c), MK_EINVAL, "rotary_offset");
    b = good, b.style = (mk_rope_style)7;
    TU_EXPECT_FAIL(mk_rope_cache_create(&b, &c), MK_EINVAL, "style");
    b = good, b.theta = 1.0;
    TU_EXPECT_FAIL(mk_rope_cache_create(&b, &c), MK_EINVAL, "theta");
    b = good, b.theta = NAN;
    TU_EXPECT_FAIL(mk_rope_cache_create(&b, &c), MK_EINVAL, "theta");
    b = good, b.max_positions = 0;
    TU_EXPECT_FAIL(mk_rope_cache_create(&b, &c), MK_EINVAL, "max_positions");
    b = good, b.max_positions = -5;
    TU_EXPECT_FAIL(mk_rope_cache_create(&b, &c), MK_EINVAL, "max_positions");
    cr_expect(c == sentinel, "a failed mk_rope_cache_create wrote *cache");
}

/* ================================================ semantics ================================================ */

static float *rand_buf(int64_t n, uint64_t seed) {
    tu_rng r;
    tu_rng_seed(&r, seed);
    float *p = malloc(sizeof(float) * (size_t)n);
    tu_fill_uniform(p, n, &r, -1.0f, 1.0f);
    return p;
}

Test(rope, position_zero_is_identity) {
    for (int st = 0; st < 2; st++) {
        enum { T = 4, H = 3 };
        mk_rope_cache *c = make_cache_t(64, 0, (mk_rope_style)st, kTheta, 8);
        float *q = rand_buf(T * H * HD, 100 + st), *q0 = malloc(sizeof(float) * T * H * HD);
        memcpy(q0, q, sizeof(float) * T * H * HD);
        const int32_t pos[T] = {0, 0, 0, 0};
        mk_heads qv = tu_heads(q, MK_F32, T, H, HD, 0, 0);
        TU_ASSERT_OK(mk_rope(c, pos, &qv, NULL));
        for (int j = 0; j < T * H * HD; j++)
            if (q[j] != q0[j]) {
                cr_expect(0, "style %d: element %d changed %.9g -> %.9g at position 0", st, j, (double)q0[j],
                          (double)q[j]);
                break;
            }
        mk_rope_cache_destroy(c);
        free(q), free(q0);
    }
}

/* Checks q (view) after rotation against the double formula applied to q0 (same layout). Returns 1 if OK. */
static void check_against_formula(const char *what, const mk_heads *v, const float *before_base, const int32_t *pos,
                                  int64_t rot, int64_t off, mk_rope_style st, double theta) {
    int64_t D = v->head_dim;
    double *h = malloc(sizeof(double) * (size_t)D);
    double num = 0, den = 0, maxabs = 0;
    const float *after_base = v->data;
    for (int64_t t = 0; t < v->n_tokens; t++)
        for (int64_t hh = 0; hh < v->n_heads; hh++) {
            int64_t base = tu_heads_off(v, t, hh, 0);
            for (int64_t i = 0; i < D; i++) h[i] = before_base[base + i];
            tu_rope_head_f64(h, off, rot, st, theta, (double)pos[t]);
            for (int64_t i = 0; i < D; i++) {
                float got = after_base[base + i];
                if (i < off || i >= off + rot) {
                    if (!tu_same_bytes(&got, &before_base[base + i], 4)) {
                        cr_expect(0, "%s: t %lld h %lld dim %lld outside the rotary slice changed", what,
                                  (long long)t, (long long)hh, (long long)i);
                        maxabs = INFINITY;
                    }
                    continue;
                }
                double d = fabs((double)got - h[i]);
                if (!(d <= maxabs)) maxabs = d; /* NaN-propagating max */
                num += d * d;
                den += h[i] * h[i];
            }
        }
    double nmse = den > 0 ? num / den : num;
    cr_expect(nmse <= 1e-10, "%s: NMSE over rotated dims %.3g > 1e-10", what, nmse);
    cr_expect(maxabs <= 2e-6, "%s: max abs error %.3g > 2e-6", what, maxabs);
    free(h);
}

static void high_positions_case(mk_rope_style st) {
    enum { T = 7, H = 4 };
    const int32_t pos[T] = {1, 17, 2048, 4095, 65537, 100000, 131071};
    mk_rope_cache *c = make_cache_t(64, 0, st, kTheta, 131072);
    float *k = rand_buf(T * H * HD, 200 + st), *k0 = malloc(sizeof(float) * T * H * HD);
    memcpy(k0, k, sizeof(float) * T * H * HD);
    mk_heads kv = tu_heads(k, MK_F32, T, H, HD, 0, 0);
    TU_ASSERT_OK(mk_rope(c, pos, NULL, &kv));
    check_against_formula(st == MK_ROPE_NEOX ? "neox" : "interleaved", &kv, k0, pos, 64, 0, st, kTheta);
    /* each position separately too, so that one bad position cannot hide in the NMSE of the others */
    for (int t = 0; t < T; t++) {
        mk_heads one = tu_heads(k0 + t * H * HD, MK_F32, 1, H, HD, 0, 0);
        float *x = malloc(sizeof(float) * H * HD);
        memcpy(x, one.data, sizeof(float) * H * HD);
        mk_heads xv = tu_heads(x, MK_F32, 1, H, HD, 0, 0);
        TU_ASSERT_OK(mk_rope(c, &pos[t], NULL, &xv));
        char what[64];
        snprintf(what, sizeof what, "%s pos %d", st == MK_ROPE_NEOX ? "neox" : "interleaved", pos[t]);
        check_against_formula(what, &xv, one.data, &pos[t], 64, 0, st, kTheta);
        free(x);
    }
    mk_rope_cache_destroy(c);
    free(k), free(k0);
}

Test(rope, high_positions_interleaved) { high_positions_case(MK_ROPE_INTERLEAVED); }
Test(rope, high_positions_neox) { high_positions_case(MK_ROPE_NEOX); }

Test(rope, rotation_preserves_pair_norms) {
    for (int st = 0; st < 2; st++) {
        enum { T = 6, H = 2 };
        const int32_t pos[T] = {3, 99, 2047, 2048, 50000, 131071};
        mk_rope_cache *c = make_cache_t(64, 0, (mk_rope_style)st, kTheta, 131072);
        float *q = rand_buf(T * H * HD, 300 + st), *q0 = malloc(sizeof(float) * T * H * HD);
        memcpy(q0, q, sizeof(float) * T * H * HD);
        mk_heads qv = tu_heads(q, MK_F32, T, H, HD, 0, 0);
        TU_ASSERT_OK(mk_rope(c, pos, &qv, NULL));
        int bad = 0;
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < 32; i++) {
                    int ia = st == MK_ROPE_NEOX ? i : 2 * i, ib = st == MK_ROPE_NEOX ? i + 32 : 2 * i + 1;
                    const float *a0 = q0 + (t * H + h) * HD, *a1 = q + (t * H + h) * HD;
                    double n0 = (double)a0[ia] * a0[ia] + (double)a0[ib] * a0[ib];
                    double n1 = (double)a1[ia] * a1[ia] + (double)a1[ib] * a1[ib];
                    if (!(fabs(n1 - n0) <= 2e-6 * n0 + 1e-12) && bad++ < 5)
                        cr_expect(0, "style %d t %d h %d pair %d: |pair|^2 %.9g -> %.9g", st, t, h, i, n0, n1);
                }
        cr_expect_eq(bad, 0, "style %d: %d pairs changed norm", st, bad);
        mk_rope_cache_destroy(c);
        free(q), free(q0);
    }
}

Test(rope, dims_outside_slice_untouched) {
    /* rotary_offset 16, rotary_dim 64: dims [0,16) and [80,192) are bit-for-bit untouched; include NaN and -0
     * there so that a "multiply by cos=1" pass over them would be caught too. */
    for (int st = 0; st < 2; st++) {
        enum { T = 3, H = 2 };
        const int32_t pos[T] = {1, 4000, 123456};
        mk_rope_cache *c = make_cache_t(64, 16, (mk_rope_style)st, kTheta, 131072);
        float *q = rand_buf(T * H * HD, 400 + st), *q0 = malloc(sizeof(float) * T * H * HD);
        tu_fill_bits(q + 3, 1, 0x7fc01234u);
        q[100] = -0.0f;
        tu_fill_bits(q + HD + 190, 1, 0xffc00001u);
        memcpy(q0, q, sizeof(float) * T * H * HD);
        mk_heads qv = tu_heads(q, MK_F32, T, H, HD, 0, 0);
        TU_ASSERT_OK(mk_rope(c, pos, &qv, NULL));
        check_against_formula(st ? "neox offset 16" : "interleaved offset 16", &qv, q0, pos, 64, 16,
                              (mk_rope_style)st, kTheta);
        mk_rope_cache_destroy(c);
        free(q), free(q0);
    }
}

Test(rope, interleaved_and_neox_differ_hand_case) {
    /* rotary_dim 4, theta 1e4, position 1: pair 0 has frequency 1, pair 1 frequency 1e4^(-1/2) = 0.01.
     * x = (1,0,0,0): interleaved pairs (0,1) -> (cos 1, sin 1, 0, 0); neox pairs (0,2) -> (cos 1, 0, sin 1, 0).
     * x = (0,1,0,0): interleaved pair (0,1) at freq 1 -> (-sin 1, cos 1, 0, 0); neox pair (1,3) at freq 0.01
     *                -> (0, cos 0.01, 0, sin 0.01). */
    const double c1 = 0.54030230586813977, s1 = 0.84147098480789650;
    const double c01 = 0.99995000041666528, s01 = 0.0099998333341666645;
    const double want[2][2][4] = {
        /* interleaved */ {{c1, s1, 0, 0}, {-s1, c1, 0, 0}},
        /* neox        */ {{c1, 0, s1, 0}, {0, c01, 0, s01}},
    };
    for (int st = 0; st < 2; st++) {
        mk_rope_cache *c = make_cache_t(4, 0, (mk_rope_style)st, 1e4, 2);
        float x[2][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}};
        const int32_t pos[2] = {1, 1};
        mk_heads v = tu_heads(x, MK_F32, 2, 1, 4, 0, 0);
        TU_ASSERT_OK(mk_rope(c, pos, &v, NULL));
        for (int r = 0; r < 2; r++)
            for (int i = 0; i < 4; i++)
                cr_expect(fabs(x[r][i] - want[st][r][i]) <= 1e-6, "%s input %d dim %d: got %.9g want %.9g",
                          st ? "neox" : "interleaved", r, i, (double)x[r][i], want[st][r][i]);
        mk_rope_cache_destroy(c);
    }
}

Test(rope, q_only_k_only_and_both) {
    enum { T = 3, HQ = 8, HKV = 2 };
    const int32_t pos[T] = {5, 1000, 70000};
    mk_rope_cache *c = make_cache_t(64, 0, MK_ROPE_INTERLEAVED, kTheta, 131072);
    float *q = rand_buf(T * HQ * HD, 500), *k = rand_buf(T * HKV * HD, 501);
    float *q0 = malloc(sizeof(float) * T * HQ * HD), *k0 = malloc(sizeof(float) * T * HKV * HD);
    memcpy(q0, q, sizeof(float) * T * HQ * HD);
    memcpy(k0, k, sizeof(float) * T * HKV * HD);
    mk_heads qv = tu_heads(q, MK_F32, T, HQ, HD, 0, 0), kv = tu_heads(k, MK_F32, T, HKV, HD, 0, 0);

    /* q only: k stays as it is */
    TU_ASSERT_OK(mk_rope(c, pos, &qv, NULL));
    check_against_formula("q only", &qv, q0, pos, 64, 0, MK_ROPE_INTERLEAVED, kTheta);
    cr_expect(tu_same_bytes(k, k0, sizeof(float) * T * HKV * HD), "k changed in a q-only call");

    /* k only */
    memcpy(q, q0, sizeof(float) * T * HQ * HD);
    TU_ASSERT_OK(mk_rope(c, pos, NULL, &kv));
    check_against_formula("k only", &kv, k0, pos, 64, 0, MK_ROPE_INTERLEAVED, kTheta);
    cr_expect(tu_same_bytes(q, q0, sizeof(float) * T * HQ * HD), "q changed in a k-only call");

    /* both */
    memcpy(k, k0, sizeof(float) * T * HKV * HD);
    TU_ASSERT_OK(mk_rope(c, pos, &qv, &kv));
    check_against_formula("both: q", &qv, q0, pos, 64, 0, MK_ROPE_INTERLEAVED, kTheta);
    check_against_formula("both: k", &kv, k0, pos, 64, 0, MK_ROPE_INTERLEAVED, kTheta);
    mk_rope_cache_destroy(c);
    free(q), free(k), free(q0), free(k0);
}

Test(rope, strided_views_in_fused_qkv_row) {
    /* q = 64 heads at offset 0, k = 4 heads at offset 12288, both with token stride 13568; V untouched. */
    enum { T = 3 };
    const int32_t pos[T] = {2048, 7, 131071};
    mk_rope_cache *c = make_cache_t(64, 0, MK_ROPE_INTERLEAVED, kTheta, 131072);
    float *buf = rand_buf(T * QKV_ROW, 600), *b0 = malloc(sizeof(float) * T * QKV_ROW);
    memcpy(b0, buf, sizeof(float) * T * QKV_ROW);
    mk_heads qv = tu_heads(buf, MK_F32, T, 64, HD, QKV_ROW, 0);
    mk_heads kv = tu_heads(buf + K_OFF, MK_F32, T, 4, HD, QKV_ROW, HD);
    TU_ASSERT_OK(mk_rope(c, pos, &qv, &kv));
    check_against_formula("fused q", &qv, b0, pos, 64, 0, MK_ROPE_INTERLEAVED, kTheta);
    check_against_formula("fused k", &kv, b0 + K_OFF, pos, 64, 0, MK_ROPE_INTERLEAVED, kTheta);
    for (int t = 0; t < T; t++)
        cr_expect(tu_same_bytes(buf + t * QKV_ROW + K_OFF + 4 * HD, b0 + t * QKV_ROW + K_OFF + 4 * HD,
                                sizeof(float) * 512),
                  "V of token %d changed", t);
    mk_rope_cache_destroy(c);
    free(buf), free(b0);
}

Test(rope, head_stride_with_gaps) {
    enum { T = 2, H = 3, HS = 200, TS = 3 * 200 + 24 };
    const int32_t pos[T] = {300, 9000};
    mk_rope_cache *c = make_cache_t(64, 0, MK_ROPE_NEOX, kTheta, 10000);
    float *buf = rand_buf(T * TS, 700), *b0 = malloc(sizeof(float) * T * TS);
    memcpy(b0, buf, sizeof(float) * T * TS);
    mk_heads v = tu_heads(buf, MK_F32, T, H, HD, TS, HS);
    TU_ASSERT_OK(mk_rope(c, pos, &v, NULL));
    check_against_formula("gaps", &v, b0, pos, 64, 0, MK_ROPE_NEOX, kTheta);
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < H; h++)
            cr_expect(tu_same_bytes(buf + t * TS + h * HS + HD, b0 + t * TS + h * HS + HD, sizeof(float) * (HS - HD)),
                      "gap after head %d of token %d written", h, t);
        cr_expect(tu_same_bytes(buf + t * TS + 3 * HS, b0 + t * TS + 3 * HS, sizeof(float) * (TS - 3 * HS)),
                  "token padding %d written", t);
    }
    mk_rope_cache_destroy(c);
    free(buf), free(b0);
}

/* ================================================ bad input ================================================ */

Test(rope, bad_arguments) {
    enum { T = 2, HQ = 4, HKV = 2 };
    mk_rope_cache *c = make_cache_t(64, 0, MK_ROPE_INTERLEAVED, kTheta, 16);
    mk_rope_cache *wide = make_cache_t(64, 160, MK_ROPE_INTERLEAVED, kTheta, 16); /* 160 + 64 > 192 */
    float *q = rand_buf(T * HQ * HD, 800), *k = rand_buf(T * HKV * HD, 801);
    float *q0 = malloc(sizeof(float) * T * HQ * HD), *k0 = malloc(sizeof(float) * T * HKV * HD);
    memcpy(q0, q, sizeof(float) * T * HQ * HD);
    memcpy(k0, k, sizeof(float) * T * HKV * HD);
    const int32_t pos[T] = {1, 2}, past_end[T] = {1, 16}, negative[T] = {1, -1};
    mk_heads qv = tu_heads(q, MK_F32, T, HQ, HD, 0, 0), kv = tu_heads(k, MK_F32, T, HKV, HD, 0, 0), b;

    TU_EXPECT_FAIL(mk_rope(NULL, pos, &qv, &kv), MK_EINVAL, "cache");
    TU_EXPECT_FAIL(mk_rope(c, NULL, &qv, &kv), MK_EINVAL, "positions");
    TU_EXPECT_FAIL2(mk_rope(c, pos, NULL, NULL), MK_EINVAL, "q", "k");
    /* the bad position is on the last token: nothing may have been rotated before it is found */
    TU_EXPECT_FAIL(mk_rope(c, past_end, &qv, &kv), MK_EINVAL, "positions");
    TU_EXPECT_FAIL(mk_rope(c, negative, &qv, &kv), MK_EINVAL, "positions");
    TU_EXPECT_FAIL2(mk_rope(wide, pos, &qv, &kv), MK_EINVAL, "rotary_offset", "rotary_dim");
    b = qv, b.head_dim = 32; /* smaller than rotary_dim 64 */
    TU_EXPECT_FAIL2(mk_rope(c, pos, &b, NULL), MK_EINVAL, "rotary_dim", "head_dim");
    b = kv, b.n_tokens = T - 1; /* q and k disagree on n_tokens */
    TU_EXPECT_FAIL2(mk_rope(c, pos, &qv, &b), MK_EINVAL, "n_tokens", "k");
    b = qv, b.dtype = MK_BF16; /* views must be F32 */
    TU_EXPECT_FAIL(mk_rope(c, pos, &b, &kv), MK_EINVAL, "q");
    b = kv, b.dtype = MK_BF16;
    TU_EXPECT_FAIL(mk_rope(c, pos, &qv, &b), MK_EINVAL, "k");
    b = qv, b.data = NULL;
    TU_EXPECT_FAIL(mk_rope(c, pos, &b, &kv), MK_EINVAL, "q");
    b = kv, b.data = NULL; /* q valid, k invalid: q must not be rotated either */
    TU_EXPECT_FAIL(mk_rope(c, pos, &qv, &b), MK_EINVAL, "k");
    b = qv, b.n_heads = 0;
    TU_EXPECT_FAIL(mk_rope(c, pos, &b, &kv), MK_EINVAL, "n_heads");
    b = kv, b.head_stride = -HD;
    TU_EXPECT_FAIL(mk_rope(c, pos, &qv, &b), MK_EINVAL, "head_stride");
    b = qv, b.token_stride = -1;
    TU_EXPECT_FAIL(mk_rope(c, pos, &b, &kv), MK_EINVAL, "token_stride");
    b = qv, b.n_tokens = -1;
    TU_EXPECT_FAIL(mk_rope(c, pos, &b, NULL), MK_EINVAL, "n_tokens");
    b = qv, b.head_stride = HD - 1;
    TU_EXPECT_FAIL(mk_rope(c, pos, &b, NULL), MK_EINVAL, "head_stride");
    b = qv, b.token_stride = HQ * HD - 1;
    TU_EXPECT_FAIL(mk_rope(c, pos, &b, NULL), MK_EINVAL, "token_stride");
    TU_EXPECT_FAIL2(mk_rope(c, pos, &qv, &qv), MK_EINVAL, "q", "k"); /* the same view would be rotated twice */
    b = qv, b.n_tokens = INT64_MAX / 2, b.n_heads = 1, b.head_dim = 64;
    TU_EXPECT_FAIL(mk_rope(c, pos, &b, NULL), MK_EINVAL, "n_tokens");
    cr_expect(tu_same_bytes(q, q0, sizeof(float) * T * HQ * HD), "a failed mk_rope modified q");
    cr_expect(tu_same_bytes(k, k0, sizeof(float) * T * HKV * HD), "a failed mk_rope modified k");

    /* zero tokens: OK, nothing written */
    mk_heads q00 = qv, k00 = kv;
    q00.n_tokens = 0, k00.n_tokens = 0;
    TU_EXPECT_OK(mk_rope(c, pos, &q00, &k00));
    cr_expect(tu_same_bytes(q, q0, sizeof(float) * T * HQ * HD), "n_tokens = 0 modified q");
    cr_expect(tu_same_bytes(k, k0, sizeof(float) * T * HKV * HD), "n_tokens = 0 modified k");
    TU_EXPECT_OK(mk_rope(c, NULL, &q00, &k00)); /* no tokens: positions may be NULL */
    mk_rope_cache_destroy(c);
    mk_rope_cache_destroy(wide);
    mk_rope_cache_destroy(NULL); /* documented as fine */
    free(q), free(k), free(q0), free(k0);
}
