/*
 * config.c: mkm_config from a Hugging Face config.json of openPangu-R-72B-2512 (docs: shared reference, section 1).
 *
 * Keys and rules (every error is MK_EFORMAT, or MK_EUNSUPPORTED for a valid feature this model does not have, with a
 * message naming the file and the key; unknown keys are ignored; a null value counts as absent):
 *   required           num_hidden_layers [1, 256], hidden_size, num_attention_heads, qk_rope_dim (even),
 *                      qk_nope_dim, v_channels, vocab_size, max_position_embeddings, rms_norm_eps (> 0),
 *                      rope_theta (> 0)
 *   required when some layer is dense: intermediate_size
 *   required when some layer is MoE:   moe_intermediate_size, num_experts (alias n_routed_experts),
 *                                      num_experts_per_tok (<= num_experts)
 *   num_key_value_heads        default num_attention_heads; must divide num_attention_heads
 *   mlp_only_layers            dense layer indices in [0, num_hidden_layers); alias first_k_dense_replace = k means
 *                              layers 0..k-1; both present must describe the same set; neither: no dense layer
 *   shared_expert_intermediate_size  alias n_shared_experts x moe_intermediate_size; both present must agree;
 *                              neither: 0 (no shared expert)
 *   rope_interleaved           alias rope_interleave; default true (vLLM's default when absent)
 *   num_mtp_layers             alias num_nextn_predict_layers; default 0
 *   param_sink_number          default 0 (no sinks); param_sink_with_value default false
 *   norm_topk_prob, router_enable_expert_bias, sandwich_norm, tie_word_embeddings: default false
 *   routed_scaling_factor      default 1.0
 *   sliding_window             default 0 (none); 0 also when use_sliding_window is false
 *   unsupported when set: rope_scaling (non-null), attention_bias / bias (true), param_sink_scalar (non-null),
 *                         param_sink_of_head_num (true), hidden_act other than "silu"
 * Two names of one key (an alias pair) that are both present must agree; otherwise the error names both.
 */
#include "json.h"
#include "model.h"

#include "internal.h" /* mki_clear_error */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_BYTES ((size_t)16 << 20)

typedef struct ctx {
    const mkj_value *root;
    const char *file; /* for messages */
} ctx;

/* The value of key, or NULL when absent or null. */
static const mkj_value *find(const ctx *c, const char *key) {
    const mkj_value *v = mkj_get(c->root, key);
    return v && v->type != MKJ_NULL ? v : NULL;
}

static mk_status to_int(const ctx *c, const char *key, const mkj_value *v, int64_t *out) {
    if (v->type == MKJ_NUMBER) {
        if (v->is_integer) {
            *out = v->u.num.integer;
            return MK_OK;
        }
        double d = v->u.num.number;
        if (d == floor(d) && fabs(d) <= 9007199254740992.0) { /* 4608.0, 1e3 */
            *out = (int64_t)d;
            return MK_OK;
        }
        return mkm_error(MK_EFORMAT, "%s: key '%s' = %g must be an integer", c->file, key, d);
    }
    return mkm_error(MK_EFORMAT, "%s: key '%s' must be an integer, not %s", c->file, key, mkj_type_desc(v));
}

static mk_status range(const ctx *c, const char *key, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
        return mkm_error(MK_EFORMAT, "%s: key '%s' = %lld is out of range [%lld, %lld]", c->file, key, (long long)v,
                         (long long)lo, (long long)hi);
    return MK_OK;
}

#define TRY(call)                                                                                                \
    do {                                                                                                         \
        mk_status try_s_ = (call);                                                                               \
        if (try_s_ != MK_OK) return try_s_;                                                                      \
    } while (0)

/* An integer key with an optional alias (NULL). *present tells whether either name was there. */
static mk_status get_int(const ctx *c, const char *key, const char *alias, int required, int64_t def, int64_t lo,
                         int64_t hi, int64_t *out, int *present) {
    const mkj_value *a = find(c, key), *b = alias ? find(c, alias) : NULL;
    int64_t va = 0, vb = 0;
    mk_status s;
    if (a && (s = to_int(c, key, a, &va)) != MK_OK) return s;
    if (b && (s = to_int(c, alias, b, &vb)) != MK_OK) return s;
    if (a && b && va != vb)
        return mkm_error(MK_EFORMAT, "%s: key '%s' = %lld and its alias '%s' = %lld disagree", c->file, key,
                         (long long)va, alias, (long long)vb);
    if (present) *present = a || b;
    if (!a && !b) {
        if (required) {
            if (alias)
                return mkm_error(MK_EFORMAT, "%s: required key '%s' (or its alias '%s') is missing", c->file, key,
                                 alias);
            return mkm_error(MK_EFORMAT, "%s: required key '%s' is missing", c->file, key);
        }
        *out = def;
        return MK_OK;
    }
    const int64_t v = a ? va : vb;
    TRY(range(c, a ? key : alias, v, lo, hi));
    *out = v; /* only a valid value is stored */
    return MK_OK;
}

