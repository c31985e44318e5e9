/*
 * forward.c: the openPangu-R forward pass of the thin reference model (model.h), through the public moekit API only.
 *
 * Load (mkm_model_load):
 *   - config.json (mkm_config_load) and the safetensors checkpoint (mkm_st_open, memory-mapped).
 *   - Matrices (qkv_proj, o_proj, dense MLP, experts, shared expert, lm_head) keep the checkpoint's dtype: F32 and
 *     BF16 tensors are used in place in the mapping when they are aligned (F16 is widened to F32, a misaligned
 *     tensor is copied). The routed experts are one [E, n, k] stack: used in place when the checkpoint happens to
 *     store experts 0..E-1 back to back, otherwise copied once. A matrix is packed once (mk_pack_weights,
 *     MK_PACK_DEFAULT; temporary copies are then dropped) when the kernel that consumes it is not the reference one
 *     (which reads packed weights element by element); MOEKIT_MODEL_PACK=0 never packs, =1 always packs.
 *   - Norm gains, the router (fp32 gating, as the spec recommends) and e_score_correction_bias are converted to F32.
 *   - Sink keys are K-normed once (mk_knorm with the layer's k_layernorm weight) and, like the sink values, stored in
 *     the KV-cache dtype. With param_sink_with_value = false the values are zeros (sink_v.data = NULL).
 *   - KV cache per layer: K [max_context, Hk, Dk] and V [max_context, Hk, Dv], F32 or BF16 (options->kv_dtype;
 *     options->max_context 0 = min(max_position_embeddings, 4096); options->n_threads > 0 calls
 *     mk_set_num_threads, which is process-wide). options may be NULL (F32, default context, default threads).
 *   - Layers past num_hidden_layers (the MTP module) are never looked up: loaded-and-ignored.
 *
 * Forward (mkm_model_forward), n_tokens T at positions pos .. pos+T-1:
 *   x = embed[tokens]
 *   per layer:  xn = rmsnorm(x, input_layernorm); qkv = xn W_qkv^T   ([T, Hq*Dk + Hk*Dk + Hk*Dv], rows [Q;K;V])
 *               mk_rope on the q view (partial, first qk_rope_dim dims); mk_knorm_rope from the k view straight into
 *               the K-cache slots; V converted into the V cache; mk_sink_attention over cache[0, pos+T) + sinks,
 *               scale 1/sqrt(Dk); a = attn W_o^T
 *     sandwich: x += rmsnorm(a, post_attention_layernorm); u = rmsnorm(x, pre_mlp_layernorm); m = mlp(u);
 *               x += rmsnorm(m, post_mlp_layernorm)
 *     else:     x += a; u = rmsnorm(x, post_attention_layernorm); x += mlp(u)
 *     mlp:      dense (mlp_only_layers): down(silu(gate u) * up u)
 *               MoE: logits = u W_router^T (fp32), mk_moe_gate (sigmoid, bias for selection only, renormalise when
 *               norm_topk_prob, x routed_scaling_factor), mk_moe_ffn (routed experts + the unscaled shared expert)
 *   logits = rmsnorm(x, model.norm) lm_head^T    (lm_head = embed_tokens when tie_word_embeddings)
 */
#include "model.h"

#include "internal.h" /* mki_clear_error: a successful call leaves mk_last_error() empty, as in the library */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MKM_ALIGN 64

/* A weight matrix (or a stack of them) as the GEMM / FFN ops take it. */
typedef struct mkm_weight {
    const void *data;            /* [groups, n, k] of dtype (in the mapping or in `owned`); NULL once packed */
    mk_dtype dtype;
    void *owned;                 /* a copy this model allocated, or NULL */
    mk_packed_weights *packed;   /* optional packed form */
    int64_t groups, n, k;
} mkm_weight;

typedef struct mkm_layer {
    int dense;
    float *input_norm, *post_attn_norm, *pre_mlp_norm, *post_mlp_norm; /* [hidden] */
    float *knorm;                                                        /* [Dk] */
    mkm_weight qkv, o;
    void *sink_k, *sink_v; /* [Ns, Hk, Dk], [Ns, Hk, Dv] in the KV dtype; sink_v NULL = zeros */
    /* dense MLP */
    mkm_weight gate, up, down;
    /* MoE */
    float *router;       /* [E, hidden] */
    float *expert_bias;  /* [E] or NULL */
    mkm_weight e_gate, e_up, e_down, s_gate, s_up, s_down;
    /* KV cache */
    void *k_cache, *v_cache;
} mkm_layer;

struct mkm_model {
    mkm_config cfg;
    mkm_st *st;
    mk_dtype kv_dtype;
    int64_t max_context;
    int64_t pos; /* tokens already in the cache */
    int64_t hidden, hq, hk, dk, dv, qkv_dim, vocab;
    int64_t n_layers;
    mkm_layer *layers;
    const void *embed;  /* [vocab, hidden] */
    mk_dtype embed_dtype;
    void *embed_owned;
    mkm_weight lm_head;
    float *final_norm;
    mk_rope_cache *rope;
    int pack_gemm, pack_ffn; /* pack the dense matrices (mk_grouped_gemm) / the expert stacks (mk_moe_ffn) */
    int pack_forced;         /* MOEKIT_MODEL_PACK=1: a packing failure is an error */
    /* workspace, grown to the largest T seen */
    int64_t ws_tokens;
    float *x, *xn, *qkv, *attn, *branch, *mlp_g, *mlp_u, *router_logits, *gate_w;
    int32_t *positions, *gate_ids;
    int64_t mlp_width;
    mkm_timing timing;
};

