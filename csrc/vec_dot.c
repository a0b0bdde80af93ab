/* Run-time choice of the kernel path, and the scalar twin of every dot product: plain C
 * that runs anywhere, one integer dot per block and one float scale multiply per block,
 * the same arithmetic as the AVX2 kernels up to float summation order. */
#include "vec_dot.h"

#include <math.h>

/* ---------------------------------------------------------------- path selection */

static int current_path = -1;  /* -1: not decided yet */

int llm_cpu_has_avx2(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
#else
    return 0;
#endif
}

int llm_get_path(void) {
    if (current_path < 0) current_path = llm_cpu_has_avx2() ? LLM_PATH_AVX2 : LLM_PATH_SCALAR;
    return current_path;
}

int llm_set_path(int path) {
    if (path == LLM_PATH_AVX2 && !llm_cpu_has_avx2()) return -1;
    if (path != LLM_PATH_AVX2 && path != LLM_PATH_SCALAR) return -1;
    current_path = path;
    return 0;
}

/* ---------------------------------------------------------------- 32-value blocks */

static inline float half(fp16_t h) { return llm_fp16_to_fp32(h); }

/* Sum of q[j] * y[j] over a block of a 4-bit format (q unsigned, offset subtracted). */
static inline int dot_nibbles(const uint8_t qs[16], int offset, const int8_t y[32]) {
    int sum = 0;
    for (int j = 0; j < 16; j++) {
        sum += ((qs[j] & 0x0f) - offset) * y[j];
        sum += ((qs[j] >> 4) - offset) * y[j + 16];
    }
    return sum;
}

static inline int dot_nibbles_5bit(const uint8_t qs[16], const uint8_t qh[4], int offset,
                                   const int8_t y[32]) {
    uint32_t high = (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 |
                    (uint32_t)qh[3] << 24;
    int sum = 0;
    for (int j = 0; j < 16; j++) {
        int lo = (qs[j] & 0x0f) | (int)((high >> j) & 1) << 4;
        int hi = (qs[j] >> 4) | (int)((high >> (j + 16)) & 1) << 4;
        sum += (lo - offset) * y[j] + (hi - offset) * y[j + 16];
    }
    return sum;
}

static float dot_q4_0(int nb, const block_q4_0 *w, const block_q8_0 *x) {
    float sum = 0.0f;
    for (int b = 0; b < nb; b++)
        sum += half(w[b].d) * half(x[b].d) * (float)dot_nibbles(w[b].qs, 8, x[b].qs);
    return sum;
}

static float dot_q4_1(int nb, const block_q4_1 *w, const block_q8_1 *x) {
    float sum = 0.0f;
    for (int b = 0; b < nb; b++) {
        sum += half(w[b].d) * x[b].d * (float)dot_nibbles(w[b].qs, 0, x[b].qs);
        sum += half(w[b].m) * x[b].s;  /* the min times the activation block's sum */
    }
    return sum;
}

static float dot_q5_0(int nb, const block_q5_0 *w, const block_q8_0 *x) {
    float sum = 0.0f;
    for (int b = 0; b < nb; b++)
        sum += half(w[b].d) * half(x[b].d) *
               (float)dot_nibbles_5bit(w[b].qs, w[b].qh, 16, x[b].qs);
    return sum;
}

static float dot_q5_1(int nb, const block_q5_1 *w, const block_q8_1 *x) {
    float sum = 0.0f;
    for (int b = 0; b < nb; b++) {
        sum += half(w[b].d) * x[b].d * (float)dot_nibbles_5bit(w[b].qs, w[b].qh, 0, x[b].qs);
        sum += half(w[b].m) * x[b].s;
    }
    return sum;
}

static float dot_q8_0(int nb, const block_q8_0 *w, const block_q8_0 *x) {
    float sum = 0.0f;
    for (int b = 0; b < nb; b++) {
        int isum = 0;
        for (int j = 0; j < QK32; j++) isum += w[b].qs[j] * x[b].qs[j];
        sum += half(w[b].d) * half(x[b].d) * (float)isum;
    }
    return sum;
}

/* ---------------------------------------------------------------- K super-blocks */

/* Same unpacking as quants.c (see there): 6-bit scale and min of sub-block j. */
static inline void k_scale(const uint8_t *scales, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = scales[j] & 63;
        *mn = scales[j + 4] & 63;
    } else {
        *sc = (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4);
        *mn = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
    }
}

