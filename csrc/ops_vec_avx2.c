/* AVX2 + FMA versions of the vector primitives (see ops_vec.h). Compiled with a
 * per-function target attribute, so the rest of the build stays baseline x86-64; used
 * only when the CPU reports both features. Tails shorter than a vector fall back to the
 * same formulas in scalar C. */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <math.h>

#include "ops_vec.h"

#define AVX2 __attribute__((target("avx2,fma")))

/* exp(x) for 8 floats. x = n ln2 + r with |r| <= ln2/2, exp(r) by its Taylor series to
 * degree 7 (truncation error < 1e-8 relative), 2^n built in the exponent bits. ln2 is
 * split in two so that n * ln2_hi is exact. Inputs are clamped to [-87, 88] so 2^n stays
 * a normal float; below -87 the result is flushed to 0 (the true value is < 1.7e-38).
 * NaN propagates (min/max return their second operand when one is NaN). */
AVX2 static inline __m256 exp8(__m256 x)
{
    const __m256 lowest = _mm256_set1_ps(-87.0f);
    const __m256 underflow = _mm256_cmp_ps(x, lowest, _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), _mm256_max_ps(lowest, x));

    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);

    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));

    const __m256i biased = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    const __m256 two_to_n = _mm256_castsi256_ps(_mm256_slli_epi32(biased, 23));
    return _mm256_andnot_ps(underflow, _mm256_mul_ps(p, two_to_n));
}

/* The four horizontal sums of a, b, c, d as one 4-float vector. */
AVX2 static inline __m128 hsum8x4(__m256 a, __m256 b, __m256 c, __m256 d)
{
    const __m256 ab = _mm256_hadd_ps(a, b);
    const __m256 cd = _mm256_hadd_ps(c, d);
    const __m256 abcd = _mm256_hadd_ps(ab, cd); /* per 128-bit half: a b c d partials */
    return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

AVX2 static float avx2_max(const float *x, int64_t n)
{
    int64_t i = 0;
    float m = x[0];
    if (n >= 8) {
        __m256 vm = _mm256_loadu_ps(x);
        for (i = 8; i + 8 <= n; i += 8)
            vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(vm), _mm256_extractf128_ps(vm, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        m = _mm_cvtss_f32(h);
    }
    for (; i < n; i++)
        m = x[i] > m ? x[i] : m;
    return m;
}

AVX2 static double avx2_exp_shifted(float *x, int64_t n, float shift)
{
    const __m256 vshift = _mm256_set1_ps(shift);
    /* the running sum is kept in double: a 262144-wide softmax row would lose digits */
    __m256d sum_lo = _mm256_setzero_pd(), sum_hi = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vshift));
        _mm256_storeu_ps(x + i, e);
        sum_lo = _mm256_add_pd(sum_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        sum_hi = _mm256_add_pd(sum_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double lanes[4];
    _mm256_storeu_pd(lanes, _mm256_add_pd(sum_lo, sum_hi));
    double sum = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    for (; i < n; i++) {
        x[i] = expf(x[i] - shift);
        sum += x[i];
    }
    return sum;
}

AVX2 static void avx2_scale(float *x, int64_t n, float factor)
{
    const __m256 f = _mm256_set1_ps(factor);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), f));
    for (; i < n; i++)
        x[i] *= factor;
}

static float scalar_dot(const float *a, const float *b, int from, int to)
{
    float sum = 0.0f;
    for (int d = from; d < to; d++)
        sum += a[d] * b[d];
    return sum;
}

/* Dots of four queries with two rows: eight accumulators, six loads per eight FMAs. */
AVX2 static inline void dot_4q_2rows(const float *const *q, const float *row0,
                                     const float *row1, int dim, float *s0, float *s1)
{
    const int vec_end = dim & ~7;
    __m256 a00 = _mm256_setzero_ps(), a10 = _mm256_setzero_ps();
    __m256 a20 = _mm256_setzero_ps(), a30 = _mm256_setzero_ps();
    __m256 a01 = _mm256_setzero_ps(), a11 = _mm256_setzero_ps();
    __m256 a21 = _mm256_setzero_ps(), a31 = _mm256_setzero_ps();
    for (int d = 0; d < vec_end; d += 8) {
        const __m256 k0 = _mm256_loadu_ps(row0 + d), k1 = _mm256_loadu_ps(row1 + d);
        const __m256 q0 = _mm256_loadu_ps(q[0] + d), q1 = _mm256_loadu_ps(q[1] + d);
        const __m256 q2 = _mm256_loadu_ps(q[2] + d), q3 = _mm256_loadu_ps(q[3] + d);
        a00 = _mm256_fmadd_ps(q0, k0, a00);
        a01 = _mm256_fmadd_ps(q0, k1, a01);
        a10 = _mm256_fmadd_ps(q1, k0, a10);
        a11 = _mm256_fmadd_ps(q1, k1, a11);
        a20 = _mm256_fmadd_ps(q2, k0, a20);
        a21 = _mm256_fmadd_ps(q2, k1, a21);
        a30 = _mm256_fmadd_ps(q3, k0, a30);
        a31 = _mm256_fmadd_ps(q3, k1, a31);
    }
    _mm_storeu_ps(s0, hsum8x4(a00, a10, a20, a30));
    _mm_storeu_ps(s1, hsum8x4(a01, a11, a21, a31));
    if (vec_end < dim)
        for (int k = 0; k < 4; k++) {
            s0[k] += scalar_dot(q[k], row0, vec_end, dim);
            s1[k] += scalar_dot(q[k], row1, vec_end, dim);
        }
}

