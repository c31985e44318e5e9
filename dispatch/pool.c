/*
 * pool.c: the persistent thread pool behind mki_parallel, and mk_set_num_threads / mk_get_num_threads.
 *
 * Protocol. One job at a time. The caller that wins the `busy` flag writes the job (fn, ctx), sets `pending` to
 * the number of workers that take part, then publishes a new value of the 64-bit `word` = generation << 24 |
 * n_threads. Worker w (tid w + 1) waits for `word` to change; if its tid < n_threads it runs fn(ctx, tid, n) and
 * decrements `pending`. Workers with tid >= n only look at `word`, never at fn/ctx, so the caller may publish the
 * next job as soon as `pending` reaches 0. Tids without a worker (thread creation failed, or more than
 * MKI_MAX_WORKERS) run on the caller after tid 0, so every tid runs exactly once whatever happens.
 *
 * Waiting. Both sides spin (with a pause instruction) for about SPIN_NS, then sleep on a condition variable;
 * sleeping is announced through a counter / flag read by the other side after its own store (both seq_cst), so a
 * wake-up is never lost and no syscall is made while everybody is spinning. Back-to-back calls cost a few
 * microseconds; an idle pool costs nothing.
 *
 * Fallbacks. A nested call (from inside fn, on any thread) or a call while another application thread holds the
 * pool runs every tid in turn on the calling thread, with the same n_threads, so results never depend on it.
 *
 * Binding. MOEKIT_BIND=cores binds worker w to core (w + 1) mod n_cores with mki_bind_current_thread (the calling
 * thread is never rebound: it belongs to the application). The default, MOEKIT_BIND=none, leaves placement to the
 * OS, which is the safe choice in containers and when several processes share the machine.
 *
 * Lifetime. Workers are created lazily by the first call that needs them (n_threads > 1), and more are added if
 * the thread count grows. At process exit (or dlclose) a destructor wakes them, tells them to quit and joins them,
 * unless the pool is in use at that moment (exit() from inside a job), in which case they are simply left alone:
 * exit_group ends them. After fork() the child starts with an empty pool (pthread_atfork).
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MKI_MAX_WORKERS 255
#define N_BITS 24
#define N_MASK ((UINT64_C(1) << N_BITS) - 1)
#define MAX_N ((int)N_MASK)
#define SPIN_PAUSES 128u   /* pure pause spins before yielding: ~4 us (a pause is ~30 ns on Zen 5) */
#define SPIN_NS 100000ull  /* then yield-spin for up to 100 us before sleeping */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield" ::: "memory");
#endif
}

/* ---- thread count --------------------------------------------------------------------------------------------- */
static atomic_int g_user_threads;     /* set by mk_set_num_threads; 0 = not set */
static pthread_once_t g_default_once = PTHREAD_ONCE_INIT;
static int g_default_threads = 1;

static void default_threads_init(void) {
    const char *s = mki_getenv("MOEKIT_NUM_THREADS");
    if (s != NULL) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        while (*end == ' ' || *end == '\t' || *end == '\n') end++;
        if (errno == 0 && end != s && *end == '\0' && v >= 1 && v <= INT_MAX) {
            g_default_threads = (int)v;
            return;
        }
        fprintf(stderr, "moekit: MOEKIT_NUM_THREADS=%s is not a positive integer; ignored\n", s);
    }
    int n = mki_cpu_info()->n_cores;
    g_default_threads = n >= 1 ? n : 1;
}

mk_status mk_set_num_threads(int n_threads) {
    mki_clear_error();
    if (n_threads < 1) return mki_error(MK_EINVAL, "mk_set_num_threads: n_threads = %d must be >= 1", n_threads);
    atomic_store(&g_user_threads, n_threads);
    return MK_OK;
}

int mk_get_num_threads(void) {
    int n = atomic_load_explicit(&g_user_threads, memory_order_relaxed);
    if (n >= 1) return n;
    pthread_once(&g_default_once, default_threads_init);
    return g_default_threads;
}

/* ---- the pool -------------------------------------------------------------------------------------------------- */
typedef struct worker {
    pthread_t thread;
    int tid;
    uint64_t first_word; /* the word when the worker was created: it waits for the next one */
} worker;

