/*
 * test_simd_norm.c: the SIMD kernels of kernels/simd/norm.inc and rope.inc (rmsnorm, rmsnorm_add, knorm,
 * knorm_rope, swiglu, rope) against the reference kernels, through the public API.
 *
 * Every case is run under mk_set_max_isa(MK_ISA_REF) (the oracle) and, for every SIMD ISA the CPU runs
 * (avx2, avx512 <= mk_detected_isa()), under mk_set_max_isa(isa), on identical seeded inputs. Checks:
 *   - outputs: NMSE = sum((isa - ref)^2) / sum(ref^2), in double, <= mki_selfcheck_tol(op, dtype) (the one tolerance
 *     table, dispatch/selfcheck.h: 1e-7 for every op here with F32 outputs, 5e-6 for knorm_rope with BF16 k_out);
 *   - knorm_rope with a BF16 k_out: also every element at most 1 bf16 ulp from the reference's BF16 (both round
 *     nearly the same real value to bf16, one from a float and one from a double: they may land on adjacent bf16
 *     values, never further apart), and at most 1% of the elements differ at all (truncation would fail);
 *   - everything that is not an output (gaps between strided rows and heads, the dims outside the rotary slice, the
 *     other blocks of a fused qkv row, read-only inputs, and 64-element guard zones around every buffer) is
 *     bit-identical to the input;
 *   - the ISA's result is bit-identical with 1 and with 2 threads (rows are never split inside);
 *   - mk_kernel_name(op) under the cap is the ISA's own name, so a kernel left unregistered fails.
 * Output buffers that are not also inputs start as NaN sentinels, so an output element left unwritten fails the
 * NMSE. Buffers are offset by 0 or 1 float from a 64-byte boundary (unaligned pointers).
 */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moekit.h"
#include "selfcheck.h"
#include "test_util.h"

#define GUARD 64          /* elements of guard zone before and after every buffer */
#define QKV_ROW 13568     /* openPangu fused qkv row: 64*192 + 4*192 + 4*128 */
#define K_OFF 12288       /* the K block inside the fused row */
#define HIDDEN 4608
#define THETA 25.6e6

/* ---- buffers with guards and an output mask -------------------------------------------------------------------- */
typedef struct tbuf {
    unsigned char *pristine; /* the input, [GUARD + misalign + n + GUARD] elements */
    unsigned char *is_out;   /* 1 where the op writes an output, per element */
    size_t esize;            /* 4 (F32) or 2 (BF16) */
    int64_t total;           /* elements including the guards */
    int64_t off;             /* element offset of the data pointer */
} tbuf;

static void tbuf_init(tbuf *b, mk_dtype dtype, int64_t n, int misalign, tu_rng *r, int fill_sentinel) {
    b->esize = dtype == MK_BF16 ? 2 : 4;
    b->off = GUARD + misalign;
    b->total = b->off + n + GUARD;
    b->pristine = aligned_alloc(64, (size_t)((b->total * (int64_t)b->esize + 63) / 64 * 64));
    b->is_out = calloc((size_t)b->total, 1);
    cr_assert(b->pristine && b->is_out, "out of memory");
    if (b->esize == 2) {
        tu_fill_u16((uint16_t *)b->pristine, b->total, TU_SENTINEL_BF16);
    } else {
        float *f = (float *)b->pristine;
        tu_fill_bits(f, b->total, TU_SENTINEL_BITS);
        if (!fill_sentinel) tu_fill_uniform(f + b->off, n, r, -2.0f, 2.0f);
    }
}

static void tbuf_free(tbuf *b) {
    free(b->pristine);
    free(b->is_out);
}

/* Marks elements [i0, i1) of every (t, h) head (strides in elements from the data pointer) as outputs. */
static void mark_heads(tbuf *b, int64_t data_off, int64_t T, int64_t H, int64_t ts, int64_t hs, int64_t i0, int64_t i1) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++)
            memset(b->is_out + b->off + data_off + t * ts + h * hs + i0, 1, (size_t)(i1 - i0));
}

/* ---- one case: up to 4 buffers and a call on working copies ---------------------------------------------------- */
typedef struct tcase tcase;
struct tcase {
    mk_op op;
    char label[160];
    mk_dtype out_dtype; /* picks the tolerance (knorm_rope k_out) */
    tbuf b[4];
    int nb;
    mk_status (*call)(const tcase *c, unsigned char *const *data); /* data[i] = data pointer of buffer i */
    /* parameters */
    int64_t T, dim, s0, s1, s2; /* rows: strides; heads: token/head strides */
    int64_t H, k_off;           /* heads, element offset of k inside buffer 0 */
    int64_t o_ts, o_hs;         /* k_out strides */
    int in_place, alias_up, with_q, with_k;
    float eps;
    const float *weight;
    mk_rope_cache *cache;
    int32_t *positions;
};

static mk_isa g_isas[2];
static int g_n_isas;

