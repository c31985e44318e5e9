/*
 * table.c: the kernel tables (one per ISA), ISA detection and the cap, introspection names, verbose output.
 *
 * Tables (BLIS-style contexts). The ref table holds the kernels of kernels/ref. Every other ISA starts from ref
 * (its init function calls mki_table_init_ref), overrides the slots it implements, and any slot it leaves at "ref"
 * then inherits the kernel of the next lower ISA (avx512 gets the avx2 kernels it does not replace). Adding an ISA
 * kernel set is one line in build_tables() below plus its kernels/<isa>/ directory; the Makefile defines
 * MOEKIT_HAVE_<ISA> when that directory has sources. Without kernels, an ISA's table is its parent's, renamed.
 *
 * Selection: selected = min(detected, cap). The cap comes from mk_set_max_isa() once it has been called, else
 * from MOEKIT_MAX_ISA, else none. The tables are built once (pthread_once) and never change; the selected table
 * is an atomic pointer, so mki_table() is one load on the hot path and mk_set_max_isa() is thread-safe (calls in
 * flight finish on the table they loaded).
 */
#include "internal.h"
#include "ref/ref.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#ifdef MOEKIT_HAVE_AVX2
extern void mki_table_init_avx2(mki_kernel_table *t); /* kernels/avx2/ */
#endif
#ifdef MOEKIT_HAVE_AVX512
extern void mki_table_init_avx512(mki_kernel_table *t); /* kernels/avx512/ */
#endif

static const char *const g_isa_names[MK_ISA_COUNT] = {"ref", "avx2", "avx512"};
static const char *const g_op_names[MK_OP_COUNT] = {
    "grouped_gemm", "moe_ffn", "swiglu", "moe_gate", "rope", "rmsnorm", "rmsnorm_add", "knorm", "knorm_rope",
    "sink_attention",
};

/* ---- names ------------------------------------------------------------------------------------------------------ */
const char *mk_isa_name(mk_isa isa) {
    return ((int)isa >= 0 && (int)isa < MK_ISA_COUNT) ? g_isa_names[isa] : "?";
}

mk_status mk_isa_from_name(const char *name, mk_isa *isa) {
    mki_clear_error();
    if (name == NULL) return mki_error(MK_EINVAL, "mk_isa_from_name: name = NULL (expected ref, avx2 or avx512)");
    if (isa == NULL) return mki_error(MK_EINVAL, "mk_isa_from_name: isa = NULL (expected a pointer to an mk_isa)");
    for (int i = 0; i < MK_ISA_COUNT; i++) {
        if (strcasecmp(name, g_isa_names[i]) == 0) {
            *isa = (mk_isa)i;
            return MK_OK;
        }
    }
    return mki_error(MK_EINVAL, "mk_isa_from_name: name = \"%.64s\" is not one of ref, avx2, avx512", name);
}

const char *mk_op_name(mk_op op) {
    return ((int)op >= 0 && (int)op < MK_OP_COUNT) ? g_op_names[op] : "?";
}

/* ---- the tables ------------------------------------------------------------------------------------------------- */
void mki_table_init_ref(mki_kernel_table *t) {
    memset(t, 0, sizeof *t);
    t->name = "ref";
    t->isa = MK_ISA_REF;
    for (int op = 0; op < MK_OP_COUNT; op++) t->impl[op] = "ref";
    t->grouped_gemm = mki_ref_grouped_gemm;
    t->moe_ffn = mki_ref_moe_ffn;
    t->swiglu = mki_ref_swiglu;
    t->moe_gate = mki_ref_moe_gate;
    t->rope = mki_ref_rope;
    t->rmsnorm = mki_ref_rmsnorm;
    t->rmsnorm_add = mki_ref_rmsnorm_add;
    t->knorm = mki_ref_knorm;
    t->knorm_rope = mki_ref_knorm_rope;
    t->sink_attention = mki_ref_sink_attention;
}

