/*
 * test_simd_attention.c: the SIMD mk_sink_attention kernels (kernels/simd/attention.inc) against the reference,
 * through the public API. For each ISA in {avx2, avx512} that this CPU runs, identical inputs go through
 * mk_sink_attention under mk_set_max_isa(isa) (with 1 and 2 threads, sometimes more) and once under
 * mk_set_max_isa(MK_ISA_REF) (the double-precision oracle, kernels/ref/attention.c):
 *   - NMSE = sum((out - ref)^2) / sum(ref^2) over the output view <= the sink_attention tolerance of
 *     dispatch/selfcheck.h (1e-6 with F32 caches and sinks, 5e-4 when caches or sinks are BF16);
 *   - nothing written outside the output view (every out buffer has padding and a guard, filled with a NaN
 *     sentinel that must survive), every output finite;
 *   - mk_kernel_name(MK_OP_SINK_ATTENTION) is the ISA's name, so the comparison is never ref against ref.
 * The oracle output itself must be finite and not all zero (sum(ref^2) > 0), so that the NMSE means something.
 *
 * Shapes: the openPangu-R-72B ones (64 query heads, 4 KV heads, dims 192/128, 128 sinks) for decode (T = 1, S = 1
 * and S = 4100, where the kernel splits the keys over threads) and prefill (T = S = 256), plus Ns in {0, 1, 128},
 * sink_v = NULL, scalar sink logits, windows 1, 37 and > S, BF16 caches and BF16 sinks (also mixed), odd head
 * dims, Hq == Hk, T == S and T < S, strided and misaligned views, several thread counts.
 *
 * Split-KV: the kernel splits decode over the threads; the sink tokens and the sink logit must be counted exactly
 * once whatever the split. sink_once_under_every_split gives the sinks most of the softmax mass and checks 1..5
 * threads; it also checks (against an independent double-precision loop written here) that counting the sinks
 * twice would be far outside the tolerance, so the test can detect that bug.
 *
 * BF16 paths: on a CPU with AVX512_BF16 the avx512 kernel runs BF16 data through vdpbf16ps (q and probabilities
 * rounded to bf16); avx512_bf16_data_without_vdpbf16ps forces the widening path that AVX-512 CPUs without
 * AVX512_BF16 use (a test hook of the kernel) and holds it to the F32 tolerance. Input padding and guards hold NaN
 * sentinels, so a kernel reading outside a view (row tails, head padding) poisons its output and fails.
 *
 * Runtime: the oracle is computed once per case (it is the slow part: double precision, 64 heads).
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moekit.h"
#include "selfcheck.h"
#include "test_util.h"

#define GUARD 64 /* elements after every buffer */

typedef struct acase {
    const char *label;
    int64_t T, S, Hq, Hk, Dk, Dv, Ns;
    mk_dtype kv_dtype, sink_dtype;
    int sink_v_null;    /* sink_v.data = NULL */
    int sink_logit;     /* per-head scalar sink logits */
    int64_t window;
    int strided;        /* token and head strides larger than contiguous (q, caches, sinks, out) */
    int misalign;       /* every data pointer one element past a 64-byte boundary */
    float q_amp;        /* q uniform in [-q_amp, q_amp] (0 -> 3) */
    float sink_amp;     /* sink keys uniform in [-sink_amp, sink_amp] (0 -> 1) */
    float sink_logit_base; /* sink logits uniform in base + [-1, 1] */
    int threads[6];     /* thread counts to try, 0-terminated (default {1, 2}) */
} acase;

/* ---- one tensor: a strided [n, heads, dim] view inside a buffer with a guard -------------------------------- */
typedef struct tensor {
    void *buf;      /* allocation */
    size_t bytes;   /* allocated bytes */
    mk_heads view;
    int64_t n_elems; /* elements covered by the view's extent, from view.data */
} tensor;

static size_t esize(mk_dtype d) { return d == MK_BF16 ? 2 : 4; }

