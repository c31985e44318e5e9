/*
 * moekit.c: the moekit command. `moekit info` describes the CPU, the ISA dispatch and the kernel each op uses;
 * `moekit check` (tools/check.c) runs every op against the reference kernels; `moekit version`.
 */
#include "cli.h"
#include "moekit.h"
#include "selfcheck.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: moekit <command> [options]\n"
            "\n"
            "commands:\n"
            "  info       CPU, features, topology, ISA selection, threads, and the kernel each op uses\n"
            "  check      run every op on every ISA this CPU has and compare with the reference kernels\n"
            "  gen        write a random openPangu-R checkpoint (config.json + model.safetensors)\n"
            "  run        load a checkpoint and generate tokens greedily with the reference model\n"
            "  version    print the library version\n"
            "  help       this text (also -h, --help)\n"
            "\n");
    cli_check_usage(out);
    cli_gen_usage(out);
    cli_run_usage(out);
    fprintf(out,
            "\n"
            "environment:\n"
            "  MOEKIT_MAX_ISA=ref|avx2|avx512   cap the ISA (clamped to what the CPU has)\n"
            "  MOEKIT_NUM_THREADS=N             threads for kernels that split work (default: physical cores)\n"
            "  MOEKIT_VERBOSE=1|2               log dispatch decisions (1) and every call with its time (2) to stderr\n"
            "  MOEKIT_BIND=none|cores           bind pool threads to cores (default none)\n");
}

void cli_format_seconds(char *buf, size_t size, double seconds) {
    if (seconds < 1e-3)
        snprintf(buf, size, "%.1f us", seconds * 1e6);
    else if (seconds < 1.0)
        snprintf(buf, size, "%.2f ms", seconds * 1e3);
    else
        snprintf(buf, size, "%.2f s", seconds);
}

static void format_bytes(char *buf, size_t size, int64_t bytes) {
    if (bytes <= 0)
        snprintf(buf, size, "unknown");
    else if (bytes % (1 << 20) == 0)
        snprintf(buf, size, "%lld MiB", (long long)(bytes >> 20));
    else if (bytes % 1024 == 0)
        snprintf(buf, size, "%lld KiB", (long long)(bytes >> 10));
    else
        snprintf(buf, size, "%lld B", (long long)bytes);
}

static const char *env_or(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v && v[0] ? v : fallback;
}

/* Why the selected ISA is what it is. */
static void describe_selection(char *buf, size_t size) {
    const mk_isa detected = mk_detected_isa(), selected = mk_selected_isa();
    const char *env = getenv("MOEKIT_MAX_ISA");
    mk_isa cap;
    if (!env || !env[0])
        snprintf(buf, size, "no cap (MOEKIT_MAX_ISA is unset): the best ISA the CPU has");
    else if (mk_isa_from_name(env, &cap) != MK_OK)
        snprintf(buf, size, "MOEKIT_MAX_ISA=%s is not ref, avx2 or avx512: ignored", env);
    else if (cap > detected)
        snprintf(buf, size, "MOEKIT_MAX_ISA=%s is above what the CPU has: clamped to %s", env, mk_isa_name(detected));
    else if (selected == cap)
        snprintf(buf, size, "capped by MOEKIT_MAX_ISA=%s", env);
    else
        snprintf(buf, size, "MOEKIT_MAX_ISA=%s", env);
}

