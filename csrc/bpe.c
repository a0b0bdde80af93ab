/* BPE merge loops for one word.
 *
 * Both flavours repeatedly merge the best adjacent pair, the leftmost one among equals:
 *   byte-level BPE: best = lowest merge rank; symbols start as one token per byte.
 *   SentencePiece:  best = highest score of the vocab token the two symbols spell
 *                   (prio[token] = that order); symbols start as one UTF-8 char each;
 *                   leftover chars that are not tokens become <0xXX> byte tokens.
 * A byte with no token (-1 in byte_ids) never merges and is dropped from the output, as
 * llama.cpp and HF drop it.
 *
 * Short words (the common case) use flat arrays: finding the best pair is a linear scan,
 * which beats any queue for a few dozen symbols. Long words go to tok_merge_long
 * (merge_queue.c), O(n log n) at worst, so a 1 MB "word" never costs O(n^2).
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

#define FLAT_MAX 128  /* symbols; above this tok_merge_long runs */

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
        int64_t n_after = n - best - 2;  /* symbols right of the merged pair */
        memmove(ids + best + 1, ids + best + 2, (size_t)n_after * sizeof *ids);
        if (n_after > 1) {
            memmove(rank + best + 1, rank + best + 2, (size_t)(n_after - 1) * sizeof *rank);
            memmove(merged + best + 1, merged + best + 2, (size_t)(n_after - 1) * sizeof *merged);
        }
        n--;
        if (best > 0) rank[best - 1] = tok_merges_find(m, ids[best - 1], ids[best], &merged[best - 1]);
        if (best + 1 < n) rank[best] = tok_merges_find(m, ids[best], ids[best + 1], &merged[best]);
    }
    for (int64_t i = 0; i < n; i++)
        if (ids[i] >= 0 && tok_ids_push(out, ids[i])) return -1;
    return 0;
}

static int bpe_pair(const void *ctx, const tok_node *sym, int32_t left, int32_t *prio,
                    int32_t *check) {
    int32_t right = sym[left].next, merged;
    if (right < 0) return 0;
    *prio = tok_merges_find(ctx, sym[left].tok, sym[right].tok, &merged);
    *check = sym[right].tok;
    return *prio >= 0;
}

static int32_t bpe_merged(const void *ctx, const tok_node *sym, int32_t left, int32_t right) {
    int32_t merged;
    tok_merges_find(ctx, sym[left].tok, sym[right].tok, &merged);
    return merged;
}

static int32_t bpe_check(const tok_node *sym, int32_t right) {
    return sym[right].tok;
}

static tok_node *nodes_new(int64_t n) {
    return malloc((size_t)(n > 0 ? n : 1) * sizeof(tok_node));
}