static void find_isas(void) {
    g_n_isas = 0;
    for (int i = MK_ISA_AVX2; i <= MK_ISA_AVX512; i++)
        if ((int)mk_detected_isa() >= i) g_isas[g_n_isas++] = (mk_isa)i;
}

static void run_under(const tcase *c, mk_isa isa, int n_threads, unsigned char **work) {
    cr_assert_eq(mk_set_max_isa(isa), MK_OK);
    cr_assert_eq(mk_selected_isa(), isa, "%s: cap %s not selected", c->label, mk_isa_name(isa));
    cr_assert_str_eq(mk_kernel_name(c->op), mk_isa_name(isa), "%s: under the %s cap, %s runs the '%s' kernel",
                     c->label, mk_isa_name(isa), mk_op_name(c->op), mk_kernel_name(c->op));
    cr_assert_eq(mk_set_num_threads(n_threads), MK_OK);
    unsigned char *data[4];
    for (int i = 0; i < c->nb; i++) {
        memcpy(work[i], c->b[i].pristine, (size_t)(c->b[i].total * (int64_t)c->b[i].esize));
        data[i] = work[i] + c->b[i].off * (int64_t)c->b[i].esize;
    }
    mk_status st = c->call(c, data);
    cr_assert_eq(st, MK_OK, "%s [%s]: status %s: %s", c->label, mk_isa_name(isa), mk_status_str(st), mk_last_error());
}

static double elem(const tbuf *b, const unsigned char *p, int64_t e) {
    if (b->esize == 2) {
        uint16_t h;
        memcpy(&h, p + 2 * e, 2);
        return (double)tu_bf16_to_f32(h);
    }
    float f;
    memcpy(&f, p + 4 * e, 4);
    return (double)f;
}

/* bf16 bit pattern to a monotonic integer, so that adjacent values differ by 1 across zero too */
static int32_t bf16_ordered(uint16_t h) { return (h & 0x8000) ? -(int32_t)(h & 0x7fff) : (int32_t)h; }

/* Compares the ISA's working copies (got) against the oracle's (want) and the pristine inputs. */
static void compare(const tcase *c, mk_isa isa, unsigned char *const *want, unsigned char *const *got) {
    const double tol = mki_selfcheck_tol(c->op, c->out_dtype);
    cr_assert(tol > 0.0 && tol <= 1e-5, "tolerance table: %g for %s", tol, mk_op_name(c->op));
    double num = 0.0, den = 0.0;
    int64_t n_out = 0, n_touched = 0, n_ulp = 0, first_touched = -1, first_ulp = -1, n_bf16 = 0, n_bf16_diff = 0;
    int first_touched_buf = -1, first_ulp_buf = -1;
    for (int i = 0; i < c->nb; i++) {
        const tbuf *b = &c->b[i];
        for (int64_t e = 0; e < b->total; e++) {
            if (b->is_out[e]) {
                const double w = elem(b, want[i], e), g = elem(b, got[i], e);
                num += (g - w) * (g - w);
                den += w * w;
                n_out++;
                if (b->esize == 2) {
                    uint16_t hw, hg;
                    memcpy(&hw, want[i] + 2 * e, 2);
                    memcpy(&hg, got[i] + 2 * e, 2);
                    const int d = abs(bf16_ordered(hw) - bf16_ordered(hg));
                    if (d > 1 && n_ulp++ == 0) first_ulp = e, first_ulp_buf = i;
                    n_bf16++;
                    n_bf16_diff += d != 0;
                }
            } else if (memcmp(got[i] + e * (int64_t)b->esize, b->pristine + e * (int64_t)b->esize, b->esize) != 0) {
                if (n_touched++ == 0) first_touched = e, first_touched_buf = i;
            }
        }
    }
    const double nmse = den > 0.0 ? num / den : (num == 0.0 ? 0.0 : INFINITY);
    cr_assert(n_out > 0 && den > 0.0, "%s: no outputs to compare", c->label);
    cr_expect(nmse <= tol, "%s [%s]: NMSE %.3g > %.3g over %lld outputs", c->label, mk_isa_name(isa), nmse, tol,
              (long long)n_out);
    cr_expect_eq(n_touched, 0, "%s [%s]: %lld non-output elements changed (first: buffer %d element %lld, %s)",
                 c->label, mk_isa_name(isa), (long long)n_touched, first_touched_buf,
                 (long long)(first_touched - (first_touched_buf >= 0 ? c->b[first_touched_buf].off : 0)),
                 first_touched >= 0 && (first_touched < c->b[first_touched_buf].off ||
                                        first_touched >= c->b[first_touched_buf].total - GUARD)
                     ? "guard zone"
                     : "inside");
    cr_expect_eq(n_ulp, 0, "%s [%s]: %lld bf16 outputs more than 1 ulp from the reference (first: buffer %d element %lld)",
                 c->label, mk_isa_name(isa), (long long)n_ulp, first_ulp_buf, (long long)first_ulp);
    /* A 1-ulp difference needs the float and the double value to straddle a bf16 rounding boundary: ~1e-4 of the
     * elements. Truncating instead of rounding would make about half of them differ. */
    cr_expect(n_bf16_diff <= n_bf16 / 100, "%s [%s]: %lld of %lld bf16 outputs differ from the reference by 1 ulp",
              c->label, mk_isa_name(isa), (long long)n_bf16_diff, (long long)n_bf16);
}

