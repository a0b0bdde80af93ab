/* Causal grouped-query attention over the KV cache (contract in ops.h).
 *
 * Hot path (no probs wanted). The queries are cut into tiles: up to TILE_QUERIES
 * queries that share a KV head (the heads of one group, at a few consecutive tokens),
 * so each cache row is loaded once for the whole tile. A tile walks its visible rows in
 * blocks with a running softmax per query (running max, running sum, an accumulator
 * rescaled whenever the max rises), so its working memory is a fixed stack buffer
 * whatever the context length. When there are fewer tiles than threads (a decode step:
 * one token, few KV heads), each tile's rows are also split into chunks computed in
 * parallel; their partial softmax states go to the caller's scratch and are merged.
 *
 * The caches may be token-major or head-major (see ops.h); the forward keeps them
 * head-major, so a tile's rows are one contiguous stream, and a tile requests its rows a
 * little ahead of use (request_rows).
 *
 * Attention view (probs wanted): one (head, token) at a time, the scores are written
 * into the caller's probs row, normalised there, and the output is their weighted sum.
 */
#include <math.h>
#include <string.h>

#include "ops.h"
#include "ops_vec.h"

#define BLOCK_ROWS 64          /* cache rows scored per step of the running softmax */
#define TILE_QUERIES 16        /* queries sharing one pass over the cache rows */
#define TILE_FLOATS 4096       /* accumulator floats per tile: TILE_QUERIES * head_dim cap */
#define MAX_SPLITS 16          /* row chunks per tile, at most */
#define MIN_SPLIT_ROWS 256     /* rows below which a chunk is not worth its own thread */
#define PARALLEL_MIN_WORK (1 << 16) /* multiply-adds below which one thread does it all */

typedef struct {
    int64_t first, last; /* inclusive; empty when first > last */
} row_range;

static row_range visible_rows(int32_t pos, int window)
{
    row_range range = {0, pos};
    if (window > 0 && (int64_t)pos - window + 1 > 0)
        range.first = (int64_t)pos - window + 1;
    return range;
}

/* ---- the plan: tile shape, number of tiles and of chunks per tile ---------------- */

typedef struct {
    const ops_vec *vec;
    const float *q, *k_cache, *v_cache;
    const int32_t *q_pos;
    float *out;
    int64_t n_tok, q_stride;
    int64_t kv_stride, kv_head_stride; /* floats between cache rows, between KV heads */
    int n_heads, head_dim, group, window;
    float scale;
    int tile_heads, tile_tokens;      /* a tile: tile_heads heads of one group x tokens */
    int64_t head_tiles, token_tiles;  /* per KV head: tiles across its heads, its tokens */
    int64_t n_tiles;
    int n_splits;                     /* chunks per tile */
    int64_t unit_floats;              /* scratch floats per (tile, chunk) */
    int parallel;
    int threads;                      /* team size when parallel */
} attention_plan;

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static attention_plan make_plan(const int32_t *q_pos, int64_t n_tok, int n_heads,
                                int n_kv_heads, int head_dim, int window)
{
    attention_plan p = {0};
    p.q_pos = q_pos;
    p.n_tok = n_tok;
    p.n_heads = n_heads;
    p.head_dim = head_dim;
    p.window = window;
    p.group = n_heads / n_kv_heads;
    p.q_stride = (int64_t)n_heads * head_dim;

    const int max_queries = (int)min64(TILE_QUERIES, TILE_FLOATS / head_dim);
    p.tile_heads = (int)min64(p.group, max_queries);
    p.tile_tokens = (int)min64(n_tok, max_queries / p.tile_heads);
    p.head_tiles = ceil_div(p.group, p.tile_heads);
    p.token_tiles = ceil_div(n_tok, p.tile_tokens);
    p.n_tiles = n_kv_heads * p.head_tiles * p.token_tiles;

    int64_t rows = 0, widest = 0;
    for (int64_t t = 0; t < n_tok; t++) {
        const row_range r = visible_rows(q_pos[t], window);
        rows += r.last - r.first + 1;
        widest = max64(widest, r.last - r.first + 1);
    }
    p.parallel = 2 * rows * n_heads * head_dim >= PARALLEL_MIN_WORK;

    /* enough (tile, chunk) units for the dynamic schedule to balance the threads */
    p.threads = p.parallel ? ops_threads() : 1;
    const int64_t wanted_units = 4 * (int64_t)p.threads;
    p.n_splits = 1;
    if (p.threads > 1 && p.n_tiles < wanted_units)
        p.n_splits = (int)max64(1, min64(min64(ceil_div(wanted_units, p.n_tiles), MAX_SPLITS),
                                         widest / MIN_SPLIT_ROWS));
    p.unit_floats = (int64_t)p.tile_heads * p.tile_tokens * (head_dim + 2);
    if (p.n_tiles * p.n_splits < 2) /* one unit of work: a team would only wait on it */
        p.parallel = 0, p.threads = 1;
    return p;
}

