/*
 * test_attention.c: mk_sink_attention.
 *
 * Expected values: hand cases (one key gives its value, equal logits split the mass evenly, ...) and a naive
 * two-pass softmax attention written here in double (pass 1: every visible logit and the max; pass 2: exp,
 * denominator, weighted values), with the causal offset S - T, the GQA mapping h / (Hq / Hk), the window, sinks
 * and sink_logit handled explicitly.
 * Tolerances: vs the naive loop NMSE <= 1e-10 and max abs error <= 1e-5 (values in [-1, 1], so outputs are in
 * [-1, 1]); hand cases 1e-6 relative; a single visible key: exact (threshold 0). BF16 caches/sinks: the
 * documented contract (docs/api.md: a kernel may round q or the probabilities to BF16), NMSE <= 5e-4 and
 * max |err| <= 20 sqrt(5e-4) rms, except where exactness survives that rounding (one key: exact).
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moekit.h"
#include "test_util.h"

/* ------------------------------------------------ the oracle ------------------------------------------------ */
static void attn_naive(const mk_attn_args *a, double *out /* [T, Hq, Dv] */) {
    int64_t T = a->q.n_tokens, Hq = a->q.n_heads, Dk = a->q.head_dim;
    int64_t S = a->k_cache.n_tokens, Hk = a->k_cache.n_heads, Dv = a->v_cache.head_dim, Ns = a->sink_k.n_tokens;
    int64_t group = Hq / Hk;
    double *lg = malloc(sizeof(double) * (size_t)(Ns + S + 1));
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < Hq; h++) {
            int64_t g = h / group, pos = S - T + t;
            int64_t lo = a->window > 0 ? pos - a->window + 1 : 0;
            if (lo < 0) lo = 0;
            /* pass 1: logits and their max */
            double mx = -INFINITY;
            for (int64_t s = 0; s < Ns; s++) {
                double d = 0;
                for (int64_t i = 0; i < Dk; i++) d += tu_heads_get(&a->q, t, h, i) * tu_heads_get(&a->sink_k, s, g, i);
                lg[s] = (double)a->scale * d;
                mx = fmax(mx, lg[s]);
            }
            for (int64_t j = lo; j <= pos; j++) {
                double d = 0;
                for (int64_t i = 0; i < Dk; i++) d += tu_heads_get(&a->q, t, h, i) * tu_heads_get(&a->k_cache, j, g, i);
                lg[Ns + j] = (double)a->scale * d;
                mx = fmax(mx, lg[Ns + j]);
            }
            if (a->sink_logit) mx = fmax(mx, (double)a->sink_logit[h]);
            /* pass 2: weights and values */
            double den = a->sink_logit ? exp((double)a->sink_logit[h] - mx) : 0.0;
            double *o = out + (t * Hq + h) * Dv;
            for (int64_t i = 0; i < Dv; i++) o[i] = 0;
            for (int64_t s = 0; s < Ns; s++) {
                double p = exp(lg[s] - mx);
                den += p;
                if (a->sink_v.data)
                    for (int64_t i = 0; i < Dv; i++) o[i] += p * tu_heads_get(&a->sink_v, s, g, i);
            }
            for (int64_t j = lo; j <= pos; j++) {
                double p = exp(lg[Ns + j] - mx);
                den += p;
                for (int64_t i = 0; i < Dv; i++) o[i] += p * tu_heads_get(&a->v_cache, j, g, i);
            }
            for (int64_t i = 0; i < Dv; i++) o[i] /= den;
        }
    free(lg);
}

/* ------------------------------------------------ fixtures ------------------------------------------------ */
typedef struct {
    int64_t T, S, Ns, Hq, Hk, Dk, Dv;
    float *q, *k, *v, *sk, *sv, *out;
    float sink_logit[64];
} attn_bufs;

static void bufs_alloc(attn_bufs *b, int64_t T, int64_t S, int64_t Ns, int64_t Hq, int64_t Hk, int64_t Dk,
                       int64_t Dv, uint64_t seed) {
    tu_rng r;
    tu_rng_seed(&r, seed);
    *b = (attn_bufs){.T = T, .S = S, .Ns = Ns, .Hq = Hq, .Hk = Hk, .Dk = Dk, .Dv = Dv};
    b->q = malloc(sizeof(float) * (size_t)(T * Hq * Dk + 1));
    b->k = malloc(sizeof(float) * (size_t)(S * Hk * Dk + 1));
    b->v = malloc(sizeof(float) * (size_t)(S * Hk * Dv + 1));
    b->sk = malloc(sizeof(float) * (size_t)(Ns * Hk * Dk + 1));
    b->sv = malloc(sizeof(float) * (size_t)(Ns * Hk * Dv + 1));
    b->out = malloc(sizeof(float) * (size_t)(T * Hq * Dv + 1));
    tu_fill_uniform(b->q, T * Hq * Dk, &r, -1.0f, 1.0f);
    tu_fill_uniform(b->k, S * Hk * Dk, &r, -1.0f, 1.0f);
    tu_fill_uniform(b->v, S * Hk * Dv, &r, -1.0f, 1.0f);
    tu_fill_uniform(b->sk, Ns * Hk * Dk, &r, -1.0f, 1.0f);
    tu_fill_uniform(b->sv, Ns * Hk * Dv, &r, -1.0f, 1.0f);
    tu_fill_uniform(b->sink_logit, 64, &r, -1.0f, 2.0f);
    tu_fill_bits(b->out, T * Hq * Dv, TU_SENTINEL_BITS);
}