static void check_case(tcase *c) {
    unsigned char *want[4], *got[4], *got2[4];
    for (int i = 0; i < c->nb; i++) {
        /* 64-byte aligned like the input, so that misalign = 0 puts the data on a cache-line boundary */
        size_t bytes = (size_t)((c->b[i].total * (int64_t)c->b[i].esize + 63) / 64 * 64);
        want[i] = aligned_alloc(64, bytes);
        got[i] = aligned_alloc(64, bytes);
        got2[i] = aligned_alloc(64, bytes);
        cr_assert(want[i] && got[i] && got2[i], "out of memory");
    }
    run_under(c, MK_ISA_REF, 1, want);
    cr_assert(g_n_isas >= 1 || mk_detected_isa() == MK_ISA_REF, "no SIMD ISA found");
    for (int k = 0; k < g_n_isas; k++) {
        run_under(c, g_isas[k], 1, got);
        compare(c, g_isas[k], want, got);
        run_under(c, g_isas[k], 2, got2);
        for (int i = 0; i < c->nb; i++)
            cr_expect(tu_same_bytes(got[i], got2[i], (size_t)(c->b[i].total * (int64_t)c->b[i].esize)),
                      "%s [%s]: buffer %d differs between 1 and 2 threads", c->label, mk_isa_name(g_isas[k]), i);
    }
    for (int i = 0; i < c->nb; i++) {
        free(want[i]), free(got[i]), free(got2[i]);
        tbuf_free(&c->b[i]);
    }
}

static float *make_weight(int64_t n, tu_rng *r) {
    float *w = malloc(sizeof(float) * (size_t)n);
    cr_assert(w, "out of memory");
    tu_fill_uniform(w, n, r, 0.5f, 1.5f);
    return w;
}

/* ---- rmsnorm / rmsnorm_add / swiglu: row ops -------------------------------------------------------------------- */
static mk_status call_rmsnorm(const tcase *c, unsigned char *const *d) {
    const float *x = (const float *)d[0];
    float *out = c->in_place ? (float *)d[0] : (float *)d[1];
    return mk_rmsnorm(x, c->s0, c->weight, c->eps, c->T, c->dim, out, c->in_place ? c->s0 : c->s1);
}

static mk_status call_rmsnorm_add(const tcase *c, unsigned char *const *d) {
    return mk_rmsnorm_add((float *)d[0], c->s0, (const float *)d[1], c->s1, c->weight, c->eps, c->T, c->dim);
}

static mk_status call_swiglu(const tcase *c, unsigned char *const *d) {
    float *gate = (float *)d[0], *up = (float *)d[1];
    if (c->in_place) return mk_swiglu(gate, c->s0, up, c->s1, c->alias_up ? up : gate, c->alias_up ? c->s1 : c->s0, c->T, c->dim);
    return mk_swiglu(gate, c->s0, up, c->s1, (float *)d[2], c->s2, c->T, c->dim);
}

