/* AVX2 tiles for the K super-block formats (Q4_K, Q5_K, Q6_K) against Q8_K activations.
 *
 * The sub-block scales are small integers, so a whole 256-value super-block is summed in
 * int32 (madd against the broadcast scale merges the widening and the scaling) and only
 * then converted: one float FMA per super-block for the scales and one for the mins. The
 * mins (Q4_K/Q5_K) and Q6_K's -32 offset never touch the quants: they multiply the
 * activation's 16-value group sums (bsums). */
#include "vec_dot.h"

#if defined(__x86_64__)
#include "avx2_common.h"

/* Shuffle controls picking int16 lane j of each 128-bit half into all 8 lanes. */
AVX2_INLINE __m256i broadcast_int16_lane(__m256i v, int j) {
    return _mm256_shuffle_epi8(v, _mm256_set1_epi16((short)(0x0100 * (2 * j + 1) + 2 * j)));
}

/* ---------------------------------------------------------------- Q4_K and Q5_K */

/* The 6-bit scales and mins of a super-block as int16: scales in every 128-bit half (for
 * broadcast_int16_lane), mins as one 128-bit vector. See quants.c for the bit layout. */
AVX2_INLINE void unpack_k_scales(const uint8_t packed[12], __m256i *scales, __m128i *mins) {
    uint32_t word[3];
    memcpy(word, packed, 12);
    const uint32_t low6 = 0x3f3f3f3f, low4 = 0x0f0f0f0f, top2 = 0x03030303;
    uint32_t sc_0123 = word[0] & low6;
    uint32_t mn_0123 = word[1] & low6;
    uint32_t sc_4567 = (word[2] & low4) | ((word[0] >> 6) & top2) << 4;
    uint32_t mn_4567 = ((word[2] >> 4) & low4) | ((word[1] >> 6) & top2) << 4;
    __m256i wide = _mm256_cvtepu8_epi16(_mm_set_epi32((int)mn_4567, (int)mn_0123,
                                                      (int)sc_4567, (int)sc_0123));
    *scales = _mm256_permute2x128_si256(wide, wide, 0x00);
    *mins = _mm256_extracti128_si256(wide, 1);
}

/* Bit `bit` of every byte of qh moved to bit 4 (value 16), other bits cleared. */
AVX2_INLINE __m256i qh_bit_as_16(__m256i qh, int bit) {
    __m256i moved = bit < 4 ? _mm256_slli_epi16(qh, 4 - bit)
                  : bit > 4 ? _mm256_srli_epi16(qh, bit - 4) : qh;
    return _mm256_and_si256(moved, _mm256_set1_epi8(0x10));
}

/* Sums of the activation over each 32-value sub-block, as 8 int16 (from 16 group sums). */
AVX2_INLINE __m128i subblock_sums(const block_q8_k *a) {
    __m128i g_lo = _mm_loadu_si128((const __m128i *)a->bsums);
    __m128i g_hi = _mm_loadu_si128((const __m128i *)(a->bsums + 8));
    return _mm_hadd_epi16(g_lo, g_hi);
}

AVX2_INLINE void tile_q45_k(const int FIVE, const int R, const int T, const int AHEAD, int nb,
                            const uint8_t *w, size_t w_stride, int n_rows,
                            const uint8_t *act, size_t act_stride, int n_toks,
                            float *out, size_t out_stride) {
    const size_t w_bytes = FIVE ? sizeof(block_q5_k) : sizeof(block_q4_k);
    const uint8_t *w_row[MAX_TILE];
    const block_q8_k *a_row[MAX_TILE];
    __m256 acc[MAX_TILE][MAX_TILE];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) w_row[r] = w + (size_t)(r < n_rows ? r : n_rows - 1) * w_stride;
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
        a_row[t] = (const block_q8_k *)(act + (size_t)(t < n_toks ? t : n_toks - 1) * act_stride);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();

    for (int b = 0; b < nb; b++) {
        /* the shared layout of block_q4_k and the head of block_q5_k */
        const block_q4_k *wb[MAX_TILE];
        __m256i scales[MAX_TILE], isum[MAX_TILE][MAX_TILE];
        __m128i mins[MAX_TILE];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            wb[r] = (const block_q4_k *)(w_row[r] + b * w_bytes);
            if (AHEAD)
                for (size_t line = 0; line < w_bytes; line += 64)
                    prefetch_ahead((const uint8_t *)wb[r] + line, R * w_stride);
            unpack_k_scales(wb[r]->scales, &scales[r], &mins[r]);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) isum[r][t] = _mm256_setzero_si256();
        }
