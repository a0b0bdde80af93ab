/* Shared helpers of the AVX2 kernels (x86-64 only). Every function carries the target
 * attribute, so the rest of the build stays baseline x86-64 and the path is chosen at run
 * time. */
#ifndef LLMCLI_AVX2_COMMON_H
#define LLMCLI_AVX2_COMMON_H
#if defined(__x86_64__)

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "quants.h"

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))

/* Largest tile any AVX2 kernel uses; the tiles' register arrays are sized by it. */
#define MAX_TILE 4

/* Decode streams the weights from memory once; the hardware prefetcher alone leaves the
 * loads waiting (cold matvecs ran at 55-80% of the read bandwidth). Each row of a tile
 * prefetches the same position in the rows two tiles ahead (which are contiguous after
 * it), so every line is requested about two tiles' work before it is needed. */
#define PREFETCH_TILES_AHEAD 2

AVX2_INLINE void prefetch_ahead(const uint8_t *p, size_t tile_bytes) {
    _mm_prefetch((const char *)p + PREFETCH_TILES_AHEAD * tile_bytes, _MM_HINT_T0);
}

AVX2_INLINE float half_to_float(const void *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

AVX2_INLINE float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 32 bits -> 32 bytes, byte j = 0x10 if bit j is set (the 5th bit of a Q5 value). */
AVX2_INLINE __m256i fifth_bits(const uint8_t *qh) {
    uint32_t bits;
    memcpy(&bits, qh, 4);
    /* give byte j a copy of source byte j/8, then test bit j%8 */
    const __m256i spread = _mm256_setr_epi64x(0, 0x0101010101010101LL, 0x0202020202020202LL,
                                              0x0303030303030303LL);
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), spread);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x10));
}

/* Widen 16 int16 pair sums to 8 int32 lanes and to float. */
AVX2_INLINE __m256 pairs_to_float(__m256i sums16) {
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(sums16, _mm256_set1_epi16(1)));
}

/* ---- the 32-value block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), for their tiles ---- */

/* Bytes of one weight block; a constant once the tile is inlined. */
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
 * one unsigned operand) and subtract offset * d * (the activation block's scaled sum). */
AVX2_INLINE int value_offset(int type) {
    return type == LLM_Q4_0 ? 8 : type == LLM_Q5_0 ? 16 : 0;
}

AVX2_INLINE int has_min(int type) { return type == LLM_Q4_1 || type == LLM_Q5_1; }

#endif
#endif