/* pad0/pad1/pad2: extra elements per row of the strides (0 = contiguous, stride passed as 0) */
static void row_case_scaled(mk_op op, int64_t T, int64_t dim, int64_t pad0, int64_t pad1, int64_t pad2, int misalign,
                            int in_place, int alias_up, float eps, float x_scale, uint64_t seed) {
    tu_rng r;
    tu_rng_seed(&r, seed);
    tcase c;
    memset(&c, 0, sizeof c);
    c.op = op;
    c.out_dtype = MK_F32;
    c.T = T, c.dim = dim, c.eps = eps, c.in_place = in_place, c.alias_up = alias_up;
    const int64_t st0 = dim + pad0, st1 = dim + pad1, st2 = dim + pad2;
    c.s0 = pad0 ? st0 : 0, c.s1 = pad1 ? st1 : 0, c.s2 = pad2 ? st2 : 0;
    float *w = make_weight(dim, &r);
    c.weight = w;
    snprintf(c.label, sizeof c.label, "%s T=%lld dim=%lld pads=%lld/%lld/%lld misalign=%d%s%s eps=%g x_scale=%g",
             mk_op_name(op), (long long)T, (long long)dim, (long long)pad0, (long long)pad1, (long long)pad2, misalign,
             in_place ? " in place" : "", alias_up ? " (out = up)" : "", (double)eps, (double)x_scale);
    if (op == MK_OP_RMSNORM) {
        c.call = call_rmsnorm;
        c.nb = in_place ? 1 : 2;
        tbuf_init(&c.b[0], MK_F32, T * st0, misalign, &r, 0);
        if (in_place) {
            mark_heads(&c.b[0], 0, T, 1, st0, 0, 0, dim);
        } else {
            tbuf_init(&c.b[1], MK_F32, T * st1, misalign, &r, 1);
            mark_heads(&c.b[1], 0, T, 1, st1, 0, 0, dim);
        }
    } else if (op == MK_OP_RMSNORM_ADD) {
        c.call = call_rmsnorm_add;
        c.nb = 2;
        tbuf_init(&c.b[0], MK_F32, T * st0, misalign, &r, 0); /* residual */
        tbuf_init(&c.b[1], MK_F32, T * st1, misalign, &r, 0); /* branch */
        mark_heads(&c.b[0], 0, T, 1, st0, 0, 0, dim);
    } else {
        c.call = call_swiglu;
        tbuf_init(&c.b[0], MK_F32, T * st0, misalign, &r, 0); /* gate */
        tbuf_init(&c.b[1], MK_F32, T * st1, misalign, &r, 0); /* up */
        /* spread the gate over [-12, 12) so that the sigmoid saturates on both sides in some lanes */
        float *g = (float *)c.b[0].pristine + c.b[0].off;
        for (int64_t i = 0; i < T * st0; i++) g[i] *= 6.0f;
        if (in_place) {
            c.nb = 2;
            if (alias_up)
                mark_heads(&c.b[1], 0, T, 1, st1, 0, 0, dim);
            else
                mark_heads(&c.b[0], 0, T, 1, st0, 0, 0, dim);
        } else {
            c.nb = 3;
            tbuf_init(&c.b[2], MK_F32, T * st2, misalign, &r, 1);
            mark_heads(&c.b[2], 0, T, 1, st2, 0, 0, dim);
        }
    }
    if (op != MK_OP_SWIGLU) { /* the normed input: x (rmsnorm) or branch (rmsnorm_add, buffer 1) */
        tbuf *xb = &c.b[op == MK_OP_RMSNORM_ADD ? 1 : 0];
        float *x = (float *)xb->pristine + xb->off;
        for (int64_t i = 0; i < xb->total - xb->off - GUARD; i++) x[i] *= x_scale;
    }
    check_case(&c);
    free(w);
}

static void row_case(mk_op op, int64_t T, int64_t dim, int64_t pad0, int64_t pad1, int64_t pad2, int misalign,
                     int in_place, int alias_up, float eps, uint64_t seed) {
    row_case_scaled(op, T, dim, pad0, pad1, pad2, misalign, in_place, alias_up, eps, 1.0f, seed);
}

static const int64_t odd_dims[] = {1, 5, 15, 16, 17, 33, 100};

Test(simd_norm, rmsnorm_pangu) {
    find_isas();
    row_case(MK_OP_RMSNORM, 1, HIDDEN, 0, 0, 0, 0, 0, 0, 1e-5f, 101);
    row_case(MK_OP_RMSNORM, 7, HIDDEN, 0, 0, 0, 1, 0, 0, 1e-5f, 102);
    row_case(MK_OP_RMSNORM, 2048, HIDDEN, 0, 0, 0, 0, 0, 0, 1e-5f, 103);
    row_case(MK_OP_RMSNORM, 2048, HIDDEN, 0, 0, 0, 1, 0, 0, 1e-5f, 104); /* unaligned rows, streaming stores */
}

Test(simd_norm, rmsnorm_pangu_in_place) {
    find_isas();
    row_case(MK_OP_RMSNORM, 7, HIDDEN, 0, 0, 0, 1, 1, 0, 1e-5f, 111);
    row_case(MK_OP_RMSNORM, 2048, HIDDEN, 0, 0, 0, 0, 1, 0, 1e-5f, 112);
}

Test(simd_norm, rmsnorm_odd_sizes) {
    find_isas();
    for (int i = 0; i < (int)TU_ARRAY_LEN(odd_dims); i++) {
        const int64_t d = odd_dims[i];
        row_case(MK_OP_RMSNORM, 1, d, 0, 0, 0, 1, 0, 0, 1e-5f, 120 + (uint64_t)i);
        row_case(MK_OP_RMSNORM, 5, d, 3, 7, 0, 1, 0, 0, 1e-6f, 130 + (uint64_t)i);
        row_case(MK_OP_RMSNORM, 3, d, 5, 0, 0, 0, 1, 0, 0.0f, 140 + (uint64_t)i);
    }
}

/* Rows where eps matters (mean(x^2) ~ 1e-6 against eps = 1e-5) and rows of extreme magnitude (float squares
 * underflow or overflow: 1e-25 and 1e25), where a float-only sum of squares would be wrong. */