static void bufs_free(attn_bufs *b) { free(b->q), free(b->k), free(b->v), free(b->sk), free(b->sv), free(b->out); }

static mk_attn_args bufs_args(attn_bufs *b, float scale) {
    mk_attn_args a;
    memset(&a, 0, sizeof a);
    a.q = tu_heads(b->q, MK_F32, b->T, b->Hq, b->Dk, 0, 0);
    a.k_cache = tu_heads(b->k, MK_F32, b->S, b->Hk, b->Dk, 0, 0);
    a.v_cache = tu_heads(b->v, MK_F32, b->S, b->Hk, b->Dv, 0, 0);
    a.sink_k = tu_heads(b->sk, MK_F32, b->Ns, b->Hk, b->Dk, 0, 0);
    a.sink_v = tu_heads(b->sv, MK_F32, b->Ns, b->Hk, b->Dv, 0, 0);
    a.sink_logit = NULL;
    a.window = 0;
    a.scale = scale;
    a.out = tu_heads(b->out, MK_F32, b->T, b->Hq, b->Dv, 0, 0);
    return a;
}

/* Runs the library and compares out (contiguous [T, Hq, Dv] view or strided) with the naive loop. */
static void expect_matches_naive(const mk_attn_args *a, const char *what) {
    int64_t n = a->q.n_tokens * a->q.n_heads * a->v_cache.head_dim;
    double *want = malloc(sizeof(double) * (size_t)(n + 1));
    float *got = malloc(sizeof(float) * (size_t)(n + 1));
    attn_naive(a, want);
    TU_ASSERT_OK(mk_sink_attention(a));
    for (int64_t t = 0, c = 0; t < a->q.n_tokens; t++)
        for (int64_t h = 0; h < a->q.n_heads; h++)
            for (int64_t i = 0; i < a->v_cache.head_dim; i++) got[c++] = (float)tu_heads_get(&a->out, t, h, i);
    double nmse = tu_nmse_d(want, got, n), mad = tu_max_abs_diff_d(want, got, n);
    cr_expect(nmse <= 1e-10, "%s: NMSE %.3g > 1e-10", what, nmse);
    cr_expect(mad <= 1e-5, "%s: max abs error %.3g > 1e-5", what, mad);
    free(want), free(got);
}

/* ============================================ vs the naive loop ============================================ */

Test(attention, no_sinks_matches_naive_softmax) {
    static const struct {
        int64_t T, S, Hq, Hk, Dk, Dv;
        float scale;
    } cfg[] = {
        {5, 9, 4, 2, 16, 8, 0.25f},              /* prefill tail with cached prefix, GQA 2 */
        {1, 37, 8, 2, 192, 128, 0.0721687836f},  /* decode, openPangu head dims */
        {12, 12, 4, 4, 64, 64, 0.125f},          /* full prefill, MHA */
        {3, 300, 16, 1, 192, 128, 0.0721687836f} /* long cache, MQA */
    };
    for (int c = 0; c < (int)TU_ARRAY_LEN(cfg); c++) {
        attn_bufs b;
        bufs_alloc(&b, cfg[c].T, cfg[c].S, 0, cfg[c].Hq, cfg[c].Hk, cfg[c].Dk, cfg[c].Dv, 300 + c);
        mk_attn_args a = bufs_args(&b, cfg[c].scale);
        char what[64];
        snprintf(what, sizeof what, "config %d", c);
        expect_matches_naive(&a, what);
        bufs_free(&b);
    }
}

Test(attention, sinks_sink_logit_and_window_match_naive) {
    attn_bufs b;
    bufs_alloc(&b, 4, 10, 3, 4, 2, 32, 16, 310);
    mk_attn_args a = bufs_args(&b, 0.3f);
    expect_matches_naive(&a, "sinks");
    a.window = 3;
    expect_matches_naive(&a, "sinks + window 3");
    a.window = 0, a.sink_logit = b.sink_logit;
    expect_matches_naive(&a, "sinks + sink_logit");
    a.sink_v.data = NULL;
    expect_matches_naive(&a, "sinks without values + sink_logit");
    a.sink_k.n_tokens = 0, a.sink_v.n_tokens = 0, a.sink_v.data = b.sv;
    expect_matches_naive(&a, "sink_logit only");
    bufs_free(&b);

    /* openPangu-like: 128 sink tokens, 4 KV heads, 16 query heads per KV head (trimmed to Hq 64 / Hk 4) */
    bufs_alloc(&b, 2, 20, 128, 64, 4, 192, 128, 311);
    a = bufs_args(&b, 0.0721687836f);
    expect_matches_naive(&a, "openPangu shape");
    bufs_free(&b);
}

/* ================================================ hand cases ================================================ */

