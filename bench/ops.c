/*
 * ops.c: the non-GEMM ops at openPangu-R-72B shapes, for moekit at every ISA with 1 and all threads: top-8
 * gating, partial RoPE, K-norm + RoPE, RMSNorm (plain and the sandwich add), SwiGLU, sink attention (decode over
 * growing contexts, and prefill) and the fused MoE FFN. Shapes come from one table (model_full / model_smoke).
 */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct model_shape {
    int64_t hidden, n_experts, top_k, expert_dim, shared_dim;
    int64_t n_q_heads, n_kv_heads, head_dim_qk, head_dim_v, rotary_dim, n_sinks, max_positions;
    int64_t gate_tokens[2], small_tokens[2], ffn_tokens[4], decode_context[3], prefill_tokens;
} model_shape;

static const model_shape model_full = {4608, 80, 8, 1280, 2560, 64, 4, 192, 128, 64, 128, 32768,
                                       {1, 512}, {1, 2048}, {1, 16, 128, 512}, {1024, 4096, 16384}, 2048};
static const model_shape model_smoke = {64, 8, 2, 32, 16, 4, 2, 32, 16, 16, 4, 256,
                                        {1, 7}, {1, 9}, {1, 3, 6, 9}, {16, 64, 100}, 32};
#define ROPE_THETA 25.6e6
#define NORM_EPS 1e-5f

static const model_shape *M(void) { return mkb_cfg.smoke ? &model_smoke : &model_full; }

typedef enum op_kind { K_GATE, K_ROPE, K_KNORM_ROPE, K_RMSNORM, K_RMSNORM_ADD, K_SWIGLU, K_DECODE, K_PREFILL, K_FFN } op_kind;

typedef struct op_case {
    op_kind kind;
    mk_op op;
    int64_t tokens;  /* T (decode: context length S) */
    mk_dtype dtype;  /* caches / k_out / weights where the op has a choice */
    mk_isa isa;
    int threads;
    int pack;        /* moe_ffn: -1 = raw weights, else the mk_pack_mode of weights packed once, untimed */
    int64_t next;    /* rotation counter across calls */
} op_case;

static float *f32_buffer(const char *what, int64_t n, float scale) {
    char key[96];
    snprintf(key, sizeof key, "ops/%s", what);
    return (float *)mkb_shared_buffer(key, (size_t)n * sizeof(float), MK_F32, scale);
}

static mk_rope_cache *rope_cache(void) {
    static mk_rope_cache *cache;
    if (!cache) {
        mk_rope_config cfg = {M()->rotary_dim, 0, MK_ROPE_INTERLEAVED, ROPE_THETA, M()->max_positions};
        if (mk_rope_cache_create(&cfg, &cache) != MK_OK) return NULL;
    }
    return cache;
}

/* positions of T tokens: a prefill from 0, or one decode token late in a long context */
static int32_t *positions(int64_t tokens) {
    static int32_t *pos;
    static int64_t cap;
    if (tokens > cap) {
        mkb_free(pos);
        pos = (int32_t *)mkb_alloc((size_t)tokens * sizeof(int32_t));
        cap = tokens;
    }
    for (int64_t t = 0; t < tokens; t++) pos[t] = (int32_t)(tokens == 1 ? M()->max_positions / 2 : t);
    return pos;
}

static mk_heads heads(void *data, mk_dtype dtype, int64_t n_tokens, int64_t n_heads, int64_t dim) {
    mk_heads h = {data, dtype, n_tokens, n_heads, dim, 0, 0};
    return h;
}

