/*
 * gate.c: reference top-k gating (sigmoid or softmax scores, bias-corrected and optionally group-limited selection,
 * renormalised and scaled weights, per-expert counts) and the aux-loss-free expert-bias update. logits are
 * [n_tokens, n_experts] with a resolved row stride; ids and weights are contiguous [n_tokens, top_k].
 */
#include "ref.h"

#include <math.h>
#include <stdlib.h>

/* The one ordering used for experts and groups: larger value first, NaN after every number, ties (and NaN vs NaN)
 * to the lower index. Selection by repeated "best remaining" under this order makes the result independent of any
 * sort's stability. */
static int ranks_before(double a, int64_t index_a, double b, int64_t index_b) {
    if (isnan(a) || isnan(b)) {
        if (!isnan(a)) return 1;
        if (!isnan(b)) return 0;
        return index_a < index_b;
    }
    if (a != b) return a > b;
    return index_a < index_b;
}

/* Two branches so that exp never overflows: exp of a non-positive argument only. A NaN logit takes the second
 * branch and stays NaN. */
static double sigmoid(double v) {
    if (v >= 0.0) return 1.0 / (1.0 + exp(-v));
    return exp(v) / (1.0 + exp(v));
}

/* Softmax over the non-NaN logits only: a NaN logit gets a NaN score (so it is never selected) but does not poison
 * the scores of the other experts. The max subtraction follows the plain formula, so an infinite logit (inf - inf)
 * or a row whose non-NaN logits are all -inf yields NaN scores. */
static void softmax_scores(const float *logits, int64_t n_experts, double *score) {
    double max_logit = -INFINITY;
    for (int64_t e = 0; e < n_experts; e++)
        if (!isnan(logits[e]) && (double)logits[e] > max_logit) max_logit = (double)logits[e];
    double sum = 0.0;
    for (int64_t e = 0; e < n_experts; e++) {
        if (isnan(logits[e])) continue;
        score[e] = exp((double)logits[e] - max_logit);
        sum += score[e];
    }
    for (int64_t e = 0; e < n_experts; e++) score[e] = isnan(logits[e]) ? (double)NAN : score[e] / sum;
}

/* A group's score from the select values of its members, NaN members ignored: the sum of its two largest values
 * when top2 (DeepSeek-V3 noaux_tc), else the largest. A group with a single non-NaN member (including groups of
 * size 1) scores that value alone; a group with none scores -inf, so it ranks last but one can still be picked to
 * fill topk_groups (its members are all NaN and are never chosen anyway). */
static double group_score(const double *selection, int64_t first, int64_t size, int top2) {
    double best = -INFINITY, second = -INFINITY;
    int64_t n_valid = 0;
    for (int64_t e = first; e < first + size; e++) {
        const double v = selection[e];
        if (isnan(v)) continue;
        n_valid++;
        if (v > best) {
            second = best;
            best = v;
        } else if (v > second) {
            second = v;
        }
    }
    if (n_valid == 0) return -INFINITY;
    if (!top2 || n_valid == 1) return best;
    return best + second;
}

