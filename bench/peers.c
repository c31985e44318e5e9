/*
 * peers.c: the peer libraries of the GEMM benchmarks, loaded with dlopen at run time so that one binary builds and
 * runs everywhere: a peer that is not installed is skipped with a message, never a failure.
 *  - OpenBLAS (libopenblas.so.0): cblas_sgemm per expert; cblas_sbgemm too when the build has it (Debian 0.3.21
 *    does not). Its core type is chosen when the library loads (OPENBLAS_CORETYPE), so the SkylakeX variant is a
 *    second invocation of this program with that variable set; the impl is then named "openblas-<coretype>".
 *  - oneDNN (libdnnl.so.3 / .so.2): dnnl_sgemm and dnnl_gemm_bf16bf16f32, its row-major matmul entry points, whose
 *    C signatures are the same in 2.x and 3.x (no header needed). The BF16 one takes BF16 activations.
 * Only plain prototypes are declared here; the enum values are CBLAS's fixed ABI values.
 */
#include "bench.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- OpenBLAS ---- */
enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };
typedef void (*cblas_sgemm_t)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                              float *, int);
typedef void (*cblas_sbgemm_t)(int, int, int, int, int, int, float, const uint16_t *, int, const uint16_t *, int,
                               float, float *, int);
static cblas_sgemm_t p_cblas_sgemm;
static cblas_sbgemm_t p_cblas_sbgemm;
static void (*p_openblas_set_num_threads)(int);

static void openblas_f32(int64_t m, int64_t n, int64_t k, const float *x, const float *w, float *y) {
    p_cblas_sgemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS, (int)m, (int)n, (int)k, 1.0f, x, (int)k, w, (int)k,
                  0.0f, y, (int)n);
}

static void openblas_bf16(int64_t m, int64_t n, int64_t k, const uint16_t *x, const uint16_t *w, float *y) {
    p_cblas_sbgemm(CBLAS_ROW_MAJOR, CBLAS_NO_TRANS, CBLAS_TRANS, (int)m, (int)n, (int)k, 1.0f, x, (int)k, w, (int)k,
                   0.0f, y, (int)n);
}

static void openblas_threads(int n) {
    if (p_openblas_set_num_threads) p_openblas_set_num_threads(n);
}

const mkb_peer *mkb_peer_openblas(const char **why) {
    static mkb_peer peer;
    static int tried;
    static const char *reason;
    if (!tried) {
        tried = 1;
        const char *coretype = getenv("OPENBLAS_CORETYPE");
        /* a forced AVX-512 core on a CPU without it would die of SIGILL inside the first call */
        int needs512 = coretype && (strcasestr(coretype, "skylakex") || strcasestr(coretype, "cooperlake") ||
                                    strcasestr(coretype, "sapphire"));
        if (needs512 && mkb_cfg.detected < MK_ISA_AVX512) {
            reason = "OPENBLAS_CORETYPE names an AVX-512 core and this CPU has no AVX-512";
            if (why) *why = reason;
            return NULL;
        }
        void *h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
        if (!h) h = dlopen("libopenblas.so", RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            reason = "OpenBLAS not found (libopenblas.so.0; Debian: libopenblas-dev)";
        } else if (!(p_cblas_sgemm = (cblas_sgemm_t)dlsym(h, "cblas_sgemm"))) {
            reason = "libopenblas has no cblas_sgemm";
        } else {
            p_cblas_sbgemm = (cblas_sbgemm_t)dlsym(h, "cblas_sbgemm");
            p_openblas_set_num_threads = (void (*)(int))dlsym(h, "openblas_set_num_threads");
            char *(*corename)(void) = (char *(*)(void))dlsym(h, "openblas_get_corename");
            static char impl[64];
            if (coretype && *coretype)
                snprintf(impl, sizeof impl, "openblas-%s", coretype);
            else
                snprintf(impl, sizeof impl, "openblas");
            peer.impl = impl;
            snprintf(peer.label, sizeof peer.label, "core:%s", corename ? corename() : "?");
            peer.gemm_f32 = openblas_f32;
            peer.gemm_bf16 = p_cblas_sbgemm ? openblas_bf16 : NULL;
            peer.set_threads = openblas_threads;
        }
    }
    if (reason) {
        if (why) *why = reason;
        return NULL;
    }
    return &peer;
}

/* ---- oneDNN ---- */
typedef int (*dnnl_sgemm_t)(char, char, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *,
                            int64_t, float, float *, int64_t);
typedef int (*dnnl_gemm_bf16_t)(char, char, int64_t, int64_t, int64_t, float, const uint16_t *, int64_t,
                                const uint16_t *, int64_t, float, float *, int64_t);
typedef struct dnnl_version_prefix { int major, minor, patch; } dnnl_version_prefix;
static dnnl_sgemm_t p_dnnl_sgemm;
static dnnl_gemm_bf16_t p_dnnl_gemm_bf16;
static void (*p_omp_set_num_threads)(int);

static void onednn_f32(int64_t m, int64_t n, int64_t k, const float *x, const float *w, float *y) {
    p_dnnl_sgemm('N', 'T', m, n, k, 1.0f, x, k, w, k, 0.0f, y, n);
}

static void onednn_bf16(int64_t m, int64_t n, int64_t k, const uint16_t *x, const uint16_t *w, float *y) {
    p_dnnl_gemm_bf16('N', 'T', m, n, k, 1.0f, x, k, w, k, 0.0f, y, n);
}

static void onednn_threads(int n) {
    if (p_omp_set_num_threads) p_omp_set_num_threads(n); /* Debian's libdnnl uses OpenMP */
}

const mkb_peer *mkb_peer_onednn(const char **why) {
    static mkb_peer peer;
    static int tried;
    static const char *reason;
    if (!tried) {
        tried = 1;
        void *h = dlopen("libdnnl.so.3", RTLD_NOW | RTLD_LOCAL);
        if (!h) h = dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            reason = "oneDNN not found (libdnnl.so.3/.2; Debian: libdnnl-dev)";
        } else if (!(p_dnnl_sgemm = (dnnl_sgemm_t)dlsym(h, "dnnl_sgemm"))) {
            reason = "libdnnl has no dnnl_sgemm";
        } else {
            p_dnnl_gemm_bf16 = (dnnl_gemm_bf16_t)dlsym(h, "dnnl_gemm_bf16bf16f32");
            p_omp_set_num_threads = (void (*)(int))dlsym(h, "omp_set_num_threads");
            const dnnl_version_prefix *(*version)(void) = (const dnnl_version_prefix *(*)(void))dlsym(h, "dnnl_version");
            const dnnl_version_prefix *v = version ? version() : NULL;
            peer.impl = "onednn";
            if (v)
                snprintf(peer.label, sizeof peer.label, "onednn %d.%d.%d", v->major, v->minor, v->patch);
            else
                snprintf(peer.label, sizeof peer.label, "onednn");
            peer.gemm_f32 = onednn_f32;
            peer.gemm_bf16 = p_dnnl_gemm_bf16 ? onednn_bf16 : NULL;
            peer.set_threads = onednn_threads;
        }
    }
    if (reason) {
        if (why) *why = reason;
        return NULL;
    }
    return &peer;
}