/* ---- small helpers ------------------------------------------------------------------------------------------- */

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *aligned_alloc_bytes(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, MKM_ALIGN, bytes ? bytes : MKM_ALIGN) != 0) return NULL;
    return p;
}

static void *aligned_calloc_bytes(size_t bytes) {
    void *p = aligned_alloc_bytes(bytes);
    if (p) memset(p, 0, bytes ? bytes : MKM_ALIGN);
    return p;
}

/* Re-reports the library's last error with some context in front of it. */
static mk_status wrap_error(mk_status s, const char *fmt_context, long long layer) {
    char lib[512];
    snprintf(lib, sizeof lib, "%s", mk_last_error());
    if (layer >= 0) return mkm_error(s, "mkm_model_forward: layer %lld %s: %s", layer, fmt_context, lib);
    return mkm_error(s, "mkm_model_forward: %s: %s", fmt_context, lib);
}

static mk_status load_error(mk_status s, const char *what) {
    char lib[512];
    snprintf(lib, sizeof lib, "%s", mk_last_error());
    return mkm_error(s, "mkm_model_load: %s: %s", what, lib);
}

static int mk_dtype_of(mkm_st_dtype d, mk_dtype *out) {
    if (d == MKM_ST_F32) {
        *out = MK_F32;
        return 1;
    }
    if (d == MKM_ST_BF16) {
        *out = MK_BF16;
        return 1;
    }
    return 0;
}

static const unsigned ANY_FLOAT = (1u << MKM_ST_F32) | (1u << MKM_ST_BF16) | (1u << MKM_ST_F16);

/* A small tensor (norm gain, router, bias) as an owned F32 array of exactly the given shape. */
static mk_status load_f32(mkm_model *m, const char *name, int n_dims, const int64_t *shape, float **out) {
    const mkm_tensor *t;
    mk_status s = mkm_st_get(m->st, name, ANY_FLOAT, n_dims, shape, &t);
    if (s != MK_OK) return s;
    size_t n = 1;
    for (int i = 0; i < n_dims; i++) n *= (size_t)shape[i];
    float *p = aligned_alloc_bytes(n * sizeof(float));
    if (!p) return mkm_error(MK_ENOMEM, "mkm_model_load: cannot allocate %zu bytes for %s", n * 4, name);
    s = mkm_tensor_convert(t, MK_F32, p, n);
    if (s != MK_OK) {
        free(p);
        return s;
    }
    *out = p;
    return MK_OK;
}

static mk_status load_vec(mkm_model *m, const char *name, int64_t n, float **out) {
    return load_f32(m, name, 1, &n, out);
}

/* Loads `groups` tensors of shape [n, k] as one [groups, n, k] weight: in place in the mapping when possible, else a
 * copy; packed when the consumer's kernel benefits. Names come from fmt: a %lld for the layer (or none), and when
 * groups > 1 a second %lld for the group (expert) index. */
static mk_status load_matrix(mkm_model *m, mkm_weight *w, int64_t groups, int64_t n, int64_t k, const char *fmt,
                             int64_t layer, mk_op consumer) {
    memset(w, 0, sizeof *w);
    w->groups = groups;
    w->n = n;
    w->k = k;
    const int64_t shape[2] = {n, k};
    const mkm_tensor **ts = calloc((size_t)groups, sizeof *ts);
    if (!ts) return mkm_error(MK_ENOMEM, "mkm_model_load: out of memory");
    mk_status s = MK_OK;
    char name[256];
    int same_dtype = 1, contiguous = 1;
    for (int64_t g = 0; g < groups; g++) {
        if (groups == 1)
            snprintf(name, sizeof name, fmt, (long long)layer);
        else
            snprintf(name, sizeof name, fmt, (long long)layer, (long long)g);
        s = mkm_st_get(m->st, name, ANY_FLOAT, 2, shape, &ts[g]);
        if (s != MK_OK) goto done;
        if (ts[g]->dtype != ts[0]->dtype) same_dtype = 0;
        if ((const char *)ts[g]->data != (const char *)ts[0]->data + (size_t)g * ts[0]->n_bytes) contiguous = 0;
    }
    mk_dtype dt = MK_F32;
    const int native = same_dtype && mk_dtype_of(ts[0]->dtype, &dt);
    const size_t esz = mk_dtype_size(dt);
    const size_t per = (size_t)n * (size_t)k;
    if (native && contiguous && (uintptr_t)ts[0]->data % esz == 0) {
        w->data = ts[0]->data;
        w->dtype = dt;
    } else {
        if (!native) dt = MK_F32; /* F16 or mixed dtypes: widen to F32 */
        const size_t bytes = (size_t)groups * per * mk_dtype_size(dt);
        w->owned = aligned_alloc_bytes(bytes);
        if (!w->owned) {
            s = mkm_error(MK_ENOMEM, "mkm_model_load: cannot allocate %zu bytes for %s", bytes, name);
            goto done;
        }
        for (int64_t g = 0; g < groups && s == MK_OK; g++)
            s = mkm_tensor_convert(ts[g], dt, (char *)w->owned + (size_t)g * per * mk_dtype_size(dt), per);
        if (s != MK_OK) goto done;
        w->data = w->owned;
        w->dtype = dt;
    }
    if (consumer == MK_OP_MOE_FFN ? m->pack_ffn : m->pack_gemm) {
        s = mk_pack_weights(w->data, w->dtype, groups, n, k, MK_PACK_DEFAULT, &w->packed);
        if (s != MK_OK && m->pack_forced) {
            s = load_error(s, "packing the weights (MOEKIT_MODEL_PACK=1)");
            goto done;
        } else if (s != MK_OK) {
            /* packing is an optimisation: fall back to the raw layout for the whole model */
            w->packed = NULL;
            m->pack_gemm = m->pack_ffn = 0;
            s = MK_OK;
        } else if (w->owned) {
            free(w->owned);
            w->owned = NULL;
            w->data = NULL;
        }
    }
done:
    free(ts);
    return s;
}

