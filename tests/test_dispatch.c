/*
 * test_dispatch.c: the runtime dispatcher: ISA names, detection, the cap (mk_set_max_isa and MOEKIT_MAX_ISA),
 * kernel names, the CPU description and its fallbacks, the cgroup quota parser, the thread count, the thread pool
 * (mki_parallel: every tid exactly once, concurrent callers, nested calls), mki_split_range, verbose output.
 *
 * Old-style Criterion assertions only. Every Criterion test runs in its own forked process, so a test may set an
 * environment variable at its start, before its first moekit call, and the library reads it fresh.
 */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "moekit.h"

/* Hidden helpers of dispatch/topo.c (not part of internal.h). */
int mki_parse_cpu_max(const char *text);
int mki_cgroup_quota_cpus(const char *cgroup_root, const char *self_cgroup_path);

/* Each test starts from a clean environment (the runner's MOEKIT_* must not change the expectations); tests that
 * need a variable set it in their body, which runs after this. */
static void clean_env(void) {
    unsetenv("MOEKIT_MAX_ISA");
    unsetenv("MOEKIT_NUM_THREADS");
    unsetenv("MOEKIT_BIND");
    unsetenv("MOEKIT_VERBOSE");
}

TestSuite(dispatch, .init = clean_env);

static mk_isa min_isa(mk_isa a, mk_isa b) { return a < b ? a : b; }

/* The ISA the feature bits allow, computed independently of the library's own rule. */
static mk_isa isa_from_features(const mk_cpu_info *c) {
    if (c->avx2 && c->fma && c->avx512f && c->avx512bw && c->avx512vl && c->avx512dq) return MK_ISA_AVX512;
    if (c->avx2 && c->fma) return MK_ISA_AVX2;
    return MK_ISA_REF;
}

/* ---- stderr capture (fd level, so that it also sees writes that bypass stdio) ---------------------------------- */
typedef struct capture {
    FILE *file;
    int saved_fd;
} capture;

static void capture_begin(capture *c) {
    fflush(stderr);
    c->file = tmpfile();
    cr_assert_not_null(c->file);
    c->saved_fd = dup(2);
    cr_assert(c->saved_fd >= 0);
    cr_assert(dup2(fileno(c->file), 2) >= 0);
}

/* Restores stderr and returns what was written (malloc'ed, NUL-terminated). */
static char *capture_end(capture *c) {
    fflush(stderr);
    dup2(c->saved_fd, 2);
    close(c->saved_fd);
    fseek(c->file, 0, SEEK_END);
    long n = ftell(c->file);
    if (n < 0) n = 0;
    rewind(c->file);
    char *buf = calloc((size_t)n + 1, 1);
    cr_assert_not_null(buf);
    size_t got = fread(buf, 1, (size_t)n, c->file);
    buf[got] = '\0';
    fclose(c->file);
    return buf;
}

static int count_substr(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle)) n++;
    return n;
}

/* ---- names -------------------------------------------------------------------------------------------------------- */
Test(dispatch, isa_name_round_trip) {
    for (int i = 0; i < MK_ISA_COUNT; i++) {
        mk_isa got = (mk_isa)-1;
        const char *name = mk_isa_name((mk_isa)i);
        cr_assert_str_neq(name, "?");
        cr_assert_eq(mk_isa_from_name(name, &got), MK_OK, "%s", name);
        cr_assert_eq(got, (mk_isa)i, "%s -> %d", name, (int)got);
        cr_assert_str_empty(mk_last_error());
    }
    cr_expect_str_eq(mk_isa_name(MK_ISA_REF), "ref");
    cr_expect_str_eq(mk_isa_name(MK_ISA_AVX2), "avx2");
    cr_expect_str_eq(mk_isa_name(MK_ISA_AVX512), "avx512");
    cr_expect_str_eq(mk_isa_name(MK_ISA_COUNT), "?");
    cr_expect_str_eq(mk_isa_name((mk_isa)-1), "?");

    mk_isa got = MK_ISA_REF;
    cr_expect_eq(mk_isa_from_name("AVX512", &got), MK_OK, "case-insensitive");
    cr_expect_eq(got, MK_ISA_AVX512);
    cr_expect_eq(mk_isa_from_name("Avx2", &got), MK_OK);
    cr_expect_eq(got, MK_ISA_AVX2);
}

