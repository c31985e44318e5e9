/*
 * main.c: moekit-bench, the benchmark program. Runs, in this order, the machine limits, the non-GEMM ops, and the
 * grouped GEMM sweep with its peers, on Google Benchmark through the C wrapper gbc.h. Own flags:
 *   --smoke      tiny shapes: checks that every benchmark builds and runs (make check); no timing meaning
 *   --no-peers   do not load OpenBLAS / oneDNN
 *   --ref-all    run the reference kernels at every size (hours at the large GEMM shapes)
 * Every other flag is Google Benchmark's (--benchmark_filter, --benchmark_out=FILE, --benchmark_min_time=0.3 ...).
 */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf("usage: moekit-bench [--smoke] [--no-peers] [--ref-all] [Google Benchmark flags]\n"
           "  e.g. moekit-bench --benchmark_filter='grouped_gemm/shape:down' --benchmark_min_time=0.3 \\\n"
           "                    --benchmark_out=bench.json --benchmark_out_format=json\n");
}

int main(int argc, char **argv) {
    gbc_initialize(&argc, argv);
    mkb_cfg.peers = 1;
    int kept = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--smoke") == 0) mkb_cfg.smoke = 1;
        else if (strcmp(argv[i], "--no-peers") == 0) mkb_cfg.peers = 0;
        else if (strcmp(argv[i], "--ref-all") == 0) mkb_cfg.ref_all = 1;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) { usage(); return 0; }
        else argv[kept++] = argv[i];
    }
    argc = kept;
    if (gbc_report_unrecognized(argc, argv)) { usage(); return 2; }

    if (mk_get_cpu_info(&mkb_cfg.cpu) != MK_OK) {
        fprintf(stderr, "moekit-bench: mk_get_cpu_info: %s\n", mk_last_error());
        return 1;
    }
    mkb_cfg.detected = mk_detected_isa();
    mkb_cfg.n_cores = mkb_cfg.cpu.n_cores > 0 ? mkb_cfg.cpu.n_cores : 1;

    char text[64];
    gbc_add_context("moekit_version", mk_version_string());
    gbc_add_context("cpu_brand", mkb_cfg.cpu.brand);
    gbc_add_context("detected_isa", mk_isa_name(mkb_cfg.detected));
    snprintf(text, sizeof text, "%d", mkb_cfg.n_cores);
    gbc_add_context("n_cores", text);
    snprintf(text, sizeof text, "%lld", (long long)mkb_cfg.cpu.l3_bytes);
    gbc_add_context("l3_bytes", text);
    snprintf(text, sizeof text, "%lld", (long long)mkb_cfg.cpu.l2_bytes);
    gbc_add_context("l2_bytes", text);
    gbc_add_context("mode", mkb_cfg.smoke ? "smoke" : "full");
    snprintf(text, sizeof text, "%.3g", MKB_REF_MAX_FLOP);
    gbc_add_context("ref_max_flop", mkb_cfg.ref_all ? "inf" : text);
    if (mkb_cfg.peers) {
        const char *why = NULL;
        const mkb_peer *p = mkb_peer_openblas(&why);
        gbc_add_context("peer_openblas", p ? p->label : why);
        p = mkb_peer_onednn(&why);
        gbc_add_context("peer_onednn", p ? p->label : why);
        const char *env = getenv("OPENBLAS_CORETYPE");
        gbc_add_context("env_OPENBLAS_CORETYPE", env ? env : "");
        env = getenv("OPENBLAS_L2_SIZE");
        gbc_add_context("env_OPENBLAS_L2_SIZE", env ? env : "");
    } else {
        gbc_add_context("peer_openblas", "disabled (--no-peers)");
        gbc_add_context("peer_onednn", "disabled (--no-peers)");
    }

    mkb_register_limits();
    mkb_register_ops();
    mkb_register_gemm();
    int64_t ran = gbc_run_specified();
    gbc_shutdown();
    mkb_release_shared();
    fprintf(stderr, "moekit-bench: %lld benchmarks, %lld skipped, %lld failed\n", (long long)ran,
            (long long)mkb_cfg.n_skipped, (long long)mkb_cfg.n_failed);
    return mkb_cfg.n_failed ? 1 : 0;
}
