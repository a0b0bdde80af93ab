/* The portable twin of every vector primitive (plain C; `omp simd` lets the compiler
 * vectorise the reductions for the baseline ISA), and the run-time choice of path and
 * thread count, which the ops take from the quantized kernels' settings (one switch). */
#include <math.h>

#include "matmul.h"
#include "ops.h"
#include "ops_vec.h"
#include "vec_dot.h"

static float portable_max(const float *x, int64_t n)
{
    float m = x[0];
    for (int64_t i = 1; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m;
}

static double portable_exp_shifted(float *x, int64_t n, float shift)
{
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - shift);
        sum += x[i];
    }
    return sum;
}

static void portable_scale(float *x, int64_t n, float factor)
{
    for (int64_t i = 0; i < n; i++)
        x[i] *= factor;
}

static void portable_dot_tile(const float *const *queries, int n_queries, const float *rows,
                              int64_t stride, int64_t n_rows, int dim, float scale,
                              float *scores, int64_t scores_stride)
{
    for (int64_t r = 0; r < n_rows; r++) {
        const float *row = rows + r * stride;
        for (int i = 0; i < n_queries; i++) {
            const float *q = queries[i];
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int d = 0; d < dim; d++)
                sum += q[d] * row[d];
            scores[i * scores_stride + r] = sum * scale;
        }
    }
}

static void portable_axpy_rows(float *const *accs, const float *const *weights, int n_queries,
                               const float *rows, int64_t stride, int64_t n_rows, int dim)
{
    for (int i = 0; i < n_queries; i++)
        for (int64_t r = 0; r < n_rows; r++) {
            const float *row = rows + r * stride;
            const float w = weights[i][r];
            for (int d = 0; d < dim; d++)
                accs[i][d] += w * row[d];
        }
}

static void portable_silu_mul(const float *gate, const float *up, float *out, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

/* 0.5 g (1 + tanh(u)) == g * sigmoid(2u) == g / (1 + exp(-2u)): one exp, no tanh, and
 * the same formula as the AVX2 path, whose only transcendental is exp. */
static void portable_gelu_tanh_mul(const float *gate, const float *up, float *out, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float g = gate[i];
        const float u = OPS_SQRT_2_OVER_PI * (g + OPS_GELU_CUBIC * g * g * g);
        out[i] = g / (1.0f + expf(-2.0f * u)) * up[i];
    }
}

const ops_vec ops_vec_portable = {
    .name = "scalar",
    .max = portable_max,
    .exp_shifted = portable_exp_shifted,
    .scale = portable_scale,
    .dot_tile = portable_dot_tile,
    .axpy_rows = portable_axpy_rows,
    .silu_mul = portable_silu_mul,
    .gelu_tanh_mul = portable_gelu_tanh_mul,
};

int ops_threads(void)
{
    return llm_get_threads();
}

/* ---- run-time choice: the project's one kernel path (set_kernel_path) ----------- */

const ops_vec *ops_vec_select(void)
{
#ifdef OPS_HAVE_AVX2_PATH
    if (llm_get_path() == LLM_PATH_AVX2)
        return &ops_vec_avx2;
#endif
    return &ops_vec_portable;
}