static void tensor_make(tensor *t, mk_dtype dtype, int64_t n, int64_t heads, int64_t dim, int strided, int misalign) {
    const int64_t hs = strided ? dim + 3 : dim, ts = strided ? heads * hs + 5 : heads * dim;
    const int64_t extent = n > 0 ? (n - 1) * ts + (heads - 1) * hs + dim : 0;
    const int64_t off = misalign ? 1 : 0;
    t->n_elems = extent;
    t->bytes = (size_t)(off + extent + GUARD) * esize(dtype) + 64;
    t->buf = aligned_alloc(64, (t->bytes + 63) / 64 * 64);
    cr_assert(t->buf != NULL);
    memset(t->buf, 0, t->bytes);
    void *data = (char *)t->buf + off * (int64_t)esize(dtype);
    t->view = tu_heads(data, dtype, n, heads, dim, strided ? ts : 0, strided ? hs : 0);
}

/* Fills every element of the view with uniform values in [-amp, amp] (BF16: truncated to bf16). Padding between
 * rows and the guard keep the sentinel (a NaN: reading them would poison the result). */
static void tensor_fill(tensor *t, tu_rng *r, float amp) {
    const mk_heads *v = &t->view;
    if (v->dtype == MK_BF16)
        tu_fill_u16((uint16_t *)v->data, t->n_elems + GUARD, TU_SENTINEL_BF16);
    else
        tu_fill_bits((float *)v->data, t->n_elems + GUARD, TU_SENTINEL_BITS);
    for (int64_t i = 0; i < v->n_tokens; i++)
        for (int64_t h = 0; h < v->n_heads; h++)
            for (int64_t d = 0; d < v->head_dim; d++) {
                const int64_t o = tu_heads_off(v, i, h, d);
                const float x = tu_rng_uniform(r, -amp, amp);
                if (v->dtype == MK_BF16)
                    ((uint16_t *)v->data)[o] = tu_bf16_trunc(x);
                else
                    ((float *)v->data)[o] = x;
            }
}

/* Output buffer: sentinel everywhere (padding and guard included). */
static void tensor_poison(tensor *t) {
    tu_fill_bits((float *)t->view.data, t->n_elems + GUARD, TU_SENTINEL_BITS);
}

static void tensor_free(tensor *t) { free(t->buf); }

/* Output view -> dense [T * Hq * Dv] floats. */
static void gather_out(const tensor *t, float *dst) {
    const mk_heads *v = &t->view;
    int64_t k = 0;
    for (int64_t i = 0; i < v->n_tokens; i++)
        for (int64_t h = 0; h < v->n_heads; h++)
            for (int64_t d = 0; d < v->head_dim; d++) dst[k++] = ((const float *)v->data)[tu_heads_off(v, i, h, d)];
}

/* Number of elements of the out buffer outside the view that lost their sentinel. */
static int64_t count_clobbered(const tensor *t) {
    const mk_heads *v = &t->view;
    const int64_t n = t->n_elems + GUARD;
    char *inview = calloc((size_t)n, 1);
    cr_assert(inview != NULL);
    for (int64_t i = 0; i < v->n_tokens; i++)
        for (int64_t h = 0; h < v->n_heads; h++)
            for (int64_t d = 0; d < v->head_dim; d++) inview[tu_heads_off(v, i, h, d)] = 1;
    int64_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, (const float *)v->data + i, sizeof u);
        if (!inview[i] && u != TU_SENTINEL_BITS) bad++;
    }
    free(inview);
    return bad;
}

typedef struct inputs {
    tensor q, k, v, sk, sv, out;
    float *sink_logit;
    mk_attn_args args;
} inputs;

