/* test_util.c: see test_util.h. No Criterion here, no library kernels: only the public API (mk_last_error). */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void tu_rng_seed(tu_rng *r, uint64_t seed) { r->state = seed; }

uint64_t tu_rng_next(tu_rng *r) {
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double tu_rng_unit(tu_rng *r) { return (double)(tu_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

float tu_rng_uniform(tu_rng *r, float lo, float hi) {
    float v = (float)(lo + (hi - lo) * tu_rng_unit(r));
    return v < hi ? v : lo; /* rounding to float can reach hi */
}

int tu_rng_int(tu_rng *r, int lo, int hi) {
    uint64_t span = (uint64_t)((int64_t)hi - (int64_t)lo + 1);
    return (int)((int64_t)lo + (int64_t)(tu_rng_next(r) % span));
}

void tu_fill_uniform(float *p, int64_t n, tu_rng *r, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) p[i] = tu_rng_uniform(r, lo, hi);
}

void tu_fill_int(float *p, int64_t n, tu_rng *r, int lo, int hi) {
    for (int64_t i = 0; i < n; i++) p[i] = (float)tu_rng_int(r, lo, hi);
}

void tu_fill_grid(float *p, int64_t n, tu_rng *r, int max_steps, int frac_bits) {
    for (int64_t i = 0; i < n; i++) p[i] = ldexpf((float)tu_rng_int(r, -max_steps, max_steps), -frac_bits);
}

void tu_fill_const(float *p, int64_t n, float v) {
    for (int64_t i = 0; i < n; i++) p[i] = v;
}

void tu_fill_bits(float *p, int64_t n, uint32_t bits) {
    for (int64_t i = 0; i < n; i++) memcpy(&p[i], &bits, sizeof bits);
}

void tu_fill_u16(uint16_t *p, int64_t n, uint16_t v) {
    for (int64_t i = 0; i < n; i++) p[i] = v;
}

uint16_t tu_bf16_trunc(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)(u >> 16);
}

int tu_is_bf16_exact(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (u & 0xffffu) == 0;
}

float tu_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

int tu_to_bf16_exact(uint16_t *dst, const float *src, int64_t n) {
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
        if (!tu_is_bf16_exact(src[i])) ok = 0;
        dst[i] = tu_bf16_trunc(src[i]);
    }
    return ok;
}

static double nmse_ratio(double num, double den) {
    if (num != num) return num; /* NaN */
    if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
    return num / den;
}

double tu_nmse(const float *want, const float *got, int64_t n) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)want[i] - (double)got[i];
        num += d * d;
        den += (double)want[i] * (double)want[i];
    }
    return nmse_ratio(num, den);
}

double tu_nmse_d(const double *want, const float *got, int64_t n) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = want[i] - (double)got[i];
        num += d * d;
        den += want[i] * want[i];
    }
    return nmse_ratio(num, den);
}

double tu_max_abs_diff(const float *want, const float *got, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)want[i] - (double)got[i]);
        if (d != d) return d;
        if (d > m) m = d;
    }
    return m;
}

double tu_max_abs_diff_d(const double *want, const float *got, int64_t n) {
    double m = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs(want[i] - (double)got[i]);
        if (d != d) return d;
        if (d > m) m = d;
    }
    return m;
}

int tu_same_bytes(const void *a, const void *b, size_t n) { return memcmp(a, b, n) == 0; }

mk_heads tu_heads(void *data, mk_dtype dtype, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                  int64_t token_stride, int64_t head_stride) {
    mk_heads v;
    v.data = data;
    v.dtype = dtype;
    v.n_tokens = n_tokens;
    v.n_heads = n_heads;
    v.head_dim = head_dim;
    v.token_stride = token_stride;
    v.head_stride = head_stride;
    return v;
}

int64_t tu_heads_off(const mk_heads *v, int64_t t, int64_t h, int64_t i) {
    int64_t hs = v->head_stride ? v->head_stride : v->head_dim;
    int64_t ts = v->token_stride ? v->token_stride : v->n_heads * v->head_dim;
    return t * ts + h * hs + i;
}

double tu_heads_get(const mk_heads *v, int64_t t, int64_t h, int64_t i) {
    int64_t off = tu_heads_off(v, t, h, i);
    if (v->dtype == MK_BF16) return (double)tu_bf16_to_f32(((const uint16_t *)v->data)[off]);
    return (double)((const float *)v->data)[off];
}

void tu_rope_head_f64(double *x, int64_t rot_off, int64_t rot_dim, mk_rope_style style, double theta, double pos) {
    int64_t half = rot_dim / 2;
    double *s = x + rot_off;
    for (int64_t i = 0; i < half; i++) {
        double inv_freq = pow(theta, -2.0 * (double)i / (double)rot_dim);
        double ang = pos * inv_freq;
        double c = cos(ang), sn = sin(ang);
        int64_t ia = style == MK_ROPE_NEOX ? i : 2 * i;
        int64_t ib = style == MK_ROPE_NEOX ? i + half : 2 * i + 1;
        double a = s[ia], b = s[ib];
        s[ia] = a * c - b * sn;
        s[ib] = b * c + a * sn;
    }
}

static int is_ident_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

int tu_msg_names(const char *msg, const char *name) {
    size_t len = strlen(name);
    if (!msg || len == 0) return 0;
    for (const char *p = strstr(msg, name); p; p = strstr(p + 1, name)) {
        int left_ok = p == msg || !is_ident_char(p[-1]);
        int right_ok = !is_ident_char(p[len]);
        if (left_ok && right_ok) return 1;
    }
    return 0;
}

int tu_err_names(const char *name) { return tu_msg_names(mk_last_error(), name); }

void tu_copy_last_error(char *buf, size_t size) {
    const char *m = mk_last_error();
    if (!m) m = "(mk_last_error() returned NULL)";
    snprintf(buf, size, "%s", m);
}
