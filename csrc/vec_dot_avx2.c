/* AVX2+FMA tiles: the one-token tile of the 32-value block formats (Q4_0, Q4_1, Q5_0,
 * Q5_1, Q8_0; their batched tile is in vec_dot_avx2_x8.c), the float formats' tiles, and
 * the table that picks each type's tile shape.
 *
 * Integer products use maddubs (u8 x s8 -> pairs of int16) and madd (-> int32); the float
 * work (conversion, scales) happens once per block. */
#include "vec_dot.h"

#if defined(__x86_64__)
#include "avx2_common.h"

/* The one-token (decode) shape: 8 weight rows against one activation row, the rows in
 * the 8 float lanes. Per (row, block) it does exactly the float operations of the 8-token
 * prefill tile (vec_dot_avx2_x8.c), in the same order: the block's integer dot times the
 * activation scale, an FMA with the weight scale, then one FMA for the min (Q4_1, Q5_1) or
 * the offset (Q4_0, Q5_0). So a token decoded one at a time gets bit-identical logits to
 * the same token prefilled in a batch, however the prompt was chunked. Folding the 8 rows'
 * integer sums into one vector (hadd) lets one conversion and two FMAs serve 8 rows. */

/* 8 vectors of 8 int32 partial sums -> one vector whose lane r is the total of v[r].
 * A transpose-and-add with unpacks (one uop each) rather than hadd (several on Zen). */
AVX2_INLINE __m256i fold_rows8(const __m256i v[8]) {
    __m256i pair[4], quad[2];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)  /* 128-bit half: v[2i] and v[2i+1] interleaved, 2 partials each */
        pair[i] = _mm256_add_epi32(_mm256_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                                   _mm256_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++)  /* 128-bit half: rows 4i..4i+3, one partial each */
        quad[i] = _mm256_add_epi32(_mm256_unpacklo_epi64(pair[2 * i], pair[2 * i + 1]),
                                   _mm256_unpackhi_epi64(pair[2 * i], pair[2 * i + 1]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(quad[0], quad[1], 0x20),
                            _mm256_permute2x128_si256(quad[0], quad[1], 0x31));
}

/* Scales from 8 blocks, lane r from block r. They are packed in general registers (whose
 * ALUs are idle here), so only two moves and one conversion per vector use the vector
 * pipes, which the dots keep busy. The empty asm keeps each loaded value in a general
 * register: without it GCC moves the packing to the vector pipes. Loading each scale
 * straight into its vector lane (vpinsrd / vpinsrw from memory) takes fewer instructions
 * and ran 1.13x faster on weights in cache, but decoding from memory ran 0.93x: these
 * independent scalar loads go out early, and streaming needs that more. */
AVX2_INLINE uint64_t in_gpr(uint64_t v) {
    __asm__("" : "+r"(v));
    return v;
}

/* The half at byte 0 (the scale d) of each of 8 blocks as 8 floats. */
AVX2_INLINE __m256 scales_of_rows8(const uint8_t *const block[8]) {
    uint64_t rows_0123 = 0, rows_4567 = 0;
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
        uint16_t low, high;
        memcpy(&low, block[r], 2);
        memcpy(&high, block[r + 4], 2);
        rows_0123 |= in_gpr(low) << (16 * r);
        rows_4567 |= in_gpr(high) << (16 * r);
    }
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)rows_4567, (long long)rows_0123));
}

/* The leading halves (d, m) of each of 8 blocks as 8 floats d and 8 floats m. Rows
 * (0,1,4,5) and (2,3,6,7) go to two vectors so that one shuffle per output puts the lanes
 * back in row order. */
AVX2_INLINE void scales_mins_of_rows8(const uint8_t *const block[8], __m256 *d, __m256 *m) {
    uint64_t pair[4];  /* rows (0,1), (4,5), (2,3), (6,7): (d, m) of two rows each */
    static const int first_row[4] = {0, 4, 2, 6};
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        uint32_t one, two;
        memcpy(&one, block[first_row[i]], 4);
        memcpy(&two, block[first_row[i] + 1], 4);
        pair[i] = in_gpr(one) | (in_gpr(two) << 32);
    }
    __m256 a = _mm256_cvtph_ps(_mm_set_epi64x((long long)pair[1], (long long)pair[0]));
    __m256 b = _mm256_cvtph_ps(_mm_set_epi64x((long long)pair[3], (long long)pair[2]));
    *d = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    *m = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
}

/* Sum of the 32 int8 values of an activation block (for Q8_0 activations, which do not
 * carry it; the offset formats need it). */