/* Copies the kernel of one op (pointer and impl name) from src to dst. */
static void copy_slot(mki_kernel_table *dst, const mki_kernel_table *src, int op) {
    switch ((mk_op)op) {
    case MK_OP_GROUPED_GEMM: dst->grouped_gemm = src->grouped_gemm; break;
    case MK_OP_MOE_FFN: dst->moe_ffn = src->moe_ffn; break;
    case MK_OP_SWIGLU: dst->swiglu = src->swiglu; break;
    case MK_OP_MOE_GATE: dst->moe_gate = src->moe_gate; break;
    case MK_OP_ROPE: dst->rope = src->rope; break;
    case MK_OP_RMSNORM: dst->rmsnorm = src->rmsnorm; break;
    case MK_OP_RMSNORM_ADD: dst->rmsnorm_add = src->rmsnorm_add; break;
    case MK_OP_KNORM: dst->knorm = src->knorm; break;
    case MK_OP_KNORM_ROPE: dst->knorm_rope = src->knorm_rope; break;
    case MK_OP_SINK_ATTENTION: dst->sink_attention = src->sink_attention; break;
    case MK_OP_COUNT: return;
    }
    dst->impl[op] = src->impl[op];
}

static int slot_is_null(const mki_kernel_table *t, int op) {
    switch ((mk_op)op) {
    case MK_OP_GROUPED_GEMM: return t->grouped_gemm == NULL;
    case MK_OP_MOE_FFN: return t->moe_ffn == NULL;
    case MK_OP_SWIGLU: return t->swiglu == NULL;
    case MK_OP_MOE_GATE: return t->moe_gate == NULL;
    case MK_OP_ROPE: return t->rope == NULL;
    case MK_OP_RMSNORM: return t->rmsnorm == NULL;
    case MK_OP_RMSNORM_ADD: return t->rmsnorm_add == NULL;
    case MK_OP_KNORM: return t->knorm == NULL;
    case MK_OP_KNORM_ROPE: return t->knorm_rope == NULL;
    case MK_OP_SINK_ATTENTION: return t->sink_attention == NULL;
    case MK_OP_COUNT: break;
    }
    return 0;
}

/* After an ISA's init: name it, and let every slot it did not implement (still ref, or left NULL) inherit the
 * parent's kernel. */
static void finish_table(mki_kernel_table *t, mk_isa isa, const mki_kernel_table *parent) {
    t->name = g_isa_names[isa];
    t->isa = isa;
    for (int op = 0; op < MK_OP_COUNT; op++)
        if (slot_is_null(t, op) || t->impl[op] == NULL || strcmp(t->impl[op], "ref") == 0) copy_slot(t, parent, op);
}

static mki_kernel_table g_tables[MK_ISA_COUNT];
static int g_runnable[MK_ISA_COUNT]; /* this build and this CPU can run the table */
static mk_isa g_detected = MK_ISA_REF;

/* ---- the cap ----------------------------------------------------------------------------------------------------- */
enum { CAP_NONE = 0, CAP_ENV = 1, CAP_API = 2 };
static _Atomic(const mki_kernel_table *) g_selected; /* NULL until the first resolve */
static atomic_int g_cap_source = CAP_NONE;
static atomic_int g_cap_isa = MK_ISA_COUNT;           /* the requested cap (may exceed the hardware) */
static pthread_mutex_t g_cap_mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_tables_once = PTHREAD_ONCE_INIT;

static mk_isa detect_isa(const mk_cpu_info *c) {
#if defined(__x86_64__)
    int avx2 = c->avx2 && c->fma;
    int avx512 = avx2 && c->avx512f && c->avx512bw && c->avx512vl && c->avx512dq;
    return avx512 ? MK_ISA_AVX512 : avx2 ? MK_ISA_AVX2 : MK_ISA_REF;
#else
    (void)c;
    return MK_ISA_REF;
#endif
}