/* ---- one tile ----------------------------------------------------------------- */

typedef struct {
    int n;                                /* queries in the tile */
    const float *q[TILE_QUERIES];
    float *out[TILE_QUERIES];
    row_range range[TILE_QUERIES];        /* rows each query sees */
    row_range rows;                       /* their union */
    const float *k, *v;                   /* the tile's KV head column in the caches */
} tile;

static tile make_tile(const attention_plan *p, int64_t index)
{
    const int64_t token_tile = index % p->token_tiles;
    const int64_t head_tile = (index / p->token_tiles) % p->head_tiles;
    const int64_t kv_head = index / (p->token_tiles * p->head_tiles);
    const int64_t t0 = token_tile * p->tile_tokens;
    const int64_t t_end = min64(t0 + p->tile_tokens, p->n_tok);
    const int64_t h0 = kv_head * p->group + head_tile * p->tile_heads;
    const int64_t h_end = min64(h0 + p->tile_heads, (kv_head + 1) * p->group);

    tile tl = {0};
    tl.k = p->k_cache + kv_head * p->kv_head_stride;
    tl.v = p->v_cache + kv_head * p->kv_head_stride;
    tl.rows.first = INT64_MAX;
    tl.rows.last = -1;
    for (int64_t t = t0; t < t_end; t++) {
        const row_range r = visible_rows(p->q_pos[t], p->window);
        tl.rows.first = min64(tl.rows.first, r.first);
        tl.rows.last = max64(tl.rows.last, r.last);
        for (int64_t h = h0; h < h_end; h++) {
            tl.q[tl.n] = p->q + t * p->q_stride + h * p->head_dim;
            tl.out[tl.n] = p->out + t * p->q_stride + h * p->head_dim;
            tl.range[tl.n] = r;
            tl.n++;
        }
    }
    return tl;
}

/* Running softmax state of every query of a tile over the rows seen so far. */
typedef struct {
    float max[TILE_QUERIES];
    double sum[TILE_QUERIES];
    float acc[TILE_FLOATS]; /* query i: acc[i * head_dim .. +head_dim) */
} tile_state;

/* Turn the scores w of n rows into query i's softmax weights against its running max
 * (rescaling what it has accumulated if the max rose); the caller then adds the weighted
 * V rows. */
static void weigh_rows(const ops_vec *vec, tile_state *st, int i, float *w, int64_t n,
                       int head_dim)
{
    const float block_max = vec->max(w, n);
    if (block_max > st->max[i]) {
        /* earlier terms were exp(s - old max): rescale them (a no-op on the first rows) */
        const float correction = expf(st->max[i] - block_max);
        vec->scale(st->acc + (int64_t)i * head_dim, head_dim, correction);
        st->sum[i] *= correction;
        st->max[i] = block_max;
    }
    st->sum[i] += vec->exp_shifted(w, n, st->max[i]);
}

