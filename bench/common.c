/*
 * common.c: what every benchmark family shares: buffers (huge-page advised, filled deterministically, cached by
 * key under a memory budget), the work counters, the moekit ISA/thread/label prologue, and the pthread team used
 * by the machine limits.
 */
#include "bench.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

mkb_config mkb_cfg;

#define HUGE_ALIGN ((size_t)2 << 20)
/* Big buffers kept alive at once (weights, caches). The largest single family, the fused MoE FFN with 80 BF16
 * experts, needs 2.8 GB; the limit is well under the 24 GiB of the target machine and leaves room for the others
 * that share it. */
#define SHARED_BUDGET ((size_t)4 << 30)

void *mkb_alloc(size_t bytes) {
    size_t size = (bytes + HUGE_ALIGN - 1) / HUGE_ALIGN * HUGE_ALIGN;
    if (size == 0) size = HUGE_ALIGN;
    void *p = aligned_alloc(HUGE_ALIGN, size);
    if (p == NULL) {
        fprintf(stderr, "moekit-bench: out of memory allocating %zu bytes\n", bytes);
        abort();
    }
#ifdef MADV_HUGEPAGE
    madvise(p, size, MADV_HUGEPAGE); /* fewer TLB misses when streaming GBs of weights; advisory only */
#endif
    memset(p, 0, size); /* fault every page in now, never inside a timed loop */
    return p;
}

void mkb_free(void *p) { free(p); }

/* xorshift32 -> uniform float in [-scale, scale] */
static inline float next_uniform(uint32_t *s, float scale) {
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return ((float)(x >> 8) * (1.0f / 8388608.0f) - 1.0f) * scale;
}

void mkb_fill_f32(float *p, size_t n, uint32_t seed, float scale) {
    uint32_t s = seed * 2654435761u + 1u;
    for (size_t i = 0; i < n; i++) p[i] = next_uniform(&s, scale);
}

void mkb_fill_bf16(uint16_t *p, size_t n, uint32_t seed, float scale) {
    uint32_t s = seed * 2654435761u + 1u;
    for (size_t i = 0; i < n; i++) {
        union { float f; uint32_t u; } v = {next_uniform(&s, scale)};
        p[i] = (uint16_t)((v.u + 0x7fffu + ((v.u >> 16) & 1u)) >> 16); /* round to nearest even; no NaN here */
    }
}

typedef struct shared_entry {
    char key[96];
    void *p;
    size_t bytes;
    void (*destroy)(void *p);
    uint64_t epoch; /* the benchmark run that last used it */
} shared_entry;

#define MAX_SHARED 64
static shared_entry g_shared[MAX_SHARED];
static int g_n_shared;
static uint64_t g_epoch = 1; /* bumped before every benchmark run (see run_trampoline) */

void mkb_release_shared(void) {
    for (int i = 0; i < g_n_shared; i++) g_shared[i].destroy(g_shared[i].p);
    g_n_shared = 0;
}

/* Frees every object that the running benchmark has not asked for (it may hold pointers to those it has). */
static void release_stale(void) {
    int kept = 0;
    for (int i = 0; i < g_n_shared; i++) {
        if (g_shared[i].epoch == g_epoch)
            g_shared[kept++] = g_shared[i];
        else
            g_shared[i].destroy(g_shared[i].p);
    }
    g_n_shared = kept;
}

void *mkb_shared_object(const char *key, size_t bytes, void *(*make)(void *ctx), void (*destroy)(void *obj),
                        void *ctx) {
    size_t total = 0;
    for (int i = 0; i < g_n_shared; i++) {
        if (strcmp(g_shared[i].key, key) == 0 && g_shared[i].bytes == bytes) {
            g_shared[i].epoch = g_epoch;
            return g_shared[i].p;
        }
        total += g_shared[i].bytes;
    }
    if (total + bytes > SHARED_BUDGET || g_n_shared == MAX_SHARED) release_stale();
    if (g_n_shared == MAX_SHARED) {
        fprintf(stderr, "moekit-bench: more than %d shared buffers in one benchmark\n", MAX_SHARED);
        abort();
    }
    void *p = make(ctx);
    if (p == NULL) return NULL;
    shared_entry *e = &g_shared[g_n_shared++];
    snprintf(e->key, sizeof e->key, "%s", key);
    e->p = p;
    e->bytes = bytes;
    e->destroy = destroy;
    e->epoch = g_epoch;
    return p;
}

typedef struct fill_request {
    const char *key;
    size_t bytes;
    mk_dtype dtype;
    float scale;
} fill_request;

static void *make_filled(void *ctx) {
    const fill_request *r = (const fill_request *)ctx;
    void *p = mkb_alloc(r->bytes);
    uint32_t seed = 0;
    for (const char *c = r->key; *c; c++) seed = seed * 31u + (uint8_t)*c;
    if (r->dtype == MK_BF16)
        mkb_fill_bf16((uint16_t *)p, r->bytes / 2, seed, r->scale);
    else
        mkb_fill_f32((float *)p, r->bytes / 4, seed, r->scale);
    return p;
}

