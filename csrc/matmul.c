/* llm_matmul: quantize the activations once, then split the output rows over the OpenMP
 * team; each thread walks its rows tile by tile, and for several tokens (prefill) a tile
 * covers T tokens so a weight block is unpacked once for all of them.
 *
 * Threads: one `omp parallel` per call. libgomp keeps its worker threads alive between
 * parallel regions (spinning for a while, then sleeping), so calls pay no thread start. */
#include "matmul.h"

#include <string.h>

#include "quants.h"
#include "vec_dot.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

static int n_threads = 0;  /* 0: not set yet, use OpenMP's default */

int llm_max_threads(void) {
#if defined(_OPENMP)
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void llm_set_threads(int n) { n_threads = n < 1 ? 1 : n; }

int llm_get_threads(void) {
#if defined(_OPENMP)
    return n_threads ? n_threads : llm_max_threads();
#else
    return 1;
#endif
}

size_t llm_matmul_workspace_size(int weight_type, int64_t k, int64_t n_tok) {
    int act = llm_act_type(weight_type);
    if (act < 0 || act == LLM_F32) return 0;
    size_t rows = llm_row_nbytes(act, k) * (size_t)n_tok;
    if (act == LLM_Q8_K) return rows;
    /* the 8-token interleaved layout, whole groups (see block_x8) */
    size_t groups = (size_t)((n_tok + 7) / 8) * (size_t)(k / QK32) * sizeof(block_x8);
    return rows > groups ? rows : groups;
}

/* Tokens per pass over a thread's weight rows: enough quantized activation rows to fill
 * about 128 KiB (half of what an L2 holds next to the weights), a multiple of the tile. */
static int64_t token_chunk(size_t act_row_bytes, int tile_toks) {
    int64_t chunk = (int64_t)((128 * 1024) / (act_row_bytes ? act_row_bytes : 1));
    chunk -= chunk % tile_toks;
    return chunk < tile_toks ? tile_toks : chunk;
}

/* What a thread still has to request of the `ahead` spans: its share of each (bytes
 * [done, end) from base), a part of it before every tile. */
typedef struct {
    const char *base[LLM_MAX_SPANS];
    size_t done[LLM_MAX_SPANS], end[LLM_MAX_SPANS];
    size_t step[LLM_MAX_SPANS];   /* bytes per tile, whole cache lines */
    int n;
} ahead_cursor;

static ahead_cursor share_of_spans(const llm_span *ahead, int n_ahead, int id, int size,
                                   int64_t n_tiles) {
    ahead_cursor c = {0};
    c.n = n_ahead < LLM_MAX_SPANS ? n_ahead : LLM_MAX_SPANS;
    for (int i = 0; i < c.n; i++) {
        c.base[i] = (const char *)ahead[i].p;
        c.done[i] = ahead[i].bytes * (size_t)id / (size_t)size;
        c.end[i] = ahead[i].bytes * (size_t)(id + 1) / (size_t)size;
        size_t per_tile = (c.end[i] - c.done[i]) / (size_t)(n_tiles > 0 ? n_tiles : 1) + 1;
        c.step[i] = (per_tile + 63) & ~(size_t)63;
    }
    return c;
}

static void request_ahead(ahead_cursor *c) {
    for (int i = 0; i < c->n; i++) {
        size_t stop = c->end[i] - c->done[i] > c->step[i] ? c->done[i] + c->step[i] : c->end[i];
        for (size_t at = c->done[i]; at < stop; at += 64)
            __builtin_prefetch(c->base[i] + at, 0, 3);
        c->done[i] = stop;
    }
}

/* Rows [row_begin, row_end) of the product, for all n_tok tokens. */
static void matmul_rows(llm_tile tile, int nb, const uint8_t *w, size_t w_stride,
                        int64_t row_begin, int64_t row_end, const uint8_t *act,
                        size_t act_stride, int64_t n_tok, float *out, int64_t n_out,
                        ahead_cursor *ahead) {
    int64_t chunk = token_chunk(act_stride, tile.tile_toks);
    for (int64_t t0 = 0; t0 < n_tok; t0 += chunk) {
        int64_t t_end = t0 + chunk < n_tok ? t0 + chunk : n_tok;
        for (int64_t r = row_begin; r < row_end; r += tile.tile_rows) {
            int n_rows = (int)(row_end - r < tile.tile_rows ? row_end - r : tile.tile_rows);
            request_ahead(ahead);
            for (int64_t t = t0; t < t_end; t += tile.tile_toks) {
                int n_toks = (int)(t_end - t < tile.tile_toks ? t_end - t : tile.tile_toks);
                tile.fn(nb, w + r * w_stride, w_stride, n_rows, act + t * act_stride,
                        act_stride, n_toks, out + t * n_out + r, (size_t)n_out);
            }
        }
    }
}

/* Weight bytes x tokens below which one more thread costs more (wake-up and barrier,
 * ~1-2 us) than it saves: about 1 us of one core's work. */
#define MIN_WORK_PER_THREAD (16 * 1024)

/* Quantizing a handful of rows is cheaper on the calling thread than a team barrier. */
#define PARALLEL_QUANTIZE_MIN_TOKENS 8

/* Activation rows [t0, t_end) of x into the workspace in the tile's layout; for the
 * interleaved layout t0 is a multiple of 8 and each group of 8 is written whole. */
static void quantize_activations(llm_tile tile, int act_type, const float *x, int64_t k,
                                 int64_t t0, int64_t t_end, uint8_t *workspace,
                                 size_t act_stride) {
#if defined(__x86_64__)
    if (tile.act_layout == LLM_ACT_X8) {
        for (int64_t t = t0; t < t_end; t += 8)
            llm_quantize_x8_avx2(act_type == LLM_Q8_0, x + t * k, k,
                                 (int)(t_end - t < 8 ? t_end - t : 8),
                                 (block_x8 *)(workspace + t * act_stride));
        return;
    }
#endif
    (void)tile;
    for (int64_t t = t0; t < t_end; t++)
        llm_quantize_row(act_type, x + t * k, workspace + t * act_stride, k);
}

/* The work of one thread: global tiles [first, last) of the matrices laid end to end. */
static void matmul_tile_range(const llm_matrix *mats, const llm_tile *tiles,
                              const int64_t *n_tiles, int n_mats, int64_t first, int64_t last,
                              int64_t k, const uint8_t *act, size_t act_stride, int64_t n_tok,
                              ahead_cursor *ahead) {
    int64_t offset = 0;  /* global index of matrix m's first tile */
    for (int m = 0; m < n_mats; offset += n_tiles[m], m++) {
        int64_t begin = first > offset ? first - offset : 0;
        int64_t end = last - offset < n_tiles[m] ? last - offset : n_tiles[m];
        if (begin >= end) continue;
        int64_t row_begin = begin * tiles[m].tile_rows;
        int64_t row_end = end * tiles[m].tile_rows < mats[m].n_out ? end * tiles[m].tile_rows
                                                                   : mats[m].n_out;
        int nb = (int)(llm_act_type(mats[m].type) == LLM_F32 ? k : k / llm_block_size(mats[m].type));
        matmul_rows(tiles[m], nb, mats[m].w, mats[m].w_stride, row_begin, row_end, act,
                    act_stride, n_tok, mats[m].out, mats[m].n_out, ahead);
    }
}

int llm_matmul_can_share(int type_a, int type_b, int64_t n_tok) {
    return llm_act_type(type_a) == llm_act_type(type_b) &&
           llm_get_tile(type_a, n_tok).act_layout == llm_get_tile(type_b, n_tok).act_layout;
}

void llm_matmul_many(const llm_matrix *mats, int n_mats, int64_t k, const float *x,
                     int64_t n_tok, void *workspace) {
    llm_matmul_many_ahead(mats, n_mats, k, x, n_tok, workspace, NULL, 0);
}

void llm_matmul_many_ahead(const llm_matrix *mats, int n_mats, int64_t k, const float *x,
                           int64_t n_tok, void *workspace, const llm_span *ahead,
                           int n_ahead) {
    if (n_mats < 1 || n_mats > LLM_MAX_MATRICES || n_tok <= 0) return;
    llm_tile tiles[LLM_MAX_MATRICES];
    int64_t n_tiles[LLM_MAX_MATRICES], total_tiles = 0, work = 0;
    for (int m = 0; m < n_mats; m++) {
        tiles[m] = llm_get_tile(mats[m].type, n_tok);
        if (!tiles[m].fn || llm_act_type(mats[m].type) < 0) return;
        n_tiles[m] = (mats[m].n_out + tiles[m].tile_rows - 1) / tiles[m].tile_rows;
        total_tiles += n_tiles[m];
        work += (int64_t)mats[m].w_stride * mats[m].n_out * n_tok;
    }
    int act_type = llm_act_type(mats[0].type);
    int is_float = act_type == LLM_F32;
    size_t act_stride = is_float ? (size_t)k * sizeof(float)
                      : tiles[0].act_layout == LLM_ACT_X8 ? (size_t)(k / QK32) * sizeof(block_x8) / 8
                      : llm_row_nbytes(act_type, k);
    const uint8_t *act = is_float ? (const uint8_t *)x : (const uint8_t *)workspace;
    int quantize_in_team = !is_float && n_tok >= PARALLEL_QUANTIZE_MIN_TOKENS;
    if (!is_float && !quantize_in_team)
        quantize_activations(tiles[0], act_type, x, k, 0, n_tok, workspace, act_stride);

    /* whole tiles per thread, contiguous, so no two threads write the same output; a
     * thread only joins if it gets enough work to pay for the team's synchronization */
    int team = llm_get_threads();
    if (team > total_tiles) team = (int)total_tiles;
    if (team > 1 + work / MIN_WORK_PER_THREAD) team = (int)(1 + work / MIN_WORK_PER_THREAD);
    if (team == 1) {  /* no parallel region for a one-thread team */
        if (quantize_in_team)
            quantize_activations(tiles[0], act_type, x, k, 0, n_tok, workspace, act_stride);
        ahead_cursor cursor = share_of_spans(ahead, n_ahead, 0, 1, total_tiles);
        matmul_tile_range(mats, tiles, n_tiles, n_mats, 0, total_tiles, k, act, act_stride, n_tok,
                          &cursor);
        return;
    }
#if defined(_OPENMP)
#pragma omp parallel num_threads(team)
#endif
    {
        int id = 0, size = 1;
#if defined(_OPENMP)
        id = omp_get_thread_num();
        size = omp_get_num_threads();
        if (quantize_in_team) {
            /* in groups of 8 tokens: whole interleaved groups per thread */
#pragma omp for schedule(static)
            for (int64_t t = 0; t < n_tok; t += 8)
                quantize_activations(tiles[0], act_type, x, k, t, t + 8 < n_tok ? t + 8 : n_tok,
                                     workspace, act_stride);
        }
#else
        if (quantize_in_team)
            quantize_activations(tiles[0], act_type, x, k, 0, n_tok, workspace, act_stride);
#endif
        int64_t first = total_tiles * id / size, last = total_tiles * (id + 1) / size;
        ahead_cursor cursor = share_of_spans(ahead, n_ahead, id, size, last - first);
        matmul_tile_range(mats, tiles, n_tiles, n_mats, first, last, k, act, act_stride, n_tok,
                          &cursor);
    }
}

void llm_matmul(int weight_type, const uint8_t *w, size_t w_stride, int64_t n_out, int64_t k,
                const float *x, int64_t n_tok, float *out, void *workspace) {
    llm_matrix mat = {weight_type, w, w_stride, n_out, out};
    if (n_out > 0) llm_matmul_many(&mat, 1, k, x, n_tok, workspace);
}

void llm_get_rows(int weight_type, const uint8_t *w, size_t w_stride, int64_t k,
                  const int32_t *ids, int64_t n_ids, float *out) {
    for (int64_t i = 0; i < n_ids; i++)
        llm_dequantize_row(weight_type, w + (size_t)ids[i] * w_stride, out + i * k, k);
}

/* Reads may alias the byte buffer as 64-bit words. */
typedef uint64_t __attribute__((may_alias)) aliased_u64;

/* xor of every 64-bit word of n_lines cache lines, in 8 independent lanes so the compiler
 * vectorizes it and no dependency chain limits the load rate */
static uint64_t xor_lines(const uint8_t *p, int64_t n_lines) {
    uint64_t acc[8] = {0};
    for (int64_t line = 0; line < n_lines; line++) {
        const aliased_u64 *words = (const aliased_u64 *)(p + line * 64);
        for (int j = 0; j < 8; j++) acc[j] ^= words[j];
    }
    return acc[0] ^ acc[1] ^ acc[2] ^ acc[3] ^ acc[4] ^ acc[5] ^ acc[6] ^ acc[7];
}

uint64_t llm_read_probe(const uint8_t *buf, size_t n, int n_threads_probe) {
    uint64_t total = 0;
    int64_t n_lines = (int64_t)(n / 64);
#if defined(_OPENMP)
#pragma omp parallel num_threads(n_threads_probe) reduction(^ : total)
    {
        int id = omp_get_thread_num(), size = omp_get_num_threads();
        int64_t first = n_lines * id / size, last = n_lines * (id + 1) / size;
        total ^= xor_lines(buf + first * 64, last - first);
    }
#else
    (void)n_threads_probe;
    total = xor_lines(buf, n_lines);
#endif
    return total;
}
