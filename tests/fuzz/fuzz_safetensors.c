/* fuzz_safetensors.c: libFuzzer harness for mkm_st_open_buffer (model/safetensors.c + model/json.c) on arbitrary
 * bytes. When a buffer is accepted, every tensor must lie inside it: the harness reads each one completely
 * (mkm_tensor_convert to F32 and BF16), so AddressSanitizer catches any bounds slip, and looks each one up by name. */
#include "model.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* a private copy, exactly size bytes, so ASan sees any read past the end */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    mkm_st *st = NULL;
    mk_status s = mkm_st_open_buffer(copy, size, &st);
    if (s != MK_OK) {
        if (st || mk_last_error()[0] == '\0') abort();
        free(copy);
        return 0;
    }
    const size_t n = mkm_st_count(st);
    for (size_t i = 0; i < n; i++) {
        const mkm_tensor *t = mkm_st_at(st, i);
        if (!t || !t->name) abort();
        const uint8_t *p = t->data;
        if (t->n_bytes && (p < copy || p + t->n_bytes > copy + size)) abort();
        size_t elems = t->n_bytes / (t->dtype == MKM_ST_F32 ? 4 : 2);
        if (elems <= (1u << 20)) {
            float *f = malloc((elems ? elems : 1) * sizeof *f);
            uint16_t *h = malloc((elems ? elems : 1) * sizeof *h);
            if (f && h) {
                if (mkm_tensor_convert(t, MK_F32, f, elems) != MK_OK) abort();
                if (mkm_tensor_convert(t, MK_BF16, h, elems) != MK_OK) abort();
            }
            free(f);
            free(h);
        }
        const mkm_tensor *g = NULL;
        if (mkm_st_get(st, t->name, 7u, t->n_dims, t->shape, &g) != MK_OK || g != t) abort();
        if (mkm_st_get(st, t->name, 0u, -1, NULL, &g) == MK_OK) abort(); /* no dtype allowed */
    }
    const mkm_tensor *g = NULL;
    if (mkm_st_get(st, "model.embed_tokens.weight", 7u, -1, NULL, &g) == MK_OK && !g) abort();
    mkm_st_close(st);
    free(copy);
    return 0;
}
