/*
 * run.c: `moekit run`, greedy generation with the reference model (model/forward.c): loads a checkpoint, prefills
 * the prompt, decodes token by token with the KV cache, and reports the tokens, prefill / decode speed and a per-op
 * time breakdown (from mkm_model_timing).
 */
#include "cli.h"
#include "model.h"
#include "moekit.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void cli_run_usage(FILE *out) {
    fprintf(out,
            "\n"
            "moekit run --model DIR --prompt IDS [options]\n"
            "  Loads DIR (config.json + model.safetensors, e.g. from `moekit gen`), prefills the prompt and decodes\n"
            "  greedily (argmax, lowest id on ties) with the KV cache.\n"
            "  --model DIR          checkpoint directory\n"
            "  --prompt IDS         prompt token ids, comma separated (e.g. 1,2,3)\n"
            "  --max-new N          tokens to generate (default 16): one prefill + N-1 decode steps\n"
            "  --threads N          kernel threads (default: MOEKIT_NUM_THREADS, else the physical cores)\n"
            "  --kv f32|bf16        KV-cache dtype (default f32)\n"
            "  --max-context N      KV-cache capacity in tokens (default: prompt length + N)\n"
            "  --dump-logits FILE   write the logits as raw little-endian float32, N rows of vocab_size values, no\n"
            "                       header: row 0 = the prefill's logits of the last prompt token, row i (i >= 1) =\n"
            "                       the logits of decode step i (after feeding generated token i); token i+1 is\n"
            "                       argmax(row i). File size = N * vocab_size * 4 bytes.\n"
            "  --quiet              print only the generated ids\n"
            "  MOEKIT_MODEL_PACK=0|1  never / always pack the weight matrices at load (default: packed for the\n"
            "                       SIMD kernels, raw for the reference ones; results are the same)\n"
            "  Output: the generated ids on a line \"generated: a,b,c\", prefill and decode tokens/s, and the time\n"
            "  per op (calls, seconds, share) for each phase. A progress line goes to stderr when stderr is a\n"
            "  terminal or the run takes more than a few seconds.\n");
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    if (!s || !*s) return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

/* "1,2,3" -> ids; returns the count, or -1 on a malformed list. */
static int64_t parse_ids(const char *s, int32_t **ids) {
    int64_t cap = 16, n = 0;
    int32_t *v = malloc((size_t)cap * sizeof *v);
    if (!v) return -1;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX) goto bad;
        if (n == cap) {
            cap *= 2;
            int32_t *nv = realloc(v, (size_t)cap * sizeof *v);
            if (!nv) goto bad;
            v = nv;
        }
        v[n++] = (int32_t)x;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') {
            p++;
            if (!*p) goto bad;
        } else if (*p) {
            goto bad;
        }
    }
    if (n == 0) goto bad;
    *ids = v;
    return n;
bad:
    free(v);
    return -1;
}

static const char *slot_name(int i) {
    static const char *extra[] = {"matmul", "embed", "lm_head", "other"};
    if (i < MK_OP_COUNT) return mk_op_name((mk_op)i);
    return extra[i - MK_OP_COUNT];
}

enum { N_SLOTS = MK_OP_COUNT + 4 };

static void print_breakdown(const char *phase, const mkm_timing *t, double wall) {
    double total = 0;
    for (int i = 0; i < N_SLOTS; i++) total += t->seconds[i];
    char buf[32];
    cli_format_seconds(buf, sizeof buf, wall);
    printf("%s: per-op time (wall %s; ops sum to %.1f%% of it)\n", phase, buf, wall > 0 ? 100.0 * total / wall : 0.0);
    printf("  %-16s %8s %12s %7s %12s\n", "op", "calls", "seconds", "%", "per call");
    for (int i = 0; i < N_SLOTS; i++) {
        if (t->calls[i] == 0) continue;
        char per[32];
        cli_format_seconds(per, sizeof per, t->seconds[i] / (double)t->calls[i]);
        printf("  %-16s %8lld %12.6f %6.1f%% %12s\n", slot_name(i), (long long)t->calls[i], t->seconds[i],
               total > 0 ? 100.0 * t->seconds[i] / total : 0.0, per);
    }
}

static int32_t argmax(const float *v, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return (int32_t)best;
}

static int fail(const char *what, mk_status s) {
    fprintf(stderr, "moekit run: %s: %s\n  %s\n", what, mk_status_str(s), mk_last_error());
    return CLI_FAILED;
}