static void build_tables(void) {
    g_detected = detect_isa(mki_cpu_info());
    for (int i = 0; i < MK_ISA_COUNT; i++) g_runnable[i] = i <= (int)g_detected;

    mki_table_init_ref(&g_tables[MK_ISA_REF]);

    mki_kernel_table *t = &g_tables[MK_ISA_AVX2];
    /* An ISA's init is compiled with that ISA's flags: calling it on a CPU without the ISA could fault. */
#ifdef MOEKIT_HAVE_AVX2
    if (g_runnable[MK_ISA_AVX2])
        mki_table_init_avx2(t);
    else
#endif
        mki_table_init_ref(t);
    finish_table(t, MK_ISA_AVX2, &g_tables[MK_ISA_REF]);

    t = &g_tables[MK_ISA_AVX512];
#ifdef MOEKIT_HAVE_AVX512
    if (g_runnable[MK_ISA_AVX512])
        mki_table_init_avx512(t);
    else
#endif
        mki_table_init_ref(t);
    finish_table(t, MK_ISA_AVX512, &g_tables[MK_ISA_AVX2]);

    /* The cap from the environment, unless mk_set_max_isa() already set one. */
    pthread_mutex_lock(&g_cap_mutex);
    if (atomic_load(&g_cap_source) == CAP_NONE) {
        const char *env = mki_getenv("MOEKIT_MAX_ISA");
        if (env != NULL) {
            int found = -1;
            for (int i = 0; i < MK_ISA_COUNT; i++)
                if (strcasecmp(env, g_isa_names[i]) == 0) found = i;
            if (found >= 0) {
                atomic_store(&g_cap_isa, found);
                atomic_store(&g_cap_source, CAP_ENV);
            } else {
                fprintf(stderr, "moekit: MOEKIT_MAX_ISA=%s is not one of ref, avx2, avx512; ignored\n", env);
            }
        }
    }
    int cap = atomic_load(&g_cap_isa);
    int sel = cap < (int)g_detected ? cap : (int)g_detected;
    atomic_store(&g_selected, &g_tables[sel]);
    pthread_mutex_unlock(&g_cap_mutex);
}

static const mki_kernel_table *resolve_slow(void) {
    pthread_once(&g_tables_once, build_tables);
    return atomic_load(&g_selected);
}

const mki_kernel_table *mki_table(void) {
    const mki_kernel_table *t = atomic_load_explicit(&g_selected, memory_order_acquire);
    return t != NULL ? t : resolve_slow();
}

const mki_kernel_table *mki_table_for(mk_isa isa) {
    if ((int)isa < 0 || (int)isa >= MK_ISA_COUNT) return NULL;
    pthread_once(&g_tables_once, build_tables);
    return g_runnable[isa] ? &g_tables[isa] : NULL;
}

mk_isa mk_detected_isa(void) {
    pthread_once(&g_tables_once, build_tables);
    return g_detected;
}

mk_isa mk_selected_isa(void) { return mki_table()->isa; }

mk_status mk_set_max_isa(mk_isa isa) {
    mki_clear_error();
    if ((int)isa < 0 || (int)isa >= MK_ISA_COUNT)
        return mki_error(MK_EINVAL, "mk_set_max_isa: isa = %d is not a valid mk_isa (0 = ref, 1 = avx2, 2 = avx512)",
                         (int)isa);
    pthread_once(&g_tables_once, build_tables);
    pthread_mutex_lock(&g_cap_mutex);
    atomic_store(&g_cap_isa, (int)isa);
    atomic_store(&g_cap_source, CAP_API);
    int sel = (int)isa < (int)g_detected ? (int)isa : (int)g_detected; /* clamped to the hardware, not an error */
    atomic_store(&g_selected, &g_tables[sel]);
    pthread_mutex_unlock(&g_cap_mutex);
    return MK_OK;
}

const char *mk_kernel_name(mk_op op) {
    if ((int)op < 0 || (int)op >= MK_OP_COUNT) return "?";
    return mki_table()->impl[op];
}

/* ---- verbose ------------------------------------------------------------------------------------------------------ */
uint64_t mki_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static atomic_int g_verbose = -1; /* -1 = not read yet */

int mki_verbose_level(void) {
    int v = atomic_load_explicit(&g_verbose, memory_order_relaxed);
    if (v >= 0) return v;
    const char *s = mki_getenv("MOEKIT_VERBOSE");
    v = 0;
    if (s != NULL) {
        /* 0, 1, 2 (larger values mean 2); anything else is off */
        if (s[0] >= '0' && s[0] <= '9' && s[1] == '\0') v = s[0] - '0';
        else if (s[0] >= '1' && s[0] <= '9') v = 2;
        if (v > 2) v = 2;
    }
    atomic_store_explicit(&g_verbose, v, memory_order_relaxed); /* racing readers compute the same value */
    return v;
}