static struct {
    atomic_int busy;               /* 1 while a caller owns the pool */
    _Alignas(64) _Atomic uint64_t word; /* generation << N_BITS | n_threads of the current job */
    _Alignas(64) atomic_int pending; /* workers of the current job that have not finished */
    _Alignas(64) atomic_int sleepers;  /* workers sleeping (or about to) on wake_cond */
    atomic_int caller_waiting;     /* the caller sleeps (or is about to) on done_cond */
    atomic_int quit;
    mki_parallel_fn fn;            /* written by the caller before `word`, read by participating workers */
    void *ctx;
    pthread_mutex_t mutex;
    pthread_cond_t wake_cond, done_cond;
    worker *workers[MKI_MAX_WORKERS];
    int n_workers;                 /* only touched by the owner of `busy` (and the destructor, which owns it) */
    int bind;                      /* MOEKIT_BIND=cores */
} g_pool = {
    .mutex = PTHREAD_MUTEX_INITIALIZER,
    .wake_cond = PTHREAD_COND_INITIALIZER,
    .done_cond = PTHREAD_COND_INITIALIZER,
};

static _Thread_local int t_in_parallel; /* inside fn (workers: always) -> nested calls run serially */

static pthread_once_t g_pool_once = PTHREAD_ONCE_INIT;

static void pool_atfork_child(void) {
    /* Only the forking thread survives in the child: forget the workers (their memory is leaked on purpose) and
     * any job in flight, so that the child creates a fresh pool when it needs one. */
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c1 = PTHREAD_COND_INITIALIZER, c2 = PTHREAD_COND_INITIALIZER;
    g_pool.mutex = m;
    g_pool.wake_cond = c1;
    g_pool.done_cond = c2;
    g_pool.n_workers = 0;
    atomic_store(&g_pool.sleepers, 0);
    atomic_store(&g_pool.caller_waiting, 0);
    atomic_store(&g_pool.pending, 0);
    atomic_store(&g_pool.busy, 0);
}

static void pool_init(void) {
    const char *b = mki_getenv("MOEKIT_BIND");
    if (b != NULL) {
        if (strcasecmp(b, "cores") == 0)
            g_pool.bind = 1;
        else if (strcasecmp(b, "none") != 0)
            fprintf(stderr, "moekit: MOEKIT_BIND=%s is not one of none, cores; ignored\n", b);
    }
    pthread_atfork(NULL, NULL, pool_atfork_child);
}

/* One step of a spin-wait; returns 0 when the budget is spent and the caller should sleep instead. The first
 * ~SPIN_PAUSES steps only pause (the other side is usually a few hundred ns away); after that each step also
 * yields, so that a thread we wait for that shares our CPU (oversubscription, inherited affinity) gets to run. */
static int spin_step(unsigned i, uint64_t *t0) {
    if (i < SPIN_PAUSES) {
        cpu_relax();
        return 1;
    }
    sched_yield();
    uint64_t t = mki_now_ns();
    if (*t0 == 0) *t0 = t;
    return t - *t0 <= SPIN_NS;
}

/* Waits until `word` differs from `seen`; returns the new word. */
static uint64_t wait_for_job(uint64_t seen) {
    uint64_t w;
    uint64_t t0 = 0;
    for (unsigned i = 0;; i++) {
        w = atomic_load_explicit(&g_pool.word, memory_order_acquire);
        if (w != seen || atomic_load_explicit(&g_pool.quit, memory_order_relaxed)) return w;
        if (!spin_step(i, &t0)) break;
    }
    pthread_mutex_lock(&g_pool.mutex);
    atomic_fetch_add(&g_pool.sleepers, 1);
    while ((w = atomic_load(&g_pool.word)) == seen && !atomic_load(&g_pool.quit))
        pthread_cond_wait(&g_pool.wake_cond, &g_pool.mutex);
    atomic_fetch_sub(&g_pool.sleepers, 1);
    pthread_mutex_unlock(&g_pool.mutex);
    return w;
}

static void *worker_main(void *arg) {
    worker *self = arg;
    const int tid = self->tid;
    t_in_parallel = 1;
    if (g_pool.bind) (void)mki_bind_current_thread(tid); /* failure is harmless: the thread just floats */
    uint64_t seen = self->first_word;
    for (;;) {
        uint64_t w = wait_for_job(seen);
        if (atomic_load(&g_pool.quit)) break;
        seen = w;
        int n = (int)(w & N_MASK);
        if (tid >= n) continue;
        g_pool.fn(g_pool.ctx, tid, n);
        if (atomic_fetch_sub(&g_pool.pending, 1) == 1 && atomic_load(&g_pool.caller_waiting)) {
            pthread_mutex_lock(&g_pool.mutex);
            pthread_cond_broadcast(&g_pool.done_cond);
            pthread_mutex_unlock(&g_pool.mutex);
        }
    }
    return NULL;
}

