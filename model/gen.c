/*
 * gen.c: mkm_gen, a random openPangu-R checkpoint with the exact Hugging Face tensor names (shared reference,
 * section 7): OUT_DIR/config.json + OUT_DIR/model.safetensors.
 *
 * Presets
 *   tiny         the structure of openPangu-R-72B at a toy width, so CI runs it in seconds: hidden 64, 2 layers
 *                (layer 0 dense, layer 1 MoE: mlp_only_layers [0]), dense width 128, 80 experts of width 32, top-8,
 *                shared expert width 64 (2 x 32), 32 query heads / 2 KV heads (GQA 16:1), q/k head 192 (rope 64 +
 *                nope 128), v head 128, 128 sink tokens with values, vocab 256, max_position_embeddings 4096,
 *                rope_theta 25.6e6, rms_norm_eps 1e-5, routed_scaling_factor 2.5. Default dtype F32.
 *   pangu-r-72b  the real dimensions (hidden 4608, 50 layers, 4 dense, vocab 153600, ...). Default dtype BF16;
 *                with n_layers = 2 (one dense, one MoE layer) it is about 6.4 GB.
 * With n_layers = N the first min(preset's dense layers, N / 2) layers are dense, the rest MoE.
 *
 * Initialisation (seeded; tensor i draws from its own splitmix64 stream seeded from (seed, i), so the values do not
 * depend on chunking). U(c, a) below means c + uniform(-a, a). L = num_hidden_layers, H = hidden_size.
 *   linear weights W[out, in] (qkv_proj, o_proj, dense/expert/shared gate_proj, up_proj, down_proj, router
 *   mlp.gate.weight): U(0, 0.5 * sqrt(3 / in)), i.e. std 0.5 / sqrt(in): an RMS-normalised input (rms ~1) gives
 *   outputs of std ~0.5 (router logits too, so sigmoid scores spread around 0.5).
 *   model.embed_tokens.weight: U(0, sqrt(3)) (std 1).   lm_head.weight: U(0, sqrt(3 / H)) (logits std ~1).
 *   pre-norm gains (input_layernorm, pre_mlp_layernorm, k_layernorm, model.norm): U(1, 0.1).
 *   post-norm gains (post_attention_layernorm, post_mlp_layernorm), depth-scaled: g = 1 / sqrt(2 L), U(g, 0.1 g).
 *     Each of the 2 L branches adds rms ~g to the residual stream, so its variance stays ~1 + 2 L g^2 = 2.
 *   mlp.e_score_correction_bias (always F32): U(0, 0.01): small, but it can flip near-tied selections.
 *   param_sink_key: U(0, sqrt(3)) (K-Norm rescales it anyway); param_sink_value: U(0, 0.5 * sqrt(3)) (std 0.5,
 *   like real values).
 *
 * The file: header JSON padded with spaces to a multiple of 8 bytes, tensors contiguous in header order with no
 * gaps. It is streamed (1M elements at a time) to model.safetensors.tmp and renamed when complete, so a failed or
 * interrupted run never leaves a valid-looking file behind.
 */
#include "model.h"

#include "internal.h" /* mki_clear_error, mki_f32_to_bf16 */

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

typedef struct preset_dims {
    const char *name;
    int64_t hidden, intermediate, moe_intermediate, shared, layers, dense_layers, heads, kv_heads, rope, nope, v,
        experts, topk, vocab, max_pos, sinks, bos, eos;
} preset_dims;

static const preset_dims PRESETS[2] = {
    {"tiny", 64, 128, 32, 64, 2, 1, 32, 2, 64, 128, 128, 80, 8, 256, 4096, 128, 1, 2},
    {"pangu-r-72b", 4608, 10240, 1280, 2560, 50, 4, 64, 4, 64, 128, 128, 80, 8, 153600, 131072, 128, 1, 45892},
};

typedef struct gen_tensor {
    char name[96];
    mkm_st_dtype dtype;
    int n_dims;
    int64_t shape[3];
    float center, spread; /* values: center + uniform(-spread, spread) */
    uint64_t elems, begin, end;
} gen_tensor;

typedef struct tensor_list {
    gen_tensor *t;
    size_t n, cap;
} tensor_list;

static int add(tensor_list *l, mkm_st_dtype dtype, float center, float spread, int n_dims, int64_t d0, int64_t d1,
               int64_t d2, const char *fmt, ...) __attribute__((format(printf, 9, 10)));