/* Add each query's weighted V rows [lo[i], hi[i]] of the block at row j0 (weights in
 * scores, BLOCK_ROWS per query) to its accumulator: one pass over the rows for each run
 * of consecutive queries that see the same ones. */
static void add_weighted_rows(const attention_plan *p, const tile *tl, tile_state *st,
                              const int64_t *lo, const int64_t *hi, const float *scores,
                              int64_t j0)
{
    const int hd = p->head_dim;
    for (int i = 0, end; i < tl->n; i = end) {
        for (end = i + 1; end < tl->n && lo[end] == lo[i] && hi[end] == hi[i]; end++) {}
        if (lo[i] > hi[i])
            continue;
        float *accs[TILE_QUERIES];
        const float *weights[TILE_QUERIES];
        for (int j = i; j < end; j++) {
            accs[j - i] = st->acc + (int64_t)j * hd;
            weights[j - i] = scores + j * BLOCK_ROWS + (lo[i] - j0);
        }
        p->vec->axpy_rows(accs, weights, end - i, tl->v + lo[i] * p->kv_stride, p->kv_stride,
                          hi[i] - lo[i] + 1, hd);
    }
}

/* Ask the memory system for rows [first, last] of one KV head of a cache (head_dim
 * floats each). The rows of a block are scored in steps of STEP_ROWS, and each step
 * requests the K rows AHEAD_ROWS further on and its own V rows (read after the block is
 * scored): in a decode step the cache rows come from memory, and the hardware
 * prefetchers alone left the kernel waiting on them (measured 1.2-1.3x slower). */
#define STEP_ROWS 8
#define AHEAD_ROWS 16

static void request_rows(const float *head, int64_t stride, int64_t first, int64_t last,
                         int head_dim)
{
    for (int64_t r = first; r <= last; r++) {
        const char *row = (const char *)(head + r * stride);
        for (int byte = 0; byte < head_dim * (int)sizeof(float); byte += 64)
            __builtin_prefetch(row + byte, 0, 3);
    }
}

/* Scores of the tile's queries against block rows [j0, j0 + n_rows) into scores
 * (BLOCK_ROWS per query), requesting rows as they go (see request_rows). Each score
 * is one dot product, so scoring in steps gives the same values as one call. */
static void score_block(const attention_plan *p, const tile *tl, int64_t j0, int64_t n_rows,
                        int64_t chunk_last, float *scores)
{
    const int hd = p->head_dim;
    for (int64_t step = 0; step < n_rows; step += STEP_ROWS) {
        const int64_t at = j0 + step, last = min64(at + STEP_ROWS - 1, j0 + n_rows - 1);
        request_rows(tl->k, p->kv_stride, at + AHEAD_ROWS, min64(last + AHEAD_ROWS, chunk_last),
                     hd);
        request_rows(tl->v, p->kv_stride, at, last, hd);
        p->vec->dot_tile(tl->q, tl->n, tl->k + at * p->kv_stride, p->kv_stride, last - at + 1,
                         hd, p->scale, scores + step, BLOCK_ROWS);
    }
}

static void attend_tile_rows(const attention_plan *p, const tile *tl, row_range chunk,
                             tile_state *st)
{
    const int hd = p->head_dim;
    float scores[TILE_QUERIES * BLOCK_ROWS];
    for (int i = 0; i < tl->n; i++) {
        st->max[i] = -INFINITY;
        st->sum[i] = 0.0;
    }
    memset(st->acc, 0, sizeof(float) * tl->n * hd);

    /* Blocks sit at multiples of BLOCK_ROWS whatever the range: a query then folds the
     * same rows in the same steps whichever tile it is in (its own decode step, or a
     * prefill tile whose union starts earlier under a sliding window), so the result is
     * bit-identical. */
    for (int64_t block = chunk.first - chunk.first % BLOCK_ROWS; block <= chunk.last;
         block += BLOCK_ROWS) {
        const int64_t j0 = max64(block, chunk.first);
        const int64_t n_rows = min64(block + BLOCK_ROWS - 1, chunk.last) - j0 + 1;
        score_block(p, tl, j0, n_rows, chunk.last, scores);
        /* each query sees a contiguous part of the block (or none of it); queries that
         * see the same part (all of a block but the causal diagonal) then share one pass
         * over its V rows */
        int64_t lo[TILE_QUERIES], hi[TILE_QUERIES];
        for (int i = 0; i < tl->n; i++) {
            lo[i] = max64(tl->range[i].first, j0);
            hi[i] = min64(tl->range[i].last, j0 + n_rows - 1);
            if (lo[i] <= hi[i])
                weigh_rows(p->vec, st, i, scores + i * BLOCK_ROWS + (lo[i] - j0),
                           hi[i] - lo[i] + 1, hd);
        }
        add_weighted_rows(p, tl, st, lo, hi, scores, j0);
    }
}