mk_status mki_ref_moe_gate(const mk_moe_gate_args *a) {
    const int64_t n_experts = a->n_experts;
    const int grouped = a->n_groups > 1;
    const int64_t n_groups = grouped ? a->n_groups : 1;
    const int64_t group_size = n_experts / n_groups;

    double *score = malloc((size_t)n_experts * sizeof *score);
    double *selection = malloc((size_t)n_experts * sizeof *selection);
    unsigned char *taken = malloc((size_t)n_experts);
    double *g_score = malloc((size_t)n_groups * sizeof *g_score);
    unsigned char *g_chosen = malloc((size_t)n_groups);
    if (!score || !selection || !taken || !g_score || !g_chosen) {
        free(score);
        free(selection);
        free(taken);
        free(g_score);
        free(g_chosen);
        return mki_error(MK_ENOMEM, "mk_moe_gate: cannot allocate the workspace for n_experts = %lld",
                         (long long)n_experts);
    }

    /* Overwritten, not accumulated: a call with 0 tokens leaves all-zero counts. */
    if (a->counts)
        for (int64_t e = 0; e < n_experts; e++) a->counts[e] = 0;

    for (int64_t t = 0; t < a->n_tokens; t++) {
        const float *logits = a->logits + t * a->logits_stride;
        if (a->score_func == MK_SCORE_SOFTMAX)
            softmax_scores(logits, n_experts, score);
        else
            for (int64_t e = 0; e < n_experts; e++) score[e] = sigmoid((double)logits[e]);
        for (int64_t e = 0; e < n_experts; e++)
            selection[e] = score[e] + (a->expert_bias ? (double)a->expert_bias[e] : 0.0);

        /* Group-limited selection: keep the topk_groups best groups; with n_groups <= 1 the single "group" holds
         * every expert and is always chosen, which is plain top-k. */
        for (int64_t g = 0; g < n_groups; g++) {
            g_score[g] = group_score(selection, g * group_size, group_size, a->expert_bias != NULL);
            g_chosen[g] = !grouped;
        }
        if (grouped) {
            for (int64_t pick = 0; pick < a->topk_groups; pick++) {
                int64_t best = -1;
                for (int64_t g = 0; g < n_groups; g++)
                    if (!g_chosen[g] && (best < 0 || ranks_before(g_score[g], g, g_score[best], best))) best = g;
                g_chosen[best] = 1;
            }
        }

        int32_t *ids = a->ids + t * a->top_k;
        float *weights = a->weights + t * a->top_k;
        for (int64_t e = 0; e < n_experts; e++) taken[e] = 0;
        double sum = 0.0;
        for (int64_t slot = 0; slot < a->top_k; slot++) {
            int64_t best = -1;
            for (int64_t e = 0; e < n_experts; e++) {
                if (taken[e] || !g_chosen[e / group_size] || isnan(selection[e])) continue;
                if (best < 0 || ranks_before(selection[e], e, selection[best], best)) best = e;
            }
            ids[slot] = (int32_t)best; /* -1 when no eligible non-NaN expert is left */
            if (best >= 0) {
                taken[best] = 1;
                sum += score[best];
            }
        }
        /* The weights come from the unbiased scores; the bias only steered the choice. */
        const double divisor = (a->renormalize && sum > 0.0) ? sum : 1.0;
        for (int64_t slot = 0; slot < a->top_k; slot++) {
            if (ids[slot] < 0) {
                weights[slot] = 0.0f;
                continue;
            }
            weights[slot] = (float)(score[ids[slot]] / divisor * (double)a->routed_scaling_factor);
            if (a->counts) a->counts[ids[slot]]++;
        }
    }

    free(score);
    free(selection);
    free(taken);
    free(g_score);
    free(g_chosen);
    return MK_OK;
}

/* delta_e before the optional zero-mean shift. */
static double bias_delta(double mean, int32_t count, float rate, mk_bias_rule rule) {
    const double dev = mean - (double)count;
    double step;
    if (rule == MK_BIAS_ADAPTIVE) {
        step = dev / mean;
        step = step < -1.0 ? -1.0 : step > 1.0 ? 1.0 : step;
    } else {
        step = (dev > 0.0) - (dev < 0.0); /* sign(0) = 0: an expert exactly at the mean is left alone */
    }
    return (double)rate * step;
}

mk_status mki_ref_expert_bias_update(float *expert_bias, const int32_t *counts, int64_t n_experts, float rate,
                                     mk_bias_rule rule, int zero_mean) {
    double total = 0.0;
    for (int64_t e = 0; e < n_experts; e++) total += (double)counts[e];
    const double mean = total / (double)n_experts;
    /* Every count 0 (counts are >= 0): no information about the load, and the adaptive rule would divide by 0. */
    if (mean == 0.0) return MK_OK;

    /* delta_e is recomputed in the second pass rather than stored, so no workspace (and no ENOMEM) is needed. */
    double delta_mean = 0.0;
    if (zero_mean) {
        for (int64_t e = 0; e < n_experts; e++) delta_mean += bias_delta(mean, counts[e], rate, rule);
        delta_mean /= (double)n_experts;
    }
    for (int64_t e = 0; e < n_experts; e++)
        expert_bias[e] = (float)((double)expert_bias[e] + (bias_delta(mean, counts[e], rate, rule) - delta_mean));
    return MK_OK;
}