static void inputs_make(inputs *in, const acase *c, uint64_t seed) {
    tu_rng r;
    tu_rng_seed(&r, seed);
    memset(in, 0, sizeof *in);
    const float q_amp = c->q_amp > 0 ? c->q_amp : 3.0f, s_amp = c->sink_amp > 0 ? c->sink_amp : 1.0f;
    tensor_make(&in->q, MK_F32, c->T, c->Hq, c->Dk, c->strided, c->misalign);
    tensor_make(&in->k, c->kv_dtype, c->S, c->Hk, c->Dk, c->strided, c->misalign);
    tensor_make(&in->v, c->kv_dtype, c->S, c->Hk, c->Dv, c->strided, c->misalign);
    tensor_make(&in->out, MK_F32, c->T, c->Hq, c->Dv, c->strided, c->misalign);
    tensor_fill(&in->q, &r, q_amp);
    tensor_fill(&in->k, &r, 1.0f);
    tensor_fill(&in->v, &r, 1.0f);
    mk_attn_args *a = &in->args;
    memset(a, 0, sizeof *a);
    a->q = in->q.view;
    a->k_cache = in->k.view;
    a->v_cache = in->v.view;
    a->out = in->out.view;
    if (c->Ns > 0) {
        tensor_make(&in->sk, c->sink_dtype, c->Ns, c->Hk, c->Dk, c->strided, c->misalign);
        tensor_fill(&in->sk, &r, s_amp);
        a->sink_k = in->sk.view;
        if (!c->sink_v_null) {
            tensor_make(&in->sv, c->sink_dtype, c->Ns, c->Hk, c->Dv, c->strided, c->misalign);
            tensor_fill(&in->sv, &r, 1.0f);
            a->sink_v = in->sv.view;
        } else {
            a->sink_v = tu_heads(NULL, c->sink_dtype, c->Ns, c->Hk, c->Dv, 0, 0);
        }
    } else {
        a->sink_k = tu_heads(NULL, MK_F32, 0, c->Hk, c->Dk, 0, 0);
        a->sink_v = tu_heads(NULL, MK_F32, 0, c->Hk, c->Dv, 0, 0);
    }
    if (c->sink_logit) {
        in->sink_logit = malloc(sizeof(float) * (size_t)c->Hq);
        cr_assert(in->sink_logit != NULL);
        for (int64_t h = 0; h < c->Hq; h++) in->sink_logit[h] = c->sink_logit_base + tu_rng_uniform(&r, -1.0f, 1.0f);
        a->sink_logit = in->sink_logit;
    }
    a->window = c->window;
    a->scale = 1.0f / sqrtf((float)c->Dk);
}

static void inputs_free(inputs *in) {
    tensor_free(&in->q);
    tensor_free(&in->k);
    tensor_free(&in->v);
    tensor_free(&in->out);
    if (in->args.sink_k.data) tensor_free(&in->sk);
    if (in->args.sink_v.data) tensor_free(&in->sv);
    free(in->sink_logit);
}

static double tol_for(const acase *c) {
    const int bf16 = c->kv_dtype == MK_BF16 || (c->Ns > 0 && c->sink_dtype == MK_BF16);
    return mki_selfcheck_tol(MK_OP_SINK_ATTENTION, bf16 ? MK_BF16 : MK_F32);
}

/* Runs the op on `in` with the given ISA cap and thread count; returns the dense output (caller frees). */
static float *run_once(inputs *in, mk_isa isa, int threads, const char *label) {
    const int64_t n = in->out.view.n_tokens * in->out.view.n_heads * in->out.view.head_dim;
    cr_assert_eq(mk_set_max_isa(isa), MK_OK);
    cr_assert_eq(mk_set_num_threads(threads), MK_OK);
    cr_assert_eq(mk_selected_isa(), isa, "%s: mk_set_max_isa(%s) selected %s", label, mk_isa_name(isa),
                 mk_isa_name(mk_selected_isa()));
    cr_assert_str_eq(mk_kernel_name(MK_OP_SINK_ATTENTION), mk_isa_name(isa),
                     "%s: kernel under the %s cap is '%s'", label, mk_isa_name(isa),
                     mk_kernel_name(MK_OP_SINK_ATTENTION));
    tensor_poison(&in->out);
    mk_status st = mk_sink_attention(&in->args);
    cr_assert_eq(st, MK_OK, "%s [%s, %d threads]: status %s: %s", label, mk_isa_name(isa), threads,
                 mk_status_str(st), mk_last_error());
    cr_expect_eq(count_clobbered(&in->out), 0, "%s [%s, %d threads]: wrote outside the output view", label,
                 mk_isa_name(isa), threads);
    float *o = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
    cr_assert(o != NULL);
    gather_out(&in->out, o);
    return o;
}