#pragma GCC unroll 4
        for (int chunk = 0; chunk < 4; chunk++) {
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const uint8_t *qs = FIVE ? ((const block_q5_k *)wb[r])->qs : wb[r]->qs;
                __m256i bytes = _mm256_loadu_si256((const __m256i *)(qs + 32 * chunk));
                __m256i q_lo = _mm256_and_si256(bytes, _mm256_set1_epi8(0x0f));
                __m256i q_hi = _mm256_and_si256(_mm256_srli_epi16(bytes, 4), _mm256_set1_epi8(0x0f));
                if (FIVE) {
                    __m256i qh = _mm256_loadu_si256((const __m256i *)((const block_q5_k *)wb[r])->qh);
                    q_lo = _mm256_or_si256(q_lo, qh_bit_as_16(qh, 2 * chunk));
                    q_hi = _mm256_or_si256(q_hi, qh_bit_as_16(qh, 2 * chunk + 1));
                }
                __m256i sc_lo = broadcast_int16_lane(scales[r], 2 * chunk);
                __m256i sc_hi = broadcast_int16_lane(scales[r], 2 * chunk + 1);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    const int8_t *y = a_row[t][b].qs + 64 * chunk;
                    __m256i y_lo = _mm256_loadu_si256((const __m256i *)y);
                    __m256i y_hi = _mm256_loadu_si256((const __m256i *)(y + 32));
                    __m256i p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(q_lo, y_lo), sc_lo);
                    __m256i p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(q_hi, y_hi), sc_hi);
                    isum[r][t] = _mm256_add_epi32(isum[r][t], _mm256_add_epi32(p_lo, p_hi));
                }
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            const block_q8_k *a = &a_row[t][b];
            __m128i act_sums = subblock_sums(a);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                float d = half_to_float(&wb[r]->d) * a->d;
                float dmin = half_to_float(&wb[r]->dmin) * a->d;
                __m256i min_terms = _mm256_zextsi128_si256(_mm_madd_epi16(mins[r], act_sums));
                acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]), _mm256_set1_ps(d), acc[r][t]);
                acc[r][t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(min_terms), _mm256_set1_ps(dmin), acc[r][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            if (r < n_rows && t < n_toks) out[t * out_stride + r] = hsum_ps(acc[r][t]);
}

/* ---------------------------------------------------------------- Q6_K */

/* Scale lanes for quarter k of a 128-value half: 16-value group 2k in the low 128 bits
 * (the first 16 values of the quarter), group 2k+1 in the high ones. */
AVX2_INLINE __m256i q6_quarter_scales(__m256i half_scales, int k) {
    const __m256i pick = _mm256_setr_epi8(
        4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1,
        4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1, 4 * k, 4 * k + 1,
        4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3,
        4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3, 4 * k + 2, 4 * k + 3);
    return _mm256_shuffle_epi8(half_scales, pick);
}

/* The 32 unsigned 6-bit values of quarter k (0..3) of a half, from its 64 ql and 32 qh. */
AVX2_INLINE __m256i q6_quarter_values(__m256i ql_a, __m256i ql_b, __m256i qh, int k) {
    const __m256i low4 = _mm256_set1_epi8(0x0f), bits45 = _mm256_set1_epi8(0x30);
    __m256i ql = (k & 1) ? ql_b : ql_a;
    __m256i low = (k >= 2) ? _mm256_and_si256(_mm256_srli_epi16(ql, 4), low4)
                           : _mm256_and_si256(ql, low4);
    /* bits 2k, 2k+1 of qh move to bits 4, 5 */
    __m256i high = k == 0 ? _mm256_slli_epi16(qh, 4) : k == 1 ? _mm256_slli_epi16(qh, 2)
                 : k == 2 ? qh : _mm256_srli_epi16(qh, 2);
    return _mm256_or_si256(low, _mm256_and_si256(high, bits45));
}

AVX2_INLINE void tile_q6_k(const int R, const int T, const int AHEAD, int nb,
                           const uint8_t *w, size_t w_stride, int n_rows,
                           const uint8_t *act, size_t act_stride, int n_toks,
                           float *out, size_t out_stride) {
    const block_q6_k *w_row[MAX_TILE];
    const block_q8_k *a_row[MAX_TILE];
    __m256 acc[MAX_TILE][MAX_TILE];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        w_row[r] = (const block_q6_k *)(w + (size_t)(r < n_rows ? r : n_rows - 1) * w_stride);
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
        a_row[t] = (const block_q8_k *)(act + (size_t)(t < n_toks ? t : n_toks - 1) * act_stride);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();

    for (int b = 0; b < nb; b++) {
        __m256i isum[MAX_TILE][MAX_TILE];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const block_q6_k *wb = &w_row[r][b];
            if (AHEAD)
                for (size_t line = 0; line < sizeof(block_q6_k); line += 64)
                    prefetch_ahead((const uint8_t *)wb + line, R * w_stride);
            /* the -32 offset: isum starts at -32 * sum_g scale_g * bsum_g */
            __m256i all_scales = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wb->scales));
#pragma GCC unroll 4
            for (int t = 0; t < T; t++) {
                __m256i bsums = _mm256_loadu_si256((const __m256i *)a_row[t][b].bsums);
                __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(all_scales, bsums), 5);
                isum[r][t] = _mm256_sub_epi32(_mm256_setzero_si256(), offset);
            }
        }