static void free_weight(mkm_weight *w) {
    mk_packed_weights_free(w->packed);
    free(w->owned);
    memset(w, 0, sizeof *w);
}

/* The weight operand of a GEMM (the packed handle replaces the raw pointer, which may then be NULL). */
static void gemm_weight(mk_grouped_gemm_args *a, const mkm_weight *w) {
    a->w_packed = w->packed;
    a->w = w->data;
    a->w_dtype = w->dtype;
}

/* y[T, n] = x[T, k] W^T with one group (the dense matmul). */
static mk_status matmul(const float *x, int64_t x_stride, int64_t T, const mkm_weight *w, float *y) {
    int64_t offs[2] = {0, T};
    mk_grouped_gemm_args a;
    memset(&a, 0, sizeof a);
    a.n_groups = 1;
    a.group_offsets = offs;
    a.n = w->n;
    a.k = w->k;
    a.x = x;
    a.x_rows = T;
    a.x_stride = x_stride;
    gemm_weight(&a, w);
    a.y = y;
    a.y_rows = T;
    return mk_grouped_gemm(&a);
}

/* ---- load ---------------------------------------------------------------------------------------------------- */

static mk_status check_config(const mkm_config *c) {
    const char *fn = "mkm_model_load";
    if (c->hidden_size < 1) return mkm_error(MK_EFORMAT, "%s: hidden_size = %lld", fn, (long long)c->hidden_size);
    if (c->num_hidden_layers < 1 || c->num_hidden_layers > MKM_MAX_LAYERS)
        return mkm_error(MK_EFORMAT, "%s: num_hidden_layers = %lld is not in [1, %d]", fn,
                         (long long)c->num_hidden_layers, MKM_MAX_LAYERS);
    if (c->num_attention_heads < 1 || c->num_key_value_heads < 1 ||
        c->num_attention_heads % c->num_key_value_heads != 0)
        return mkm_error(MK_EFORMAT, "%s: num_attention_heads = %lld is not a multiple of num_key_value_heads = %lld",
                         fn, (long long)c->num_attention_heads, (long long)c->num_key_value_heads);
    if (c->qk_rope_dim < 2 || c->qk_rope_dim % 2 != 0 || c->qk_nope_dim < 0)
        return mkm_error(MK_EFORMAT, "%s: qk_rope_dim = %lld must be even and >= 2 (qk_nope_dim = %lld)", fn,
                         (long long)c->qk_rope_dim, (long long)c->qk_nope_dim);
    if (c->v_channels < 1) return mkm_error(MK_EFORMAT, "%s: v_channels = %lld", fn, (long long)c->v_channels);
    if (c->vocab_size < 1 || c->vocab_size > INT32_MAX)
        return mkm_error(MK_EFORMAT, "%s: vocab_size = %lld", fn, (long long)c->vocab_size);
    if (c->param_sink_number < 0)
        return mkm_error(MK_EFORMAT, "%s: param_sink_number = %lld", fn, (long long)c->param_sink_number);
    if (!(c->rms_norm_eps >= 0 && isfinite(c->rms_norm_eps)))
        return mkm_error(MK_EFORMAT, "%s: rms_norm_eps = %g", fn, c->rms_norm_eps);
    if (!(c->rope_theta > 1 && isfinite(c->rope_theta)))
        return mkm_error(MK_EFORMAT, "%s: rope_theta = %g", fn, c->rope_theta);
    if (c->sliding_window < 0)
        return mkm_error(MK_EFORMAT, "%s: sliding_window = %lld", fn, (long long)c->sliding_window);
    int any_moe = 0, any_dense = 0;
    for (int64_t i = 0; i < c->num_hidden_layers; i++) {
        if (c->is_dense_layer[i])
            any_dense = 1;
        else
            any_moe = 1;
    }
    if (any_dense && c->intermediate_size < 1)
        return mkm_error(MK_EFORMAT, "%s: intermediate_size = %lld", fn, (long long)c->intermediate_size);
    if (any_moe) {
        if (c->num_experts < 1 || c->num_experts > INT32_MAX)
            return mkm_error(MK_EFORMAT, "%s: num_experts = %lld", fn, (long long)c->num_experts);
        if (c->num_experts_per_tok < 1 || c->num_experts_per_tok > c->num_experts)
            return mkm_error(MK_EFORMAT, "%s: num_experts_per_tok = %lld is not in [1, num_experts = %lld]", fn,
                             (long long)c->num_experts_per_tok, (long long)c->num_experts);
        if (c->moe_intermediate_size < 1)
            return mkm_error(MK_EFORMAT, "%s: moe_intermediate_size = %lld", fn, (long long)c->moe_intermediate_size);
        if (c->shared_expert_intermediate_size < 0)
            return mkm_error(MK_EFORMAT, "%s: shared_expert_intermediate_size = %lld", fn,
                             (long long)c->shared_expert_intermediate_size);
        if (!(c->routed_scaling_factor > 0 && isfinite(c->routed_scaling_factor)))
            return mkm_error(MK_EFORMAT, "%s: routed_scaling_factor = %g", fn, c->routed_scaling_factor);
    }
    return MK_OK;
}