AVX2_INLINE int sum_int8x32(__m256i y) {
    __m256i pairs = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), y),
                                      _mm256_set1_epi16(1));
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(pairs), _mm256_extracti128_si256(pairs, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
    return _mm_cvtsi128_si32(_mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1)));
}

/* The 4- and 5-bit formats pair rows r and r+4 in one vector (r in the low 128 bits, r+4
 * in the high ones): one load, mask and shift unpack both rows' 32 values as a vector of
 * values 0-15 and one of values 16-31, each multiplied with the matching half of the
 * activation block (broadcast to both halves). The two products add in int16 (at most
 * 4 x 31 x 127 < 2^15), so one madd widens two rows, and the four pair vectors fold in 6
 * shuffles instead of the 8 rows' 14. Integer sums are exact: the floats that follow are
 * the same as the prefill tile's. */
/* The 32 values of rows a and b: values 0-15 of a, of b in `first`, values 16-31 in `second`. */
AVX2_INLINE void unpack_row_pair(const int TYPE, const uint8_t *block_a, const uint8_t *block_b,
                                 __m256i *first_out, __m256i *second_out) {
    const __m256i low4 = _mm256_set1_epi8(0x0f);
    const int qs_at = TYPE == LLM_Q4_0 ? 2 : TYPE == LLM_Q4_1 ? 4 : TYPE == LLM_Q5_0 ? 6 : 8;
    __m256i packed = _mm256_loadu2_m128i((const __m128i *)(block_b + qs_at),
                                         (const __m128i *)(block_a + qs_at));
    __m256i first = _mm256_and_si256(packed, low4);
    __m256i second = _mm256_and_si256(_mm256_srli_epi16(packed, 4), low4);
    if (TYPE == LLM_Q5_0 || TYPE == LLM_Q5_1) {
        /* qh of row a in the low half, of row b in the high half; byte j of each half
         * then takes a copy of qh byte j/8 (values 0-15) or 2 + j/8 (values 16-31) and
         * tests bit j%8 */
        const int qh_at = TYPE == LLM_Q5_0 ? 2 : 4;
        int32_t qh_a, qh_b;
        memcpy(&qh_a, block_a + qh_at, 4);
        memcpy(&qh_b, block_b + qh_at, 4);
        __m256i qh = _mm256_blend_epi32(_mm256_set1_epi32(qh_a), _mm256_set1_epi32(qh_b), 0xf0);
        const __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL), five = _mm256_set1_epi8(0x10);
        const __m256i spread_first = _mm256_setr_epi64x(0, 0x0101010101010101LL, 0, 0x0101010101010101LL);
        const __m256i spread_second = _mm256_setr_epi64x(0x0202020202020202LL, 0x0303030303030303LL,
                                                         0x0202020202020202LL, 0x0303030303030303LL);
        __m256i bits_first = _mm256_and_si256(_mm256_shuffle_epi8(qh, spread_first), bit);
        __m256i bits_second = _mm256_and_si256(_mm256_shuffle_epi8(qh, spread_second), bit);
        first = _mm256_or_si256(first, _mm256_and_si256(_mm256_cmpeq_epi8(bits_first, bit), five));
        second = _mm256_or_si256(second, _mm256_and_si256(_mm256_cmpeq_epi8(bits_second, bit), five));
    }
    *first_out = first;
    *second_out = second;
}

/* The int16 pair sums of rows a and b (low and high half) against one activation block;
 * the two products add in int16 (at most 4 x 31 x 127 < 2^15). */
AVX2_INLINE __m256i row_pair_sums16(__m256i first, __m256i second, __m256i y_first, __m256i y_second) {
    return _mm256_add_epi16(_mm256_maddubs_epi16(first, y_first), _mm256_maddubs_epi16(second, y_second));
}

/* v[i]: the int16 sums of rows i (low half) and i+4 (high half) -> lane r: row r's total.
 * 4-bit values fold in int16 before one madd widens all 8 rows: a lane holds at most
 * 4 x 15 x 127, and four lanes add up to 30480 < 2^15, so the folds stay exact. 5-bit
 * values (up to 4 x 31 x 127 a lane) widen first and fold in int32. */