Test(simd_norm, rmsnorm_eps_and_extreme_magnitudes) {
    find_isas();
    static const float scales[] = {1e-3f, 1e-25f, 1e25f};
    for (int i = 0; i < (int)TU_ARRAY_LEN(scales); i++) {
        const float eps = scales[i] == 1e-3f ? 1e-5f : 0.0f;
        row_case_scaled(MK_OP_RMSNORM, 3, 100, 0, 0, 0, 1, 0, 0, eps, scales[i], 150 + (uint64_t)i);
        row_case_scaled(MK_OP_RMSNORM, 2, HIDDEN, 0, 0, 0, 0, 1, 0, eps, scales[i], 160 + (uint64_t)i);
        row_case_scaled(MK_OP_RMSNORM_ADD, 3, 33, 0, 0, 0, 1, 0, 0, eps, scales[i], 170 + (uint64_t)i);
    }
}

Test(simd_norm, rmsnorm_add_pangu) {
    find_isas();
    row_case(MK_OP_RMSNORM_ADD, 1, HIDDEN, 0, 0, 0, 0, 0, 0, 1e-5f, 201);
    row_case(MK_OP_RMSNORM_ADD, 7, HIDDEN, 0, 0, 0, 1, 0, 0, 1e-5f, 202);
    row_case(MK_OP_RMSNORM_ADD, 2048, HIDDEN, 0, 0, 0, 1, 0, 0, 1e-5f, 203);
}

Test(simd_norm, rmsnorm_add_odd_sizes) {
    find_isas();
    for (int i = 0; i < (int)TU_ARRAY_LEN(odd_dims); i++) {
        const int64_t d = odd_dims[i];
        row_case(MK_OP_RMSNORM_ADD, 1, d, 0, 0, 0, 1, 0, 0, 1e-5f, 220 + (uint64_t)i);
        row_case(MK_OP_RMSNORM_ADD, 6, d, 2, 9, 0, 1, 0, 0, 1e-6f, 230 + (uint64_t)i);
    }
}

Test(simd_norm, swiglu_pangu) {
    find_isas();
    row_case(MK_OP_SWIGLU, 1, 1280, 0, 0, 0, 0, 0, 0, 0.0f, 301);
    row_case(MK_OP_SWIGLU, 7, 2560, 0, 0, 0, 1, 0, 0, 0.0f, 302);
    row_case(MK_OP_SWIGLU, 2048, 1280, 0, 0, 0, 1, 0, 0, 0.0f, 303);
    row_case(MK_OP_SWIGLU, 1024, 10240, 0, 0, 0, 0, 0, 0, 0.0f, 304); /* 126 MB: streaming stores */
    row_case(MK_OP_SWIGLU, 1024, 10240, 0, 0, 0, 1, 0, 0, 0.0f, 305);
}

Test(simd_norm, swiglu_odd_sizes_and_aliasing) {
    find_isas();
    for (int i = 0; i < (int)TU_ARRAY_LEN(odd_dims); i++) {
        const int64_t d = odd_dims[i];
        row_case(MK_OP_SWIGLU, 1, d, 0, 0, 0, 1, 0, 0, 0.0f, 320 + (uint64_t)i);
        row_case(MK_OP_SWIGLU, 4, d, 1, 6, 3, 1, 0, 0, 0.0f, 330 + (uint64_t)i);
        row_case(MK_OP_SWIGLU, 3, d, 2, 2, 0, 0, 1, 0, 0.0f, 340 + (uint64_t)i); /* out = gate */
        row_case(MK_OP_SWIGLU, 3, d, 2, 2, 0, 1, 1, 1, 0.0f, 350 + (uint64_t)i); /* out = up */
    }
}

/* ---- knorm / knorm_rope / rope: head views --------------------------------------------------------------------- */
static mk_rope_cache *make_cache(int64_t rot, int64_t off, mk_rope_style style, int64_t max_positions) {
    mk_rope_config cfg = {.rotary_dim = rot, .rotary_offset = off, .style = style, .theta = THETA,
                          .max_positions = max_positions};
    mk_rope_cache *cache = NULL;
    cr_assert_eq(mk_rope_cache_create(&cfg, &cache), MK_OK, "mk_rope_cache_create: %s", mk_last_error());
    return cache;
}

static mk_status call_knorm(const tcase *c, unsigned char *const *d) {
    mk_heads k = tu_heads((float *)d[0] + c->k_off, MK_F32, c->T, c->H, c->dim, c->s0, c->s1);
    return mk_knorm(&k, c->weight, c->eps);
}

static mk_status call_knorm_rope(const tcase *c, unsigned char *const *d) {
    mk_heads k = tu_heads((float *)d[0] + c->k_off, MK_F32, c->T, c->H, c->dim, c->s0, c->s1);
    mk_heads o = c->in_place ? k : tu_heads(d[1], c->out_dtype, c->T, c->H, c->dim, c->o_ts, c->o_hs);
    return mk_knorm_rope(&k, c->weight, c->eps, c->cache, c->positions, &o);
}

