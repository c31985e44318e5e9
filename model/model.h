/*
 * model.h: the thin reference model of openPangu-R (internal to moekit's tools; not installed). It loads a Hugging
 * Face config.json + safetensors checkpoint and runs the full forward pass through the public moekit API only.
 *
 *   config.c       strict JSON parser + mkm_config (HF keys of openPangu-R-72B-2512 and the vLLM aliases)
 *   safetensors.c  mmap'd single-file and sharded (model.safetensors.index.json) checkpoints, bounds-checked
 *   gen.c          writes a random checkpoint with the exact HF tensor names (`moekit gen`)
 *   forward.c      weights, KV cache, prefill/decode, greedy generation (`moekit run`)
 * Every function returns mk_status and reports through the same thread-local message as the library
 * (mkm_error below), naming the file, key or tensor at fault.
 */
#ifndef MOEKIT_MODEL_H
#define MOEKIT_MODEL_H

#include "moekit.h"

#include <stddef.h>
#include <stdint.h>

/* Records the message as mk_last_error() of this thread and returns status (wraps the library's mki_error). */
mk_status mkm_error(mk_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- config ---------------------------------------------------------------------------------------------- */
#define MKM_MAX_LAYERS 256

typedef struct mkm_config {
    int64_t hidden_size;              /* 4608 */
    int64_t intermediate_size;        /* dense MLP width, 10240 */
    int64_t moe_intermediate_size;    /* routed expert width, 1280 */
    int64_t shared_expert_intermediate_size; /* 2560 (or moe_intermediate_size * n_shared_experts) */
    int64_t num_hidden_layers;        /* 50 (MTP layers not included) */
    int64_t num_attention_heads;      /* 64 */
    int64_t num_key_value_heads;      /* 4 */
    int64_t qk_rope_dim, qk_nope_dim; /* 64, 128: head_dim_qk = their sum */
    int64_t v_channels;               /* 128 */
    int64_t num_experts;              /* 80 (alias n_routed_experts) */
    int64_t num_experts_per_tok;      /* 8 */
    int64_t vocab_size;
    int64_t max_position_embeddings;
    int64_t param_sink_number;        /* 128; 0 = no sink tokens */
    int param_sink_with_value;        /* 1: learned sink values; 0: zeros */
    int norm_topk_prob;
    int router_enable_expert_bias;
    int sandwich_norm;
    int tie_word_embeddings;
    int rope_interleaved;             /* default 1 when the key is absent */
    int64_t num_mtp_layers;           /* loaded and ignored */
    double rms_norm_eps;
    double rope_theta;
    double routed_scaling_factor;
    int64_t sliding_window;           /* 0 = none */
    uint8_t is_dense_layer[MKM_MAX_LAYERS]; /* from mlp_only_layers, or first_k_dense_replace */
} mkm_config;

/* Parses DIR/config.json (path may also be the file). Unknown keys are ignored; a missing or contradictory
 * required key is MK_EFORMAT naming the key; malformed JSON is MK_EFORMAT naming line and column. */
mk_status mkm_config_load(const char *path, mkm_config *config);
/* The same from a buffer (for the fuzzer and tests). */
mk_status mkm_config_parse(const char *json, size_t len, mkm_config *config);

/* ---- safetensors ------------------------------------------------------------------------------------------- */
typedef enum mkm_st_dtype { MKM_ST_F32 = 0, MKM_ST_BF16 = 1, MKM_ST_F16 = 2 } mkm_st_dtype;

#define MKM_MAX_DIMS 8

typedef struct mkm_tensor {
    const char *name;
    mkm_st_dtype dtype;
    int n_dims;
    int64_t shape[MKM_MAX_DIMS];
    const void *data;  /* inside the mmap'd file; valid until mkm_st_close */
    size_t n_bytes;
} mkm_tensor;

typedef struct mkm_st mkm_st; /* an opened checkpoint (one or many shards) */

/* Opens DIR/model.safetensors, or the shards listed in DIR/model.safetensors.index.json, or a single file path.
 * Every header is bounds-checked: offsets inside the file, sizes equal to shape x dtype, no overlaps, valid JSON,
 * known dtypes (F32, BF16, F16; anything else is MK_EFORMAT naming the tensor). */
mk_status mkm_st_open(const char *path, mkm_st **st);
/* Parses one safetensors file image already in memory (for the fuzzer); the tensors point into buf. */
mk_status mkm_st_open_buffer(const void *buf, size_t len, mkm_st **st);
void mkm_st_close(mkm_st *st);
size_t mkm_st_count(const mkm_st *st);
const mkm_tensor *mkm_st_at(const mkm_st *st, size_t i);
/* Looks a tensor up by name; MK_EFORMAT naming it when missing, or when its dtype is not in the allowed mask
 * (bit (1 << dtype)) or its shape differs from shape[0..n_dims) (pass n_dims = -1 to skip the shape check). */
mk_status mkm_st_get(const mkm_st *st, const char *name, unsigned dtype_mask, int n_dims, const int64_t *shape,
                     const mkm_tensor **tensor);
/* Copies a tensor into F32 or BF16 (F16 widened exactly; F32 -> BF16 rounded to nearest even). */
mk_status mkm_tensor_convert(const mkm_tensor *t, mk_dtype dst_dtype, void *dst, size_t dst_elems);

/* ---- gen -------------------------------------------------------------------------------------------------- */
typedef enum mkm_preset { MKM_PRESET_TINY = 0, MKM_PRESET_PANGU_R_72B = 1 } mkm_preset;

/* Writes OUT_DIR/config.json and OUT_DIR/model.safetensors with the exact HF tensor names and random weights
 * (seeded; post-norm gains depth-scaled). n_layers <= 0 keeps the preset's count. dtype of weights: F32 or BF16. */
mk_status mkm_gen(mkm_preset preset, int64_t n_layers, uint64_t seed, mk_dtype dtype, const char *out_dir);

/* ---- model and forward pass -------------------------------------------------------------------------------- */
typedef struct mkm_model mkm_model;

typedef struct mkm_run_options {
    mk_dtype kv_dtype;   /* KV cache F32 or BF16 */
    int64_t max_context; /* KV cache capacity in tokens (prompt + generated) */
    int n_threads;       /* 0 = library default */
} mkm_run_options;

mk_status mkm_model_load(const char *dir, const mkm_run_options *options, mkm_model **model);
void mkm_model_free(mkm_model *model);
const mkm_config *mkm_model_config(const mkm_model *model);
/* Clears the KV cache (a new sequence). */
void mkm_model_reset(mkm_model *model);
/* Runs n_tokens tokens at the next positions of the sequence (prefill when n_tokens > 1, decode when 1) and writes
 * the logits of the LAST token to logits[vocab_size] (all tokens' logits when all_logits is not NULL:
 * all_logits[n_tokens * vocab_size]). */
mk_status mkm_model_forward(mkm_model *model, const int32_t *tokens, int64_t n_tokens, float *logits,
                            float *all_logits);

/* Per-op wall time accumulated by forward (for `moekit run`'s breakdown). */
typedef struct mkm_timing {
    double seconds[MK_OP_COUNT + 4]; /* MK_OP_* then: matmul (dense projections), embed, lm_head, other */
    int64_t calls[MK_OP_COUNT + 4];
} mkm_timing;
const mkm_timing *mkm_model_timing(const mkm_model *model);

#endif /* MOEKIT_MODEL_H */