AVX2_INLINE __m256i fold_row_pairs(const int TYPE, const __m256i v[4]) {
    const __m256i ones = _mm256_set1_epi16(1);
    if (TYPE == LLM_Q4_0 || TYPE == LLM_Q4_1) {
        __m256i rows01 = _mm256_add_epi16(_mm256_unpacklo_epi32(v[0], v[1]), _mm256_unpackhi_epi32(v[0], v[1]));
        __m256i rows23 = _mm256_add_epi16(_mm256_unpacklo_epi32(v[2], v[3]), _mm256_unpackhi_epi32(v[2], v[3]));
        __m256i rows = _mm256_add_epi16(_mm256_unpacklo_epi64(rows01, rows23), _mm256_unpackhi_epi64(rows01, rows23));
        return _mm256_madd_epi16(rows, ones);
    }
    __m256i w[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) w[i] = _mm256_madd_epi16(v[i], ones);
    __m256i rows01 = _mm256_add_epi32(_mm256_unpacklo_epi32(w[0], w[1]), _mm256_unpackhi_epi32(w[0], w[1]));
    __m256i rows23 = _mm256_add_epi32(_mm256_unpacklo_epi32(w[2], w[3]), _mm256_unpackhi_epi32(w[2], w[3]));
    return _mm256_add_epi32(_mm256_unpacklo_epi64(rows01, rows23), _mm256_unpackhi_epi64(rows01, rows23));
}

/* Integer dots of one block of 8 rows with the activation blocks of NT tokens (1 or 2;
 * only the 4/5-bit formats take 2: their unpacking is then shared): dots[t], lane r, row r. */
AVX2_INLINE void block_dots_rows8(const int TYPE, const int NT, const uint8_t *const block[8],
                                  const int8_t *const y_qs[2], __m256i dots[2]) {
    if (TYPE == LLM_Q8_0) {
        const __m256i y = _mm256_loadu_si256((const __m256i *)y_qs[0]);
        __m256i row_dots[8];
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)((const block_q8_0 *)block[r])->qs);
            row_dots[r] = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(y, q)),
                                            _mm256_set1_epi16(1));
        }
        dots[0] = fold_rows8(row_dots);
        return;
    }
    __m256i y_first[2], y_second[2], pairs[2][4];
#pragma GCC unroll 2
    for (int t = 0; t < NT; t++) {
        y_first[t] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)y_qs[t]));
        y_second[t] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(y_qs[t] + 16)));
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
        __m256i first, second;
        unpack_row_pair(TYPE, block[r], block[r + 4], &first, &second);
#pragma GCC unroll 2
        for (int t = 0; t < NT; t++) pairs[t][r] = row_pair_sums16(first, second, y_first[t], y_second[t]);
    }
#pragma GCC unroll 2
    for (int t = 0; t < NT; t++) dots[t] = fold_row_pairs(TYPE, pairs[t]);
}

