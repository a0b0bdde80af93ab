/* Causal grouped-query attention over the KV cache (contract in ops.h).
 *
 * Work is split over (head, token) pairs. The hot path (no probs wanted) reads the
 * visible cache rows in blocks and keeps a running softmax (running max, running sum,
 * rescaled accumulator), so it needs only a fixed stack buffer per thread: nothing is
 * allocated whatever the context length. When the caller asks for the attention
 * weights, the scores are written straight into its probs row, normalised there, and
 * the output is their weighted sum of V rows.
 */
#include <math.h>
#include <string.h>

#include "ops.h"
#include "ops_vec.h"

/* Cache rows scored per step of the running softmax: enough to amortise the rescale,
 * small enough for the scores to stay in L1. */
#define BLOCK_ROWS 64

/* Below this many multiply-adds in total the call runs on one thread. */
#define PARALLEL_MIN_WORK (1 << 16)

typedef struct {
    int64_t first, last; /* visible cache rows, inclusive */
} row_range;

static row_range visible_rows(int32_t pos, int window)
{
    row_range range = {0, pos};
    if (window > 0 && (int64_t)pos - window + 1 > 0)
        range.first = (int64_t)pos - window + 1;
    return range;
}

/* out[d] = sum_j softmax(q.k_j * scale) v_j[d] over rows j in range, one block at a time.
 * When a block raises the running max m, what was accumulated so far is rescaled by
 * exp(m_old - m_new), so every term ends up as exp(s_j - m_final). */
static void attend_running(const ops_vec *vec, const float *q, const float *k, const float *v,
                           int64_t kv_stride, row_range range, int head_dim, float scale,
                           float *out)
{
    float acc[OPS_MAX_HEAD_DIM];
    float weights[BLOCK_ROWS];
    memset(acc, 0, sizeof(float) * head_dim);
    float running_max = -INFINITY;
    double running_sum = 0.0;

    for (int64_t j = range.first; j <= range.last; j += BLOCK_ROWS) {
        const int64_t n = range.last - j + 1 < BLOCK_ROWS ? range.last - j + 1 : BLOCK_ROWS;
        vec->dot_rows(q, k + j * kv_stride, kv_stride, n, head_dim, scale, weights);
        const float block_max = vec->max(weights, n);
        if (block_max > running_max) {
            const float correction = expf(running_max - block_max); /* 0 on the first block */
            vec->scale(acc, head_dim, correction);
            running_sum *= correction;
            running_max = block_max;
        }
        running_sum += vec->exp_shifted(weights, n, running_max);
        vec->axpy_rows(acc, weights, v + j * kv_stride, kv_stride, n, head_dim);
    }
    const float inv_sum = (float)(1.0 / running_sum);
    for (int d = 0; d < head_dim; d++)
        out[d] = acc[d] * inv_sum;
}

/* Same result, with the normalised weights left in probs_row (zero outside range). */
static void attend_with_probs(const ops_vec *vec, const float *q, const float *k,
                              const float *v, int64_t kv_stride, row_range range,
                              int head_dim, float scale, float *out, float *probs_row,
                              int64_t probs_len)
{
    memset(probs_row, 0, sizeof(float) * probs_len);
    float *weights = probs_row + range.first;
    const int64_t n = range.last - range.first + 1;
    vec->dot_rows(q, k + range.first * kv_stride, kv_stride, n, head_dim, scale, weights);
    const double sum = vec->exp_shifted(weights, n, vec->max(weights, n));
    vec->scale(weights, n, (float)(1.0 / sum));
    memset(out, 0, sizeof(float) * head_dim);
    vec->axpy_rows(out, weights, v + range.first * kv_stride, kv_stride, n, head_dim);
}

static int64_t total_work(const int32_t *q_pos, int64_t n_tok, int n_heads, int head_dim,
                          int window)
{
    int64_t rows = 0;
    for (int64_t t = 0; t < n_tok; t++) {
        const row_range range = visible_rows(q_pos[t], window);
        rows += range.last - range.first + 1;
    }
    return 2 * rows * n_heads * head_dim; /* q.k and p*v */
}

void ops_attention(const float *q, const float *k_cache, const float *v_cache,
                   const int32_t *q_pos, int64_t n_tok, int n_heads, int n_kv_heads,
                   int head_dim, float scale, int window, float *out,
                   float *probs, int64_t probs_len)
{
    const ops_vec *vec = ops_vec_select();
    const int group = n_heads / n_kv_heads;
    const int64_t q_stride = (int64_t)n_heads * head_dim;
    const int64_t kv_stride = (int64_t)n_kv_heads * head_dim;
    const int64_t n_items = n_tok * n_heads;
    const int parallel = total_work(q_pos, n_tok, n_heads, head_dim, window) >= PARALLEL_MIN_WORK;

    /* Head-major order: neighbouring items read the same cache rows, which stay in cache.
     * Dynamic schedule: causal items differ in cost (later tokens see more rows). */
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
    for (int64_t item = 0; item < n_items; item++) {
        const int h = (int)(item / n_tok);
        const int64_t t = item % n_tok;
        const int64_t kv_offset = (int64_t)(h / group) * head_dim;
        const float *qh = q + t * q_stride + (int64_t)h * head_dim;
        float *outh = out + t * q_stride + (int64_t)h * head_dim;
        const row_range range = visible_rows(q_pos[t], window);
        if (probs)
            attend_with_probs(vec, qh, k_cache + kv_offset, v_cache + kv_offset, kv_stride,
                              range, head_dim, scale, outh,
                              probs + ((int64_t)h * n_tok + t) * probs_len, probs_len);
        else
            attend_running(vec, qh, k_cache + kv_offset, v_cache + kv_offset, kv_stride,
                           range, head_dim, scale, outh);
    }
}
