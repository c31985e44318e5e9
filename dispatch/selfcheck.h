/*
 * selfcheck.h: the check harness behind `moekit check` (and reusable by the tests). A fixed suite of cases, each an
 * op with a shape and deterministic seeded inputs, run through the PUBLIC API twice: once with the ISA capped at the
 * ISA under test, once capped at MK_ISA_REF (the oracle), on identical inputs; the outputs are compared by NMSE
 * against a per-op tolerance that is defined here and nowhere else. Hidden symbols, prefix mki_selfcheck_.
 *
 * Not thread-safe: a run changes the process-wide ISA cap (mk_set_max_isa) and restores it afterwards.
 */
#ifndef MOEKIT_SELFCHECK_H
#define MOEKIT_SELFCHECK_H

#include "internal.h"

/* ---- tolerances: one table, NMSE = sum((out - ref)^2) / sum(ref^2) over all outputs, in double ------------- *
 * A row passes when NMSE <= nmse and also max |out - ref| <= MKI_SELFCHECK_MAX_REL_FACTOR * sqrt(nmse) * rms(ref),
 * so that one wrong element cannot hide in the average. */
#define MKI_SELFCHECK_MAX_REL_FACTOR 20.0

typedef struct mki_selfcheck_tolerance {
    mk_op op;
    mk_dtype dtype;   /* the dtype the bound depends on (see mki_selfcheck_case.dtype); MK_F32 for F32-only ops */
    double nmse;      /* PASS when nmse <= this */
    const char *what; /* "F32 weights", "BF16 caches or sinks", ... */
} mki_selfcheck_tolerance;

/* The whole table (one row per op and dtype), for printing and documentation. */
MKI_HIDDEN const mki_selfcheck_tolerance *mki_selfcheck_tolerances(int *count);
/* The NMSE bound for op with the given dtype (an op without a BF16 row uses its F32 bound). */
MKI_HIDDEN double mki_selfcheck_tol(mk_op op, mk_dtype dtype);

/* ---- cases --------------------------------------------------------------------------------------------------- */
typedef struct mki_selfcheck_case {
    mk_op op;
    const char *label; /* shape and variant, e.g. "T=16 x 4608 (pangu)"; "(pangu)" marks openPangu-R-72B shapes */
    mk_dtype dtype;    /* the dtype that picks the tolerance: weights (grouped_gemm, moe_ffn), caches/sinks
                          (sink_attention, BF16 if either is), k_out (knorm_rope); MK_F32 for the other ops */
    int quick;         /* 1 when the case belongs to the --quick subset */
} mki_selfcheck_case;

/* Number of cases in the suite: every case when quick = 0, the quick subset when quick = 1. Cases are indexed
 * 0 .. mki_selfcheck_n_cases(0) - 1 in one order (grouped by op); the quick subset is the cases with .quick = 1. */
MKI_HIDDEN int mki_selfcheck_n_cases(int quick);
/* Description of case case_index, or NULL when out of range. */
MKI_HIDDEN const mki_selfcheck_case *mki_selfcheck_get_case(int case_index);

/* The kernel op runs on when the ISA is capped at isa ("ref", "avx2", "avx512": the ISA that provided it), or NULL
 * when this CPU cannot run isa. Does not change the cap. */
MKI_HIDDEN const char *mki_selfcheck_impl(mk_op op, mk_isa isa);

/* ---- one run --------------------------------------------------------------------------------------------------- */
typedef enum mki_selfcheck_outcome {
    MKI_SELFCHECK_PASS = 0,   /* compared against the oracle, within tolerance, nothing clobbered */
    MKI_SELFCHECK_FAIL,       /* compared and out of tolerance, different expert sets, writes outside the outputs,
                                 an invalid output (non-finite, bad expert id), outputs that change when the call is
                                 repeated, or an error status from the op */
    MKI_SELFCHECK_ORACLE,     /* isa == MK_ISA_REF: ran and sanity-checked (finite, nothing clobbered, repeatable),
                                 nothing to compare against */
    MKI_SELFCHECK_ORACLE_BAD, /* isa == MK_ISA_REF and the oracle itself failed its sanity check or returned an error */
    MKI_SELFCHECK_SKIP        /* not run: the CPU cannot run the ISA, or the ISA has no kernel of its own for the op
                                 (it inherits ref, so the comparison would be ref against ref) */
} mki_selfcheck_outcome;

typedef struct mki_selfcheck_result {
    mki_selfcheck_outcome outcome;
    const char *impl;     /* mk_kernel_name(op) with the cap at the ISA under test ("ref", "avx2", "avx512") */
    double max_abs;       /* max |out - ref| over all compared outputs (0 for oracle rows) */
    double nmse;          /* sum((out - ref)^2) / sum(ref^2) (0 for oracle rows; +inf if ref is all 0 and out not) */
    double max_rel;       /* max_abs / rms(ref), which catches a local error the NMSE would average away; must be
                             <= MKI_SELFCHECK_MAX_REL_FACTOR * sqrt(tol) */
    double tol;           /* the NMSE bound that applies (mki_selfcheck_tol) */
    int ids_equal;        /* moe_gate: 1 when both runs chose the same expert set per token and the same counts, 0
                             when not; -1 for other ops and oracle rows */
    int64_t n_outputs;    /* values compared */
    int64_t n_clobbered;  /* elements outside the output views (padding, guards, const inputs) that changed */
    int64_t n_invalid;    /* non-finite outputs, invalid expert ids (or a -1 slot with a nonzero weight) */
    int64_t n_unrepeatable; /* outputs that a repeat of the call on the same inputs did not reproduce bit for bit
                               (calls under 50 ms run 3 times, under 200 ms twice, longer ones once) */
    double seconds;       /* wall time of the op under test, best of its runs (the oracle's, for oracle rows) */
    double ref_seconds;   /* wall time of the oracle call (same as seconds for oracle rows; 0 when skipped) */
    char note[200];       /* why it failed or was skipped, or the op's error message; "" otherwise */
} mki_selfcheck_result;

/* Runs case case_index for isa and fills *r. Returns MK_OK whenever *r is filled (including FAIL and SKIP outcomes);
 * MK_EINVAL for a bad case_index or isa, MK_ENOMEM when the inputs could not be allocated (then r->note says so).
 * The previously selected ISA is restored before returning. */
MKI_HIDDEN mk_status mki_selfcheck_run(int case_index, mk_isa isa, mki_selfcheck_result *r);

/* "PASS" / "FAIL" / "oracle" / "ORACLE-BAD" / "skip" */
MKI_HIDDEN const char *mki_selfcheck_outcome_name(mki_selfcheck_outcome outcome);

#endif /* MOEKIT_SELFCHECK_H */
