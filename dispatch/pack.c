/*
 * pack.c: mk_pack_weights / mk_packed_weights_free / mk_packed_weights_bytes (the layout is described in pack.h),
 * and the blocking parameters of the fast GEMM (defaults from the cache sizes, overridable by a tuner).
 *
 * Packing is a pure permutation (plus zero padding), so the packed bytes do not depend on the thread count or on the
 * ISA. It runs over (group, 4-panel) units split across the pool threads.
 */
#include "pack.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- packing ------------------------------------------------------------------------------------------------- */

/* Panel p of group g: columns [32 p, 32 p + 32) of W[g]. The copy walks 16 k steps at a time so that each source
 * row contributes one cache line per block and each destination step is written whole. */
void mki_pack_panels_generic(mk_packed_weights *pk, const void *w, int64_t g, int64_t p0, int64_t p1) {
    const int64_t n = pk->n, k = pk->k, ks = pk->k_steps, NR = MKI_PACK_NR;
    for (int64_t p = p0; p < p1; p++) {
        const int64_t c0 = p * NR;
        const int64_t cols = n - c0 < NR ? n - c0 : NR;
        if (pk->dtype == MK_F32) {
            const float *src = (const float *)w + (g * n + c0) * k;
            float *dst = (float *)pk->data + g * pk->group_elems + p * pk->panel_elems;
            for (int64_t s0 = 0; s0 < ks; s0 += 16) {
                const int64_t s1 = s0 + 16 < ks ? s0 + 16 : ks;
                for (int64_t j = 0; j < NR; j++) {
                    if (j < cols) {
                        const float *row = src + j * k;
                        for (int64_t s = s0; s < s1; s++) dst[s * NR + j] = row[s];
                    } else {
                        for (int64_t s = s0; s < s1; s++) dst[s * NR + j] = 0.0f;
                    }
                }
            }
        } else {
            const uint16_t *src = (const uint16_t *)w + (g * n + c0) * k;
            uint32_t *dst = (uint32_t *)((uint16_t *)pk->data + g * pk->group_elems + p * pk->panel_elems);
            for (int64_t s0 = 0; s0 < ks; s0 += 16) {
                const int64_t s1 = s0 + 16 < ks ? s0 + 16 : ks;
                for (int64_t j = 0; j < NR; j++) {
                    if (j < cols) {
                        const uint16_t *row = src + j * k;
                        for (int64_t s = s0; s < s1; s++) {
                            const uint32_t lo = row[2 * s];
                            const uint32_t hi = 2 * s + 1 < k ? row[2 * s + 1] : 0u;
                            dst[s * NR + j] = lo | hi << 16;
                        }
                    } else {
                        for (int64_t s = s0; s < s1; s++) dst[s * NR + j] = 0u;
                    }
                }
            }
        }
    }
}

typedef struct pack_job {
    mk_packed_weights *pk;
    const void *w;
    int64_t units_per_group, n_units;
} pack_job;

enum { PANELS_PER_UNIT = 4 };

static void pack_task(void *ctx, int tid, int n_threads) {
    const pack_job *j = (const pack_job *)ctx;
    int64_t u0, u1;
    mki_split_range(j->n_units, n_threads, tid, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
        const int64_t g = u / j->units_per_group, q = u % j->units_per_group;
        const int64_t p0 = q * PANELS_PER_UNIT;
        const int64_t p1 = p0 + PANELS_PER_UNIT < j->pk->n_panels ? p0 + PANELS_PER_UNIT : j->pk->n_panels;
        mki_pack_panels_generic(j->pk, j->w, g, p0, p1);
    }
}