Test(dispatch, isa_from_name_rejects) {
    mk_isa got = MK_ISA_AVX2;
    cr_assert_eq(mk_isa_from_name("sse9", &got), MK_EINVAL);
    cr_expect_eq(got, MK_ISA_AVX2, "output written on failure");
    cr_expect(strstr(mk_last_error(), "sse9") != NULL, "message: '%s'", mk_last_error());
    cr_assert_eq(mk_isa_from_name(NULL, &got), MK_EINVAL);
    cr_expect(strstr(mk_last_error(), "name") != NULL, "message: '%s'", mk_last_error());
    cr_assert_eq(mk_isa_from_name("ref", NULL), MK_EINVAL);
    cr_assert_eq(mk_isa_from_name("", &got), MK_EINVAL);
    cr_assert_eq(mk_isa_from_name("avx5122", &got), MK_EINVAL);
    cr_expect_eq(got, MK_ISA_AVX2);
}

Test(dispatch, op_names) {
    for (int i = 0; i < MK_OP_COUNT; i++) {
        const char *n = mk_op_name((mk_op)i);
        cr_assert_not_null(n);
        cr_expect_str_neq(n, "?", "op %d", i);
        for (int j = 0; j < i; j++) cr_expect_str_neq(n, mk_op_name((mk_op)j), "ops %d and %d", i, j);
        cr_expect_str_neq(mk_kernel_name((mk_op)i), "?");
    }
    cr_expect_str_eq(mk_op_name(MK_OP_GROUPED_GEMM), "grouped_gemm");
    cr_expect_str_eq(mk_op_name(MK_OP_SINK_ATTENTION), "sink_attention");
    cr_expect_str_eq(mk_op_name(MK_OP_COUNT), "?");
    cr_expect_str_eq(mk_op_name((mk_op)-1), "?");
    cr_expect_str_eq(mk_kernel_name(MK_OP_COUNT), "?");
    cr_expect_str_eq(mk_kernel_name((mk_op)-1), "?");
}

/* ---- detection and tables ----------------------------------------------------------------------------------------- */
Test(dispatch, detected_matches_features) {
    mk_cpu_info info;
    cr_assert_eq(mk_get_cpu_info(&info), MK_OK);
    mk_isa det = mk_detected_isa();
    cr_assert_eq(det, isa_from_features(&info), "detected %s", mk_isa_name(det));
    /* AVX-512 sub-features imply the foundation; OS-gated features imply AVX. */
    if (info.avx512bw || info.avx512vl || info.avx512dq || info.avx512_bf16 || info.avx512_vnni)
        cr_expect(info.avx512f);
    if (info.avx2 || info.fma || info.avx512f) cr_expect(info.avx);
    /* Without a cap, the selected ISA is the detected one. */
    cr_expect_eq(mk_selected_isa(), det);
    for (int i = 0; i < MK_ISA_COUNT; i++) {
        const mki_kernel_table *t = mki_table_for((mk_isa)i);
        if (i > (int)det) {
            cr_expect_null(t, "table %d must not be runnable on a %s CPU", i, mk_isa_name(det));
            continue;
        }
        cr_assert_not_null(t, "table %s", mk_isa_name((mk_isa)i));
        cr_expect_eq(t->isa, (mk_isa)i);
        cr_expect_str_eq(t->name, mk_isa_name((mk_isa)i));
        cr_expect(t->grouped_gemm && t->moe_ffn && t->swiglu && t->moe_gate && t->rope && t->rmsnorm &&
                  t->rmsnorm_add && t->knorm && t->knorm_rope && t->sink_attention,
                  "table %s has an empty slot", t->name);
        for (int op = 0; op < MK_OP_COUNT; op++) cr_expect_not_null(t->impl[op]);
    }
    cr_expect_null(mki_table_for(MK_ISA_COUNT));
    cr_expect_null(mki_table_for((mk_isa)-1));
    const mki_kernel_table *ref = mki_table_for(MK_ISA_REF);
    for (int op = 0; op < MK_OP_COUNT; op++) cr_expect_str_eq(ref->impl[op], "ref");
}

Test(dispatch, cap_ref_selects_ref_everywhere) {
    cr_assert_eq(mk_set_max_isa(MK_ISA_REF), MK_OK);
    cr_assert_eq(mk_selected_isa(), MK_ISA_REF);
    cr_expect_str_eq(mki_table()->name, "ref");
    cr_expect_eq(mki_table(), mki_table_for(MK_ISA_REF));
    for (int op = 0; op < MK_OP_COUNT; op++)
        cr_expect_str_eq(mk_kernel_name((mk_op)op), "ref", "%s", mk_op_name((mk_op)op));
}

