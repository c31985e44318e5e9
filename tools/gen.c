/* gen.c: `moekit gen`, a random openPangu-R checkpoint (config.json + model.safetensors) through mkm_gen (model/). */
#include "cli.h"
#include "model.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void cli_gen_usage(FILE *out) {
    fprintf(out,
            "moekit gen --preset tiny|pangu-r-72b [--layers N] [--seed S] [--dtype f32|bf16] --out DIR\n"
            "  --preset P   tiny: the openPangu-R-72B structure at hidden 64 (80 experts, top-8, 32/2 heads,\n"
            "               q/k head 192, 128 sinks; layer 0 dense, layer 1 MoE), 8.5 MB in f32;\n"
            "               pangu-r-72b: the real dimensions (--layers 2 writes about 6.4 GB in bf16)\n"
            "  --layers N   number of layers (default: the preset's 2 / 50); the first min(dense, N/2) are dense\n"
            "  --seed S     RNG seed (default 1)\n"
            "  --dtype D    weight dtype (default f32 for tiny, bf16 for pangu-r-72b);\n"
            "               mlp.e_score_correction_bias is always f32\n"
            "  --out DIR    output directory (created if missing)\n");
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "moekit gen: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n\n");
    cli_gen_usage(stderr);
    return CLI_USAGE;
}

static int parse_u64(const char *s, unsigned long long *out) {
    if (!s || !*s || *s == '-') return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end) return 0;
    *out = v;
    return 1;
}

int cli_gen(int argc, char **argv) {
    const char *preset_name = NULL, *dtype_name = NULL, *out = NULL;
    unsigned long long layers = 0, seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            cli_gen_usage(stdout);
            return CLI_OK;
        }
        /* --opt value and --opt=value */
        const char *v = NULL;
        char opt[32];
        const char *eq = strchr(a, '=');
        if (!strncmp(a, "--", 2) && eq && (size_t)(eq - a) < sizeof opt) {
            memcpy(opt, a, (size_t)(eq - a));
            opt[eq - a] = '\0';
            v = eq + 1;
        } else {
            snprintf(opt, sizeof opt, "%s", a);
        }
        const int known = !strcmp(opt, "--preset") || !strcmp(opt, "--layers") || !strcmp(opt, "--seed") ||
                          !strcmp(opt, "--dtype") || !strcmp(opt, "--out");
        if (!known) return usage_error("unknown argument '%s'", a);
        if (!v) {
            if (i + 1 >= argc) return usage_error("%s needs a value", a);
            v = argv[++i];
        }
        if (!strcmp(opt, "--preset"))
            preset_name = v;
        else if (!strcmp(opt, "--dtype"))
            dtype_name = v;
        else if (!strcmp(opt, "--out"))
            out = v;
        else if (!strcmp(opt, "--layers")) {
            if (!parse_u64(v, &layers) || layers < 1 || layers > MKM_MAX_LAYERS)
                return usage_error("--layers '%s' must be an integer in [1, 256]", v);
        } else if (!parse_u64(v, &seed))
            return usage_error("--seed '%s' must be a non-negative integer", v);
    }
    if (!preset_name) return usage_error("%s", "--preset is required");
    if (!out) return usage_error("%s", "--out is required");
    mkm_preset preset;
    if (!strcmp(preset_name, "tiny"))
        preset = MKM_PRESET_TINY;
    else if (!strcmp(preset_name, "pangu-r-72b"))
        preset = MKM_PRESET_PANGU_R_72B;
    else
        return usage_error("unknown preset '%s' (tiny or pangu-r-72b)", preset_name);
    mk_dtype dtype = preset == MKM_PRESET_TINY ? MK_F32 : MK_BF16;
    if (dtype_name) {
        if (!strcmp(dtype_name, "f32"))
            dtype = MK_F32;
        else if (!strcmp(dtype_name, "bf16"))
            dtype = MK_BF16;
        else
            return usage_error("unknown dtype '%s' (f32 or bf16)", dtype_name);
    }
    mk_status s = mkm_gen(preset, (int64_t)layers, (uint64_t)seed, dtype, out);
    if (s != MK_OK) {
        fprintf(stderr, "moekit gen: %s: %s\n", mk_status_str(s), mk_last_error());
        return CLI_FAILED;
    }
    mkm_config cfg;
    if (mkm_config_load(out, &cfg) != MK_OK) {
        fprintf(stderr, "moekit gen: the config just written does not load: %s\n", mk_last_error());
        return CLI_FAILED;
    }
    int n_dense = 0;
    for (int64_t i = 0; i < cfg.num_hidden_layers; i++) n_dense += cfg.is_dense_layer[i];
    printf("moekit gen: wrote %s/config.json and %s/model.safetensors (preset %s, %s, seed %llu): %lld layers "
           "(%d dense, %lld MoE), hidden %lld, %lld experts top-%lld, vocab %lld\n",
           out, out, preset_name, mk_dtype_name(dtype), seed, (long long)cfg.num_hidden_layers, n_dense,
           (long long)(cfg.num_hidden_layers - n_dense), (long long)cfg.hidden_size, (long long)cfg.num_experts,
           (long long)cfg.num_experts_per_tok, (long long)cfg.vocab_size);
    return CLI_OK;
}