AVX2 static inline void dot_4q_1row(const float *const *q, const float *row, int dim, float *s)
{
    const int vec_end = dim & ~7;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    for (int d = 0; d < vec_end; d += 8) {
        const __m256 k = _mm256_loadu_ps(row + d);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q[0] + d), k, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q[1] + d), k, a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(q[2] + d), k, a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(q[3] + d), k, a3);
    }
    _mm_storeu_ps(s, hsum8x4(a0, a1, a2, a3));
    if (vec_end < dim)
        for (int k = 0; k < 4; k++)
            s[k] += scalar_dot(q[k], row, vec_end, dim);
}

/* One query against four rows per pass (the attention view, or one head per KV head).
 * Every score, the last rows' too, goes through dot_4q_1row: the accumulation and the
 * horizontal sum of the multi-query kernels, so a query scores the same alone (decode)
 * as in a prefill tile. */
AVX2 static void dot_1q(const float *q, const float *rows, int64_t stride, int64_t n_rows,
                        int dim, float scale, float *scores)
{
    for (int64_t r = 0; r < n_rows; r += 4) {
        /* the same kernel with rows and queries swapped: dot is symmetric; a short last
         * group repeats its last row */
        const float *four_rows[4];
        for (int k = 0; k < 4; k++)
            four_rows[k] = rows + (r + k < n_rows ? r + k : n_rows - 1) * stride;
        float s[4];
        dot_4q_1row(four_rows, q, dim, s);
        for (int k = 0; k < 4 && r + k < n_rows; k++)
            scores[r + k] = s[k] * scale;
    }
}

/* Queries in groups of four (a short last group repeats its last query, and the
 * repeated results are dropped), two rows per pass. */
AVX2 static void avx2_dot_tile(const float *const *queries, int n_queries, const float *rows,
                               int64_t stride, int64_t n_rows, int dim, float scale,
                               float *scores, int64_t scores_stride)
{
    if (n_queries == 1) {
        dot_1q(queries[0], rows, stride, n_rows, dim, scale, scores);
        return;
    }
    for (int i = 0; i < n_queries; i += 4) {
        const int n_real = n_queries - i < 4 ? n_queries - i : 4;
        const float *q[4];
        for (int k = 0; k < 4; k++)
            q[k] = queries[i + (k < n_real ? k : n_real - 1)];
        float *out = scores + i * scores_stride;
        int64_t r = 0;
        for (; r + 2 <= n_rows; r += 2) {
            float s0[4], s1[4];
            dot_4q_2rows(q, rows + r * stride, rows + (r + 1) * stride, dim, s0, s1);
            for (int k = 0; k < n_real; k++) {
                out[k * scores_stride + r] = s0[k] * scale;
                out[k * scores_stride + r + 1] = s1[k] * scale;
            }
        }
        if (r < n_rows) {
            float s[4];
            dot_4q_1row(q, rows + r * stride, dim, s);
            for (int k = 0; k < n_real; k++)
                out[k * scores_stride + r] = s[k] * scale;
        }
    }
}

/* NQ queries (1-3) against the rows, 16 dims at a time: the accumulators stay in
 * registers while the rows stream past, and each row load serves all NQ queries. Rows go
 * in groups of four, each element summed as acc + w0 r0 + w1 r1 + w2 r2 + w3 r3 (one
 * FMA each, in that order), then the leftover rows one by one: the order of the former
 * one-query kernel, so results are the same for any NQ. */