Test(dispatch, cap_above_hardware_clamps) {
    mk_isa det = mk_detected_isa();
    for (int i = MK_ISA_COUNT - 1; i >= 0; i--) {
        cr_assert_eq(mk_set_max_isa((mk_isa)i), MK_OK, "a cap above the hardware is not an error");
        cr_expect_eq(mk_selected_isa(), min_isa((mk_isa)i, det), "cap %s", mk_isa_name((mk_isa)i));
        cr_expect_eq(mki_table()->isa, mk_selected_isa());
    }
    cr_assert_eq(mk_set_max_isa(MK_ISA_AVX512), MK_OK);
    cr_expect_eq(mk_selected_isa(), det);
    cr_expect_eq(mk_detected_isa(), det, "the cap never changes detection");
}

Test(dispatch, set_max_isa_rejects_invalid) {
    mk_isa before = mk_selected_isa();
    cr_assert_eq(mk_set_max_isa((mk_isa)99), MK_EINVAL);
    cr_expect_str_not_empty(mk_last_error());
    cr_expect(strstr(mk_last_error(), "isa") != NULL, "message: '%s'", mk_last_error());
    cr_assert_eq(mk_set_max_isa((mk_isa)-1), MK_EINVAL);
    cr_assert_eq(mk_set_max_isa(MK_ISA_COUNT), MK_EINVAL);
    cr_expect_eq(mk_selected_isa(), before, "a rejected cap changes nothing");
    cr_assert_eq(mk_set_max_isa(MK_ISA_REF), MK_OK);
    cr_expect_str_empty(mk_last_error(), "success clears the message");
}

/* ---- MOEKIT_MAX_ISA ----------------------------------------------------------------------------------------------- */
Test(dispatch, env_cap_ref) {
    setenv("MOEKIT_MAX_ISA", "ref", 1);
    cr_expect_eq(mk_selected_isa(), MK_ISA_REF);
    for (int op = 0; op < MK_OP_COUNT; op++) cr_expect_str_eq(mk_kernel_name((mk_op)op), "ref");
    /* mk_set_max_isa takes precedence over the environment. */
    cr_assert_eq(mk_set_max_isa(MK_ISA_AVX512), MK_OK);
    cr_expect_eq(mk_selected_isa(), mk_detected_isa());
}

Test(dispatch, env_cap_is_case_insensitive) {
    setenv("MOEKIT_MAX_ISA", "AVX2", 1);
    cr_expect_eq(mk_selected_isa(), min_isa(MK_ISA_AVX2, mk_detected_isa()));
}

Test(dispatch, env_cap_set_before_first_use_then_api) {
    setenv("MOEKIT_MAX_ISA", "avx512", 1);
    cr_assert_eq(mk_set_max_isa(MK_ISA_REF), MK_OK); /* api first: still wins over the env var */
    cr_expect_eq(mk_selected_isa(), MK_ISA_REF);
}

Test(dispatch, env_cap_unknown_warns_and_is_ignored) {
    setenv("MOEKIT_MAX_ISA", "foo", 1);
    capture c;
    capture_begin(&c);
    mk_isa sel = mk_selected_isa();
    mk_isa sel2 = mk_selected_isa();
    char *err = capture_end(&c);
    cr_expect_eq(sel, mk_detected_isa());
    cr_expect_eq(sel2, sel);
    cr_expect(strstr(err, "moekit: MOEKIT_MAX_ISA=foo is not one of ref, avx2, avx512; ignored\n") != NULL,
              "stderr: '%s'", err);
    cr_expect_eq(count_substr(err, "MOEKIT_MAX_ISA"), 1, "warned once: '%s'", err);
    free(err);
}