/* The case against the oracle, for every ISA this CPU runs and every thread count of the case. Returns the
 * number of (isa, threads) runs compared. */
static int check_case(const acase *c, uint64_t seed) {
    inputs in;
    inputs_make(&in, c, seed);
    const int64_t n = c->T * c->Hq * c->Dv;
    float *ref = run_once(&in, MK_ISA_REF, 1, c->label);
    double energy = 0.0;
    int64_t nonfinite = 0;
    for (int64_t i = 0; i < n; i++) {
        energy += (double)ref[i] * ref[i];
        if (!isfinite(ref[i])) nonfinite++;
    }
    cr_assert_eq(nonfinite, 0, "%s: the oracle gave %lld non-finite outputs", c->label, (long long)nonfinite);
    cr_assert(energy > 0.0, "%s: the oracle output is all zero: the comparison would be vacuous", c->label);

    const double tol = tol_for(c);
    static const int default_threads[] = {1, 2, 0};
    const int *thr = c->threads[0] ? c->threads : default_threads;
    int compared = 0;
    for (int isa = MK_ISA_AVX2; isa <= MK_ISA_AVX512; isa++) {
        if ((mk_isa)isa > mk_detected_isa()) continue;
        for (int ti = 0; thr[ti]; ti++) {
            float *got = run_once(&in, (mk_isa)isa, thr[ti], c->label);
            int64_t bad = 0;
            for (int64_t i = 0; i < n; i++)
                if (!isfinite(got[i])) bad++;
            const double nmse = tu_nmse(ref, got, n), maxd = tu_max_abs_diff(ref, got, n);
            cr_expect_eq(bad, 0, "%s [%s, %d threads]: %lld non-finite outputs", c->label, mk_isa_name((mk_isa)isa),
                         thr[ti], (long long)bad);
            cr_expect(nmse <= tol, "%s [%s, %d threads]: NMSE %.3g > %.3g (max |diff| %.3g)", c->label,
                      mk_isa_name((mk_isa)isa), thr[ti], nmse, tol, maxd);
            free(got);
            compared++;
        }
    }
    free(ref);
    inputs_free(&in);
    return compared;
}

static void check_cases(const acase *cases, int n_cases, uint64_t seed) {
    if (mk_detected_isa() < MK_ISA_AVX2) cr_skip_test("this CPU runs neither avx2 nor avx512");
    for (int i = 0; i < n_cases; i++) cr_assert(check_case(&cases[i], seed + (uint64_t)i * 7919u) > 0);
}

#define F MK_F32
#define B MK_BF16
/* AC(label, T, S, Hq, Hk, Dk, Dv, Ns, cache dtype, sink dtype, optional .field = value...) */
#define AC(lbl, t, s, hq, hk, dk, dv, ns, kvd, sd, ...)                                                           \
    {.label = (lbl), .T = (t), .S = (s), .Hq = (hq), .Hk = (hk), .Dk = (dk), .Dv = (dv), .Ns = (ns),                  \
     .kv_dtype = (kvd), .sink_dtype = (sd), __VA_ARGS__}

/* ---- openPangu-R-72B shapes ----------------------------------------------------------------------------------- */
Test(simd_attention, pangu_decode_s1) {
    static const acase cases[] = {
        AC("pangu decode T=1 S=1, 128 sinks, f32", 1, 1, 64, 4, 192, 128, 128, F, F),
        AC("pangu decode T=1 S=1, 128 sinks, bf16", 1, 1, 64, 4, 192, 128, 128, B, B),
    };
    check_cases(cases, 2, 101);
}

Test(simd_attention, pangu_decode_s4100_f32, .timeout = 60) {
    static const acase cases[] = {
        AC("pangu decode T=1 S=4100, 128 sinks, f32", 1, 4100, 64, 4, 192, 128, 128, F, F, .threads = {1, 2, 3}),
    };
    check_cases(cases, 1, 202);
}

