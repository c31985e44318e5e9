/*
 * vec.h: the per-ISA vector layer (SLEEF-style helper header). Kernels in kernels/simd/<group>.inc are written once
 * against these names and compiled once per ISA from kernels/<isa>/<group>.c, whose -m flags select the block below.
 * Only static inline functions here: nothing compiled with AVX-512 flags may be shared with a generic unit.
 *
 *   MKV_W                 lanes of mkv_f (16 on AVX-512, 8 on AVX2)
 *   MKI_FN(name)          mki_<name>_<isa>, the exported (hidden) name of a kernel compiled in this unit
 *   mkv_load/_n, mkv_store/_n          f32 full vector / first n lanes (n < MKV_W; other lanes read as 0)
 *   mkv_load_bf16/_n, mkv_store_bf16/_n  bf16 <-> f32 (store rounds to nearest even, NaN stays NaN)
 *   mkv_exp               SLEEF expf, 1.0 ulp
 */
#ifndef MOEKIT_SIMD_VEC_H
#define MOEKIT_SIMD_VEC_H

#include "internal.h"

#include <immintrin.h>
#include <sleef.h>
#include <stdint.h>
#include <string.h>

#define MKI_CAT2(a, b) a##b
#define MKI_CAT(a, b) MKI_CAT2(a, b)

#if defined(__AVX512F__)
/* ======================================================================================== AVX-512 (F/BW/VL/DQ) */
#define MKI_ISA_SUFFIX avx512
#define MKI_ISA_NAME "avx512"
#define MKV_W 16
typedef __m512 mkv_f;

static inline __mmask16 mkv_mask(int n) { return (__mmask16)((1u << n) - 1u); }
static inline mkv_f mkv_load(const float *p) { return _mm512_loadu_ps(p); }
static inline mkv_f mkv_load_n(const float *p, int n) { return _mm512_maskz_loadu_ps(mkv_mask(n), p); }
static inline void mkv_store(float *p, mkv_f v) { _mm512_storeu_ps(p, v); }
static inline void mkv_store_n(float *p, mkv_f v, int n) { _mm512_mask_storeu_ps(p, mkv_mask(n), v); }
static inline mkv_f mkv_zero(void) { return _mm512_setzero_ps(); }
static inline mkv_f mkv_set1(float x) { return _mm512_set1_ps(x); }
static inline mkv_f mkv_add(mkv_f a, mkv_f b) { return _mm512_add_ps(a, b); }
static inline mkv_f mkv_sub(mkv_f a, mkv_f b) { return _mm512_sub_ps(a, b); }
static inline mkv_f mkv_mul(mkv_f a, mkv_f b) { return _mm512_mul_ps(a, b); }
static inline mkv_f mkv_div(mkv_f a, mkv_f b) { return _mm512_div_ps(a, b); }
static inline mkv_f mkv_max(mkv_f a, mkv_f b) { return _mm512_max_ps(a, b); }
static inline mkv_f mkv_fmadd(mkv_f a, mkv_f b, mkv_f c) { return _mm512_fmadd_ps(a, b, c); }  /* a*b + c */
static inline mkv_f mkv_fnmadd(mkv_f a, mkv_f b, mkv_f c) { return _mm512_fnmadd_ps(a, b, c); } /* c - a*b */
static inline float mkv_reduce_add(mkv_f v) { return _mm512_reduce_add_ps(v); }
static inline float mkv_reduce_max(mkv_f v) { return _mm512_reduce_max_ps(v); }
static inline mkv_f mkv_exp(mkv_f v) { return Sleef_expf16_u10avx512f(v); }