/* ---- CPU description ---------------------------------------------------------------------------------------------- */
Test(dispatch, cpu_info_sanity) {
    mk_cpu_info info;
    memset(&info, 0xff, sizeof info);
    cr_assert_eq(mk_get_cpu_info(&info), MK_OK);
    cr_expect(info.n_cores >= 1, "n_cores = %d", info.n_cores);
    cr_expect(info.n_pus >= info.n_cores, "n_pus = %d, n_cores = %d", info.n_pus, info.n_cores);
    cr_expect(info.n_numa_nodes >= 1);
    cr_expect(info.l1d_bytes > 0);
    cr_expect(info.l2_bytes >= info.l1d_bytes, "l2 = %lld, l1d = %lld", (long long)info.l2_bytes,
              (long long)info.l1d_bytes);
    cr_expect(info.l3_bytes > 0);
    cr_expect(info.topology_from_hwloc == 0 || info.topology_from_hwloc == 1);
    cr_expect(memchr(info.vendor, '\0', sizeof info.vendor) != NULL, "vendor is terminated");
    cr_expect(memchr(info.brand, '\0', sizeof info.brand) != NULL, "brand is terminated");
    int flags[] = {info.sse42, info.avx, info.avx2, info.fma, info.f16c, info.avx512f, info.avx512bw, info.avx512vl,
                   info.avx512dq, info.avx512_bf16, info.avx512_vnni, info.avx_vnni, info.neon};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) cr_expect(flags[i] == 0 || flags[i] == 1);
#if defined(__x86_64__)
    cr_expect(info.vendor[0] != '\0');
    cr_expect(info.sse42, "every x86-64 CPU moekit targets has SSE4.2");
#endif
    /* the cached copy is stable */
    mk_cpu_info again;
    cr_assert_eq(mk_get_cpu_info(&again), MK_OK);
    cr_expect_eq(memcmp(&info, &again, sizeof info), 0);
    cr_expect_eq(memcmp(&info, mki_cpu_info(), sizeof info), 0);

    cr_assert_eq(mk_get_cpu_info(NULL), MK_EINVAL);
    cr_expect(strstr(mk_last_error(), "info") != NULL, "message: '%s'", mk_last_error());
}

/* hwloc reporting no cores and no caches must fall back, not crash. */
Test(dispatch, topology_fallbacks_without_cores_or_caches) {
    setenv("HWLOC_SYNTHETIC", "pack:1 pu:4", 1);
    const mk_cpu_info *c = mki_cpu_info();
    cr_expect(c->n_cores >= 1);
    cr_expect(c->n_pus >= c->n_cores);
    cr_expect(c->l1d_bytes > 0 && c->l2_bytes > 0 && c->l3_bytes > 0);
    cr_expect_eq(c->topology_from_hwloc, 0);
    int rc = mki_bind_current_thread(1);
    cr_expect(rc == 0 || rc == -1);
}

Test(dispatch, bind_is_never_fatal) {
    for (int core = -3; core < 5; core++) {
        int rc = mki_bind_current_thread(core);
        cr_expect(rc == 0 || rc == -1, "core %d: rc %d", core, rc);
    }
}

Test(dispatch, cgroup_cpu_max) {
    cr_expect_eq(mki_parse_cpu_max("max 100000\n"), 0);
    cr_expect_eq(mki_parse_cpu_max("200000 100000\n"), 2);
    cr_expect_eq(mki_parse_cpu_max("150000 100000"), 2, "rounded up");
    cr_expect_eq(mki_parse_cpu_max("50000 100000"), 1);
    cr_expect_eq(mki_parse_cpu_max("400000"), 4, "default period");
    cr_expect_eq(mki_parse_cpu_max(""), 0);
    cr_expect_eq(mki_parse_cpu_max("junk"), 0);
    cr_expect_eq(mki_parse_cpu_max("-5 100000"), 0);
    cr_expect_eq(mki_parse_cpu_max(NULL), 0);

    /* A fake cgroup2 tree: root (no limit) / a (3 CPUs) / a/b (1.5 -> 2 CPUs); the smallest limit wins. */
    char root[] = "/tmp/moekit-cgroup-XXXXXX";
    cr_assert_not_null(mkdtemp(root));
    char path[512];
    FILE *f;
    snprintf(path, sizeof path, "%s/a", root);
    cr_assert_eq(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/a/b", root);
    cr_assert_eq(mkdir(path, 0700), 0);
    const char *files[][2] = {{"cpu.max", "max 100000\n"}, {"a/cpu.max", "300000 100000\n"},
                              {"a/b/cpu.max", "150000 100000\n"}, {"self", "0::/a/b\n"}, {"self_root", "0::/\n"},
                              {"self_v1", "4:cpu,cpuacct:/x\n"}};
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "%s/%s", root, files[i][0]);
        cr_assert_not_null(f = fopen(path, "w"));
        fputs(files[i][1], f);
        fclose(f);
    }
    char self[512];
    snprintf(self, sizeof self, "%s/self", root);
    cr_expect_eq(mki_cgroup_quota_cpus(root, self), 2);
    snprintf(self, sizeof self, "%s/self_root", root);
    cr_expect_eq(mki_cgroup_quota_cpus(root, self), 0, "the root has no limit");
    snprintf(self, sizeof self, "%s/self_v1", root);
    cr_expect_eq(mki_cgroup_quota_cpus(root, self), 0, "no cgroup2 line: only the root is read");
    snprintf(self, sizeof self, "%s/missing", root);
    cr_expect_eq(mki_cgroup_quota_cpus(root, self), 0);
    /* A process in a/b but with a/b limited less than a: the ancestor's limit applies. */
    snprintf(path, sizeof path, "%s/a/b/cpu.max", root);
    cr_assert_not_null(f = fopen(path, "w"));
    fputs("max 100000\n", f);
    fclose(f);
    snprintf(self, sizeof self, "%s/self", root);
    cr_expect_eq(mki_cgroup_quota_cpus(root, self), 3);
    /* leave the tree behind only on failure; clean up otherwise */
    const char *rm[] = {"a/b/cpu.max", "a/cpu.max", "cpu.max", "self", "self_root", "self_v1"};
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "%s/%s", root, rm[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/a/b", root);
    rmdir(path);
    snprintf(path, sizeof path, "%s/a", root);
    rmdir(path);
    rmdir(root);
}