Test(simd_attention, pangu_decode_s4100_bf16, .timeout = 60) {
    static const acase cases[] = {
        AC("pangu decode T=1 S=4100, 128 bf16 sinks, bf16 caches, sink logits", 1, 4100, 64, 4, 192, 128, 128, B, B,
         .sink_logit = 1, .threads = {1, 2, 4}),
    };
    check_cases(cases, 1, 303);
}

Test(simd_attention, pangu_decode_t4_window, .timeout = 60) {
    static const acase cases[] = {
        AC("pangu T=4 S=2100 (speculative decode), window 128, bf16", 4, 2100, 64, 4, 192, 128, 128, B, B,
         .window = 128),
    };
    check_cases(cases, 1, 404);
}

Test(simd_attention, pangu_prefill_f32, .timeout = 60) {
    static const acase cases[] = {
        AC("pangu prefill T=S=256, 128 sinks, f32", 256, 256, 64, 4, 192, 128, 128, F, F),
    };
    check_cases(cases, 1, 505);
}

Test(simd_attention, pangu_prefill_bf16_window, .timeout = 60) {
    static const acase cases[] = {
        AC("pangu prefill T=S=256, window 37, bf16 caches, f32 sinks, strided", 256, 256, 64, 4, 192, 128, 128, B, F,
         .window = 37, .strided = 1),
    };
    check_cases(cases, 1, 606);
}

/* ---- sinks ---------------------------------------------------------------------------------------------------- */
Test(simd_attention, sink_counts) {
    static const acase cases[] = {
        AC("Ns=0, 16/2 heads, 64/32", 5, 300, 16, 2, 64, 32, 0, F, F),
        AC("Ns=1, 16/2 heads, 64/32", 5, 300, 16, 2, 64, 32, 1, F, F),
        AC("Ns=128, 16/2 heads, 64/32", 5, 300, 16, 2, 64, 32, 128, F, F),
        AC("Ns=1, bf16 sink with f32 caches", 3, 70, 8, 2, 48, 40, 1, F, B),
        AC("Ns=128 bf16 sinks, f32 caches, strong sinks", 2, 600, 16, 1, 64, 64, 128, F, B, .sink_amp = 4),
        AC("Ns=50 f32 sinks, bf16 caches", 7, 200, 8, 4, 40, 24, 50, B, F),
    };
    check_cases(cases, 6, 707);
}

Test(simd_attention, sink_values_null_and_sink_logit) {
    static const acase cases[] = {
        AC("sink_v NULL, f32", 4, 150, 16, 4, 64, 48, 20, F, F, .sink_v_null = 1, .sink_amp = 3),
        AC("sink_v NULL, bf16 sinks and caches", 4, 150, 16, 4, 64, 48, 128, B, B, .sink_v_null = 1),
        AC("sink logit only (Ns = 0)", 6, 90, 12, 3, 32, 32, 0, F, F, .sink_logit = 1),
        AC("sink logit dominant (base 6)", 6, 90, 12, 3, 32, 32, 0, F, F, .sink_logit = 1, .sink_logit_base = 6),
        AC("sink logit + sinks + NULL sink_v", 3, 800, 16, 2, 64, 32, 9, F, F, .sink_v_null = 1, .sink_logit = 1,
         .sink_logit_base = 2, .threads = {1, 2, 3}),
        AC("pangu decode, sink_v NULL + sink logits, S=1500", 1, 1500, 64, 4, 192, 128, 128, B, B, .sink_v_null = 1,
         .sink_logit = 1),
    };
    check_cases(cases, 6, 808);
}

/* ---- masks ---------------------------------------------------------------------------------------------------- */
Test(simd_attention, windows) {
    static const acase cases[] = {
        AC("window 1 (only itself + sinks)", 40, 300, 16, 2, 48, 32, 4, F, F, .window = 1),
        AC("window 1, no sinks", 40, 300, 16, 2, 48, 32, 0, F, F, .window = 1),
        AC("window 37", 70, 400, 16, 2, 48, 32, 8, F, F, .window = 37),
        AC("window 37, decode, split", 1, 3000, 16, 1, 64, 32, 8, B, B, .window = 37, .threads = {1, 2, 3}),
        AC("window > S", 50, 120, 16, 2, 48, 32, 8, F, F, .window = 1000),
        AC("window 37, T = S", 120, 120, 8, 8, 24, 16, 3, B, F, .window = 37),
        AC("window 300, decode split", 1, 5000, 32, 2, 64, 64, 16, F, F, .window = 300, .threads = {1, 2, 5}),
    };
    check_cases(cases, 7, 909);
}