static row_range split_rows(row_range rows, int split, int n_splits)
{
    const int64_t len = rows.last - rows.first + 1;
    row_range chunk = {rows.first + len * split / n_splits,
                       rows.first + len * (split + 1) / n_splits - 1};
    return chunk;
}

static void write_output(const tile *tl, const tile_state *st, int head_dim)
{
    for (int i = 0; i < tl->n; i++) {
        const float inv_sum = (float)(1.0 / st->sum[i]);
        for (int d = 0; d < head_dim; d++)
            tl->out[i][d] = st->acc[i * head_dim + d] * inv_sum;
    }
}

/* Partial state of one chunk: per query [max, sum, acc[head_dim]]. */
static void save_partial(const tile *tl, const tile_state *st, int head_dim, float *unit)
{
    for (int i = 0; i < tl->n; i++) {
        float *slot = unit + (int64_t)i * (head_dim + 2);
        slot[0] = st->max[i];
        slot[1] = (float)st->sum[i];
        memcpy(slot + 2, st->acc + i * head_dim, sizeof(float) * head_dim);
    }
}

/* Combine the chunks of one tile: each was normalised to its own max, so it is
 * rescaled to the common max before summing. Chunks a query saw nothing of have
 * sum 0 and max -inf, and drop out. */
static void merge_partials(const attention_plan *p, const tile *tl, const float *units)
{
    const int hd = p->head_dim;
    for (int i = 0; i < tl->n; i++) {
        float common_max = -INFINITY;
        for (int s = 0; s < p->n_splits; s++)
            common_max = fmaxf(common_max, units[s * p->unit_floats + i * (hd + 2)]);
        double sum = 0.0;
        float *out = tl->out[i];
        memset(out, 0, sizeof(float) * hd);
        for (int s = 0; s < p->n_splits; s++) {
            const float *slot = units + s * p->unit_floats + (int64_t)i * (hd + 2);
            if (slot[1] == 0.0f)
                continue;
            const float factor = expf(slot[0] - common_max);
            sum += (double)slot[1] * factor;
            for (int d = 0; d < hd; d++)
                out[d] += slot[2 + d] * factor;
        }
        const float inv_sum = (float)(1.0 / sum);
        for (int d = 0; d < hd; d++)
            out[d] *= inv_sum;
    }
}

/* One (tile, chunk) unit of work. */
static void attend_unit(const attention_plan *p, int64_t u, float *scratch)
{
    const tile tl = make_tile(p, u / p->n_splits);
    tile_state st;
    if (p->n_splits == 1) {
        attend_tile_rows(p, &tl, tl.rows, &st);
        write_output(&tl, &st, p->head_dim);
    } else {
        attend_tile_rows(p, &tl, split_rows(tl.rows, (int)(u % p->n_splits), p->n_splits), &st);
        save_partial(&tl, &st, p->head_dim, scratch + u * p->unit_floats);
    }
}