/* ---- gating ---- */
static void bm_gate(gbc_state *st, op_case *c) {
    const model_shape *m = M();
    int64_t T = c->tokens, E = m->n_experts, k = m->top_k;
    mkb_work w = {0, T * E * 4.0 + E * 4.0 + T * k * 8.0 + E * 4.0, T * k * 8.0 + E * 4.0, 0, (double)T};
    w.footprint = w.bytes;
    if (!mkb_moekit_enter(st, MK_OP_MOE_GATE, c->isa, c->threads, 0)) return;
    mk_moe_gate_args a = {0};
    a.n_tokens = T;
    a.n_experts = E;
    a.top_k = k;
    a.logits = f32_buffer("gate/logits", T * E, 4.0f);
    a.score_func = MK_SCORE_SIGMOID;
    a.expert_bias = f32_buffer("gate/bias", E, 0.1f);
    a.renormalize = 1;
    a.routed_scaling_factor = 2.5f;
    a.ids = (int32_t *)f32_buffer("gate/ids", T * k, 0);
    a.weights = f32_buffer("gate/weights", T * k, 0);
    a.counts = (int32_t *)f32_buffer("gate/counts", E, 0);
    while (gbc_keep_running(st))
        if (mk_moe_gate(&a) != MK_OK) { mkb_fail(st, NULL); break; }
    mkb_set_work(st, &w);
}

/* ---- RoPE on q and k ---- */
static void bm_rope(gbc_state *st, op_case *c) {
    const model_shape *m = M();
    int64_t T = c->tokens, heads_total = m->n_q_heads + m->n_kv_heads, pairs = m->rotary_dim / 2;
    double rotated = (double)(T * heads_total * m->rotary_dim);
    mkb_work w = {rotated / 2 * 6, rotated * 8 + T * pairs * 8.0, rotated * 4, 0, (double)T};
    w.footprint = w.bytes;
    if (!mkb_moekit_enter(st, MK_OP_ROPE, c->isa, c->threads, w.flop)) return;
    mk_heads q = heads(f32_buffer("rope/q", T * m->n_q_heads * m->head_dim_qk, 1), MK_F32, T, m->n_q_heads,
                       m->head_dim_qk);
    mk_heads k = heads(f32_buffer("rope/k", T * m->n_kv_heads * m->head_dim_qk, 1), MK_F32, T, m->n_kv_heads,
                       m->head_dim_qk);
    const mk_rope_cache *cache = rope_cache();
    if (!cache) { mkb_fail(st, NULL); return; }
    const int32_t *pos = positions(T);
    while (gbc_keep_running(st)) /* rotations keep norms: repeating them in place stays finite */
        if (mk_rope(cache, pos, &q, &k) != MK_OK) { mkb_fail(st, NULL); break; }
    mkb_set_work(st, &w);
}

/* ---- K-norm + RoPE into a cache slot ---- */
static void bm_knorm_rope(gbc_state *st, op_case *c) {
    const model_shape *m = M();
    int64_t T = c->tokens, n = T * m->n_kv_heads * m->head_dim_qk;
    double out_size = (double)mk_dtype_size(c->dtype);
    mkb_work w = {(double)n * 4 + (double)(T * m->n_kv_heads * m->rotary_dim / 2) * 6,
                  n * (4.0 + out_size) + m->head_dim_qk * 4.0 + T * (m->rotary_dim / 2) * 8.0, n * out_size, 0,
                  (double)T};
    w.footprint = w.bytes;
    if (!mkb_moekit_enter(st, MK_OP_KNORM_ROPE, c->isa, c->threads, w.flop)) return;
    mk_heads k = heads(f32_buffer("knorm/k", n, 1), MK_F32, T, m->n_kv_heads, m->head_dim_qk);
    mk_heads out = heads(f32_buffer("knorm/out", n, 0), c->dtype, T, m->n_kv_heads, m->head_dim_qk);
    const float *weight = f32_buffer("knorm/weight", m->head_dim_qk, 1);
    const mk_rope_cache *cache = rope_cache();
    if (!cache) { mkb_fail(st, NULL); return; }
    const int32_t *pos = positions(T);
    while (gbc_keep_running(st))
        if (mk_knorm_rope(&k, weight, NORM_EPS, cache, pos, &out) != MK_OK) { mkb_fail(st, NULL); break; }
    mkb_set_work(st, &w);
}