/* Q4_K and Q5_K: value = d*sc*q - dmin*mn, so per super-block
 * dot = dx * (d * sum_j sc_j * <q,y>_j  -  dmin * sum_j mn_j * ysum_j).
 * qh is NULL for Q4_K. */
static float dot_k_superblock(fp16_t d, fp16_t dmin, const uint8_t *scales, const uint8_t *qs,
                              const uint8_t *qh, const block_q8_k *x) {
    int scaled = 0, mins = 0;
    for (int j = 0; j < 8; j++) {
        int sc, mn, sub = 0;
        k_scale(scales, j, &sc, &mn);
        const int8_t *y = x->qs + 32 * j;
        for (int l = 0; l < 32; l++) {
            int q = (qs[32 * (j / 2) + l] >> (4 * (j & 1))) & 0x0f;
            if (qh) q |= ((qh[l] >> j) & 1) << 4;
            sub += q * y[l];
        }
        scaled += sc * sub;
        mins += mn * (x->bsums[2 * j] + x->bsums[2 * j + 1]);
    }
    return x->d * (half(d) * (float)scaled - half(dmin) * (float)mins);
}

static float dot_q4_k(int nb, const block_q4_k *w, const block_q8_k *x) {
    float sum = 0.0f;
    for (int b = 0; b < nb; b++)
        sum += dot_k_superblock(w[b].d, w[b].dmin, w[b].scales, w[b].qs, NULL, &x[b]);
    return sum;
}

static float dot_q5_k(int nb, const block_q5_k *w, const block_q8_k *x) {
    float sum = 0.0f;
    for (int b = 0; b < nb; b++)
        sum += dot_k_superblock(w[b].d, w[b].dmin, w[b].scales, w[b].qs, w[b].qh, &x[b]);
    return sum;
}

static float dot_q6_k(int nb, const block_q6_k *w, const block_q8_k *x) {
    float sum = 0.0f;
    for (int b = 0; b < nb; b++) {
        int scaled = 0;
        for (int half_idx = 0; half_idx < 2; half_idx++) {
            const uint8_t *ql = w[b].ql + 64 * half_idx, *qh = w[b].qh + 32 * half_idx;
            const int8_t *y = x[b].qs + 128 * half_idx;
            const int8_t *sc = w[b].scales + 8 * half_idx;
            for (int quarter = 0; quarter < 4; quarter++) {
                /* quarter 0/1: low nibbles of ql[0:32]/ql[32:64]; 2/3: their high nibbles;
                 * the 2 high bits sit at bit 2*quarter of qh */
                for (int g = 0; g < 2; g++) {
                    int sub = 0;
                    for (int l = 16 * g; l < 16 * g + 16; l++) {
                        int low = (ql[l + 32 * (quarter & 1)] >> (4 * (quarter >> 1))) & 0x0f;
                        int q = low | ((qh[l] >> (2 * quarter)) & 3) << 4;
                        sub += (q - 32) * y[32 * quarter + l];
                    }
                    scaled += sc[2 * quarter + g] * sub;
                }
            }
        }
        sum += half(w[b].d) * x[b].d * (float)scaled;
    }
    return sum;
}

/* ---------------------------------------------------------------- float weights */

static float dot_f32(int n, const float *w, const float *x) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) sum += w[i] * x[i];
    return sum;
}

static float dot_f16(int n, const fp16_t *w, const float *x) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) sum += half(w[i]) * x[i];
    return sum;
}