Test(attention, one_key_gives_its_value_exactly) {
    /* T = 1, S = 1, Ns = 0: the softmax has one term, weight exactly 1. Logit 0 and logit 200 (exp(200)
     * overflows float: the max must be subtracted). */
    const float logits_q0[2] = {0.0f, 10.0f};
    for (int c = 0; c < 2; c++) {
        float q[4] = {logits_q0[c], 0, 0, 0}, k[4] = {20, 0, 0, 0}, v[6] = {0.1f, -3.5f, 7.25f, 1e-3f, -0.0f, 12345.678f};
        float out[6];
        tu_fill_bits(out, 6, TU_SENTINEL_BITS);
        mk_attn_args a;
        memset(&a, 0, sizeof a);
        a.q = tu_heads(q, MK_F32, 1, 1, 4, 0, 0);
        a.k_cache = tu_heads(k, MK_F32, 1, 1, 4, 0, 0);
        a.v_cache = tu_heads(v, MK_F32, 1, 1, 6, 0, 0);
        a.sink_k = tu_heads(NULL, MK_F32, 0, 1, 4, 0, 0);
        a.sink_v = tu_heads(NULL, MK_F32, 0, 1, 6, 0, 0);
        a.scale = 1.0f;
        a.out = tu_heads(out, MK_F32, 1, 1, 6, 0, 0);
        TU_EXPECT_OK(mk_sink_attention(&a));
        for (int i = 0; i < 6; i++)
            cr_expect(out[i] == v[i], "logit %g: out[%d] = %.9g, want exactly %.9g", c ? 200.0 : 0.0, i,
                      (double)out[i], (double)v[i]);
    }
}

Test(attention, dominant_sink_absorbs_the_mass) {
    /* sink key aligned with q: logit 100; cache keys in [-1,1]^4 against q = (10,0,0,0): logits <= 10, so their
     * total weight is < 5 * e^-90: out = sink value within 1e-6. */
    attn_bufs b;
    bufs_alloc(&b, 2, 5, 1, 1, 1, 4, 4, 320);
    for (int t = 0; t < 2; t++) b.q[t * 4] = 10, b.q[t * 4 + 1] = b.q[t * 4 + 2] = b.q[t * 4 + 3] = 0;
    b.sk[0] = 10, b.sk[1] = b.sk[2] = b.sk[3] = 0;
    const float sv[4] = {0.5f, -2.0f, 3.0f, 0.125f};
    memcpy(b.sv, sv, sizeof sv);
    mk_attn_args a = bufs_args(&b, 1.0f);
    TU_ASSERT_OK(mk_sink_attention(&a));
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < 4; i++)
            cr_expect(fabs(b.out[t * 4 + i] - sv[i]) <= 1e-6, "t %d i %d: %.9g, want the sink value %.9g", t, i,
                      (double)b.out[t * 4 + i], (double)sv[i]);
    bufs_free(&b);
}

Test(attention, null_sink_values_soak_mass) {
    /* Two sinks with zero keys (logit 0) and NULL values, one cache key with logit 0: out = v / 3. */
    float q[4] = {0.3f, -0.2f, 0.9f, 0.1f}, k[4] = {0, 0, 0, 0}, sk[8] = {0}, v[4] = {3, -6, 1.5f, 0.75f}, out[4];
    mk_attn_args a;
    memset(&a, 0, sizeof a);
    a.q = tu_heads(q, MK_F32, 1, 1, 4, 0, 0);
    a.k_cache = tu_heads(k, MK_F32, 1, 1, 4, 0, 0);
    a.v_cache = tu_heads(v, MK_F32, 1, 1, 4, 0, 0);
    a.sink_k = tu_heads(sk, MK_F32, 2, 1, 4, 0, 0);
    a.sink_v = tu_heads(NULL, MK_F32, 2, 1, 4, 0, 0);
    a.scale = 0.5f;
    a.out = tu_heads(out, MK_F32, 1, 1, 4, 0, 0);
    TU_EXPECT_OK(mk_sink_attention(&a));
    for (int i = 0; i < 4; i++)
        cr_expect(fabs(out[i] - v[i] / 3.0) <= 1e-6 * fabs(v[i]), "i %d: %.9g, want v/3 = %.9g", i, (double)out[i],
                  v[i] / 3.0);

    /* Random case: with NULL sink values the output is the no-sink output times the predicted factor
     * sum_j e^l_j / (sum_s e^l_s + sum_j e^l_j), computed here from the logits. */
    attn_bufs b;
    bufs_alloc(&b, 1, 6, 3, 2, 1, 8, 5, 330);
    mk_attn_args an = bufs_args(&b, 0.7f);
    an.sink_k.n_tokens = 0, an.sink_v.n_tokens = 0;
    TU_ASSERT_OK(mk_sink_attention(&an));
    float plain[2 * 5];
    memcpy(plain, b.out, sizeof plain);
    mk_attn_args as = bufs_args(&b, 0.7f);
    as.sink_v.data = NULL;
    TU_ASSERT_OK(mk_sink_attention(&as));
    for (int h = 0; h < 2; h++) {
        double zs = 0, zk = 0;
        for (int s = 0; s < 3; s++) {
            double d = 0;
            for (int i = 0; i < 8; i++) d += (double)b.q[h * 8 + i] * b.sk[s * 8 + i];
            zs += exp(0.7 * d);
        }
        for (int j = 0; j < 6; j++) {
            double d = 0;
            for (int i = 0; i < 8; i++) d += (double)b.q[h * 8 + i] * b.k[j * 8 + i];
            zk += exp(0.7 * d);
        }
        double factor = zk / (zs + zk);
        for (int i = 0; i < 5; i++)
            cr_expect(fabs(b.out[h * 5 + i] - factor * plain[h * 5 + i]) <= 1e-6,
                      "h %d i %d: %.9g, want %.9g * %.9g", h, i, (double)b.out[h * 5 + i], factor,
                      (double)plain[h * 5 + i]);
    }
    bufs_free(&b);
}