static mk_status get_bool(const ctx *c, const char *key, const char *alias, int def, int *out) {
    const mkj_value *a = find(c, key), *b = alias ? find(c, alias) : NULL;
    if (a && a->type != MKJ_TRUE && a->type != MKJ_FALSE)
        return mkm_error(MK_EFORMAT, "%s: key '%s' must be true or false, not %s", c->file, key, mkj_type_desc(a));
    if (b && b->type != MKJ_TRUE && b->type != MKJ_FALSE)
        return mkm_error(MK_EFORMAT, "%s: key '%s' must be true or false, not %s", c->file, alias,
                         mkj_type_desc(b));
    if (a && b && a->type != b->type)
        return mkm_error(MK_EFORMAT, "%s: key '%s' = %s and its alias '%s' = %s disagree", c->file, key,
                         mkj_type_desc(a), alias, mkj_type_desc(b));
    *out = a ? a->type == MKJ_TRUE : b ? b->type == MKJ_TRUE : def;
    return MK_OK;
}

/* A finite number > min_exclusive. */
static mk_status get_double(const ctx *c, const char *key, int required, double def, double min_exclusive,
                            double *out) {
    const mkj_value *v = find(c, key);
    if (!v) {
        if (required) return mkm_error(MK_EFORMAT, "%s: required key '%s' is missing", c->file, key);
        *out = def;
        return MK_OK;
    }
    if (v->type != MKJ_NUMBER)
        return mkm_error(MK_EFORMAT, "%s: key '%s' must be a number, not %s", c->file, key, mkj_type_desc(v));
    double d = v->u.num.number;
    if (!(d > min_exclusive))
        return mkm_error(MK_EFORMAT, "%s: key '%s' = %g must be > %g", c->file, key, d, min_exclusive);
    *out = d;
    return MK_OK;
}

static mk_status unsupported(const ctx *c) {
    const mkj_value *v;
    if ((v = find(c, "rope_scaling")) != NULL)
        return mkm_error(MK_EUNSUPPORTED, "%s: key 'rope_scaling' is set; only plain RoPE is supported", c->file);
    if ((v = find(c, "param_sink_scalar")) != NULL)
        return mkm_error(MK_EUNSUPPORTED, "%s: key 'param_sink_scalar' is set; only sink tokens are supported",
                         c->file);
    static const char *const flags[] = {"attention_bias", "bias", "param_sink_of_head_num"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        int on;
        TRY(get_bool(c, flags[i], NULL, 0, &on));
        if (on) return mkm_error(MK_EUNSUPPORTED, "%s: key '%s' = true is not supported", c->file, flags[i]);
    }
    if ((v = find(c, "hidden_act")) != NULL) {
        if (v->type != MKJ_STRING)
            return mkm_error(MK_EFORMAT, "%s: key 'hidden_act' must be a string, not %s", c->file,
                             mkj_type_desc(v));
        if (strcmp(v->u.string, "silu") != 0 || v->n != 4)
            return mkm_error(MK_EUNSUPPORTED, "%s: key 'hidden_act' = \"%.40s\" is not supported (only \"silu\")",
                             c->file, v->u.string);
    }
    return MK_OK;
}

static mk_status dense_layers(const ctx *c, mkm_config *cfg) {
    const int64_t L = cfg->num_hidden_layers;
    const mkj_value *list = find(c, "mlp_only_layers");
    int64_t k = 0;
    int have_k = 0;
    TRY(get_int(c, "first_k_dense_replace", NULL, 0, 0, 0, L, &k, &have_k));
    if (list) {
        if (list->type != MKJ_ARRAY)
            return mkm_error(MK_EFORMAT, "%s: key 'mlp_only_layers' must be an array of layer indices, not %s",
                             c->file, mkj_type_desc(list));
        for (uint32_t i = 0; i < list->n; i++) {
            int64_t idx;
            const mkj_value *it = &list->u.items[i];
            if (it->type != MKJ_NUMBER || to_int(c, "mlp_only_layers", it, &idx) != MK_OK)
                return mkm_error(MK_EFORMAT, "%s: key 'mlp_only_layers' item %u must be an integer layer index",
                                 c->file, i);
            if (idx < 0 || idx >= L)
                return mkm_error(MK_EFORMAT,
                                 "%s: key 'mlp_only_layers' item %u = %lld is out of range [0, %lld) "
                                 "(num_hidden_layers = %lld)",
                                 c->file, i, (long long)idx, (long long)L, (long long)L);
            cfg->is_dense_layer[idx] = 1;
        }
        if (have_k)
            for (int64_t i = 0; i < L; i++)
                if (cfg->is_dense_layer[i] != (i < k))
                    return mkm_error(MK_EFORMAT,
                                     "%s: key 'mlp_only_layers' and its alias 'first_k_dense_replace' = %lld "
                                     "disagree about layer %lld",
                                     c->file, (long long)k, (long long)i);
    } else {
        for (int64_t i = 0; i < k; i++) cfg->is_dense_layer[i] = 1;
    }
    return MK_OK;
}

