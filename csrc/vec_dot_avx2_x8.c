/* Prefill tiles for the 32-value block formats on AVX2, over activations interleaved by
 * groups of 8 tokens (block_x8 in vec_dot.h); a tile takes two groups.
 *
 * Why: with one token per vector, every (row, token, block) pays an int->float conversion,
 * a scale multiply and one or two FMAs, and those saturate the FMA pipes. Interleaved, a
 * 32-byte activation load holds 4 consecutive values of 8 tokens; multiplied (maddubs)
 * against 4 weight values broadcast to all 8 lanes, it yields 8 tokens' partial sums at
 * once. Per (row, block) the float work then happens once for all 8 tokens: one
 * conversion, one multiply by the 8 activation scales, one FMA with the weight scale, and
 * one FMA for the min (Q4_1, Q5_1) or offset (Q4_0, Q5_0) term against the 8 block sums.
 * The quantized values and scales are exactly those of the one-token formats (Q8_0 keeps
 * its half-precision scale), so prefill and decode see the same activations. */
#include "vec_dot.h"

#if defined(__x86_64__)
#include "avx2_common.h"

/* ---------------------------------------------------------------- quantization */

/* One 32-value block of one token: q = round(x / d), d = amax / 127 (as quants.c). */
AVX2_INLINE float quantize_values(const float *x, int32_t quads[8], int *sum) {
    __m256 v[4], amax = _mm256_setzero_ps();
    for (int i = 0; i < 4; i++) {
        v[i] = _mm256_loadu_ps(x + 8 * i);
        amax = _mm256_max_ps(amax, _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v[i]));
    }
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    float d = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m))) / 127.0f;
    __m256 inv_d = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    __m256i q[4], total = _mm256_setzero_si256();
    for (int i = 0; i < 4; i++) {
        q[i] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[i], inv_d),
                                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        total = _mm256_add_epi32(total, q[i]);
    }
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(total), _mm256_extracti128_si256(total, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
    *sum = _mm_cvtsi128_si32(_mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1)));
    __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)quads, bytes);
    return d;
}

AVX2_TARGET void llm_quantize_x8_avx2(int half_scale, const float *x, int64_t k, int n_toks,
                                      block_x8 *group) {
    int64_t nb = k / QK32;
    for (int t = 0; t < 8; t++) {
        /* missing tokens of a last, partial group repeat the last one */
        const float *row = x + (int64_t)(t < n_toks ? t : n_toks - 1) * k;
        for (int64_t b = 0; b < nb; b++) {
            int32_t quads[8];
            int sum;
            float d = quantize_values(row + b * QK32, quads, &sum);
            /* Q8_0's scale is stored as a half: use exactly that value */
            if (half_scale) d = _cvtsh_ss(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
            for (int step = 0; step < 8; step++) group[b].q[step][t] = quads[step];
            group[b].d[t] = d;
            group[b].s[t] = d * (float)sum;
        }
    }
}

/* ---------------------------------------------------------------- tiles */

AVX2_INLINE int quants_offset(int type) {  /* where qs starts in the block */
    switch (type) {
    case LLM_Q4_0: return 2;
    case LLM_Q4_1: return 4;
    case LLM_Q5_0: return 6;
    case LLM_Q5_1: return 8;
    default: return 2;
    }
}

/* The 32 quants of a weight block as two vectors, values 0..15 and 16..31, each half
 * repeated in both 128-bit lanes (so an in-lane dword broadcast reaches all 8 tokens). */
AVX2_INLINE void weight_halves(int type, const uint8_t *p, __m256i *first, __m256i *second) {
    const uint8_t *qs = p + quants_offset(type);
    __m256i packed = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    if (type == LLM_Q8_0) {
        *first = packed;
        *second = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(qs + 16)));
        return;
    }
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    *first = _mm256_and_si256(packed, low4);
    *second = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4);
    if (type == LLM_Q5_0 || type == LLM_Q5_1) {
        __m256i high = fifth_bits(p + quants_offset(type) - 4);
        *first = _mm256_or_si256(*first, _mm256_permute2x128_si256(high, high, 0x00));
        *second = _mm256_or_si256(*second, _mm256_permute2x128_si256(high, high, 0x11));
    }
}

/* 4 weight values (w4: one dword of a half, broadcast) against 4 values of each of the 8
 * tokens of a group. */
AVX2_INLINE __m256i step_pairs(int type, __m256i w4, const int8_t *y_step) {
    __m256i y = _mm256_loadu_si256((const __m256i *)y_step);
    if (type == LLM_Q8_0) return _mm256_maddubs_epi16(_mm256_sign_epi8(w4, w4), _mm256_sign_epi8(y, w4));
    return _mm256_maddubs_epi16(w4, y);
}

/* Integer dots of one weight block with the blocks of G groups of 8 tokens (G = 1 or 2):
 * dots[g], 8 int32 lanes, one a token. The weight block is unpacked, and each step's 4
 * values broadcast, once for all groups. Pair sums stay in int16 while they cannot
 * overflow: 4-bit quants (<= 15) for all 8 steps (8 * 2 * 15 * 127 < 32768), 5-bit ones
 * for 4 steps, signed 8-bit ones for one. */
