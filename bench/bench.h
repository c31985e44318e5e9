/*
 * bench.h: shared pieces of the moekit benchmark program (bench/main.c): run configuration, big-buffer cache,
 * thread team, machine-limit kernels (limits*.c), and the registration entry of each benchmark family.
 *
 * Naming. Every benchmark is "<family>/<key>:<value>/..." (e.g. "grouped_gemm/shape:gate_up/dtype:bf16/rows:8/
 * impl:moekit/isa:avx512/threads:1"); tools/bench-report parses these keys. Per-iteration work is published as the
 * plain counters "flop", "bytes" (compulsory memory traffic), "bytes_written" and "footprint" (distinct bytes cycled
 * through across iterations), plus the rate counters FLOP/s and bytes_per_second. The label says which kernel ran
 * (mk_kernel_name) or which peer core was used.
 */
#ifndef MOEKIT_BENCH_H
#define MOEKIT_BENCH_H

#include "gbc.h"
#include "moekit.h"

#include <stddef.h>
#include <stdint.h>

/* ---- run configuration (main.c) ---- */
typedef struct mkb_config {
    int smoke;          /* tiny shapes, everything registered: a build-and-run check, never a measurement */
    int peers;          /* 0 with --no-peers */
    int ref_all;        /* --ref-all: run the reference kernels at every size (slow) */
    int n_cores;        /* "all threads" = this many */
    mk_isa detected;
    mk_cpu_info cpu;
    int64_t n_skipped;  /* benchmarks skipped on purpose (mkb_skip) */
    int64_t n_failed;   /* benchmarks that failed (mkb_fail): the program then exits with 1 */
} mkb_config;

extern mkb_config mkb_cfg;

/* ---- buffers ---- */
/* 2 MiB-aligned, transparent-huge-page advised, zero-touched; abort()s with a message when out of memory. */
void *mkb_alloc(size_t bytes);
void mkb_free(void *p);
/* Deterministic pseudo-random fill, uniform in [-scale, scale] (bf16: rounded from the same floats). */
void mkb_fill_f32(float *p, size_t n, uint32_t seed, float scale);
void mkb_fill_bf16(uint16_t *p, size_t n, uint32_t seed, float scale);
/* A filled buffer of `bytes` shared by every benchmark that asks for the same key and size (weights, caches,
 * activations). When keeping it would exceed the memory budget, the buffers that the running benchmark has not
 * asked for are released first: benchmarks run in registration order, so each family allocates once. dtype
 * selects the fill. Valid until the next benchmark starts. */
void *mkb_shared_buffer(const char *key, size_t bytes, mk_dtype dtype, float scale);
/* The same cache for any object: make(ctx) builds it (NULL = failed, not cached), destroy frees it; `bytes` is its
 * size for the budget. */
void *mkb_shared_object(const char *key, size_t bytes, void *(*make)(void *ctx), void (*destroy)(void *obj),
                        void *ctx);
void mkb_release_shared(void);

/* ---- per-iteration work and counters ---- */
typedef struct mkb_work {
    double flop;          /* floating-point operations per iteration (0 for pure data movement) */
    double bytes;         /* compulsory bytes read + written per iteration */
    double bytes_written; /* part of `bytes` that is written */
    double footprint;     /* distinct bytes the iterations cycle through (cache residency) */
    double items;         /* tokens (or rows) per iteration, 0 = not reported */
} mkb_work;

/* Ends a benchmark before or inside its loop (then break out of it): mkb_skip for a deliberate skip (the message
 * is prefixed "skipped: "), mkb_fail for an error such as a rejected call (mk_last_error() when msg is NULL). */
void mkb_skip(gbc_state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mkb_fail(gbc_state *st, const char *msg);

/* Sets flop/bytes/footprint plain counters and the FLOP/s, bytes_per_second, items_per_second rates. Call after
 * the timed loop. */
void mkb_set_work(gbc_state *st, const mkb_work *w);
/* Registers with the common settings (real time, microseconds). */
gbc_bench *mkb_register(const char *name, gbc_fn fn, void *user);
/* "all" thread count list: {1, n_cores} (just {1} on a single core). Returns how many. */
int mkb_thread_counts(int counts[2]);

/* For a moekit benchmark: caps the ISA, sets the thread count, labels the row with the kernel that will run and
 * decides whether it runs. Returns 0 (and has skipped the benchmark with a message) when the ISA is not available
 * or the kernel is the reference one and `flop` exceeds the reference budget. */
int mkb_moekit_enter(gbc_state *st, mk_op op, mk_isa isa, int threads, double flop);
/* Reference-kernel budget: FLOP per call above which rows that run the ref kernel are skipped (see README). */
#define MKB_REF_MAX_FLOP 8.0e8

/* ---- thread team for the machine limits (pthreads, one slice per thread) ---- */
typedef void (*mkb_team_fn)(void *ctx, int tid, int n_threads);
void mkb_team_run(int n_threads, mkb_team_fn fn, void *ctx);

/* ---- machine-limit kernels (limits_avx512.c, limits_avx2.c: compiled with their own -m flags) ---- */
/* FLOP per loop trip of the compute kernels. */
#define MKB_FMA_ZMM_FLOP_PER_TRIP (16.0 * 16 * 2) /* 16 accumulators x 16 lanes x (mul + add) */
#define MKB_FMA_YMM_FLOP_PER_TRIP (12.0 * 8 * 2)  /* 12 accumulators: AVX2 has 16 registers */
#define MKB_DPBF16_ZMM_FLOP_PER_TRIP (16.0 * 32 * 2) /* 16 accumulators x 32 bf16 pairs x (mul + add) */
float mkb_fma_f32_avx512(int64_t trips);
float mkb_dpbf16_avx512(int64_t trips);
float mkb_read_avx512(const void *p, size_t bytes);
void mkb_copy_avx512(void *dst, const void *src, size_t bytes);
float mkb_fma_f32_avx2(int64_t trips);
float mkb_read_avx2(const void *p, size_t bytes);
void mkb_copy_avx2(void *dst, const void *src, size_t bytes);

/* ---- families (registration order = run order) ---- */
void mkb_register_limits(void);
void mkb_register_ops(void);         /* ops.c: gating, RoPE, norms, SwiGLU, attention, fused MoE FFN */
void mkb_register_gemm(void);        /* gemm.c: grouped GEMM rows-per-expert sweep, moekit and peers */
/* peers.c: OpenBLAS and oneDNN, loaded with dlopen at run time; each returns NULL with *why set when absent. */
typedef struct mkb_peer {
    const char *impl;   /* "openblas", "openblas-SkylakeX", "onednn" */
    char label[96];     /* e.g. "core:Haswell" / "onednn 2.6.3" */
    /* y[m, n] = x[m, k] . w[n, k]^T, row-major; w is F32 (gemm_f32) or BF16 (gemm_bf16, x then given as BF16) */
    void (*gemm_f32)(int64_t m, int64_t n, int64_t k, const float *x, const float *w, float *y);
    void (*gemm_bf16)(int64_t m, int64_t n, int64_t k, const uint16_t *x, const uint16_t *w, float *y);
    void (*set_threads)(int n);
} mkb_peer;
const mkb_peer *mkb_peer_openblas(const char **why);
const mkb_peer *mkb_peer_onednn(const char **why);

#endif /* MOEKIT_BENCH_H */
