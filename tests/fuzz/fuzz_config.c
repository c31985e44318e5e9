/* fuzz_config.c: libFuzzer harness for mkm_config_parse (model/config.c + model/json.c) on arbitrary bytes.
 * Any input must give MK_OK or an error status with a message, never a crash, a sanitizer report or a leak. */
#include "model.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mkm_config cfg;
    mk_status s = mkm_config_parse((const char *)data, size, &cfg);
    if (s != MK_OK && mk_last_error()[0] == '\0') abort(); /* every failure must say why */
    if (s == MK_OK) {
        /* the invariants the forward pass relies on */
        if (cfg.num_hidden_layers < 1 || cfg.num_hidden_layers > MKM_MAX_LAYERS) abort();
        if (cfg.hidden_size < 1 || cfg.num_key_value_heads < 1) abort();
        if (cfg.num_attention_heads % cfg.num_key_value_heads != 0) abort();
        int moe = 0;
        for (int64_t i = 0; i < cfg.num_hidden_layers; i++) moe |= !cfg.is_dense_layer[i];
        if (moe && (cfg.num_experts_per_tok < 1 || cfg.num_experts_per_tok > cfg.num_experts)) abort();
        if (!(cfg.rms_norm_eps > 0) || !(cfg.rope_theta > 0)) abort();
    }
    return 0;
}
