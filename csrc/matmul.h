/* Quantized matrix products and row lookups over weights kept in their GGUF block format.
 * C never allocates, prints or exits: the caller provides every buffer. */
#ifndef LLMCLI_MATMUL_H
#define LLMCLI_MATMUL_H

#include <stddef.h>
#include <stdint.h>

/* Threads used by llm_matmul (OpenMP); n < 1 means 1. Without OpenMP always 1. */
void llm_set_threads(int n);
int llm_get_threads(void);
int llm_max_threads(void);    /* OpenMP's default team size (the CPU count) */

/* Bytes of workspace llm_matmul needs: n_tok activation rows of k values quantized into
 * the weight type's dot format (0 for float weights, which use x directly). */
size_t llm_matmul_workspace_size(int weight_type, int64_t k, int64_t n_tok);

/* out[t * n_out + r] = dot(W row r, x[t]) for t < n_tok, r < n_out.
 *   w:         n_out rows, row r at w + r * w_stride bytes, each k values of weight_type
 *   x:         n_tok x k floats, row-major
 *   out:       n_tok x n_out floats, row-major
 *   workspace: llm_matmul_workspace_size(weight_type, k, n_tok) bytes, 64-byte aligned
 *              is best; any alignment works
 * k must be a multiple of the type's block size (checked by the caller). */
void llm_matmul(int weight_type, const uint8_t *w, size_t w_stride, int64_t n_out, int64_t k,
                const float *x, int64_t n_tok, float *out, void *workspace);

/* Several weight matrices against the same activations (q/k/v, gate/up): the activations
 * are quantized once and one thread team splits the rows of all of them. Every pair of
 * types must satisfy llm_matmul_can_share for this n_tok. */
#define LLM_MAX_MATRICES 8
typedef struct {
    int type;                /* weight type */
    const uint8_t *w;        /* n_out rows, row r at w + r * w_stride */
    size_t w_stride;
    int64_t n_out;
    float *out;              /* n_tok x n_out */
} llm_matrix;

int llm_matmul_can_share(int type_a, int type_b, int64_t n_tok);
void llm_matmul_many(const llm_matrix *mats, int n_mats, int64_t k, const float *x,
                     int64_t n_tok, void *workspace);

/* llm_matmul_many that also brings `ahead` (the input of the kernel that follows, e.g.
 * the KV cache rows the next attention reads) into the cache while it works: the threads
 * share the spans and request a little of them before each tile, so those reads overlap
 * the weight stream instead of stalling the next kernel. */
#define LLM_MAX_SPANS 8
typedef struct {
    const void *p;
    size_t bytes;
} llm_span;

void llm_matmul_many_ahead(const llm_matrix *mats, int n_mats, int64_t k, const float *x,
                           int64_t n_tok, void *workspace, const llm_span *ahead,
                           int n_ahead);

/* out[i * k : (i+1) * k] = dequantized W row ids[i], for i < n_ids (ids checked by the
 * caller to lie in [0, n_rows)). */
void llm_get_rows(int weight_type, const uint8_t *w, size_t w_stride, int64_t k,
                  const int32_t *ids, int64_t n_ids, float *out);

/* Reads n bytes (n % 64 == 0) with n_threads threads and returns a checksum, so the reads
 * cannot be optimised away: the memory-bandwidth probe of the benchmarks. */
uint64_t llm_read_probe(const uint8_t *buf, size_t n, int n_threads);

#endif