/* One write per line, so lines from several threads never interleave. */
static void emit(const char *line) {
    fputs(line, stderr);
    fflush(stderr);
}

static void fmt_size(char *buf, size_t cap, int64_t bytes) {
    if (bytes > 0 && bytes % (1 << 20) == 0) snprintf(buf, cap, "%lldM", (long long)(bytes >> 20));
    else if (bytes > 0 && bytes % 1024 == 0) snprintf(buf, cap, "%lldK", (long long)(bytes >> 10));
    else snprintf(buf, cap, "%lld", (long long)bytes);
}

static atomic_int g_info_printed;
static atomic_int g_dispatch_printed[MK_ISA_COUNT][MK_OP_COUNT];

static void print_info_line(void) {
    const mk_cpu_info *c = mki_cpu_info();
    char cap[32], l1[24], l2[24], l3[24], line[512];
    int src = atomic_load(&g_cap_source);
    if (src == CAP_NONE) snprintf(cap, sizeof cap, "none");
    else snprintf(cap, sizeof cap, "%s:%s", src == CAP_API ? "api" : "env", mk_isa_name((mk_isa)atomic_load(&g_cap_isa)));
    fmt_size(l1, sizeof l1, c->l1d_bytes);
    fmt_size(l2, sizeof l2, c->l2_bytes);
    fmt_size(l3, sizeof l3, c->l3_bytes);
    snprintf(line, sizeof line,
             "moekit_verbose,info,%d.%d.%d,detected=%s,selected=%s,cap=%s,cores=%d,threads=%d,l1d=%s,l2=%s,l3=%s\n",
             MOEKIT_VERSION_MAJOR, MOEKIT_VERSION_MINOR, MOEKIT_VERSION_PATCH, mk_isa_name(mk_detected_isa()),
             mk_isa_name(mk_selected_isa()), cap, c->n_cores, mk_get_num_threads(), l1, l2, l3);
    emit(line);
}

uint64_t mki_verbose_enter(mk_op op, const mki_kernel_table *t) {
    int level = mki_verbose_level();
    if (level < 1) return 0;
    if (!atomic_load_explicit(&g_info_printed, memory_order_relaxed) && !atomic_exchange(&g_info_printed, 1))
        print_info_line();
    if (t != NULL && (int)op >= 0 && (int)op < MK_OP_COUNT && (int)t->isa >= 0 && (int)t->isa < MK_ISA_COUNT) {
        atomic_int *flag = &g_dispatch_printed[t->isa][op];
        if (!atomic_load_explicit(flag, memory_order_relaxed) && !atomic_exchange(flag, 1)) {
            char line[256];
            snprintf(line, sizeof line, "moekit_verbose,dispatch,%s,isa=%s,impl=%s\n", mk_op_name(op), t->name,
                     t->impl[op]);
            emit(line);
        }
    }
    if (level < 2) return 0;
    uint64_t now = mki_now_ns();
    return now != 0 ? now : 1;
}

void mki_verbose_exit(mk_op op, const mki_kernel_table *t, uint64_t start_ns, const char *shape_fmt, ...) {
    if (start_ns == 0 || mki_verbose_level() < 2) return;
    double ms = (double)(mki_now_ns() - start_ns) / 1e6;
    char shape[256] = "";
    if (shape_fmt != NULL) {
        va_list ap;
        va_start(ap, shape_fmt);
        vsnprintf(shape, sizeof shape, shape_fmt, ap);
        va_end(ap);
    }
    const char *impl = (t != NULL && (int)op >= 0 && (int)op < MK_OP_COUNT) ? t->impl[op] : "?";
    char line[512];
    snprintf(line, sizeof line, "moekit_verbose,exec,%s,%s,%s,%.4f\n", mk_op_name(op), impl, shape, ms);
    emit(line);
}
