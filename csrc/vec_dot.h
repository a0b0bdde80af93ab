/* Dot products of one weight type against its activation format, and the tiles the matmul
 * is built from. Every kernel exists twice: an AVX2+FMA path (x86-64 only, chosen at run
 * time) and a plain scalar twin that is always compiled, so tests can compare them. */
#ifndef LLMCLI_VEC_DOT_H
#define LLMCLI_VEC_DOT_H

#include <stddef.h>
#include <stdint.h>

#include "quants.h"

/* ---- run-time kernel path ---- */
enum llm_path { LLM_PATH_SCALAR = 0, LLM_PATH_AVX2 = 1 };
int llm_cpu_has_avx2(void);          /* AVX2, FMA and F16C available on this CPU */
int llm_get_path(void);
int llm_set_path(int path);          /* returns 0, or -1 if the CPU cannot run it */

/* ---- one row against one activation row ----
 * w: one weight row of n_blocks blocks of weight_type; act: the activation row, n_blocks
 * blocks of llm_act_type(weight_type) (for F32/F16/BF16 weights, n_blocks floats). */
float llm_vec_dot(int weight_type, int n_blocks, const void *w, const void *act);
float llm_vec_dot_scalar(int weight_type, int n_blocks, const void *w, const void *act);

/* ---- tiles ----
 * out[t * out_stride + r] = dot(weight row r, activation row t) for r < n_rows, t < n_toks,
 * where weight row r starts at w + r * w_stride and activation row t at
 * act + t * act_stride (bytes). n_rows <= tile_rows and n_toks <= tile_toks of the kernel. */
typedef void (*llm_tile_fn)(int n_blocks, const uint8_t *w, size_t w_stride, int n_rows,
                            const uint8_t *act, size_t act_stride, int n_toks,
                            float *out, size_t out_stride);

typedef struct {
    llm_tile_fn fn;
    int tile_rows, tile_toks;
} llm_tile;

/* The tile for a weight type on the current path: `decode` is the one-token shape
 * (several rows, for independent accumulator chains), otherwise the prefill shape
 * (rows x tokens, so each unpacked weight block serves several tokens).
 * fn is NULL for a type without kernels. */
llm_tile llm_get_tile(int weight_type, int decode);

/* The AVX2 implementations (defined in vec_dot_avx2.c / vec_dot_avx2_k.c). */
#if defined(__x86_64__)
llm_tile llm_avx2_tile(int weight_type, int decode);
float llm_vec_dot_avx2(int weight_type, int n_blocks, const void *w, const void *act);
#endif

#endif