Test(attention, scalar_sink_logit_scales_output) {
    /* q = 0: the one key has logit 0. sink_logit ln 3 -> out = v * 1/(1+3) = v/4; sink_logit 0 -> v/2;
     * sink_logit -inf-ish (-100) -> v. Query heads 0, 1, 2 share KV head 0. */
    float q[3 * 4] = {0}, k[4] = {1, 2, 3, 4}, v[2] = {8, -4}, out[3 * 2];
    const float sl[3] = {logf(3.0f), 0.0f, -100.0f};
    mk_attn_args a;
    memset(&a, 0, sizeof a);
    a.q = tu_heads(q, MK_F32, 1, 3, 4, 0, 0);
    a.k_cache = tu_heads(k, MK_F32, 1, 1, 4, 0, 0);
    a.v_cache = tu_heads(v, MK_F32, 1, 1, 2, 0, 0);
    a.sink_k = tu_heads(NULL, MK_F32, 0, 1, 4, 0, 0);
    a.sink_v = tu_heads(NULL, MK_F32, 0, 1, 2, 0, 0);
    a.sink_logit = sl;
    a.scale = 1.0f;
    a.out = tu_heads(out, MK_F32, 1, 3, 2, 0, 0);
    TU_EXPECT_OK(mk_sink_attention(&a));
    const double f[3] = {0.25, 0.5, 1.0};
    for (int h = 0; h < 3; h++)
        for (int i = 0; i < 2; i++)
            cr_expect(fabs(out[h * 2 + i] - f[h] * v[i]) <= 1e-6 * fabs(v[i]), "h %d i %d: %.9g, want %.9g", h, i,
                      (double)out[h * 2 + i], f[h] * v[i]);
}

Test(attention, gqa_head_mapping) {
    /* Hq 4, Hk 2, one key: out[h] = v[h / 2] exactly; KV head 0 holds 1s, KV head 1 holds 2s. The h % Hk mapping
     * would give head 1 the 2s. */
    float q[4 * 4] = {0}, k[2 * 4] = {0}, v[2 * 3] = {1, 1, 1, 2, 2, 2}, out[4 * 3];
    mk_attn_args a;
    memset(&a, 0, sizeof a);
    a.q = tu_heads(q, MK_F32, 1, 4, 4, 0, 0);
    a.k_cache = tu_heads(k, MK_F32, 1, 2, 4, 0, 0);
    a.v_cache = tu_heads(v, MK_F32, 1, 2, 3, 0, 0);
    a.sink_k = tu_heads(NULL, MK_F32, 0, 2, 4, 0, 0);
    a.sink_v = tu_heads(NULL, MK_F32, 0, 2, 3, 0, 0);
    a.scale = 1.0f;
    a.out = tu_heads(out, MK_F32, 1, 4, 3, 0, 0);
    TU_EXPECT_OK(mk_sink_attention(&a));
    for (int h = 0; h < 4; h++)
        for (int i = 0; i < 3; i++)
            cr_expect(out[h * 3 + i] == (h < 2 ? 1.0f : 2.0f), "head %d: %g, want %g", h, (double)out[h * 3 + i],
                      h < 2 ? 1.0 : 2.0);

    /* 64 query heads over 4 KV heads: query head h reads KV head h / 16 (value = its index + 1). */
    float q64[64 * 4] = {0}, k4[4 * 4] = {0}, v4[4 * 2], o64[64 * 2];
    for (int g = 0; g < 4; g++) v4[g * 2] = v4[g * 2 + 1] = (float)(g + 1);
    a.q = tu_heads(q64, MK_F32, 1, 64, 4, 0, 0);
    a.k_cache = tu_heads(k4, MK_F32, 1, 4, 4, 0, 0);
    a.v_cache = tu_heads(v4, MK_F32, 1, 4, 2, 0, 0);
    a.sink_k = tu_heads(NULL, MK_F32, 0, 4, 4, 0, 0);
    a.sink_v = tu_heads(NULL, MK_F32, 0, 4, 2, 0, 0);
    a.out = tu_heads(o64, MK_F32, 1, 64, 2, 0, 0);
    TU_EXPECT_OK(mk_sink_attention(&a));
    for (int h = 0; h < 64; h++)
        cr_expect(o64[h * 2] == (float)(h / 16 + 1), "head %d: %g, want %d", h, (double)o64[h * 2], h / 16 + 1);

    /* Logits depend on the mapping too: random GQA case against the loop, keys differ per KV head. */
    attn_bufs b;
    bufs_alloc(&b, 3, 5, 2, 4, 2, 8, 4, 340);
    mk_attn_args ar = bufs_args(&b, 1.5f);
    expect_matches_naive(&ar, "GQA random");
    bufs_free(&b);
}

