/*
 * ref.h: the reference kernels, the oracle of moekit. Plain C, double accumulation, written for clarity and never
 * optimised. Each takes arguments already validated and normalised by dispatch/validate.c (see internal.h).
 */
#ifndef MOEKIT_REF_H
#define MOEKIT_REF_H

#include "internal.h"

MKI_HIDDEN mk_status mki_ref_grouped_gemm(const mk_grouped_gemm_args *a);
MKI_HIDDEN mk_status mki_ref_moe_ffn(const mk_moe_ffn_args *a);
MKI_HIDDEN mk_status mki_ref_swiglu(const float *gate, int64_t gate_stride, const float *up, int64_t up_stride,
                                    float *out, int64_t out_stride, int64_t n_rows, int64_t dim);
MKI_HIDDEN mk_status mki_ref_moe_gate(const mk_moe_gate_args *a);
MKI_HIDDEN mk_status mki_ref_expert_bias_update(float *expert_bias, const int32_t *counts, int64_t n_experts,
                                                float rate, mk_bias_rule rule, int zero_mean);
MKI_HIDDEN mk_status mki_ref_rope(const mk_rope_cache *cache, const int32_t *positions, const mk_heads *q,
                                  const mk_heads *k);
/* Rotates one head's rotary slice (rotary_dim values starting at dim rotary_offset, held in double) in place: the
 * one definition of the angle and the pairing, shared by rope and knorm_rope. */
MKI_HIDDEN void mki_ref_rope_rotate(const mk_rope_config *config, int64_t position, double *slice);
MKI_HIDDEN mk_status mki_ref_rmsnorm(const float *x, int64_t x_stride, const float *weight, float eps,
                                     int64_t n_rows, int64_t dim, float *out, int64_t out_stride);
MKI_HIDDEN mk_status mki_ref_rmsnorm_add(float *residual, int64_t residual_stride, const float *branch,
                                         int64_t branch_stride, const float *weight, float eps, int64_t n_rows,
                                         int64_t dim);
MKI_HIDDEN mk_status mki_ref_knorm(const mk_heads *k, const float *weight, float eps);
MKI_HIDDEN mk_status mki_ref_knorm_rope(const mk_heads *k, const float *weight, float eps,
                                        const mk_rope_cache *cache, const int32_t *positions, const mk_heads *k_out);
MKI_HIDDEN mk_status mki_ref_sink_attention(const mk_attn_args *a);

#endif /* MOEKIT_REF_H */