AVX2_INLINE void decode_rows8(const int TYPE, const int NT, int nb, const uint8_t *w,
                              size_t w_stride, int n_rows, const uint8_t *act, size_t act_stride,
                              int n_toks, float *out, size_t out_stride) {
    const int w_bytes = block_bytes(TYPE);
    const int a_bytes = has_min(TYPE) ? sizeof(block_q8_1) : sizeof(block_q8_0);
    /* rows as two bases and three strides each, not 8 pointers: the loop then keeps them
     * in registers. Rows past n_rows repeat the last row (lanes computed, never stored). */
    const uint8_t *row0 = w, *row4 = w + (size_t)(n_rows > 4 ? 4 : n_rows - 1) * w_stride;
    const size_t step1 = n_rows > 1 ? w_stride : 0, step2 = n_rows > 2 ? 2 * w_stride : step1,
                 step3 = n_rows > 3 ? 3 * w_stride : step2;
    const size_t step5 = n_rows > 5 ? w_stride : 0, step6 = n_rows > 6 ? 2 * w_stride : step5,
                 step7 = n_rows > 7 ? 3 * w_stride : step6;
    const uint8_t *act_row[2];
#pragma GCC unroll 2
    for (int t = 0; t < NT; t++) act_row[t] = act + (size_t)(t < n_toks ? t : n_toks - 1) * act_stride;
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int b = 0; b < nb; b++) {
        const int8_t *y_qs[2];
        float act_scale[2], act_sum[2] = {0.0f, 0.0f};  /* act_sum: scale x sum of the values */
#pragma GCC unroll 2
        for (int t = 0; t < NT; t++) {
            const uint8_t *a = act_row[t] + (size_t)b * a_bytes;
            if (has_min(TYPE)) {
                const block_q8_1 *q = (const block_q8_1 *)a;
                y_qs[t] = q->qs;
                act_scale[t] = q->d;
                act_sum[t] = q->s;
            } else {
                const block_q8_0 *q = (const block_q8_0 *)a;
                y_qs[t] = q->qs;
                act_scale[t] = half_to_float(&q->d);
                if (value_offset(TYPE))
                    act_sum[t] = act_scale[t] * (float)sum_int8x32(_mm256_loadu_si256((const __m256i *)y_qs[t]));
            }
        }
        /* the 8 rows are contiguous: stream the next tile in, 8 blocks' worth of its bytes
         * per block step (measured better than prefetching row by row or further ahead) */
        const uint8_t *ahead = w + 8 * w_stride + (size_t)b * 8 * w_bytes;
        for (int line = 0; line < 8 * w_bytes; line += 64) _mm_prefetch((const char *)ahead + line, _MM_HINT_T0);
        const uint8_t *at0 = row0 + (size_t)b * w_bytes, *at4 = row4 + (size_t)b * w_bytes;
        const uint8_t *block[8] = {at0, at0 + step1, at0 + step2, at0 + step3,
                                   at4, at4 + step5, at4 + step6, at4 + step7};
        __m256i dots[2];
        block_dots_rows8(TYPE, NT, block, y_qs, dots);
        __m256 w_scale, w_min = _mm256_setzero_ps();
        if (has_min(TYPE))
            scales_mins_of_rows8(block, &w_scale, &w_min);
        else
            w_scale = scales_of_rows8(block);
#pragma GCC unroll 2
        for (int t = 0; t < NT; t++) {
            __m256 dot = _mm256_mul_ps(_mm256_cvtepi32_ps(dots[t]), _mm256_set1_ps(act_scale[t]));
            acc[t] = _mm256_fmadd_ps(dot, w_scale, acc[t]);
            if (has_min(TYPE))  /* + m * (dx * sum y) */
                acc[t] = _mm256_fmadd_ps(w_min, _mm256_set1_ps(act_sum[t]), acc[t]);
            if (value_offset(TYPE))  /* - offset * d * (dx * sum y) */
                acc[t] = _mm256_fnmadd_ps(_mm256_mul_ps(_mm256_set1_ps((float)value_offset(TYPE)), w_scale),
                                          _mm256_set1_ps(act_sum[t]), acc[t]);
        }
    }
#pragma GCC unroll 2
    for (int t = 0; t < NT && t < n_toks; t++) {
        float lanes[8];
        _mm256_storeu_ps(lanes, acc[t]);
        for (int r = 0; r < n_rows && r < 8; r++) out[t * out_stride + r] = lanes[r];
    }
}

#define DECODE32(name, TYPE, NT)                                                           \
    AVX2_TARGET static void name(int nb, const uint8_t *w, size_t ws, int nr,             \
                                 const uint8_t *a, size_t as, int nt, float *o, size_t os) { \
        decode_rows8(TYPE, NT, nb, w, ws, nr, a, as, nt, o, os);                           \
    }

DECODE32(q4_0_decode, LLM_Q4_0, 1)
DECODE32(q4_1_decode, LLM_Q4_1, 1)
DECODE32(q5_0_decode, LLM_Q5_0, 1)
DECODE32(q5_1_decode, LLM_Q5_1, 1)
DECODE32(q8_0_decode, LLM_Q8_0, 1)
/* two tokens over one unpacking: a refined decode step (the activations and their
 * residual), or the tail of a short batch */
DECODE32(q4_0_decode2, LLM_Q4_0, 2)
DECODE32(q4_1_decode2, LLM_Q4_1, 2)
DECODE32(q5_0_decode2, LLM_Q5_0, 2)
DECODE32(q5_1_decode2, LLM_Q5_1, 2)

/* ---------------------------------------------------------------- float weights */

/* 8 weights of a float format as floats. */
AVX2_INLINE __m256 load8_weights(int type, const uint8_t *row, int i) {
    if (type == LLM_F32) return _mm256_loadu_ps((const float *)row + i);
    __m128i raw = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + i));
    if (type == LLM_F16) return _mm256_cvtph_ps(raw);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));  /* BF16 */
}

AVX2_INLINE float load1_weight(int type, const uint8_t *row, int i) {
    if (type == LLM_F32) return ((const float *)row)[i];
    if (type == LLM_F16) return half_to_float((const uint16_t *)row + i);
    return llm_bf16_to_fp32(((const uint16_t *)row)[i]);
}