/* ---- RMSNorm and the sandwich post-norm with residual add ---- */
static void bm_rmsnorm(gbc_state *st, op_case *c) {
    const model_shape *m = M();
    int64_t T = c->tokens, n = T * m->hidden;
    int add = c->kind == K_RMSNORM_ADD;
    mkb_work w = {(double)n * (add ? 5 : 4), n * (add ? 12.0 : 8.0) + m->hidden * 4.0, n * 4.0, 0, (double)T};
    w.footprint = w.bytes;
    if (!mkb_moekit_enter(st, c->op, c->isa, c->threads, w.flop)) return;
    const float *x = f32_buffer("norm/x", n, 1);
    float *out = f32_buffer("norm/out", n, 1);
    const float *weight = f32_buffer("norm/weight", m->hidden, 1);
    while (gbc_keep_running(st)) {
        /* rmsnorm_add grows the residual by O(1) per call: harmless for the few thousand calls of a run */
        mk_status s = add ? mk_rmsnorm_add(out, 0, x, 0, weight, NORM_EPS, T, m->hidden)
                          : mk_rmsnorm(x, 0, weight, NORM_EPS, T, m->hidden, out, 0);
        if (s != MK_OK) { mkb_fail(st, NULL); break; }
    }
    mkb_set_work(st, &w);
}

/* ---- SwiGLU on the routed rows of a gate+up output [rows, 2 * expert_dim] ---- */
static void bm_swiglu(gbc_state *st, op_case *c) {
    const model_shape *m = M();
    int64_t rows = c->tokens * m->top_k, dim = m->expert_dim;
    mkb_work w = {0, rows * dim * 12.0, rows * dim * 4.0, 0, (double)rows};
    w.footprint = w.bytes;
    if (!mkb_moekit_enter(st, MK_OP_SWIGLU, c->isa, c->threads, (double)(rows * dim) * 8)) return;
    const float *gate_up = f32_buffer("swiglu/gate_up", rows * 2 * dim, 4);
    float *out = f32_buffer("swiglu/out", rows * dim, 0);
    while (gbc_keep_running(st))
        if (mk_swiglu(gate_up, 2 * dim, gate_up + dim, 2 * dim, out, dim, rows, dim) != MK_OK) { mkb_fail(st, NULL); break; }
    mkb_set_work(st, &w);
}

/* ---- sink attention: decode (T = 1, context S, cache copies rotated like the layers of a model) and prefill ---- */
static void bm_attention(gbc_state *st, op_case *c) {
    const model_shape *m = M();
    int decode = c->kind == K_DECODE;
    int64_t S = c->tokens, T = decode ? 1 : S, Hq = m->n_q_heads, Hk = m->n_kv_heads, Ns = m->n_sinks;
    int64_t Dk = m->head_dim_qk, Dv = m->head_dim_v;
    double esize = (double)mk_dtype_size(c->dtype);
    double cache_bytes = (double)(S * Hk * (Dk + Dv)) * esize;
    /* enough copies that consecutive calls never find the previous cache in L3 (capped at 1 GiB) */
    double l3 = mkb_cfg.cpu.l3_bytes > 0 ? (double)mkb_cfg.cpu.l3_bytes : 32.0 * 1024 * 1024;
    int64_t copies = decode && !mkb_cfg.smoke ? (int64_t)ceil(4 * l3 / cache_bytes) : 1;
    if (copies > 1 && copies * cache_bytes > 1073741824.0) copies = (int64_t)(1073741824.0 / cache_bytes);
    if (copies < 1) copies = 1;
    double visible = decode ? (double)(S + Ns) : (double)T * (double)(T + 1) / 2 + (double)(T * Ns);
    mkb_work w;
    w.flop = 2.0 * (double)Hq * (double)(Dk + Dv) * visible;
    w.bytes = cache_bytes + (double)(Ns * Hk * (Dk + Dv)) * esize + (double)(T * Hq * (Dk + Dv)) * 4.0;
    w.bytes_written = (double)(T * Hq * Dv) * 4.0;
    w.footprint = cache_bytes * (double)copies + w.bytes - cache_bytes;
    w.items = (double)T;
    if (!mkb_moekit_enter(st, MK_OP_SINK_ATTENTION, c->isa, c->threads, w.flop)) return;
    char key[96];
    snprintf(key, sizeof key, "ops/attn/cache/%s/%lld", mk_dtype_name(c->dtype), (long long)(S * copies));
    /* one buffer: per copy K [S, Hk, Dk] then V [S, Hk, Dv]; values ~U(-1, 1) */
    char *caches = (char *)mkb_shared_buffer(key, (size_t)(cache_bytes * (double)copies), c->dtype, 1.0f);
    snprintf(key, sizeof key, "ops/attn/sinks/%s", mk_dtype_name(c->dtype));
    char *sinks = (char *)mkb_shared_buffer(key, (size_t)(Ns * Hk * (Dk + Dv)) * (size_t)esize, c->dtype, 1.0f);
    mk_attn_args a = {0};
    a.q = heads(f32_buffer("attn/q", T * Hq * Dk, 1), MK_F32, T, Hq, Dk);
    a.sink_k = heads(sinks, c->dtype, Ns, Hk, Dk);
    a.sink_v = heads(sinks + (size_t)(Ns * Hk * Dk) * (size_t)esize, c->dtype, Ns, Hk, Dv);
    a.scale = 1.0f / sqrtf((float)Dk);
    a.out = heads(f32_buffer("attn/out", T * Hq * Dv, 0), MK_F32, T, Hq, Dv);
    while (gbc_keep_running(st)) {
        char *copy = caches + (size_t)cache_bytes * (size_t)(c->next++ % copies);
        a.k_cache = heads(copy, c->dtype, S, Hk, Dk);
        a.v_cache = heads(copy + (size_t)(S * Hk * Dk) * (size_t)esize, c->dtype, S, Hk, Dv);
        if (mk_sink_attention(&a) != MK_OK) { mkb_fail(st, NULL); break; }
    }
    mkb_set_work(st, &w);
}

