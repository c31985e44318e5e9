/*
 * attention.c: reference sink attention, one joint softmax per (query, head) over every sink token, the visible
 * (causal, optionally windowed) cache keys and an optional per-head sink logit. All tensors are normalised mk_heads
 * views read through mki_heads_get (F32 or BF16, widened exactly); logits, softmax and the weighted sum are double.
 */
#include "ref.h"

#include <math.h>
#include <stdlib.h>

/* scale * q[t, hq] . keys[j, g], in double. */
static double logit(const mk_heads *q, int64_t t, int64_t hq, const mk_heads *keys, int64_t j, int64_t g,
                    double scale) {
    double dot = 0.0;
    for (int64_t i = 0; i < q->head_dim; i++)
        dot += (double)mki_heads_get(q, t, hq, i) * (double)mki_heads_get(keys, j, g, i);
    return scale * dot;
}

mk_status mki_ref_sink_attention(const mk_attn_args *a) {
    const int64_t n_queries = a->q.n_tokens, n_q_heads = a->q.n_heads;
    const int64_t n_cache = a->k_cache.n_tokens, n_kv_heads = a->k_cache.n_heads;
    const int64_t n_sinks = a->sink_k.n_tokens, head_dim_v = a->v_cache.head_dim;
    const int64_t q_per_kv = n_q_heads / n_kv_heads;
    const double scale = (double)a->scale;
    if (n_queries == 0) return MK_OK;

    /* Logits of the sinks first, then of cache keys lo..pos; +1 keeps the request non-zero. */
    const int64_t n_logits = n_sinks + n_cache + 1;
    double *logits = malloc((size_t)n_logits * sizeof *logits);
    double *acc = malloc((size_t)head_dim_v * sizeof *acc);
    if (!logits || !acc) {
        free(logits);
        free(acc);
        return mki_error(MK_ENOMEM, "mk_sink_attention: cannot allocate %lld bytes of workspace",
                         (long long)((n_logits + head_dim_v) * (int64_t)sizeof(double)));
    }

    for (int64_t t = 0; t < n_queries; t++) {
        const int64_t pos = n_cache - n_queries + t;
        int64_t lo = 0;
        if (a->window > 0 && pos - a->window + 1 > 0) lo = pos - a->window + 1;
        const int64_t n_visible = pos >= lo ? pos - lo + 1 : 0;

        for (int64_t h = 0; h < n_q_heads; h++) {
            const int64_t g = h / q_per_kv;

            /* Sinks are never masked: every query sees all of them whatever the window. */
            double max_logit = -INFINITY;
            for (int64_t s = 0; s < n_sinks; s++) logits[s] = logit(&a->q, t, h, &a->sink_k, s, g, scale);
            for (int64_t j = 0; j < n_visible; j++)
                logits[n_sinks + j] = logit(&a->q, t, h, &a->k_cache, lo + j, g, scale);
            for (int64_t l = 0; l < n_sinks + n_visible; l++)
                if (logits[l] > max_logit) max_logit = logits[l];
            /* The sink logit joins the max too, so a dominant one cannot overflow exp. */
            const double sink_logit = a->sink_logit ? (double)a->sink_logit[h] : -(double)INFINITY;
            if (sink_logit > max_logit) max_logit = sink_logit;

            /* Unnormalised weights e^{l - max}; the division by the denominator comes once at the end. */
            double denominator = a->sink_logit ? exp(sink_logit - max_logit) : 0.0;
            for (int64_t i = 0; i < head_dim_v; i++) acc[i] = 0.0;
            for (int64_t s = 0; s < n_sinks; s++) {
                const double p = exp(logits[s] - max_logit);
                denominator += p;
                if (a->sink_v.data) /* NULL sink values are zeros: they take softmax mass but add nothing */
                    for (int64_t i = 0; i < head_dim_v; i++) acc[i] += p * (double)mki_heads_get(&a->sink_v, s, g, i);
            }
            for (int64_t j = 0; j < n_visible; j++) {
                const double p = exp(logits[n_sinks + j] - max_logit);
                denominator += p;
                for (int64_t i = 0; i < head_dim_v; i++)
                    acc[i] += p * (double)mki_heads_get(&a->v_cache, lo + j, g, i);
            }
            for (int64_t i = 0; i < head_dim_v; i++) mki_heads_set(&a->out, t, h, i, (float)(acc[i] / denominator));
        }
    }

    free(logits);
    free(acc);
    return MK_OK;
}
