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

/* How a tile wants its activation rows laid out. */
enum llm_act_layout {
    LLM_ACT_ROWS = 0,  /* one row per token in the dot format (llm_quantize_row) */
    LLM_ACT_X8 = 1,    /* 32-value formats, tokens in groups of 8 interleaved (block_x8) */
};

/* One 32-value block of 8 tokens, interleaved for prefill: q[step][t] holds values
 * 4*step .. 4*step+3 of token t (4 int8 in an int32), so one 32-byte load feeds the same 4
 * positions of all 8 tokens. d[t] is token t's block scale (a Q8_0 scale rounded through
 * half precision, as in block_q8_0), s[t] = d[t] * sum of its 32 values. A row of a group
 * is n_blocks of these; the stride per token is sizeof(block_x8) / 8 * n_blocks. */
typedef struct { int32_t q[8][8]; float d[8]; float s[8]; } block_x8;
_Static_assert(sizeof(block_x8) == 320, "block_x8 size");

typedef struct {
    llm_tile_fn fn;
    int tile_rows, tile_toks;
    int act_layout;  /* enum llm_act_layout */
} llm_tile;

/* A tile over activations stored one row per token. */
static inline llm_tile llm_rows_tile(llm_tile_fn fn, int rows, int toks) {
    llm_tile tile = {fn, rows, toks, LLM_ACT_ROWS};
    return tile;
}

/* The tile for a weight type and token count on the current path: one token gets the
 * decode shape (several rows at once), more tokens the prefill shape (rows x tokens, so
 * each unpacked weight block serves several tokens). On every path the arithmetic for one
 * (row, token) is the same in both shapes, so results do not depend on the batching.
 * fn is NULL for a type without kernels. */
llm_tile llm_get_tile(int weight_type, int64_t n_tok);

/* The AVX2 implementations (vec_dot_avx2.c, vec_dot_avx2_k.c, vec_dot_avx2_x8.c). */
#if defined(__x86_64__)
llm_tile llm_avx2_tile(int weight_type, int64_t n_tok);
float llm_vec_dot_avx2(int weight_type, int n_blocks, const void *w, const void *act);
/* Up to 8 token rows (row t at x + t * k) into one group of k / 32 block_x8; a partial
 * group repeats its last token. half_scale: round the scales through half precision. */
void llm_quantize_x8_avx2(int half_scale, const float *x, int64_t k, int n_toks, block_x8 *group);
#endif

#endif