Test(simd_attention, causal_t_vs_s) {
    static const acase cases[] = {
        AC("T = S = 1", 1, 1, 16, 2, 32, 32, 0, F, F),
        AC("T = S = 100", 100, 100, 16, 2, 32, 32, 2, F, F),
        AC("T < S (T=33, S=200)", 33, 200, 16, 2, 32, 32, 2, F, F),
        AC("T = 2, S = 2000, many threads", 2, 2000, 16, 4, 32, 16, 2, F, F, .threads = {1, 2, 3, 6}),
    };
    check_cases(cases, 4, 1010);
}

/* ---- head shapes ------------------------------------------------------------------------------------------------ */
Test(simd_attention, odd_head_dims) {
    static const acase cases[] = {
        AC("dims 5/3, 1/1 heads", 3, 9, 1, 1, 5, 3, 0, F, F),
        AC("dims 5/3, 4/2 heads, sinks", 6, 40, 4, 2, 5, 3, 3, F, F),
        AC("dims 5/3, bf16", 6, 40, 4, 2, 5, 3, 3, B, B),
        AC("dims 33/17", 7, 60, 4, 2, 33, 17, 1, F, F),
        AC("dims 33/17, bf16, strided, misaligned", 7, 60, 4, 2, 33, 17, 5, B, B, .strided = 1, .misalign = 1),
        AC("dims 1/1", 4, 20, 2, 1, 1, 1, 2, F, F),
        AC("dims 1/1, bf16", 4, 20, 2, 1, 1, 1, 2, B, B),
        AC("dims 2/2, bf16", 4, 20, 2, 1, 2, 2, 2, B, B),
        AC("dims 200/136 (tails of every block size)", 3, 100, 6, 3, 200, 136, 7, F, F),
    };
    check_cases(cases, 9, 1111);
}

Test(simd_attention, head_groupings) {
    static const acase cases[] = {
        AC("Hq == Hk = 4 (MHA)", 20, 90, 4, 4, 32, 32, 2, F, F),
        AC("Hq == Hk = 1, T=70", 70, 100, 1, 1, 16, 16, 1, F, F),
        AC("group of 3 (rows span tokens)", 37, 120, 12, 4, 32, 24, 2, F, F),
        AC("group of 64, one KV head", 2, 300, 64, 1, 32, 32, 4, F, F),
        AC("group of 5, bf16", 11, 77, 10, 2, 16, 8, 3, B, B),
    };
    check_cases(cases, 5, 1212);
}

/* ---- memory layouts --------------------------------------------------------------------------------------------- */
Test(simd_attention, strided_and_misaligned_views) {
    static const acase cases[] = {
        AC("strided, f32", 9, 150, 16, 2, 64, 48, 6, F, F, .strided = 1),
        AC("misaligned, f32", 9, 150, 16, 2, 64, 48, 6, F, F, .misalign = 1),
        AC("strided + misaligned, bf16", 9, 150, 16, 2, 64, 48, 6, B, B, .strided = 1, .misalign = 1),
        AC("pangu decode strided + misaligned, bf16", 1, 700, 64, 4, 192, 128, 128, B, B, .strided = 1,
         .misalign = 1),
    };
    check_cases(cases, 4, 1313);
}

/* ---- split-KV: the sinks and the sink logit exactly once ------------------------------------------------------ */
/* Independent double-precision attention for a contiguous F32 problem (sink tensors counted `sink_mult` times, the
 * sink logit's exp `logit_mult` times). */