static inline mkv_f mkv_widen_bf16(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
static inline mkv_f mkv_load_bf16(const uint16_t *p) { return mkv_widen_bf16(_mm256_loadu_si256((const void *)p)); }
static inline mkv_f mkv_load_bf16_n(const uint16_t *p, int n) {
    return mkv_widen_bf16(_mm256_maskz_loadu_epi16(mkv_mask(n), p));
}
/* Integer round-to-nearest-even, so it matches mki_f32_to_bf16 bit for bit and needs no AVX512_BF16. */
static inline __m256i mkv_narrow_bf16(mkv_f v) {
    __m512i u = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff))), 16);
    __m512i quiet = _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40));
    __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                            _mm512_set1_epi32(0x7f800000));
    return _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(rounded, nan, quiet));
}
static inline void mkv_store_bf16(uint16_t *p, mkv_f v) { _mm256_storeu_si256((void *)p, mkv_narrow_bf16(v)); }
static inline void mkv_store_bf16_n(uint16_t *p, mkv_f v, int n) {
    _mm256_mask_storeu_epi16(p, mkv_mask(n), mkv_narrow_bf16(v));
}

#elif defined(__AVX2__) && defined(__FMA__)
/* ======================================================================================== AVX2 + FMA */
#define MKI_ISA_SUFFIX avx2
#define MKI_ISA_NAME "avx2"
#define MKV_W 8
typedef __m256 mkv_f;

static inline __m256i mkv_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline mkv_f mkv_load(const float *p) { return _mm256_loadu_ps(p); }
static inline mkv_f mkv_load_n(const float *p, int n) { return _mm256_maskload_ps(p, mkv_mask(n)); }
static inline void mkv_store(float *p, mkv_f v) { _mm256_storeu_ps(p, v); }
static inline void mkv_store_n(float *p, mkv_f v, int n) { _mm256_maskstore_ps(p, mkv_mask(n), v); }
static inline mkv_f mkv_zero(void) { return _mm256_setzero_ps(); }
static inline mkv_f mkv_set1(float x) { return _mm256_set1_ps(x); }
static inline mkv_f mkv_add(mkv_f a, mkv_f b) { return _mm256_add_ps(a, b); }
static inline mkv_f mkv_sub(mkv_f a, mkv_f b) { return _mm256_sub_ps(a, b); }
static inline mkv_f mkv_mul(mkv_f a, mkv_f b) { return _mm256_mul_ps(a, b); }
static inline mkv_f mkv_div(mkv_f a, mkv_f b) { return _mm256_div_ps(a, b); }
static inline mkv_f mkv_max(mkv_f a, mkv_f b) { return _mm256_max_ps(a, b); }
static inline mkv_f mkv_fmadd(mkv_f a, mkv_f b, mkv_f c) { return _mm256_fmadd_ps(a, b, c); }
static inline mkv_f mkv_fnmadd(mkv_f a, mkv_f b, mkv_f c) { return _mm256_fnmadd_ps(a, b, c); }
static inline float mkv_reduce_add(mkv_f v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float mkv_reduce_max(mkv_f v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline mkv_f mkv_exp(mkv_f v) { return Sleef_expf8_u10avx2(v); }

static inline mkv_f mkv_widen_bf16(__m128i h) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
static inline mkv_f mkv_load_bf16(const uint16_t *p) { return mkv_widen_bf16(_mm_loadu_si128((const void *)p)); }
static inline mkv_f mkv_load_bf16_n(const uint16_t *p, int n) {
    uint16_t tmp[8] = {0};
    memcpy(tmp, p, (size_t)n * sizeof *p);
    return mkv_load_bf16(tmp);
}
static inline __m128i mkv_narrow_bf16(mkv_f v) {
    __m256i u = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff))), 16);
    __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    /* |u| > 0x7f800000 as signed compare is safe: the masked value is non-negative */
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)), _mm256_set1_epi32(0x7f800000));
    __m256i r = _mm256_blendv_epi8(rounded, quiet, nan);
    __m256i packed = _mm256_packus_epi32(r, r); /* per 128-bit lane: r0..3 r0..3 | r4..7 r4..7 */
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(packed, 0x08));
}
static inline void mkv_store_bf16(uint16_t *p, mkv_f v) { _mm_storeu_si128((void *)p, mkv_narrow_bf16(v)); }
static inline void mkv_store_bf16_n(uint16_t *p, mkv_f v, int n) {
    uint16_t tmp[8];
    _mm_storeu_si128((void *)tmp, mkv_narrow_bf16(v));
    memcpy(p, tmp, (size_t)n * sizeof *p);
}

