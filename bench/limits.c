/*
 * limits.c: the machine limits, measured by the benchmark program itself in the same run so that every result
 * can be reported as a fraction of them: FP32 FMA peak (zmm and ymm), BF16 dot peak (vdpbf16ps), DRAM read
 * bandwidth and copy bandwidth, each for one core and for all cores (a pthread team, one slice per thread).
 * The kernels live in limits_<isa>.c, compiled with that ISA's flags and called only when the CPU has it.
 */
#include "bench.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

typedef enum limit_kind { LIMIT_FMA_F32, LIMIT_DOT_BF16, LIMIT_DRAM_READ, LIMIT_COPY } limit_kind;

static const char *const kind_names[] = {"fma_f32", "dot_bf16", "dram_read", "copy"};

typedef struct limit_case {
    limit_kind kind;
    mk_isa isa; /* MK_ISA_REF = portable C loop (read/copy only) */
    int threads;
    /* per-run state */
    int64_t trips;  /* compute kernels: loop trips per thread per iteration */
    char *buf;      /* bandwidth kernels: the whole buffer, seen as n_chunks source chunks (+ as many for copy) */
    size_t chunk;   /* bytes read per iteration (copy: also written, into the second half of buf) */
    size_t n_chunks, next;
} limit_case;

static volatile float g_sink; /* keeps results alive */

static float read_portable(const void *p, size_t bytes) {
    const float *f = (const float *)p;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i < bytes / sizeof(float); i += 4) {
        s0 += f[i];
        s1 += f[i + 1];
        s2 += f[i + 2];
        s3 += f[i + 3];
    }
    return s0 + s1 + s2 + s3;
}