int cli_run(int argc, char **argv) {
    const char *model_dir = NULL, *prompt = NULL, *dump_path = NULL;
    int64_t max_new = 16, threads = 0, max_context = 0;
    mk_dtype kv = MK_F32;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            cli_run_usage(stdout);
            return CLI_OK;
        } else if (!strcmp(a, "--quiet")) {
            quiet = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "moekit run: %s needs a value (see moekit help)\n", a);
            return CLI_USAGE;
        }
        i++;
        if (!strcmp(a, "--model")) {
            model_dir = v;
        } else if (!strcmp(a, "--prompt")) {
            prompt = v;
        } else if (!strcmp(a, "--dump-logits")) {
            dump_path = v;
        } else if (!strcmp(a, "--max-new")) {
            if (!parse_i64(v, 1, 1 << 24, &max_new)) {
                fprintf(stderr, "moekit run: --max-new %s is not an integer in [1, 2^24]\n", v);
                return CLI_USAGE;
            }
        } else if (!strcmp(a, "--threads")) {
            if (!parse_i64(v, 1, 4096, &threads)) {
                fprintf(stderr, "moekit run: --threads %s is not an integer in [1, 4096]\n", v);
                return CLI_USAGE;
            }
        } else if (!strcmp(a, "--max-context")) {
            if (!parse_i64(v, 1, INT32_MAX, &max_context)) {
                fprintf(stderr, "moekit run: --max-context %s is not a positive integer\n", v);
                return CLI_USAGE;
            }
        } else if (!strcmp(a, "--kv")) {
            if (!strcmp(v, "f32"))
                kv = MK_F32;
            else if (!strcmp(v, "bf16"))
                kv = MK_BF16;
            else {
                fprintf(stderr, "moekit run: --kv %s is not f32 or bf16\n", v);
                return CLI_USAGE;
            }
        } else {
            fprintf(stderr, "moekit run: unknown option %s (see moekit help)\n", a);
            return CLI_USAGE;
        }
    }
    if (!model_dir || !prompt) {
        fprintf(stderr, "moekit run: --model and --prompt are required (see moekit help)\n");
        return CLI_USAGE;
    }
    int32_t *ids = NULL;
    const int64_t n_prompt = parse_ids(prompt, &ids);
    if (n_prompt < 0) {
        fprintf(stderr, "moekit run: --prompt '%s' is not a comma-separated list of token ids\n", prompt);
        return CLI_USAGE;
    }

    if (max_context > 0 && n_prompt + max_new - 1 > max_context) {
        fprintf(stderr, "moekit run: --max-context %lld is too small for %lld prompt tokens + %lld decode steps\n",
                (long long)max_context, (long long)n_prompt, (long long)(max_new - 1));
        free(ids);
        return CLI_USAGE;
    }
    int rc = CLI_FAILED;
    mkm_model *model = NULL;
    float *logits = NULL;
    int32_t *out = NULL;
    FILE *dump = NULL;
    mkm_run_options opt = {kv, max_context > 0 ? max_context : n_prompt + max_new, (int)threads};
    const double t_load0 = now_seconds();
    mk_status s = mkm_model_load(model_dir, &opt, &model);
    if (s != MK_OK) {
        rc = fail("cannot load the model", s);
        goto done;
    }
    const double t_load = now_seconds() - t_load0;
    const mkm_config *c = mkm_model_config(model);
    const int64_t V = c->vocab_size;
    logits = malloc((size_t)V * sizeof *logits);
    out = malloc((size_t)max_new * sizeof *out);
    if (!logits || !out) {
        fprintf(stderr, "moekit run: out of memory\n");
        goto done;
    }
    if (dump_path && !(dump = fopen(dump_path, "wb"))) {
        fprintf(stderr, "moekit run: cannot open %s for writing: %s\n", dump_path, strerror(errno));
        goto done;
    }
    if (!quiet) {
        int64_t n_dense = 0;
        for (int64_t i = 0; i < c->num_hidden_layers; i++) n_dense += c->is_dense_layer[i] != 0;
        char lb[32];
        cli_format_seconds(lb, sizeof lb, t_load);
        printf("model: %s: %lld layers (%lld dense, %lld MoE), hidden %lld, heads %lld/%lld, experts %lld top-%lld, "
               "vocab %lld; loaded in %s\n",
               model_dir, (long long)c->num_hidden_layers, (long long)n_dense,
               (long long)(c->num_hidden_layers - n_dense), (long long)c->hidden_size,
               (long long)c->num_attention_heads, (long long)c->num_key_value_heads, (long long)c->num_experts,
               (long long)c->num_experts_per_tok, (long long)c->vocab_size, lb);
        printf("run: isa %s, %d threads, kv %s, max_context %lld, prompt %lld tokens, max-new %lld\n",
               mk_isa_name(mk_selected_isa()), mk_get_num_threads(), mk_dtype_name(kv), (long long)opt.max_context,
               (long long)n_prompt, (long long)max_new);
        fflush(stdout);
    }

    const int tty = isatty(STDERR_FILENO);
    if (tty) {
        fprintf(stderr, "prefill of %lld tokens...", (long long)n_prompt);
        fflush(stderr);
    }
    const double t0 = now_seconds();
    s = mkm_model_forward(model, ids, n_prompt, logits, NULL);
    if (s != MK_OK) {
        if (tty) fputs("\r\033[K", stderr);
        rc = fail("prefill failed", s);
        goto done;
    }
    const double t_prefill = now_seconds() - t0;
    if (tty) fputs("\r\033[K", stderr);
    mkm_timing prefill_timing = *mkm_model_timing(model);
    if (dump && fwrite(logits, sizeof(float), (size_t)V, dump) != (size_t)V) goto write_error;
    out[0] = argmax(logits, V);

    const double t1 = now_seconds();
    double last_progress = t1;
    int progress_shown = 0;
    for (int64_t i = 1; i < max_new; i++) {
        s = mkm_model_forward(model, &out[i - 1], 1, logits, NULL);
        if (s != MK_OK) {
            if (progress_shown) fputc('\n', stderr);
            rc = fail("decode failed", s);
            goto done;
        }
        if (dump && fwrite(logits, sizeof(float), (size_t)V, dump) != (size_t)V) goto write_error;
        out[i] = argmax(logits, V);
        const double tn = now_seconds();
        if ((tty && tn - last_progress > 0.5) || (!tty && tn - last_progress > 10.0)) {
            const double el = tn - t1;
            fprintf(stderr, "%sdecode %lld/%lld tokens, %.2f tok/s%s", tty ? "\r" : "", (long long)i,
                    (long long)(max_new - 1), (double)i / el, tty ? "" : "\n");
            fflush(stderr);
            last_progress = tn;
            progress_shown = tty;
        }
    }
    const double t_decode = now_seconds() - t1;
    if (progress_shown) fputs("\r\033[K", stderr);
    if (dump) {
        if (fclose(dump) != 0) {
            dump = NULL;
            goto write_error;
        }
        dump = NULL;
    }

    printf("generated: ");
    for (int64_t i = 0; i < max_new; i++) printf("%s%d", i ? "," : "", out[i]);
    printf("\n");
    if (!quiet) {
        char pb[32], db[32];
        cli_format_seconds(pb, sizeof pb, t_prefill);
        printf("prefill: %lld tokens in %s, %.2f tokens/s\n", (long long)n_prompt, pb, (double)n_prompt / t_prefill);
        if (max_new > 1) {
            char tb[32];
            cli_format_seconds(tb, sizeof tb, t_decode);
            cli_format_seconds(db, sizeof db, t_decode / (double)(max_new - 1));
            printf("decode: %lld tokens in %s, %.2f tokens/s (%s per token)\n", (long long)(max_new - 1), tb,
                   (double)(max_new - 1) / t_decode, db);
        }
        if (dump_path) printf("logits: %lld rows x %lld float32 written to %s\n", (long long)max_new, (long long)V,
                              dump_path);
        print_breakdown("prefill", &prefill_timing, t_prefill);
        if (max_new > 1) {
            mkm_timing d = *mkm_model_timing(model);
            for (int i = 0; i < N_SLOTS; i++) {
                d.seconds[i] -= prefill_timing.seconds[i];
                d.calls[i] -= prefill_timing.calls[i];
            }
            print_breakdown("decode", &d, t_decode);
        }
    }
    rc = CLI_OK;
    goto done;
write_error:
    fprintf(stderr, "moekit run: cannot write %s: %s\n", dump_path, strerror(errno));
    rc = CLI_FAILED;
done:
    if (dump) fclose(dump);
    mkm_model_free(model);
    free(logits);
    free(out);
    free(ids);
    return rc;
}