AVX2 static inline void axpy_nq(const int NQ, float *const *accs, const float *const *weights,
                                const float *rows, int64_t stride, int64_t n_rows, int dim)
{
    int d = 0;
    for (; d + 16 <= dim; d += 16) {
        __m256 lo[3], hi[3];
#pragma GCC unroll 3
        for (int i = 0; i < NQ; i++) {
            lo[i] = _mm256_loadu_ps(accs[i] + d);
            hi[i] = _mm256_loadu_ps(accs[i] + d + 8);
        }
        int64_t r = 0;
        for (; r + 4 <= n_rows; r += 4) {
            const float *row = rows + r * stride + d;
            __m256 row_lo[4], row_hi[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                row_lo[k] = _mm256_loadu_ps(row + k * stride);
                row_hi[k] = _mm256_loadu_ps(row + k * stride + 8);
            }
#pragma GCC unroll 3
            for (int i = 0; i < NQ; i++)
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    const __m256 w = _mm256_broadcast_ss(weights[i] + r + k);
                    lo[i] = _mm256_fmadd_ps(w, row_lo[k], lo[i]);
                    hi[i] = _mm256_fmadd_ps(w, row_hi[k], hi[i]);
                }
        }
        for (; r < n_rows; r++) {
            const float *row = rows + r * stride + d;
            const __m256 row_lo = _mm256_loadu_ps(row), row_hi = _mm256_loadu_ps(row + 8);
#pragma GCC unroll 3
            for (int i = 0; i < NQ; i++) {
                const __m256 w = _mm256_broadcast_ss(weights[i] + r);
                lo[i] = _mm256_fmadd_ps(w, row_lo, lo[i]);
                hi[i] = _mm256_fmadd_ps(w, row_hi, hi[i]);
            }
        }
#pragma GCC unroll 3
        for (int i = 0; i < NQ; i++) {
            _mm256_storeu_ps(accs[i] + d, lo[i]);
            _mm256_storeu_ps(accs[i] + d + 8, hi[i]);
        }
    }
    for (int i = 0; i < NQ; i++) /* dims past the last 16: the same order, one at a time */
        for (int e = d; e < dim; e++) {
            float a = accs[i][e];
            int64_t r = 0;
            for (; r + 4 <= n_rows; r += 4) {
                const float *row = rows + r * stride + e;
                a = fmaf(weights[i][r], row[0], a);
                a = fmaf(weights[i][r + 1], row[stride], a);
                a = fmaf(weights[i][r + 2], row[2 * stride], a);
                a = fmaf(weights[i][r + 3], row[3 * stride], a);
            }
            for (; r < n_rows; r++)
                a = fmaf(weights[i][r], rows[r * stride + e], a);
            accs[i][e] = a;
        }
}

AVX2 static void avx2_axpy_rows(float *const *accs, const float *const *weights, int n_queries,
                                const float *rows, int64_t stride, int64_t n_rows, int dim)
{
    int i = 0;
    for (; i + 3 <= n_queries; i += 3)
        axpy_nq(3, accs + i, weights + i, rows, stride, n_rows, dim);
    if (n_queries - i == 2)
        axpy_nq(2, accs + i, weights + i, rows, stride, n_rows, dim);
    else if (n_queries - i == 1)
        axpy_nq(1, accs + i, weights + i, rows, stride, n_rows, dim);
}

AVX2 static void avx2_silu_mul(const float *gate, const float *up, float *out, int64_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 denom = _mm256_add_ps(one, exp8(_mm256_xor_ps(g, sign)));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, denom), _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++)
        out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

/* gelu_tanh(g) = g / (1 + exp(-2u)), u = sqrt(2/pi) (g + 0.044715 g^3); see ops_vec.c */
AVX2 static void avx2_gelu_tanh_mul(const float *gate, const float *up, float *out, int64_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256 cubic = _mm256_set1_ps(OPS_GELU_CUBIC);
    const __m256 minus_two_c = _mm256_set1_ps(-2.0f * OPS_SQRT_2_OVER_PI);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 inner = _mm256_fmadd_ps(_mm256_mul_ps(cubic, g), _mm256_mul_ps(g, g), g);
        const __m256 denom = _mm256_add_ps(one, exp8(_mm256_mul_ps(minus_two_c, inner)));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_div_ps(g, denom), _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) {
        const float g = gate[i];
        const float u = OPS_SQRT_2_OVER_PI * (g + OPS_GELU_CUBIC * g * g * g);
        out[i] = g / (1.0f + expf(-2.0f * u)) * up[i];
    }
}

const ops_vec ops_vec_avx2 = {
    .name = "avx2",
    .max = avx2_max,
    .exp_shifted = avx2_exp_shifted,
    .scale = avx2_scale,
    .dot_tile = avx2_dot_tile,
    .axpy_rows = avx2_axpy_rows,
    .silu_mul = avx2_silu_mul,
    .gelu_tanh_mul = avx2_gelu_tanh_mul,
};

#endif