Test(attention, sliding_window_hides_old_keys_not_sinks) {
    /* S = 6, T = 1 (position 5). Keys 0..3 are aligned with q (logit 50) and hold 100s; keys 4, 5 and the sink have
     * logit 0. window 2 -> visible: keys 4, 5 and the sink: out = (3 + 1 + 2) / 3 = 2.
     * window 1 -> key 5 and the sink: (3 + 2) / 2 = 2.5. window 0 (full) -> ~100. */
    float q[2] = {10, 0}, k[6 * 2], v[6], sk[2] = {0, 0}, sv[1] = {3}, out[1];
    for (int j = 0; j < 6; j++) {
        k[j * 2] = j < 4 ? 5.0f : 0.0f, k[j * 2 + 1] = 0;
        v[j] = j < 4 ? 100.0f : (float)(j - 3);
    }
    mk_attn_args a;
    memset(&a, 0, sizeof a);
    a.q = tu_heads(q, MK_F32, 1, 1, 2, 0, 0);
    a.k_cache = tu_heads(k, MK_F32, 6, 1, 2, 0, 0);
    a.v_cache = tu_heads(v, MK_F32, 6, 1, 1, 0, 0);
    a.sink_k = tu_heads(sk, MK_F32, 1, 1, 2, 0, 0);
    a.sink_v = tu_heads(sv, MK_F32, 1, 1, 1, 0, 0);
    a.scale = 1.0f;
    a.out = tu_heads(out, MK_F32, 1, 1, 1, 0, 0);
    a.window = 2;
    TU_EXPECT_OK(mk_sink_attention(&a));
    cr_expect(fabs(out[0] - 2.0) <= 2e-6, "window 2: %.9g, want 2", (double)out[0]);
    a.window = 1;
    TU_EXPECT_OK(mk_sink_attention(&a));
    cr_expect(fabs(out[0] - 2.5) <= 2.5e-6, "window 1: %.9g, want 2.5", (double)out[0]);
    a.window = 0;
    TU_EXPECT_OK(mk_sink_attention(&a));
    cr_expect(fabs(out[0] - 100.0) <= 1e-4, "full causal: %.9g, want ~100", (double)out[0]);
    a.window = 100; /* wider than the cache: same as full */
    TU_EXPECT_OK(mk_sink_attention(&a));
    cr_expect(fabs(out[0] - 100.0) <= 1e-4, "window 100: %.9g, want ~100", (double)out[0]);

    /* prefill with a window against the loop */
    attn_bufs b;
    bufs_alloc(&b, 5, 8, 2, 2, 1, 16, 8, 350);
    mk_attn_args ar = bufs_args(&b, 0.5f);
    ar.window = 3;
    expect_matches_naive(&ar, "window 3 prefill");
    bufs_free(&b);
}

/* Documented BF16 contract (docs/api.md, "Tolerances"): with BF16 caches or sinks a kernel may round q or the
 * probabilities to BF16, bounded by NMSE <= 5e-4 against the exact result plus the local bound
 * max |out - want| <= 20 * sqrt(5e-4) * rms(want). */
static void expect_matches_naive_bf16(const mk_attn_args *a, const char *what) {
    int64_t n = a->q.n_tokens * a->q.n_heads * a->v_cache.head_dim;
    double *want = malloc(sizeof(double) * (size_t)n);
    float *got = malloc(sizeof(float) * (size_t)n);
    attn_naive(a, want);
    TU_ASSERT_OK(mk_sink_attention(a));
    double rms = 0;
    for (int64_t t = 0, c = 0; t < a->q.n_tokens; t++)
        for (int64_t h = 0; h < a->q.n_heads; h++)
            for (int64_t i = 0; i < a->v_cache.head_dim; i++, c++) {
                got[c] = (float)tu_heads_get(&a->out, t, h, i);
                rms += want[c] * want[c];
            }
    rms = sqrt(rms / (double)n);
    double nmse = tu_nmse_d(want, got, n), mad = tu_max_abs_diff_d(want, got, n);
    cr_expect(nmse <= 5e-4, "%s: NMSE %.3g > 5e-4", what, nmse);
    cr_expect(mad <= 20 * sqrt(5e-4) * rms, "%s: max abs error %.3g > 20 sqrt(5e-4) rms = %.3g", what, mad,
              20 * sqrt(5e-4) * rms);
    free(want), free(got);
}

