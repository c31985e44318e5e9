/*
 * check.c: `moekit check`, a table over the cases of dispatch/selfcheck.c x the ISAs this CPU can run. Every row
 * of an ISA above ref compares that ISA's kernel with the reference kernel on the same inputs; the ref rows are the
 * oracle itself and are only timed and sanity-checked.
 */
#include "cli.h"
#include "moekit.h"
#include "selfcheck.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

void cli_check_usage(FILE *out) {
    fprintf(out,
            "moekit check [--quick | --full] [--isa ref|avx2|avx512] [--op NAME] [--list]\n"
            "  --quick    the quick subset (small shapes and the cheap openPangu-R-72B ones; seconds)\n"
            "  --full     every case, including the real expert GEMM / FFN widths (the default; minutes)\n"
            "  --isa X    only ISA X (default: every ISA from ref up to the detected one)\n"
            "  --op NAME  only op NAME (grouped_gemm, moe_ffn, swiglu, moe_gate, rope, rmsnorm, rmsnorm_add,\n"
            "             knorm, knorm_rope, sink_attention)\n"
            "  --list     list the cases and their tolerances, run nothing\n"
            "  exit status: 0 all passed, 1 a case failed, 2 usage error\n");
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "moekit check: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n");
    cli_check_usage(stderr);
    return CLI_USAGE;
}

static int op_from_name(const char *name) {
    for (int op = 0; op < MK_OP_COUNT; op++)
        if (!strcmp(name, mk_op_name((mk_op)op))) return op;
    return -1;
}

static int selected_case(const mki_selfcheck_case *c, int quick, int op) {
    return (!quick || c->quick) && (op < 0 || (int)c->op == op);
}

/* One line per tolerance row: "1e-07 rmsnorm". */
static void print_tolerances(const char *indent) {
    int n;
    const mki_selfcheck_tolerance *t = mki_selfcheck_tolerances(&n);
    for (int i = 0; i < n; i++)
        printf("%s%-15s %-5s NMSE <= %-6.0e %s\n", indent, mk_op_name(t[i].op), mk_dtype_name(t[i].dtype), t[i].nmse,
               t[i].what);
}

static int list_cases(int quick, int op) {
    printf("%-5s %-15s %-5s %-6s %-6s %s\n", "case", "op", "dtype", "quick", "tol", "label");
    for (int i = 0; i < mki_selfcheck_n_cases(0); i++) {
        const mki_selfcheck_case *c = mki_selfcheck_get_case(i);
        if (!selected_case(c, quick, op)) continue;
        printf("%-5d %-15s %-5s %-6s %-6.0e %s\n", i, mk_op_name(c->op), mk_dtype_name(c->dtype),
               c->quick ? "yes" : "no", mki_selfcheck_tol(c->op, c->dtype), c->label);
    }
    printf("\ntolerances:\n");
    print_tolerances("  ");
    return CLI_OK;
}

/* Rows that were not run because they would repeat another row: per ISA, a bit per op and the reason. */
typedef struct skips {
    unsigned inherits_ref[MK_ISA_COUNT];    /* the ISA has no kernel of its own: it runs ref */
    unsigned same_as_lower[MK_ISA_COUNT];   /* the ISA runs a lower ISA's kernel, checked in that ISA's rows */
} skips;

static void print_op_set(unsigned set) {
    for (int op = 0, first = 1; op < MK_OP_COUNT; op++)
        if (set & (1u << op)) {
            printf("%s%s", first ? "" : ", ", mk_op_name((mk_op)op));
            first = 0;
        }
}

