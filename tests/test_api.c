/*
 * test_api.c: version, status strings, mk_last_error, dtypes, mk_convert (bf16 round-to-nearest-even on hand-picked
 * bit patterns, NaN stays NaN).
 */
#include <criterion/criterion.h>

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moekit.h"
#include "test_util.h"

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float u2f(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* ---- version ---------------------------------------------------------------------------------------------- */
Test(api, version_matches_header) {
    cr_expect_eq(mk_version(), (unsigned)MOEKIT_VERSION, "mk_version() = 0x%x, header 0x%x", mk_version(),
                 (unsigned)MOEKIT_VERSION);
    cr_expect_eq(MOEKIT_VERSION, (0 << 16) | (1 << 8) | 0);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", MOEKIT_VERSION_MAJOR, MOEKIT_VERSION_MINOR, MOEKIT_VERSION_PATCH);
    cr_assert_not_null(mk_version_string());
    cr_expect_str_eq(mk_version_string(), want);
}

/* ---- status strings ----------------------------------------------------------------------------------------- */
Test(api, status_strings) {
    static const struct {
        mk_status s;
        const char *name;
    } all[] = {{MK_OK, "MK_OK"},         {MK_EINVAL, "MK_EINVAL"}, {MK_ENOMEM, "MK_ENOMEM"},
               {MK_EUNSUPPORTED, "MK_EUNSUPPORTED"}, {MK_EIO, "MK_EIO"}, {MK_EFORMAT, "MK_EFORMAT"},
               {MK_EINTERNAL, "MK_EINTERNAL"}};
    for (int i = 0; i < (int)TU_ARRAY_LEN(all); i++) {
        const char *s = mk_status_str(all[i].s);
        cr_assert_not_null(s, "mk_status_str(%s) is NULL", all[i].name);
        /* The documented form is "MK_EINVAL: invalid argument": the string starts with the enum name. */
        cr_expect(strncmp(s, all[i].name, strlen(all[i].name)) == 0 &&
                      (s[strlen(all[i].name)] == ':' || s[strlen(all[i].name)] == '\0'),
                  "mk_status_str(%s) = '%s'", all[i].name, s);
        for (int j = 0; j < i; j++)
            cr_expect(strcmp(s, mk_status_str(all[j].s)) != 0, "%s and %s share a string", all[i].name,
                      all[j].name);
    }
    /* Unknown values still give a static, non-NULL string. */
    cr_expect_not_null(mk_status_str((mk_status)99));
    cr_expect_not_null(mk_status_str((mk_status)-1));
}

/* ---- mk_last_error ------------------------------------------------------------------------------------------ */
Test(api, last_error_set_then_cleared) {
    float dst[2] = {0, 0}, src[2] = {1, 2};
    TU_EXPECT_OK(mk_convert(dst, MK_F32, src, MK_F32, 2));
    TU_EXPECT_FAIL(mk_convert(dst, MK_F32, src, MK_F32, -1), MK_EINVAL, "n");
    /* A later successful call clears the message. */
    TU_EXPECT_OK(mk_convert(dst, MK_F32, src, MK_F32, 2));
    cr_expect_str_eq(mk_last_error(), "");
}

static void *fail_in_thread(void *arg) {
    (void)arg;
    float d = 0;
    mk_status s = mk_convert(&d, MK_F32, NULL, MK_F32, 1);
    static int ok;
    ok = s == MK_EINVAL && mk_last_error()[0] != '\0';
    return &ok;
}

Test(api, last_error_is_per_thread) {
    float dst = 0, src = 1;
    TU_EXPECT_OK(mk_convert(&dst, MK_F32, &src, MK_F32, 1));
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, fail_in_thread, NULL), 0);
    void *ret = NULL;
    pthread_join(th, &ret);
    cr_expect(*(int *)ret, "the other thread did not see its own error");
    cr_expect_str_eq(mk_last_error(), "", "another thread's failure leaked into this thread: '%s'", mk_last_error());
}

/* ---- dtypes ------------------------------------------------------------------------------------------------- */
Test(api, dtype_size_and_name) {
    cr_expect_eq(mk_dtype_size(MK_F32), 4u);
    cr_expect_eq(mk_dtype_size(MK_BF16), 2u);
    cr_expect_eq(mk_dtype_size((mk_dtype)2), 0u);
    cr_expect_eq(mk_dtype_size((mk_dtype)-1), 0u);
    cr_expect_str_eq(mk_dtype_name(MK_F32), "f32");
    cr_expect_str_eq(mk_dtype_name(MK_BF16), "bf16");
    cr_expect_str_eq(mk_dtype_name((mk_dtype)7), "?");
    cr_expect_str_eq(mk_dtype_name((mk_dtype)-3), "?");
}

/* ---- mk_convert F32 -> BF16: hand-picked bit patterns, expected results worked out by hand ---------------------- */
typedef struct {
    uint32_t in;
    uint16_t out;
    const char *what;
} bf16_case;