/* ---- fused MoE FFN, 80 BF16 experts (top-8) plus the shared expert ---- */
/* Packed experts: gate, up, down (n_experts groups) then the shared gate, up, down (1 group). Each matrix is
 * filled in a temporary buffer, packed and freed, so that only one raw matrix (944 MB) exists at a time. */
typedef struct ffn_packed {
    mk_packed_weights *h[6];
} ffn_packed;

typedef struct ffn_pack_request {
    mk_dtype dtype;
    int pack;
    mk_status status;
    char error[200];
} ffn_pack_request;

static void destroy_ffn_packed(void *p) {
    ffn_packed *f = (ffn_packed *)p;
    for (int i = 0; i < 6; i++) mk_packed_weights_free(f->h[i]);
    free(f);
}

static void *make_ffn_packed(void *ctx) {
    ffn_pack_request *r = (ffn_pack_request *)ctx;
    const model_shape *m = M();
    ffn_packed *f = (ffn_packed *)calloc(1, sizeof *f);
    if (!f) abort();
    for (int i = 0; i < 6; i++) {
        int64_t groups = i < 3 ? m->n_experts : 1, width = i < 3 ? m->expert_dim : m->shared_dim;
        int64_t n = i % 3 == 2 ? m->hidden : width, k = i % 3 == 2 ? width : m->hidden;
        size_t count = (size_t)(groups * n * k);
        void *raw = mkb_alloc(count * mk_dtype_size(r->dtype));
        if (r->dtype == MK_BF16) mkb_fill_bf16((uint16_t *)raw, count, 100u + (uint32_t)i, 0.02f);
        else mkb_fill_f32((float *)raw, count, 100u + (uint32_t)i, 0.02f);
        r->status = mk_pack_weights(raw, r->dtype, groups, n, k, (mk_pack_mode)r->pack, &f->h[i]);
        mkb_free(raw);
        if (r->status != MK_OK) {
            snprintf(r->error, sizeof r->error, "%s", mk_last_error());
            destroy_ffn_packed(f);
            return NULL;
        }
    }
    return f;
}