/* Float tile: n is the row length in values; activations are the float rows themselves. */
AVX2_INLINE void tile_float(const int TYPE, const int R, const int T, int n,
                            const uint8_t *w, size_t w_stride, int n_rows,
                            const uint8_t *act, size_t act_stride, int n_toks,
                            float *out, size_t out_stride) {
    const uint8_t *w_row[MAX_TILE];
    const float *x_row[MAX_TILE];
    __m256 acc[MAX_TILE][MAX_TILE];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) w_row[r] = w + (size_t)(r < n_rows ? r : n_rows - 1) * w_stride;
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
        x_row[t] = (const float *)(act + (size_t)(t < n_toks ? t : n_toks - 1) * act_stride);
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 wv[MAX_TILE];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) wv[r] = load8_weights(TYPE, w_row[r], i);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            __m256 xv = _mm256_loadu_ps(x_row[t] + i);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            float sum = hsum_ps(acc[r][t]);
            for (int j = i; j < n; j++) sum += load1_weight(TYPE, w_row[r], j) * x_row[t][j];
            if (r < n_rows && t < n_toks) out[t * out_stride + r] = sum;
        }
}

#define TILE_FLOAT(name, TYPE, R, T)                                                       \
    AVX2_TARGET static void name(int n, const uint8_t *w, size_t ws, int nr,              \
                                 const uint8_t *a, size_t as, int nt, float *o, size_t os) { \
        tile_float(TYPE, R, T, n, w, ws, nr, a, as, nt, o, os);                            \
    }

TILE_FLOAT(f32_decode, LLM_F32, 4, 1)
TILE_FLOAT(f32_prefill, LLM_F32, 3, 4)
TILE_FLOAT(f16_decode, LLM_F16, 4, 1)
TILE_FLOAT(f16_prefill, LLM_F16, 3, 4)
TILE_FLOAT(bf16_decode, LLM_BF16, 4, 1)
TILE_FLOAT(bf16_prefill, LLM_BF16, 3, 4)

/* ---------------------------------------------------------------- table */

llm_tile llm_avx2_k_tile(int weight_type, int64_t n_tok);  /* vec_dot_avx2_k.c */
llm_tile llm_avx2_x8_tile(int weight_type);             /* vec_dot_avx2_x8.c */

/* From this many tokens the 8-token interleaved tiles beat one pass per token (a partial
 * group of 8 costs as much as a full one). Below it the 32-value formats run the decode
 * tile once per token: the same arithmetic as the interleaved tile, so a prompt gives the
 * same numbers however it is split into batches. */
#define X8_MIN_TOKENS 4

llm_tile llm_avx2_tile(int weight_type, int64_t n_tok) {
    int decode = n_tok == 1;
    if (n_tok >= X8_MIN_TOKENS) {
        llm_tile x8 = llm_avx2_x8_tile(weight_type);
        if (x8.fn) return x8;
    }
    switch (weight_type) {
    case LLM_Q4_0: return decode ? llm_rows_tile(q4_0_decode, 8, 1) : llm_rows_tile(q4_0_decode2, 8, 2);
    case LLM_Q4_1: return decode ? llm_rows_tile(q4_1_decode, 8, 1) : llm_rows_tile(q4_1_decode2, 8, 2);
    case LLM_Q5_0: return decode ? llm_rows_tile(q5_0_decode, 8, 1) : llm_rows_tile(q5_0_decode2, 8, 2);
    case LLM_Q5_1: return decode ? llm_rows_tile(q5_1_decode, 8, 1) : llm_rows_tile(q5_1_decode2, 8, 2);
    case LLM_Q8_0: return llm_rows_tile(q8_0_decode, 8, 1);
    case LLM_F32: return decode ? llm_rows_tile(f32_decode, 4, 1) : llm_rows_tile(f32_prefill, 3, 4);
    case LLM_F16: return decode ? llm_rows_tile(f16_decode, 4, 1) : llm_rows_tile(f16_prefill, 3, 4);
    case LLM_BF16: return decode ? llm_rows_tile(bf16_decode, 4, 1) : llm_rows_tile(bf16_prefill, 3, 4);
    /* the K super-block formats: tiles for 1, 2 and more tokens (vec_dot_avx2_k.c) */
    default: return llm_avx2_k_tile(weight_type, n_tok);
    }
}

float llm_vec_dot_avx2(int weight_type, int nb, const void *w, const void *act) {
    llm_tile tile = llm_avx2_tile(weight_type, 1);  /* the one-token shape */
    float result = 0.0f;
    if (tile.fn) tile.fn(nb, w, 0, 1, act, 0, 1, &result, 1);
    return result;
}

#endif
