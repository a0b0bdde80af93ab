/* BPE merge loops for one word.
 *
 * Both flavours repeatedly merge the best adjacent pair, the leftmost one among equals:
 *   byte-level BPE: best = lowest merge rank; symbols start as one token per byte.
 *   SentencePiece:  best = highest score of the vocab token the two symbols spell;
 *                   symbols start as one UTF-8 char each; leftover chars that are not
 *                   tokens become <0xXX> byte tokens.
 * A byte with no token (-1 in byte_ids) never merges and is dropped from the output, as
 * llama.cpp and HF drop it.
 * Short words (the common case) use flat arrays: finding the best pair is a linear scan,
 * which beats a heap for a few dozen symbols. Long words use a binary heap over a linked
 * list so that a 1 MB "word" costs O(n log n), never O(n^2).
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

#define FLAT_MAX 256  /* symbols; above this the heap path runs */

/* A candidate merge of symbol `left` with its right neighbour `right`. `key` orders the
 * heap (smaller first): the rank, or the negated score. Stale entries are detected by
 * comparing the pair's current state with what was recorded when it was pushed. */
typedef struct {
    float key;
    int32_t left, right;
    int32_t left_tok, right_tok;  /* byte-level: ids at push time; SPM: byte lengths */
    int32_t merged;
} cand;

typedef struct { cand *items; int64_t len, cap; } heap;