static void bm_ffn(gbc_state *st, op_case *c) {
    const model_shape *m = M();
    int64_t T = c->tokens, E = m->n_experts, k = m->top_k, H = m->hidden, D = m->expert_dim, Ds = m->shared_dim;
    double esize = (double)mk_dtype_size(c->dtype);
    int32_t *ids = (int32_t *)f32_buffer("ffn/ids", T * k, 0);
    float *weights = f32_buffer("ffn/weights", T * k, 0);
    /* routing: k distinct experts per token from a fixed pseudo-random sequence; weights sum to 2.5 */
    uint32_t s = 12345u + (uint32_t)T;
    int used[1024] = {0};
    int64_t distinct = 0;
    for (int64_t t = 0; t < T; t++) {
        for (int64_t j = 0; j < k; j++) {
            int32_t e;
            int dup;
            do {
                s = s * 1664525u + 1013904223u;
                e = (int32_t)((s >> 8) % (uint32_t)E);
                dup = 0;
                for (int64_t i = 0; i < j; i++) dup |= ids[t * k + i] == e;
            } while (dup);
            ids[t * k + j] = e;
            weights[t * k + j] = 2.5f / (float)k;
            if (!used[e]) { used[e] = 1; distinct++; }
        }
    }
    double expert_bytes = 3.0 * (double)(H * D) * esize, shared_bytes = 3.0 * (double)(H * Ds) * esize;
    mkb_work w;
    w.flop = 6.0 * (double)(T * k) * (double)(H * D) + 6.0 * (double)T * (double)(H * Ds);
    w.bytes = (double)distinct * expert_bytes + shared_bytes + (double)(T * H) * 8.0;
    w.bytes_written = (double)(T * H) * 4.0;
    w.footprint = w.bytes;
    w.items = (double)T;
    if (!mkb_moekit_enter(st, MK_OP_MOE_FFN, c->isa, c->threads, w.flop)) return;
    char key[96];
    size_t one = (size_t)(E * H * D) * (size_t)esize, one_shared = (size_t)(H * Ds) * (size_t)esize;
    char *experts = NULL, *shared = NULL;
    const ffn_packed *packed = NULL;
    if (c->pack < 0) {
        snprintf(key, sizeof key, "ops/ffn/experts/%s", mk_dtype_name(c->dtype));
        experts = (char *)mkb_shared_buffer(key, 3 * one, c->dtype, 0.02f);
        snprintf(key, sizeof key, "ops/ffn/shared/%s", mk_dtype_name(c->dtype));
        shared = (char *)mkb_shared_buffer(key, 3 * one_shared, c->dtype, 0.02f);
    } else {
        snprintf(key, sizeof key, "ops/ffn/packed/%s/%d", mk_dtype_name(c->dtype), c->pack);
        ffn_pack_request r = {c->dtype, c->pack, MK_OK, ""};
        packed = (const ffn_packed *)mkb_shared_object(key, 3 * (one + one_shared), make_ffn_packed,
                                                       destroy_ffn_packed, &r);
        if (packed == NULL) {
            if (r.status == MK_EUNSUPPORTED) mkb_skip(st, "mk_pack_weights: %s", r.error);
            else mkb_fail(st, r.error);
            return;
        }
    }
    mk_moe_ffn_args a = {0};
    a.n_tokens = T;
    a.hidden = H;
    a.n_experts = E;
    a.expert_dim = D;
    a.top_k = k;
    a.x = f32_buffer("ffn/x", T * H, 1);
    a.expert_ids = ids;
    a.expert_weights = weights;
    a.w_dtype = c->dtype;
    a.shared_dim = Ds;
    if (packed) {
        a.packed_gate = packed->h[0];
        a.packed_up = packed->h[1];
        a.packed_down = packed->h[2];
        a.packed_shared_gate = packed->h[3];
        a.packed_shared_up = packed->h[4];
        a.packed_shared_down = packed->h[5];
    } else {
        a.w_gate = experts;
        a.w_up = experts + one;
        a.w_down = experts + 2 * one;
        a.shared_gate = shared;
        a.shared_up = shared + one_shared;
        a.shared_down = shared + 2 * one_shared;
    }
    a.y = f32_buffer("ffn/y", T * H, 0);
    while (gbc_keep_running(st))
        if (mk_moe_ffn(&a) != MK_OK) { mkb_fail(st, NULL); break; }
    mkb_set_work(st, &w);
}

static void bm_op(gbc_state *st, void *user) {
    op_case *c = (op_case *)user;
    switch (c->kind) {
    case K_GATE: bm_gate(st, c); break;
    case K_ROPE: bm_rope(st, c); break;
    case K_KNORM_ROPE: bm_knorm_rope(st, c); break;
    case K_RMSNORM:
    case K_RMSNORM_ADD: bm_rmsnorm(st, c); break;
    case K_SWIGLU: bm_swiglu(st, c); break;
    case K_DECODE:
    case K_PREFILL: bm_attention(st, c); break;
    case K_FFN: bm_ffn(st, c); break;
    }
}