#pragma GCC unroll 2
        for (int half = 0; half < 2; half++) {
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const block_q6_k *wb = &w_row[r][b];
                __m256i ql_a = _mm256_loadu_si256((const __m256i *)(wb->ql + 64 * half));
                __m256i ql_b = _mm256_loadu_si256((const __m256i *)(wb->ql + 64 * half + 32));
                __m256i qh = _mm256_loadu_si256((const __m256i *)(wb->qh + 32 * half));
                __m256i half_scales = _mm256_broadcastsi128_si256(
                    _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(wb->scales + 8 * half))));
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    __m256i q = q6_quarter_values(ql_a, ql_b, qh, k);
                    __m256i sc = q6_quarter_scales(half_scales, k);
#pragma GCC unroll 4
                    for (int t = 0; t < T; t++) {
                        const int8_t *y = a_row[t][b].qs + 128 * half + 32 * k;
                        __m256i pairs = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)y));
                        isum[r][t] = _mm256_add_epi32(isum[r][t], _mm256_madd_epi16(pairs, sc));
                    }
                }
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            float d = half_to_float(&w_row[r][b].d);
#pragma GCC unroll 4
            for (int t = 0; t < T; t++)
                acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]),
                                            _mm256_set1_ps(d * a_row[t][b].d), acc[r][t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            if (r < n_rows && t < n_toks) out[t * out_stride + r] = hsum_ps(acc[r][t]);
}

/* ---------------------------------------------------------------- table */

#define TILE_K(name, CALL)                                                                 \
    AVX2_TARGET static void name(int nb, const uint8_t *w, size_t ws, int nr,             \
                                 const uint8_t *a, size_t as, int nt, float *o, size_t os) { \
        CALL;                                                                              \
    }

TILE_K(q4_k_decode, tile_q45_k(0, 2, 1, 1, nb, w, ws, nr, a, as, nt, o, os))
TILE_K(q4_k_decode2, tile_q45_k(0, 2, 2, 1, nb, w, ws, nr, a, as, nt, o, os))
TILE_K(q4_k_prefill, tile_q45_k(0, 2, 2, 0, nb, w, ws, nr, a, as, nt, o, os))
TILE_K(q5_k_decode, tile_q45_k(1, 2, 1, 1, nb, w, ws, nr, a, as, nt, o, os))
TILE_K(q5_k_decode2, tile_q45_k(1, 2, 2, 1, nb, w, ws, nr, a, as, nt, o, os))
TILE_K(q5_k_prefill, tile_q45_k(1, 2, 2, 0, nb, w, ws, nr, a, as, nt, o, os))
TILE_K(q6_k_decode, tile_q6_k(2, 1, 1, nb, w, ws, nr, a, as, nt, o, os))
TILE_K(q6_k_decode2, tile_q6_k(2, 2, 1, nb, w, ws, nr, a, as, nt, o, os))
TILE_K(q6_k_prefill, tile_q6_k(2, 2, 0, nb, w, ws, nr, a, as, nt, o, os))

/* One token (decode); two (a refined decode step: the activations and their residual,
 * unpacking each weight block once for both, 1.03-1.04x Gemma 3 decode over running the
 * one-token tile twice); more (prefill, without the prefetch: a chunk of tokens reuses
 * each tile's weights). All three do the same arithmetic per (row, token). */
llm_tile llm_avx2_k_tile(int weight_type, int64_t n_tok) {
    const int toks = n_tok == 1 ? 1 : 2;
    switch (weight_type) {
    case LLM_Q4_K:
        return llm_rows_tile(n_tok == 1 ? q4_k_decode : n_tok == 2 ? q4_k_decode2 : q4_k_prefill, 2, toks);
    case LLM_Q5_K:
        return llm_rows_tile(n_tok == 1 ? q5_k_decode : n_tok == 2 ? q5_k_decode2 : q5_k_prefill, 2, toks);
    case LLM_Q6_K:
        return llm_rows_tile(n_tok == 1 ? q6_k_decode : n_tok == 2 ? q6_k_decode2 : q6_k_prefill, 2, toks);
    default: return llm_rows_tile(NULL, 1, 1);
    }
}

#endif