Test(attention, bf16_caches_and_sinks) {
    /* Caches and sinks on a 1/8 grid in [-2, 2]: exactly representable in bf16, so the exact answer of the BF16 run
     * is the exact answer of the F32 run (the naive loop widens them exactly). The F32 run is held to the F32
     * tolerance; the BF16 runs to the documented BF16 contract above. An error in reading BF16 (wrong element size,
     * stride in bytes instead of elements, wrong half of the word) gives NMSE ~ 1 and fails it. */
    enum { T = 3, S = 17, NS = 4, HQ = 4, HK = 2, DK = 64, DV = 32 };
    tu_rng r;
    tu_rng_seed(&r, 360);
    static float q[T * HQ * DK], k[S * HK * DK], v[S * HK * DV], sk[NS * HK * DK], sv[NS * HK * DV];
    static uint16_t kb[S * HK * DK], vb[S * HK * DV], skb[NS * HK * DK], svb[NS * HK * DV];
    static float o32[T * HQ * DV], o16[T * HQ * DV];
    tu_fill_uniform(q, T * HQ * DK, &r, -0.5f, 0.5f);
    tu_fill_grid(k, S * HK * DK, &r, 16, 3);
    tu_fill_grid(v, S * HK * DV, &r, 16, 3);
    tu_fill_grid(sk, NS * HK * DK, &r, 16, 3);
    tu_fill_grid(sv, NS * HK * DV, &r, 16, 3);
    cr_assert(tu_to_bf16_exact(kb, k, S * HK * DK) && tu_to_bf16_exact(vb, v, S * HK * DV) &&
              tu_to_bf16_exact(skb, sk, NS * HK * DK) && tu_to_bf16_exact(svb, sv, NS * HK * DV));
    mk_attn_args a;
    memset(&a, 0, sizeof a);
    a.q = tu_heads(q, MK_F32, T, HQ, DK, 0, 0);
    a.k_cache = tu_heads(k, MK_F32, S, HK, DK, 0, 0);
    a.v_cache = tu_heads(v, MK_F32, S, HK, DV, 0, 0);
    a.sink_k = tu_heads(sk, MK_F32, NS, HK, DK, 0, 0);
    a.sink_v = tu_heads(sv, MK_F32, NS, HK, DV, 0, 0);
    a.scale = 0.125f;
    a.out = tu_heads(o32, MK_F32, T, HQ, DV, 0, 0);
    expect_matches_naive(&a, "f32 caches");
    mk_attn_args ab = a;
    ab.k_cache.data = kb, ab.k_cache.dtype = MK_BF16;
    ab.v_cache.data = vb, ab.v_cache.dtype = MK_BF16;
    ab.sink_k.data = skb, ab.sink_k.dtype = MK_BF16;
    ab.sink_v.data = svb, ab.sink_v.dtype = MK_BF16;
    ab.out.data = o16;
    expect_matches_naive_bf16(&ab, "bf16 caches and sinks");
    /* mixed: BF16 K cache only; then BF16 sinks only */
    mk_attn_args am = a;
    am.k_cache.data = kb, am.k_cache.dtype = MK_BF16;
    am.out.data = o16;
    expect_matches_naive_bf16(&am, "bf16 K, f32 V and sinks");
    am = a;
    am.sink_k.data = skb, am.sink_k.dtype = MK_BF16;
    am.sink_v.data = svb, am.sink_v.dtype = MK_BF16;
    am.out.data = o16;
    expect_matches_naive_bf16(&am, "f32 caches, bf16 sinks");
}

Test(attention, bf16_cache_single_key_is_exact) {
    /* One visible key and no sinks: its probability is exactly 1 (1 is exact in bf16 too), so even a kernel that
     * rounds q and the probabilities to BF16 returns the BF16 value exactly. Checks the BF16 value path bit for
     * bit, with strided views. */
    enum { HQ = 4, HK = 2, DK = 8, DV = 40, VTS = HK * DV + 6 };
    float q[HQ * DK], k[HK * DK], vf[VTS], out[HQ * DV];
    uint16_t kb[HK * DK], vb[VTS];
    tu_rng r;
    tu_rng_seed(&r, 361);
    tu_fill_uniform(q, HQ * DK, &r, -1, 1);
    tu_fill_grid(k, HK * DK, &r, 16, 3);
    tu_fill_grid(vf, VTS, &r, 255, 5);
    cr_assert(tu_to_bf16_exact(kb, k, HK * DK) && tu_to_bf16_exact(vb, vf, VTS));
    mk_attn_args a;
    memset(&a, 0, sizeof a);
    a.q = tu_heads(q, MK_F32, 1, HQ, DK, 0, 0);
    a.k_cache = tu_heads(kb, MK_BF16, 1, HK, DK, 0, 0);
    a.v_cache = tu_heads(vb, MK_BF16, 1, HK, DV, VTS, DV + 3);
    a.sink_k = tu_heads(NULL, MK_F32, 0, HK, DK, 0, 0);
    a.sink_v = tu_heads(NULL, MK_F32, 0, HK, DV, 0, 0);
    a.scale = 0.3f;
    a.out = tu_heads(out, MK_F32, 1, HQ, DV, 0, 0);
    TU_EXPECT_OK(mk_sink_attention(&a));
    for (int h = 0; h < HQ; h++)
        for (int i = 0; i < DV; i++) {
            float want = vf[(h / 2) * (DV + 3) + i];
            cr_expect(out[h * DV + i] == want, "head %d i %d: %.9g, want exactly %.9g", h, i, (double)out[h * DV + i],
                      (double)want);
        }
}