static mk_status call_rope(const tcase *c, unsigned char *const *d) {
    mk_heads q = tu_heads(d[0], MK_F32, c->T, c->H, c->dim, c->s0, c->s1);
    mk_heads k = tu_heads((float *)d[0] + c->k_off, MK_F32, c->T, 4, c->dim, c->s0, c->s1);
    return mk_rope(c->cache, c->positions, c->with_q ? &q : NULL, c->with_k ? &k : NULL);
}

/* T tokens of H heads of head_dim in rows of token_stride (head_stride; 0 = contiguous). knorm, knorm_rope: the
 * heads are k, at element k_off; in_place = k_out is k. rope: the heads are q, at element 0, and in_place = 1 also
 * rotates k = 4 heads at k_off of the same rows. first_pos < 0: random positions. */
static void heads_case_scaled(mk_op op, int64_t T, int64_t H, int64_t head_dim, int64_t token_stride,
                              int64_t head_stride, int64_t k_off, int misalign, int64_t rot, int64_t rot_off,
                              mk_rope_style style, int32_t first_pos, mk_dtype out_dtype, int in_place, float x_scale,
                              uint64_t seed) {
    tu_rng r;
    tu_rng_seed(&r, seed);
    tcase c;
    memset(&c, 0, sizeof c);
    c.op = op;
    c.out_dtype = op == MK_OP_KNORM_ROPE ? out_dtype : MK_F32;
    c.T = T, c.H = H, c.dim = head_dim, c.s0 = token_stride, c.s1 = head_stride, c.k_off = k_off;
    c.eps = 1e-5f, c.in_place = in_place;
    const int64_t hs = head_stride ? head_stride : head_dim, ts = token_stride ? token_stride : H * hs;
    float *w = make_weight(head_dim, &r);
    c.weight = w;
    int64_t max_pos = 0;
    if (op != MK_OP_KNORM) {
        max_pos = first_pos >= 100000 || head_dim == 192 ? 131072 : 4096; /* openPangu: 128k positions */
        c.cache = make_cache(rot, rot_off, style, max_pos);
        c.positions = malloc(sizeof(int32_t) * (size_t)(T ? T : 1));
        for (int64_t t = 0; t < T; t++)
            c.positions[t] = first_pos >= 0 ? first_pos + (int32_t)t : tu_rng_int(&r, 0, (int)max_pos - 1);
    }
    snprintf(c.label, sizeof c.label,
             "%s T=%lld H=%lld D=%lld ts=%lld hs=%lld misalign=%d x_scale=%g rot=%lld@%lld %s pos=%d%s%s",
             mk_op_name(op), (long long)T, (long long)H, (long long)head_dim, (long long)ts, (long long)hs, misalign,
             (double)x_scale, (long long)rot, (long long)rot_off, style == MK_ROPE_NEOX ? "neox" : "interleaved", first_pos,
             op == MK_OP_KNORM_ROPE ? (out_dtype == MK_BF16 ? " bf16 out" : " f32 out") : "",
             !in_place ? "" : op == MK_OP_ROPE ? " q and k" : " in place");
    /* buffer 0: the rows holding k (and q for rope) */
    tbuf_init(&c.b[0], MK_F32, T * ts + k_off + H * hs + head_dim, misalign, &r, 0);
    for (int64_t i = 0; i < c.b[0].total - c.b[0].off - GUARD; i++) ((float *)c.b[0].pristine + c.b[0].off)[i] *= x_scale;
    c.nb = 1;
    if (op == MK_OP_KNORM) {
        c.call = call_knorm;
        mark_heads(&c.b[0], k_off, T, H, ts, hs, 0, head_dim);
    } else if (op == MK_OP_KNORM_ROPE) {
        c.call = call_knorm_rope;
        if (in_place) {
            mark_heads(&c.b[0], k_off, T, H, ts, hs, 0, head_dim);
        } else {
            /* k_out: KV-cache slots with padding between tokens and heads */
            c.o_hs = head_dim + 3, c.o_ts = H * c.o_hs + 11;
            tbuf_init(&c.b[1], out_dtype, T * c.o_ts, misalign, &r, 1);
            mark_heads(&c.b[1], 0, T, H, c.o_ts, c.o_hs, 0, head_dim);
            c.nb = 2;
        }
    } else {
        c.call = call_rope;
        c.with_q = 1, c.with_k = in_place; /* rope: in_place = 1 rotates k (4 heads at k_off) too */
        mark_heads(&c.b[0], 0, T, H, ts, hs, rot_off, rot_off + rot);
        if (c.with_k) mark_heads(&c.b[0], k_off, T, 4, ts, hs, rot_off, rot_off + rot);
    }
    check_case(&c);
    mk_rope_cache_destroy(c.cache);
    free(c.positions);
    free(w);
}

static void heads_case(mk_op op, int64_t T, int64_t H, int64_t head_dim, int64_t token_stride, int64_t head_stride,
                       int64_t k_off, int misalign, int64_t rot, int64_t rot_off, mk_rope_style style,
                       int32_t first_pos, mk_dtype out_dtype, int in_place, uint64_t seed) {
    heads_case_scaled(op, T, H, head_dim, token_stride, head_stride, k_off, misalign, rot, rot_off, style, first_pos,
                      out_dtype, in_place, 1.0f, seed);
}