/* ---- thread count ----------------------------------------------------------------------------------------------- */
Test(dispatch, num_threads) {
    int def = mk_get_num_threads();
    cr_expect(def >= 1);
    cr_expect_eq(def, mki_cpu_info()->n_cores, "default = available physical cores");
    cr_assert_eq(mk_set_num_threads(0), MK_EINVAL);
    cr_expect(strstr(mk_last_error(), "n_threads") != NULL, "message: '%s'", mk_last_error());
    cr_assert_eq(mk_set_num_threads(-4), MK_EINVAL);
    cr_expect_eq(mk_get_num_threads(), def, "a rejected value changes nothing");
    cr_assert_eq(mk_set_num_threads(3), MK_OK);
    cr_expect_str_empty(mk_last_error());
    cr_expect_eq(mk_get_num_threads(), 3);
    cr_assert_eq(mk_set_num_threads(64), MK_OK, "oversubscription is allowed");
    cr_expect_eq(mk_get_num_threads(), 64);
}

Test(dispatch, num_threads_env) {
    setenv("MOEKIT_NUM_THREADS", "3", 1);
    cr_expect_eq(mk_get_num_threads(), 3);
    cr_assert_eq(mk_set_num_threads(2), MK_OK);
    cr_expect_eq(mk_get_num_threads(), 2, "the API overrides the environment");
}

Test(dispatch, num_threads_env_invalid) {
    setenv("MOEKIT_NUM_THREADS", "two", 1);
    capture c;
    capture_begin(&c);
    int n = mk_get_num_threads();
    int n2 = mk_get_num_threads();
    char *err = capture_end(&c);
    cr_expect_eq(n, mki_cpu_info()->n_cores);
    cr_expect_eq(n2, n);
    cr_expect(strstr(err, "MOEKIT_NUM_THREADS=two") != NULL, "stderr: '%s'", err);
    cr_expect_eq(count_substr(err, "MOEKIT_NUM_THREADS"), 1, "warned once: '%s'", err);
    free(err);
    setenv("MOEKIT_NUM_THREADS", "0", 1); /* read once: no effect, no new warning */
    cr_expect_eq(mk_get_num_threads(), n);
}

/* ---- mki_split_range --------------------------------------------------------------------------------------------- */
Test(dispatch, split_range_covers_exactly) {
    const int64_t ns[] = {0, 1, 2, 5, 7, 64, 100, 1001, 65537};
    const int parts[] = {1, 2, 3, 4, 7, 16, 33};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
        for (size_t b = 0; b < sizeof parts / sizeof parts[0]; b++) {
            int64_t n = ns[a], next = 0, lo = n, hi = 0;
            for (int p = 0; p < parts[b]; p++) {
                int64_t begin, end;
                mki_split_range(n, parts[b], p, &begin, &end);
                cr_assert_eq(begin, next, "n=%lld parts=%d part=%d", (long long)n, parts[b], p);
                cr_assert(end >= begin);
                if (end - begin < lo) lo = end - begin;
                if (end - begin > hi) hi = end - begin;
                next = end;
            }
            cr_assert_eq(next, n, "n=%lld parts=%d", (long long)n, parts[b]);
            cr_expect(hi - lo <= 1, "balanced: n=%lld parts=%d", (long long)n, parts[b]);
        }
    }
}