static int cmd_info(void) {
    mk_cpu_info c;
    if (mk_get_cpu_info(&c) != MK_OK) {
        fprintf(stderr, "moekit info: mk_get_cpu_info failed: %s\n", mk_last_error());
        return CLI_FAILED;
    }
    const mk_isa detected = mk_detected_isa(), selected = mk_selected_isa();
    char why[160], l1[32], l2[32], l3[32];
    describe_selection(why, sizeof why);
    format_bytes(l1, sizeof l1, c.l1d_bytes);
    format_bytes(l2, sizeof l2, c.l2_bytes);
    format_bytes(l3, sizeof l3, c.l3_bytes);

    printf("moekit %s (header %d.%d.%d)\n\n", mk_version_string(), MOEKIT_VERSION_MAJOR, MOEKIT_VERSION_MINOR,
           MOEKIT_VERSION_PATCH);

    printf("CPU\n");
    printf("  vendor        %s\n", c.vendor[0] ? c.vendor : "unknown");
    printf("  brand         %s\n", c.brand[0] ? c.brand : "unknown");
    printf("  family/model  %d / %d (0x%x / 0x%02x)\n", c.family, c.model, (unsigned)c.family, (unsigned)c.model);
    const struct { const char *name; int on; } features[] = {
        {"sse4.2", c.sse42},        {"avx", c.avx},           {"avx2", c.avx2},
        {"fma", c.fma},             {"f16c", c.f16c},         {"avx512f", c.avx512f},
        {"avx512bw", c.avx512bw},   {"avx512vl", c.avx512vl}, {"avx512dq", c.avx512dq},
        {"avx512_bf16", c.avx512_bf16}, {"avx512_vnni", c.avx512_vnni}, {"avx_vnni", c.avx_vnni},
        {"neon", c.neon},
    };
    const int n_features = (int)(sizeof features / sizeof features[0]);
    printf("  features      ");
    for (int i = 0, any = 0; i < n_features; i++)
        if (features[i].on) printf("%s%s", any++ ? " " : "", features[i].name);
    printf("\n  absent        ");
    for (int i = 0, any = 0; i < n_features; i++)
        if (!features[i].on) printf("%s%s", any++ ? " " : "", features[i].name);
    printf("\n  (features are combined with what the OS enables in XCR0)\n\n");

    printf("ISA\n");
    printf("  detected      %s\n", mk_isa_name(detected));
    printf("  selected      %s (%s)\n\n", mk_isa_name(selected), why);

    printf("Topology (%s)\n", c.topology_from_hwloc ? "from hwloc" : "fallback: hwloc reported nothing");
    printf("  cores         %d physical, %d hardware threads available to this process\n", c.n_cores, c.n_pus);
    printf("  NUMA nodes    %d\n", c.n_numa_nodes);
    printf("  caches        L1d %s per core, L2 %s per core, L3 %s total\n\n", l1, l2, l3);

    const char *threads_env = getenv("MOEKIT_NUM_THREADS");
    printf("Threads\n");
    if (threads_env && threads_env[0])
        printf("  kernels use   %d (MOEKIT_NUM_THREADS=%s)\n", mk_get_num_threads(), threads_env);
    else
        printf("  kernels use   %d (default: the physical cores; MOEKIT_NUM_THREADS unset)\n", mk_get_num_threads());
    printf("  binding       MOEKIT_BIND=%s\n", env_or("MOEKIT_BIND", "none (unset)"));
    printf("  verbose       MOEKIT_VERBOSE=%s\n\n", env_or("MOEKIT_VERBOSE", "0 (unset)"));

    /* op -> kernel under every ISA this CPU can run; the selected column is the one calls use */
    printf("Kernels (the kernel each op runs, per ISA cap; * = selected; a lower ISA's name = inherited)\n");
    printf("  %-16s", "op");
    for (int isa = 0; isa <= (int)detected; isa++) {
        char head[16];
        snprintf(head, sizeof head, "%s%s", mk_isa_name((mk_isa)isa), isa == (int)selected ? "*" : "");
        printf("%-9s", head);
    }
    printf("\n");
    for (int op = 0; op < MK_OP_COUNT; op++) {
        printf("  %-16s", mk_op_name((mk_op)op));
        for (int isa = 0; isa <= (int)detected; isa++) {
            const char *impl = mki_selfcheck_impl((mk_op)op, (mk_isa)isa);
            printf("%-9s", impl ? impl : "-");
        }
        printf("\n");
    }
    return CLI_OK;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "help") || !strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        if (argc > 2) {
            fprintf(stderr, "moekit version: takes no arguments\n");
            return CLI_USAGE;
        }
        printf("moekit %s\n", mk_version_string());
        return CLI_OK;
    }
    if (!strcmp(cmd, "info")) {
        if (argc > 2) {
            fprintf(stderr, "moekit info: takes no arguments\n");
            return CLI_USAGE;
        }
        return cmd_info();
    }
    if (!strcmp(cmd, "check")) return cli_check(argc - 1, argv + 1);
    if (!strcmp(cmd, "gen")) return cli_gen(argc - 1, argv + 1);
    if (!strcmp(cmd, "run")) return cli_run(argc - 1, argv + 1);
    fprintf(stderr, "moekit: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return CLI_USAGE;
}