Test(simd_norm, knorm_pangu) {
    find_isas();
    heads_case(MK_OP_KNORM, 1, 4, 192, QKV_ROW, 0, K_OFF, 0, 0, 0, 0, 0, MK_F32, 0, 401);
    heads_case(MK_OP_KNORM, 7, 4, 192, QKV_ROW, 0, K_OFF, 1, 0, 0, 0, 0, MK_F32, 0, 402);
    heads_case(MK_OP_KNORM, 2048, 4, 192, 0, 0, 0, 1, 0, 0, 0, 0, MK_F32, 0, 403);
}

Test(simd_norm, knorm_odd_sizes) {
    find_isas();
    for (int i = 0; i < (int)TU_ARRAY_LEN(odd_dims); i++) {
        const int64_t d = odd_dims[i];
        heads_case(MK_OP_KNORM, 1, 1, d, 0, 0, 0, 1, 0, 0, 0, 0, MK_F32, 0, 420 + (uint64_t)i);
        heads_case(MK_OP_KNORM, 5, 3, d, 3 * (d + 2) + 5, d + 2, 7, 1, 0, 0, 0, 0, MK_F32, 0, 430 + (uint64_t)i);
    }
}

static void knorm_rope_pangu(mk_dtype out_dtype, int in_place, int misalign, uint64_t seed) {
    /* positions 0..2047 and 100000..100015 (theta 25.6e6, max_positions 131072); k inside the fused qkv row */
    heads_case(MK_OP_KNORM_ROPE, 2048, 4, 192, QKV_ROW, 0, K_OFF, misalign, 64, 0, MK_ROPE_INTERLEAVED, 0,
               out_dtype, in_place, seed);
    heads_case(MK_OP_KNORM_ROPE, 16, 4, 192, QKV_ROW, 0, K_OFF, misalign, 64, 0, MK_ROPE_INTERLEAVED, 100000,
               out_dtype, in_place, seed + 1);
    heads_case(MK_OP_KNORM_ROPE, 1, 4, 192, 0, 0, 0, misalign, 64, 0, MK_ROPE_INTERLEAVED, 100000, out_dtype,
               in_place, seed + 2);
}

/* Heads where eps matters (mean(k^2) ~ 1e-6 against eps = 1e-5) or the float squares under/overflow. */
Test(simd_norm, knorm_eps_and_extreme_magnitudes) {
    find_isas();
    static const float scales[] = {1e-3f, 1e-25f, 1e25f};
    for (int i = 0; i < (int)TU_ARRAY_LEN(scales); i++) {
        heads_case_scaled(MK_OP_KNORM, 3, 4, 192, 0, 0, 0, 1, 0, 0, 0, 0, MK_F32, 0, scales[i], 450 + (uint64_t)i);
        heads_case_scaled(MK_OP_KNORM_ROPE, 3, 4, 192, 0, 0, 0, 1, 64, 0, MK_ROPE_INTERLEAVED, 100000, MK_F32, 0,
                          scales[i], 460 + (uint64_t)i);
        heads_case_scaled(MK_OP_KNORM_ROPE, 3, 2, 37, 0, 0, 0, 0, 18, 3, MK_ROPE_NEOX, -1, MK_BF16, 0, scales[i],
                          470 + (uint64_t)i);
    }
}

Test(simd_norm, knorm_rope_pangu_f32) { find_isas(); knorm_rope_pangu(MK_F32, 0, 0, 501); }
Test(simd_norm, knorm_rope_pangu_f32_in_place) { find_isas(); knorm_rope_pangu(MK_F32, 1, 1, 511); }
Test(simd_norm, knorm_rope_pangu_bf16) { find_isas(); knorm_rope_pangu(MK_BF16, 0, 1, 521); }

Test(simd_norm, knorm_rope_odd_sizes) {
    find_isas();
    static const int64_t rots[] = {2, 6, 18, 30, 34};
    uint64_t seed = 540;
    for (int i = 0; i < (int)TU_ARRAY_LEN(rots); i++)
        for (int style = 0; style < 2; style++)
            for (int variant = 0; variant < 3; variant++) {
                const mk_dtype dt = variant == 2 ? MK_BF16 : MK_F32;
                heads_case(MK_OP_KNORM_ROPE, 5, 3, 37, 0, 0, 0, 1, rots[i], 3, (mk_rope_style)style, -1, dt,
                           variant == 1, seed++);
                heads_case(MK_OP_KNORM_ROPE, 1, 1, 37, 0, 0, 0, 0, rots[i], 0, (mk_rope_style)style, -1, dt,
                           variant == 1, seed++);
            }
    /* the whole head rotated, and a neox slice ending at the last dim */
    heads_case(MK_OP_KNORM_ROPE, 3, 2, 64, 0, 0, 0, 1, 64, 0, MK_ROPE_NEOX, -1, MK_F32, 0, seed++);
    heads_case(MK_OP_KNORM_ROPE, 3, 2, 192, 0, 0, 0, 1, 64, 128, MK_ROPE_NEOX, -1, MK_BF16, 0, seed++);
}