static int add(tensor_list *l, mkm_st_dtype dtype, float center, float spread, int n_dims, int64_t d0, int64_t d1,
               int64_t d2, const char *fmt, ...) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        gen_tensor *nt = realloc(l->t, cap * sizeof *nt);
        if (!nt) return 0;
        l->t = nt;
        l->cap = cap;
    }
    gen_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->dtype = dtype;
    t->n_dims = n_dims;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->shape[2] = d2;
    t->center = center;
    t->spread = spread;
    t->elems = (uint64_t)d0 * (uint64_t)(n_dims > 1 ? d1 : 1) * (uint64_t)(n_dims > 2 ? d2 : 1);
    return 1;
}

static float lin(int64_t fan_in) { return (float)(0.5 * sqrt(3.0 / (double)fan_in)); }

/* The tensor list of a checkpoint, in file order. */
static int build_list(const preset_dims *p, int64_t L, const uint8_t *dense, mkm_st_dtype wd, tensor_list *l) {
    const int64_t H = p->hidden, dqk = p->rope + p->nope, dv = p->v;
    const int64_t qkv_rows = p->heads * dqk + p->kv_heads * dqk + p->kv_heads * dv;
    const float post = (float)(1.0 / sqrt(2.0 * (double)L));
    int ok = add(l, wd, 0.0f, (float)sqrt(3.0), 2, p->vocab, H, 0, "model.embed_tokens.weight");
    for (int64_t i = 0; i < L && ok; i++) {
        const long long li = (long long)i;
        ok &= add(l, wd, 1.0f, 0.1f, 1, H, 0, 0, "model.layers.%lld.input_layernorm.weight", li);
        ok &= add(l, wd, 0.0f, lin(H), 2, qkv_rows, H, 0, "model.layers.%lld.self_attn.qkv_proj.weight", li);
        ok &= add(l, wd, 1.0f, 0.1f, 1, dqk, 0, 0, "model.layers.%lld.self_attn.k_layernorm.weight", li);
        ok &= add(l, wd, 0.0f, lin(p->heads * dv), 2, H, p->heads * dv, 0, "model.layers.%lld.self_attn.o_proj.weight",
                  li);
        if (p->sinks > 0) {
            ok &= add(l, wd, 0.0f, (float)sqrt(3.0), 3, p->sinks, p->kv_heads, dqk,
                      "model.layers.%lld.self_attn.param_sink_key", li);
            ok &= add(l, wd, 0.0f, (float)(0.5 * sqrt(3.0)), 3, p->sinks, p->kv_heads, dv,
                      "model.layers.%lld.self_attn.param_sink_value", li);
        }
        ok &= add(l, wd, post, 0.1f * post, 1, H, 0, 0, "model.layers.%lld.post_attention_layernorm.weight", li);
        ok &= add(l, wd, 1.0f, 0.1f, 1, H, 0, 0, "model.layers.%lld.pre_mlp_layernorm.weight", li);
        ok &= add(l, wd, post, 0.1f * post, 1, H, 0, 0, "model.layers.%lld.post_mlp_layernorm.weight", li);
        if (dense[i]) {
            const int64_t I = p->intermediate;
            ok &= add(l, wd, 0.0f, lin(H), 2, I, H, 0, "model.layers.%lld.mlp.gate_proj.weight", li);
            ok &= add(l, wd, 0.0f, lin(H), 2, I, H, 0, "model.layers.%lld.mlp.up_proj.weight", li);
            ok &= add(l, wd, 0.0f, lin(I), 2, H, I, 0, "model.layers.%lld.mlp.down_proj.weight", li);
        } else {
            const int64_t E = p->experts, M = p->moe_intermediate, S = p->shared;
            ok &= add(l, wd, 0.0f, lin(H), 2, E, H, 0, "model.layers.%lld.mlp.gate.weight", li);
            ok &= add(l, MKM_ST_F32, 0.0f, 0.01f, 1, E, 0, 0, "model.layers.%lld.mlp.e_score_correction_bias", li);
            for (int64_t e = 0; e < E && ok; e++) {
                const long long le = (long long)e;
                ok &= add(l, wd, 0.0f, lin(H), 2, M, H, 0, "model.layers.%lld.mlp.experts.%lld.gate_proj.weight", li,
                          le);
                ok &= add(l, wd, 0.0f, lin(H), 2, M, H, 0, "model.layers.%lld.mlp.experts.%lld.up_proj.weight", li,
                          le);
                ok &= add(l, wd, 0.0f, lin(M), 2, H, M, 0, "model.layers.%lld.mlp.experts.%lld.down_proj.weight", li,
                          le);
            }
            ok &= add(l, wd, 0.0f, lin(H), 2, S, H, 0, "model.layers.%lld.mlp.shared_experts.gate_proj.weight", li);
            ok &= add(l, wd, 0.0f, lin(H), 2, S, H, 0, "model.layers.%lld.mlp.shared_experts.up_proj.weight", li);
            ok &= add(l, wd, 0.0f, lin(S), 2, H, S, 0, "model.layers.%lld.mlp.shared_experts.down_proj.weight", li);
        }
    }
    ok = ok && add(l, wd, 1.0f, 0.1f, 1, H, 0, 0, "model.norm.weight");
    ok = ok && add(l, wd, 0.0f, (float)sqrt(3.0 / (double)H), 2, p->vocab, H, 0, "lm_head.weight");
    return ok;
}