/* ---- the pool ------------------------------------------------------------------------------------------------------ */
#define SUM_N 100003
static int32_t g_data[SUM_N];

typedef struct sum_job {
    const int32_t *data;
    int64_t n;
    int64_t partial[64]; /* one slot per tid: no atomics, results combined in tid order */
    atomic_int hits[64];
    atomic_int bad_n;
    int expect_n;
} sum_job;

static void sum_fn(void *ctx, int tid, int n_threads) {
    sum_job *j = ctx;
    if (n_threads != j->expect_n || tid < 0 || tid >= n_threads) atomic_fetch_add(&j->bad_n, 1);
    if (tid < 0 || tid >= 64) return;
    int64_t b, e, s = 0;
    mki_split_range(j->n, n_threads, tid, &b, &e);
    for (int64_t i = b; i < e; i++) s += j->data[i];
    j->partial[tid] = s;
    atomic_fetch_add(&j->hits[tid], 1);
}

static void fill_data(void) {
    for (int i = 0; i < SUM_N; i++) g_data[i] = (int32_t)((i * 7919) % 1000) - 500;
}

static int64_t want_sum(int64_t n) {
    int64_t s = 0;
    for (int64_t i = 0; i < n; i++) s += g_data[i];
    return s;
}

/* Runs one parallel sum with n threads over the first len elements; checks tids; returns the sum. */
static int64_t parallel_sum(int n, int64_t len) {
    sum_job *j = calloc(1, sizeof *j);
    cr_assert_not_null(j);
    j->data = g_data;
    j->n = len;
    j->expect_n = n;
    mki_parallel(n, sum_fn, j);
    int64_t s = 0;
    for (int t = 0; t < 64; t++) {
        int h = atomic_load(&j->hits[t]);
        if (t < n) cr_assert_eq(h, 1, "tid %d of %d ran %d times", t, n, h);
        else cr_assert_eq(h, 0, "tid %d >= n = %d ran", t, n);
        s += j->partial[t];
    }
    cr_assert_eq(atomic_load(&j->bad_n), 0, "fn saw a wrong n_threads or tid");
    free(j);
    return s;
}

Test(dispatch, parallel_two_threads_sum) {
    fill_data();
    cr_assert_eq(mk_set_num_threads(2), MK_OK);
    for (int rep = 0; rep < 200; rep++) {
        int64_t len = (rep * 997) % SUM_N;
        cr_assert_eq(parallel_sum(2, len), want_sum(len), "rep %d", rep);
    }
}

Test(dispatch, parallel_every_tid_once) {
    fill_data();
    cr_assert_eq(mk_set_num_threads(5), MK_OK); /* oversubscribed on small machines: still exact */
    for (int n = 1; n <= 5; n++)
        for (int rep = 0; rep < 20; rep++) cr_assert_eq(parallel_sum(n, SUM_N), want_sum(SUM_N), "n %d", n);
    /* n is clamped to [1, mk_get_num_threads()] */
    cr_assert_eq(mk_set_num_threads(3), MK_OK);
    sum_job *j = calloc(1, sizeof *j);
    j->data = g_data;
    j->n = SUM_N;
    j->expect_n = 3;
    mki_parallel(8, sum_fn, j);
    for (int t = 0; t < 64; t++) cr_expect_eq(atomic_load(&j->hits[t]), t < 3 ? 1 : 0, "tid %d", t);
    cr_expect_eq(atomic_load(&j->bad_n), 0);
    memset(j, 0, sizeof *j);
    j->data = g_data;
    j->n = SUM_N;
    j->expect_n = 1;
    mki_parallel(0, sum_fn, j);
    cr_expect_eq(atomic_load(&j->hits[0]), 1);
    cr_expect_eq(atomic_load(&j->bad_n), 0);
    free(j);
}