static const bf16_case rne_cases[] = {
    {0x3f800000u, 0x3f80u, "1.0 exact"},
    {0x3f808000u, 0x3f80u, "tie, even (lsb 0) -> down"},
    {0x3f818000u, 0x3f82u, "tie, odd (lsb 1) -> up"},
    {0x3f808001u, 0x3f81u, "just above the tie -> up"},
    {0x3f807fffu, 0x3f80u, "just below the tie -> down"},
    {0xbf808001u, 0xbf81u, "negative, above the tie -> away from 0"},
    {0xbf818000u, 0xbf82u, "negative tie, odd -> up in magnitude"},
    {0xbf808000u, 0xbf80u, "negative tie, even -> down in magnitude"},
    {0x3fffffffu, 0x4000u, "carry into the exponent"},
    {0x7f7fffffu, 0x7f80u, "FLT_MAX rounds to +inf"},
    {0x7f7f7fffu, 0x7f7fu, "largest value that stays finite"},
    {0x7f800000u, 0x7f80u, "+inf"},
    {0xff800000u, 0xff80u, "-inf"},
    {0x00000000u, 0x0000u, "+0"},
    {0x80000000u, 0x8000u, "-0"},
    {0x00818000u, 0x0082u, "smallest normals, tie odd -> up"},
    {0x40490fdbu, 0x4049u, "pi: low half 0x0fdb < 0x8000 -> down"},
    {0x3dcccccdu, 0x3dcdu, "0.1: low half 0xcccd > 0x8000 -> up"},
};

Test(api, convert_f32_to_bf16_rne) {
    int64_t n = TU_ARRAY_LEN(rne_cases);
    float src[TU_ARRAY_LEN(rne_cases)];
    uint16_t dst[TU_ARRAY_LEN(rne_cases)];
    for (int64_t i = 0; i < n; i++) src[i] = u2f(rne_cases[i].in);
    TU_ASSERT_OK(mk_convert(dst, MK_BF16, src, MK_F32, n));
    for (int64_t i = 0; i < n; i++)
        cr_expect_eq(dst[i], rne_cases[i].out, "0x%08x (%s): got 0x%04x, want 0x%04x", rne_cases[i].in,
                     rne_cases[i].what, dst[i], rne_cases[i].out);
    /* One at a time too (a vector kernel may only take its scalar tail path for n = 1). */
    for (int64_t i = 0; i < n; i++) {
        uint16_t one = 0x1234;
        TU_ASSERT_OK(mk_convert(&one, MK_BF16, &src[i], MK_F32, 1));
        cr_expect_eq(one, rne_cases[i].out, "n=1, 0x%08x (%s): got 0x%04x", rne_cases[i].in, rne_cases[i].what, one);
    }
}

Test(api, convert_f32_to_bf16_subnormal_rne) {
    /* Subnormal inputs follow the same rule (no flush to zero is documented). */
    static const bf16_case sub[] = {
        {0x00008000u, 0x0000u, "subnormal tie, even -> 0"},
        {0x00018000u, 0x0002u, "subnormal tie, odd -> up"},
        {0x00010001u, 0x0001u, "subnormal, below the tie"},
        {0x807fffffu, 0x8080u, "largest negative subnormal rounds to -smallest normal"},
    };
    float src[4];
    uint16_t dst[4];
    for (int i = 0; i < 4; i++) src[i] = u2f(sub[i].in);
    TU_ASSERT_OK(mk_convert(dst, MK_BF16, src, MK_F32, 4));
    for (int i = 0; i < 4; i++)
        cr_expect_eq(dst[i], sub[i].out, "0x%08x (%s): got 0x%04x, want 0x%04x", sub[i].in, sub[i].what, dst[i],
                     sub[i].out);
}

static int bf16_is_nan(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x007fu) != 0; }

Test(api, convert_nan_stays_nan) {
    /* 0x7f800001 and 0xff80ffff have their payload only in the low 16 bits: truncation or naive rounding would
     * give +/-inf or carry into the sign. */
    static const uint32_t nans[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u,
                                    0x7fffffffu, 0xffffffffu, 0x7f80ffffu, 0x7f808000u};
    int64_t n = TU_ARRAY_LEN(nans);
    float src[TU_ARRAY_LEN(nans)];
    uint16_t dst[TU_ARRAY_LEN(nans)];
    for (int64_t i = 0; i < n; i++) src[i] = u2f(nans[i]);
    TU_ASSERT_OK(mk_convert(dst, MK_BF16, src, MK_F32, n));
    for (int64_t i = 0; i < n; i++) cr_expect(bf16_is_nan(dst[i]), "NaN 0x%08x -> 0x%04x is not NaN", nans[i], dst[i]);
    /* BF16 NaN -> F32 NaN. */
    uint16_t hn[3] = {0x7fc1u, 0xff81u, 0x7f81u};
    float back[3];
    TU_ASSERT_OK(mk_convert(back, MK_F32, hn, MK_BF16, 3));
    for (int i = 0; i < 3; i++) cr_expect(isnan(back[i]), "bf16 0x%04x -> %g", hn[i], (double)back[i]);
}

