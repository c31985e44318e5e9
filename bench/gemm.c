/*
 * gemm.c: grouped GEMM rows-per-expert sweep at the openPangu-R-72B expert shapes, gate+up (K 4608, N 2560) and
 * down (K 1280, N 4608), F32 and BF16 weights, for moekit at every ISA and for the peers on the same data.
 * Each call multiplies `rows` rows by each of 8 experts (a decode token's top-8); consecutive iterations use
 * different windows of a larger expert pool, so the weights always stream from DRAM, as in a MoE layer.
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPERTS_PER_CALL 8

typedef struct gemm_shape {
    const char *name;
    int64_t n, k;
} gemm_shape;

typedef struct gemm_case {
    const gemm_shape *shape;
    mk_dtype dtype;
    int64_t rows;       /* rows per expert */
    mk_isa isa;         /* moekit cap (peer == NULL) */
    int pack;           /* moekit: -1 = raw weights, else the mk_pack_mode of weights packed once, untimed */
    const mkb_peer *peer;
    int threads;
    int64_t n_groups;   /* experts per call */
    int64_t n_windows;  /* the pool holds n_windows * n_groups experts */
    int64_t max_rows;   /* x/y buffers are sized for the largest rows of the sweep */
    int64_t window;     /* the next window to use */
} gemm_case;

static const gemm_shape full_shapes[] = {{"gate_up", 2560, 4608}, {"down", 4608, 1280}};
static const gemm_shape smoke_shapes[] = {{"gate_up", 96, 64}, {"down", 64, 48}};
static const int64_t full_rows[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512};
static const int64_t smoke_rows[] = {1, 5};

typedef struct gemm_buffers {
    const void *pool;
    const float *x;
    const uint16_t *x_bf16;
    float *y;
    size_t pool_bytes, x_bytes, y_bytes;
} gemm_buffers;

static gemm_buffers get_buffers(const gemm_case *c, int need_x_bf16) {
    gemm_buffers b;
    char key[96];
    size_t esize = mk_dtype_size(c->dtype);
    size_t expert = (size_t)(c->shape->n * c->shape->k) * esize;
    size_t max_rows = (size_t)(c->n_groups * c->max_rows);
    b.pool_bytes = expert * (size_t)(c->n_groups * c->n_windows);
    snprintf(key, sizeof key, "gemm/w/%s/%s", c->shape->name, mk_dtype_name(c->dtype));
    /* weights ~ U(-1/sqrt(k), 1/sqrt(k)) keep outputs O(1) */
    b.pool = mkb_shared_buffer(key, b.pool_bytes, c->dtype, 0.03f);
    b.x_bytes = max_rows * (size_t)c->shape->k * sizeof(float);
    snprintf(key, sizeof key, "gemm/x/%s", c->shape->name);
    b.x = (const float *)mkb_shared_buffer(key, b.x_bytes, MK_F32, 1.0f);
    b.x_bf16 = NULL;
    if (need_x_bf16) {
        snprintf(key, sizeof key, "gemm/x_bf16/%s", c->shape->name);
        b.x_bf16 = (const uint16_t *)mkb_shared_buffer(key, max_rows * (size_t)c->shape->k * 2, MK_BF16, 1.0f);
    }
    b.y_bytes = max_rows * (size_t)c->shape->n * sizeof(float);
    snprintf(key, sizeof key, "gemm/y/%s", c->shape->name);
    b.y = (float *)mkb_shared_buffer(key, b.y_bytes, MK_F32, 0.0f);
    return b;
}

/* Packed weights: one handle per window of the pool, packed once (at "model load", never timed). */
typedef struct packed_set {
    int64_t n;
    mk_packed_weights **handles;
} packed_set;

typedef struct pack_request {
    const gemm_case *c;
    const gemm_buffers *b;
    mk_status status;
    char error[200];
} pack_request;

static void destroy_packed(void *p) {
    packed_set *s = (packed_set *)p;
    for (int64_t i = 0; i < s->n; i++) mk_packed_weights_free(s->handles[i]);
    free(s->handles);
    free(s);
}

static void *make_packed(void *ctx) {
    pack_request *r = (pack_request *)ctx;
    const gemm_case *c = r->c;
    size_t window_bytes = r->b->pool_bytes / (size_t)c->n_windows;
    packed_set *s = (packed_set *)calloc(1, sizeof *s);
    if (s) s->handles = (mk_packed_weights **)calloc((size_t)c->n_windows, sizeof *s->handles);
    if (!s || !s->handles) abort();
    for (s->n = 0; s->n < c->n_windows; s->n++) {
        r->status = mk_pack_weights((const char *)r->b->pool + window_bytes * (size_t)s->n, c->dtype, c->n_groups,
                                    c->shape->n, c->shape->k, (mk_pack_mode)c->pack, &s->handles[s->n]);
        if (r->status != MK_OK) {
            snprintf(r->error, sizeof r->error, "%s", mk_last_error());
            destroy_packed(s);
            return NULL;
        }
    }
    return s;
}

