/* Block format table, half-float conversions, row dequantization (all weight formats) and
 * the scalar row quantization of activations into the dot formats. */
#include "quants.h"

#include "matmul.h"  /* llm_get_threads */

#include <math.h>
#include <string.h>

#include "vec_dot.h"

/* Dequantization and quantization must round exactly like ggml's reference (a multiply,
 * then an add), so a compiler may not fuse the two into one FMA here (GCC does on aarch64
 * by default). */
#define NO_FMA_CONTRACTION __attribute__((optimize("fp-contract=off")))

/* ---------------------------------------------------------------- type table */

int llm_block_size(int type) {
    switch (type) {
    case LLM_F32: case LLM_F16: case LLM_BF16: return 1;
    case LLM_Q4_0: case LLM_Q4_1: case LLM_Q5_0: case LLM_Q5_1:
    case LLM_Q8_0: case LLM_Q8_1: return QK32;
    case LLM_Q4_K: case LLM_Q5_K: case LLM_Q6_K: case LLM_Q8_K: return QK_K;
    default: return 0;
    }
}

int llm_type_size(int type) {
    switch (type) {
    case LLM_F32: return 4;
    case LLM_F16: case LLM_BF16: return 2;
    case LLM_Q4_0: return sizeof(block_q4_0);
    case LLM_Q4_1: return sizeof(block_q4_1);
    case LLM_Q5_0: return sizeof(block_q5_0);
    case LLM_Q5_1: return sizeof(block_q5_1);
    case LLM_Q8_0: return sizeof(block_q8_0);
    case LLM_Q8_1: return sizeof(block_q8_1);
    case LLM_Q4_K: return sizeof(block_q4_k);
    case LLM_Q5_K: return sizeof(block_q5_k);
    case LLM_Q6_K: return sizeof(block_q6_k);
    case LLM_Q8_K: return sizeof(block_q8_k);
    default: return 0;
    }
}

size_t llm_row_nbytes(int type, int64_t k) {
    int block = llm_block_size(type);
    return block ? (size_t)(k / block) * (size_t)llm_type_size(type) : 0;
}

int llm_can_dequantize(int type) {
    return llm_block_size(type) != 0 && type != LLM_Q8_1 && type != LLM_Q8_K;
}

int llm_act_type(int weight_type) {
    switch (weight_type) {
    case LLM_F32: case LLM_F16: case LLM_BF16: return LLM_F32;
    case LLM_Q4_0: case LLM_Q5_0: case LLM_Q8_0: return LLM_Q8_0;
    case LLM_Q4_1: case LLM_Q5_1: return LLM_Q8_1;
    case LLM_Q4_K: case LLM_Q5_K: case LLM_Q6_K: return LLM_Q8_K;
    default: return -1;
    }
}

/* ---------------------------------------------------------------- half floats */

static inline float bits_to_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t float_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

