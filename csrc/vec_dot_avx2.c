/* AVX2+FMA tiles for the 32-value block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) and the
 * float formats, and the table that picks each type's tile shape.
 *
 * A tile computes R weight rows x T activation rows. Per block it unpacks each of the R
 * weight blocks once into 32 bytes, then for every token: integer products with
 * maddubs (u8 x s8 -> pairs of int16), madd (-> int32), one int->float conversion and one
 * FMA with the product of the two block scales. The R*T accumulators are independent
 * chains, which is what keeps the FMA latency off the critical path. */
#include "vec_dot.h"

#if defined(__x86_64__)
#include "avx2_common.h"

/* One weight block ready for the integer dot: 32 bytes of quants, its scale and min. */
typedef struct {
    __m256i q;      /* unsigned values, or for Q8_0 the magnitudes |q| */
    __m256i sign;   /* Q8_0 only: the signed values, to move their signs onto y */
    __m256 d, m;    /* scale and min, broadcast */
} weight_block;

/* Bytes of one weight block of each 32-value type; a constant once the tile is inlined. */
AVX2_INLINE int block_bytes(int type) {
    switch (type) {
    case LLM_Q4_0: return sizeof(block_q4_0);
    case LLM_Q4_1: return sizeof(block_q4_1);
    case LLM_Q5_0: return sizeof(block_q5_0);
    case LLM_Q5_1: return sizeof(block_q5_1);
    default: return sizeof(block_q8_0);
    }
}

/* Q4_0 / Q5_0 store q - offset with q unsigned: we multiply the unsigned q (maddubs needs
 * one unsigned operand) and subtract offset * sum(y), computed once per activation block. */
AVX2_INLINE int value_offset(int type) {
    return type == LLM_Q4_0 ? 8 : type == LLM_Q5_0 ? 16 : 0;
}

AVX2_INLINE int has_min(int type) { return type == LLM_Q4_1 || type == LLM_Q5_1; }

/* The quants of a weight block as 32 bytes (see weight_block.q). */
AVX2_INLINE __m256i load_weight_quants(int type, const uint8_t *p, __m256i *sign) {
    switch (type) {
    case LLM_Q4_0: return unpack_nibbles(((const block_q4_0 *)p)->qs);
    case LLM_Q4_1: return unpack_nibbles(((const block_q4_1 *)p)->qs);
    case LLM_Q5_0: {
        const block_q5_0 *b = (const block_q5_0 *)p;
        return _mm256_or_si256(unpack_nibbles(b->qs), fifth_bits(b->qh));
    }
    case LLM_Q5_1: {
        const block_q5_1 *b = (const block_q5_1 *)p;
        return _mm256_or_si256(unpack_nibbles(b->qs), fifth_bits(b->qh));
    }
    default:  /* Q8_0 */
        *sign = _mm256_loadu_si256((const __m256i *)((const block_q8_0 *)p)->qs);
        return _mm256_sign_epi8(*sign, *sign);
    }
}

AVX2_INLINE weight_block load_weight_block(int type, const uint8_t *p) {
    weight_block wb;
    wb.sign = _mm256_setzero_si256();
    wb.q = load_weight_quants(type, p, &wb.sign);
    /* the leading halves: d, or (d, m) */
    uint32_t bits = 0;
    memcpy(&bits, p, has_min(type) ? 4 : 2);
    __m256 dm = _mm256_cvtph_ps(_mm_set1_epi32((int)bits));  /* d m d m ... */
    wb.d = _mm256_moveldup_ps(dm);
    wb.m = _mm256_movehdup_ps(dm);
    return wb;
}

/* One activation block: 32 int8 values, scale, and what the weight type needs of the sum. */
typedef struct {
    __m256i y;
    __m256i offset_sums;  /* Q4_0/Q5_0: offset * y, summed in pairs as maddubs does */
    __m256 d;             /* the block scale, broadcast */
    __m256 min_sum;       /* Q4_1/Q5_1: s/8 in every lane (lanes are summed at the end) */
} act_block;

AVX2_INLINE act_block load_act_block(int weight_type, const uint8_t *p) {
    act_block ab;
    if (has_min(weight_type)) {
        const block_q8_1 *a = (const block_q8_1 *)p;
        ab.y = _mm256_loadu_si256((const __m256i *)a->qs);
        ab.d = _mm256_broadcast_ss(&a->d);
        ab.min_sum = _mm256_mul_ps(_mm256_broadcast_ss(&a->s), _mm256_set1_ps(0.125f));
    } else {
        const block_q8_0 *a = (const block_q8_0 *)p;
        ab.y = _mm256_loadu_si256((const __m256i *)a->qs);
        ab.d = _mm256_cvtph_ps(_mm_set1_epi16((short)a->d));
    }
    if (value_offset(weight_type))
        ab.offset_sums = _mm256_maddubs_epi16(_mm256_set1_epi8((char)value_offset(weight_type)), ab.y);
    return ab;
}

