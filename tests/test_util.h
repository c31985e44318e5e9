/*
 * test_util.h: small helpers shared by the Criterion tests (deterministic RNG, fills, error metrics, mk_heads views,
 * an independent double-precision RoPE, error-message checks).
 *
 * Every test file uses the OLD-style Criterion assertions (<criterion/criterion.h>: cr_assert, cr_expect,
 * cr_assert_eq, ...) and never <criterion/new/assert.h>: the two must not be mixed. The TU_* macros below expand to
 * old-style assertions, so include <criterion/criterion.h> before using them. test_util.c itself does not use
 * Criterion.
 *
 * Expected values in the tests never come from the library: they are hand computed or produced by a formula
 * written in the test, in double precision.
 */
#ifndef MOEKIT_TEST_UTIL_H
#define MOEKIT_TEST_UTIL_H

#include "moekit.h"

#include <stddef.h>
#include <stdint.h>

/* ---- deterministic RNG: splitmix64 ---------------------------------------------------------------------------- */
typedef struct tu_rng {
    uint64_t state;
} tu_rng;

void tu_rng_seed(tu_rng *r, uint64_t seed);
uint64_t tu_rng_next(tu_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double tu_rng_unit(tu_rng *r);
/* Uniform float in [lo, hi). */
float tu_rng_uniform(tu_rng *r, float lo, float hi);
/* Uniform integer in [lo, hi] (inclusive). */
int tu_rng_int(tu_rng *r, int lo, int hi);

/* ---- fills ------------------------------------------------------------------------------------------------ */
void tu_fill_uniform(float *p, int64_t n, tu_rng *r, float lo, float hi);
/* Integers in [lo, hi] stored as float (exact in float and in bf16 for |v| <= 256). */
void tu_fill_int(float *p, int64_t n, tu_rng *r, int lo, int hi);
/* Random values m * 2^-frac_bits with integer m in [-max_steps, max_steps]: exactly representable in bf16 when
 * max_steps <= 256. */
void tu_fill_grid(float *p, int64_t n, tu_rng *r, int max_steps, int frac_bits);
void tu_fill_const(float *p, int64_t n, float v);
/* Fills with a raw bit pattern (e.g. TU_SENTINEL_BITS, a NaN with a recognisable payload). */
void tu_fill_bits(float *p, int64_t n, uint32_t bits);
void tu_fill_u16(uint16_t *p, int64_t n, uint16_t v);
#define TU_SENTINEL_BITS 0x7fc0beefu
#define TU_SENTINEL_BF16 0x7fd5u

/* ---- bf16 (test side, independent of the library) ---------------------------------------------------------- */
/* The bf16 of f by truncation. Only used on values the test knows to be exactly representable;
 * tu_is_bf16_exact() checks that. */
uint16_t tu_bf16_trunc(float f);
int tu_is_bf16_exact(float f);
float tu_bf16_to_f32(uint16_t h);
/* Converts n floats, which must all be exactly representable (returns 0 if one is not, 1 otherwise). */
int tu_to_bf16_exact(uint16_t *dst, const float *src, int64_t n);

/* ---- error metrics (double precision) ---------------------------------------------------------------------- */
/* NMSE = sum((want - got)^2) / sum(want^2). If sum(want^2) == 0: 0 when got == want everywhere, else +inf. NaN in
 * got gives NaN, so always compare as `nmse <= tol` (false for NaN). */
double tu_nmse(const float *want, const float *got, int64_t n);
double tu_nmse_d(const double *want, const float *got, int64_t n);
/* max |want - got|; NaN if any difference is NaN. */
double tu_max_abs_diff(const float *want, const float *got, int64_t n);
double tu_max_abs_diff_d(const double *want, const float *got, int64_t n);
int tu_same_bytes(const void *a, const void *b, size_t n);

/* ---- mk_heads views ---------------------------------------------------------------------------------------- */
mk_heads tu_heads(void *data, mk_dtype dtype, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                  int64_t token_stride, int64_t head_stride);
/* Element offset of (t, h, i), resolving strides of 0 as documented (contiguous). */
int64_t tu_heads_off(const mk_heads *v, int64_t t, int64_t h, int64_t i);
/* Element (t, h, i) as double, F32 or BF16. */
double tu_heads_get(const mk_heads *v, int64_t t, int64_t h, int64_t i);

/* ---- independent RoPE oracle --------------------------------------------------------------------------------- */
/* Rotates x[rot_off, rot_off + rot_dim) of one head (double precision, angle pos * theta^(-2i/rot_dim) computed
 * in double, cos/sin in double). style: MK_ROPE_INTERLEAVED pairs (2i, 2i+1), MK_ROPE_NEOX pairs (i, i + rot/2). */
void tu_rope_head_f64(double *x, int64_t rot_off, int64_t rot_dim, mk_rope_style style, double theta, double pos);

/* ---- error messages ------------------------------------------------------------------------------------------ */
/* 1 if msg contains `name` as a whole word (neighbours are not [A-Za-z0-9_]). */
int tu_msg_names(const char *msg, const char *name);
/* tu_msg_names(mk_last_error(), name) */
int tu_err_names(const char *name);
/* Copies mk_last_error() (before any other moekit call can replace it) into buf. */
void tu_copy_last_error(char *buf, size_t size);

/* Expects `call` to return `want_status`, and mk_last_error() to be non-empty and to name `arg1` or `arg2` (pass
 * the same name twice when only one is acceptable; two are given where the fault can legitimately be blamed on
 * either, e.g. rotary_offset + rotary_dim > head_dim). */
#define TU_EXPECT_FAIL2(call, want_status, arg1, arg2)                                                           \
    do {                                                                                                         \
        mk_status tu_s_ = (call);                                                                                \
        char tu_msg_[512];                                                                                       \
        tu_copy_last_error(tu_msg_, sizeof tu_msg_);                                                             \
        cr_expect_eq(tu_s_, (want_status), "%s: status %d (%s), want %d; last error '%s'", #call, (int)tu_s_,    \
                     mk_status_str(tu_s_), (int)(want_status), tu_msg_);                                        \
        cr_expect(tu_msg_[0] != '\0', "%s: mk_last_error() is empty after a failure", #call);                    \
        cr_expect(tu_msg_names(tu_msg_, (arg1)) || tu_msg_names(tu_msg_, (arg2)),                                \
                  "%s: mk_last_error() = '%s' names neither '%s' nor '%s'", #call, tu_msg_, (arg1), (arg2));       \
    } while (0)

#define TU_EXPECT_FAIL(call, want_status, arg) TU_EXPECT_FAIL2(call, want_status, arg, arg)

/* Expects `call` to return MK_OK and leave mk_last_error() empty. */
#define TU_EXPECT_OK(call)                                                                                       \
    do {                                                                                                         \
        mk_status tu_s_ = (call);                                                                                \
        char tu_msg_[512];                                                                                       \
        tu_copy_last_error(tu_msg_, sizeof tu_msg_);                                                             \
        cr_expect_eq(tu_s_, MK_OK, "%s: status %d (%s); last error '%s'", #call, (int)tu_s_,                     \
                     mk_status_str(tu_s_), tu_msg_);                                                             \
        cr_expect_str_eq(tu_msg_, "", "%s: mk_last_error() not empty after MK_OK", #call);                       \
    } while (0)

#define TU_ASSERT_OK(call)                                                                                       \
    do {                                                                                                         \
        mk_status tu_s_ = (call);                                                                                \
        char tu_msg_[512];                                                                                       \
        tu_copy_last_error(tu_msg_, sizeof tu_msg_);                                                             \
        cr_assert_eq(tu_s_, MK_OK, "%s: status %d (%s); last error '%s'", #call, (int)tu_s_,                     \
                     mk_status_str(tu_s_), tu_msg_);                                                             \
    } while (0)

#define TU_ARRAY_LEN(a) ((int64_t)(sizeof(a) / sizeof((a)[0])))

#endif /* MOEKIT_TEST_UTIL_H */