static int bpe_long(const tok_merges *m, const int32_t *ids, int64_t n, tok_buckets *b,
                    tok_ids *out) {
    tok_node *sym = nodes_new(n);
    if (!sym) return -1;
    for (int64_t i = 0; i < n; i++)
        sym[i] = (tok_node){ids[i], (int32_t)i, 1, (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1};
    tok_pair_rules rules = {bpe_pair, bpe_merged, bpe_check, m};
    int rc = tok_merge_long(sym, n, &rules, b);
    for (int32_t i = 0; rc == 0 && i >= 0; i = sym[i].next)
        if (sym[i].tok >= 0) rc = tok_ids_push(out, sym[i].tok);
    free(sym);
    return rc;
}

int tok_bpe_word(const tok_merges *m, const int32_t *byte_ids, const uint8_t *word,
                 int64_t n, tok_buckets *b, tok_ids *out) {
    if (n <= 0) return 0;
    if (b->n_prio == 0) b->n_prio = m->n;
    int32_t flat[FLAT_MAX];
    int32_t *ids = n <= FLAT_MAX ? flat : malloc((size_t)n * sizeof *ids);
    if (!ids) return -1;
    for (int64_t i = 0; i < n; i++) ids[i] = byte_ids[word[i]];
    int rc = n <= FLAT_MAX ? bpe_flat(m, ids, n, out) : bpe_long(m, ids, n, b, out);
    if (ids != flat) free(ids);
    return rc;
}

/* ---- SentencePiece-style BPE ---- */

typedef struct {
    const tok_vocab *v;
    const int32_t *prio;
    const int32_t *byte_ids;
    int32_t unk_id;
    const uint8_t *word;
    tok_pair_memo *memo;
} spm_ctx;

static int spm_emit(const spm_ctx *x, int64_t start, int64_t len, int32_t tok, tok_ids *out) {
    if (tok < 0) tok = tok_vocab_find(x->v, x->word + start, len);
    if (tok >= 0) return tok_ids_push(out, tok);
    for (int64_t k = 0; k < len; k++) {  /* byte fallback */
        int32_t b = x->byte_ids[x->word[start + k]];
        if (tok_ids_push(out, b >= 0 ? b : x->unk_id)) return -1;
    }
    return 0;
}

/* The word's UTF-8 chars: starts[i] for each, starts[count] = n; returns count. */
static int64_t utf8_starts(const uint8_t *word, int64_t n, int32_t *starts) {
    int64_t count = 0;
    for (int64_t pos = 0; pos < n; count++) {
        int len;
        tok_utf8_decode(word, pos, n, &len);
        starts[count] = (int32_t)pos;
        pos += len;
    }
    starts[count] = (int32_t)n;
    return count;
}

static inline int32_t spm_find(const spm_ctx *x, int32_t start, int32_t end) {
    return tok_vocab_find(x->v, x->word + start, end - start);
}

static int spm_flat(const spm_ctx *x, int64_t n_bytes, tok_ids *out) {
    int32_t start[FLAT_MAX + 1], tok[FLAT_MAX], pair_tok[FLAT_MAX];
    int64_t n = utf8_starts(x->word, n_bytes, start);
    for (int64_t i = 0; i < n; i++) tok[i] = -1;
    for (int64_t i = 0; i + 1 < n; i++) pair_tok[i] = spm_find(x, start[i], start[i + 2]);
    for (;;) {
        int64_t best = -1;
        for (int64_t i = 0; i + 1 < n; i++)
            if (pair_tok[i] >= 0 && (best < 0 || x->prio[pair_tok[i]] < x->prio[pair_tok[best]]))
                best = i;
        if (best < 0) break;
        tok[best] = pair_tok[best];
        int64_t n_after = n - best - 2;  /* symbols right of the merged pair */
        memmove(start + best + 1, start + best + 2, (size_t)(n_after + 1) * sizeof *start);
        memmove(tok + best + 1, tok + best + 2, (size_t)n_after * sizeof *tok);
        if (n_after > 1)
            memmove(pair_tok + best + 1, pair_tok + best + 2, (size_t)(n_after - 1) * sizeof *pair_tok);
        n--;
        if (best > 0) pair_tok[best - 1] = spm_find(x, start[best - 1], start[best + 1]);
        if (best + 1 < n) pair_tok[best] = spm_find(x, start[best], start[best + 2]);
    }
    for (int64_t i = 0; i < n; i++)
        if (spm_emit(x, start[i], start[i + 1] - start[i], tok[i], out)) return -1;
    return 0;
}

/* The token spelled by sym[left] followed by sym[right] (-1: none) and its priority.
 * When both are known tokens the answer depends on their ids alone, so it is memoized
 * by id pair. */
static int32_t spm_pair_token(const spm_ctx *x, const tok_node *sym, int32_t left, int32_t right,
                              int32_t *prio) {
    int32_t end = sym[right].start + sym[right].len;
    if (sym[left].tok < 0 || sym[right].tok < 0) {
        int32_t tok = spm_find(x, sym[left].start, end);
        if (tok >= 0) *prio = x->prio[tok];
        return tok;
    }
    uint64_t key = ((uint64_t)(uint32_t)sym[left].tok << 32) | (uint32_t)sym[right].tok;
    uint64_t slot = (key * 0x9E3779B97F4A7C15ULL) >> (64 - TOK_PAIR_MEMO_BITS);
    tok_pair_memo *memo = x->memo;
    if (memo->keys[slot] != key) {
        int32_t tok = spm_find(x, sym[left].start, end);
        memo->keys[slot] = key;
        memo->merged[slot] = tok;
        memo->prio[slot] = tok >= 0 ? x->prio[tok] : -1;
    }
    *prio = memo->prio[slot];
    return memo->merged[slot];
}

static int spm_pair(const void *ctx, const tok_node *sym, int32_t left, int32_t *prio,
                    int32_t *check) {
    int32_t right = sym[left].next;
    if (right < 0) return 0;
    if (spm_pair_token(ctx, sym, left, right, prio) < 0) return 0;
    *check = sym[right].len;
    return 1;
}

static int32_t spm_merged(const void *ctx, const tok_node *sym, int32_t left, int32_t right) {
    int32_t prio;
    return spm_pair_token(ctx, sym, left, right, &prio);
}

static int32_t spm_check(const tok_node *sym, int32_t right) {
    return sym[right].len;
}

static int memo_ready(tok_pair_memo *memo) {
    if (memo->keys) return 0;
    size_t n = (size_t)1 << TOK_PAIR_MEMO_BITS;
    memo->keys = malloc(n * sizeof *memo->keys);
    memo->merged = malloc(n * sizeof *memo->merged);
    memo->prio = malloc(n * sizeof *memo->prio);
    if (!memo->keys || !memo->merged || !memo->prio) return -1;
    memset(memo->keys, 0xff, n * sizeof *memo->keys);  /* no id pair is all ones */
    return 0;
}

void tok_pair_memo_free(tok_pair_memo *memo) {
    free(memo->keys);
    free(memo->merged);
    free(memo->prio);
    memo->keys = NULL;
    memo->merged = memo->prio = NULL;
}

static int spm_long(const spm_ctx *x, int64_t n_bytes, tok_buckets *b, tok_ids *out) {
    tok_node *sym = nodes_new(n_bytes);
    int32_t *starts = malloc((size_t)(n_bytes + 1) * sizeof *starts);
    int32_t ascii[128];  /* token of each ASCII char, looked up once */
    int rc = sym && starts && memo_ready(x->memo) == 0 ? 0 : -1;
    int64_t n = rc == 0 ? utf8_starts(x->word, n_bytes, starts) : 0;
    for (int c = 0; c < 128; c++) ascii[c] = -2;
    for (int64_t i = 0; i < n; i++) {
        int32_t len = starts[i + 1] - starts[i];
        uint8_t first = x->word[starts[i]];
        int32_t tok;
        if (len == 1 && first < 128) {
            if (ascii[first] == -2) ascii[first] = spm_find(x, starts[i], starts[i + 1]);
            tok = ascii[first];
        } else {
            tok = spm_find(x, starts[i], starts[i + 1]);
        }
        sym[i] = (tok_node){tok, starts[i], len, (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1};
    }
    tok_pair_rules rules = {spm_pair, spm_merged, spm_check, x};
    if (rc == 0 && n > 1) rc = tok_merge_long(sym, n, &rules, b);
    for (int32_t i = 0; rc == 0 && n > 0 && i >= 0; i = sym[i].next)
        rc = spm_emit(x, sym[i].start, sym[i].len, sym[i].tok, out);
    free(sym);
    free(starts);
    return rc;
}

int tok_spm_word(const tok_vocab *v, const int32_t *prio, const int32_t *byte_ids,
                 int32_t unk_id, const uint8_t *word, int64_t n, tok_buckets *b,
                 tok_pair_memo *memo, tok_ids *out) {
    if (b->n_prio == 0) b->n_prio = v->n_tokens;
    spm_ctx x = {v, prio, byte_ids, unk_id, word, memo};
    return n <= FLAT_MAX ? spm_flat(&x, n, out) : spm_long(&x, n, b, out);
}
