/* The non-matmul kernels of the transformer forward: normalisation, rotary position
 * embedding, softmax, gated activations and attention over the KV cache.
 *
 * All buffers are float32 and C-contiguous; shapes are given as [rows, cols] in the
 * comments. The Cython wrappers (llmcli/_ops_kernels.pxi) check every shape before
 * calling; these functions trust their arguments, never allocate and never print.
 * Large calls are split over OpenMP threads: as many as matmul uses (llm_get_threads).
 * The vector path (AVX2 or portable) follows the kernel path (llm_get_path).
 */
#ifndef LLMCLI_OPS_H
#define LLMCLI_OPS_H

#include <stdint.h>

/* Largest head_dim the kernels accept: per-thread work buffers live on the stack. */
#define OPS_MAX_HEAD_DIM 512
#define OPS_MAX_ROPE_PAIRS (OPS_MAX_HEAD_DIM / 2)

/* out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * w
 * x, out: [n_rows, dim] (out may be x); w: [dim]. Per-head q/k norms pass
 * x as [n_tok * n_heads, head_dim]. */
void ops_rmsnorm(const float *x, const float *w, float *out,
                 int64_t n_rows, int64_t dim, float eps);

/* Rotary position embedding, in place, of a token's query heads and key heads.
 * q: [n_tok, n_q_heads * head_dim]; k: [n_tok, n_k_heads * head_dim], or NULL (then
 * n_k_heads is ignored); pos: [n_tok]. Pair i of each head (i < head_dim / 2) is rotated
 * by pos * inv_freq[i], where inv_freq comes from ops_rope_frequencies.
 * neox = 0: the pair is (x[2i], x[2i+1])          (llama.cpp "normal", llama GGUFs)
 * neox = 1: the pair is (x[i], x[i + head_dim/2]) (llama.cpp "neox", gemma3)
 * Angles are computed in double so that positions in the tens of thousands keep
 * their precision. head_dim must be even and <= OPS_MAX_HEAD_DIM. */
void ops_rope(float *q, int n_q_heads, float *k, int n_k_heads, const int32_t *pos,
              int64_t n_tok, int head_dim, const double *inv_freq, int neox);

/* inv_freq[i] = base^(-2i / head_dim) for i < head_dim / 2: a layer's rotation speeds,
 * computed once (pow is far dearer than the rotation of a decode step's heads). */
void ops_rope_frequencies(double base, int head_dim, double *inv_freq);

/* Row-wise softmax in place, max-subtracted. x: [n_rows, dim], dim >= 1. */
void ops_softmax(float *x, int64_t n_rows, int64_t dim);

/* Gated feed-forward activations, element-wise over n values (out may be gate or up):
 * swiglu:     out = silu(gate) * up,  silu(g) = g / (1 + exp(-g))
 * geglu_tanh: out = gelu_tanh(gate) * up,
 *             gelu_tanh(g) = 0.5 g (1 + tanh(sqrt(2/pi) (g + 0.044715 g^3))) */
void ops_swiglu(const float *gate, const float *up, float *out, int64_t n);
void ops_geglu_tanh(const float *gate, const float *up, float *out, int64_t n);

/* out = a + b elementwise (the residual connection); out may be a or b. */
void ops_add(const float *a, const float *b, float *out, int64_t n);

/* rows [n_tok, n_heads * head_dim] (a batch's keys or values) into a head-major cache
 * [n_heads, n_ctx, head_dim] at positions first..first + n_tok - 1 (< n_ctx). */
void ops_store_heads(const float *rows, int64_t n_tok, int n_heads, int head_dim,
                     float *cache, int64_t n_ctx, int64_t first);

/* Causal grouped-query attention of n_tok queries over the KV cache.
 *   q:       [n_tok, n_heads * head_dim]
 *   k_cache, v_cache: head_dim floats per (KV head, position), rows 0..max(q_pos)
 *            filled; KV head h's row j at cache + h * kv_head_stride + j * kv_row_stride.
 *            Token-major [n_ctx, n_kv_heads * head_dim]: strides n_kv_heads * head_dim
 *            and head_dim. Head-major [n_kv_heads, n_ctx, head_dim], as the forward
 *            keeps them: strides head_dim and n_ctx * head_dim, so each head's rows are
 *            one contiguous stream (a column of a token-major cache read 1.4-1.9x slower).
 *   q_pos:   [n_tok]  absolute position of each query, 0 <= q_pos[t] < n_ctx
 *   out:     [n_tok, n_heads * head_dim]      (must not overlap the caches)
 * Query head h reads KV head h / (n_heads / n_kv_heads). The query at position p sees
 * cache rows j with j <= p and, when window > 0, p - j < window: at most `window` rows,
 * including itself (transformers' gemma3 sliding mask `kv_idx > q_idx - window`).
 * Scores are q.k * scale, softmax is max-subtracted, all in float32 (sums in double).
 * probs (optional, NULL on the hot path): [n_heads, n_tok, probs_len] receives the
 * attention weights, zero where masked; probs_len > max(q_pos).
 * scratch: scratch_len floats of work space, where a call split over more threads than
 * it has tiles keeps its partial results; size it with ops_attention_scratch_len (0 for
 * most calls). With less than that, the call still runs, on fewer pieces. */
void ops_attention(const float *q, const float *k_cache, const float *v_cache,
                   int64_t kv_row_stride, int64_t kv_head_stride, const int32_t *q_pos, int64_t n_tok, int n_heads, int n_kv_heads,
                   int head_dim, float scale, int window, float *out,
                   float *probs, int64_t probs_len, float *scratch, int64_t scratch_len);

/* Scratch floats ops_attention wants for these arguments at the current thread count. */
int64_t ops_attention_scratch_len(const int32_t *q_pos, int64_t n_tok, int n_heads,
                                  int n_kv_heads, int head_dim, int window);

#endif