/* Called by the owner of `busy`: makes sure workers for tids 1 .. want exist (as far as possible). */
static void ensure_workers(int want) {
    if (want > MKI_MAX_WORKERS) want = MKI_MAX_WORKERS;
    while (g_pool.n_workers < want) {
        worker *w = calloc(1, sizeof *w);
        if (w == NULL) return;
        w->tid = g_pool.n_workers + 1;
        w->first_word = atomic_load(&g_pool.word);
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            free(w);
            return;
        }
        g_pool.workers[g_pool.n_workers++] = w;
    }
}

static void run_serial(int n, mki_parallel_fn fn, void *ctx) {
    int saved = t_in_parallel;
    t_in_parallel = 1;
    for (int tid = 0; tid < n; tid++) fn(ctx, tid, n);
    t_in_parallel = saved;
}

void mki_parallel(int n_threads, mki_parallel_fn fn, void *ctx) {
    if (fn == NULL) return;
    int max = mk_get_num_threads();
    int n = n_threads < 1 ? 1 : n_threads;
    if (n > max) n = max;
    if (n > MAX_N) n = MAX_N;
    if (n == 1) {
        run_serial(1, fn, ctx);
        return;
    }
    if (t_in_parallel) { /* nested */
        run_serial(n, fn, ctx);
        return;
    }
    int expected = 0;
    if (!atomic_compare_exchange_strong(&g_pool.busy, &expected, 1)) { /* another thread owns the pool */
        run_serial(n, fn, ctx);
        return;
    }
    pthread_once(&g_pool_once, pool_init);
    ensure_workers(n - 1);
    int n_helpers = g_pool.n_workers < n - 1 ? g_pool.n_workers : n - 1;

    if (n_helpers > 0) {
        g_pool.fn = fn;
        g_pool.ctx = ctx;
        atomic_store(&g_pool.pending, n_helpers);
        uint64_t gen = (atomic_load_explicit(&g_pool.word, memory_order_relaxed) >> N_BITS) + 1;
        atomic_store(&g_pool.word, (gen << N_BITS) | (uint64_t)n); /* seq_cst: paired with the sleepers count */
        if (atomic_load(&g_pool.sleepers) > 0) {
            pthread_mutex_lock(&g_pool.mutex);
            pthread_cond_broadcast(&g_pool.wake_cond);
            pthread_mutex_unlock(&g_pool.mutex);
        }
    }

    /* tid 0, then the tids no worker could take */
    t_in_parallel = 1;
    fn(ctx, 0, n);
    for (int tid = n_helpers + 1; tid < n; tid++) fn(ctx, tid, n);
    t_in_parallel = 0;

    if (n_helpers > 0 && atomic_load_explicit(&g_pool.pending, memory_order_acquire) != 0) {
        uint64_t t0 = 0;
        for (unsigned i = 0; atomic_load_explicit(&g_pool.pending, memory_order_acquire) != 0; i++)
            if (!spin_step(i, &t0)) break;
        if (atomic_load(&g_pool.pending) != 0) {
            pthread_mutex_lock(&g_pool.mutex);
            atomic_store(&g_pool.caller_waiting, 1);
            while (atomic_load(&g_pool.pending) != 0) pthread_cond_wait(&g_pool.done_cond, &g_pool.mutex);
            atomic_store(&g_pool.caller_waiting, 0);
            pthread_mutex_unlock(&g_pool.mutex);
        }
    }
    atomic_store(&g_pool.busy, 0);
}

__attribute__((destructor)) static void pool_shutdown(void) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&g_pool.busy, &expected, 1)) return; /* in use (exit from a job): leave */
    if (g_pool.n_workers == 0) {
        atomic_store(&g_pool.busy, 0);
        return;
    }
    pthread_mutex_lock(&g_pool.mutex);
    atomic_store(&g_pool.quit, 1);
    pthread_cond_broadcast(&g_pool.wake_cond);
    pthread_mutex_unlock(&g_pool.mutex);
    for (int i = 0; i < g_pool.n_workers; i++) {
        pthread_join(g_pool.workers[i]->thread, NULL);
        free(g_pool.workers[i]);
    }
    g_pool.n_workers = 0;
    atomic_store(&g_pool.quit, 0);
    atomic_store(&g_pool.busy, 0);
}