static void naive(const mk_attn_args *a, int sink_mult, int logit_mult, double *out) {
    const int64_t T = a->q.n_tokens, Hq = a->q.n_heads, Dk = a->q.head_dim, S = a->k_cache.n_tokens;
    const int64_t Hk = a->k_cache.n_heads, Dv = a->v_cache.head_dim, Ns = a->sink_k.n_tokens, G = Hq / Hk;
    double *w = malloc(sizeof(double) * (size_t)(Ns + S));
    cr_assert(w != NULL);
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < Hq; h++) {
            const int64_t g = h / G, pos = S - T + t;
            int64_t lo = a->window > 0 ? pos - a->window + 1 : 0;
            if (lo < 0) lo = 0;
            double mx = a->sink_logit ? (double)a->sink_logit[h] : -INFINITY;
            for (int64_t j = 0; j < Ns + S; j++) {
                const int sink = j < Ns;
                const int64_t key = sink ? j : j - Ns;
                if (!sink && (key < lo || key > pos)) {
                    w[j] = -INFINITY;
                    continue;
                }
                double d = 0.0;
                for (int64_t i = 0; i < Dk; i++)
                    d += tu_heads_get(&a->q, t, h, i) * tu_heads_get(sink ? &a->sink_k : &a->k_cache, key, g, i);
                w[j] = (double)a->scale * d;
                if (w[j] > mx) mx = w[j];
            }
            double den = a->sink_logit ? logit_mult * exp((double)a->sink_logit[h] - mx) : 0.0;
            double *o = out + (t * Hq + h) * Dv;
            for (int64_t i = 0; i < Dv; i++) o[i] = 0.0;
            for (int64_t j = 0; j < Ns + S; j++) {
                if (w[j] == -INFINITY) continue;
                const int sink = j < Ns;
                const double p = exp(w[j] - mx) * (sink ? sink_mult : 1);
                den += p;
                if (sink && !a->sink_v.data) continue;
                for (int64_t i = 0; i < Dv; i++)
                    o[i] += p * tu_heads_get(sink ? &a->sink_v : &a->v_cache, sink ? j : j - Ns, g, i);
            }
            for (int64_t i = 0; i < Dv; i++) o[i] /= den;
        }
    free(w);
}

Test(simd_attention, sink_once_under_every_split) {
    if (mk_detected_isa() < MK_ISA_AVX2) cr_skip_test("this CPU runs neither avx2 nor avx512");
    /* decode, one KV group: the kernel splits the 3000 cache keys over the threads; the sinks (strong keys) and
     * the sink logit carry a large share of the mass */
    const acase c = AC("split-KV sinks once", 1, 3000, 16, 1, 32, 32, 16, F, F, .sink_logit = 1, .sink_logit_base = 8,
                     .sink_amp = 3);
    inputs in;
    inputs_make(&in, &c, 4242);
    const int64_t n = c.T * c.Hq * c.Dv;
    double *want = malloc(sizeof(double) * (size_t)n), *twice = malloc(sizeof(double) * (size_t)n);
    double *logit_twice = malloc(sizeof(double) * (size_t)n);
    cr_assert(want && twice && logit_twice);
    naive(&in.args, 1, 1, want);
    naive(&in.args, 2, 1, twice);
    naive(&in.args, 1, 2, logit_twice);
    const double tol = tol_for(&c);
    /* the bug this test is for must be visible */
    float *tw = malloc(sizeof(float) * (size_t)n), *lt = malloc(sizeof(float) * (size_t)n);
    cr_assert(tw && lt);
    for (int64_t i = 0; i < n; i++) {
        tw[i] = (float)twice[i];
        lt[i] = (float)logit_twice[i];
    }
    cr_assert(tu_nmse_d(want, tw, n) > 1000 * tol, "sinks counted twice would only give NMSE %.3g",
              tu_nmse_d(want, tw, n));
    cr_assert(tu_nmse_d(want, lt, n) > 1000 * tol, "the sink logit counted twice would only give NMSE %.3g",
              tu_nmse_d(want, lt, n));
    for (int isa = MK_ISA_REF; isa <= MK_ISA_AVX512; isa++) {
        if ((mk_isa)isa > mk_detected_isa()) continue;
        for (int thr = 1; thr <= 5; thr++) {
            if (isa == MK_ISA_REF && thr > 1) break;
            float *got = run_once(&in, (mk_isa)isa, thr, c.label);
            const double nmse = tu_nmse_d(want, got, n);
            cr_expect(nmse <= tol, "%s [%s, %d threads]: NMSE %.3g vs the naive loop > %.3g", c.label,
                      mk_isa_name((mk_isa)isa), thr, nmse, tol);
            free(got);
        }
    }
    free(want);
    free(twice);
    free(logit_twice);
    free(tw);
    free(lt);
    inputs_free(&in);
}

