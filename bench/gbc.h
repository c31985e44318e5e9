/*
 * gbc.h: a thin C interface to Google Benchmark 1.7.1 (implemented in gbc.cc, the only C++ file of bench/).
 * A benchmark is a C callback fn(state, user) registered under a name; it loops `while (gbc_keep_running(st))`
 * around the timed work, and sets bytes, items and custom counters (GFLOP/s etc.) that land in the JSON output.
 * Flags are Google Benchmark's own (--benchmark_filter, --benchmark_out, --benchmark_min_time=<double> in 1.7.1).
 */
#ifndef MOEKIT_BENCH_GBC_H
#define MOEKIT_BENCH_GBC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct gbc_state gbc_state; /* a benchmark::State */
typedef struct gbc_bench gbc_bench; /* a benchmark::internal::Benchmark */
typedef void (*gbc_fn)(gbc_state *st, void *user);

typedef enum gbc_unit { GBC_NS = 0, GBC_US = 1, GBC_MS = 2, GBC_S = 3 } gbc_unit;

/* Counter flags, mapped one to one onto benchmark::Counter::Flags. */
enum {
    GBC_RATE = 1,            /* divided by the (real, with gbc_use_real_time) time of the run */
    GBC_AVG_THREADS = 2,     /* divided by the number of threads */
    GBC_ITER_INVARIANT = 4,  /* a per-iteration value, multiplied by the iteration count */
    GBC_AVG_ITERATIONS = 8,  /* divided by the iteration count */
    GBC_INVERT = 16          /* 1 / value, applied last */
};

/* ---- initialisation and running (in this order: init, register, run) ---- */
/* Parses and removes Google Benchmark's own flags from argv; the program's flags stay in argv. */
void gbc_initialize(int *argc, char **argv);
/* 1 if argv still holds arguments (after the program removed its own): prints them as unrecognized. */
int gbc_report_unrecognized(int argc, char **argv);
/* Runs every registered benchmark that passes --benchmark_filter, with the reporters the flags ask for; returns
 * how many were run. */
int64_t gbc_run_specified(void);
void gbc_shutdown(void);
/* Adds "key": "value" to the "context" object of the JSON output. */
void gbc_add_context(const char *key, const char *value);

/* ---- registration and per-benchmark configuration ---- */
/* `user` must outlive the run. The name is copied. */
gbc_bench *gbc_register(const char *name, gbc_fn fn, void *user);
void gbc_args(gbc_bench *b, const int64_t *args, int n_args);
void gbc_set_unit(gbc_bench *b, gbc_unit unit);
void gbc_use_real_time(gbc_bench *b);
void gbc_min_time(gbc_bench *b, double seconds);
void gbc_repetitions(gbc_bench *b, int n);
void gbc_iterations(gbc_bench *b, int64_t n);
void gbc_threads(gbc_bench *b, int n);

/* ---- inside the callback ---- */
int gbc_keep_running(gbc_state *st);
int gbc_keep_running_batch(gbc_state *st, int64_t n);
int64_t gbc_range(gbc_state *st, int i);
int64_t gbc_iterations_done(gbc_state *st);
int gbc_thread_index(gbc_state *st);
void gbc_pause(gbc_state *st);
void gbc_resume(gbc_state *st);
void gbc_set_label(gbc_state *st, const char *label);
/* Marks the run as skipped/failed with a message (JSON: error_occurred, error_message); call before the loop. */
void gbc_skip_with_error(gbc_state *st, const char *message);
/* Totals over the whole run (per-iteration value times gbc_iterations_done), as in State::SetBytesProcessed. */
void gbc_set_bytes_processed(gbc_state *st, int64_t bytes);
void gbc_set_items_processed(gbc_state *st, int64_t items);
/* st.counters[name] = Counter(value, flags, 1000). */
void gbc_set_counter(gbc_state *st, const char *name, double value, unsigned flags);

/* ---- C-side helpers: keep the compiler from deleting or sinking the measured work ---- */
static inline void gbc_do_not_optimize(const void *p) { __asm__ volatile("" : : "r"(p) : "memory"); }
static inline void gbc_clobber_memory(void) { __asm__ volatile("" : : : "memory"); }

#ifdef __cplusplus
}
#endif

#endif /* MOEKIT_BENCH_GBC_H */