int cli_check(int argc, char **argv) {
    int quick = 0, list = 0, op = -1, only_isa = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quick")) {
            quick = 1;
        } else if (!strcmp(a, "--full")) {
            quick = 0;
        } else if (!strcmp(a, "--list")) {
            list = 1;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            cli_check_usage(stdout);
            return CLI_OK;
        } else if (!strcmp(a, "--isa") || !strcmp(a, "--op")) {
            if (i + 1 == argc) return usage_error("%s needs a value", a);
            const char *v = argv[++i];
            if (!strcmp(a, "--op")) {
                if ((op = op_from_name(v)) < 0) return usage_error("unknown op '%s'", v);
            } else {
                mk_isa isa;
                if (mk_isa_from_name(v, &isa) != MK_OK) return usage_error("unknown ISA '%s' (ref, avx2, avx512)", v);
                only_isa = (int)isa;
            }
        } else {
            return usage_error("unknown option '%s'", a);
        }
    }
    if (list) return list_cases(quick, op);

    /* by default every ISA up to the selected one (so MOEKIT_MAX_ISA also caps what is checked); --isa may name
     * any ISA the CPU has */
    const mk_isa detected = mk_detected_isa(), selected = mk_selected_isa();
    if (only_isa > (int)detected) {
        fprintf(stderr, "moekit check: this CPU cannot run %s (the best it has is %s)\n", mk_isa_name((mk_isa)only_isa),
                mk_isa_name(detected));
        return CLI_USAGE;
    }
    const int isa_lo = only_isa >= 0 ? only_isa : 0, isa_hi = only_isa >= 0 ? only_isa : (int)selected;

    /* column width of the case labels */
    int n_cases = 0, label_w = 4;
    for (int i = 0; i < mki_selfcheck_n_cases(0); i++) {
        const mki_selfcheck_case *c = mki_selfcheck_get_case(i);
        if (!selected_case(c, quick, op)) continue;
        n_cases++;
        int len = (int)strlen(c->label);
        if (len > label_w) label_w = len;
    }

    mk_cpu_info cpu;
    if (mk_get_cpu_info(&cpu) != MK_OK) cpu.brand[0] = '\0';
    printf("moekit check (%s): %d cases, ISA", quick ? "quick" : "full", n_cases);
    for (int isa = isa_lo; isa <= isa_hi; isa++) printf(" %s", mk_isa_name((mk_isa)isa));
    printf(", %d threads, on %s (detected %s", mk_get_num_threads(), cpu.brand[0] ? cpu.brand : "unknown CPU",
           mk_isa_name(detected));
    if (only_isa < 0 && selected != detected) printf("; ISAs above %s left out: MOEKIT_MAX_ISA", mk_isa_name(selected));
    printf(")\n");
    printf("Each case runs through the public API capped at the ISA under test, then capped at ref (the\n"
           "oracle: plain C, double accumulation) on the same seeded inputs. PASS: NMSE = sum((out-ref)^2) /\n"
           "sum(ref^2) <= tol and max |out-ref| <= %g sqrt(tol) rms(ref), no write outside the outputs, identical\n"
           "outputs when a call is repeated, and for moe_gate the same experts per token (weights compared as a\n"
           "dense [T, E] matrix). ref rows are the oracle itself: timed and sanity-checked (finite, no stray write,\n"
           "repeatable), never compared. time = best of up to 3 calls. Tolerances:\n",
           MKI_SELFCHECK_MAX_REL_FACTOR);
    print_tolerances("  ");
    printf("\n");

    printf("%-14s %-*s %-5s %-7s %-7s %-9s %-9s %-7s %-9s %-7s %s\n", "op", label_w, "case", "dtype", "isa", "kernel",
           "max_abs", "nmse", "tol", "time", "vs ref", "result");

    int passed = 0, failed = 0, oracle = 0;
    skips skipped = {{0}, {0}};
    const double t_start = now_seconds();
    for (int i = 0; i < mki_selfcheck_n_cases(0); i++) {
        const mki_selfcheck_case *c = mki_selfcheck_get_case(i);
        if (!selected_case(c, quick, op)) continue;
        for (int isa = isa_lo; isa <= isa_hi; isa++) {
            const char *impl = mki_selfcheck_impl(c->op, (mk_isa)isa);
            if (isa != MK_ISA_REF && impl && !strcmp(impl, "ref")) {
                skipped.inherits_ref[isa] |= 1u << c->op;
                continue;
            }
            if (isa != MK_ISA_REF && impl && strcmp(impl, mk_isa_name((mk_isa)isa))) {
                mk_isa lower;
                if (mk_isa_from_name(impl, &lower) == MK_OK && (int)lower >= isa_lo) {
                    skipped.same_as_lower[isa] |= 1u << c->op;
                    continue;
                }
            }
            mki_selfcheck_result r;
            mk_status st = mki_selfcheck_run(i, (mk_isa)isa, &r);
            char max_abs[16] = "-", nmse[16] = "-", tol[16], time[16] = "-", speed[16] = "-";
            snprintf(tol, sizeof tol, "%.0e", r.tol);
            const char *result;
            if (st != MK_OK) {
                result = "FAIL";
                if (!r.note[0]) snprintf(r.note, sizeof r.note, "%s", mk_status_str(st));
                failed++;
            } else {
                result = mki_selfcheck_outcome_name(r.outcome);
                if (r.outcome == MKI_SELFCHECK_SKIP) continue;
                cli_format_seconds(time, sizeof time, r.seconds);
                if (r.outcome == MKI_SELFCHECK_PASS || r.outcome == MKI_SELFCHECK_FAIL) {
                    snprintf(max_abs, sizeof max_abs, "%.1e", r.max_abs);
                    snprintf(nmse, sizeof nmse, "%.1e", r.nmse);
                    if (r.seconds > 0) {
                        const double x = r.ref_seconds / r.seconds;
                        snprintf(speed, sizeof speed, x >= 10 ? "%.0fx" : x >= 0.1 ? "%.1fx" : "%.2fx", x);
                    }
                }
                if (r.outcome == MKI_SELFCHECK_PASS) passed++;
                else if (r.outcome == MKI_SELFCHECK_ORACLE) oracle++;
                else failed++;
            }
            printf("%-14s %-*s %-5s %-7s %-7s %-9s %-9s %-7s %-9s %-7s %s\n", mk_op_name(c->op), label_w, c->label,
                   mk_dtype_name(c->dtype), mk_isa_name((mk_isa)isa), r.impl, max_abs, nmse, tol, time, speed, result);
            if (st != MK_OK || r.outcome == MKI_SELFCHECK_FAIL || r.outcome == MKI_SELFCHECK_ORACLE_BAD)
                printf("%14s ^ %s\n", "", r.note);
            fflush(stdout);
        }
    }
    const double elapsed = now_seconds() - t_start;

    printf("\n");
    for (int isa = isa_lo; isa <= isa_hi; isa++) {
        if (skipped.inherits_ref[isa]) {
            printf("not compared on %s (no %s kernel yet, it runs ref): ", mk_isa_name((mk_isa)isa),
                   mk_isa_name((mk_isa)isa));
            print_op_set(skipped.inherits_ref[isa]);
            printf("\n");
        }
        if (skipped.same_as_lower[isa]) {
            printf("not repeated on %s (it runs the kernel of a lower ISA, compared in that ISA's rows): ",
                   mk_isa_name((mk_isa)isa));
            print_op_set(skipped.same_as_lower[isa]);
            printf("\n");
        }
    }
    if (passed + failed == 0 && oracle > 0)
        printf("Only the reference kernels ran: the rows above are the oracle itself, so nothing was compared.\n");
    char total[16];
    cli_format_seconds(total, sizeof total, elapsed);
    printf("elapsed %s\n", total);
    printf("moekit check: %d passed, %d failed, %d oracle-only\n", passed, failed, oracle);
    return failed ? CLI_FAILED : CLI_OK;
}