#else
#error "kernels/simd/vec.h needs -mavx512f... (kernels/avx512) or -mavx2 -mfma (kernels/avx2)"
#endif

#define MKI_FN(name) MKI_CAT(MKI_CAT(mki_, name), MKI_CAT(_, MKI_ISA_SUFFIX))

/* Common derived helpers (same text for every ISA). */
static inline mkv_f mkv_sigmoid(mkv_f v) { /* 1 / (1 + e^-v); e^-v = inf for v < -88 gives 0, as it should */
    return mkv_div(mkv_set1(1.0f), mkv_add(mkv_set1(1.0f), mkv_exp(mkv_sub(mkv_zero(), v))));
}
static inline mkv_f mkv_silu(mkv_f v) { return mkv_mul(v, mkv_sigmoid(v)); }

/* ---- RoPE rotation: the one definition used by kernels/simd/rope.inc (mk_rope) and norm.inc (mk_knorm_rope) ----
 * (a, b) -> (a c - b s, b c + a s), with c, s the cos and sin of the pair's angle (rows of mk_rope_cache's tables).
 *   interleaved: v holds MKV_W / 2 pairs (a, b) in adjacent lanes; cc, ss = mkv_rope_expand(table row + first pair)
 *                put each pair's cos / sin in both of its lanes. n_pairs < MKV_W / 2 reads only n_pairs entries
 *                (the other lanes get 0).
 *   neox:        a, b hold the first and second elements of MKV_W pairs; c, s their cos and sin, loaded as is. */
#if defined(__AVX512F__)
static inline mkv_f mkv_rope_expand(const float *table, int n_pairs) {
    __m256 t = n_pairs >= 8 ? _mm256_loadu_ps(table) : _mm256_maskz_loadu_ps((__mmask8)((1u << n_pairs) - 1u), table);
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7),
                                 _mm512_castps256_ps512(t));
}
static inline mkv_f mkv_rope_rotate_pairs(mkv_f v, mkv_f cc, mkv_f ss) {
    /* fmaddsub: even lanes v*cc - swap(v)*ss, odd lanes v*cc + swap(v)*ss */
    return _mm512_fmaddsub_ps(v, cc, _mm512_mul_ps(_mm512_permute_ps(v, 0xb1), ss));
}
#else
static inline mkv_f mkv_rope_expand(const float *table, int n_pairs) {
    __m128 t = n_pairs >= 4 ? _mm_loadu_ps(table)
                            : _mm_maskload_ps(table, _mm_cmpgt_epi32(_mm_set1_epi32(n_pairs), _mm_setr_epi32(0, 1, 2, 3)));
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(t), _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3));
}
static inline mkv_f mkv_rope_rotate_pairs(mkv_f v, mkv_f cc, mkv_f ss) {
    return _mm256_fmaddsub_ps(v, cc, _mm256_mul_ps(_mm256_permute_ps(v, 0xb1), ss));
}
#endif
static inline void mkv_rope_rotate_halves(mkv_f *a, mkv_f *b, mkv_f c, mkv_f s) {
    const mkv_f a0 = *a, b0 = *b;
    *a = mkv_fnmadd(b0, s, mkv_mul(a0, c)); /* a c - b s */
    *b = mkv_fmadd(a0, s, mkv_mul(b0, c));  /* b c + a s */
}

