/*
 * test_model_load.c: loading of the reference model's checkpoint (model/json.c, config.c, safetensors.c, gen.c).
 *
 *   config: the real openPangu-R-72B-2512 config.json (written here from section 1 of the shared reference)
 *     parses to the right values; the vLLM aliases give the same config; a missing required key, a contradictory
 *     alias pair, a bad GQA ratio, an out-of-range mlp_only_layers index, a wrong type, an unsupported feature:
 *     MK_EFORMAT / MK_EUNSUPPORTED naming the key(s); malformed JSON (every truncation of the real file, trailing
 *     garbage, bad escapes, bad UTF-8, bad numbers, deep nesting, duplicate keys): MK_EFORMAT, no crash.
 *   json: the strict parser on valid input (escapes, surrogate pairs, integers, lookup).
 *   safetensors: hand-built images (bytes written here) round-trip through the buffer, single-file and sharded
 *     paths; truncated files, header length past the end or above the cap, offsets past the end, overlaps,
 *     size/shape mismatch, unknown dtype, missing tensor, wrong shape, wrong dtype: the right status and a message
 *     naming the tensor; F16 -> F32 exact on hand-picked bit patterns (subnormals, inf, NaN); F32 -> BF16 rounding.
 *   gen: mkm_gen(TINY) into a temporary directory, reopened: exactly the expected tensor names and shapes (the list
 *     is computed here from the config values), the init scales, determinism in the seed.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "model.h"
#include "moekit.h"
#include "test_util.h"

/* ---- helpers ------------------------------------------------------------------------------------------------- */
static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static char *make_tmpdir(void) {
    char *d = strdup("/tmp/moekit-load-XXXXXX");
    cr_assert_not_null(d);
    cr_assert_not_null(mkdtemp(d), "mkdtemp: %s", strerror(errno));
    return d;
}