static const char *pack_name(int pack) {
    return pack < 0 ? "none" : pack == MK_PACK_BF16_WIDEN ? "widen" : "default";
}

static mkb_work gemm_work(const gemm_case *c, const gemm_buffers *b) {
    double m = (double)(c->n_groups * c->rows), n = (double)c->shape->n, k = (double)c->shape->k;
    double esize = (double)mk_dtype_size(c->dtype);
    double xsize = c->peer && c->dtype == MK_BF16 ? 2.0 : 4.0;
    mkb_work w;
    w.flop = 2.0 * m * n * k;
    w.bytes = (double)c->n_groups * n * k * esize + m * k * xsize + m * n * 4.0;
    w.bytes_written = m * n * 4.0;
    w.footprint = (double)b->pool_bytes + m * k * xsize + m * n * 4.0;
    w.items = m;
    return w;
}

static void bm_gemm_moekit(gbc_state *st, void *user) {
    gemm_case *c = (gemm_case *)user;
    gemm_buffers b = get_buffers(c, 0);
    mkb_work w = gemm_work(c, &b);
    if (!mkb_moekit_enter(st, MK_OP_GROUPED_GEMM, c->isa, c->threads, w.flop)) return;
    const packed_set *packed = NULL;
    if (c->pack >= 0) {
        char key[96];
        snprintf(key, sizeof key, "gemm/packed/%s/%s/%s", c->shape->name, mk_dtype_name(c->dtype), pack_name(c->pack));
        pack_request r = {c, &b, MK_OK, ""};
        packed = (const packed_set *)mkb_shared_object(key, b.pool_bytes, make_packed, destroy_packed, &r);
        if (packed == NULL) {
            if (r.status == MK_EUNSUPPORTED) mkb_skip(st, "mk_pack_weights: %s", r.error);
            else mkb_fail(st, r.error);
            return;
        }
    }
    int64_t offsets[EXPERTS_PER_CALL + 1];
    for (int64_t g = 0; g <= c->n_groups; g++) offsets[g] = g * c->rows;
    size_t window_bytes = b.pool_bytes / (size_t)c->n_windows;
    mk_grouped_gemm_args a = {0};
    a.n_groups = c->n_groups;
    a.group_offsets = offsets;
    a.n = c->shape->n;
    a.k = c->shape->k;
    a.x = b.x;
    a.x_rows = c->n_groups * c->rows;
    a.w_dtype = c->dtype;
    a.y = b.y;
    a.y_rows = a.x_rows;
    while (gbc_keep_running(st)) {
        int64_t window = c->window++ % c->n_windows;
        if (packed)
            a.w_packed = packed->handles[window];
        else
            a.w = (const char *)b.pool + window_bytes * (size_t)window;
        mk_status s = mk_grouped_gemm(&a);
        if (s != MK_OK) {
            mkb_fail(st, NULL);
            break;
        }
    }
    gbc_do_not_optimize(b.y);
    mkb_set_work(st, &w);
}

static void bm_gemm_peer(gbc_state *st, void *user) {
    gemm_case *c = (gemm_case *)user;
    const mkb_peer *p = c->peer;
    char label[160];
    if (c->dtype == MK_BF16 ? p->gemm_bf16 == NULL : p->gemm_f32 == NULL) {
        mkb_skip(st, "%s (%s) has no %s GEMM", p->impl, p->label, mk_dtype_name(c->dtype));
        return;
    }
    gemm_buffers b = get_buffers(c, c->dtype == MK_BF16);
    mkb_work w = gemm_work(c, &b);
    snprintf(label, sizeof label, "%s%s", p->label, c->dtype == MK_BF16 ? "; x in bf16" : "");
    gbc_set_label(st, label);
    p->set_threads(c->threads);
    /* one untimed call: the peer's thread pool (OpenMP, OpenBLAS) starts on first use */
    if (c->dtype == MK_BF16)
        p->gemm_bf16(c->rows, c->shape->n, c->shape->k, b.x_bf16, (const uint16_t *)b.pool, b.y);
    else
        p->gemm_f32(c->rows, c->shape->n, c->shape->k, b.x, (const float *)b.pool, b.y);
    size_t window_bytes = b.pool_bytes / (size_t)c->n_windows;
    size_t expert_bytes = (size_t)(c->shape->n * c->shape->k) * mk_dtype_size(c->dtype);
    const int64_t n = c->shape->n, k = c->shape->k, rows = c->rows;
    while (gbc_keep_running(st)) {
        const char *w0 = (const char *)b.pool + window_bytes * (size_t)(c->window++ % c->n_windows);
        for (int64_t g = 0; g < c->n_groups; g++) {
            const void *wg = w0 + expert_bytes * (size_t)g;
            float *yg = b.y + g * rows * n;
            if (c->dtype == MK_BF16)
                p->gemm_bf16(rows, n, k, b.x_bf16 + g * rows * k, (const uint16_t *)wg, yg);
            else
                p->gemm_f32(rows, n, k, b.x + g * rows * k, (const float *)wg, yg);
        }
    }
    gbc_do_not_optimize(b.y);
    mkb_set_work(st, &w);
}

