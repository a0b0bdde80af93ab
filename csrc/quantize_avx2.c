/* AVX2 row quantization of activations into Q8_0, Q8_1 and Q8_K. Every step is the same
 * float operation as the scalar twin in quants.c (same scale, one multiply, round to
 * nearest even), so both paths write identical bytes. */
#include "quants.h"

#if defined(__x86_64__)
#include "avx2_common.h"

AVX2_INLINE __m256 abs_ps(__m256 v) {
    return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
}

AVX2_INLINE float hmax_ps(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

AVX2_INLINE __m256i round_to_int(__m256 v) {
    return _mm256_cvtps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* 32 int32 (four vectors) -> 32 int8 in order; values are within [-127, 127]. */
AVX2_INLINE void store_int8x32(int8_t *dst, __m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    __m256i bytes = _mm256_packs_epi16(ab, cd);
    /* the packs interleave 128-bit halves; restore the element order */
    bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)dst, bytes);
}

/* One block of 32: q = round(x / d), d = amax / 127. Returns d; *sum = sum of q. */
AVX2_INLINE float quantize_block_32(const float *x, int8_t *q, int *sum) {
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        amax = _mm256_max_ps(amax, abs_ps(v[i]));
    }
    float d = hmax_ps(amax) / 127.0f;
    __m256 inv_d = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    __m256i qi[4];
    for (int i = 0; i < 4; i++) qi[i] = round_to_int(_mm256_mul_ps(v[i], inv_d));
    __m256i total = _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3]));
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(total), _mm256_extracti128_si256(total, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
    *sum = _mm_cvtsi128_si32(t);
    store_int8x32(q, qi[0], qi[1], qi[2], qi[3]);
    return d;
}

AVX2_TARGET static void quantize_q8_0(const float *x, block_q8_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK32) {
        int sum;
        y[i].d = _cvtss_sh(quantize_block_32(x, y[i].qs, &sum), _MM_FROUND_TO_NEAREST_INT);
    }
}

AVX2_TARGET static void quantize_q8_1(const float *x, block_q8_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK32) {
        int sum;
        y[i].d = quantize_block_32(x, y[i].qs, &sum);
        y[i].s = y[i].d * (float)sum;
    }
}

/* The first value of largest magnitude (its sign sets the sign of Q8_K's scale). */
AVX2_INLINE float first_of_largest_magnitude(const float *x, float amax) {
    __m256 target = _mm256_set1_ps(amax);
    for (int i = 0; i < QK_K; i += 8) {
        int mask = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + i)), target, _CMP_EQ_OQ));
        if (mask) return x[i + __builtin_ctz((unsigned)mask)];
    }
    return 0.0f;
}

AVX2_TARGET static void quantize_q8_k(const float *x, block_q8_k *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        __m256 amax_v = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8) amax_v = _mm256_max_ps(amax_v, abs_ps(_mm256_loadu_ps(x + j)));
        float amax = hmax_ps(amax_v);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        float iscale = -127.0f / first_of_largest_magnitude(x, amax);
        __m256 scale = _mm256_set1_ps(iscale);
        for (int j = 0; j < QK_K; j += 32) {
            __m256i q[4];
            for (int u = 0; u < 4; u++)
                q[u] = round_to_int(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * u), scale));
            store_int8x32(y[i].qs + j, q[0], q[1], q[2], q[3]);
        }
        /* group sums of 16: maddubs with ones sums pairs, madd sums to quads */
        for (int g = 0; g < QK_K / 16; g += 2) {
            __m256i q8 = _mm256_loadu_si256((const __m256i *)(y[i].qs + 16 * g));
            __m256i quads = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q8),
                                              _mm256_set1_epi16(1));
            __m256i pairs = _mm256_hadd_epi32(quads, quads);   /* per 128-bit half */
            pairs = _mm256_hadd_epi32(pairs, pairs);
            y[i].bsums[g] = (int16_t)_mm256_extract_epi32(pairs, 0);
            y[i].bsums[g + 1] = (int16_t)_mm256_extract_epi32(pairs, 4);
        }
        y[i].d = 1.0f / iscale;
    }
}

void llm_quantize_row_avx2(int act_type, const float *x, void *y, int64_t k) {
    switch (act_type) {
    case LLM_Q8_0: quantize_q8_0(x, y, k / QK32); break;
    case LLM_Q8_1: quantize_q8_1(x, y, k / QK32); break;
    case LLM_Q8_K: quantize_q8_k(x, y, k / QK_K); break;
    case LLM_F32: memcpy(y, x, (size_t)k * sizeof(float)); break;
    default: break;
    }
}

#endif