MOEKIT_API mk_status mk_pack_weights(const void *w, mk_dtype dtype, int64_t n_groups, int64_t n, int64_t k,
                                     mk_pack_mode mode, mk_packed_weights **packed) {
    const char *fn = "mk_pack_weights";
    mki_clear_error();
    if (!packed) return mki_error(MK_EINVAL, "%s: packed = NULL", fn);
    if (!w) return mki_error(MK_EINVAL, "%s: w = NULL", fn);
    if (dtype != MK_F32 && dtype != MK_BF16)
        return mki_error(MK_EINVAL, "%s: dtype = %d is not MK_F32 or MK_BF16", fn, (int)dtype);
    if (n_groups < 1) return mki_error(MK_EINVAL, "%s: n_groups = %lld must be >= 1", fn, (long long)n_groups);
    if (n < 1) return mki_error(MK_EINVAL, "%s: n = %lld must be >= 1", fn, (long long)n);
    if (k < 1) return mki_error(MK_EINVAL, "%s: k = %lld must be >= 1", fn, (long long)k);
    if (mode != MK_PACK_DEFAULT && mode != MK_PACK_BF16_WIDEN)
        return mki_error(MK_EINVAL, "%s: mode = %d is not MK_PACK_DEFAULT or MK_PACK_BF16_WIDEN", fn, (int)mode);

    const int64_t NR = MKI_PACK_NR;
    const int64_t k_steps = dtype == MK_BF16 ? (k + 1) / 2 : k;
    const int64_t n_panels = (n + NR - 1) / NR;
    const int64_t per_step = dtype == MK_BF16 ? 2 * NR : NR; /* storage elements per k step of a panel */
    int64_t panel_elems, group_elems, total;
    size_t bytes;
    if (n > INT64_MAX - NR || __builtin_mul_overflow(k_steps, per_step, &panel_elems) ||
        __builtin_mul_overflow(panel_elems, n_panels, &group_elems) ||
        __builtin_mul_overflow(group_elems, n_groups, &total) ||
        __builtin_mul_overflow((size_t)total, mk_dtype_size(dtype), &bytes) || bytes > (size_t)INT64_MAX / 2)
        return mki_error(MK_EINVAL, "%s: w of [%lld, %lld, %lld] overflows", fn, (long long)n_groups, (long long)n,
                         (long long)k);

    mk_packed_weights *pk = calloc(1, sizeof *pk);
    void *data = NULL;
    if (!pk || posix_memalign(&data, MKI_PACK_ALIGN, bytes ? bytes : MKI_PACK_ALIGN) != 0) {
        free(pk);
        return mki_error(MK_ENOMEM, "%s: cannot allocate %zu bytes for the packed weights", fn, bytes);
    }
    pk->magic = MKI_PACK_MAGIC;
    pk->version = MKI_PACK_VERSION;
    pk->dtype = dtype;
    pk->mode = dtype == MK_BF16 ? mode : MK_PACK_DEFAULT;
    pk->n_groups = n_groups;
    pk->n = n;
    pk->k = k;
    pk->nr = NR;
    pk->k_steps = k_steps;
    pk->n_panels = n_panels;
    pk->panel_elems = panel_elems;
    pk->group_elems = group_elems;
    pk->data = data;
    pk->data_bytes = bytes;

    pack_job job;
    job.pk = pk;
    job.w = w;
    job.units_per_group = (n_panels + PANELS_PER_UNIT - 1) / PANELS_PER_UNIT;
    job.n_units = job.units_per_group * n_groups;
    /* Small tensors are packed on the calling thread; large ones (model load) on every pool thread. */
    int threads = bytes >= ((size_t)4 << 20) ? mk_get_num_threads() : 1;
    if (threads > job.n_units) threads = (int)job.n_units;
    if (threads > 1)
        mki_parallel(threads, pack_task, &job);
    else
        pack_task(&job, 0, 1);
    *packed = pk;
    return MK_OK;
}

MOEKIT_API void mk_packed_weights_free(mk_packed_weights *packed) {
    if (!packed) return;
    packed->magic = 0; /* a use after free then fails validation instead of reading freed weights (best effort) */
    free(packed->data);
    free(packed);
}