#if !defined(__x86_64__)
/* limits_avx*.c are x86-only; the portable loops serve elsewhere (registration never asks for an x86 ISA). */
float mkb_fma_f32_avx512(int64_t trips) { return (float)trips; }
float mkb_fma_f32_avx2(int64_t trips) { return (float)trips; }
float mkb_dpbf16_avx512(int64_t trips) { return (float)trips; }
float mkb_read_avx512(const void *p, size_t bytes) { return read_portable(p, bytes); }
float mkb_read_avx2(const void *p, size_t bytes) { return read_portable(p, bytes); }
void mkb_copy_avx512(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
void mkb_copy_avx2(void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
#endif

static void limit_slice(void *ctx, int tid, int n_threads) {
    limit_case *c = (limit_case *)ctx;
    float r = 0;
    if (c->kind == LIMIT_FMA_F32) {
        r = c->isa == MK_ISA_AVX512 ? mkb_fma_f32_avx512(c->trips) : mkb_fma_f32_avx2(c->trips);
    } else if (c->kind == LIMIT_DOT_BF16) {
        r = mkb_dpbf16_avx512(c->trips);
    } else {
        /* slices are multiples of 64 KiB, so every kernel's block size divides them */
        size_t unit = (size_t)64 << 10, units = c->chunk / unit, base = (c->next % c->n_chunks) * c->chunk;
        size_t begin = base + units * (size_t)tid / (size_t)n_threads * unit;
        size_t end = base + units * (size_t)(tid + 1) / (size_t)n_threads * unit;
        const char *src = c->buf + begin;
        if (c->kind == LIMIT_DRAM_READ) {
            if (c->isa == MK_ISA_AVX512) r = mkb_read_avx512(src, end - begin);
            else if (c->isa == MK_ISA_AVX2) r = mkb_read_avx2(src, end - begin);
            else r = read_portable(src, end - begin);
        } else {
            char *dst = c->buf + c->n_chunks * c->chunk + begin;
            if (c->isa == MK_ISA_AVX512) mkb_copy_avx512(dst, src, end - begin);
            else if (c->isa == MK_ISA_AVX2) mkb_copy_avx2(dst, src, end - begin);
            else memcpy(dst, src, end - begin);
            r = (float)dst[0];
        }
    }
    if (tid == 0) g_sink = r;
}

static void bm_limit(gbc_state *st, void *user) {
    limit_case *c = (limit_case *)user;
    mkb_work w = {0};
    char label[64];
    snprintf(label, sizeof label, "%s %s x%d", kind_names[c->kind], mk_isa_name(c->isa), c->threads);
    gbc_set_label(st, label);
    if (c->kind == LIMIT_FMA_F32 || c->kind == LIMIT_DOT_BF16) {
        /* ~1 ms per iteration at Zen 5 rates: long enough to hide thread start-up, short enough that on a busy
         * machine some iterations run without being preempted (the fastest one is the limit) */
        c->trips = mkb_cfg.smoke ? 20000 : 500000;
        double per_trip = c->kind == LIMIT_DOT_BF16 ? MKB_DPBF16_ZMM_FLOP_PER_TRIP
                          : c->isa == MK_ISA_AVX512 ? MKB_FMA_ZMM_FLOP_PER_TRIP
                                                    : MKB_FMA_YMM_FLOP_PER_TRIP;
        w.flop = per_trip * (double)c->trips * c->threads;
    } else {
        /* A 1 GiB buffer (32x the L3 of the target machine) streamed in 64 MiB chunks (32 MiB for copy), a
         * different one each iteration, so that every byte comes from DRAM and an iteration takes a few ms. */
        size_t total = mkb_cfg.smoke ? ((size_t)8 << 20) : ((size_t)1 << 30);
        c->buf = (char *)mkb_shared_buffer("limits/stream", total, MK_F32, 1.0f);
        c->chunk = mkb_cfg.smoke ? ((size_t)1 << 20) : ((size_t)64 << 20);
        if (c->kind == LIMIT_COPY) c->chunk /= 2;
        c->n_chunks = (c->kind == LIMIT_COPY ? total / 2 : total) / c->chunk;
        w.bytes = c->kind == LIMIT_DRAM_READ ? (double)c->chunk : 2.0 * (double)c->chunk;
        w.bytes_written = c->kind == LIMIT_COPY ? (double)c->chunk : 0;
        w.footprint = (double)total;
    }
    /* A limit is what the machine can do: besides the mean rate, publish the fastest iteration ("peak"), which a
     * shared or noisy machine only ever makes slower. */
    double best = 1e30;
    while (gbc_keep_running(st)) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        mkb_team_run(c->threads, limit_slice, c);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        c->next++;
        double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        if (dt < best) best = dt;
    }
    mkb_set_work(st, &w);
    if (best < 1e30) gbc_set_counter(st, "peak", (w.flop > 0 ? w.flop : w.bytes) / best, 0);
}

static void add_limit(limit_kind kind, mk_isa isa, int threads) {
    static limit_case cases[64];
    static int n_cases;
    if (n_cases == (int)(sizeof cases / sizeof cases[0])) return;
    limit_case *c = &cases[n_cases++];
    *c = (limit_case){kind, isa, threads, 0, NULL, 0, 0, 0};
    char name[128];
    snprintf(name, sizeof name, "limit/kind:%s/isa:%s/threads:%d", kind_names[kind], mk_isa_name(isa), threads);
    gbc_bench *b = mkb_register(name, bm_limit, c);
    /* the best repetition is the limit: a shared machine only ever makes a run slower */
    if (!mkb_cfg.smoke) gbc_repetitions(b, 5);
}

void mkb_register_limits(void) {
    const mk_cpu_info *cpu = &mkb_cfg.cpu;
    int has512 = mkb_cfg.detected >= MK_ISA_AVX512, has2 = mkb_cfg.detected >= MK_ISA_AVX2;
    mk_isa stream_isa = has512 ? MK_ISA_AVX512 : has2 ? MK_ISA_AVX2 : MK_ISA_REF;
    int counts[2], n_counts = mkb_thread_counts(counts);
    for (int i = 0; i < n_counts; i++) {
        if (has512) add_limit(LIMIT_FMA_F32, MK_ISA_AVX512, counts[i]);
        if (has2) add_limit(LIMIT_FMA_F32, MK_ISA_AVX2, counts[i]);
        if (has512 && cpu->avx512_bf16) add_limit(LIMIT_DOT_BF16, MK_ISA_AVX512, counts[i]);
        add_limit(LIMIT_DRAM_READ, stream_isa, counts[i]);
        add_limit(LIMIT_COPY, stream_isa, counts[i]);
    }
}
