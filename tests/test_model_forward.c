/*
 * test_model_forward.c: the reference model's forward pass (model/forward.c) on the tiny preset (mkm_gen into a
 * temporary directory).
 *
 *   - decode with the KV cache = a full recompute (one prefill of the whole sequence): the logits of every decode
 *     step within 1e-4 relative (max |a - b| / max |b|) of the matching row of the recompute;
 *   - reset starts a new sequence (the same prefill gives the same logits);
 *   - every ISA from ref up to mk_detected_isa() gives the same greedy tokens (and logits within 1e-3 relative);
 *   - a BF16 KV cache gives the same greedy tokens as F32 on the tiny model, and logits within 3e-2 relative (the
 *     keys, values and sinks are rounded to BF16: relative error 2^-9 per element, which stays well under 1e-2 in
 *     the logits of this model; measured about 2e-3);
 *   - packed weights (MOEKIT_MODEL_PACK=1) give the logits of raw weights (=0) within 1e-5 (k-order rounding);
 *   - bad input: missing directory, config.json without a required key, a checkpoint missing a tensor, a truncated
 *     checkpoint: an error status and a message, no model, no crash;
 *   - the KV-cache capacity (max_context) and bad tokens: MK_EINVAL, and the model stays usable.
 * The expected values never come from the code under test alone: the cache path is checked against the recompute
 * path, ISAs against the reference ISA, and the independent NumPy golden (tests/golden/) checks both against the
 * model description.
 */
#include <criterion/criterion.h>

#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"
#include "moekit.h"
#include "test_util.h"

/* ---- helpers -------------------------------------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_tree(const char *dir) {
    if (dir && dir[0]) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static char g_dir[256];

static void make_tiny(char *dir, size_t size, uint64_t seed) {
    snprintf(dir, size, "/tmp/moekit-fwd-XXXXXX");
    cr_assert_not_null(mkdtemp(dir), "mkdtemp failed");
    TU_ASSERT_OK(mkm_gen(MKM_PRESET_TINY, 0, seed, MK_F32, dir));
}

static void setup_tiny(void) { make_tiny(g_dir, sizeof g_dir, 1); }
static void teardown_tiny(void) { rm_tree(g_dir); }

static mkm_model *load(const char *dir, mk_dtype kv, int64_t max_context) {
    mkm_run_options o = {kv, max_context, 0};
    mkm_model *m = NULL;
    TU_ASSERT_OK(mkm_model_load(dir, &o, &m));
    cr_assert_not_null(m);
    cr_expect_str_eq(mk_last_error(), "", "mk_last_error() not empty after a successful load");
    return m;
}

static int32_t argmax(const float *v, int64_t n) {
    int64_t b = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return (int32_t)b;
}

/* max |a - b| / max |b| over n values (NaN-safe: returns +inf when anything is not finite). */
static double rel_err(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > num) num = d;
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return den > 0 ? num / den : num;
}

/* Greedy generation: prefill prompt, then n_new - 1 decode steps. tokens[n_new], rows[n_new * V] (may be NULL). */
static void greedy(mkm_model *m, const int32_t *prompt, int64_t n_prompt, int64_t n_new, int32_t *tokens,
                   float *rows) {
    const int64_t V = mkm_model_config(m)->vocab_size;
    float *l = malloc((size_t)V * sizeof *l);
    cr_assert_not_null(l);
    mkm_model_reset(m);
    TU_ASSERT_OK(mkm_model_forward(m, prompt, n_prompt, l, NULL));
    for (int64_t i = 0; i < n_new; i++) {
        if (i > 0) TU_ASSERT_OK(mkm_model_forward(m, &tokens[i - 1], 1, l, NULL));
        tokens[i] = argmax(l, V);
        if (rows) memcpy(rows + i * V, l, (size_t)V * sizeof *l);
    }
    free(l);
}

static const int32_t PROMPT[] = {1, 7, 3, 11, 2, 5, 9};
#define N_PROMPT ((int64_t)(sizeof PROMPT / sizeof PROMPT[0]))
#define N_NEW 6

/* ---- cache vs recompute ------------------------------------------------------------------------------------------ */