static void add_case(gemm_case proto) {
    enum { MAX_CASES = 2048 };
    static gemm_case cases[MAX_CASES];
    static int n_cases;
    if (n_cases == MAX_CASES) return;
    gemm_case *c = &cases[n_cases++];
    *c = proto;
    char name[200];
    if (c->peer)
        snprintf(name, sizeof name, "grouped_gemm/shape:%s/dtype:%s/rows:%lld/impl:%s/threads:%d", c->shape->name,
                 mk_dtype_name(c->dtype), (long long)c->rows, c->peer->impl, c->threads);
    else if (c->pack < 0)
        snprintf(name, sizeof name, "grouped_gemm/shape:%s/dtype:%s/rows:%lld/impl:moekit/isa:%s/threads:%d",
                 c->shape->name, mk_dtype_name(c->dtype), (long long)c->rows, mk_isa_name(c->isa), c->threads);
    else
        snprintf(name, sizeof name, "grouped_gemm/shape:%s/dtype:%s/rows:%lld/impl:moekit/isa:%s/pack:%s/threads:%d",
                 c->shape->name, mk_dtype_name(c->dtype), (long long)c->rows, mk_isa_name(c->isa),
                 pack_name(c->pack), c->threads);
    mkb_register(name, c->peer ? bm_gemm_peer : bm_gemm_moekit, c);
}

void mkb_register_gemm(void) {
    const gemm_shape *shapes = mkb_cfg.smoke ? smoke_shapes : full_shapes;
    const int64_t *rows = mkb_cfg.smoke ? smoke_rows : full_rows;
    int n_rows = mkb_cfg.smoke ? (int)(sizeof smoke_rows / sizeof *rows) : (int)(sizeof full_rows / sizeof *rows);
    int counts[2], n_counts = mkb_thread_counts(counts);
    const mkb_peer *peers[2];
    int n_peers = 0;
    if (mkb_cfg.peers) {
        const char *why = NULL;
        if ((peers[n_peers] = mkb_peer_openblas(&why)) != NULL) n_peers++;
        else fprintf(stderr, "moekit-bench: peer skipped: %s\n", why);
        if ((peers[n_peers] = mkb_peer_onednn(&why)) != NULL) n_peers++;
        else fprintf(stderr, "moekit-bench: peer skipped: %s\n", why);
    }
    /* L3 of the machine (fallback 32 MiB): a window of experts at least 4x that evicts the previous one */
    double l3 = mkb_cfg.cpu.l3_bytes > 0 ? (double)mkb_cfg.cpu.l3_bytes : 32.0 * 1024 * 1024;
    for (int s = 0; s < 2; s++) {
        for (int d = 0; d < 2; d++) {
            gemm_case proto = {0};
            proto.shape = &shapes[s];
            proto.dtype = d == 0 ? MK_F32 : MK_BF16;
            proto.n_groups = mkb_cfg.smoke ? 2 : EXPERTS_PER_CALL;
            double window = (double)(proto.n_groups * shapes[s].n * shapes[s].k) * (double)mk_dtype_size(proto.dtype);
            proto.n_windows = mkb_cfg.smoke ? 2 : (int64_t)(4.0 * l3 / window) + 1;
            if (proto.n_windows < 2) proto.n_windows = 2;
            proto.max_rows = rows[n_rows - 1];
            /* moekit at every ISA first (raw weights, then packed ones at the SIMD ISAs: the reference reads packed
             * weights through an accessor, which says nothing new), then each peer, so that a peer's spinning
             * threads never overlap moekit rows */
            proto.pack = -1;
            for (int isa = MK_ISA_REF; isa <= (int)mkb_cfg.detected; isa++)
                for (int t = 0; t < n_counts; t++)
                    for (int r = 0; r < n_rows; r++) {
                        proto.isa = (mk_isa)isa;
                        proto.threads = counts[t];
                        proto.rows = rows[r];
                        add_case(proto);
                    }
            int modes[2] = {MK_PACK_DEFAULT, MK_PACK_BF16_WIDEN};
            for (int mode = 0; mode < (proto.dtype == MK_BF16 ? 2 : 1); mode++)
                for (int isa = MK_ISA_REF + 1; isa <= (int)mkb_cfg.detected; isa++)
                    for (int t = 0; t < n_counts; t++)
                        for (int r = 0; r < n_rows; r++) {
                            proto.pack = modes[mode];
                            proto.isa = (mk_isa)isa;
                            proto.threads = counts[t];
                            proto.rows = rows[r];
                            add_case(proto);
                        }
            proto.pack = -1;
            for (int p = 0; p < n_peers; p++)
                for (int t = 0; t < n_counts; t++)
                    for (int r = 0; r < n_rows; r++) {
                        proto.peer = peers[p];
                        proto.threads = counts[t];
                        proto.rows = rows[r];
                        add_case(proto);
                    }
        }
    }
}