static mk_status load_layer(mkm_model *m, int64_t i) {
    const mkm_config *c = &m->cfg;
    mkm_layer *L = &m->layers[i];
    char name[256];
    mk_status s;
    const int64_t H = m->hidden;
#define LNAME(suffix) (snprintf(name, sizeof name, "model.layers.%lld." suffix, (long long)i), name)
    L->dense = c->is_dense_layer[i] != 0;
    if ((s = load_vec(m, LNAME("input_layernorm.weight"), H, &L->input_norm)) != MK_OK) return s;
    if ((s = load_vec(m, LNAME("post_attention_layernorm.weight"), H, &L->post_attn_norm)) != MK_OK) return s;
    if (c->sandwich_norm) {
        if ((s = load_vec(m, LNAME("pre_mlp_layernorm.weight"), H, &L->pre_mlp_norm)) != MK_OK) return s;
        if ((s = load_vec(m, LNAME("post_mlp_layernorm.weight"), H, &L->post_mlp_norm)) != MK_OK) return s;
    }
    if ((s = load_vec(m, LNAME("self_attn.k_layernorm.weight"), m->dk, &L->knorm)) != MK_OK) return s;
#define LOADW(w, groups, n, k, suffix, op)                                                                       \
    if ((s = load_matrix(m, w, groups, n, k, "model.layers.%lld." suffix, i, op)) != MK_OK) return s
    LOADW(&L->qkv, 1, m->qkv_dim, H, "self_attn.qkv_proj.weight", MK_OP_GROUPED_GEMM);
    LOADW(&L->o, 1, H, m->hq * m->dv, "self_attn.o_proj.weight", MK_OP_GROUPED_GEMM);

    /* sinks: K-normed once, stored in the KV dtype */
    const int64_t Ns = c->param_sink_number, esz = (int64_t)mk_dtype_size(m->kv_dtype);
    if (Ns > 0) {
        const int64_t kshape[3] = {Ns, m->hk, m->dk};
        float *sk = NULL;
        if ((s = load_f32(m, LNAME("self_attn.param_sink_key"), 3, kshape, &sk)) != MK_OK) return s;
        mk_heads v = {sk, MK_F32, Ns, m->hk, m->dk, 0, 0};
        s = mk_knorm(&v, L->knorm, (float)c->rms_norm_eps);
        if (s == MK_OK) {
            L->sink_k = aligned_alloc_bytes((size_t)(Ns * m->hk * m->dk * esz));
            s = L->sink_k ? mk_convert(L->sink_k, m->kv_dtype, sk, MK_F32, Ns * m->hk * m->dk)
                          : mkm_error(MK_ENOMEM, "mkm_model_load: out of memory for the sink keys");
        } else {
            s = load_error(s, "K-norm of the sink keys");
        }
        free(sk);
        if (s != MK_OK) return s;
        if (c->param_sink_with_value) {
            const int64_t vshape[3] = {Ns, m->hk, m->dv};
            float *sv = NULL;
            if ((s = load_f32(m, LNAME("self_attn.param_sink_value"), 3, vshape, &sv)) != MK_OK) return s;
            L->sink_v = aligned_alloc_bytes((size_t)(Ns * m->hk * m->dv * esz));
            s = L->sink_v ? mk_convert(L->sink_v, m->kv_dtype, sv, MK_F32, Ns * m->hk * m->dv)
                          : mkm_error(MK_ENOMEM, "mkm_model_load: out of memory for the sink values");
            free(sv);
            if (s != MK_OK) return s;
        }
    }

    if (L->dense) {
        const int64_t I = c->intermediate_size;
        LOADW(&L->gate, 1, I, H, "mlp.gate_proj.weight", MK_OP_GROUPED_GEMM);
        LOADW(&L->up, 1, I, H, "mlp.up_proj.weight", MK_OP_GROUPED_GEMM);
        LOADW(&L->down, 1, H, I, "mlp.down_proj.weight", MK_OP_GROUPED_GEMM);
    } else {
        const int64_t E = c->num_experts, I = c->moe_intermediate_size, S = c->shared_expert_intermediate_size;
        const int64_t rshape[2] = {E, H};
        if ((s = load_f32(m, LNAME("mlp.gate.weight"), 2, rshape, &L->router)) != MK_OK) return s;
        if (c->router_enable_expert_bias) {
            /* the HF name, or the name vLLM remaps it to */
            const mkm_tensor *t;
            if (mkm_st_get(m->st, LNAME("mlp.e_score_correction_bias"), ANY_FLOAT, 1, &E, &t) != MK_OK &&
                mkm_st_get(m->st, LNAME("mlp.gate.e_score_correction_bias"), ANY_FLOAT, 1, &E, &t) != MK_OK)
                return mkm_error(MK_EFORMAT, "mkm_model_load: tensor model.layers.%lld.mlp.e_score_correction_bias "
                                 "(router_enable_expert_bias = true) is missing or not [%lld]",
                                 (long long)i, (long long)E);
            if ((s = load_vec(m, t->name ? t->name : name, E, &L->expert_bias)) != MK_OK) return s;
        }
        LOADW(&L->e_gate, E, I, H, "mlp.experts.%lld.gate_proj.weight", MK_OP_MOE_FFN);
        LOADW(&L->e_up, E, I, H, "mlp.experts.%lld.up_proj.weight", MK_OP_MOE_FFN);
        LOADW(&L->e_down, E, H, I, "mlp.experts.%lld.down_proj.weight", MK_OP_MOE_FFN);
        if (S > 0) {
            LOADW(&L->s_gate, 1, S, H, "mlp.shared_experts.gate_proj.weight", MK_OP_MOE_FFN);
            LOADW(&L->s_up, 1, S, H, "mlp.shared_experts.up_proj.weight", MK_OP_MOE_FFN);
            LOADW(&L->s_down, 1, H, S, "mlp.shared_experts.down_proj.weight", MK_OP_MOE_FFN);
        }
        /* mk_moe_ffn takes one w_dtype for every raw (unpacked) tensor of the block */
        const mkm_weight *ws[] = {&L->e_gate, &L->e_up, &L->e_down, &L->s_gate, &L->s_up, &L->s_down};
        const int n_ws = S > 0 ? 6 : 3;
        for (int j = 0; j < n_ws; j++)
            if (!ws[j]->packed && ws[j]->dtype != L->e_gate.dtype)
                return mkm_error(MK_EFORMAT,
                                 "mkm_model_load: the expert weights of layer %lld mix dtypes (%s and %s); "
                                 "mk_moe_ffn needs one dtype for its unpacked weights",
                                 (long long)i, mk_dtype_name(L->e_gate.dtype), mk_dtype_name(ws[j]->dtype));
    }
#undef LNAME
#undef LOADW

    L->k_cache = aligned_calloc_bytes((size_t)(m->max_context * m->hk * m->dk * esz));
    L->v_cache = aligned_calloc_bytes((size_t)(m->max_context * m->hk * m->dv * esz));
    if (!L->k_cache || !L->v_cache)
        return mkm_error(MK_ENOMEM, "mkm_model_load: cannot allocate the KV cache of layer %lld (max_context %lld)",
                         (long long)i, (long long)m->max_context);
    return MK_OK;
}

