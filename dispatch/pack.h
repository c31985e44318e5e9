/*
 * pack.h: the packed expert-weight format of mk_pack_weights (dispatch/pack.c), its element accessor (used by the
 * reference kernels), and the blocking parameters of the fast grouped GEMM / fused FFN (kernels/simd/gemm.inc).
 *
 * ---- Packed layout (format version 1) ---------------------------------------------------------------------------
 * A weight tensor W[n_groups][n][k] (row i of W[g] = output column i of the GEMM, k values long) is stored as
 * panels of MKI_PACK_NR = 32 consecutive output columns. Panel p of group g holds columns [32 p, 32 p + 32) over
 * the whole reduction length, column-interleaved so that one k step of the panel is contiguous:
 *
 *   F32  storage: k_steps = k.            step s of a panel = 32 floats   W[g][32 p + j][s]            (j = 0..31)
 *   BF16 storage: k_steps = ceil(k / 2).  step s of a panel = 32 pairs    W[g][32 p + j][2 s], W[g][32 p + j][2 s + 1]
 *                                          (one 32-bit word per column, low half = even k: the VNNI pair layout that
 *                                          vdpbf16ps multiplies against a broadcast activation pair)
 *
 *   element offset (in storage elements) of W[g][i][c], with p = i / 32, j = i % 32:
 *     F32:  g * group_elems + p * panel_elems + c * 32 + j
 *     BF16: g * group_elems + p * panel_elems + (c / 2) * 64 + 2 j + (c % 2)
 *   panel_elems = k_steps * 32 (F32) or k_steps * 64 (BF16), group_elems = n_panels * panel_elems.
 *
 * Padding (columns n..32*n_panels-1 of the last panel, and the odd half of the last BF16 pair when k is odd) is
 * zero. Groups and panels follow each other without gaps, so one group's weights are one contiguous stream, and
 * the data starts on a 64-byte boundary. The format does not depend on the ISA that packed it: every ISA reads it
 * (AVX-512 one 32-column panel per micro-kernel, AVX2 two 16-column halves), and the reference reads single
 * elements through mki_packed_get.
 *
 * The mode is a property of the handle: MK_PACK_DEFAULT with BF16 storage computes with vdpbf16ps (activations
 * rounded to BF16) where the CPU has AVX512_BF16, MK_PACK_BF16_WIDEN (and every CPU without AVX512_BF16) widens the
 * weights to F32 in the micro-kernel and keeps the activations exact. F32 storage ignores the mode (it is recorded
 * as MK_PACK_DEFAULT).
 */
#ifndef MOEKIT_PACK_H
#define MOEKIT_PACK_H

#include "internal.h"

#define MKI_PACK_MAGIC 0x4b50484bu /* "KHPK" */
#define MKI_PACK_VERSION 1u
#define MKI_PACK_NR 32             /* output columns per panel */
#define MKI_PACK_ALIGN 64

struct mk_packed_weights {
    uint32_t magic;          /* MKI_PACK_MAGIC while the handle is alive */
    uint32_t version;        /* MKI_PACK_VERSION */
    mk_dtype dtype;          /* storage: MK_F32 or MK_BF16 */
    mk_pack_mode mode;       /* MK_PACK_DEFAULT or MK_PACK_BF16_WIDEN (BF16 only) */
    int64_t n_groups, n, k;  /* the logical tensor [n_groups][n][k] */
    int64_t nr;              /* MKI_PACK_NR */
    int64_t k_steps;         /* k (F32) or ceil(k / 2) (BF16) */
    int64_t n_panels;        /* ceil(n / nr) */
    int64_t panel_elems;     /* storage elements per panel */
    int64_t group_elems;     /* storage elements per group */
    void *data;              /* MKI_PACK_ALIGN-aligned */
    size_t data_bytes;       /* bytes of data */
};

/* Storage element offset of W[g][i][c] (see the layout above). */
static inline int64_t mki_packed_offset(const mk_packed_weights *p, int64_t g, int64_t i, int64_t c) {
    const int64_t panel = i / MKI_PACK_NR, j = i % MKI_PACK_NR;
    const int64_t base = g * p->group_elems + panel * p->panel_elems;
    if (p->dtype == MK_BF16) return base + (c / 2) * (2 * MKI_PACK_NR) + 2 * j + (c % 2);
    return base + c * MKI_PACK_NR + j;
}