/* ---- small string builder ------------------------------------------------------------------------------------- */
typedef struct sbuf {
    char *s;
    size_t n, cap;
    int failed;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->failed = 1;
            return;
        }
        if (b->s && (size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->n <= (size_t)k) cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->failed = 1;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
}

/* ---- RNG: splitmix64 ------------------------------------------------------------------------------------------- */
static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* ---- files ---------------------------------------------------------------------------------------------------- */
static mk_status mkdir_p(const char *dir) {
    char *p = strdup(dir);
    if (!p) return mkm_error(MK_ENOMEM, "mkm_gen: out of memory");
    for (char *s = p + 1;; s++) {
        char c = *s;
        if (c == '/' || c == '\0') {
            *s = '\0';
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                int e = errno;
                mk_status st = mkm_error(MK_EIO, "mkm_gen: cannot create directory %s: %s", p, strerror(e));
                free(p);
                return st;
            }
            *s = c;
            if (c == '\0') break;
        }
    }
    free(p);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return mkm_error(MK_EIO, "mkm_gen: %s is not a directory", dir);
    return MK_OK;
}

static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *r = malloc(a + b + 2);
    if (!r) return NULL;
    memcpy(r, dir, a);
    if (a && dir[a - 1] != '/') r[a++] = '/';
    memcpy(r + a, name, b + 1);
    return r;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define GEN_CHUNK ((size_t)1 << 20)
#define GEN_PROGRESS_MIN ((uint64_t)256 << 20)

static mk_status write_tensors(FILE *f, const char *path, const tensor_list *l, uint64_t seed, uint64_t total) {
    float *vals = malloc(GEN_CHUNK * sizeof *vals);
    uint16_t *half = malloc(GEN_CHUNK * sizeof *half);
    if (!vals || !half) {
        free(vals);
        free(half);
        return mkm_error(MK_ENOMEM, "mkm_gen: out of memory");
    }
    const int progress = total >= GEN_PROGRESS_MIN, tty = progress && isatty(STDERR_FILENO);
    uint64_t done = 0;
    double last = now_s();
    int last_decile = 0;
    mk_status s = MK_OK;
    for (size_t i = 0; i < l->n && s == MK_OK; i++) {
        const gen_tensor *t = &l->t[i];
        uint64_t state = seed ^ (0xd1b54a32d192ed03ull * (uint64_t)(i + 1));
        (void)splitmix64(&state);
        for (uint64_t off = 0; off < t->elems && s == MK_OK; off += GEN_CHUNK) {
            const size_t n = (size_t)(t->elems - off < GEN_CHUNK ? t->elems - off : GEN_CHUNK);
            for (size_t k = 0; k < n; k++) {
                /* 24 random bits -> [-1, 1) */
                const float u = (float)(splitmix64(&state) >> 40) * (1.0f / 8388608.0f) - 1.0f;
                vals[k] = t->center + t->spread * u;
            }
            size_t wrote;
            if (t->dtype == MKM_ST_F32) {
                wrote = fwrite(vals, sizeof *vals, n, f);
            } else {
                for (size_t k = 0; k < n; k++) half[k] = mki_f32_to_bf16(vals[k]);
                wrote = fwrite(half, sizeof *half, n, f);
            }
            if (wrote != n) {
                s = mkm_error(MK_EIO, "mkm_gen: %s: write failed: %s", path, strerror(errno));
                break;
            }
            done += (uint64_t)n * (t->dtype == MKM_ST_F32 ? 4 : 2);
            if (progress) {
                const int decile = (int)(done * 10 / total);
                const double now = now_s();
                if (tty && (now - last > 0.5 || done == total)) {
                    fprintf(stderr, "\rmoekit gen: %.2f / %.2f GB (%3d%%) %-60.60s", (double)done / 1e9,
                            (double)total / 1e9, (int)(done * 100 / total), t->name);
                    last = now;
                } else if (!tty && decile > last_decile) {
                    fprintf(stderr, "moekit gen: %.2f / %.2f GB (%d%%)\n", (double)done / 1e9, (double)total / 1e9,
                            decile * 10);
                    last_decile = decile;
                }
            }
        }
    }
    if (progress && tty) fprintf(stderr, "\n");
    free(vals);
    free(half);
    return s;
}