/* Registers `kind` at every ISA and thread count. `param` names the size key ("T" or "S"), `with_dtype` adds the
 * dtype key; pack >= 0 registers the packed-weights variant (SIMD ISAs only: the reference reads packed weights
 * through an accessor, which says nothing new). */
static void add_op_pack(op_kind kind, mk_op op, const char *family, const char *param, int64_t tokens, mk_dtype dtype,
                        int with_dtype, int pack) {
    enum { MAX_CASES = 512 };
    static op_case cases[MAX_CASES];
    static int n_cases;
    int counts[2], n_counts = mkb_thread_counts(counts);
    for (int isa = pack < 0 ? MK_ISA_REF : MK_ISA_REF + 1; isa <= (int)mkb_cfg.detected; isa++) {
        for (int t = 0; t < n_counts; t++) {
            if (n_cases == MAX_CASES) return;
            op_case *c = &cases[n_cases++];
            *c = (op_case){kind, op, tokens, dtype, (mk_isa)isa, counts[t], pack, 0};
            char name[200], dt[32] = "", pk[32] = "";
            if (with_dtype) snprintf(dt, sizeof dt, "/dtype:%s", mk_dtype_name(dtype));
            if (pack >= 0) snprintf(pk, sizeof pk, "/pack:%s", pack == MK_PACK_BF16_WIDEN ? "widen" : "default");
            snprintf(name, sizeof name, "%s%s/%s:%lld/impl:moekit/isa:%s%s/threads:%d", family, dt, param,
                     (long long)tokens, mk_isa_name((mk_isa)isa), pk, counts[t]);
            mkb_register(name, bm_op, c);
        }
    }
}

static void add_op(op_kind kind, mk_op op, const char *family, const char *param, int64_t tokens, mk_dtype dtype,
                   int with_dtype) {
    add_op_pack(kind, op, family, param, tokens, dtype, with_dtype, -1);
}

void mkb_register_ops(void) {
    const model_shape *m = M();
    for (int i = 0; i < 2; i++) add_op(K_GATE, MK_OP_MOE_GATE, "moe_gate", "T", m->gate_tokens[i], MK_F32, 0);
    for (int i = 0; i < 2; i++) add_op(K_ROPE, MK_OP_ROPE, "rope", "T", m->small_tokens[i], MK_F32, 0);
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < 2; i++)
            add_op(K_KNORM_ROPE, MK_OP_KNORM_ROPE, "knorm_rope", "T", m->small_tokens[i], d ? MK_BF16 : MK_F32, 1);
    for (int i = 0; i < 2; i++) add_op(K_RMSNORM, MK_OP_RMSNORM, "rmsnorm", "T", m->small_tokens[i], MK_F32, 0);
    for (int i = 0; i < 2; i++)
        add_op(K_RMSNORM_ADD, MK_OP_RMSNORM_ADD, "rmsnorm_add", "T", m->small_tokens[i], MK_F32, 0);
    for (int i = 0; i < 2; i++) add_op(K_SWIGLU, MK_OP_SWIGLU, "swiglu", "T", m->small_tokens[i], MK_F32, 0);
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < 3; i++)
            add_op(K_DECODE, MK_OP_SINK_ATTENTION, "attn_decode", "S", m->decode_context[i], d ? MK_BF16 : MK_F32, 1);
    for (int d = 0; d < 2; d++)
        add_op(K_PREFILL, MK_OP_SINK_ATTENTION, "attn_prefill", "S", m->prefill_tokens, d ? MK_BF16 : MK_F32, 1);
    /* F32 experts would need 5.7 GB: the fused FFN runs at the model's BF16 only */
    for (int i = 0; i < 4; i++) add_op(K_FFN, MK_OP_MOE_FFN, "moe_ffn", "T", m->ffn_tokens[i], MK_BF16, 1);
    for (int i = 0; i < 4; i++)
        add_op_pack(K_FFN, MK_OP_MOE_FFN, "moe_ffn", "T", m->ffn_tokens[i], MK_BF16, 1, MK_PACK_DEFAULT);
}