float llm_fp16_to_fp32(fp16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1f;
    uint32_t mantissa = h & 0x3ff;
    if (exponent == 0x1f)  /* inf / nan: keep the payload */
        return bits_to_float(sign | 0x7f800000u | (mantissa << 13));
    if (exponent == 0) {
        /* zero or subnormal: mantissa * 2^-24, exact in float */
        float magnitude = (float)mantissa * 0x1p-24f;
        return sign ? -magnitude : magnitude;
    }
    return bits_to_float(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

fp16_t llm_fp32_to_fp16(float f) {
    uint32_t u = float_to_bits(f);
    uint32_t sign = (u >> 16) & 0x8000;
    uint32_t abs_bits = u & 0x7fffffff;
    if (abs_bits > 0x7f800000u)  /* nan: quiet, keep the top payload bits */
        return (fp16_t)(sign | 0x7e00 | ((abs_bits >> 13) & 0x3ff));
    if (abs_bits >= 0x477ff000u)  /* rounds to >= 65520: infinity */
        return (fp16_t)(sign | 0x7c00);
    if (abs_bits < 0x38800000u) {
        /* below the smallest normal half: a subnormal multiple of 2^-24; adding 0.5 makes
         * the float adder round to nearest even at that quantum */
        float shifted = bits_to_float(abs_bits) + 0.5f;
        return (fp16_t)(sign | (float_to_bits(shifted) - 0x3f000000u));
    }
    /* normal: rebias the exponent and round the 13 dropped mantissa bits to nearest even */
    uint32_t odd = (abs_bits >> 13) & 1;
    abs_bits += 0xc8000fffu + odd;  /* (-112 << 23) + rounding bias */
    return (fp16_t)(sign | (abs_bits >> 13));
}

float llm_bf16_to_fp32(bf16_t h) { return bits_to_float((uint32_t)h << 16); }

/* ---------------------------------------------------------------- dequantization */

/* The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K super-block: j < 4 keep
 * their 6 bits in bytes j and j+4; j >= 4 take 4 bits from byte j+4 and their top 2 bits
 * from the spare high bits of bytes j-4 and j. */
static inline void unpack_k_scale(const uint8_t *scales, int j, int *sc, int *mn) {
    if (j < 4) {
        *sc = scales[j] & 63;
        *mn = scales[j + 4] & 63;
    } else {
        *sc = (scales[j + 4] & 0x0f) | ((scales[j - 4] >> 6) << 4);
        *mn = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
    }
}

NO_FMA_CONTRACTION
static void dequant_q4_0(const block_q4_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK32) {
        float d = llm_fp16_to_fp32(x[i].d);
        for (int j = 0; j < QK32 / 2; j++) {
            y[j] = d * (float)((x[i].qs[j] & 0x0f) - 8);
            y[j + 16] = d * (float)((x[i].qs[j] >> 4) - 8);
        }
    }
}

NO_FMA_CONTRACTION
static void dequant_q4_1(const block_q4_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK32) {
        float d = llm_fp16_to_fp32(x[i].d), m = llm_fp16_to_fp32(x[i].m);
        for (int j = 0; j < QK32 / 2; j++) {
            y[j] = d * (float)(x[i].qs[j] & 0x0f) + m;
            y[j + 16] = d * (float)(x[i].qs[j] >> 4) + m;
        }
    }
}

/* The 32 5th bits of a Q5 block, bit j for value j. */
static inline uint32_t q5_high_bits(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

NO_FMA_CONTRACTION
static void dequant_q5_0(const block_q5_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK32) {
        float d = llm_fp16_to_fp32(x[i].d);
        uint32_t high = q5_high_bits(x[i].qh);
        for (int j = 0; j < QK32 / 2; j++) {
            int lo = (x[i].qs[j] & 0x0f) | (int)((high >> j) & 1) << 4;
            int hi = (x[i].qs[j] >> 4) | (int)((high >> (j + 16)) & 1) << 4;
            y[j] = d * (float)(lo - 16);
            y[j + 16] = d * (float)(hi - 16);
        }
    }
}

NO_FMA_CONTRACTION
static void dequant_q5_1(const block_q5_1 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK32) {
        float d = llm_fp16_to_fp32(x[i].d), m = llm_fp16_to_fp32(x[i].m);
        uint32_t high = q5_high_bits(x[i].qh);
        for (int j = 0; j < QK32 / 2; j++) {
            int lo = (x[i].qs[j] & 0x0f) | (int)((high >> j) & 1) << 4;
            int hi = (x[i].qs[j] >> 4) | (int)((high >> (j + 16)) & 1) << 4;
            y[j] = d * (float)lo + m;
            y[j + 16] = d * (float)hi + m;
        }
    }
}

static void dequant_q8_0(const block_q8_0 *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += QK32) {
        float d = llm_fp16_to_fp32(x[i].d);
        for (int j = 0; j < QK32; j++) y[j] = (float)x[i].qs[j] * d;
    }
}

NO_FMA_CONTRACTION
static void dequant_q4_k(const block_q4_k *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        float d = llm_fp16_to_fp32(x[i].d), dmin = llm_fp16_to_fp32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int chunk = 0; chunk < 4; chunk++, q += 32, y += 64) {
            int sc_lo, mn_lo, sc_hi, mn_hi;
            unpack_k_scale(x[i].scales, 2 * chunk, &sc_lo, &mn_lo);
            unpack_k_scale(x[i].scales, 2 * chunk + 1, &sc_hi, &mn_hi);
            float d_lo = d * (float)sc_lo, m_lo = dmin * (float)mn_lo;
            float d_hi = d * (float)sc_hi, m_hi = dmin * (float)mn_hi;
            for (int l = 0; l < 32; l++) {
                y[l] = d_lo * (float)(q[l] & 0x0f) - m_lo;
                y[l + 32] = d_hi * (float)(q[l] >> 4) - m_hi;
            }
        }
    }
}