static inline int cand_before(const cand *a, const cand *b) {
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static int heap_push(heap *h, cand c) {
    if (h->len == h->cap) {
        int64_t cap = h->cap ? h->cap * 2 : 1024;
        cand *items = realloc(h->items, (size_t)cap * sizeof *items);
        if (!items) return -1;
        h->items = items;
        h->cap = cap;
    }
    int64_t i = h->len++;
    while (i > 0) {
        int64_t parent = (i - 1) / 2;
        if (!cand_before(&c, &h->items[parent])) break;
        h->items[i] = h->items[parent];
        i = parent;
    }
    h->items[i] = c;
    return 0;
}

static cand heap_pop(heap *h) {
    cand top = h->items[0], last = h->items[--h->len];
    int64_t i = 0;
    for (;;) {
        int64_t child = 2 * i + 1;
        if (child >= h->len) break;
        if (child + 1 < h->len && cand_before(&h->items[child + 1], &h->items[child])) child++;
        if (!cand_before(&h->items[child], &last)) break;
        h->items[i] = h->items[child];
        i = child;
    }
    if (h->len > 0) h->items[i] = last;
    return top;
}

/* ---- byte-level BPE ---- */

static int bpe_flat(const tok_merges *m, int32_t *ids, int64_t n, tok_ids *out) {
    int32_t rank[FLAT_MAX], merged[FLAT_MAX];
    for (int64_t i = 0; i + 1 < n; i++) rank[i] = tok_merges_find(m, ids[i], ids[i + 1], &merged[i]);
    for (;;) {
        int64_t best = -1;
        for (int64_t i = 0; i + 1 < n; i++)
            if (rank[i] >= 0 && (best < 0 || rank[i] < rank[best])) best = i;
        if (best < 0) break;
        ids[best] = merged[best];
        memmove(ids + best + 1, ids + best + 2, (size_t)(n - best - 2) * sizeof *ids);
        memmove(rank + best + 1, rank + best + 2, (size_t)(n - best - 2) * sizeof *rank);
        memmove(merged + best + 1, merged + best + 2, (size_t)(n - best - 2) * sizeof *merged);
        n--;
        if (best > 0) rank[best - 1] = tok_merges_find(m, ids[best - 1], ids[best], &merged[best - 1]);
        if (best + 1 < n) rank[best] = tok_merges_find(m, ids[best], ids[best + 1], &merged[best]);
    }
    for (int64_t i = 0; i < n; i++)
        if (ids[i] >= 0 && tok_ids_push(out, ids[i])) return -1;
    return 0;
}

typedef struct { int32_t tok, prev, next; } node;  /* tok < 0: merged away, or a byte without a token */

static int bpe_push_pair(heap *h, const tok_merges *m, const node *sym, int32_t left) {
    if (left < 0 || sym[left].next < 0) return 0;
    int32_t right = sym[left].next, merged;
    int32_t rank = tok_merges_find(m, sym[left].tok, sym[right].tok, &merged);
    if (rank < 0) return 0;
    cand c = {(float)rank, left, right, sym[left].tok, sym[right].tok, merged};
    return heap_push(h, c);
}

static int bpe_heap(const tok_merges *m, const int32_t *ids, int64_t n, tok_ids *out) {
    node *sym = malloc((size_t)n * sizeof *sym);
    heap h = {0};
    int rc = sym ? 0 : -1;
    for (int64_t i = 0; rc == 0 && i < n; i++)
        sym[i] = (node){ids[i], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1};
    for (int64_t i = 0; rc == 0 && i + 1 < n; i++) rc = bpe_push_pair(&h, m, sym, (int32_t)i);
    while (rc == 0 && h.len > 0) {
        cand c = heap_pop(&h);
        node *l = &sym[c.left], *r = &sym[c.right];
        if (l->tok != c.left_tok || l->next != c.right || r->tok != c.right_tok) continue;
        l->tok = c.merged;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = c.left;
        r->tok = -1;
        rc = bpe_push_pair(&h, m, sym, l->prev);
        if (rc == 0) rc = bpe_push_pair(&h, m, sym, c.left);
    }
    for (int32_t i = 0; rc == 0 && n > 0 && i >= 0; i = sym[i].next)
        if (sym[i].tok >= 0) rc = tok_ids_push(out, sym[i].tok);
    free(sym);
    free(h.items);
    return rc;
}

int tok_bpe_word(const tok_merges *m, const int32_t *byte_ids, const uint8_t *word,
                 int64_t n, tok_ids *out) {
    int32_t flat[FLAT_MAX];
    int32_t *ids = n <= FLAT_MAX ? flat : malloc((size_t)n * sizeof *ids);
    if (!ids) return -1;
    for (int64_t i = 0; i < n; i++) ids[i] = byte_ids[word[i]];
    int rc = n <= FLAT_MAX ? bpe_flat(m, ids, n, out) : bpe_heap(m, ids, n, out);
    if (ids != flat) free(ids);
    return rc;
}

/* ---- SentencePiece-style BPE ---- */

typedef struct {
    const tok_vocab *v;
    const float *scores;
    const uint8_t *word;
} spm_ctx;

/* The token spelled by the span [start, start+len), -1 if none. */
static inline int32_t spm_token(const spm_ctx *x, int64_t start, int64_t len) {
    return tok_vocab_find(x->v, x->word + start, len);
}

static int spm_emit(const spm_ctx *x, const int32_t *byte_ids, int32_t unk_id,
                    int64_t start, int64_t len, int32_t tok, tok_ids *out) {
    if (tok < 0) tok = spm_token(x, start, len);
    if (tok >= 0) return tok_ids_push(out, tok);
    for (int64_t k = 0; k < len; k++) {  /* byte fallback */
        int32_t b = byte_ids[x->word[start + k]];
        if (tok_ids_push(out, b >= 0 ? b : unk_id)) return -1;
    }
    return 0;
}

typedef struct { int32_t start, len, tok, prev, next; } span;  /* len 0: merged away */

static int spm_push_pair(heap *h, const spm_ctx *x, const span *sym, int32_t left) {
    if (left < 0 || sym[left].next < 0) return 0;
    int32_t right = sym[left].next;
    int32_t size = sym[left].len + sym[right].len;
    int32_t tok = spm_token(x, sym[left].start, size);
    if (tok < 0) return 0;
    cand c = {-x->scores[tok], left, right, sym[left].len, sym[right].len, tok};
    return heap_push(h, c);
}

int tok_spm_word(const tok_vocab *v, const float *scores, const int32_t *byte_ids,
                 int32_t unk_id, const uint8_t *word, int64_t n, tok_ids *out) {
    spm_ctx x = {v, scores, word};
    span *sym = malloc((size_t)(n > 0 ? n : 1) * sizeof *sym);
    heap h = {0};
    if (!sym) return -1;
    int32_t n_sym = 0;
    for (int64_t pos = 0; pos < n; n_sym++) {
        int len;
        tok_utf8_decode(word, pos, n, &len);
        sym[n_sym] = (span){(int32_t)pos, len, -1, n_sym - 1, -1};
        if (n_sym > 0) sym[n_sym - 1].next = n_sym;
        pos += len;
    }
    int rc = 0;
    for (int32_t i = 0; rc == 0 && i + 1 < n_sym; i++) rc = spm_push_pair(&h, &x, sym, i);
    while (rc == 0 && h.len > 0) {
        cand c = heap_pop(&h);
        span *l = &sym[c.left], *r = &sym[c.right];
        if (l->len != c.left_tok || r->len != c.right_tok || l->next != c.right) continue;
        l->len += r->len;
        l->tok = c.merged;
        l->next = r->next;
        if (r->next >= 0) sym[r->next].prev = c.left;
        r->len = 0;
        rc = spm_push_pair(&h, &x, sym, l->prev);
        if (rc == 0) rc = spm_push_pair(&h, &x, sym, c.left);
    }
    for (int32_t i = 0; rc == 0 && n_sym > 0 && i >= 0; i = sym[i].next)
        rc = spm_emit(&x, byte_ids, unk_id, sym[i].start, sym[i].len, sym[i].tok, out);
    free(sym);
    free(h.items);
    return rc;
}