Test(model_forward, decode_matches_full_recompute, .init = setup_tiny, .fini = teardown_tiny, .timeout = 60) {
    mkm_model *m = load(g_dir, MK_F32, 64);
    const int64_t V = mkm_model_config(m)->vocab_size;
    int32_t toks[N_NEW];
    float *rows = malloc((size_t)(N_NEW * V) * sizeof(float));
    cr_assert_not_null(rows);
    greedy(m, PROMPT, N_PROMPT, N_NEW, toks, rows);

    /* one prefill of prompt + the first N_NEW - 1 generated tokens, all logits */
    const int64_t T = N_PROMPT + N_NEW - 1;
    int32_t seq[N_PROMPT + N_NEW];
    memcpy(seq, PROMPT, sizeof PROMPT);
    for (int i = 0; i < N_NEW - 1; i++) seq[N_PROMPT + i] = toks[i];
    float *all = malloc((size_t)(T * V) * sizeof(float)), *last = malloc((size_t)V * sizeof(float));
    cr_assert(all && last);
    mkm_model_reset(m);
    TU_ASSERT_OK(mkm_model_forward(m, seq, T, last, all));
    cr_expect(rel_err(last, all + (T - 1) * V, V) == 0.0, "logits != the last row of all_logits");
    double worst = 0;
    for (int i = 0; i < N_NEW; i++) {
        const float *full = all + (N_PROMPT - 1 + i) * V;
        const double e = rel_err(rows + i * V, full, V);
        if (e > worst) worst = e;
        cr_expect(e <= 1e-4, "step %d: cached logits differ from the full recompute by %.3e (relative)", i, e);
        cr_expect_eq(argmax(full, V), toks[i], "step %d: greedy token %d with the cache, %d recomputed", i, toks[i],
                     argmax(full, V));
    }
    cr_log_info("decode vs full recompute: max relative error %.3e", worst);
    /* the logits are not degenerate (a constant row would make every comparison above trivial) */
    float lo = rows[0], hi = rows[0];
    for (int64_t i = 0; i < V; i++) lo = fminf(lo, rows[i]), hi = fmaxf(hi, rows[i]);
    cr_expect(hi - lo > 1e-3f, "prefill logits are flat: [%g, %g]", lo, hi);

    /* reset: a new sequence gives the same prefill logits */
    mkm_model_reset(m);
    TU_ASSERT_OK(mkm_model_forward(m, PROMPT, N_PROMPT, last, NULL));
    cr_expect(rel_err(last, rows, V) <= 1e-6, "prefill after reset differs by %.3e", rel_err(last, rows, V));

    /* chunked prefill (3 + 4 tokens) = one prefill */
    mkm_model_reset(m);
    TU_ASSERT_OK(mkm_model_forward(m, PROMPT, 3, NULL, NULL));
    TU_ASSERT_OK(mkm_model_forward(m, PROMPT + 3, N_PROMPT - 3, last, NULL));
    cr_expect(rel_err(last, rows, V) <= 1e-4, "chunked prefill differs by %.3e", rel_err(last, rows, V));
    mkm_model_free(m);

    /* options = NULL: F32 cache, default capacity */
    m = NULL;
    TU_ASSERT_OK(mkm_model_load(g_dir, NULL, &m));
    TU_EXPECT_OK(mkm_model_forward(m, PROMPT, N_PROMPT, last, NULL));
    cr_expect(rel_err(last, rows, V) <= 1e-6, "options = NULL: prefill differs by %.3e", rel_err(last, rows, V));
    free(all), free(last), free(rows);
    mkm_model_free(m);
}

/* ---- ISAs -------------------------------------------------------------------------------------------------------- */

Test(model_forward, every_isa_same_greedy_tokens, .init = setup_tiny, .fini = teardown_tiny, .timeout = 120) {
    const mk_isa best = mk_detected_isa();
    int32_t want[N_NEW];
    float *want_rows = NULL;
    int64_t V = 0;
    for (int isa = MK_ISA_REF; isa <= (int)best; isa++) {
        TU_ASSERT_OK(mk_set_max_isa((mk_isa)isa));
        cr_assert_eq(mk_selected_isa(), (mk_isa)isa);
        mkm_model *m = load(g_dir, MK_F32, 32);
        V = mkm_model_config(m)->vocab_size;
        int32_t got[N_NEW];
        float *rows = malloc((size_t)(N_NEW * V) * sizeof(float));
        cr_assert_not_null(rows);
        greedy(m, PROMPT, N_PROMPT, N_NEW, got, rows);
        mkm_model_free(m);
        if (isa == MK_ISA_REF) {
            memcpy(want, got, sizeof want);
            want_rows = rows;
            continue;
        }
        for (int i = 0; i < N_NEW; i++)
            cr_expect_eq(got[i], want[i], "%s: token %d is %d, ref gives %d", mk_isa_name((mk_isa)isa), i, got[i],
                         want[i]);
        for (int i = 0; i < N_NEW; i++) {
            const double e = rel_err(rows + i * V, want_rows + i * V, V);
            cr_expect(e <= 1e-3, "%s: step %d logits differ from ref by %.3e", mk_isa_name((mk_isa)isa), i, e);
        }
        free(rows);
    }
    free(want_rows);
    mk_set_max_isa(best);
}

/* ---- BF16 KV cache ------------------------------------------------------------------------------------------------ */