AVX2_INLINE void block_dots_x8(int type, const int G, const uint8_t *p, const block_x8 *const a[2],
                               __m256i dots[2]) {
    const __m256i ones = _mm256_set1_epi16(1);
    const int steps_in_int16 = type == LLM_Q8_0 ? 1 : (type == LLM_Q5_0 || type == LLM_Q5_1) ? 4 : 8;
    __m256i first, second, pairs[2];
#pragma GCC unroll 2
    for (int g = 0; g < G; g++) dots[g] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int step = 0; step < 8; step++) {
        if (step == 0) weight_halves(type, p, &first, &second);
        __m256i w4 = _mm256_shuffle_epi32(step < 4 ? first : second, (step & 3) * 0x55);
#pragma GCC unroll 2
        for (int g = 0; g < G; g++) {
            __m256i product = step_pairs(type, w4, (const int8_t *)a[g]->q[step]);
            pairs[g] = step % steps_in_int16 == 0 ? product : _mm256_add_epi16(pairs[g], product);
            if (step % steps_in_int16 == steps_in_int16 - 1)
                dots[g] = _mm256_add_epi32(dots[g], _mm256_madd_epi16(pairs[g], ones));
        }
    }
}

/* R weight rows against G groups of 8 tokens; group g's activations start at
 * act + 8 * g * act_stride. */
AVX2_INLINE void tile_x8(const int TYPE, const int R, const int G, int nb, const uint8_t *w,
                         size_t w_stride, int n_rows, const uint8_t *act, size_t act_stride,
                         int n_toks, float *out, size_t out_stride) {
    const int w_bytes = block_bytes(TYPE);
    const block_x8 *group[2];
    const uint8_t *w_row[MAX_TILE];
    __m256 acc[MAX_TILE][2];  /* lanes: the 8 tokens of a group */
#pragma GCC unroll 2
    for (int g = 0; g < G; g++) group[g] = (const block_x8 *)(act + (size_t)(8 * g) * act_stride);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        w_row[r] = w + (size_t)(r < n_rows ? r : n_rows - 1) * w_stride;
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    }
    for (int b = 0; b < nb; b++) {
        const block_x8 *a[2];
        __m256 act_scales[2], act_sums[2];
#pragma GCC unroll 2
        for (int g = 0; g < G; g++) {
            a[g] = &group[g][b];
            act_scales[g] = _mm256_loadu_ps(a[g]->d);
            act_sums[g] = _mm256_loadu_ps(a[g]->s);
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *p = w_row[r] + (size_t)b * w_bytes;
            __m256i dots[2];
            block_dots_x8(TYPE, G, p, a, dots);
            float d = half_to_float(p);
#pragma GCC unroll 2
            for (int g = 0; g < G; g++) {
                __m256 dot = _mm256_mul_ps(_mm256_cvtepi32_ps(dots[g]), act_scales[g]);
                acc[r][g] = _mm256_fmadd_ps(dot, _mm256_set1_ps(d), acc[r][g]);
                if (has_min(TYPE))  /* + m * (dx * sum y) */
                    acc[r][g] = _mm256_fmadd_ps(_mm256_set1_ps(half_to_float(p + 2)), act_sums[g], acc[r][g]);
                if (value_offset(TYPE))  /* - offset * d * (dx * sum y) */
                    acc[r][g] = _mm256_fnmadd_ps(_mm256_set1_ps((float)value_offset(TYPE) * d),
                                                 act_sums[g], acc[r][g]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        if (r >= n_rows) break;
        float lanes[16];
#pragma GCC unroll 2
        for (int g = 0; g < G; g++) _mm256_storeu_ps(lanes + 8 * g, acc[r][g]);
        for (int t = 0; t < n_toks; t++) out[t * out_stride + r] = lanes[t];
    }
}

/* 4 rows x 16 tokens (two groups): the weights, unpacked once, serve twice the tokens of
 * one group (pp512 +14% on SmolLM2 against 4 x 8). A last group of 8 or fewer tokens
 * takes the one-group shape. */
#define TILE_X16(name, TYPE)                                                               \
    AVX2_TARGET static void name(int nb, const uint8_t *w, size_t ws, int nr,             \
                                 const uint8_t *a, size_t as, int nt, float *o, size_t os) { \
        if (nt > 8)                                                                        \
            tile_x8(TYPE, 4, 2, nb, w, ws, nr, a, as, nt, o, os);                          \
        else                                                                               \
            tile_x8(TYPE, 4, 1, nb, w, ws, nr, a, as, nt, o, os);                          \
    }

TILE_X16(q4_0_x16, LLM_Q4_0)
TILE_X16(q4_1_x16, LLM_Q4_1)
TILE_X16(q5_0_x16, LLM_Q5_0)
TILE_X16(q5_1_x16, LLM_Q5_1)
TILE_X16(q8_0_x16, LLM_Q8_0)

llm_tile llm_avx2_x8_tile(int weight_type) {
    llm_tile tile = {NULL, 4, 16, LLM_ACT_X8};
    switch (weight_type) {
    case LLM_Q4_0: tile.fn = q4_0_x16; break;
    case LLM_Q4_1: tile.fn = q4_1_x16; break;
    case LLM_Q5_0: tile.fn = q5_0_x16; break;
    case LLM_Q5_1: tile.fn = q5_1_x16; break;
    case LLM_Q8_0: tile.fn = q8_0_x16; break;
    default: break;
    }
    return tile;
}

#endif