static void attend_tiles(attention_plan *p, float *scratch, int64_t scratch_len)
{
    if (p->n_splits > 1 && scratch_len < p->n_tiles * p->n_splits * p->unit_floats)
        p->n_splits = 1; /* the thread count grew since the scratch was sized */
    const int64_t n_units = p->n_tiles * p->n_splits;

    if (!p->parallel) {
        for (int64_t u = 0; u < n_units; u++)
            attend_unit(p, u, scratch);
    } else {
        /* dynamic schedule: causal tiles differ in cost (later tokens see more rows) */
#pragma omp parallel for schedule(dynamic, 1) num_threads(p->threads)
        for (int64_t u = 0; u < n_units; u++)
            attend_unit(p, u, scratch);
    }
    if (p->n_splits > 1)
        for (int64_t t = 0; t < p->n_tiles; t++) {
            const tile tl = make_tile(p, t);
            merge_partials(p, &tl, scratch + t * p->n_splits * p->unit_floats);
        }
}

/* ---- attention view: one (head, token) at a time, weights kept in probs ---------- */

static void attend_one_with_probs(const attention_plan *p, int64_t item, float *probs,
                                  int64_t probs_len)
{
    const int hd = p->head_dim;
    const int64_t h = item / p->n_tok, t = item % p->n_tok;
    const float *q = p->q + t * p->q_stride + h * hd;
    const int64_t kv_offset = (h / p->group) * p->kv_head_stride;
    float *out = p->out + t * p->q_stride + h * hd;
    float *row = probs + item * probs_len; /* probs[h, t, :] */
    const row_range range = visible_rows(p->q_pos[t], p->window);
    const int64_t n = range.last - range.first + 1;
    float *w = row + range.first;

    memset(row, 0, sizeof(float) * probs_len);
    p->vec->dot_tile(&q, 1, p->k_cache + range.first * p->kv_stride + kv_offset,
                     p->kv_stride, n, hd, p->scale, w, 0);
    const double sum = p->vec->exp_shifted(w, n, p->vec->max(w, n));
    p->vec->scale(w, n, (float)(1.0 / sum));
    memset(out, 0, sizeof(float) * hd);
    const float *weights = w;
    p->vec->axpy_rows(&out, &weights, 1, p->v_cache + range.first * p->kv_stride + kv_offset,
                      p->kv_stride, n, hd);
}

static void attend_with_probs(const attention_plan *p, float *probs, int64_t probs_len)
{
    const int64_t n_items = p->n_heads * p->n_tok;
    if (!p->parallel) {
        for (int64_t item = 0; item < n_items; item++)
            attend_one_with_probs(p, item, probs, probs_len);
        return;
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(p->threads)
    for (int64_t item = 0; item < n_items; item++)
        attend_one_with_probs(p, item, probs, probs_len);
}

/* ---- entry points ------------------------------------------------------------- */

int64_t ops_attention_scratch_len(const int32_t *q_pos, int64_t n_tok, int n_heads,
                                  int n_kv_heads, int head_dim, int window)
{
    const attention_plan p = make_plan(q_pos, n_tok, n_heads, n_kv_heads, head_dim, window);
    return p.n_splits > 1 ? p.n_tiles * p.n_splits * p.unit_floats : 0;
}

void ops_attention(const float *q, const float *k_cache, const float *v_cache,
                   int64_t kv_row_stride, int64_t kv_head_stride,
                   const int32_t *q_pos, int64_t n_tok, int n_heads, int n_kv_heads,
                   int head_dim, float scale, int window, float *out,
                   float *probs, int64_t probs_len, float *scratch, int64_t scratch_len)
{
    attention_plan p = make_plan(q_pos, n_tok, n_heads, n_kv_heads, head_dim, window);
    p.kv_stride = kv_row_stride;
    p.kv_head_stride = kv_head_stride;
    p.vec = ops_vec_select();
    p.q = q;
    p.k_cache = k_cache;
    p.v_cache = v_cache;
    p.out = out;
    p.scale = scale;
    if (probs)
        attend_with_probs(&p, probs, probs_len);
    else
        attend_tiles(&p, scratch, scratch_len);
}