Test(model_forward, bf16_kv_cache, .init = setup_tiny, .fini = teardown_tiny, .timeout = 60) {
    int32_t a[N_NEW], b[N_NEW];
    mkm_model *m = load(g_dir, MK_F32, 32);
    const int64_t V = mkm_model_config(m)->vocab_size;
    float *ra = malloc((size_t)(N_NEW * V) * sizeof(float)), *rb = malloc((size_t)(N_NEW * V) * sizeof(float));
    cr_assert(ra && rb);
    greedy(m, PROMPT, N_PROMPT, N_NEW, a, ra);
    mkm_model_free(m);
    m = load(g_dir, MK_BF16, 32);
    greedy(m, PROMPT, N_PROMPT, N_NEW, b, rb);
    mkm_model_free(m);
    double worst = 0;
    for (int i = 0; i < N_NEW; i++) {
        cr_expect_eq(a[i], b[i], "token %d: f32 cache %d, bf16 cache %d", i, a[i], b[i]);
        const double e = rel_err(rb + i * V, ra + i * V, V);
        if (e > worst) worst = e;
        cr_expect(e <= 3e-2, "step %d: bf16-cache logits differ by %.3e (relative)", i, e);
    }
    /* and the BF16 cache really is used: rounding keys and values must change the logits a little */
    cr_expect(worst > 0.0, "bf16 KV cache gives bit-identical logits: is it really BF16?");
    cr_log_info("bf16 vs f32 KV cache: max relative logit difference %.3e", worst);
    free(ra), free(rb);
}

/* ---- bad input ----------------------------------------------------------------------------------------------------- */

static void expect_load_fails(const char *dir, const char *must_name, const char *what) {
    mkm_model *m = (mkm_model *)(uintptr_t)1;
    mkm_run_options o = {MK_F32, 16, 0};
    const mk_status s = mkm_model_load(dir, &o, &m);
    char msg[512];
    tu_copy_last_error(msg, sizeof msg);
    cr_expect_neq(s, MK_OK, "%s: load succeeded", what);
    cr_expect_null(m, "%s: *model not NULL after a failure", what);
    cr_expect(msg[0] != '\0', "%s: empty error message", what);
    if (must_name) cr_expect(strstr(msg, must_name) != NULL, "%s: message '%s' does not name %s", what, msg, must_name);
    cr_log_info("%s: %s: %s", what, mk_status_str(s), msg);
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void write_all(const char *path, const char *buf, size_t len) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot write %s", path);
    cr_assert_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
}

/* Replaces the first occurrence of `from` by `to` (same length) in the file. */
static void patch_file(const char *path, const char *from, const char *to) {
    size_t len;
    char *buf = read_all(path, &len);
    const size_t n = strlen(from);
    cr_assert_eq(n, strlen(to));
    char *hit = NULL;
    for (size_t i = 0; i + n <= len && !hit; i++)
        if (memcmp(buf + i, from, n) == 0) hit = buf + i;
    cr_assert_not_null(hit, "%s not found in %s", from, path);
    memcpy(hit, to, n);
    write_all(path, buf, len);
    free(buf);
}

Test(model_forward, bad_input_is_an_error, .timeout = 60) {
    char dir[256], path[512];
    expect_load_fails("/nonexistent/moekit-model", "/nonexistent/moekit-model", "missing directory");

    /* config.json without hidden_size (renamed to an unknown key) */
    make_tiny(dir, sizeof dir, 2);
    snprintf(path, sizeof path, "%s/config.json", dir);
    patch_file(path, "\"hidden_size\"", "\"hidden_sizX\"");
    expect_load_fails(dir, "hidden_size", "config.json without hidden_size");
    rm_tree(dir);

    /* a tensor missing from the checkpoint (its name changed in the header) */
    make_tiny(dir, sizeof dir, 3);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    patch_file(path, "\"model.layers.0.self_attn.qkv_proj.weight\"", "\"model.layers.0.self_attn.qkv_proj.weighX\"");
    expect_load_fails(dir, "model.layers.0.self_attn.qkv_proj.weight", "checkpoint without a tensor");
    rm_tree(dir);

    /* a truncated checkpoint */
    make_tiny(dir, sizeof dir, 4);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    {
        size_t len;
        char *buf = read_all(path, &len);
        write_all(path, buf, len / 2);
        free(buf);
    }
    expect_load_fails(dir, NULL, "truncated checkpoint");
    rm_tree(dir);

    /* bad options */
    make_tiny(dir, sizeof dir, 5);
    mkm_model *m = NULL;
    mkm_run_options o = {(mk_dtype)7, 16, 0};
    TU_EXPECT_FAIL(mkm_model_load(dir, &o, &m), MK_EINVAL, "kv_dtype");
    cr_expect_null(m);
    o.kv_dtype = MK_F32;
    o.max_context = -1;
    TU_EXPECT_FAIL(mkm_model_load(dir, &o, &m), MK_EINVAL, "max_context");
    cr_expect_null(m);
    TU_EXPECT_FAIL(mkm_model_load(NULL, &o, &m), MK_EINVAL, "dir");
    rm_tree(dir);
}

