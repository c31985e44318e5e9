/*
 * internal.h: the contract between the public entry points (dispatch/api.c), the dispatcher (dispatch/), and the
 * kernels (kernels/<isa>/). Never installed. Every symbol here is hidden (-fvisibility=hidden) and prefixed mki_.
 *
 * Flow of a call: mk_rope() in api.c -> mki_check_rope() validates and normalises the arguments (strides of 0
 * resolved, NULL-able pointers decided) -> mki_table() returns the kernel table of the selected ISA -> the table
 * slot (e.g. mki_ref_rope) runs on arguments it can trust.
 */
#ifndef MOEKIT_INTERNAL_H
#define MOEKIT_INTERNAL_H

#include "moekit.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define MKI_HIDDEN __attribute__((visibility("hidden")))

/* ---- errors ---------------------------------------------------------------------------------------------- */
/* Records "fmt..." as this thread's mk_last_error() and returns status. Use as: return mki_error(MK_EINVAL,
 * "mk_rope: rotary_dim = %lld must be even", (long long)d); */
MKI_HIDDEN mk_status mki_error(mk_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Clears this thread's message (called at the start of every public entry point). */
MKI_HIDDEN void mki_clear_error(void);

/* ---- bf16 helpers (header-only so kernels inline them) ----------------------------------------------------- */
static inline float mki_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)h << 16;
    return v.f;
}

static inline uint16_t mki_f32_to_bf16(float f) {
    union { uint32_t u; float f; } v;
    v.f = f;
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40u); /* quiet NaN stays NaN */
    uint32_t rounding = 0x7fffu + ((v.u >> 16) & 1u); /* round to nearest even */
    return (uint16_t)((v.u + rounding) >> 16);
}

/* Element (t, h, i) of a normalised mk_heads view (strides already resolved), read as float. */
static inline float mki_heads_get(const mk_heads *v, int64_t t, int64_t h, int64_t i) {
    int64_t off = t * v->token_stride + h * v->head_stride + i;
    if (v->dtype == MK_BF16) return mki_bf16_to_f32(((const uint16_t *)v->data)[off]);
    return ((const float *)v->data)[off];
}

static inline void mki_heads_set(const mk_heads *v, int64_t t, int64_t h, int64_t i, float x) {
    int64_t off = t * v->token_stride + h * v->head_stride + i;
    if (v->dtype == MK_BF16)
        ((uint16_t *)v->data)[off] = mki_f32_to_bf16(x);
    else
        ((float *)v->data)[off] = x;
}

/* ---- RoPE cache ------------------------------------------------------------------------------------------- */
struct mk_rope_cache {
    mk_rope_config config;
    int64_t n_pairs;  /* rotary_dim / 2 */
    float *cos_table; /* [max_positions][n_pairs], from a double-precision angle */
    float *sin_table; /* [max_positions][n_pairs] */
};

/* ---- kernel table (BLIS-style context: ref first, then an ISA overrides slot by slot) --------------------- */
/* Every slot receives arguments that mki_check_* has validated and normalised: strides are never 0, optional
 * pointers are NULL or valid, sizes are consistent, row/token counts may be 0. A slot returns MK_OK, or
 * MK_ENOMEM if it needed workspace it could not get (it then reports through mki_error). */
typedef struct mki_kernel_table {
    const char *name; /* "ref", "avx2", "avx512" */
    mk_isa isa;
    const char *impl[MK_OP_COUNT]; /* name of the kernel in each slot (the ISA that provided it) */

    mk_status (*grouped_gemm)(const mk_grouped_gemm_args *a);
    mk_status (*moe_ffn)(const mk_moe_ffn_args *a);
    mk_status (*swiglu)(const float *gate, int64_t gate_stride, const float *up, int64_t up_stride, float *out,
                        int64_t out_stride, int64_t n_rows, int64_t dim);
    mk_status (*moe_gate)(const mk_moe_gate_args *a);
    mk_status (*rope)(const mk_rope_cache *cache, const int32_t *positions, const mk_heads *q, const mk_heads *k);
    mk_status (*rmsnorm)(const float *x, int64_t x_stride, const float *weight, float eps, int64_t n_rows,
                         int64_t dim, float *out, int64_t out_stride);
    mk_status (*rmsnorm_add)(float *residual, int64_t residual_stride, const float *branch, int64_t branch_stride,
                             const float *weight, float eps, int64_t n_rows, int64_t dim);
    mk_status (*knorm)(const mk_heads *k, const float *weight, float eps);
    mk_status (*knorm_rope)(const mk_heads *k, const float *weight, float eps, const mk_rope_cache *cache,
                            const int32_t *positions, const mk_heads *k_out);
    mk_status (*sink_attention)(const mk_attn_args *a);
} mki_kernel_table;

/* Fills every slot with the reference kernels (kernels/ref). Later ISAs call this first, then override. */
MKI_HIDDEN void mki_table_init_ref(mki_kernel_table *t);