static float dot_bf16(int n, const bf16_t *w, const float *x) {
    float sum = 0.0f;
    for (int i = 0; i < n; i++) sum += llm_bf16_to_fp32(w[i]) * x[i];
    return sum;
}

float llm_vec_dot_scalar(int weight_type, int nb, const void *w, const void *act) {
    switch (weight_type) {
    case LLM_F32: return dot_f32(nb, w, act);
    case LLM_F16: return dot_f16(nb, w, act);
    case LLM_BF16: return dot_bf16(nb, w, act);
    case LLM_Q4_0: return dot_q4_0(nb, w, act);
    case LLM_Q4_1: return dot_q4_1(nb, w, act);
    case LLM_Q5_0: return dot_q5_0(nb, w, act);
    case LLM_Q5_1: return dot_q5_1(nb, w, act);
    case LLM_Q8_0: return dot_q8_0(nb, w, act);
    case LLM_Q4_K: return dot_q4_k(nb, w, act);
    case LLM_Q5_K: return dot_q5_k(nb, w, act);
    case LLM_Q6_K: return dot_q6_k(nb, w, act);
    default: return NAN;
    }
}

float llm_vec_dot(int weight_type, int nb, const void *w, const void *act) {
#if defined(__x86_64__)
    if (llm_get_path() == LLM_PATH_AVX2) return llm_vec_dot_avx2(weight_type, nb, w, act);
#endif
    return llm_vec_dot_scalar(weight_type, nb, w, act);
}

/* ---------------------------------------------------------------- scalar tiles */

/* One generic tile for every type: the scalar path has no registers to share. */
static llm_tile_fn scalar_tile_for(int weight_type);

#define SCALAR_TILE(name, type)                                                        \
    static void name(int nb, const uint8_t *w, size_t w_stride, int n_rows,           \
                     const uint8_t *act, size_t act_stride, int n_toks, float *out,   \
                     size_t out_stride) {                                              \
        for (int t = 0; t < n_toks; t++)                                               \
            for (int r = 0; r < n_rows; r++)                                           \
                out[t * out_stride + r] = llm_vec_dot_scalar(                          \
                    type, nb, w + r * w_stride, act + t * act_stride);                 \
    }

SCALAR_TILE(tile_f32, LLM_F32)
SCALAR_TILE(tile_f16, LLM_F16)
SCALAR_TILE(tile_bf16, LLM_BF16)
SCALAR_TILE(tile_q4_0, LLM_Q4_0)
SCALAR_TILE(tile_q4_1, LLM_Q4_1)
SCALAR_TILE(tile_q5_0, LLM_Q5_0)
SCALAR_TILE(tile_q5_1, LLM_Q5_1)
SCALAR_TILE(tile_q8_0, LLM_Q8_0)
SCALAR_TILE(tile_q4_k, LLM_Q4_K)
SCALAR_TILE(tile_q5_k, LLM_Q5_K)
SCALAR_TILE(tile_q6_k, LLM_Q6_K)

static llm_tile_fn scalar_tile_for(int weight_type) {
    switch (weight_type) {
    case LLM_F32: return tile_f32;
    case LLM_F16: return tile_f16;
    case LLM_BF16: return tile_bf16;
    case LLM_Q4_0: return tile_q4_0;
    case LLM_Q4_1: return tile_q4_1;
    case LLM_Q5_0: return tile_q5_0;
    case LLM_Q5_1: return tile_q5_1;
    case LLM_Q8_0: return tile_q8_0;
    case LLM_Q4_K: return tile_q4_k;
    case LLM_Q5_K: return tile_q5_k;
    case LLM_Q6_K: return tile_q6_k;
    default: return NULL;
    }
}

llm_tile llm_get_tile(int weight_type, int64_t n_tok) {
#if defined(__x86_64__)
    if (llm_get_path() == LLM_PATH_AVX2) return llm_avx2_tile(weight_type, n_tok);
#endif
    (void)n_tok;
    return llm_rows_tile(scalar_tile_for(weight_type), 4, 4);
}