NO_FMA_CONTRACTION
static void dequant_q5_k(const block_q5_k *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        float d = llm_fp16_to_fp32(x[i].d), dmin = llm_fp16_to_fp32(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int chunk = 0; chunk < 4; chunk++, q += 32, y += 64) {
            int sc_lo, mn_lo, sc_hi, mn_hi;
            unpack_k_scale(x[i].scales, 2 * chunk, &sc_lo, &mn_lo);
            unpack_k_scale(x[i].scales, 2 * chunk + 1, &sc_hi, &mn_hi);
            float d_lo = d * (float)sc_lo, m_lo = dmin * (float)mn_lo;
            float d_hi = d * (float)sc_hi, m_hi = dmin * (float)mn_hi;
            for (int l = 0; l < 32; l++) {
                int lo = (q[l] & 0x0f) | ((x[i].qh[l] >> (2 * chunk)) & 1) << 4;
                int hi = (q[l] >> 4) | ((x[i].qh[l] >> (2 * chunk + 1)) & 1) << 4;
                y[l] = d_lo * (float)lo - m_lo;
                y[l + 32] = d_hi * (float)hi - m_hi;
            }
        }
    }
}

NO_FMA_CONTRACTION
static void dequant_q6_k(const block_q6_k *x, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        float d = llm_fp16_to_fp32(x[i].d);
        /* each half of 128 values: ql[0:64] low nibbles feed positions 0..63, high
         * nibbles 64..127; qh[0:32] gives 2 bits to each of the four 32-value quarters */
        for (int half = 0; half < 2; half++, y += 128) {
            const uint8_t *ql = x[i].ql + 64 * half, *qh = x[i].qh + 32 * half;
            const int8_t *sc = x[i].scales + 8 * half;
            for (int l = 0; l < 32; l++) {
                int g = l / 16;
                int q0 = ((ql[l] & 0x0f) | ((qh[l] >> 0) & 3) << 4) - 32;
                int q1 = ((ql[l + 32] & 0x0f) | ((qh[l] >> 2) & 3) << 4) - 32;
                int q2 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                int q3 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                y[l] = d * (float)sc[g] * (float)q0;
                y[l + 32] = d * (float)sc[g + 2] * (float)q1;
                y[l + 64] = d * (float)sc[g + 4] * (float)q2;
                y[l + 96] = d * (float)sc[g + 6] * (float)q3;
            }
        }
    }
}

void llm_dequantize_row(int type, const void *x, float *y, int64_t k) {
    int64_t nb = k / (llm_block_size(type) ? llm_block_size(type) : 1);
    switch (type) {
    case LLM_F32: memcpy(y, x, (size_t)k * sizeof(float)); break;
    case LLM_F16:
        for (int64_t i = 0; i < k; i++) y[i] = llm_fp16_to_fp32(((const fp16_t *)x)[i]);
        break;
    case LLM_BF16:
        for (int64_t i = 0; i < k; i++) y[i] = llm_bf16_to_fp32(((const bf16_t *)x)[i]);
        break;
    case LLM_Q4_0: dequant_q4_0(x, y, nb); break;
    case LLM_Q4_1: dequant_q4_1(x, y, nb); break;
    case LLM_Q5_0: dequant_q5_0(x, y, nb); break;
    case LLM_Q5_1: dequant_q5_1(x, y, nb); break;
    case LLM_Q8_0: dequant_q8_0(x, y, nb); break;
    case LLM_Q4_K: dequant_q4_k(x, y, nb); break;
    case LLM_Q5_K: dequant_q5_k(x, y, nb); break;
    case LLM_Q6_K: dequant_q6_k(x, y, nb); break;
    default: break;
    }
}

/* ---------------------------------------------------------------- activation quantization */

/* Round to nearest, ties to even (what the AVX2 path's vroundps does), for |v| < 2^22:
 * adding 1.5 * 2^23 leaves no fraction bits, so the float adder does the rounding. */
NO_FMA_CONTRACTION
static inline int round_nearest_even(float v) {
    float shifted = v + 12582912.0f;
    return (int)(float_to_bits(shifted) & 0x007fffff) - 0x00400000;
}

static float block_abs_max(const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; j++) amax = fmaxf(amax, fabsf(x[j]));
    return amax;
}