MOEKIT_API size_t mk_packed_weights_bytes(const mk_packed_weights *packed) {
    if (!packed) return 0;
    return sizeof *packed + packed->data_bytes;
}

/* ---- blocking ------------------------------------------------------------------------------------------------- */

static pthread_mutex_t g_blk_mutex = PTHREAD_MUTEX_INITIALIZER;
static int g_blk_set[MK_ISA_COUNT];
static mki_gemm_blocking g_blk[MK_ISA_COUNT];

void mki_gemm_default_blocking(mk_isa isa, mki_gemm_blocking *b) {
    const mk_cpu_info *ci = mki_cpu_info();
    int64_t l2 = ci->l2_bytes > 0 ? ci->l2_bytes : (int64_t)1 << 20;
    int64_t l1 = ci->l1d_bytes > 0 ? ci->l1d_bytes : (int64_t)32 << 10;
    memset(b, 0, sizeof *b);
    if (isa == MK_ISA_AVX512) {
        /* 14 x 32: 28 zmm accumulators + 2 weight vectors, the activation broadcast from memory */
        b->mr_f32 = 14;
        b->mr_dot = 14;
        b->mr_widen = 12;
    } else {
        /* 6 x 16 on AVX2: 12 ymm accumulators + 2 weight vectors + 1 broadcast */
        b->mr_f32 = 6;
        b->mr_dot = 6;
        b->mr_widen = 5; /* 10 accumulators: the widening needs 4 more registers than FP32 */
    }
    /* BLIS-style: a panel's k block of weights (KC x 32 words) in half of L1, the activation block it multiplies
     * (MC rows x KC) in half of L2, partial sums of the unit's panels next to it. */
    b->kc_bytes = l1 / 2;
    b->mc_bytes = l2 / 2;
    b->nb_panels = 4;
    b->prefetch_bytes = 8192;
    b->max_threads = 0;
    b->min_flops_per_thread = (int64_t)4 << 20;
}

static void clamp_blocking(mk_isa isa, mki_gemm_blocking *b) {
    const int mr_max = isa == MK_ISA_AVX512 ? 14 : 6;
#define CLAMP_MR(f) b->f = b->f < 1 ? 1 : b->f > mr_max ? mr_max : b->f
    CLAMP_MR(mr_f32);
    CLAMP_MR(mr_dot);
    CLAMP_MR(mr_widen);
#undef CLAMP_MR
    if (b->kc_bytes < 2048) b->kc_bytes = 2048;
    if (b->mc_bytes < 4096) b->mc_bytes = 4096;
    if (b->nb_panels < 1) b->nb_panels = 1;
    if (b->prefetch_bytes < 0) b->prefetch_bytes = 0;
    if (b->prefetch_bytes > 65536) b->prefetch_bytes = 65536;
    if (b->max_threads < 0) b->max_threads = 0;
    if (b->min_flops_per_thread < 0) b->min_flops_per_thread = 0;
}

void mki_gemm_get_blocking(mk_isa isa, mki_gemm_blocking *b) {
    int i = (int)isa >= 0 && (int)isa < MK_ISA_COUNT ? (int)isa : 0;
    pthread_mutex_lock(&g_blk_mutex);
    int set = g_blk_set[i];
    if (set) *b = g_blk[i];
    pthread_mutex_unlock(&g_blk_mutex);
    if (!set) mki_gemm_default_blocking(isa, b);
}

void mki_gemm_set_blocking(mk_isa isa, const mki_gemm_blocking *b) {
    int i = (int)isa >= 0 && (int)isa < MK_ISA_COUNT ? (int)isa : 0;
    mki_gemm_blocking v;
    if (b) {
        v = *b;
        clamp_blocking(isa, &v);
    }
    pthread_mutex_lock(&g_blk_mutex);
    g_blk_set[i] = b != NULL;
    if (b) g_blk[i] = v;
    pthread_mutex_unlock(&g_blk_mutex);
}