void *mkb_shared_buffer(const char *key, size_t bytes, mk_dtype dtype, float scale) {
    fill_request r = {key, bytes, dtype, scale};
    return mkb_shared_object(key, bytes, make_filled, mkb_free, &r);
}

void mkb_skip(gbc_state *st, const char *fmt, ...) {
    char msg[256] = "skipped: ";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + 9, sizeof msg - 9, fmt, ap);
    va_end(ap);
    mkb_cfg.n_skipped++;
    gbc_skip_with_error(st, msg);
}

void mkb_fail(gbc_state *st, const char *msg) {
    char text[300];
    snprintf(text, sizeof text, "failed: %s", msg ? msg : mk_last_error());
    fprintf(stderr, "moekit-bench: %s\n", text);
    mkb_cfg.n_failed++;
    gbc_skip_with_error(st, text);
}

void mkb_set_work(gbc_state *st, const mkb_work *w) {
    int64_t iters = gbc_iterations_done(st);
    gbc_set_counter(st, "flop", w->flop, 0);
    gbc_set_counter(st, "bytes", w->bytes, 0);
    gbc_set_counter(st, "bytes_written", w->bytes_written, 0);
    gbc_set_counter(st, "footprint", w->footprint, 0);
    if (w->flop > 0) gbc_set_counter(st, "FLOP/s", w->flop, GBC_RATE | GBC_ITER_INVARIANT);
    if (w->bytes > 0) gbc_set_bytes_processed(st, (int64_t)(w->bytes * (double)iters));
    if (w->items > 0) gbc_set_items_processed(st, (int64_t)(w->items * (double)iters));
}

typedef struct trampoline {
    gbc_fn fn;
    void *user;
} trampoline;

static void run_trampoline(gbc_state *st, void *p) {
    trampoline *t = (trampoline *)p;
    g_epoch++;
    t->fn(st, t->user);
}

gbc_bench *mkb_register(const char *name, gbc_fn fn, void *user) {
    trampoline *t = (trampoline *)malloc(sizeof *t); /* lives as long as the registration: the whole run */
    if (t == NULL) abort();
    t->fn = fn;
    t->user = user;
    gbc_bench *b = gbc_register(name, run_trampoline, t);
    gbc_use_real_time(b); /* the work runs on pool threads: the caller's CPU time says nothing */
    gbc_set_unit(b, GBC_US);
    return b;
}

int mkb_thread_counts(int counts[2]) {
    counts[0] = 1;
    if (mkb_cfg.n_cores <= 1) return 1;
    counts[1] = mkb_cfg.n_cores;
    return 2;
}

int mkb_moekit_enter(gbc_state *st, mk_op op, mk_isa isa, int threads, double flop) {
    char msg[200];
    if (isa > mkb_cfg.detected || mk_set_max_isa(isa) != MK_OK || mk_selected_isa() != isa) {
        mkb_skip(st, "ISA %s not available on this CPU", mk_isa_name(isa));
        return 0;
    }
    if (mk_set_num_threads(threads) != MK_OK) {
        mkb_fail(st, NULL);
        return 0;
    }
    const char *kernel = mk_kernel_name(op);
    snprintf(msg, sizeof msg, "kernel:%s", kernel ? kernel : "?");
    gbc_set_label(st, msg);
    if (kernel && strcmp(kernel, "ref") == 0 && flop > MKB_REF_MAX_FLOP && !mkb_cfg.ref_all && !mkb_cfg.smoke) {
        mkb_skip(st, "runs the reference kernel; %.2g FLOP per call is over its budget of %.2g (--ref-all)", flop,
                 MKB_REF_MAX_FLOP);
        return 0;
    }
    return 1;
}

/* ---- thread team ---- */
typedef struct team_arg {
    mkb_team_fn fn;
    void *ctx;
    int tid, n;
} team_arg;

static void *team_main(void *p) {
    team_arg *a = (team_arg *)p;
    a->fn(a->ctx, a->tid, a->n);
    return NULL;
}

void mkb_team_run(int n_threads, mkb_team_fn fn, void *ctx) {
    enum { MAX_TEAM = 256 };
    pthread_t th[MAX_TEAM];
    team_arg args[MAX_TEAM];
    int started[MAX_TEAM] = {0};
    if (n_threads > MAX_TEAM) n_threads = MAX_TEAM;
    for (int t = 1; t < n_threads; t++) {
        args[t] = (team_arg){fn, ctx, t, n_threads};
        started[t] = pthread_create(&th[t], NULL, team_main, &args[t]) == 0;
    }
    fn(ctx, 0, n_threads);
    for (int t = 1; t < n_threads; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            fn(ctx, t, n_threads); /* could not start a thread: its slice still gets done */
    }
}
