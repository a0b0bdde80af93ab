/* rmsnorm, rope, softmax and the gated activations (see ops.h for the contracts).
 * Attention lives in ops_attention.c; the SIMD inner loops in ops_vec*.c. */
#include <math.h>
#include <string.h>

#include "ops.h"
#include "ops_vec.h"

/* Below this many elements a call runs on one thread: waking the OpenMP team costs
 * more than it saves (a decode step's vectors are a few hundred floats). Such calls
 * skip the parallel construct altogether: even `omp parallel if (0)` costs ~1.5 us. */
#define PARALLEL_MIN_ELEMENTS (1 << 15)

/* A softmax row at least this wide is split over the threads (Gemma's 262144 logits). */
#define WIDE_ROW_MIN (1 << 16)


/* ---- rmsnorm ------------------------------------------------------------------ */

static float sum_of_squares(const float *x, int64_t n)
{
    /* eight partial sums: the compiler vectorises this without reassociation flags */
    float partial[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            partial[k] += x[i + k] * x[i + k];
    double sum = 0.0;
    for (int k = 0; k < 8; k++)
        sum += partial[k];
    for (; i < n; i++)
        sum += (double)x[i] * x[i];
    return (float)sum;
}

static void rmsnorm_row(const float *x, const float *w, float *out, int64_t dim, float eps)
{
    const float inv_rms = 1.0f / sqrtf(sum_of_squares(x, dim) / (float)dim + eps);
    for (int64_t d = 0; d < dim; d++)
        out[d] = x[d] * inv_rms * w[d];
}

void ops_rmsnorm(const float *x, const float *w, float *out,
                 int64_t n_rows, int64_t dim, float eps)
{
    if (n_rows * dim < PARALLEL_MIN_ELEMENTS) {
        for (int64_t r = 0; r < n_rows; r++)
            rmsnorm_row(x + r * dim, w, out + r * dim, dim, eps);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(ops_threads())
    for (int64_t r = 0; r < n_rows; r++)
        rmsnorm_row(x + r * dim, w, out + r * dim, dim, eps);
}

/* ---- rope --------------------------------------------------------------------- */

#define TWO_PI 6.283185307179586

/* Rotate one head in place by the per-pair cos/sin of its token. */
static void rotate_head(float *head, const float *cos_t, const float *sin_t, int head_dim,
                        int neox)
{
    const int half = head_dim / 2;
    /* pair i is (head[first(i)], head[first(i) + gap]) */
    const int gap = neox ? half : 1;
    const int step = neox ? 1 : 2;
    for (int i = 0; i < half; i++) {
        float *a = head + i * step;
        float *b = a + gap;
        const float x0 = *a, x1 = *b;
        *a = x0 * cos_t[i] - x1 * sin_t[i];
        *b = x0 * sin_t[i] + x1 * cos_t[i];
    }
}

/* The cos and sin of each pair's angle for one token at position pos. */
static void rope_angles(int32_t pos, const double *inv_freq, int half, float *cos_t,
                        float *sin_t)
{
    for (int i = 0; i < half; i++) {
        /* The angle is formed in double (at pos 30000 a float angle would be off by
         * ~2e-3 rad) and reduced by whole turns there; float sin/cos of what is left
         * (|r| < 2 pi) are then exact to float rounding, and 4x cheaper than double. */
        const double angle = (double)pos * inv_freq[i];
        const double turns = (double)(int64_t)(angle * (1.0 / TWO_PI));
        const float reduced = (float)(angle - turns * TWO_PI);
        cos_t[i] = cosf(reduced);
        sin_t[i] = sinf(reduced);
    }
}

/* Rotate every query and key head of token t (the same angles serve both). */
static void rope_token(float *q, int n_q_heads, float *k, int n_k_heads, int64_t t,
                       int32_t pos, int head_dim, const double *inv_freq, int neox)
{
    float cos_t[OPS_MAX_ROPE_PAIRS], sin_t[OPS_MAX_ROPE_PAIRS];
    rope_angles(pos, inv_freq, head_dim / 2, cos_t, sin_t);
    float *q_row = q + t * n_q_heads * head_dim;
    for (int h = 0; h < n_q_heads; h++)
        rotate_head(q_row + (int64_t)h * head_dim, cos_t, sin_t, head_dim, neox);
    if (!k)
        return;
    float *k_row = k + t * n_k_heads * head_dim;
    for (int h = 0; h < n_k_heads; h++)
        rotate_head(k_row + (int64_t)h * head_dim, cos_t, sin_t, head_dim, neox);
}

void ops_rope_frequencies(double base, int head_dim, double *inv_freq)
{
    for (int i = 0; i < head_dim / 2; i++)
        inv_freq[i] = pow(base, -2.0 * i / head_dim);
}

void ops_rope(float *q, int n_q_heads, float *k, int n_k_heads, const int32_t *pos,
              int64_t n_tok, int head_dim, const double *inv_freq, int neox)
{
    if (!k)
        n_k_heads = 0;
    if (n_tok * (n_q_heads + n_k_heads) * head_dim < PARALLEL_MIN_ELEMENTS) {
        for (int64_t t = 0; t < n_tok; t++)
            rope_token(q, n_q_heads, k, n_k_heads, t, pos[t], head_dim, inv_freq, neox);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(ops_threads())
    for (int64_t t = 0; t < n_tok; t++)
        rope_token(q, n_q_heads, k, n_k_heads, t, pos[t], head_dim, inv_freq, neox);
}

/* ---- softmax ------------------------------------------------------------------ */

static void softmax_row(const ops_vec *vec, float *x, int64_t dim)
{
    const double sum = vec->exp_shifted(x, dim, vec->max(x, dim));
    vec->scale(x, dim, (float)(1.0 / sum));
}

/* One wide row (a vocabulary of logits) shared by all threads. Each part is
 * exponentiated against its own max in the first pass; once all parts are done, every
 * thread combines the part maxima and sums, and the second pass rescales each part by
 * exp(part max - row max) / sum. Two passes over memory, one barrier between them. */
static void softmax_wide_row(const ops_vec *vec, float *x, int64_t dim)
{
    enum { MAX_PARTS = 64 };
    const int64_t n_parts = dim / 4096 < MAX_PARTS ? (dim + 4095) / 4096 : MAX_PARTS;
    float part_max[MAX_PARTS];
    double part_sum[MAX_PARTS];
#pragma omp parallel num_threads(ops_threads())
    {
#pragma omp for schedule(static)
        for (int64_t p = 0; p < n_parts; p++) {
            float *part = x + dim * p / n_parts;
            const int64_t len = dim * (p + 1) / n_parts - dim * p / n_parts;
            part_max[p] = vec->max(part, len);
            part_sum[p] = vec->exp_shifted(part, len, part_max[p]);
        }
        float row_max = part_max[0];
        for (int64_t p = 1; p < n_parts; p++)
            row_max = part_max[p] > row_max ? part_max[p] : row_max;
        double sum = 0.0;
        for (int64_t p = 0; p < n_parts; p++)
            sum += part_sum[p] * exp((double)part_max[p] - row_max);
#pragma omp for schedule(static)
        for (int64_t p = 0; p < n_parts; p++) {
            const int64_t len = dim * (p + 1) / n_parts - dim * p / n_parts;
            vec->scale(x + dim * p / n_parts, len,
                       (float)(exp((double)part_max[p] - row_max) / sum));
        }
    }
}

void ops_softmax(float *x, int64_t n_rows, int64_t dim)
{
    const ops_vec *vec = ops_vec_select();
    const int threads = ops_threads();
    if (n_rows * dim >= PARALLEL_MIN_ELEMENTS && n_rows >= 4 * threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int64_t r = 0; r < n_rows; r++)
            softmax_row(vec, x + r * dim, dim);
    } else if (threads > 1 && dim >= WIDE_ROW_MIN) {
        /* few rows, but wide ones: split each row over the threads instead */
        for (int64_t r = 0; r < n_rows; r++)
            softmax_wide_row(vec, x + r * dim, dim);
    } else {
        for (int64_t r = 0; r < n_rows; r++)
            softmax_row(vec, x + r * dim, dim);
    }
}

/* ---- gated activations -------------------------------------------------------- */

typedef void (*gated_fn)(const float *gate, const float *up, float *out, int64_t n);

/* Chunks of whole vectors, shared out among the threads when n is large. */
static void gated_parallel(gated_fn fn, const float *gate, const float *up, float *out,
                           int64_t n)
{
    if (n < PARALLEL_MIN_ELEMENTS) {
        fn(gate, up, out, n);
        return;
    }
    const int64_t chunk = 4096;
    const int64_t n_chunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) num_threads(ops_threads())
    for (int64_t c = 0; c < n_chunks; c++) {
        const int64_t start = c * chunk;
        const int64_t len = n - start < chunk ? n - start : chunk;
        fn(gate + start, up + start, out + start, len);
    }
}

void ops_swiglu(const float *gate, const float *up, float *out, int64_t n)
{
    gated_parallel(ops_vec_select()->silu_mul, gate, up, out, n);
}

void ops_geglu_tanh(const float *gate, const float *up, float *out, int64_t n)
{
    gated_parallel(ops_vec_select()->gelu_tanh_mul, gate, up, out, n);
}

/* One thread: a few thousand floats, far below what pays for a thread team. The loop is
 * simple enough for the compiler to vectorize. */
void ops_add(const float *a, const float *b, float *out, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void ops_store_heads(const float *rows, int64_t n_tok, int n_heads, int head_dim,
                     float *cache, int64_t n_ctx, int64_t first) {
    const size_t bytes = (size_t)head_dim * sizeof(float);
    for (int64_t t = 0; t < n_tok; t++)
        for (int h = 0; h < n_heads; h++)
            memcpy(cache + ((int64_t)h * n_ctx + first + t) * head_dim,
                   rows + (t * n_heads + h) * head_dim, bytes);
}