static mk_status write_config(const char *path, const preset_dims *p, int64_t L, const uint8_t *dense, mk_dtype dtype,
                              uint64_t seed) {
    sbuf b = {0};
    sb_printf(&b, "{\n  \"architectures\": [\"PanguProMoEV2ForCausalLM\"],\n  \"model_type\": \"PanguProMoE\",\n");
    sb_printf(&b, "  \"attention_dropout\": 0.0,\n  \"bos_token_id\": %lld,\n  \"eos_token_id\": %lld,\n",
              (long long)p->bos, (long long)p->eos);
    sb_printf(&b, "  \"hidden_act\": \"silu\",\n  \"hidden_size\": %lld,\n  \"initializer_range\": 0.02,\n",
              (long long)p->hidden);
    sb_printf(&b, "  \"intermediate_size\": %lld,\n  \"max_position_embeddings\": %lld,\n  \"mlp_only_layers\": [",
              (long long)p->intermediate, (long long)p->max_pos);
    for (int64_t i = 0, first = 1; i < L; i++)
        if (dense[i]) {
            sb_printf(&b, "%s%lld", first ? "" : ", ", (long long)i);
            first = 0;
        }
    sb_printf(&b, "],\n  \"moe_intermediate_size\": %lld,\n  \"num_attention_heads\": %lld,\n",
              (long long)p->moe_intermediate, (long long)p->heads);
    sb_printf(&b, "  \"num_experts\": %lld,\n  \"norm_topk_prob\": true,\n  \"router_enable_expert_bias\": true,\n",
              (long long)p->experts);
    sb_printf(&b,
              "  \"num_experts_per_tok\": %lld,\n  \"num_hidden_layers\": %lld,\n  \"num_key_value_heads\": %lld,\n",
              (long long)p->topk, (long long)L, (long long)p->kv_heads);
    sb_printf(&b, "  \"output_router_logits\": false,\n  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": 25600000,\n");
    sb_printf(&b, "  \"routed_scaling_factor\": 2.5,\n  \"sandwich_norm\": true,\n");
    sb_printf(&b, "  \"shared_expert_intermediate_size\": %lld,\n  \"tie_word_embeddings\": false,\n",
              (long long)p->shared);
    sb_printf(&b, "  \"torch_dtype\": \"%s\",\n  \"transformers_version\": \"4.48.2\",\n  \"use_cache\": true,\n",
              dtype == MK_BF16 ? "bfloat16" : "float32");
    sb_printf(&b,
              "  \"vocab_size\": %lld,\n  \"qk_nope_dim\": %lld,\n  \"qk_rope_dim\": %lld,\n  \"v_channels\": %lld,\n",
              (long long)p->vocab, (long long)p->nope, (long long)p->rope, (long long)p->v);
    sb_printf(&b, "  \"param_sink_number\": %lld,\n  \"param_sink_with_value\": true,\n  \"num_mtp_layers\": 0,\n",
              (long long)p->sinks);
    sb_printf(&b, "  \"moekit_gen\": {\"preset\": \"%s\", \"seed\": %llu}\n}\n", p->name, (unsigned long long)seed);
    if (b.failed) {
        free(b.s);
        return mkm_error(MK_ENOMEM, "mkm_gen: out of memory");
    }
    char *tmp = malloc(strlen(path) + 5);
    if (!tmp) {
        free(b.s);
        return mkm_error(MK_ENOMEM, "mkm_gen: out of memory");
    }
    sprintf(tmp, "%s.tmp", path);
    mk_status s = MK_OK;
    FILE *f = fopen(tmp, "wb");
    if (!f)
        s = mkm_error(MK_EIO, "mkm_gen: cannot create %s: %s", tmp, strerror(errno));
    else {
        int bad = fwrite(b.s, 1, b.n, f) != b.n;
        bad |= fclose(f) != 0;
        if (bad)
            s = mkm_error(MK_EIO, "mkm_gen: cannot write %s: %s", tmp, strerror(errno));
        else if (rename(tmp, path) != 0)
            s = mkm_error(MK_EIO, "mkm_gen: cannot rename %s to %s: %s", tmp, path, strerror(errno));
        if (s != MK_OK) remove(tmp);
    }
    free(tmp);
    free(b.s);
    return s;
}

mk_status mkm_gen(mkm_preset preset, int64_t n_layers, uint64_t seed, mk_dtype dtype, const char *out_dir) {
    mki_clear_error();
    if (preset != MKM_PRESET_TINY && preset != MKM_PRESET_PANGU_R_72B)
        return mkm_error(MK_EINVAL, "mkm_gen: preset = %d is not a known preset", (int)preset);
    if (dtype != MK_F32 && dtype != MK_BF16)
        return mkm_error(MK_EINVAL, "mkm_gen: dtype = %d is not MK_F32 or MK_BF16", (int)dtype);
    if (!out_dir || !out_dir[0]) return mkm_error(MK_EINVAL, "mkm_gen: out_dir is empty");
    if (n_layers > MKM_MAX_LAYERS)
        return mkm_error(MK_EINVAL, "mkm_gen: n_layers = %lld is above %d", (long long)n_layers, MKM_MAX_LAYERS);
    const preset_dims *p = &PRESETS[preset];
    const int64_t L = n_layers > 0 ? n_layers : p->layers;
    const int64_t n_dense = n_layers > 0 ? (p->dense_layers < L / 2 ? p->dense_layers : L / 2) : p->dense_layers;
    uint8_t dense[MKM_MAX_LAYERS] = {0};
    for (int64_t i = 0; i < n_dense; i++) dense[i] = 1;

    tensor_list l = {0};
    if (!build_list(p, L, dense, dtype == MK_BF16 ? MKM_ST_BF16 : MKM_ST_F32, &l)) {
        free(l.t);
        return mkm_error(MK_ENOMEM, "mkm_gen: out of memory");
    }
    /* header */
    sbuf h = {0};
    uint64_t off = 0;
    sb_printf(&h, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (size_t i = 0; i < l.n; i++) {
        gen_tensor *t = &l.t[i];
        t->begin = off;
        t->end = off + t->elems * (t->dtype == MKM_ST_F32 ? 4 : 2);
        off = t->end;
        sb_printf(&h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", t->name, t->dtype == MKM_ST_F32 ? "F32" : "BF16");
        for (int d = 0; d < t->n_dims; d++) sb_printf(&h, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        sb_printf(&h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)t->begin, (unsigned long long)t->end);
    }
    sb_printf(&h, "}");
    while (!h.failed && h.n % 8 != 0) sb_printf(&h, " ");
    const uint64_t total = off;
    mk_status s = h.failed ? mkm_error(MK_ENOMEM, "mkm_gen: out of memory") : MK_OK;
    if (s == MK_OK) s = mkdir_p(out_dir);
    char *st_path = join(out_dir, "model.safetensors"), *tmp = join(out_dir, "model.safetensors.tmp"),
         *cfg_path = join(out_dir, "config.json");
    if (s == MK_OK && (!st_path || !tmp || !cfg_path)) s = mkm_error(MK_ENOMEM, "mkm_gen: out of memory");
    if (s == MK_OK) {
        struct statvfs vfs;
        const uint64_t need = total + h.n + 8;
        if (statvfs(out_dir, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < need)
            s = mkm_error(MK_EIO, "mkm_gen: %s: %.2f GB needed but only %.2f GB free", out_dir, (double)need / 1e9,
                          (double)vfs.f_bavail * (double)vfs.f_frsize / 1e9);
    }
    FILE *f = NULL;
    if (s == MK_OK && !(f = fopen(tmp, "wb")))
        s = mkm_error(MK_EIO, "mkm_gen: cannot create %s: %s", tmp, strerror(errno));
    if (s == MK_OK) {
        unsigned char len8[8];
        for (int k = 0; k < 8; k++) len8[k] = (unsigned char)((uint64_t)h.n >> (8 * k));
        if (fwrite(len8, 1, 8, f) != 8 || fwrite(h.s, 1, h.n, f) != h.n)
            s = mkm_error(MK_EIO, "mkm_gen: %s: write failed: %s", tmp, strerror(errno));
    }
    if (s == MK_OK) s = write_tensors(f, tmp, &l, seed, total);
    if (f && fclose(f) != 0 && s == MK_OK) s = mkm_error(MK_EIO, "mkm_gen: %s: write failed: %s", tmp, strerror(errno));
    if (s == MK_OK && rename(tmp, st_path) != 0)
        s = mkm_error(MK_EIO, "mkm_gen: cannot rename %s to %s: %s", tmp, st_path, strerror(errno));
    if (f && s != MK_OK) remove(tmp);
    if (s == MK_OK) s = write_config(cfg_path, p, L, dense, dtype, seed);
    free(st_path);
    free(tmp);
    free(cfg_path);
    free(h.s);
    free(l.t);
    return s;
}