/* ---- streaming (non-temporal) stores, for outputs too large to stay in cache -------------------------------------
 * mkv_stream needs p aligned to a whole vector; mkv_stream_head(p, n) = how many floats (<= n) to store normally
 * before p + that is aligned. Stores are weakly ordered: end every range that used them with mkv_stream_fence(). */
#if defined(__AVX512F__)
static inline void mkv_stream(float *p, mkv_f v) { _mm512_stream_ps(p, v); }
#else
static inline void mkv_stream(float *p, mkv_f v) { _mm256_stream_ps(p, v); }
#endif
static inline int64_t mkv_stream_head(const float *p, int64_t n) {
    const int64_t head = (int64_t)((0u - (uintptr_t)p) % (MKV_W * sizeof(float))) / (int64_t)sizeof(float);
    return head < n ? head : n;
}
static inline void mkv_stream_fence(void) { _mm_sfence(); }

/* ---- row splitting for the memory-bound row kernels (norms, rope, swiglu) --------------------------------------
 * mki_rows_run(n_items, bytes_per_item, fn, ctx) calls fn(ctx, begin, end) over [0, n_items): on the calling thread
 * alone when the call moves less than MKI_ROWS_PAR_MIN_BYTES, else split into contiguous ranges over up to
 * mk_get_num_threads() threads (each getting at least half that much). Every item is computed by one thread with
 * the same code, so results never depend on the thread count.
 * Threshold, measured on the 2-vCPU Zen 5 VM: a parallel call costs 0.1-2 us when the pool's workers are spinning
 * but ~10 us when the other vCPU is busy (the worker must be scheduled), and below ~2 MB (rmsnorm T <= 64 x 4608,
 * knorm_rope T <= 256, rope on q T <= 64) two threads were never faster than one. 4 MB (~50-100 us on one core)
 * keeps that cost under ~10 %; every openPangu prefill shape (T = 2048) is far above it, decode (T = 1) far below. */
#define MKI_ROWS_PAR_MIN_BYTES ((int64_t)4 << 20)
typedef void (*mki_rows_fn)(const void *ctx, int64_t begin, int64_t end);
typedef struct mki_rows_job {
    mki_rows_fn fn;
    const void *ctx;
    int64_t n_items;
} mki_rows_job;
static inline void mki_rows_task(void *job, int tid, int n_threads) {
    const mki_rows_job *j = (const mki_rows_job *)job;
    int64_t begin, end;
    mki_split_range(j->n_items, n_threads, tid, &begin, &end);
    if (begin < end) j->fn(j->ctx, begin, end);
}
static inline void mki_rows_run(int64_t n_items, int64_t bytes_per_item, mki_rows_fn fn, const void *ctx) {
    int64_t n = 1;
    if (n_items > 1 && bytes_per_item > 0 && n_items <= INT64_MAX / bytes_per_item &&
        n_items * bytes_per_item >= MKI_ROWS_PAR_MIN_BYTES) {
        n = mk_get_num_threads();
        if (n > n_items) n = n_items;
        const int64_t by_work = n_items * bytes_per_item / (MKI_ROWS_PAR_MIN_BYTES / 2);
        if (n > by_work) n = by_work;
    }
    if (n <= 1) {
        fn(ctx, 0, n_items);
        return;
    }
    mki_rows_job job = {fn, ctx, n_items};
    mki_parallel((int)n, mki_rows_task, &job);
}

/* 1 when a call that touches total_bytes (inputs + outputs) should write its output with streaming stores: when it
 * does not fit in the last-level cache, the output cannot stay cached for its consumer anyway, and streaming saves
 * the read-for-ownership of every output line (measured on Zen 5: rmsnorm 2048 x 4608 goes from 18 to 25 GB/s). */
static inline int mki_rows_stream(int64_t total_bytes) {
    int64_t llc = mki_cpu_info()->l3_bytes;
    if (llc <= 0) llc = (int64_t)32 << 20;
    return total_bytes > llc;
}

#endif /* MOEKIT_SIMD_VEC_H */