static mk_status parse_config(const char *json, size_t len, const char *file, mkm_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    mkj_doc *doc = NULL;
    const mkj_value *root = NULL;
    char err[256];
    mkj_limits lim = {32, (size_t)1 << 20};
    mk_status s = mkj_parse(json, len, &lim, &doc, &root, err, sizeof err);
    if (s != MK_OK) return mkm_error(s, "%s: invalid JSON: %s", file, err);
    ctx c = {root, file};
    if (root->type != MKJ_OBJECT) {
        s = mkm_error(MK_EFORMAT, "%s: the top-level JSON value must be an object, not %s", file, mkj_type_desc(root));
    } else {
        s = MK_OK;
    }
#define STEP(call)                                                                                               \
    if (s == MK_OK) s = (call)
    int64_t L = 0;
    STEP(unsupported(&c));
    STEP(get_int(&c, "num_hidden_layers", NULL, 1, 0, 1, MKM_MAX_LAYERS, &L, NULL));
    cfg->num_hidden_layers = L;
    STEP(get_int(&c, "hidden_size", NULL, 1, 0, 1, (int64_t)1 << 20, &cfg->hidden_size, NULL));
    STEP(get_int(&c, "num_attention_heads", NULL, 1, 0, 1, 4096, &cfg->num_attention_heads, NULL));
    STEP(get_int(&c, "num_key_value_heads", NULL, 0, cfg->num_attention_heads, 1, 4096, &cfg->num_key_value_heads,
                 NULL));
    if (s == MK_OK && cfg->num_attention_heads % cfg->num_key_value_heads != 0)
        s = mkm_error(MK_EFORMAT, "%s: num_attention_heads = %lld is not a multiple of num_key_value_heads = %lld",
                      file, (long long)cfg->num_attention_heads, (long long)cfg->num_key_value_heads);
    STEP(get_int(&c, "qk_rope_dim", NULL, 1, 0, 0, 4096, &cfg->qk_rope_dim, NULL));
    if (s == MK_OK && cfg->qk_rope_dim % 2 != 0)
        s = mkm_error(MK_EFORMAT, "%s: key 'qk_rope_dim' = %lld must be even (RoPE rotates pairs)", file,
                      (long long)cfg->qk_rope_dim);
    STEP(get_int(&c, "qk_nope_dim", NULL, 1, 0, 0, 4096, &cfg->qk_nope_dim, NULL));
    if (s == MK_OK && cfg->qk_rope_dim + cfg->qk_nope_dim < 1)
        s = mkm_error(MK_EFORMAT, "%s: qk_rope_dim + qk_nope_dim = 0: the query/key head is empty", file);
    STEP(get_int(&c, "v_channels", NULL, 1, 0, 1, 4096, &cfg->v_channels, NULL));
    STEP(get_int(&c, "vocab_size", NULL, 1, 0, 1, (int64_t)1 << 24, &cfg->vocab_size, NULL));
    STEP(get_int(&c, "max_position_embeddings", NULL, 1, 0, 1, (int64_t)1 << 24, &cfg->max_position_embeddings,
                 NULL));
    STEP(get_double(&c, "rms_norm_eps", 1, 0, 0.0, &cfg->rms_norm_eps));
    if (s == MK_OK && !(cfg->rms_norm_eps < 1.0))
        s = mkm_error(MK_EFORMAT, "%s: key 'rms_norm_eps' = %g must be < 1", file, cfg->rms_norm_eps);
    STEP(get_double(&c, "rope_theta", 1, 0, 0.0, &cfg->rope_theta));
    STEP(get_double(&c, "routed_scaling_factor", 0, 1.0, 0.0, &cfg->routed_scaling_factor));
    if (s == MK_OK && !(cfg->routed_scaling_factor < 1e6))
        s = mkm_error(MK_EFORMAT, "%s: key 'routed_scaling_factor' = %g is out of range", file,
                      cfg->routed_scaling_factor);
    STEP(dense_layers(&c, cfg));

    int n_dense = 0;
    for (int64_t i = 0; s == MK_OK && i < L && i < MKM_MAX_LAYERS; i++) n_dense += cfg->is_dense_layer[i];
    const int any_moe = n_dense < L, any_dense = n_dense > 0;
    STEP(get_int(&c, "intermediate_size", NULL, any_dense, 0, 1, (int64_t)1 << 22, &cfg->intermediate_size, NULL));
    STEP(get_int(&c, "moe_intermediate_size", NULL, any_moe, 0, 1, (int64_t)1 << 22, &cfg->moe_intermediate_size,
                 NULL));
    STEP(get_int(&c, "num_experts", "n_routed_experts", any_moe, 0, 1, 4096, &cfg->num_experts, NULL));
    STEP(get_int(&c, "num_experts_per_tok", NULL, any_moe, 0, 1, 4096, &cfg->num_experts_per_tok, NULL));
    if (s == MK_OK && any_moe && cfg->num_experts_per_tok > cfg->num_experts)
        s = mkm_error(MK_EFORMAT, "%s: num_experts_per_tok = %lld is larger than num_experts = %lld", file,
                      (long long)cfg->num_experts_per_tok, (long long)cfg->num_experts);
    int64_t n_shared = 0;
    int have_shared_size = 0, have_n_shared = 0;
    STEP(get_int(&c, "shared_expert_intermediate_size", NULL, 0, 0, 0, (int64_t)1 << 24,
                 &cfg->shared_expert_intermediate_size, &have_shared_size));
    STEP(get_int(&c, "n_shared_experts", NULL, 0, 0, 0, 64, &n_shared, &have_n_shared));
    if (s == MK_OK && have_n_shared) {
        int64_t from_n = n_shared * cfg->moe_intermediate_size;
        if (have_shared_size && from_n != cfg->shared_expert_intermediate_size)
            s = mkm_error(MK_EFORMAT,
                          "%s: key 'shared_expert_intermediate_size' = %lld and its alias 'n_shared_experts' = %lld "
                          "(x moe_intermediate_size %lld = %lld) disagree",
                          file, (long long)cfg->shared_expert_intermediate_size, (long long)n_shared,
                          (long long)cfg->moe_intermediate_size, (long long)from_n);
        else
            cfg->shared_expert_intermediate_size = from_n;
    }
    STEP(get_int(&c, "param_sink_number", NULL, 0, 0, 0, 65536, &cfg->param_sink_number, NULL));
    STEP(get_bool(&c, "param_sink_with_value", NULL, 0, &cfg->param_sink_with_value));
    STEP(get_bool(&c, "norm_topk_prob", NULL, 0, &cfg->norm_topk_prob));
    STEP(get_bool(&c, "router_enable_expert_bias", NULL, 0, &cfg->router_enable_expert_bias));
    STEP(get_bool(&c, "sandwich_norm", NULL, 0, &cfg->sandwich_norm));
    STEP(get_bool(&c, "tie_word_embeddings", NULL, 0, &cfg->tie_word_embeddings));
    STEP(get_bool(&c, "rope_interleaved", "rope_interleave", 1, &cfg->rope_interleaved));
    STEP(get_int(&c, "num_mtp_layers", "num_nextn_predict_layers", 0, 0, 0, 16, &cfg->num_mtp_layers, NULL));
    STEP(get_int(&c, "sliding_window", NULL, 0, 0, 0, INT64_MAX, &cfg->sliding_window, NULL));
    int use_sw = 1;
    STEP(get_bool(&c, "use_sliding_window", NULL, 1, &use_sw));
    if (s == MK_OK && !use_sw) cfg->sliding_window = 0;
#undef STEP
    mkj_free(doc);
    if (s != MK_OK) memset(cfg, 0, sizeof *cfg);
    return s;
}

mk_status mkm_config_parse(const char *json, size_t len, mkm_config *config) {
    mki_clear_error();
    if (!config) return mkm_error(MK_EINVAL, "mkm_config_parse: config = NULL");
    if (!json && len) return mkm_error(MK_EINVAL, "mkm_config_parse: json = NULL");
    return parse_config(json, len, "config.json", config);
}

mk_status mkm_config_load(const char *path, mkm_config *config) {
    mki_clear_error();
    if (!config) return mkm_error(MK_EINVAL, "mkm_config_load: config = NULL");
    memset(config, 0, sizeof *config);
    if (!path) return mkm_error(MK_EINVAL, "mkm_config_load: path = NULL");
    char *file = mkm_is_dir(path) ? mkm_path_join(path, "config.json") : strdup(path);
    if (!file) return mkm_error(MK_ENOMEM, "mkm_config_load: out of memory");
    char *data = NULL;
    size_t len = 0;
    mk_status s = mkm_read_file(file, CONFIG_MAX_BYTES, &data, &len);
    if (s == MK_OK) s = parse_config(data, len, file, config);
    free(data);
    free(file);
    return s;
}