/* The table of the selected ISA, resolved once per (cap) change; never NULL. Thread-safe. */
MKI_HIDDEN const mki_kernel_table *mki_table(void);
/* The table for exactly this ISA, or NULL if this build or this CPU cannot run it. */
MKI_HIDDEN const mki_kernel_table *mki_table_for(mk_isa isa);
/* Called by each entry point with the table it is about to use: prints the MOEKIT_VERBOSE=1 dispatch line the
 * first time an op is resolved on a table. Returns a start timestamp (ns) when MOEKIT_VERBOSE >= 2, else 0. */
MKI_HIDDEN uint64_t mki_verbose_enter(mk_op op, const mki_kernel_table *t);
/* MOEKIT_VERBOSE >= 2: prints the per-call exec line with the time since start and a shape description. */
MKI_HIDDEN void mki_verbose_exit(mk_op op, const mki_kernel_table *t, uint64_t start_ns, const char *shape_fmt,
                                 ...) __attribute__((format(printf, 4, 5)));
MKI_HIDDEN int mki_verbose_level(void);
MKI_HIDDEN uint64_t mki_now_ns(void);

/* ---- CPU features and topology ---------------------------------------------------------------------------- */
/* cpuid + xgetbv on x86 (getauxval on aarch64); fills the feature fields of info. */
MKI_HIDDEN void mki_cpu_detect_features(mk_cpu_info *info);
/* hwloc (loaded once, read-only afterwards); fills the topology fields, with fallbacks. */
MKI_HIDDEN void mki_topology_fill(mk_cpu_info *info);
/* The cached full description (features + topology), computed once. */
MKI_HIDDEN const mk_cpu_info *mki_cpu_info(void);
/* Binds the calling thread to physical core `core` (modulo available cores). Returns 0 on success, -1 if binding
 * is unsupported or failed (never fatal). */
MKI_HIDDEN int mki_bind_current_thread(int core);

/* ---- thread pool ------------------------------------------------------------------------------------------ */
/* Runs fn(ctx, tid, n_threads) for tid = 0 .. n_threads-1 and returns when all have finished. tid 0 runs on the
 * calling thread; the others on persistent pool workers. If the pool is busy (another thread of the application
 * is inside mki_parallel, or this is a nested call), every tid runs in turn on the calling thread, so results
 * never depend on which happened. n_threads is clamped to [1, mk_get_num_threads()]. */
typedef void (*mki_parallel_fn)(void *ctx, int tid, int n_threads);
MKI_HIDDEN void mki_parallel(int n_threads, mki_parallel_fn fn, void *ctx);

/* Splits [0, n) into n_parts near-equal contiguous ranges; part p gets [*begin, *end). */
static inline void mki_split_range(int64_t n, int n_parts, int part, int64_t *begin, int64_t *end) {
    int64_t base = n / n_parts, extra = n % n_parts;
    *begin = part * base + (part < extra ? part : extra);
    *end = *begin + base + (part < extra ? 1 : 0);
}

/* ---- environment ------------------------------------------------------------------------------------------ */
/* getenv(), with an empty value read as unset (NULL). Callers that sit on hot paths cache the result. */
MKI_HIDDEN const char *mki_getenv(const char *name);

/* ---- argument validation (dispatch/validate.c): one place, used by every backend ---------------------------- */
/* Each returns MK_OK and writes a normalised copy (strides resolved), or an error naming the argument. `fn` is the
 * public function name used in messages. */
MKI_HIDDEN mk_status mki_check_grouped_gemm(const mk_grouped_gemm_args *in, mk_grouped_gemm_args *out);
MKI_HIDDEN mk_status mki_check_moe_ffn(const mk_moe_ffn_args *in, mk_moe_ffn_args *out);
MKI_HIDDEN mk_status mki_check_moe_gate(const mk_moe_gate_args *in, mk_moe_gate_args *out);
/* n_rows rows of dim floats at *stride apart (0 = dim, resolved in place); rows_name/dim_name are the caller's
 * argument names, used in messages. */
MKI_HIDDEN mk_status mki_check_rows(const char *fn, const char *name, const float *p, const char *rows_name,
                                    int64_t n_rows, const char *dim_name, int64_t dim, int64_t *stride);
MKI_HIDDEN mk_status mki_check_heads(const char *fn, const char *name, const mk_heads *in, mk_heads *out,
                                     int allow_bf16);
MKI_HIDDEN mk_status mki_check_attn(const mk_attn_args *in, mk_attn_args *out);
/* Two row sets (same n_rows x dim, strides resolved) must be disjoint, or (allow_same) exactly the same rows. */
MKI_HIDDEN mk_status mki_check_rows_alias(const char *fn, const char *a_name, const float *a, int64_t a_stride,
                                          const char *b_name, const float *b, int64_t b_stride, int64_t n_rows,
                                          int64_t dim, int allow_same);
/* b must have a's shape and be either exactly a's view (same data, dtype, strides) or disjoint from it. */
MKI_HIDDEN mk_status mki_check_heads_alias(const char *fn, const char *a_name, const mk_heads *a,
                                           const char *b_name, const mk_heads *b);
/* RoPE arguments shared by mk_rope and mk_knorm_rope: cache, positions in range, rotated slice inside head_dim. */
MKI_HIDDEN mk_status mki_check_rope_use(const char *fn, const mk_rope_cache *cache, const int32_t *positions,
                                        int64_t n_tokens, int64_t head_dim);

#endif /* MOEKIT_INTERNAL_H */