/* Same inputs, same thread count: bitwise the same output (the split is deterministic). */
Test(simd_attention, deterministic_for_a_thread_count) {
    if (mk_detected_isa() < MK_ISA_AVX2) cr_skip_test("this CPU runs neither avx2 nor avx512");
    const acase c = AC("determinism", 1, 3000, 32, 2, 64, 64, 16, B, B, .sink_logit = 1);
    inputs in;
    inputs_make(&in, &c, 99);
    const int64_t n = c.T * c.Hq * c.Dv;
    for (int isa = MK_ISA_AVX2; isa <= MK_ISA_AVX512; isa++) {
        if ((mk_isa)isa > mk_detected_isa()) continue;
        for (int thr = 1; thr <= 3; thr++) {
            float *a = run_once(&in, (mk_isa)isa, thr, c.label);
            float *b = run_once(&in, (mk_isa)isa, thr, c.label);
            cr_expect(tu_same_bytes(a, b, sizeof(float) * (size_t)n), "%s [%s, %d threads]: two runs differ", c.label,
                      mk_isa_name((mk_isa)isa), thr);
            free(a);
            free(b);
        }
    }
    inputs_free(&in);
}

/* ---- AVX-512 without AVX512_BF16 ---------------------------------------------------------------------------------
 * On a CPU with AVX512_BF16 the avx512 kernel takes BF16 keys / values through vdpbf16ps (q and the probabilities
 * rounded to bf16); on AVX-512 CPUs without it, the same table widens BF16 to F32 and uses FP32 FMAs. The test hook
 * mki_attention_no_bf16dp_avx512 (kernels/simd/attention.inc) forces the second path here. It is exact up to float
 * rounding (both sides read the same bf16 values), so it must match the oracle to F32 accuracy, far below the BF16
 * tolerance that the vdpbf16ps path needs: that also shows the hook switched paths. */
#if defined(__x86_64__)
extern int mki_attention_no_bf16dp_avx512;

Test(simd_attention, avx512_bf16_data_without_vdpbf16ps) {
    if (mk_detected_isa() < MK_ISA_AVX512) cr_skip_test("this CPU does not run avx512");
    static const acase cases[] = {
        AC("pangu decode bf16, widening path", 1, 700, 64, 4, 192, 128, 128, B, B, .sink_logit = 1),
        AC("prefill bf16, widening path, odd dims, strided", 40, 90, 8, 2, 33, 17, 5, B, B, .strided = 1,
           .misalign = 1),
        AC("bf16 caches, f32 sinks, widening path", 20, 300, 16, 1, 64, 48, 7, B, F, .window = 50),
    };
    const double f32_tol = mki_selfcheck_tol(MK_OP_SINK_ATTENTION, MK_F32);
    for (int i = 0; i < 3; i++) {
        const acase *c = &cases[i];
        inputs in;
        inputs_make(&in, c, 2024 + (uint64_t)i);
        const int64_t n = c->T * c->Hq * c->Dv;
        float *ref = run_once(&in, MK_ISA_REF, 1, c->label);
        mki_attention_no_bf16dp_avx512 = 1;
        for (int thr = 1; thr <= 2; thr++) {
            float *got = run_once(&in, MK_ISA_AVX512, thr, c->label);
            const double nmse = tu_nmse(ref, got, n);
            cr_expect(nmse <= f32_tol, "%s [avx512 widening, %d threads]: NMSE %.3g > %.3g", c->label, thr, nmse,
                      f32_tol);
            free(got);
        }
        mki_attention_no_bf16dp_avx512 = 0;
        free(ref);
        inputs_free(&in);
    }
}
#endif