/* q = round(x / d) with d = amax / 127: returns d and the sum of q. */
NO_FMA_CONTRACTION
static float quantize_block_32(const float *x, int8_t *q, int *sum) {
    float d = block_abs_max(x, QK32) / 127.0f;
    float inv_d = d != 0.0f ? 1.0f / d : 0.0f;
    int total = 0;
    for (int j = 0; j < QK32; j++) {
        q[j] = (int8_t)round_nearest_even(x[j] * inv_d);
        total += q[j];
    }
    *sum = total;
    return d;
}

NO_FMA_CONTRACTION
static void quantize_q8_0_scalar(const float *x, block_q8_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK32) {
        int sum;
        y[i].d = llm_fp32_to_fp16(quantize_block_32(x, y[i].qs, &sum));
    }
}

NO_FMA_CONTRACTION
static void quantize_q8_1_scalar(const float *x, block_q8_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK32) {
        int sum;
        y[i].d = quantize_block_32(x, y[i].qs, &sum);
        y[i].s = y[i].d * (float)sum;
    }
}

/* Q8_K maps the value of largest magnitude to -127 * sign, as ggml does: iscale = -127/max
 * and d = 1/iscale (negative when that value is positive). */
NO_FMA_CONTRACTION
static void quantize_q8_k_scalar(const float *x, block_q8_k *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK_K; j++) {
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
        }
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        float iscale = -127.0f / max;
        for (int j = 0; j < QK_K; j++) {
            int v = round_nearest_even(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v > 127 ? 127 : v);
        }
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += y[i].qs[16 * g + j];
            y[i].bsums[g] = (int16_t)sum;
        }
        y[i].d = 1.0f / iscale;
    }
}

void llm_quantize_row_scalar(int act_type, const float *x, void *y, int64_t k) {
    switch (act_type) {
    case LLM_Q8_0: quantize_q8_0_scalar(x, y, k / QK32); break;
    case LLM_Q8_1: quantize_q8_1_scalar(x, y, k / QK32); break;
    case LLM_Q8_K: quantize_q8_k_scalar(x, y, k / QK_K); break;
    case LLM_F32: memcpy(y, x, (size_t)k * sizeof(float)); break;
    default: break;
    }
}

#if defined(__x86_64__)
void llm_quantize_row_avx2(int act_type, const float *x, void *y, int64_t k);  /* quantize_avx2.c */
#endif

void llm_quantize_row(int act_type, const float *x, void *y, int64_t k) {
#if defined(__x86_64__)
    if (llm_get_path() == LLM_PATH_AVX2) {
        llm_quantize_row_avx2(act_type, x, y, k);
        return;
    }
#endif
    llm_quantize_row_scalar(act_type, x, y, k);
}

/* What 8-bit activations lose: x minus the values its quantization in act_type (Q8_0,
 * Q8_1 or Q8_K) stands for, block by block, with the very quantizer the matmul uses. */
static void residual_row(int act_type, const float *x, float *residual, int64_t k) {
    const int n = llm_block_size(act_type);
    for (int64_t i = 0; i + n <= k; i += n) {
        union { block_q8_0 q8_0; block_q8_1 q8_1; block_q8_k q8_k; } block;
        llm_quantize_row(act_type, x + i, &block, n);
        const int8_t *q = act_type == LLM_Q8_0 ? block.q8_0.qs
                        : act_type == LLM_Q8_1 ? block.q8_1.qs : block.q8_k.qs;
        const float d = act_type == LLM_Q8_0 ? llm_fp16_to_fp32(block.q8_0.d)
                      : act_type == LLM_Q8_1 ? block.q8_1.d : block.q8_k.d;
        for (int j = 0; j < n; j++) residual[i + j] = x[i + j] - d * (float)q[j];
    }
}

/* Rows in parallel once there are enough of them to pay for the team (a prefill). */
#define RESIDUAL_PARALLEL_MIN_ROWS 8

void llm_quantization_residual(int act_type, const float *x, float *residual, int64_t k,
                               int64_t n_rows) {
    if (n_rows < RESIDUAL_PARALLEL_MIN_ROWS) {  /* a decode step: no team at all */
        for (int64_t t = 0; t < n_rows; t++)
            residual_row(act_type, x + t * k, residual + t * k, k);
        return;
    }
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) num_threads(llm_get_threads())
#endif
    for (int64_t t = 0; t < n_rows; t++)
        residual_row(act_type, x + t * k, residual + t * k, k);
}