Test(attention, strided_views) {
    /* q inside a fused [q | k | v] row (Hq 4 x 16, Hk 2 x 16, Hk 2 x 8 = 112 floats), K cache with gaps between
     * heads and tokens, out with padded rows (padding untouched). */
    enum { T = 3, S = 7, HQ = 4, HK = 2, DK = 16, DV = 8, ROW = 112, KHS = 20, KTS = 45, OTS = HQ * DV + 5 };
    tu_rng r;
    tu_rng_seed(&r, 370);
    static float qkv[T * ROW], kc[S * KTS], vc[S * HK * DV], out[T * OTS];
    tu_fill_uniform(qkv, T * ROW, &r, -1, 1);
    tu_fill_uniform(kc, S * KTS, &r, -1, 1);
    tu_fill_uniform(vc, S * HK * DV, &r, -1, 1);
    tu_fill_bits(out, T * OTS, TU_SENTINEL_BITS);
    mk_attn_args a;
    memset(&a, 0, sizeof a);
    a.q = tu_heads(qkv, MK_F32, T, HQ, DK, ROW, 0);
    a.k_cache = tu_heads(kc, MK_F32, S, HK, DK, KTS, KHS);
    a.v_cache = tu_heads(vc, MK_F32, S, HK, DV, 0, 0);
    a.sink_k = tu_heads(NULL, MK_F32, 0, HK, DK, 0, 0);
    a.sink_v = tu_heads(NULL, MK_F32, 0, HK, DV, 0, 0);
    a.scale = 0.25f;
    a.out = tu_heads(out, MK_F32, T, HQ, DV, OTS, 0);
    expect_matches_naive(&a, "strided");
    for (int t = 0; t < T; t++)
        for (int j = HQ * DV; j < OTS; j++)
            cr_expect(tu_same_bytes(&out[t * OTS + j], &(uint32_t){TU_SENTINEL_BITS}, 4), "out padding t %d j %d", t,
                      j);
}

/* ================================================ bad input ================================================ */

Test(attention, zero_queries_write_nothing) {
    attn_bufs b;
    bufs_alloc(&b, 2, 4, 1, 2, 1, 4, 4, 380);
    float keep[2 * 2 * 4];
    memcpy(keep, b.out, sizeof keep);
    mk_attn_args a = bufs_args(&b, 0.5f);
    a.q.n_tokens = 0, a.out.n_tokens = 0;
    TU_EXPECT_OK(mk_sink_attention(&a));
    cr_expect(tu_same_bytes(b.out, keep, sizeof keep), "T = 0 wrote into out");
    bufs_free(&b);
}