static void rm_tmpdir(char *d) {
    if (d) nftw(d, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(d);
}

static char *path_in(const char *dir, const char *name) {
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    cr_assert_not_null(p);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "fopen %s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(data, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

static void expect_error_names(mk_status got, mk_status want, const char *name) {
    char msg[512];
    tu_copy_last_error(msg, sizeof msg);
    cr_expect_eq(got, want, "status %s, want %s; message '%s' (expected to name '%s')", mk_status_str(got),
                 mk_status_str(want), msg, name);
    cr_expect(tu_msg_names(msg, name), "message '%s' does not name '%s'", msg, name);
}

static uint32_t f2u(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* ---- the real config.json ------------------------------------------------------------------------------------ */
/* openPangu-R-72B-2512 config.json (shared reference, section 1), one key per line. */
static const char *const REAL[] = {
    "\"architectures\": [\"PanguProMoEV2ForCausalLM\"]",
    "\"attention_dropout\": 0.0",
    ("\"auto_map\": {\"AutoConfig\": \"configuration_pangu_moe.PanguProMoEConfig\", \"AutoModel\": "
     "\"modeling_pangu_moe.PanguProMoEModel\", \"AutoModelForCausalLM\": "
     "\"modeling_pangu_moe.PanguProMoEV2ForCausalLM\"}"),
    "\"mlp_only_layers\": [0, 1, 2, 3]",
    "\"bos_token_id\": 1",
    "\"eos_token_id\": 45892",
    "\"hidden_act\": \"silu\"",
    "\"hidden_size\": 4608",
    "\"initializer_range\": 0.02",
    "\"intermediate_size\": 10240",
    "\"max_position_embeddings\": 131072",
    "\"model_type\": \"PanguProMoE\"",
    "\"moe_intermediate_size\": 1280",
    "\"num_attention_heads\": 64",
    "\"num_experts\": 80",
    "\"norm_topk_prob\": true",
    "\"router_enable_expert_bias\": true",
    "\"num_experts_per_tok\": 8",
    "\"num_hidden_layers\": 50",
    "\"num_key_value_heads\": 4",
    "\"output_router_logits\": false",
    "\"rms_norm_eps\": 1e-05",
    "\"rope_theta\": 25600000",
    "\"routed_scaling_factor\": 2.5",
    "\"sandwich_norm\": true",
    "\"shared_expert_intermediate_size\": 2560",
    "\"tie_word_embeddings\": false",
    "\"torch_dtype\": \"bfloat16\"",
    "\"transformers_version\": \"4.48.2\"",
    "\"use_cache\": true",
    "\"vocab_size\": 153600",
    "\"qk_nope_dim\": 128",
    "\"qk_rope_dim\": 64",
    "\"v_channels\": 128",
    "\"param_sink_number\": 128",
    "\"param_sink_with_value\": true",
    "\"num_mtp_layers\": 1",
};

static int line_is_key(const char *line, const char *key) {
    size_t n = strlen(key);
    return line[0] == '"' && !strncmp(line + 1, key, n) && line[1 + n] == '"' && line[2 + n] == ':';
}

/* The real config without the keys in `drop` (NULL-terminated) and with the "key": value lines of `extra`
 * (NULL-terminated) added in front. Caller frees. */
static char *make_config(const char *const *drop, const char *const *extra) {
    size_t cap = 8192;
    char *s = malloc(cap);
    cr_assert_not_null(s);
    size_t n = (size_t)sprintf(s, "{\n");
    int first = 1;
    for (int i = 0; extra && extra[i]; i++) {
        n += (size_t)sprintf(s + n, "%s  %s", first ? "" : ",\n", extra[i]);
        first = 0;
    }
    for (size_t i = 0; i < sizeof REAL / sizeof REAL[0]; i++) {
        int skip = 0;
        for (int d = 0; drop && drop[d]; d++) skip |= line_is_key(REAL[i], drop[d]);
        if (skip) continue;
        n += (size_t)sprintf(s + n, "%s  %s", first ? "" : ",\n", REAL[i]);
        first = 0;
        cr_assert(n < cap - 512);
    }
    sprintf(s + n, "\n}\n");
    return s;
}

static mk_status parse_str(const char *json, mkm_config *cfg) { return mkm_config_parse(json, strlen(json), cfg); }

static mk_status parse_with(const char *const *drop, const char *const *extra, mkm_config *cfg) {
    char *j = make_config(drop, extra);
    mk_status s = parse_str(j, cfg);
    free(j);
    return s;
}

static void expect_real_values(const mkm_config *c) {
    cr_expect_eq(c->hidden_size, 4608);
    cr_expect_eq(c->intermediate_size, 10240);
    cr_expect_eq(c->moe_intermediate_size, 1280);
    cr_expect_eq(c->shared_expert_intermediate_size, 2560);
    cr_expect_eq(c->num_hidden_layers, 50);
    cr_expect_eq(c->num_attention_heads, 64);
    cr_expect_eq(c->num_key_value_heads, 4);
    cr_expect_eq(c->qk_rope_dim, 64);
    cr_expect_eq(c->qk_nope_dim, 128);
    cr_expect_eq(c->v_channels, 128);
    cr_expect_eq(c->num_experts, 80);
    cr_expect_eq(c->num_experts_per_tok, 8);
    cr_expect_eq(c->vocab_size, 153600);
    cr_expect_eq(c->max_position_embeddings, 131072);
    cr_expect_eq(c->param_sink_number, 128);
    cr_expect_eq(c->param_sink_with_value, 1);
    cr_expect_eq(c->norm_topk_prob, 1);
    cr_expect_eq(c->router_enable_expert_bias, 1);
    cr_expect_eq(c->sandwich_norm, 1);
    cr_expect_eq(c->tie_word_embeddings, 0);
    cr_expect_eq(c->rope_interleaved, 1, "rope_interleaved is absent: the default is interleaved");
    cr_expect_eq(c->num_mtp_layers, 1);
    cr_expect_eq(c->rms_norm_eps, 1e-5);
    cr_expect_eq(c->rope_theta, 25600000.0);
    cr_expect_eq(c->routed_scaling_factor, 2.5);
    cr_expect_eq(c->sliding_window, 0);
    for (int i = 0; i < MKM_MAX_LAYERS; i++)
        cr_expect_eq(c->is_dense_layer[i], i < 4, "is_dense_layer[%d] = %d", i, c->is_dense_layer[i]);
}

Test(model_load, config_real_72b) {
    mkm_config c;
    char *j = make_config(NULL, NULL);
    TU_ASSERT_OK(parse_str(j, &c));
    cr_expect_str_eq(mk_last_error(), "");
    expect_real_values(&c);

    /* and through the file path, as a directory and as the file itself */
    char *dir = make_tmpdir(), *file = path_in(dir, "config.json");
    write_bytes(file, j, strlen(j));
    mkm_config c2;
    memset(&c2, 0xAB, sizeof c2);
    TU_ASSERT_OK(mkm_config_load(dir, &c2));
    expect_real_values(&c2);
    memset(&c2, 0xAB, sizeof c2);
    TU_ASSERT_OK(mkm_config_load(file, &c2));
    expect_real_values(&c2);
    free(file);
    rm_tmpdir(dir);
    free(j);
}

Test(model_load, config_vllm_aliases) {
    const char *drop[] = {"num_experts", "mlp_only_layers", "shared_expert_intermediate_size", NULL};
    const char *extra[] = {"\"n_routed_experts\": 80", "\"first_k_dense_replace\": 4", "\"n_shared_experts\": 2",
                           "\"rope_interleave\": true", NULL};
    mkm_config c;
    TU_ASSERT_OK(parse_with(drop, extra, &c));
    expect_real_values(&c);

    /* both names present and consistent: fine */
    const char *both[] = {"\"n_routed_experts\": 80", "\"first_k_dense_replace\": 4", "\"n_shared_experts\": 2",
                          "\"rope_interleave\": true", "\"rope_interleaved\": true", NULL};
    TU_ASSERT_OK(parse_with(NULL, both, &c));
    expect_real_values(&c);

    /* num_nextn_predict_layers is the alias of num_mtp_layers */
    const char *drop_mtp[] = {"num_mtp_layers", NULL};
    const char *nextn[] = {"\"num_nextn_predict_layers\": 1", NULL};
    TU_ASSERT_OK(parse_with(drop_mtp, nextn, &c));
    cr_expect_eq(c.num_mtp_layers, 1);

    /* rope_interleave = false is honoured */
    const char *neox[] = {"\"rope_interleave\": false", NULL};
    TU_ASSERT_OK(parse_with(NULL, neox, &c));
    cr_expect_eq(c.rope_interleaved, 0);

    /* unknown keys and null values are ignored; sliding_window null is none */
    const char *unk[] = {"\"some_future_key\": {\"a\": [1, 2, {\"b\": null}]}", "\"sliding_window\": null",
                         "\"rope_scaling\": null", NULL};
    TU_ASSERT_OK(parse_with(NULL, unk, &c));
    expect_real_values(&c);
    const char *sw[] = {"\"sliding_window\": 128", NULL};
    TU_ASSERT_OK(parse_with(NULL, sw, &c));
    cr_expect_eq(c.sliding_window, 128);
    const char *sw_off[] = {"\"sliding_window\": 128", "\"use_sliding_window\": false", NULL};
    TU_ASSERT_OK(parse_with(NULL, sw_off, &c));
    cr_expect_eq(c.sliding_window, 0);
}

Test(model_load, config_missing_required_key) {
    static const char *const keys[] = {"hidden_size",        "num_hidden_layers",     "num_attention_heads",
                                       "qk_rope_dim",        "qk_nope_dim",           "v_channels",
                                       "vocab_size",         "max_position_embeddings", "rms_norm_eps",
                                       "rope_theta",         "intermediate_size",     "moe_intermediate_size",
                                       "num_experts",        "num_experts_per_tok"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *drop[] = {keys[i], NULL};
        mkm_config c;
        mk_status s = parse_with(drop, NULL, &c);
        expect_error_names(s, MK_EFORMAT, keys[i]);
        cr_expect(strstr(mk_last_error(), "config.json") != NULL, "'%s' does not name the file", mk_last_error());
    }
    /* null is the same as absent */
    const char *drop_h[] = {"hidden_size", NULL};
    const char *null_h[] = {"\"hidden_size\": null", NULL};
    mkm_config c;
    expect_error_names(parse_with(drop_h, null_h, &c), MK_EFORMAT, "hidden_size");

    /* intermediate_size is only required when a layer is dense */
    const char *no_dense[] = {"mlp_only_layers", "intermediate_size", NULL};
    TU_ASSERT_OK(parse_with(no_dense, NULL, &c));
    for (int l = 0; l < 50; l++) cr_expect_eq(c.is_dense_layer[l], 0);
    /* num_key_value_heads defaults to num_attention_heads (MHA) */
    const char *no_kv[] = {"num_key_value_heads", NULL};
    TU_ASSERT_OK(parse_with(no_kv, NULL, &c));
    cr_expect_eq(c.num_key_value_heads, 64);
    /* neither shared key: no shared expert */
    const char *no_shared[] = {"shared_expert_intermediate_size", NULL};
    TU_ASSERT_OK(parse_with(no_shared, NULL, &c));
    cr_expect_eq(c.shared_expert_intermediate_size, 0);
}

Test(model_load, config_contradictions) {
    mkm_config c;
    const char *experts[] = {"\"n_routed_experts\": 64", NULL};
    mk_status s = parse_with(NULL, experts, &c);
    expect_error_names(s, MK_EFORMAT, "num_experts");
    expect_error_names(s, MK_EFORMAT, "n_routed_experts");

    const char *dense[] = {"\"first_k_dense_replace\": 3", NULL};
    s = parse_with(NULL, dense, &c);
    expect_error_names(s, MK_EFORMAT, "mlp_only_layers");
    expect_error_names(s, MK_EFORMAT, "first_k_dense_replace");

    const char *shared[] = {"\"n_shared_experts\": 1", NULL};
    s = parse_with(NULL, shared, &c);
    expect_error_names(s, MK_EFORMAT, "shared_expert_intermediate_size");
    expect_error_names(s, MK_EFORMAT, "n_shared_experts");

    const char *rope[] = {"\"rope_interleaved\": true", "\"rope_interleave\": false", NULL};
    s = parse_with(NULL, rope, &c);
    expect_error_names(s, MK_EFORMAT, "rope_interleaved");
    expect_error_names(s, MK_EFORMAT, "rope_interleave");

    const char *drop_kv[] = {"num_key_value_heads", NULL};
    const char *kv5[] = {"\"num_key_value_heads\": 5", NULL};
    s = parse_with(drop_kv, kv5, &c);
    expect_error_names(s, MK_EFORMAT, "num_attention_heads");
    expect_error_names(s, MK_EFORMAT, "num_key_value_heads");

    const char *drop_layers[] = {"mlp_only_layers", NULL};
    const char *out_of_range[] = {"\"mlp_only_layers\": [0, 1, 2, 50]", NULL};
    expect_error_names(parse_with(drop_layers, out_of_range, &c), MK_EFORMAT, "mlp_only_layers");
    const char *negative[] = {"\"mlp_only_layers\": [-1]", NULL};
    expect_error_names(parse_with(drop_layers, negative, &c), MK_EFORMAT, "mlp_only_layers");
    const char *not_int[] = {"\"mlp_only_layers\": [0.5]", NULL};
    expect_error_names(parse_with(drop_layers, not_int, &c), MK_EFORMAT, "mlp_only_layers");
    const char *k_range[] = {"\"first_k_dense_replace\": 51", NULL};
    expect_error_names(parse_with(drop_layers, k_range, &c), MK_EFORMAT, "first_k_dense_replace");

    const char *drop_topk[] = {"num_experts_per_tok", NULL};
    const char *topk[] = {"\"num_experts_per_tok\": 81", NULL};
    s = parse_with(drop_topk, topk, &c);
    expect_error_names(s, MK_EFORMAT, "num_experts_per_tok");

    const char *drop_rope[] = {"qk_rope_dim", NULL};
    const char *odd[] = {"\"qk_rope_dim\": 63", NULL};
    expect_error_names(parse_with(drop_rope, odd, &c), MK_EFORMAT, "qk_rope_dim");

    const char *drop_layers_n[] = {"num_hidden_layers", NULL};
    const char *too_many[] = {"\"num_hidden_layers\": 257", NULL};
    expect_error_names(parse_with(drop_layers_n, too_many, &c), MK_EFORMAT, "num_hidden_layers");
    const char *zero[] = {"\"num_hidden_layers\": 0", NULL};
    expect_error_names(parse_with(drop_layers_n, zero, &c), MK_EFORMAT, "num_hidden_layers");
}

Test(model_load, config_types_and_unsupported) {
    mkm_config c;
    const char *drop_h[] = {"hidden_size", NULL};
    const char *str_h[] = {"\"hidden_size\": \"4608\"", NULL};
    expect_error_names(parse_with(drop_h, str_h, &c), MK_EFORMAT, "hidden_size");
    const char *frac_h[] = {"\"hidden_size\": 4608.5", NULL};
    expect_error_names(parse_with(drop_h, frac_h, &c), MK_EFORMAT, "hidden_size");
    const char *float_ok[] = {"\"hidden_size\": 4608.0", NULL};
    TU_ASSERT_OK(parse_with(drop_h, float_ok, &c));
    cr_expect_eq(c.hidden_size, 4608);
    const char *drop_b[] = {"norm_topk_prob", NULL};
    const char *int_b[] = {"\"norm_topk_prob\": 1", NULL};
    expect_error_names(parse_with(drop_b, int_b, &c), MK_EFORMAT, "norm_topk_prob");
    const char *drop_eps[] = {"rms_norm_eps", NULL};
    const char *neg_eps[] = {"\"rms_norm_eps\": -1e-5", NULL};
    expect_error_names(parse_with(drop_eps, neg_eps, &c), MK_EFORMAT, "rms_norm_eps");

    const char *scaling[] = {"\"rope_scaling\": {\"type\": \"yarn\", \"factor\": 4}", NULL};
    expect_error_names(parse_with(NULL, scaling, &c), MK_EUNSUPPORTED, "rope_scaling");
    const char *drop_act[] = {"hidden_act", NULL};
    const char *gelu[] = {"\"hidden_act\": \"gelu\"", NULL};
    expect_error_names(parse_with(drop_act, gelu, &c), MK_EUNSUPPORTED, "hidden_act");
    const char *bias[] = {"\"attention_bias\": true", NULL};
    expect_error_names(parse_with(NULL, bias, &c), MK_EUNSUPPORTED, "attention_bias");
    const char *scalar[] = {"\"param_sink_scalar\": 1.0", NULL};
    expect_error_names(parse_with(NULL, scalar, &c), MK_EUNSUPPORTED, "param_sink_scalar");

    /* top-level value not an object; missing file */
    expect_error_names(parse_str("[1, 2]", &c), MK_EFORMAT, "object");
    expect_error_names(mkm_config_load("/nonexistent/moekit/dir", &c), MK_EIO, "moekit");
    cr_expect(strstr(mk_last_error(), "No such file") != NULL, "'%s'", mk_last_error());
    cr_expect_eq(mkm_config_parse("{}", 2, NULL), MK_EINVAL);
}

/* Malformed JSON: MK_EFORMAT with a line/column, never a crash (the sanitizer build checks the bounds). */
static void expect_bad_json(const char *text, size_t len) {
    mkm_config c;
    char *copy = malloc(len ? len : 1); /* exactly len bytes: a read past the end is an ASan error */
    cr_assert_not_null(copy);
    memcpy(copy, text, len);
    mk_status s = mkm_config_parse(copy, len, &c);
    free(copy);
    cr_expect_eq(s, MK_EFORMAT, "input '%.*s': status %s (%s)", (int)(len > 80 ? 80 : len), text, mk_status_str(s),
                 mk_last_error());
    cr_expect(strstr(mk_last_error(), "config.json") != NULL, "message '%s' does not name the file", mk_last_error());
    /* rejected by the JSON parser itself, not later for a missing key */
    cr_expect(strstr(mk_last_error(), "invalid JSON") != NULL, "input '%.*s': message '%s' is not a JSON error",
              (int)(len > 80 ? 80 : len), text, mk_last_error());
}

#define BAD(lit) expect_bad_json(lit, sizeof(lit) - 1)

Test(model_load, config_malformed_json) {
    char *j = make_config(NULL, NULL);
    const size_t len = strlen(j);
    /* every truncation of the real file */
    for (size_t n = 0; n < len - 1; n++) expect_bad_json(j, n);
    /* a truncation names the position */
    mkm_config c;
    cr_expect_eq(mkm_config_parse(j, len / 2, &c), MK_EFORMAT);
    cr_expect(strstr(mk_last_error(), "line ") && strstr(mk_last_error(), "column "), "'%s'", mk_last_error());
    /* trailing garbage */
    char *g = malloc(len + 8);
    cr_assert_not_null(g);
    sprintf(g, "%s x", j);
    expect_bad_json(g, strlen(g));
    sprintf(g, "%s{}", j);
    expect_bad_json(g, strlen(g));
    free(g);
    free(j);

    BAD("");
    BAD("   \n\t ");
    BAD("{\"a\": \"x\\q\"}");         /* unknown escape */
    BAD("{\"a\": \"\\u12G4\"}");      /* bad hex */
    BAD("{\"a\": \"\\u12\"}");        /* short \u */
    BAD("{\"a\": \"\\ud800\"}");      /* lone high surrogate */
    BAD("{\"a\": \"\\udc00\"}");      /* lone low surrogate */
    BAD("{\"a\": \"\\ud800\\u0041\"}"); /* high + non-low */
    BAD("{\"a\": \"tab\there\"}");    /* raw control character */
    BAD("{\"a\": \"\xc0\x80\"}");     /* overlong NUL */
    BAD("{\"a\": \"\xed\xa0\x80\"}"); /* UTF-8 encoded surrogate */
    BAD("{\"a\": \"\xf5\x80\x80\x80\"}"); /* above U+10FFFF */
    BAD("{\"a\": \"\xe4\xb8\"}");     /* truncated sequence */
    BAD("{\"a\": \"abc");             /* unterminated */
    BAD("{\"a\": \"abc\\");           /* unterminated escape */
    BAD("{\"a\": 01}");
    BAD("{\"a\": 1.}");
    BAD("{\"a\": .5}");
    BAD("{\"a\": +1}");
    BAD("{\"a\": -}");
    BAD("{\"a\": 1e}");
    BAD("{\"a\": 1e+}");
    BAD("{\"a\": 1e400}");
    BAD("{\"a\": NaN}");
    BAD("{\"a\": Infinity}");
    BAD("{\"a\": 0x10}");
    BAD("{\"a\": [1, 2,]}");
    BAD("{\"a\": 1,}");
    BAD("{\"a\" 1}");
    BAD("{a: 1}");
    BAD("{'a': 1}");
    BAD("{\"a\": 1 /* c */}");
    BAD("{\"a\": tru}");
    BAD("{\"a\": nul}");
    BAD("{\"a\": falsey}");
    BAD("{\"a\": 1}}");
    BAD("{\"a\": 1, \"a\": 1}"); /* duplicate key */
    BAD("{\"hidden_size\": 1, \"b\": {\"x\": 1, \"x\": 2}}");
    BAD("{\"a\": 1}\0");
    BAD("\0{}");
    /* deep nesting: far beyond the limit, and just past it */
    char deep[4002];
    memset(deep, '[', 2000);
    memset(deep + 2000, ']', 2000);
    expect_bad_json(deep, 4000);
    char obj[8000];
    size_t n = 0;
    for (int i = 0; i < 1000; i++) n += (size_t)sprintf(obj + n, "{\"a\":");
    expect_bad_json(obj, n);
    /* a depth of 20 inside an unknown key is fine */
    char *ok = make_config(NULL, (const char *[]){"\"x\": [[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]", NULL});
    TU_EXPECT_OK(parse_str(ok, &c));
    free(ok);
}

/* ---- the JSON parser on valid input ------------------------------------------------------------------------------ */
Test(model_load, json_valid_values) {
    const char *text =
        "\xef\xbb\xbf { \"s\": \"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\u4e2d\\ud83d\\ude00\xe2\x82\xac\","
        " \"n\": [0, -0, 12, -9223372036854775808, 9223372036854775807, 9223372036854775808, 1.5e-3,"
        " 1E+2, 4608.0], \"t\": true, \"f\": false, \"z\": null, \"e\": {}, \"a\": [], "
        "\"k\\u0000x\": 1 }";
    mkj_doc *doc = NULL;
    const mkj_value *root = NULL;
    char err[256];
    mk_status s = mkj_parse(text, strlen(text), NULL, &doc, &root, err, sizeof err);
    cr_assert_eq(s, MK_OK, "%s", err);
    cr_assert_eq(root->type, MKJ_OBJECT);
    cr_expect_eq(root->n, 8);
    const mkj_value *v = mkj_get(root, "s");
    cr_assert_not_null(v);
    const char want[] = "a\"b\\c/d\b\f\n\r\t\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80\xe2\x82\xac";
    cr_expect_eq(v->n, sizeof want - 1);
    cr_expect(memcmp(v->u.string, want, sizeof want) == 0, "decoded string differs");
    const mkj_value *n = mkj_get(root, "n");
    cr_assert(n && n->type == MKJ_ARRAY && n->n == 9);
    cr_expect(n->u.items[0].is_integer && n->u.items[0].u.num.integer == 0);
    cr_expect(n->u.items[1].is_integer && n->u.items[1].u.num.integer == 0 && signbit(n->u.items[1].u.num.number));
    cr_expect(n->u.items[2].is_integer && n->u.items[2].u.num.integer == 12);
    cr_expect(n->u.items[3].is_integer && n->u.items[3].u.num.integer == INT64_MIN);
    cr_expect(n->u.items[4].is_integer && n->u.items[4].u.num.integer == INT64_MAX);
    cr_expect(!n->u.items[5].is_integer && n->u.items[5].u.num.number == 9223372036854775808.0);
    cr_expect(!n->u.items[6].is_integer && n->u.items[6].u.num.number == 1.5e-3);
    cr_expect(!n->u.items[7].is_integer && n->u.items[7].u.num.number == 100.0);
    cr_expect(!n->u.items[8].is_integer && n->u.items[8].u.num.number == 4608.0);
    cr_expect_eq(mkj_get(root, "t")->type, MKJ_TRUE);
    cr_expect_eq(mkj_get(root, "f")->type, MKJ_FALSE);
    cr_expect_eq(mkj_get(root, "z")->type, MKJ_NULL);
    cr_expect(mkj_get(root, "e")->type == MKJ_OBJECT && mkj_get(root, "e")->n == 0);
    cr_expect(mkj_get(root, "a")->type == MKJ_ARRAY && mkj_get(root, "a")->n == 0);
    cr_expect_null(mkj_get(root, "k"), "a key with an embedded NUL must not match its prefix");
    cr_expect_null(mkj_get(root, "missing"));
    /* document order is kept */
    cr_expect_str_eq(root->u.obj.members[0].key, "s");
    cr_expect_str_eq(root->u.obj.members[7].key, "k");
    cr_expect_eq(root->u.obj.members[7].key_len, 3);
    mkj_free(doc);

    /* lookups in a big object, and a duplicate far apart */
    char *big = malloc(200000);
    cr_assert_not_null(big);
    size_t len = (size_t)sprintf(big, "{");
    for (int i = 0; i < 5000; i++)
        len += (size_t)sprintf(big + len, "%s\"key%d\": %d", i ? "," : "", (i * 7919) % 5000, i);
    sprintf(big + len, "}");
    cr_assert_eq(mkj_parse(big, strlen(big), NULL, &doc, &root, err, sizeof err), MK_OK, "%s", err);
    for (int i = 0; i < 5000; i += 37) {
        char k[32];
        sprintf(k, "key%d", (i * 7919) % 5000);
        const mkj_value *x = mkj_get(root, k);
        cr_assert_not_null(x, "%s", k);
        cr_expect_eq(x->u.num.integer, i);
    }
    mkj_free(doc);
    sprintf(big + len, ",\"key4999\": 1}");
    cr_expect_eq(mkj_parse(big, strlen(big), NULL, &doc, &root, err, sizeof err), MK_EFORMAT);
    cr_expect(strstr(err, "duplicate key \"key4999\""), "'%s'", err);
    cr_expect_null(doc);
    free(big);

    /* limits */
    mkj_limits lim = {3, 0};
    cr_expect_eq(mkj_parse("[[[]]]", 6, &lim, &doc, &root, err, sizeof err), MK_OK);
    mkj_free(doc);
    cr_expect_eq(mkj_parse("[[[[]]]]", 8, &lim, &doc, &root, err, sizeof err), MK_EFORMAT);
    mkj_limits few = {0, 4};
    cr_expect_eq(mkj_parse("[1,2,3]", 7, &few, &doc, &root, err, sizeof err), MK_OK);
    mkj_free(doc);
    cr_expect_eq(mkj_parse("[1,2,3,4]", 9, &few, &doc, &root, err, sizeof err), MK_EFORMAT);
}

/* ---- safetensors: hand-built images ---------------------------------------------------------------------------- */
typedef struct image {
    unsigned char *p;
    size_t n;
} image;

/* 8-byte LE header length | header (padded with spaces to a multiple of 8 when pad) | data */
static image st_image(const char *header, int pad, const void *data, size_t data_len) {
    size_t h = strlen(header), hp = pad ? (h + 7) / 8 * 8 : h;
    image im = {malloc(8 + hp + data_len + 1), 8 + hp + data_len};
    cr_assert_not_null(im.p);
    for (int k = 0; k < 8; k++) im.p[k] = (unsigned char)((uint64_t)hp >> (8 * k));
    memcpy(im.p + 8, header, h);
    memset(im.p + 8 + h, ' ', hp - h);
    if (data_len) memcpy(im.p + 8 + hp, data, data_len);
    return im;
}

/* The good image: F32 [2,3] = 1..6, BF16 [3] = {1, -2, 0.5}, F16 [4] = {1, 2^-24, inf, -0}, an empty F32 [0, 4],
 * a scalar F32 [] = 7, and metadata. 24 + 6 + 8 + 0 + 4 = 42 data bytes. */
static const char GOOD_HEADER[] =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
    "\"model.norm.weight\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[24,30]},"
    "\"x.f16\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[30,38]},"
    "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[38,38]},"
    "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[38,42]}}";

static void good_data(unsigned char *d) {
    const float f[6] = {1, 2, 3, 4, 5, 6};
    memcpy(d, f, 24);
    const uint16_t b[3] = {0x3F80, 0xC000, 0x3F00};
    memcpy(d + 24, b, 6);
    const uint16_t h[4] = {0x3C00, 0x0001, 0x7C00, 0x8000};
    memcpy(d + 30, h, 8);
    const float seven = 7;
    memcpy(d + 38, &seven, 4);
}

static image good_image(int pad) {
    unsigned char d[42];
    good_data(d);
    return st_image(GOOD_HEADER, pad, d, sizeof d);
}

static void check_good(const mkm_st *st) {
    cr_assert_eq(mkm_st_count(st), 5);
    cr_expect_str_eq(mkm_st_at(st, 0)->name, "model.embed_tokens.weight", "header order is kept");
    cr_expect_null(mkm_st_at(st, 5));
    const mkm_tensor *t = NULL;
    const int64_t s23[] = {2, 3}, s3[] = {3}, s4[] = {4}, s04[] = {0, 4};
    TU_ASSERT_OK(mkm_st_get(st, "model.embed_tokens.weight", 1u << MKM_ST_F32, 2, s23, &t));
    cr_expect_eq(t->n_bytes, 24);
    float f[6];
    TU_ASSERT_OK(mkm_tensor_convert(t, MK_F32, f, 6));
    for (int i = 0; i < 6; i++) cr_expect_eq(f[i], (float)(i + 1));
    uint16_t b[6];
    TU_ASSERT_OK(mkm_tensor_convert(t, MK_BF16, b, 6));
    cr_expect_eq(b[0], 0x3F80);
    cr_expect_eq(b[5], 0x40C0);
    TU_ASSERT_OK(mkm_st_get(st, "model.norm.weight", (1u << MKM_ST_BF16) | (1u << MKM_ST_F32), 1, s3, &t));
    cr_expect_eq(t->dtype, MKM_ST_BF16);
    TU_ASSERT_OK(mkm_tensor_convert(t, MK_F32, f, 3));
    cr_expect(f[0] == 1.0f && f[1] == -2.0f && f[2] == 0.5f, "%g %g %g", f[0], f[1], f[2]);
    TU_ASSERT_OK(mkm_st_get(st, "x.f16", 1u << MKM_ST_F16, 1, s4, &t));
    TU_ASSERT_OK(mkm_tensor_convert(t, MK_F32, f, 4));
    cr_expect(f[0] == 1.0f && f[1] == ldexpf(1.0f, -24) && isinf(f[2]) && f[2] > 0 && f[3] == 0 && signbit(f[3]));
    TU_ASSERT_OK(mkm_st_get(st, "empty", 1u << MKM_ST_F32, 2, s04, &t));
    cr_expect_eq(t->n_bytes, 0);
    TU_EXPECT_OK(mkm_tensor_convert(t, MK_F32, NULL, 0));
    TU_ASSERT_OK(mkm_st_get(st, "scalar", 1u << MKM_ST_F32, 0, NULL, &t));
    TU_ASSERT_OK(mkm_tensor_convert(t, MK_F32, f, 1));
    cr_expect_eq(f[0], 7.0f);
    /* n_dims = -1 skips the shape check; tensor may be NULL */
    TU_EXPECT_OK(mkm_st_get(st, "scalar", 1u << MKM_ST_F32, -1, NULL, NULL));
}

Test(model_load, st_roundtrip_buffer_file_dir) {
    for (int pad = 0; pad < 2; pad++) { /* unpadded: the F32 data is not 4-byte aligned, convert must cope */
        image im = good_image(pad);
        mkm_st *st = NULL;
        TU_ASSERT_OK(mkm_st_open_buffer(im.p, im.n, &st));
        check_good(st);
        mkm_st_close(st);
        free(im.p);
    }
    image im = good_image(1);
    char *dir = make_tmpdir(), *file = path_in(dir, "model.safetensors");
    write_bytes(file, im.p, im.n);
    mkm_st *st = NULL;
    TU_ASSERT_OK(mkm_st_open(file, &st));
    check_good(st);
    mkm_st_close(st);
    st = NULL;
    TU_ASSERT_OK(mkm_st_open(dir, &st));
    check_good(st);
    mkm_st_close(st);
    mkm_st_close(NULL);
    free(file);
    rm_tmpdir(dir);
    free(im.p);
}

/* A corrupt image: mkm_st_open_buffer fails with `want` naming `name`. */
static void expect_bad_image(image im, mk_status want, const char *name) {
    mkm_st *st = (mkm_st *)&st; /* must be reset to NULL */
    mk_status s = mkm_st_open_buffer(im.p, im.n, &st);
    expect_error_names(s, want, name);
    cr_expect_null(st);
    free(im.p);
}

static image header_only(const char *header, const void *data, size_t n) { return st_image(header, 1, data, n); }

Test(model_load, st_corrupt_images) {
    unsigned char zeros[64] = {0};
    /* truncated: one byte short, the last tensor ("scalar") runs past the end */
    image im = good_image(1);
    im.n -= 1;
    expect_bad_image(im, MK_EFORMAT, "scalar");
    /* shorter than the 8-byte length */
    im = good_image(1);
    im.n = 5;
    expect_bad_image(im, MK_EFORMAT, "8-byte");
    im = (image){malloc(1), 0};
    expect_bad_image(im, MK_EFORMAT, "8-byte");
    /* header length past the end, including 2^64 - 1 */
    im = good_image(1);
    im.p[0] = 0x40, im.p[1] = 0x42, im.p[2] = 0x0F; /* 1,000,000 */
    expect_bad_image(im, MK_EFORMAT, "header");
    im = good_image(1);
    memset(im.p, 0xFF, 8);
    expect_bad_image(im, MK_EFORMAT, "header");
    /* offsets past the end of the data section */
    expect_bad_image(header_only("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", zeros, 8),
                     MK_EFORMAT, "w");
    expect_bad_image(header_only("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", zeros, 8),
                     MK_EFORMAT, "w");
    /* overlapping tensors: both named */
    const char *ov = "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"b.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
    expect_bad_image(header_only(ov, zeros, 16), MK_EFORMAT, "a.weight");
    expect_bad_image(header_only(ov, zeros, 16), MK_EFORMAT, "b.weight");
    /* an empty tensor inside another is not an overlap; identical ranges are */
    image inside = header_only("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                               "\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
                               zeros, 8);
    mkm_st *ok = NULL;
    TU_EXPECT_OK(mkm_st_open_buffer(inside.p, inside.n, &ok));
    cr_expect_eq(mkm_st_count(ok), 2);
    mkm_st_close(ok);
    free(inside.p);
    const char *same = "{\"a\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                       "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}";
    expect_bad_image(header_only(same, zeros, 4), MK_EFORMAT, "b");
    /* size / shape mismatch */
    expect_bad_image(header_only("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", zeros, 8),
                     MK_EFORMAT, "w");
    expect_bad_image(header_only("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", zeros, 16),
                     MK_EFORMAT, "w");
    /* element count overflow (2^62 * 4 * 4 bytes) */
    expect_bad_image(
        header_only("{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,0]}}", zeros, 0),
        MK_EFORMAT, "w");
    expect_bad_image(
        header_only("{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", zeros, 0),
        MK_EFORMAT, "w");
    /* unknown / unsupported dtypes */
    expect_bad_image(header_only("{\"q.weight\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", zeros, 8),
                     MK_EFORMAT, "q.weight");
    expect_bad_image(header_only("{\"q.weight\":{\"dtype\":\"bf16\",\"shape\":[1],\"data_offsets\":[0,2]}}", zeros, 2),
                     MK_EFORMAT, "q.weight");
    expect_bad_image(header_only("{\"q.weight\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,2]}}", zeros, 2),
                     MK_EFORMAT, "q.weight");
    /* malformed entries */
    expect_bad_image(header_only("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", zeros, 0),
                     MK_EFORMAT, "w");
    expect_bad_image(header_only("{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", zeros, 4),
                     MK_EFORMAT, "w");
    expect_bad_image(header_only("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}}", zeros, 4),
                     MK_EFORMAT, "w");
    expect_bad_image(header_only("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.0,4]}}", zeros, 4),
                     MK_EFORMAT, "w");
    expect_bad_image(header_only("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", zeros, 4), MK_EFORMAT, "w");
    expect_bad_image(header_only("{\"w\":[1,2]}", zeros, 4), MK_EFORMAT, "w");
    expect_bad_image(
        header_only("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", zeros, 4),
        MK_EFORMAT, "w");
    expect_bad_image(header_only("{\"__metadata__\":[1]}", zeros, 0), MK_EFORMAT, "__metadata__");
    expect_bad_image(header_only("{\"__metadata__\":{\"a\":1}}", zeros, 0), MK_EFORMAT, "__metadata__");
    /* header JSON: not an object, invalid, duplicate name, tensor name with a NUL */
    expect_bad_image(header_only("[]", zeros, 0), MK_EFORMAT, "object");
    expect_bad_image(header_only("{\"w\":{\"dtype\":\"F32\",", zeros, 0), MK_EFORMAT, "JSON");
    expect_bad_image(header_only("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                 "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                                 zeros, 8),
                     MK_EFORMAT, "duplicate");
    expect_bad_image(header_only("{\"w\\u0000x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", zeros, 4),
                     MK_EFORMAT, "NUL");
    /* an empty header object is a valid, empty checkpoint */
    image e = header_only("{}", zeros, 0);
    mkm_st *st = NULL;
    TU_ASSERT_OK(mkm_st_open_buffer(e.p, e.n, &st));
    cr_expect_eq(mkm_st_count(st), 0);
    expect_error_names(mkm_st_get(st, "anything", 7u, -1, NULL, NULL), MK_EFORMAT, "anything");
    mkm_st_close(st);
    free(e.p);
}

Test(model_load, st_get_errors) {
    image im = good_image(1);
    mkm_st *st = NULL;
    TU_ASSERT_OK(mkm_st_open_buffer(im.p, im.n, &st));
    const mkm_tensor *t = (const mkm_tensor *)&t;
    const int64_t s23[] = {2, 3}, s32[] = {3, 2}, s6[] = {6}, s231[] = {2, 3, 1};
    /* missing tensor */
    expect_error_names(mkm_st_get(st, "model.layers.0.mlp.gate.weight", 7u, -1, NULL, &t), MK_EFORMAT,
                       "model.layers.0.mlp.gate.weight");
    cr_expect_null(t);
    /* wrong shape: transposed, flattened, extra dim */
    expect_error_names(mkm_st_get(st, "model.embed_tokens.weight", 7u, 2, s32, &t), MK_EFORMAT,
                       "model.embed_tokens.weight");
    cr_expect(strstr(mk_last_error(), "[2, 3]") && strstr(mk_last_error(), "[3, 2]"), "'%s'", mk_last_error());
    expect_error_names(mkm_st_get(st, "model.embed_tokens.weight", 7u, 1, s6, &t), MK_EFORMAT,
                       "model.embed_tokens.weight");
    expect_error_names(mkm_st_get(st, "model.embed_tokens.weight", 7u, 3, s231, &t), MK_EFORMAT,
                       "model.embed_tokens.weight");
    /* wrong dtype */
    expect_error_names(mkm_st_get(st, "model.norm.weight", 1u << MKM_ST_F32, -1, NULL, &t), MK_EFORMAT,
                       "model.norm.weight");
    cr_expect(strstr(mk_last_error(), "BF16") && strstr(mk_last_error(), "F32"), "'%s'", mk_last_error());
    expect_error_names(mkm_st_get(st, "model.embed_tokens.weight", 1u << MKM_ST_BF16, 2, s23, &t), MK_EFORMAT,
                       "model.embed_tokens.weight");
    /* bad arguments */
    cr_expect_eq(mkm_st_get(NULL, "x", 7u, -1, NULL, &t), MK_EINVAL);
    cr_expect_eq(mkm_st_get(st, NULL, 7u, -1, NULL, &t), MK_EINVAL);
    cr_expect_eq(mkm_st_get(st, "scalar", 7u, 2, NULL, &t), MK_EINVAL);
    /* convert: element count mismatch, bad dtype */
    TU_ASSERT_OK(mkm_st_get(st, "model.embed_tokens.weight", 7u, 2, s23, &t));
    float f[8];
    expect_error_names(mkm_tensor_convert(t, MK_F32, f, 5), MK_EINVAL, "model.embed_tokens.weight");
    cr_expect_eq(mkm_tensor_convert(t, (mk_dtype)7, f, 6), MK_EINVAL);
    cr_expect_eq(mkm_tensor_convert(NULL, MK_F32, f, 6), MK_EINVAL);
    /* bad open arguments */
    mkm_st *st2 = (mkm_st *)&st2;
    cr_expect_eq(mkm_st_open_buffer(NULL, 8, &st2), MK_EINVAL);
    cr_expect_null(st2);
    cr_expect_eq(mkm_st_open_buffer(im.p, im.n, NULL), MK_EINVAL);
    mkm_st_close(st);
    free(im.p);
}

Test(model_load, st_files_errors) {
    char *dir = make_tmpdir();
    mkm_st *st = NULL;
    /* nothing there */
    expect_error_names(mkm_st_open(dir, &st), MK_EIO, "model.safetensors");
    cr_expect_null(st);
    char *missing = path_in(dir, "nope.safetensors");
    expect_error_names(mkm_st_open(missing, &st), MK_EIO, "nope.safetensors");
    cr_expect(strstr(mk_last_error(), "No such file") != NULL, "'%s'", mk_last_error());
    /* truncated file, empty file */
    image im = good_image(1);
    char *file = path_in(dir, "model.safetensors");
    write_bytes(file, im.p, im.n - 3);
    expect_error_names(mkm_st_open(dir, &st), MK_EFORMAT, "scalar");
    cr_expect(strstr(mk_last_error(), file) != NULL, "'%s' does not name %s", mk_last_error(), file);
    write_bytes(file, im.p, 0);
    expect_error_names(mkm_st_open(file, &st), MK_EFORMAT, "8-byte");
    /* header length above the 100 MB cap, inside a (sparse) file big enough to hold it */
    const uint64_t big = ((uint64_t)100 << 20) + 8;
    int fd = open(file, O_WRONLY | O_TRUNC);
    cr_assert(fd >= 0);
    unsigned char len8[8];
    for (int k = 0; k < 8; k++) len8[k] = (unsigned char)(big >> (8 * k));
    cr_assert_eq(write(fd, len8, 8), 8);
    cr_assert_eq(ftruncate(fd, (off_t)(big + 64)), 0);
    close(fd);
    expect_error_names(mkm_st_open(file, &st), MK_EFORMAT, "limit");
    cr_expect_null(st);
    free(file);
    free(missing);
    free(im.p);
    rm_tmpdir(dir);
}

/* ---- sharded ---------------------------------------------------------------------------------------------------- */
static void write_shard(const char *dir, const char *name, const char *header, const void *data, size_t n) {
    image im = st_image(header, 1, data, n);
    char *p = path_in(dir, name);
    write_bytes(p, im.p, im.n);
    free(p);
    free(im.p);
}

static void write_index(const char *dir, const char *json) {
    char *p = path_in(dir, "model.safetensors.index.json");
    write_bytes(p, json, strlen(json));
    free(p);
}

Test(model_load, st_sharded) {
    char *dir = make_tmpdir();
    const float a[4] = {1, 2, 3, 4}, b[2] = {-1, -2};
    write_shard(dir, "model-00001-of-00002.safetensors",
                "{\"__metadata__\":{\"format\":\"pt\"},"
                "\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}",
                a, sizeof a);
    write_shard(dir, "model-00002-of-00002.safetensors",
                "{\"lm_head.weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]},"
                "\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}",
                b, sizeof b);
    write_index(dir, "{\"metadata\": {\"total_size\": 24}, \"weight_map\": {"
                     "\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\","
                     "\"lm_head.weight\": \"model-00002-of-00002.safetensors\","
                     "\"model.norm.weight\": \"model-00002-of-00002.safetensors\"}}");
    for (int via_index = 0; via_index < 2; via_index++) {
        mkm_st *st = NULL;
        char *idx = path_in(dir, "model.safetensors.index.json");
        TU_ASSERT_OK(mkm_st_open(via_index ? idx : dir, &st));
        free(idx);
        cr_expect_eq(mkm_st_count(st), 3);
        const mkm_tensor *t;
        const int64_t s22[] = {2, 2}, s12[] = {1, 2};
        float f[4];
        TU_ASSERT_OK(mkm_st_get(st, "model.embed_tokens.weight", 1u, 2, s22, &t));
        TU_ASSERT_OK(mkm_tensor_convert(t, MK_F32, f, 4));
        cr_expect(f[0] == 1 && f[3] == 4);
        TU_ASSERT_OK(mkm_st_get(st, "lm_head.weight", 1u, 2, s12, &t));
        TU_ASSERT_OK(mkm_tensor_convert(t, MK_F32, f, 2));
        cr_expect(f[0] == -1 && f[1] == -2);
        /* errors name the shard the tensor is in */
        mkm_st_get(st, "lm_head.weight", 2u, -1, NULL, &t);
        cr_expect(strstr(mk_last_error(), "model-00002-of-00002.safetensors") != NULL, "'%s'", mk_last_error());
        mkm_st_close(st);
    }

    mkm_st *st = NULL;
    /* a tensor listed for the wrong shard */
    write_index(dir, "{\"weight_map\": {\"model.embed_tokens.weight\": \"model-00002-of-00002.safetensors\","
                     "\"lm_head.weight\": \"model-00002-of-00002.safetensors\"}}");
    expect_error_names(mkm_st_open(dir, &st), MK_EFORMAT, "model.embed_tokens.weight");
    cr_expect_null(st);
    /* a tensor listed that no shard has */
    write_index(dir, "{\"weight_map\": {\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\","
                     "\"model.layers.0.input_layernorm.weight\": \"model-00002-of-00002.safetensors\"}}");
    expect_error_names(mkm_st_open(dir, &st), MK_EFORMAT, "model.layers.0.input_layernorm.weight");
    /* a shard file that does not exist */
    write_index(dir, "{\"weight_map\": {\"lm_head.weight\": \"model-00003-of-00003.safetensors\"}}");
    expect_error_names(mkm_st_open(dir, &st), MK_EIO, "model-00003-of-00003.safetensors");
    /* a shard name that escapes the directory */
    write_index(dir, "{\"weight_map\": {\"lm_head.weight\": \"../model-00002-of-00002.safetensors\"}}");
    expect_error_names(mkm_st_open(dir, &st), MK_EFORMAT, "lm_head.weight");
    /* no weight_map, bad JSON */
    write_index(dir, "{\"metadata\": {}}");
    expect_error_names(mkm_st_open(dir, &st), MK_EFORMAT, "weight_map");
    write_index(dir, "{\"weight_map\": {\"a\": ");
    expect_error_names(mkm_st_open(dir, &st), MK_EFORMAT, "model.safetensors.index.json");
    /* the same tensor in two shards */
    write_shard(dir, "model-00002-of-00002.safetensors",
                "{\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", b,
                sizeof b);
    write_index(dir, "{\"weight_map\": {\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\","
                     "\"x\": \"model-00002-of-00002.safetensors\"}}");
    expect_error_names(mkm_st_open(dir, &st), MK_EFORMAT, "model.embed_tokens.weight");
    cr_expect(strstr(mk_last_error(), "twice") != NULL, "'%s'", mk_last_error());
    /* a corrupt shard is named */
    write_shard(dir, "model-00002-of-00002.safetensors",
                "{\"lm_head.weight\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", b, sizeof b);
    write_index(dir, "{\"weight_map\": {\"lm_head.weight\": \"model-00002-of-00002.safetensors\"}}");
    expect_error_names(mkm_st_open(dir, &st), MK_EFORMAT, "lm_head.weight");
    cr_expect(strstr(mk_last_error(), "model-00002-of-00002.safetensors") != NULL, "'%s'", mk_last_error());
    rm_tmpdir(dir);
}

/* ---- conversions ---------------------------------------------------------------------------------------------- */
static mkm_tensor f16_tensor(const uint16_t *h, int64_t n) {
    mkm_tensor t;
    memset(&t, 0, sizeof t);
    t.name = "f16";
    t.dtype = MKM_ST_F16;
    t.n_dims = 1;
    t.shape[0] = n;
    t.data = h;
    t.n_bytes = (size_t)n * 2;
    return t;
}

Test(model_load, f16_to_f32_exact) {
    /* expected values computed here with ldexp from the IEEE binary16 definition */
    static const struct {
        uint16_t h;
        double want;
    } cases[] = {
        {0x0000, 0.0},
        {0x3C00, 1.0},
        {0xC000, -2.0},
        {0x3555, 1365.0 / 4096.0},           /* 0.333251953125 */
        {0x7BFF, 65504.0},                   /* largest finite */
        {0x0400, 0x1p-14},                   /* smallest normal */
        {0x0001, 0x1p-24},                   /* smallest subnormal */
        {0x03FF, 1023.0 * 0x1p-24},          /* largest subnormal */
        {0x0200, 0x1p-15},                   /* a subnormal with one bit */
        {0x8001, -0x1p-24},
        {0x83FF, -1023.0 * 0x1p-24},
        {0x3BFF, 1.0 - 0x1p-11},             /* just below 1 */
        {0x3C01, 1.0 + 0x1p-10},             /* just above 1 */
        {0x5640, 100.0},
    };
    const int n = (int)(sizeof cases / sizeof cases[0]);
    uint16_t h[32];
    for (int i = 0; i < n; i++) h[i] = cases[i].h;
    /* specials */
    h[n + 0] = 0x8000; /* -0 */
    h[n + 1] = 0x7C00; /* +inf */
    h[n + 2] = 0xFC00; /* -inf */
    h[n + 3] = 0x7E00; /* quiet NaN */
    h[n + 4] = 0x7C01; /* signalling NaN */
    h[n + 5] = 0xFE00; /* negative NaN */
    const int total = n + 6;
    mkm_tensor t = f16_tensor(h, total);
    float f[32];
    TU_ASSERT_OK(mkm_tensor_convert(&t, MK_F32, f, (size_t)total));
    for (int i = 0; i < n; i++)
        cr_expect_eq(f2u(f[i]), f2u((float)cases[i].want), "f16 0x%04x -> %a (0x%08x), want %a", cases[i].h,
                     (double)f[i], f2u(f[i]), cases[i].want);
    cr_expect(f[n] == 0 && signbit(f[n]), "-0");
    cr_expect(isinf(f[n + 1]) && f[n + 1] > 0);
    cr_expect(isinf(f[n + 2]) && f[n + 2] < 0);
    cr_expect(isnan(f[n + 3]) && isnan(f[n + 4]) && isnan(f[n + 5]), "NaNs stay NaN");
    cr_expect(signbit(f[n + 5]));
    /* every finite f16 is exact: compare with the formula over all 63488 finite patterns */
    uint16_t *all = malloc(65536 * 2);
    float *out = malloc(65536 * 4);
    cr_assert(all && out);
    for (int i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    mkm_tensor ta = f16_tensor(all, 65536);
    TU_ASSERT_OK(mkm_tensor_convert(&ta, MK_F32, out, 65536));
    int bad = 0;
    for (int i = 0; i < 65536; i++) {
        int e = (i >> 10) & 31, m = i & 1023;
        if (e == 31) {
            bad += m ? !isnan(out[i]) : !isinf(out[i]);
            continue;
        }
        double v = e ? ldexp(1024 + m, e - 25) : ldexp(m, -24);
        if (i & 0x8000) v = -v;
        bad += f2u(out[i]) != f2u((float)v);
    }
    cr_expect_eq(bad, 0, "%d f16 patterns convert wrongly", bad);
    /* F16 -> BF16: through the exact F32, rounded to nearest even */
    uint16_t b[4];
    const uint16_t hb[4] = {0x3C00, 0x3C01, 0x3C03, 0x7E00}; /* 1, 1 + 2^-10, 1 + 3 * 2^-10, NaN */
    mkm_tensor tb = f16_tensor(hb, 4);
    TU_ASSERT_OK(mkm_tensor_convert(&tb, MK_BF16, b, 4));
    cr_expect_eq(b[0], 0x3F80);
    cr_expect_eq(b[1], 0x3F80, "1 + 2^-10 rounds to 1 in bf16 (7 mantissa bits)");
    cr_expect_eq(b[2], 0x3F80, "1 + 3*2^-10 = 1 + 0.375 ulp rounds down: got 0x%04x", b[2]);
    cr_expect((b[3] & 0x7F80) == 0x7F80 && (b[3] & 0x7F), "NaN stays NaN: 0x%04x", b[3]);
    free(all);
    free(out);
}

Test(model_load, f32_to_bf16_rounding) {
    const uint32_t bits[] = {0x3F808000u, 0x3F818000u, 0x3F808001u, 0x7F800000u, 0x7FC00001u, 0x00000001u};
    const uint16_t want[] = {0x3F80, 0x3F82, 0x3F81, 0x7F80, 0, 0x0000};
    float v[6];
    memcpy(v, bits, sizeof v);
    mkm_tensor t;
    memset(&t, 0, sizeof t);
    t.name = "f32";
    t.dtype = MKM_ST_F32;
    t.n_dims = 1;
    t.shape[0] = 6;
    t.data = v;
    t.n_bytes = sizeof v;
    uint16_t b[6];
    TU_ASSERT_OK(mkm_tensor_convert(&t, MK_BF16, b, 6));
    for (int i = 0; i < 6; i++) {
        if (i == 4)
            cr_expect((b[i] & 0x7F80) == 0x7F80 && (b[i] & 0x7F), "NaN stays NaN: 0x%04x", b[i]);
        else
            cr_expect_eq(b[i], want[i], "0x%08x -> 0x%04x, want 0x%04x", bits[i], b[i], want[i]);
    }
}

/* ---- gen ------------------------------------------------------------------------------------------------------- */
typedef struct expected {
    char name[96];
    int n_dims;
    int64_t shape[3];
    mkm_st_dtype dtype;
} expected;

static int expect_add(expected *e, int n, mkm_st_dtype dt, int nd, int64_t a, int64_t b, int64_t c, const char *fmt,
                      ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e[n].name, sizeof e[n].name, fmt, ap);
    va_end(ap);
    e[n].n_dims = nd;
    e[n].shape[0] = a;
    e[n].shape[1] = b;
    e[n].shape[2] = c;
    e[n].dtype = dt;
    return n + 1;
}

/* The tensor list of section 7 of the shared reference, computed from the config values. */
static int expected_tensors(const mkm_config *c, mkm_st_dtype w, expected *e) {
    const int64_t H = c->hidden_size, dqk = c->qk_rope_dim + c->qk_nope_dim, dv = c->v_channels;
    const int64_t nq = c->num_attention_heads, nkv = c->num_key_value_heads;
    int n = 0;
    n = expect_add(e, n, w, 2, c->vocab_size, H, 0, "model.embed_tokens.weight");
    n = expect_add(e, n, w, 1, H, 0, 0, "model.norm.weight");
    n = expect_add(e, n, w, 2, c->vocab_size, H, 0, "lm_head.weight");
    for (int64_t l = 0; l < c->num_hidden_layers; l++) {
        const char *p = "model.layers";
        const long long i = (long long)l;
        n = expect_add(e, n, w, 1, H, 0, 0, "%s.%lld.input_layernorm.weight", p, i);
        n = expect_add(e, n, w, 1, H, 0, 0, "%s.%lld.post_attention_layernorm.weight", p, i);
        n = expect_add(e, n, w, 1, H, 0, 0, "%s.%lld.pre_mlp_layernorm.weight", p, i);
        n = expect_add(e, n, w, 1, H, 0, 0, "%s.%lld.post_mlp_layernorm.weight", p, i);
        n = expect_add(e, n, w, 2, nq * dqk + nkv * dqk + nkv * dv, H, 0, "%s.%lld.self_attn.qkv_proj.weight", p, i);
        n = expect_add(e, n, w, 1, dqk, 0, 0, "%s.%lld.self_attn.k_layernorm.weight", p, i);
        n = expect_add(e, n, w, 2, H, nq * dv, 0, "%s.%lld.self_attn.o_proj.weight", p, i);
        n = expect_add(e, n, w, 3, c->param_sink_number, nkv, dqk, "%s.%lld.self_attn.param_sink_key", p, i);
        n = expect_add(e, n, w, 3, c->param_sink_number, nkv, dv, "%s.%lld.self_attn.param_sink_value", p, i);
        if (c->is_dense_layer[l]) {
            const int64_t I = c->intermediate_size;
            n = expect_add(e, n, w, 2, I, H, 0, "%s.%lld.mlp.gate_proj.weight", p, i);
            n = expect_add(e, n, w, 2, I, H, 0, "%s.%lld.mlp.up_proj.weight", p, i);
            n = expect_add(e, n, w, 2, H, I, 0, "%s.%lld.mlp.down_proj.weight", p, i);
        } else {
            const int64_t E = c->num_experts, M = c->moe_intermediate_size, S = c->shared_expert_intermediate_size;
            n = expect_add(e, n, w, 2, E, H, 0, "%s.%lld.mlp.gate.weight", p, i);
            n = expect_add(e, n, MKM_ST_F32, 1, E, 0, 0, "%s.%lld.mlp.e_score_correction_bias", p, i);
            for (int64_t x = 0; x < E; x++) {
                n = expect_add(e, n, w, 2, M, H, 0, "%s.%lld.mlp.experts.%lld.gate_proj.weight", p, i, (long long)x);
                n = expect_add(e, n, w, 2, M, H, 0, "%s.%lld.mlp.experts.%lld.up_proj.weight", p, i, (long long)x);
                n = expect_add(e, n, w, 2, H, M, 0, "%s.%lld.mlp.experts.%lld.down_proj.weight", p, i, (long long)x);
            }
            n = expect_add(e, n, w, 2, S, H, 0, "%s.%lld.mlp.shared_experts.gate_proj.weight", p, i);
            n = expect_add(e, n, w, 2, S, H, 0, "%s.%lld.mlp.shared_experts.up_proj.weight", p, i);
            n = expect_add(e, n, w, 2, H, S, 0, "%s.%lld.mlp.shared_experts.down_proj.weight", p, i);
        }
    }
    return n;
}

static void check_checkpoint(const char *dir, mkm_st_dtype w, int64_t want_layers, int64_t want_dense) {
    mkm_config c;
    TU_ASSERT_OK(mkm_config_load(dir, &c));
    /* the tiny preset keeps the structure of openPangu-R-72B */
    cr_expect_eq(c.hidden_size, 64);
    cr_expect_eq(c.num_hidden_layers, want_layers);
    cr_expect_eq(c.num_experts, 80);
    cr_expect_eq(c.num_experts_per_tok, 8);
    cr_expect_eq(c.shared_expert_intermediate_size, 2 * c.moe_intermediate_size);
    cr_expect_eq(c.num_attention_heads / c.num_key_value_heads, 16);
    cr_expect_eq(c.qk_rope_dim, 64);
    cr_expect_eq(c.qk_nope_dim, 128);
    cr_expect_eq(c.v_channels, 128);
    cr_expect_eq(c.param_sink_number, 128);
    cr_expect(c.param_sink_with_value && c.sandwich_norm && c.norm_topk_prob && c.router_enable_expert_bias);
    cr_expect_eq(c.routed_scaling_factor, 2.5);
    cr_expect_eq(c.rope_theta, 25.6e6);
    cr_expect_eq(c.rms_norm_eps, 1e-5);
    int n_dense = 0;
    for (int64_t l = 0; l < c.num_hidden_layers; l++) n_dense += c.is_dense_layer[l];
    cr_expect_eq(n_dense, want_dense);
    if (want_dense) cr_expect_eq(c.is_dense_layer[0], 1);

    expected *e = malloc(4096 * sizeof *e);
    cr_assert_not_null(e);
    const int n = expected_tensors(&c, w, e);
    cr_assert(n < 4096);
    mkm_st *st = NULL;
    TU_ASSERT_OK(mkm_st_open(dir, &st));
    cr_expect_eq(mkm_st_count(st), (size_t)n, "%zu tensors in the file, %d expected", mkm_st_count(st), n);
    for (int i = 0; i < n; i++) {
        const mkm_tensor *t = NULL;
        mk_status s = mkm_st_get(st, e[i].name, 1u << e[i].dtype, e[i].n_dims, e[i].shape, &t);
        cr_expect_eq(s, MK_OK, "%s: %s", e[i].name, mk_last_error());
    }
    /* init scales (see model/gen.c) */
    const int64_t L = c.num_hidden_layers, H = c.hidden_size;
    const double post = 1.0 / sqrt(2.0 * (double)L);
    const double r = w == MKM_ST_BF16 ? 1.0 / 256 : 1e-6; /* bf16 rounding: half an ulp is 2^-8 relative */
    float *buf = malloc(8 << 20);
    cr_assert_not_null(buf);
    for (size_t i = 0; i < mkm_st_count(st); i++) {
        const mkm_tensor *t = mkm_st_at(st, i);
        size_t elems = 1;
        for (int d = 0; d < t->n_dims; d++) elems *= (size_t)t->shape[d];
        cr_assert(elems <= (2u << 20));
        TU_ASSERT_OK(mkm_tensor_convert(t, MK_F32, buf, elems));
        double lo = INFINITY, hi = -INFINITY, sum = 0, sq = 0;
        for (size_t k = 0; k < elems; k++) {
            lo = fmin(lo, buf[k]);
            hi = fmax(hi, buf[k]);
            sum += buf[k];
            sq += (double)buf[k] * buf[k];
        }
        const double mean = sum / (double)elems, rms = sqrt(sq / (double)elems);
        const char *nm = t->name;
        if (strstr(nm, "post_attention_layernorm") || strstr(nm, "post_mlp_layernorm")) {
            cr_expect(lo >= 0.9 * post * (1 - r) && hi <= 1.1 * post * (1 + r), "%s in [%g, %g], want %g +- 10%%", nm,
                      lo, hi, post);
            cr_expect(fabs(mean - post) < 0.03 * post, "%s mean %g, want %g", nm, mean, post);
        } else if (strstr(nm, "layernorm") || !strcmp(nm, "model.norm.weight")) {
            cr_expect(lo >= 0.9 * (1 - r) && hi <= 1.1 * (1 + r) && fabs(mean - 1) < 0.03, "%s in [%g, %g] mean %g", nm,
                      lo, hi, mean);
        } else if (strstr(nm, "e_score_correction_bias")) {
            cr_expect(hi <= 0.01 * (1 + 1e-6) && lo >= -0.01 * (1 + 1e-6) && hi - lo > 0.005, "%s in [%g, %g]", nm, lo,
                      hi);
        } else if (!strcmp(nm, "model.embed_tokens.weight")) {
            cr_expect(fabs(rms - 1) < 0.05, "%s rms %g, want ~1", nm, rms);
        } else if (!strcmp(nm, "lm_head.weight")) {
            cr_expect(fabs(rms * sqrt((double)H) - 1) < 0.05, "%s rms %g, want 1/sqrt(H)", nm, rms);
        } else if (strstr(nm, "param_sink_key")) {
            cr_expect(fabs(rms - 1) < 0.05, "%s rms %g", nm, rms);
        } else if (strstr(nm, "param_sink_value")) {
            cr_expect(fabs(rms - 0.5) < 0.03, "%s rms %g", nm, rms);
        } else {
            /* linear [out, in]: std 0.5 / sqrt(in), bounded by 0.5 sqrt(3 / in) */
            const double in = (double)t->shape[1], a = 0.5 * sqrt(3.0 / in);
            cr_expect(hi <= a * (1 + r) && lo >= -a * (1 + r), "%s in [%g, %g], bound %g", nm, lo, hi, a);
            if (elems >= 512)
                cr_expect(fabs(rms * sqrt(in) / 0.5 - 1) < 0.1, "%s rms %g, want %g", nm, rms, 0.5 / sqrt(in));
        }
    }
    free(buf);
    mkm_st_close(st);
    free(e);
}

static int same_file(const char *a, const char *b) {
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    if (mkm_read_file(a, (size_t)1 << 30, &x, &nx) != MK_OK || mkm_read_file(b, (size_t)1 << 30, &y, &ny) != MK_OK) {
        free(x);
        return -1;
    }
    int same = nx == ny && !memcmp(x, y, nx);
    free(x);
    free(y);
    return same;
}

Test(model_load, gen_tiny) {
    char *dir = make_tmpdir();
    TU_ASSERT_OK(mkm_gen(MKM_PRESET_TINY, 0, 42, MK_F32, dir));
    check_checkpoint(dir, MKM_ST_F32, 2, 1);
    /* the header is padded to 8 bytes and the tensors are contiguous (the end of the last is the end of file) */
    char *file = path_in(dir, "model.safetensors");
    char *data = NULL;
    size_t len = 0;
    TU_ASSERT_OK(mkm_read_file(file, (size_t)1 << 30, &data, &len));
    uint64_t hlen = 0;
    for (int k = 7; k >= 0; k--) hlen = (hlen << 8) | (unsigned char)data[k];
    cr_expect_eq(hlen % 8, 0);
    mkm_st *st = NULL;
    TU_ASSERT_OK(mkm_st_open_buffer(data, len, &st));
    uint64_t expect_begin = 0;
    for (size_t i = 0; i < mkm_st_count(st); i++) {
        const mkm_tensor *t = mkm_st_at(st, i);
        const uint64_t begin = (uint64_t)((const char *)t->data - (data + 8 + hlen));
        cr_expect_eq(begin, expect_begin, "%s starts at %llu, want %llu", t->name, (unsigned long long)begin,
                     (unsigned long long)expect_begin);
        expect_begin = begin + t->n_bytes;
    }
    cr_expect_eq(8 + hlen + expect_begin, len);
    mkm_st_close(st);
    free(data);

    /* determinism: the same seed gives the same bytes, another seed other bytes */
    char *dir2 = make_tmpdir(), *file2 = path_in(dir2, "model.safetensors");
    TU_ASSERT_OK(mkm_gen(MKM_PRESET_TINY, 0, 42, MK_F32, dir2));
    cr_expect_eq(same_file(file, file2), 1);
    TU_ASSERT_OK(mkm_gen(MKM_PRESET_TINY, 0, 43, MK_F32, dir2));
    cr_expect_eq(same_file(file, file2), 0);
    free(file2);
    rm_tmpdir(dir2);
    free(file);
    rm_tmpdir(dir);
}

Test(model_load, gen_tiny_bf16_layers) {
    char *dir = make_tmpdir();
    char *sub = path_in(dir, "a/b"); /* created with its parents */
    TU_ASSERT_OK(mkm_gen(MKM_PRESET_TINY, 3, 7, MK_BF16, sub));
    check_checkpoint(sub, MKM_ST_BF16, 3, 1);
    TU_ASSERT_OK(mkm_gen(MKM_PRESET_TINY, 1, 7, MK_F32, sub));
    check_checkpoint(sub, MKM_ST_F32, 1, 0);
    /* bad arguments */
    expect_error_names(mkm_gen((mkm_preset)9, 0, 1, MK_F32, sub), MK_EINVAL, "preset");
    expect_error_names(mkm_gen(MKM_PRESET_TINY, 0, 1, (mk_dtype)5, sub), MK_EINVAL, "dtype");
    expect_error_names(mkm_gen(MKM_PRESET_TINY, 0, 1, MK_F32, NULL), MK_EINVAL, "out_dir");
    expect_error_names(mkm_gen(MKM_PRESET_TINY, 300, 1, MK_F32, sub), MK_EINVAL, "n_layers");
    char *cfg = path_in(sub, "config.json"), *under_file = path_in(cfg, "x");
    cr_expect_eq(mkm_gen(MKM_PRESET_TINY, 0, 1, MK_F32, under_file), MK_EIO, "%s", mk_last_error());
    free(cfg);
    free(under_file);
    free(sub);
    rm_tmpdir(dir);
}
