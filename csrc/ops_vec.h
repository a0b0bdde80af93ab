/* Internal to the ops kernels: the inner loops that pay for explicit SIMD, behind one
 * table of function pointers. Each entry works on a whole row or block, so the cost of
 * the indirect call is paid once per block, not per element.
 *
 * Two tables exist: ops_vec_portable (plain C, auto-vectorised by the compiler for the
 * baseline ISA; the only path on aarch64) and ops_vec_avx2 (x86-64 with AVX2 + FMA).
 * ops_vec_select() returns the one matching the project's kernel path (llm_get_path,
 * llmcli._kernels.set_kernel_path), so one switch forces every kernel to scalar.
 */
#ifndef LLMCLI_OPS_VEC_H
#define LLMCLI_OPS_VEC_H

#include <stdint.h>

typedef struct ops_vec {
    const char *name;
    /* max(x[0..n)), n >= 1 */
    float (*max)(const float *x, int64_t n);
    /* x[i] = exp(x[i] - shift) in place; returns the sum of the new values */
    double (*exp_shifted)(float *x, int64_t n, float shift);
    /* x[i] *= factor */
    void (*scale)(float *x, int64_t n, float factor);
    /* scores[i * scores_stride + r] = scale * (queries[i] . rows[r]) for i < n_queries,
     * r < n_rows; row r starts at rows + r * stride. Each row is read once for all
     * the queries (the query heads that share a KV head, at nearby positions). */
    void (*dot_tile)(const float *const *queries, int n_queries, const float *rows,
                     int64_t stride, int64_t n_rows, int dim, float scale, float *scores,
                     int64_t scores_stride);
    /* accs[i][d] += sum_r weights[i][r] * rows[r][d] for i < n_queries, d < dim: queries
     * that see the same rows, each row read once for all of them. Per query the sums run
     * in the same order whatever n_queries is, so results never depend on the grouping. */
    void (*axpy_rows)(float *const *accs, const float *const *weights, int n_queries,
                      const float *rows, int64_t stride, int64_t n_rows, int dim);
    /* out = silu(gate) * up and out = gelu_tanh(gate) * up, element-wise */
    void (*silu_mul)(const float *gate, const float *up, float *out, int64_t n);
    void (*gelu_tanh_mul)(const float *gate, const float *up, float *out, int64_t n);
} ops_vec;

extern const ops_vec ops_vec_portable;
#if defined(__x86_64__) || defined(__i386__)
#define OPS_HAVE_AVX2_PATH 1
extern const ops_vec ops_vec_avx2;
#endif

const ops_vec *ops_vec_select(void);

/* Threads for the ops' parallel loops: the one setting matmul uses (set_threads). */
int ops_threads(void);

/* sqrt(2 / pi), the constant inside the tanh approximation of GELU */
#define OPS_SQRT_2_OVER_PI 0.7978845608028654f
#define OPS_GELU_CUBIC 0.044715f

#endif