Test(attention, bad_arguments) {
    attn_bufs b;
    bufs_alloc(&b, 2, 4, 2, 4, 2, 8, 6, 390);
    float keep[2 * 4 * 6];
    mk_attn_args good = bufs_args(&b, 0.5f), a;
    TU_EXPECT_OK(mk_sink_attention(&good)); /* the baseline is valid */
    tu_fill_bits(b.out, 2 * 4 * 6, TU_SENTINEL_BITS);
    memcpy(keep, b.out, sizeof keep);

    TU_EXPECT_FAIL(mk_sink_attention(NULL), MK_EINVAL, "args");
    a = good, a.q.data = NULL;
    TU_EXPECT_FAIL(mk_sink_attention(&a), MK_EINVAL, "q");
    a = good, a.k_cache.data = NULL;
    TU_EXPECT_FAIL(mk_sink_attention(&a), MK_EINVAL, "k_cache");
    a = good, a.v_cache.data = NULL;
    TU_EXPECT_FAIL(mk_sink_attention(&a), MK_EINVAL, "v_cache");
    a = good, a.out.data = NULL;
    TU_EXPECT_FAIL(mk_sink_attention(&a), MK_EINVAL, "out");
    a = good, a.sink_k.data = NULL; /* Ns = 2 sink keys but no data */
    TU_EXPECT_FAIL(mk_sink_attention(&a), MK_EINVAL, "sink_k");
    a = good, a.q.dtype = MK_BF16; /* q is F32 only */
    TU_EXPECT_FAIL(mk_sink_attention(&a), MK_EINVAL, "q");
    a = good, a.out.dtype = MK_BF16; /* out is F32 only */
    TU_EXPECT_FAIL(mk_sink_attention(&a), MK_EINVAL, "out");
    a = good, a.k_cache.dtype = (mk_dtype)7;
    TU_EXPECT_FAIL2(mk_sink_attention(&a), MK_EINVAL, "k_cache", "dtype");
    a = good, a.q.n_heads = 3, a.out.n_heads = 3; /* 3 % 2 != 0 */
    TU_EXPECT_FAIL(mk_sink_attention(&a), MK_EINVAL, "n_heads");
    a = good, a.k_cache.head_dim = 6; /* != q head_dim 8 */
    TU_EXPECT_FAIL(mk_sink_attention(&a), MK_EINVAL, "head_dim");
    a = good, a.out.head_dim = 5; /* != v head_dim 6 */
    TU_EXPECT_FAIL(mk_sink_attention(&a), MK_EINVAL, "head_dim");
    a = good, a.sink_k.head_dim = 4;
    TU_EXPECT_FAIL2(mk_sink_attention(&a), MK_EINVAL, "sink_k", "head_dim");
    a = good, a.sink_v.head_dim = 4;
    TU_EXPECT_FAIL2(mk_sink_attention(&a), MK_EINVAL, "sink_v", "head_dim");
    a = good, a.v_cache.n_heads = 1;
    TU_EXPECT_FAIL2(mk_sink_attention(&a), MK_EINVAL, "v_cache", "n_heads");
    a = good, a.sink_k.n_heads = 1;
    TU_EXPECT_FAIL2(mk_sink_attention(&a), MK_EINVAL, "sink_k", "n_heads");
    a = good, a.v_cache.n_tokens = 3; /* K and V caches disagree on S */
    TU_EXPECT_FAIL2(mk_sink_attention(&a), MK_EINVAL, "v_cache", "n_tokens");
    a = good, a.sink_v.n_tokens = 1; /* sink values present but not Ns of them */
    TU_EXPECT_FAIL2(mk_sink_attention(&a), MK_EINVAL, "sink_v", "n_tokens");
    a = good, a.out.n_tokens = 1;
    TU_EXPECT_FAIL2(mk_sink_attention(&a), MK_EINVAL, "out", "n_tokens");
    a = good, a.out.n_heads = 2;
    TU_EXPECT_FAIL2(mk_sink_attention(&a), MK_EINVAL, "out", "n_heads");
    a = good, a.k_cache.n_tokens = 1, a.v_cache.n_tokens = 1; /* S < T: query 0 would sit at position -1 */
    TU_EXPECT_FAIL2(mk_sink_attention(&a), MK_EINVAL, "k_cache", "n_tokens");
    a = good, a.q.n_tokens = -1;
    TU_EXPECT_FAIL(mk_sink_attention(&a), MK_EINVAL, "n_tokens");
    a = good, a.q.token_stride = -8;
    TU_EXPECT_FAIL(mk_sink_attention(&a), MK_EINVAL, "token_stride");
    a = good, a.scale = 0.0f;
    TU_EXPECT_FAIL(mk_sink_attention(&a), MK_EINVAL, "scale");
    a = good, a.scale = -0.5f;
    TU_EXPECT_FAIL(mk_sink_attention(&a), MK_EINVAL, "scale");
    a = good, a.scale = NAN;
    TU_EXPECT_FAIL(mk_sink_attention(&a), MK_EINVAL, "scale");
    a = good, a.scale = INFINITY;
    TU_EXPECT_FAIL(mk_sink_attention(&a), MK_EINVAL, "scale");
    a = good, a.window = -1;
    TU_EXPECT_FAIL(mk_sink_attention(&a), MK_EINVAL, "window");
    a = good, a.k_cache.n_tokens = INT64_MAX / 2, a.v_cache.n_tokens = INT64_MAX / 2;
    TU_EXPECT_FAIL2(mk_sink_attention(&a), MK_EINVAL, "k_cache", "n_tokens");
    a = good, a.k_cache.head_stride = 7; /* < head_dim 8 */
    TU_EXPECT_FAIL(mk_sink_attention(&a), MK_EINVAL, "head_stride");
    a = good, a.out.token_stride = 4 * 6 - 1;
    TU_EXPECT_FAIL(mk_sink_attention(&a), MK_EINVAL, "token_stride");
    cr_expect(tu_same_bytes(b.out, keep, sizeof keep), "a failed mk_sink_attention wrote into out");

    /* out must not overlap q, the caches or the sinks (checked); inputs may overlap each other */
    float qkeep[2 * 4 * 8], vkeep[4 * 2 * 6];
    memcpy(qkeep, b.q, sizeof qkeep), memcpy(vkeep, b.v, sizeof vkeep);
    a = good, a.out.data = b.q;
    TU_EXPECT_FAIL2(mk_sink_attention(&a), MK_EINVAL, "out", "q");
    a = good, a.out.data = b.v + 5;
    TU_EXPECT_FAIL2(mk_sink_attention(&a), MK_EINVAL, "out", "v_cache");
    cr_expect(tu_same_bytes(b.q, qkeep, sizeof qkeep) && tu_same_bytes(b.v, vkeep, sizeof vkeep),
              "a failed overlapping mk_sink_attention wrote into an input");
    a = good, a.v_cache.data = b.k; /* v reads the k buffer: allowed (same shape [4, 2, 8] covers [4, 2, 6]) */
    a.v_cache.head_stride = 8, a.v_cache.token_stride = 16;
    TU_EXPECT_OK(mk_sink_attention(&a));
    /* Ns = 0: the sink views are ignored, their data may be NULL */
    a = good, a.sink_k = tu_heads(NULL, MK_F32, 0, 99, 99, 0, 0), a.sink_v = tu_heads(NULL, MK_F32, 0, 1, 1, 0, 0);
    TU_EXPECT_OK(mk_sink_attention(&a));
    bufs_free(&b);
}
