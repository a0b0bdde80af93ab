/* Block formats of ggml/GGUF quantized tensors, and the row-level conversions.
 *
 * A quantized row of k values is k / block_size consecutive blocks. Weight formats come
 * from GGUF files, byte for byte as ggml lays them out. Activation ("dot") formats are
 * what we quantize a float row into before an integer dot product against a weight row:
 *   Q4_0, Q5_0, Q8_0 weights  . Q8_0 activations
 *   Q4_1, Q5_1 weights        . Q8_1 activations (block sum carried for the min term)
 *   Q4_K, Q5_K, Q6_K weights  . Q8_K activations (16-element group sums for the mins)
 *   F32, F16, BF16 weights    . F32 activations (no quantization)
 */
#ifndef LLMCLI_QUANTS_H
#define LLMCLI_QUANTS_H

#include <stddef.h>
#include <stdint.h>

/* ggml's type numbering (the GGUF tensor type field). */
enum llm_type {
    LLM_F32 = 0, LLM_F16 = 1, LLM_Q4_0 = 2, LLM_Q4_1 = 3, LLM_Q5_0 = 6, LLM_Q5_1 = 7,
    LLM_Q8_0 = 8, LLM_Q8_1 = 9, LLM_Q4_K = 12, LLM_Q5_K = 13, LLM_Q6_K = 14, LLM_Q8_K = 15,
    LLM_BF16 = 30,
};

#define QK32 32   /* values per block of the "legacy" formats */
#define QK_K 256  /* values per super-block of the K formats */

typedef uint16_t fp16_t;  /* IEEE half, as stored */
typedef uint16_t bf16_t;  /* bfloat16, as stored */

/* value = d * (q - 8); qs[j] holds value j in its low nibble and value j+16 in its high one */
typedef struct { fp16_t d; uint8_t qs[QK32 / 2]; } block_q4_0;
_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 size");

/* value = d * q + m, nibbles laid out as in Q4_0 */
typedef struct { fp16_t d, m; uint8_t qs[QK32 / 2]; } block_q4_1;
_Static_assert(sizeof(block_q4_1) == 20, "block_q4_1 size");

/* value = d * (q - 16); the 5th bit of value j is bit j of the little-endian qh */
typedef struct { fp16_t d; uint8_t qh[4]; uint8_t qs[QK32 / 2]; } block_q5_0;
_Static_assert(sizeof(block_q5_0) == 22, "block_q5_0 size");

/* value = d * q + m, bits as in Q5_0 */
typedef struct { fp16_t d, m; uint8_t qh[4]; uint8_t qs[QK32 / 2]; } block_q5_1;
_Static_assert(sizeof(block_q5_1) == 24, "block_q5_1 size");

/* value = d * q */
typedef struct { fp16_t d; int8_t qs[QK32]; } block_q8_0;
_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 size");

/* Activation format for the "value = d*q + m" weights: value = d * q, s = d * sum(q).
 * ggml stores d and s as halves (36 bytes); we keep them as floats (40 bytes, the size
 * gguf-py lists): the format never reaches a file, and s stays exact to float precision. */
typedef struct { float d, s; int8_t qs[QK32]; } block_q8_1;
_Static_assert(sizeof(block_q8_1) == 40, "block_q8_1 size");

/* 8 sub-blocks of 32: value = d * sc[j] * q - dmin * mn[j], with the 6-bit sc/mn packed
 * into scales[12] (see unpack_q4_k_scales); qs[32*c + l] holds value 64c + l in its low
 * nibble and value 64c + 32 + l in its high one. */
typedef struct { fp16_t d, dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; } block_q4_k;
_Static_assert(sizeof(block_q4_k) == 144, "block_q4_k size");

/* As Q4_K with a 5th bit: bit j of qh[l] belongs to sub-block j, position l. */
typedef struct { fp16_t d, dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8];
                 uint8_t qs[QK_K / 2]; } block_q5_k;
_Static_assert(sizeof(block_q5_k) == 176, "block_q5_k size");

/* 16 groups of 16: value = d * scales[g] * (q - 32), q = 4 low bits from ql + 2 from qh. */
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16];
                 fp16_t d; } block_q6_k;
_Static_assert(sizeof(block_q6_k) == 210, "block_q6_k size");

/* Activation format for the K weights: value = d * q; bsums[g] = sum of q over group g
 * of 16 values, so the weights' min terms need no pass over q. */
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } block_q8_k;
_Static_assert(sizeof(block_q8_k) == 292, "block_q8_k size");

/* ---- type table ---- */
int llm_block_size(int type);             /* values per block; 0 for an unknown type */
int llm_type_size(int type);              /* bytes per block; 0 for an unknown type */
size_t llm_row_nbytes(int type, int64_t k);  /* bytes of a row of k values (k % block == 0) */
int llm_can_dequantize(int type);         /* 1 if llm_dequantize_row handles it */
int llm_act_type(int weight_type);        /* the dot format for a weight type; -1 if none */

/* ---- scalar conversions ---- */
float llm_fp16_to_fp32(fp16_t h);
fp16_t llm_fp32_to_fp16(float f);         /* round to nearest even, like F16C */
float llm_bf16_to_fp32(bf16_t h);

/* y[0:k] = values of the row at x (type t, k % block_size(t) == 0). Exact: the same float
 * operations, in the same order, as ggml's reference dequantization. */
void llm_dequantize_row(int type, const void *x, float *y, int64_t k);

/* Quantize activations x[0:k] into the dot format act_type (Q8_0, Q8_1, Q8_K) at y
 * (llm_row_nbytes(act_type, k) bytes). Uses the AVX2 path when it is selected; both paths
 * produce the same bytes. */
void llm_quantize_row(int act_type, const float *x, void *y, int64_t k);
void llm_quantize_row_scalar(int act_type, const float *x, void *y, int64_t k);
/* x - dequantize(quantize(x)) for n_rows rows of k values in an activation format (Q8_0,
 * Q8_1, Q8_K); k a multiple of its block. A second matmul over it refines the 8-bit
 * product to about 16 bits. */
void llm_quantization_residual(int act_type, const float *x, float *residual, int64_t k,
                               int64_t n_rows);

#endif