/* W[g][i][c] as float (BF16 widened exactly). */
static inline float mki_packed_get(const mk_packed_weights *p, int64_t g, int64_t i, int64_t c) {
    const int64_t off = mki_packed_offset(p, g, i, c);
    if (p->dtype == MK_BF16) return mki_bf16_to_f32(((const uint16_t *)p->data)[off]);
    return ((const float *)p->data)[off];
}

/* A weight operand as the kernels see it: a packed handle, or raw [n_groups][n][k] data of one dtype. */
typedef struct mki_weights {
    const mk_packed_weights *packed; /* used when not NULL */
    const void *raw;
    mk_dtype dtype;                  /* dtype of raw */
} mki_weights;

static inline mki_weights mki_weights_of(const void *raw, mk_dtype dtype, const mk_packed_weights *packed) {
    mki_weights w;
    w.packed = packed;
    w.raw = raw;
    w.dtype = packed ? packed->dtype : dtype;
    return w;
}

/* W[g][i][c] of a [groups][n][k] operand, as float. */
static inline float mki_weights_get(const mki_weights *w, int64_t n, int64_t k, int64_t g, int64_t i, int64_t c) {
    if (w->packed) return mki_packed_get(w->packed, g, i, c);
    const int64_t off = (g * n + i) * k + c;
    if (w->dtype == MK_BF16) return mki_bf16_to_f32(((const uint16_t *)w->raw)[off]);
    return ((const float *)w->raw)[off];
}

/* 1 when p looks like a live handle of this format. */
static inline int mki_packed_valid(const mk_packed_weights *p) {
    return p && p->magic == MKI_PACK_MAGIC && p->version == MKI_PACK_VERSION;
}

/* Packs panels [p0, p1) of group g of raw W [n_groups][n][k] (dtype of the handle) into the handle (generic C;
 * used by mk_pack_weights). */
MKI_HIDDEN void mki_pack_panels_generic(mk_packed_weights *p, const void *w, int64_t g, int64_t p0, int64_t p1);

/* ---- blocking of the fast GEMM (kernels/simd/gemm.inc) ---------------------------------------------------------
 * One place for every tunable: the autotuner fills one of these and installs it with mki_gemm_set_blocking; the
 * kernels read mki_gemm_get_blocking(isa) at every call. None of these parameters changes any result: each output
 * element is always accumulated by one thread in increasing k order (partial sums between k blocks are stored and
 * reloaded exactly), whatever the tile shape, k block or thread split. */
typedef struct mki_gemm_blocking {
    int mr_f32;        /* micro-kernel rows, FP32 weights (<= 14 on AVX-512, <= 6 on AVX2) */
    int mr_dot;        /* micro-kernel rows, BF16 weights with vdpbf16ps (AVX-512 only) */
    int mr_widen;      /* micro-kernel rows, BF16 weights widened to FP32 */
    int64_t kc_bytes;  /* KC: bytes of one panel's k block of weights (128 bytes per k step), kept in L1 while every
                          row tile of a row block passes over it (raw weights are repacked into such a block) */
    int64_t mc_bytes;  /* MC: bytes of packed activations (row block x KC) kept in L2 while the unit's panels pass */
    int nb_panels;     /* NC: panels (32 columns each) per work unit handed to a thread */
    int prefetch_bytes; /* software prefetch distance (into L1) ahead of a streamed weight panel (0 = none) */
    int max_threads;   /* 0 = mk_get_num_threads() */
    int64_t min_flops_per_thread; /* below this much work per extra thread, fewer threads are used */
} mki_gemm_blocking;

/* The default for an ISA, derived from the cache sizes of mki_cpu_info(). */
MKI_HIDDEN void mki_gemm_default_blocking(mk_isa isa, mki_gemm_blocking *b);
/* The blocking the kernels of isa use now (the default unless a tuner installed one). Thread-safe. */
MKI_HIDDEN void mki_gemm_get_blocking(mk_isa isa, mki_gemm_blocking *b);
/* Installs b for isa (NULL restores the default); the values are clamped to what the kernels support. */
MKI_HIDDEN void mki_gemm_set_blocking(mk_isa isa, const mki_gemm_blocking *b);

#endif /* MOEKIT_PACK_H */