Test(dispatch, parallel_with_binding, .timeout = 60) {
    setenv("MOEKIT_BIND", "cores", 1);
    fill_data();
    cr_assert_eq(mk_set_num_threads(2), MK_OK);
    for (int rep = 0; rep < 50; rep++) cr_assert_eq(parallel_sum(2, SUM_N), want_sum(SUM_N));
}

typedef struct caller_arg {
    int reps;
    int64_t results[300];
} caller_arg;

static void *caller_main(void *p) {
    caller_arg *a = p;
    for (int r = 0; r < a->reps; r++) a->results[r] = parallel_sum(2, (r * 331) % SUM_N);
    return NULL;
}

Test(dispatch, parallel_concurrent_callers, .timeout = 60) {
    fill_data();
    cr_assert_eq(mk_set_num_threads(2), MK_OK);
    static caller_arg a, b;
    a.reps = b.reps = 300;
    pthread_t ta, tb;
    cr_assert_eq(pthread_create(&ta, NULL, caller_main, &a), 0);
    cr_assert_eq(pthread_create(&tb, NULL, caller_main, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    for (int r = 0; r < 300; r++) {
        int64_t want = want_sum((r * 331) % SUM_N);
        cr_assert_eq(a.results[r], want, "caller a, rep %d", r);
        cr_assert_eq(b.results[r], want, "caller b, rep %d", r);
        cr_assert_eq(a.results[r], b.results[r], "results differ at rep %d", r);
    }
}

typedef struct nest_job {
    pthread_t outer_thread[4];
    pthread_t inner_thread[4][4];
    atomic_int inner_hits[4][4];
    atomic_int bad;
} nest_job;

typedef struct nest_inner_ctx {
    nest_job *job;
    int outer_tid;
} nest_inner_ctx;

static void nest_inner(void *ctx, int tid, int n) {
    nest_inner_ctx *c = ctx;
    if (n != 2 || tid < 0 || tid >= 2) {
        atomic_fetch_add(&c->job->bad, 1);
        return;
    }
    c->job->inner_thread[c->outer_tid][tid] = pthread_self();
    atomic_fetch_add(&c->job->inner_hits[c->outer_tid][tid], 1);
}

static void nest_outer(void *ctx, int tid, int n) {
    nest_job *j = ctx;
    if (n != 2 || tid < 0 || tid >= 2) {
        atomic_fetch_add(&j->bad, 1);
        return;
    }
    j->outer_thread[tid] = pthread_self();
    nest_inner_ctx c = {j, tid};
    mki_parallel(2, nest_inner, &c);
}

Test(dispatch, parallel_nested_runs_inner_serially) {
    cr_assert_eq(mk_set_num_threads(2), MK_OK);
    nest_job *j = calloc(1, sizeof *j);
    cr_assert_not_null(j);
    mki_parallel(2, nest_outer, j);
    cr_assert_eq(atomic_load(&j->bad), 0);
    cr_expect(pthread_equal(j->outer_thread[0], pthread_self()), "tid 0 runs on the caller");
    for (int o = 0; o < 2; o++) {
        for (int i = 0; i < 2; i++) {
            cr_expect_eq(atomic_load(&j->inner_hits[o][i]), 1, "outer %d inner %d", o, i);
            cr_expect(pthread_equal(j->inner_thread[o][i], j->outer_thread[o]),
                      "nested call of outer tid %d ran inner tid %d on another thread", o, i);
        }
    }
    free(j);
}

/* ---- verbose ------------------------------------------------------------------------------------------------------ */
Test(dispatch, verbose_lines) {
    setenv("MOEKIT_VERBOSE", "2", 1);
    cr_assert_eq(mki_verbose_level(), 2);
    const mki_kernel_table *t = mki_table();
    capture c;
    capture_begin(&c);
    for (int i = 0; i < 3; i++) {
        uint64_t t0 = mki_verbose_enter(MK_OP_ROPE, t);
        mki_verbose_exit(MK_OP_ROPE, t, t0, "tokens=%d", 5 + i);
    }
    uint64_t t0 = mki_verbose_enter(MK_OP_RMSNORM, t);
    mki_verbose_exit(MK_OP_RMSNORM, t, t0, "rows=%d,dim=%d", 2, 8);
    char *err = capture_end(&c);

    char want[256];
    cr_expect_eq(count_substr(err, "moekit_verbose,info,"), 1, "stderr: '%s'", err);
    snprintf(want, sizeof want, "moekit_verbose,info,%d.%d.%d,detected=%s,selected=%s,cap=none,cores=%d,threads=%d,",
             MOEKIT_VERSION_MAJOR, MOEKIT_VERSION_MINOR, MOEKIT_VERSION_PATCH, mk_isa_name(mk_detected_isa()),
             mk_isa_name(mk_selected_isa()), mki_cpu_info()->n_cores, mk_get_num_threads());
    cr_expect(strstr(err, want) != NULL, "want '%s' in '%s'", want, err);
    cr_expect(strstr(err, ",l1d=") && strstr(err, ",l2=") && strstr(err, ",l3="), "stderr: '%s'", err);
    snprintf(want, sizeof want, "moekit_verbose,dispatch,rope,isa=%s,impl=%s\n", t->name, t->impl[MK_OP_ROPE]);
    cr_expect_eq(count_substr(err, want), 1, "want '%s' once in '%s'", want, err);
    cr_expect_eq(count_substr(err, "moekit_verbose,dispatch,"), 2, "stderr: '%s'", err);
    snprintf(want, sizeof want, "moekit_verbose,exec,rope,%s,tokens=", t->impl[MK_OP_ROPE]);
    cr_expect_eq(count_substr(err, want), 3, "want '%s' 3x in '%s'", want, err);
    snprintf(want, sizeof want, "moekit_verbose,exec,rmsnorm,%s,rows=2,dim=8,", t->impl[MK_OP_RMSNORM]);
    cr_expect(strstr(err, want) != NULL, "want '%s' in '%s'", want, err);
    /* the time has 4 decimals */
    const char *p = strstr(err, "tokens=7,");
    cr_assert_not_null(p);
    p += strlen("tokens=7,");
    const char *dot = strchr(p, '.');
    cr_assert_not_null(dot);
    cr_expect(strspn(dot + 1, "0123456789") == 4, "time: '%s'", p);

    /* a new table (after a cap change) gets its own dispatch line */
    cr_assert_eq(mk_set_max_isa(MK_ISA_REF), MK_OK);
    capture_begin(&c);
    mki_verbose_exit(MK_OP_ROPE, mki_table(), mki_verbose_enter(MK_OP_ROPE, mki_table()), "x");
    free(err);
    err = capture_end(&c);
    if (t != mki_table()) cr_expect(strstr(err, "moekit_verbose,dispatch,rope,isa=ref,impl=ref\n") != NULL, "'%s'", err);
    free(err);
}

Test(dispatch, verbose_level1_no_exec) {
    setenv("MOEKIT_VERBOSE", "1", 1);
    capture c;
    capture_begin(&c);
    uint64_t t0 = mki_verbose_enter(MK_OP_KNORM, mki_table());
    mki_verbose_exit(MK_OP_KNORM, mki_table(), t0, "x");
    char *err = capture_end(&c);
    cr_expect_eq(t0, 0u);
    cr_expect_eq(count_substr(err, "moekit_verbose,info,"), 1, "'%s'", err);
    cr_expect_eq(count_substr(err, "moekit_verbose,dispatch,knorm,"), 1, "'%s'", err);
    cr_expect_eq(count_substr(err, "moekit_verbose,exec,"), 0, "'%s'", err);
    free(err);
}

Test(dispatch, verbose_off_is_silent) {
    unsetenv("MOEKIT_VERBOSE");
    capture c;
    capture_begin(&c);
    uint64_t t0 = mki_verbose_enter(MK_OP_KNORM, mki_table());
    mki_verbose_exit(MK_OP_KNORM, mki_table(), t0, "x");
    char *err = capture_end(&c);
    cr_expect_eq(t0, 0u);
    cr_expect_str_empty(err);
    free(err);
    cr_expect_eq(mki_verbose_level(), 0);
}

Test(dispatch, getenv_empty_is_unset) {
    setenv("MOEKIT_TEST_EMPTY", "", 1);
    setenv("MOEKIT_TEST_SET", "x", 1);
    cr_expect_null(mki_getenv("MOEKIT_TEST_EMPTY"));
    cr_expect_null(mki_getenv("MOEKIT_TEST_UNSET_VARIABLE"));
    cr_expect_str_eq(mki_getenv("MOEKIT_TEST_SET"), "x");
    cr_expect(mki_now_ns() > 0);
}