/* acc += dot(weight block, activation block) spread over 8 lanes. */
AVX2_INLINE __m256 block_product(int type, const weight_block *wb, const act_block *ab,
                                 __m256 acc) {
    __m256i pairs;
    if (type == LLM_Q8_0)
        pairs = _mm256_maddubs_epi16(wb->q, _mm256_sign_epi8(ab->y, wb->sign));
    else
        pairs = _mm256_maddubs_epi16(wb->q, ab->y);
    if (value_offset(type)) pairs = _mm256_sub_epi16(pairs, ab->offset_sums);
    __m256 scaled = _mm256_mul_ps(pairs_to_float(pairs), ab->d);
    acc = _mm256_fmadd_ps(scaled, wb->d, acc);
    if (has_min(type)) acc = _mm256_fmadd_ps(wb->m, ab->min_sum, acc);
    return acc;
}

/* The generic tile; every argument in capitals is a compile-time constant at each use. */
AVX2_INLINE void tile_blocks32(const int TYPE, const int R, const int T, int nb,
                               const uint8_t *w, size_t w_stride, int n_rows,
                               const uint8_t *act, size_t act_stride, int n_toks,
                               float *out, size_t out_stride) {
    const int w_bytes = block_bytes(TYPE);
    const int a_bytes = has_min(TYPE) ? sizeof(block_q8_1) : sizeof(block_q8_0);
    const uint8_t *w_row[MAX_TILE], *a_row[MAX_TILE];
    __m256 acc[MAX_TILE][MAX_TILE];
    /* rows/tokens past the end repeat the last valid one: no branches in the loop */
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) w_row[r] = w + (size_t)(r < n_rows ? r : n_rows - 1) * w_stride;
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) a_row[t] = act + (size_t)(t < n_toks ? t : n_toks - 1) * act_stride;
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) acc[r][t] = _mm256_setzero_ps();

    for (int b = 0; b < nb; b++) {
        weight_block wb[MAX_TILE];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) wb[r] = load_weight_block(TYPE, w_row[r] + (size_t)b * w_bytes);
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) {
            act_block ab = load_act_block(TYPE, a_row[t] + (size_t)b * a_bytes);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) acc[r][t] = block_product(TYPE, &wb[r], &ab, acc[r][t]);
        }
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++)
            if (r < n_rows && t < n_toks) out[t * out_stride + r] = hsum_ps(acc[r][t]);
}

/* The one-token (decode) shape: R rows against one activation row. Per row and block the
 * scale work is one conversion of the packed (d, m) halves and one multiply by the
 * activation's (dx, sx): lane 0 is the block scale d*dx, broadcast for the FMA; lane 1 is
 * the min term m*sx, summed in a small vector of its own. (Folding 4 rows' lanes with
 * hadd to share one conversion and FMA measured no faster on Zen 3.) */
AVX2_INLINE __m128 halves_to_floats(const uint8_t *p, int two) {
    uint32_t bits = 0;
    memcpy(&bits, p, two ? 4 : 2);  /* (d) or (d, m); never the neighbouring bytes */
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)bits));
}