static const char *env_value(const char *name) {
    const char *v = getenv(name);
    return v && v[0] ? v : NULL;
}

mk_status mkm_model_load(const char *dir, const mkm_run_options *options, mkm_model **model) {
    mki_clear_error();
    if (!model) return mkm_error(MK_EINVAL, "mkm_model_load: model = NULL");
    *model = NULL;
    if (!dir) return mkm_error(MK_EINVAL, "mkm_model_load: dir = NULL");
    mkm_run_options opt = {MK_F32, 0, 0};
    if (options) opt = *options;
    if (opt.kv_dtype != MK_F32 && opt.kv_dtype != MK_BF16)
        return mkm_error(MK_EINVAL, "mkm_model_load: kv_dtype = %d is not MK_F32 or MK_BF16", (int)opt.kv_dtype);
    if (opt.n_threads < 0) return mkm_error(MK_EINVAL, "mkm_model_load: n_threads = %d", opt.n_threads);
    if (opt.max_context < 0)
        return mkm_error(MK_EINVAL, "mkm_model_load: max_context = %lld must be >= 0 (0 = default)",
                         (long long)opt.max_context);

    mkm_model *m = calloc(1, sizeof *m);
    if (!m) return mkm_error(MK_ENOMEM, "mkm_model_load: out of memory");
    mk_status s = mkm_config_load(dir, &m->cfg);
    if (s != MK_OK) goto fail;
    if ((s = check_config(&m->cfg)) != MK_OK) goto fail;
    const mkm_config *c = &m->cfg;
    m->kv_dtype = opt.kv_dtype;
    m->hidden = c->hidden_size;
    m->hq = c->num_attention_heads;
    m->hk = c->num_key_value_heads;
    m->dk = c->qk_rope_dim + c->qk_nope_dim;
    m->dv = c->v_channels;
    m->qkv_dim = m->hq * m->dk + m->hk * m->dk + m->hk * m->dv;
    m->vocab = c->vocab_size;
    m->n_layers = c->num_hidden_layers;
    const int64_t max_pos = c->max_position_embeddings > 0 ? c->max_position_embeddings : INT32_MAX;
    m->max_context = opt.max_context > 0 ? opt.max_context : (max_pos < 4096 ? max_pos : 4096);
    if (m->max_context > max_pos) {
        s = mkm_error(MK_EINVAL, "mkm_model_load: max_context = %lld exceeds max_position_embeddings = %lld",
                      (long long)m->max_context, (long long)max_pos);
        goto fail;
    }
    if (opt.n_threads > 0 && (s = mk_set_num_threads(opt.n_threads)) != MK_OK) {
        s = load_error(s, "n_threads");
        goto fail;
    }
    const char *pack_env = env_value("MOEKIT_MODEL_PACK");
    /* Packing pays off with the SIMD kernels; the reference kernels read a packed handle element by element, so by
     * default a weight is packed only when the kernel that consumes it (for the ISA selected now) is not "ref".
     * MOEKIT_MODEL_PACK=0 never packs, =1 always packs. Results do not depend on it (packed = raw, bit for bit). */
    if (pack_env && strcmp(pack_env, "0") == 0) {
        m->pack_gemm = m->pack_ffn = 0;
    } else if (pack_env && strcmp(pack_env, "1") == 0) {
        m->pack_gemm = m->pack_ffn = m->pack_forced = 1;
    } else {
        m->pack_gemm = strcmp(mk_kernel_name(MK_OP_GROUPED_GEMM), "ref") != 0;
        m->pack_ffn = strcmp(mk_kernel_name(MK_OP_MOE_FFN), "ref") != 0;
    }

    if ((s = mkm_st_open(dir, &m->st)) != MK_OK) goto fail;

    const mk_rope_config rc = {c->qk_rope_dim, 0, c->rope_interleaved ? MK_ROPE_INTERLEAVED : MK_ROPE_NEOX,
                               c->rope_theta, m->max_context};
    if ((s = mk_rope_cache_create(&rc, &m->rope)) != MK_OK) {
        s = load_error(s, "RoPE cache");
        goto fail;
    }

    /* embedding, final norm, lm_head */
    {
        const int64_t eshape[2] = {m->vocab, m->hidden};
        const mkm_tensor *t;
        if ((s = mkm_st_get(m->st, "model.embed_tokens.weight", ANY_FLOAT, 2, eshape, &t)) != MK_OK) goto fail;
        mk_dtype dt;
        if (mk_dtype_of(t->dtype, &dt) && (uintptr_t)t->data % mk_dtype_size(dt) == 0) {
            m->embed = t->data;
            m->embed_dtype = dt;
        } else {
            const size_t n = (size_t)m->vocab * (size_t)m->hidden;
            m->embed_owned = aligned_alloc_bytes(n * sizeof(float));
            if (!m->embed_owned) {
                s = mkm_error(MK_ENOMEM, "mkm_model_load: cannot allocate the embedding");
                goto fail;
            }
            if ((s = mkm_tensor_convert(t, MK_F32, m->embed_owned, n)) != MK_OK) goto fail;
            m->embed = m->embed_owned;
            m->embed_dtype = MK_F32;
        }
        if ((s = load_vec(m, "model.norm.weight", m->hidden, &m->final_norm)) != MK_OK) goto fail;
        s = load_matrix(m, &m->lm_head, 1, m->vocab, m->hidden,
                        c->tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight", 0, MK_OP_GROUPED_GEMM);
        if (s != MK_OK) goto fail;
    }

    m->layers = calloc((size_t)m->n_layers, sizeof *m->layers);
    if (!m->layers) {
        s = mkm_error(MK_ENOMEM, "mkm_model_load: out of memory");
        goto fail;
    }
    for (int64_t i = 0; i < m->n_layers; i++)
        if ((s = load_layer(m, i)) != MK_OK) goto fail;
    *model = m;
    mki_clear_error(); /* e.g. the failed look-up of the first e_score_correction_bias name */
    return MK_OK;
fail:
    mkm_model_free(m);
    return s;
}

void mkm_model_free(mkm_model *m) {
    if (!m) return;
    if (m->layers) {
        for (int64_t i = 0; i < m->n_layers; i++) {
            mkm_layer *L = &m->layers[i];
            free(L->input_norm);
            free(L->post_attn_norm);
            free(L->pre_mlp_norm);
            free(L->post_mlp_norm);
            free(L->knorm);
            free(L->sink_k);
            free(L->sink_v);
            free(L->router);
            free(L->expert_bias);
            free(L->k_cache);
            free(L->v_cache);
            mkm_weight *ws[] = {&L->qkv, &L->o, &L->gate, &L->up, &L->down, &L->e_gate, &L->e_up, &L->e_down,
                                &L->s_gate, &L->s_up, &L->s_down};
            for (size_t j = 0; j < sizeof ws / sizeof ws[0]; j++) free_weight(ws[j]);
        }
        free(m->layers);
    }
    free_weight(&m->lm_head);
    free(m->embed_owned);
    free(m->final_norm);
    mk_rope_cache_destroy(m->rope);
    if (m->st) mkm_st_close(m->st);
    free(m->x);
    free(m->xn);
    free(m->qkv);
    free(m->attn);
    free(m->branch);
    free(m->mlp_g);
    free(m->mlp_u);
    free(m->router_logits);
    free(m->gate_w);
    free(m->positions);
    free(m->gate_ids);
    free(m);
}

const mkm_config *mkm_model_config(const mkm_model *model) { return model ? &model->cfg : NULL; }

void mkm_model_reset(mkm_model *model) {
    if (model) model->pos = 0;
}

const mkm_timing *mkm_model_timing(const mkm_model *model) { return model ? &model->timing : NULL; }

/* ---- forward ------------------------------------------------------------------------------------------------- */

static mk_status ensure_workspace(mkm_model *m, int64_t T) {
    if (T <= m->ws_tokens) return MK_OK;
    const mkm_config *c = &m->cfg;
    int64_t w = 0;
    for (int64_t i = 0; i < m->n_layers; i++) {
        const int64_t lw = c->is_dense_layer[i] ? c->intermediate_size : 0;
        if (lw > w) w = lw;
    }
    m->mlp_width = w;
    const int64_t E = c->num_experts > 0 ? c->num_experts : 1, K = c->num_experts_per_tok > 0 ? c->num_experts_per_tok : 1;
    float **fb[] = {&m->x, &m->xn, &m->qkv, &m->attn, &m->branch, &m->mlp_g, &m->mlp_u, &m->router_logits, &m->gate_w};
    const int64_t fw[] = {m->hidden, m->hidden, m->qkv_dim, m->hq * m->dv, m->hidden, w, w, E, K};
    for (size_t j = 0; j < sizeof fb / sizeof fb[0]; j++) {
        free(*fb[j]);
        *fb[j] = aligned_alloc_bytes((size_t)(T * (fw[j] > 0 ? fw[j] : 1)) * sizeof(float));
    }
    free(m->positions);
    free(m->gate_ids);
    m->positions = aligned_alloc_bytes((size_t)T * sizeof(int32_t));
    m->gate_ids = aligned_alloc_bytes((size_t)(T * K) * sizeof(int32_t));
    for (size_t j = 0; j < sizeof fb / sizeof fb[0]; j++)
        if (!*fb[j]) goto oom;
    if (!m->positions || !m->gate_ids) goto oom;
    m->ws_tokens = T;
    return MK_OK;
oom:
    m->ws_tokens = 0;
    return mkm_error(MK_ENOMEM, "mkm_model_forward: cannot allocate the workspace for %lld tokens", (long long)T);
}

enum { SLOT_MATMUL = MK_OP_COUNT, SLOT_EMBED, SLOT_LM_HEAD, SLOT_OTHER };

#define TIMED(slot, what, call)                                                                                  \
    do {                                                                                                         \
        const double t0_ = now_seconds();                                                                        \
        const mk_status s_ = (call);                                                                             \
        m->timing.seconds[slot] += now_seconds() - t0_;                                                          \
        m->timing.calls[slot]++;                                                                                 \
        if (s_ != MK_OK) return wrap_error(s_, what, layer);                                                     \
    } while (0)

static mk_status attention_block(mkm_model *m, int64_t layer, int64_t T) {
    const mkm_config *c = &m->cfg;
    mkm_layer *L = &m->layers[layer];
    const float eps = (float)c->rms_norm_eps;
    const int64_t pos = m->pos, esz = (int64_t)mk_dtype_size(m->kv_dtype);
    const int64_t H = m->hidden, Hq = m->hq, Hk = m->hk, Dk = m->dk, Dv = m->dv, ld = m->qkv_dim;

    TIMED(MK_OP_RMSNORM, "input_layernorm", mk_rmsnorm(m->x, 0, L->input_norm, eps, T, H, m->xn, 0));
    TIMED(SLOT_MATMUL, "qkv_proj", matmul(m->xn, 0, T, &L->qkv, m->qkv));

    const mk_heads q = {m->qkv, MK_F32, T, Hq, Dk, ld, Dk};
    const mk_heads k = {m->qkv + Hq * Dk, MK_F32, T, Hk, Dk, ld, Dk};
    const mk_heads k_slot = {(char *)L->k_cache + pos * Hk * Dk * esz, m->kv_dtype, T, Hk, Dk, 0, 0};
    TIMED(MK_OP_ROPE, "RoPE of q", mk_rope(m->rope, m->positions, &q, NULL));
    TIMED(MK_OP_KNORM_ROPE, "K-norm + RoPE of k", mk_knorm_rope(&k, L->knorm, eps, m->rope, m->positions, &k_slot));
    {
        const double t0 = now_seconds();
        for (int64_t t = 0; t < T; t++) {
            const mk_status s = mk_convert((char *)L->v_cache + (pos + t) * Hk * Dv * esz, m->kv_dtype,
                                           m->qkv + t * ld + (Hq + Hk) * Dk, MK_F32, Hk * Dv);
            if (s != MK_OK) return wrap_error(s, "V cache write", layer);
        }
        m->timing.seconds[SLOT_OTHER] += now_seconds() - t0;
        m->timing.calls[SLOT_OTHER]++;
    }

    mk_attn_args a;
    memset(&a, 0, sizeof a);
    a.q = q;
    a.k_cache = (mk_heads){L->k_cache, m->kv_dtype, pos + T, Hk, Dk, 0, 0};
    a.v_cache = (mk_heads){L->v_cache, m->kv_dtype, pos + T, Hk, Dv, 0, 0};
    a.sink_k = (mk_heads){L->sink_k, m->kv_dtype, c->param_sink_number, Hk, Dk, 0, 0};
    a.sink_v = (mk_heads){L->sink_v, m->kv_dtype, c->param_sink_number, Hk, Dv, 0, 0};
    a.window = c->sliding_window;
    a.scale = (float)(1.0 / sqrt((double)Dk));
    a.out = (mk_heads){m->attn, MK_F32, T, Hq, Dv, 0, 0};
    TIMED(MK_OP_SINK_ATTENTION, "sink attention", mk_sink_attention(&a));
    TIMED(SLOT_MATMUL, "o_proj", matmul(m->attn, 0, T, &L->o, m->branch));
    return MK_OK;
}

static mk_status mlp_block(mkm_model *m, int64_t layer, int64_t T) {
    const mkm_config *c = &m->cfg;
    mkm_layer *L = &m->layers[layer];
    const int64_t H = m->hidden;
    if (L->dense) {
        const int64_t I = c->intermediate_size;
        TIMED(SLOT_MATMUL, "mlp.gate_proj", matmul(m->xn, 0, T, &L->gate, m->mlp_g));
        TIMED(SLOT_MATMUL, "mlp.up_proj", matmul(m->xn, 0, T, &L->up, m->mlp_u));
        TIMED(MK_OP_SWIGLU, "mlp SwiGLU", mk_swiglu(m->mlp_g, 0, m->mlp_u, 0, m->mlp_g, 0, T, I));
        TIMED(SLOT_MATMUL, "mlp.down_proj", matmul(m->mlp_g, 0, T, &L->down, m->branch));
        return MK_OK;
    }
    const int64_t E = c->num_experts, K = c->num_experts_per_tok;
    const mkm_weight router = {L->router, MK_F32, NULL, NULL, 1, E, H};
    TIMED(SLOT_MATMUL, "router (mlp.gate)", matmul(m->xn, 0, T, &router, m->router_logits));
    mk_moe_gate_args g;
    memset(&g, 0, sizeof g);
    g.n_tokens = T;
    g.n_experts = E;
    g.top_k = K;
    g.logits = m->router_logits;
    g.score_func = MK_SCORE_SIGMOID;
    g.expert_bias = L->expert_bias;
    g.renormalize = c->norm_topk_prob ? 1 : 0;
    g.routed_scaling_factor = (float)c->routed_scaling_factor;
    g.ids = m->gate_ids;
    g.weights = m->gate_w;
    TIMED(MK_OP_MOE_GATE, "MoE gate", mk_moe_gate(&g));

    mk_moe_ffn_args f;
    memset(&f, 0, sizeof f);
    f.n_tokens = T;
    f.hidden = H;
    f.n_experts = E;
    f.expert_dim = c->moe_intermediate_size;
    f.top_k = K;
    f.x = m->xn;
    f.expert_ids = m->gate_ids;
    f.expert_weights = m->gate_w;
    /* a packed handle replaces its raw pointer (which is NULL when the packed form is the only copy) */
    f.w_dtype = L->e_gate.dtype;
    f.w_gate = L->e_gate.data;
    f.w_up = L->e_up.data;
    f.w_down = L->e_down.data;
    f.packed_gate = L->e_gate.packed;
    f.packed_up = L->e_up.packed;
    f.packed_down = L->e_down.packed;
    f.shared_dim = c->shared_expert_intermediate_size;
    if (f.shared_dim > 0) {
        f.shared_gate = L->s_gate.data;
        f.shared_up = L->s_up.data;
        f.shared_down = L->s_down.data;
        f.packed_shared_gate = L->s_gate.packed;
        f.packed_shared_up = L->s_up.packed;
        f.packed_shared_down = L->s_down.packed;
    }
    f.y = m->branch;
    TIMED(MK_OP_MOE_FFN, "MoE experts", mk_moe_ffn(&f));
    return MK_OK;
}

static mk_status add_rows(mkm_model *m, int64_t T) {
    const double t0 = now_seconds();
    const int64_t n = T * m->hidden;
    for (int64_t i = 0; i < n; i++) m->x[i] += m->branch[i];
    m->timing.seconds[SLOT_OTHER] += now_seconds() - t0;
    m->timing.calls[SLOT_OTHER]++;
    return MK_OK;
}

mk_status mkm_model_forward(mkm_model *m, const int32_t *tokens, int64_t n_tokens, float *logits,
                            float *all_logits) {
    const char *fn = "mkm_model_forward";
    mki_clear_error();
    if (!m) return mkm_error(MK_EINVAL, "%s: model = NULL", fn);
    if (n_tokens < 1) return mkm_error(MK_EINVAL, "%s: n_tokens = %lld must be >= 1", fn, (long long)n_tokens);
    if (!tokens) return mkm_error(MK_EINVAL, "%s: tokens = NULL", fn);
    if (n_tokens > m->max_context - m->pos)
        return mkm_error(MK_EINVAL,
                         "%s: n_tokens = %lld at position %lld exceeds max_context = %lld (the KV cache capacity)", fn,
                         (long long)n_tokens, (long long)m->pos, (long long)m->max_context);
    for (int64_t t = 0; t < n_tokens; t++)
        if (tokens[t] < 0 || tokens[t] >= m->vocab)
            return mkm_error(MK_EINVAL, "%s: tokens[%lld] = %d is not in [0, vocab_size = %lld)", fn, (long long)t,
                             (int)tokens[t], (long long)m->vocab);
    mk_status s = ensure_workspace(m, n_tokens);
    if (s != MK_OK) return s;

    const mkm_config *c = &m->cfg;
    const int64_t T = n_tokens, H = m->hidden;
    const float eps = (float)c->rms_norm_eps;
    int64_t layer = -1;
    for (int64_t t = 0; t < T; t++) m->positions[t] = (int32_t)(m->pos + t);
    {
        const double t0 = now_seconds();
        const size_t esz = mk_dtype_size(m->embed_dtype);
        for (int64_t t = 0; t < T; t++) {
            s = mk_convert(m->x + t * H, MK_F32, (const char *)m->embed + (size_t)tokens[t] * (size_t)H * esz,
                           m->embed_dtype, H);
            if (s != MK_OK) return wrap_error(s, "embedding", -1);
        }
        m->timing.seconds[SLOT_EMBED] += now_seconds() - t0;
        m->timing.calls[SLOT_EMBED]++;
    }

    for (layer = 0; layer < m->n_layers; layer++) {
        mkm_layer *L = &m->layers[layer];
        if ((s = attention_block(m, layer, T)) != MK_OK) return s;
        if (c->sandwich_norm) {
            TIMED(MK_OP_RMSNORM_ADD, "post_attention_layernorm",
                  mk_rmsnorm_add(m->x, 0, m->branch, 0, L->post_attn_norm, eps, T, H));
            TIMED(MK_OP_RMSNORM, "pre_mlp_layernorm", mk_rmsnorm(m->x, 0, L->pre_mlp_norm, eps, T, H, m->xn, 0));
        } else {
            add_rows(m, T);
            TIMED(MK_OP_RMSNORM, "post_attention_layernorm",
                  mk_rmsnorm(m->x, 0, L->post_attn_norm, eps, T, H, m->xn, 0));
        }
        if ((s = mlp_block(m, layer, T)) != MK_OK) return s;
        if (c->sandwich_norm)
            TIMED(MK_OP_RMSNORM_ADD, "post_mlp_layernorm",
                  mk_rmsnorm_add(m->x, 0, m->branch, 0, L->post_mlp_norm, eps, T, H));
        else
            add_rows(m, T);
    }
    layer = -1;
    m->pos += T;

    if (all_logits) {
        TIMED(MK_OP_RMSNORM, "model.norm", mk_rmsnorm(m->x, 0, m->final_norm, eps, T, H, m->xn, 0));
        TIMED(SLOT_LM_HEAD, "lm_head", matmul(m->xn, 0, T, &m->lm_head, all_logits));
        if (logits) memcpy(logits, all_logits + (T - 1) * m->vocab, (size_t)m->vocab * sizeof(float));
    } else if (logits) {
        TIMED(MK_OP_RMSNORM, "model.norm", mk_rmsnorm(m->x + (T - 1) * H, 0, m->final_norm, eps, 1, H, m->xn, 0));
        TIMED(SLOT_LM_HEAD, "lm_head", matmul(m->xn, 0, 1, &m->lm_head, logits));
    }
    return MK_OK;
}