Test(model_forward, max_context_and_bad_tokens, .init = setup_tiny, .fini = teardown_tiny, .timeout = 60) {
    mkm_model *m = load(g_dir, MK_F32, 8);
    const int64_t V = mkm_model_config(m)->vocab_size;
    float *l = malloc((size_t)V * sizeof *l), *l2 = malloc((size_t)V * sizeof *l2);
    cr_assert(l && l2);
    const int32_t nine[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    TU_EXPECT_FAIL(mkm_model_forward(m, nine, 9, l, NULL), MK_EINVAL, "max_context");
    TU_ASSERT_OK(mkm_model_forward(m, nine, 6, l, NULL));
    TU_EXPECT_FAIL(mkm_model_forward(m, nine, 3, l, NULL), MK_EINVAL, "max_context");
    TU_ASSERT_OK(mkm_model_forward(m, nine + 6, 1, l, NULL));
    TU_ASSERT_OK(mkm_model_forward(m, nine + 7, 1, l, NULL)); /* the 8th token fills the cache */
    TU_EXPECT_FAIL(mkm_model_forward(m, nine + 8, 1, l, NULL), MK_EINVAL, "max_context");

    /* the failed calls left the sequence intact: same logits as an uninterrupted 8-token prefill */
    mkm_model_reset(m);
    TU_ASSERT_OK(mkm_model_forward(m, nine, 8, l2, NULL));
    cr_expect(rel_err(l, l2, V) <= 1e-4, "after the rejected calls the logits differ by %.3e", rel_err(l, l2, V));

    mkm_model_reset(m);
    const int32_t bad[2] = {1, (int32_t)V};
    TU_EXPECT_FAIL(mkm_model_forward(m, bad, 2, l, NULL), MK_EINVAL, "tokens");
    const int32_t neg[1] = {-1};
    TU_EXPECT_FAIL(mkm_model_forward(m, neg, 1, l, NULL), MK_EINVAL, "tokens");
    TU_EXPECT_FAIL(mkm_model_forward(m, nine, 0, l, NULL), MK_EINVAL, "n_tokens");
    TU_EXPECT_FAIL(mkm_model_forward(m, NULL, 1, l, NULL), MK_EINVAL, "tokens");
    TU_EXPECT_FAIL(mkm_model_forward(NULL, nine, 1, l, NULL), MK_EINVAL, "model");
    TU_ASSERT_OK(mkm_model_forward(m, nine, 1, l, NULL));
    free(l), free(l2);
    mkm_model_free(m);
}

/* ---- packed weights ------------------------------------------------------------------------------------------------ */

Test(model_forward, packed_weights_match_raw, .init = setup_tiny, .fini = teardown_tiny, .timeout = 60) {
    /* MOEKIT_MODEL_PACK=1 packs every matrix (mk_pack_weights), =0 none; the GEMM/FFN kernels promise the same
     * results for packed and raw weights up to the order of the k sums (raw F32 weights at <= 8 rows take a direct
     * kernel that sums in a different order than the packed micro-kernel), so the greedy tokens must agree and the
     * logits stay within 1e-5 (measured: ~2e-6; F32 rounding-order noise grows with depth, not a loosened bound for
     * a wrong result: a wrong weight or row gives errors of order 1). */
    int32_t a[N_NEW], b[N_NEW];
    setenv("MOEKIT_MODEL_PACK", "0", 1);
    mkm_model *m = load(g_dir, MK_F32, 32);
    const int64_t V = mkm_model_config(m)->vocab_size;
    float *ra = malloc((size_t)(N_NEW * V) * sizeof(float)), *rb = malloc((size_t)(N_NEW * V) * sizeof(float));
    cr_assert(ra && rb);
    greedy(m, PROMPT, N_PROMPT, N_NEW, a, ra);
    mkm_model_free(m);
    setenv("MOEKIT_MODEL_PACK", "1", 1);
    m = load(g_dir, MK_F32, 32);
    greedy(m, PROMPT, N_PROMPT, N_NEW, b, rb);
    mkm_model_free(m);
    unsetenv("MOEKIT_MODEL_PACK");
    for (int i = 0; i < N_NEW; i++) {
        cr_expect_eq(a[i], b[i], "token %d: raw %d, packed %d", i, a[i], b[i]);
        const double e = rel_err(rb + i * V, ra + i * V, V);
        cr_expect(e <= 1e-5, "step %d: packed-weight logits differ from raw by %.3e", i, e);
    }
    free(ra), free(rb);
}