AVX2_INLINE void decode_blocks32(const int TYPE, const int R, int nb,
                                 const uint8_t *w, size_t w_stride, int n_rows,
                                 const uint8_t *act, float *out) {
    const int w_bytes = block_bytes(TYPE);
    const int a_bytes = has_min(TYPE) ? sizeof(block_q8_1) : sizeof(block_q8_0);
    const uint8_t *w_row[MAX_TILE];
    __m256 acc[MAX_TILE];
    __m128 min_acc[MAX_TILE];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        w_row[r] = w + (size_t)(r < n_rows ? r : n_rows - 1) * w_stride;
        acc[r] = _mm256_setzero_ps();
        min_acc[r] = _mm_setzero_ps();
    }
    for (int b = 0; b < nb; b++) {
        const uint8_t *a = act + (size_t)b * a_bytes;
        __m256i y = _mm256_loadu_si256((const __m256i *)(a + (has_min(TYPE) ? 8 : 2)));
        /* (dx, sx) for Q8_1; (dx, 0) for Q8_0 */
        __m128 act_scales = has_min(TYPE) ? _mm_castpd_ps(_mm_load_sd((const double *)a))
                                          : halves_to_floats(a, 0);
        __m256i offset_sums = _mm256_setzero_si256();
        if (value_offset(TYPE))
            offset_sums = _mm256_maddubs_epi16(_mm256_set1_epi8((char)value_offset(TYPE)), y);
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *p = w_row[r] + (size_t)b * w_bytes;
            prefetch_ahead(p, R * w_stride);
            __m256i pairs;
            if (TYPE == LLM_Q8_0) {
                __m256i q = _mm256_loadu_si256((const __m256i *)((const block_q8_0 *)p)->qs);
                pairs = _mm256_maddubs_epi16(_mm256_sign_epi8(q, q), _mm256_sign_epi8(y, q));
            } else {
                __m256i unused_sign;
                pairs = _mm256_maddubs_epi16(load_weight_quants(TYPE, p, &unused_sign), y);
                if (value_offset(TYPE)) pairs = _mm256_sub_epi16(pairs, offset_sums);
            }
            __m128 scales = _mm_mul_ps(halves_to_floats(p, has_min(TYPE)), act_scales);
            if (has_min(TYPE)) min_acc[r] = _mm_add_ps(min_acc[r], scales);
            acc[r] = _mm256_fmadd_ps(pairs_to_float(pairs), _mm256_broadcastss_ps(scales), acc[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        float min_terms = has_min(TYPE) ? _mm_cvtss_f32(_mm_movehdup_ps(min_acc[r])) : 0.0f;
        if (r < n_rows) out[r] = hsum_ps(acc[r]) + min_terms;
    }
}

#define DECODE32(name, TYPE, R)                                                            \
    AVX2_TARGET static void name(int nb, const uint8_t *w, size_t ws, int nr,             \
                                 const uint8_t *a, size_t as, int nt, float *o, size_t os) { \
        (void)as; (void)nt; (void)os;                                                      \
        decode_blocks32(TYPE, R, nb, w, ws, nr, a, o);                                     \
    }

DECODE32(q4_0_decode, LLM_Q4_0, 4)
DECODE32(q4_1_decode, LLM_Q4_1, 4)
DECODE32(q5_0_decode, LLM_Q5_0, 4)
DECODE32(q5_1_decode, LLM_Q5_1, 4)
DECODE32(q8_0_decode, LLM_Q8_0, 4)

#define TILE32(name, TYPE, R, T)                                                           \
    AVX2_TARGET static void name(int nb, const uint8_t *w, size_t ws, int nr,             \
                                 const uint8_t *a, size_t as, int nt, float *o, size_t os) { \
        tile_blocks32(TYPE, R, T, nb, w, ws, nr, a, as, nt, o, os);                        \
    }

TILE32(q4_0_prefill, LLM_Q4_0, 2, 4)
TILE32(q4_1_prefill, LLM_Q4_1, 2, 4)
TILE32(q5_0_prefill, LLM_Q5_0, 2, 4)
TILE32(q5_1_prefill, LLM_Q5_1, 2, 4)
TILE32(q8_0_prefill, LLM_Q8_0, 2, 4)

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

llm_tile llm_avx2_k_tile(int weight_type, int decode);  /* vec_dot_avx2_k.c */
llm_tile llm_avx2_x8_tile(int weight_type);             /* vec_dot_avx2_x8.c */

/* From this many tokens the 8-token interleaved tiles beat one-token-per-vector ones
 * (a partial group of 8 costs as much as a full one). */
#define X8_MIN_TOKENS 4

llm_tile llm_avx2_tile(int weight_type, int64_t n_tok) {
    int decode = n_tok == 1;
    if (n_tok >= X8_MIN_TOKENS) {
        llm_tile x8 = llm_avx2_x8_tile(weight_type);
        if (x8.fn) return x8;
    }
#define PICK(dec, pre, R_dec, R_pre, T_pre)                                                \
    return decode ? (llm_tile){dec, R_dec, 1, LLM_ACT_ROWS}                                  \
                  : (llm_tile){pre, R_pre, T_pre, LLM_ACT_ROWS}
    switch (weight_type) {
    case LLM_Q4_0: PICK(q4_0_decode, q4_0_prefill, 4, 2, 4);
    case LLM_Q4_1: PICK(q4_1_decode, q4_1_prefill, 4, 2, 4);
    case LLM_Q5_0: PICK(q5_0_decode, q5_0_prefill, 4, 2, 4);
    case LLM_Q5_1: PICK(q5_1_decode, q5_1_prefill, 4, 2, 4);
    case LLM_Q8_0: PICK(q8_0_decode, q8_0_prefill, 4, 2, 4);
    case LLM_F32: PICK(f32_decode, f32_prefill, 4, 3, 4);
    case LLM_F16: PICK(f16_decode, f16_prefill, 4, 3, 4);
    case LLM_BF16: PICK(bf16_decode, bf16_prefill, 4, 3, 4);
    default: return llm_avx2_k_tile(weight_type, decode);
    }
#undef PICK
}

float llm_vec_dot_avx2(int weight_type, int nb, const void *w, const void *act) {
    llm_tile tile = llm_avx2_tile(weight_type, 1);  /* the one-token shape */
    float result = 0.0f;
    if (tile.fn) tile.fn(nb, w, 0, 1, act, 0, 1, &result, 1);
    return result;
}

#endif