Test(simd_norm, rope_pangu) {
    find_isas();
    /* q [T, 64, 192] inside the fused qkv row (and, with the last flag, k [T, 4, 192] of the same rows) */
    heads_case(MK_OP_ROPE, 1, 64, 192, QKV_ROW, 0, K_OFF, 0, 64, 0, MK_ROPE_INTERLEAVED, 0, MK_F32, 0, 601);
    heads_case(MK_OP_ROPE, 7, 64, 192, QKV_ROW, 0, K_OFF, 1, 64, 0, MK_ROPE_INTERLEAVED, 100000, MK_F32, 1, 602);
    heads_case(MK_OP_ROPE, 2048, 64, 192, QKV_ROW, 0, K_OFF, 1, 64, 0, MK_ROPE_INTERLEAVED, 0, MK_F32, 1, 603);
    heads_case(MK_OP_ROPE, 16, 64, 192, QKV_ROW, 0, K_OFF, 0, 64, 0, MK_ROPE_NEOX, 100000, MK_F32, 0, 604);
}

Test(simd_norm, rope_odd_sizes) {
    find_isas();
    static const int64_t rots[] = {2, 6, 18, 30, 34};
    uint64_t seed = 640;
    for (int i = 0; i < (int)TU_ARRAY_LEN(rots); i++)
        for (int style = 0; style < 2; style++) {
            /* head_dim 37, rotary_offset 3, strided heads in rows that hold q (5 heads) then k (4 heads) */
            heads_case(MK_OP_ROPE, 6, 5, 37, 9 * 40 + 1, 40, 5 * 40, 1, rots[i], 3, (mk_rope_style)style, -1, MK_F32,
                       1, seed++);
            heads_case(MK_OP_ROPE, 1, 1, 37, 0, 0, 0, 0, rots[i], 0, (mk_rope_style)style, -1, MK_F32, 0, seed++);
            heads_case(MK_OP_ROPE, 3, 2, 37, 0, 0, 0, 1, rots[i], 37 - rots[i], (mk_rope_style)style, -1, MK_F32, 0,
                       seed++);
        }
}

/* Position 0 is cos = 1, sin = 0: the rotation must give back every input bit (it is a*1 - b*0 in every lane). */
Test(simd_norm, rope_position_zero_is_identity) {
    find_isas();
    for (int k = 0; k < g_n_isas; k++) {
        for (int style = 0; style < 2; style++) {
            mk_rope_cache *cache = make_cache(30, 3, (mk_rope_style)style, 8);
            tu_rng r;
            tu_rng_seed(&r, 700 + (uint64_t)style);
            enum { T = 3, H = 5, D = 37 };
            float x[T * H * D], before[T * H * D];
            tu_fill_uniform(x, T * H * D, &r, 0.5f, 2.0f);
            memcpy(before, x, sizeof x);
            int32_t pos[T] = {0, 0, 0};
            mk_heads q = tu_heads(x, MK_F32, T, H, D, 0, 0);
            cr_assert_eq(mk_set_max_isa(g_isas[k]), MK_OK);
            cr_assert_str_eq(mk_kernel_name(MK_OP_ROPE), mk_isa_name(g_isas[k]));
            TU_ASSERT_OK(mk_rope(cache, pos, &q, NULL));
            cr_expect(tu_same_bytes(x, before, sizeof x), "[%s] style %d: position 0 changed the input",
                      mk_isa_name(g_isas[k]), style);
            mk_rope_cache_destroy(cache);
        }
    }
}

/* Every op of the two groups is served by the SIMD table under each cap (a slot left on ref fails here even if
 * no case of that op ran). */
Test(simd_norm, kernels_registered) {
    static const mk_op ops[] = {MK_OP_RMSNORM, MK_OP_RMSNORM_ADD, MK_OP_KNORM, MK_OP_KNORM_ROPE, MK_OP_SWIGLU,
                                MK_OP_ROPE};
    find_isas();
    mk_cpu_info info;
    cr_assert_eq(mk_get_cpu_info(&info), MK_OK);
    if (info.avx2 && info.fma) cr_assert_geq(g_n_isas, 1, "the CPU has AVX2+FMA but no SIMD ISA is detected");
    for (int k = 0; k < g_n_isas; k++) {
        cr_assert_eq(mk_set_max_isa(g_isas[k]), MK_OK);
        for (int i = 0; i < (int)TU_ARRAY_LEN(ops); i++)
            cr_expect_str_eq(mk_kernel_name(ops[i]), mk_isa_name(g_isas[k]), "%s under the %s cap",
                             mk_op_name(ops[i]), mk_isa_name(g_isas[k]));
    }
}