/* Round to nearest even written independently in the test, with explicit branches on the discarded half. */
static uint16_t rne_by_cases(uint32_t u) {
    uint16_t hi = (uint16_t)(u >> 16);
    uint32_t lo = u & 0xffffu;
    if (lo > 0x8000u || (lo == 0x8000u && (hi & 1u))) hi = (uint16_t)(hi + 1u);
    return hi;
}

Test(api, convert_f32_to_bf16_long_random) {
    /* An odd length so that vector bodies and tails are both exercised; random normal bit patterns (exponent
     * 1..254) plus some exact ties. */
    enum { N = 1037 };
    static float src[N];
    static uint16_t dst[N];
    tu_rng r;
    tu_rng_seed(&r, 42);
    for (int i = 0; i < N; i++) {
        uint32_t u = (uint32_t)tu_rng_next(&r);
        uint32_t e = 1u + (uint32_t)(tu_rng_next(&r) % 254u);
        u = (u & 0x807fffffu) | (e << 23);
        if (i % 7 == 0) u = (u & 0xffff0000u) | 0x8000u; /* exact tie */
        src[i] = u2f(u);
    }
    TU_ASSERT_OK(mk_convert(dst, MK_BF16, src, MK_F32, N));
    int bad = 0;
    for (int i = 0; i < N; i++) {
        uint16_t want = rne_by_cases(f2u(src[i]));
        if (dst[i] != want && bad++ < 5)
            cr_expect_eq(dst[i], want, "i=%d: 0x%08x -> 0x%04x, want 0x%04x", i, f2u(src[i]), dst[i], want);
    }
    cr_expect_eq(bad, 0, "%d of %d conversions wrong", bad, N);
}

Test(api, convert_bf16_to_f32_exact_and_copies) {
    uint16_t h[5] = {0x3f81u, 0xc2f7u, 0x0000u, 0x8000u, 0x0001u};
    float f[5];
    TU_ASSERT_OK(mk_convert(f, MK_F32, h, MK_BF16, 5));
    for (int i = 0; i < 5; i++)
        cr_expect_eq(f2u(f[i]), (uint32_t)h[i] << 16, "bf16 0x%04x -> 0x%08x", h[i], f2u(f[i]));

    /* F32 -> F32 and BF16 -> BF16 are plain copies, bit for bit (NaN payloads included). */
    float fs[4] = {u2f(0x7f800001u), -0.0f, 3.25f, u2f(0x00000003u)}, fd[4];
    TU_ASSERT_OK(mk_convert(fd, MK_F32, fs, MK_F32, 4));
    cr_expect(tu_same_bytes(fd, fs, sizeof fs), "f32 copy differs");
    uint16_t hs[3] = {0x7f81u, 0x1234u, 0xffffu}, hd[3];
    TU_ASSERT_OK(mk_convert(hd, MK_BF16, hs, MK_BF16, 3));
    cr_expect(tu_same_bytes(hd, hs, sizeof hs), "bf16 copy differs");
}

Test(api, convert_zero_count_writes_nothing) {
    float src[2] = {1, 2};
    uint16_t dst[2] = {0xabcdu, 0xabcdu};
    TU_EXPECT_OK(mk_convert(dst, MK_BF16, src, MK_F32, 0));
    cr_expect(dst[0] == 0xabcdu && dst[1] == 0xabcdu, "n = 0 wrote into dst");
}

Test(api, convert_bad_arguments) {
    float src[4] = {1, 2, 3, 4};
    uint16_t dst[4], keep[4];
    tu_fill_u16(dst, 4, TU_SENTINEL_BF16);
    memcpy(keep, dst, sizeof dst);
    TU_EXPECT_FAIL(mk_convert(NULL, MK_BF16, src, MK_F32, 4), MK_EINVAL, "dst");
    TU_EXPECT_FAIL(mk_convert(dst, MK_BF16, NULL, MK_F32, 4), MK_EINVAL, "src");
    TU_EXPECT_FAIL(mk_convert(dst, MK_BF16, src, MK_F32, -1), MK_EINVAL, "n");
    TU_EXPECT_FAIL(mk_convert(dst, (mk_dtype)5, src, MK_F32, 4), MK_EINVAL, "dst_dtype");
    TU_EXPECT_FAIL(mk_convert(dst, MK_BF16, src, (mk_dtype)5, 4), MK_EINVAL, "src_dtype");
    /* docs/api.md: overlapping dst and src is MK_EINVAL (checked) */
    float buf[8] = {1, 2, 3, 4, 5, 6, 7, 8}, bkeep[8];
    memcpy(bkeep, buf, sizeof buf);
    TU_EXPECT_FAIL2(mk_convert(buf + 1, MK_F32, buf, MK_F32, 4), MK_EINVAL, "dst", "src");
    TU_EXPECT_FAIL2(mk_convert((uint16_t *)(void *)buf + 1, MK_BF16, buf, MK_F32, 4), MK_EINVAL, "dst", "src");
    cr_expect(tu_same_bytes(buf, bkeep, sizeof buf), "a failed overlapping mk_convert wrote");
    cr_expect(tu_same_bytes(dst, keep, sizeof dst), "a failed mk_convert wrote into dst");
}
