/* The tokenizer's hot paths in C: pre-tokenizer scanners, BPE merge loops, hash tables.
 *
 * Data flow of tok_encode():
 *   UTF-8 text --special-token trie--> raw fragments + special ids
 *   fragment --pre-tokenizer (byte-level) or ' '->U+2581 escape (SentencePiece)--> words
 *   word --word cache | BPE merges--> ids
 *
 * Everything here works on bytes of valid UTF-8 (Python encodes str before calling) but
 * never reads out of bounds on invalid input: a stray byte is treated as one "other" char.
 * Unlike the numeric kernels, the tokenizer owns heap memory (hash tables, word cache,
 * growable id arrays); every allocation failure is reported as -1.
 */
#ifndef LLMCLI_TOKENIZER_H
#define LLMCLI_TOKENIZER_H

#include <stdint.h>

/* ---- character classes (generated table in unicode_class.c) ---- */
enum { TOK_LETTER = 1, TOK_NUMBER = 2, TOK_SPACE = 4 };
extern const uint16_t tok_uclass_stage1[0x1100];
extern const uint8_t tok_uclass_stage2[][256];

static inline int tok_uclass(uint32_t cp) {
    return cp < 0x110000 ? tok_uclass_stage2[tok_uclass_stage1[cp >> 8]][cp & 0xff] : 0;
}

/* ---- growable arrays ---- */
typedef struct { int32_t *data; int64_t len, cap; } tok_ids;   /* token ids */
typedef struct { int64_t *data; int64_t len, cap; } tok_offs;  /* word end offsets */

int tok_ids_push(tok_ids *a, int32_t v);
int tok_offs_push(tok_offs *a, int64_t v);

/* ---- pre-tokenizer rules (byte-level BPE) ---- */
enum tok_pretok { TOK_PRE_GPT2 = 0, TOK_PRE_SMOLLM = 1, TOK_PRE_LLAMA3 = 2, TOK_PRE_QWEN2 = 3 };

/* Split text[0:n] into words by `rule`; appends each word's end offset to `ends`. */
int tok_pretokenize(int rule, const uint8_t *text, int64_t n, tok_offs *ends);

/* Decode one UTF-8 char at text[pos] (pos < end); stores its byte length in *len. */
uint32_t tok_utf8_decode(const uint8_t *text, int64_t pos, int64_t end, int *len);

/* ---- hash tables (tok_table.c) ---- */
uint64_t tok_hash_bytes(const uint8_t *p, int64_t n);

/* token text -> id; the texts live in the caller's blob (kept alive by the caller) */
typedef struct {
    const uint8_t *blob; const int64_t *offsets;  /* token i = blob[offsets[i]:offsets[i+1]] */
    int32_t n_tokens;
    uint64_t *slots; uint64_t mask;   /* id | hash fingerprint << 32; all ones = empty */
} tok_vocab;

int tok_vocab_init(tok_vocab *v, const uint8_t *blob, const int64_t *offsets, int32_t n_tokens);
int32_t tok_vocab_find(const tok_vocab *v, const uint8_t *p, int64_t n);  /* -1: absent */
void tok_vocab_free(tok_vocab *v);

/* (left id, right id) -> (rank, merged id) for byte-level BPE */
typedef struct { uint64_t *keys; int32_t *rank, *merged; uint64_t mask; int32_t n; } tok_merges;

int tok_merges_init(tok_merges *m, int32_t n, const int32_t *left, const int32_t *right,
                    const int32_t *merged);
int tok_merges_find(const tok_merges *m, int32_t left, int32_t right, int32_t *merged);
void tok_merges_free(tok_merges *m);

/* byte trie of special-token texts: leftmost-longest match */
typedef struct {
    int32_t root[256];                 /* child of the root per first byte, -1 none */
    uint64_t *keys; int32_t *child;    /* (node << 8 | byte) -> child node */
    uint64_t mask;
    int32_t *token;                    /* node -> token id ending here, -1 none */
    int32_t n_nodes, cap_nodes;
    int64_t n_edges;
} tok_trie;

int tok_trie_init(tok_trie *t, const tok_vocab *v, int32_t n, const int32_t *ids);
/* Longest special token starting at text[pos]; returns its byte length (0: none). */
int64_t tok_trie_match(const tok_trie *t, const uint8_t *text, int64_t pos, int64_t end,
                       int32_t *id);
void tok_trie_free(tok_trie *t);

/* word bytes -> ids, for short words; cleared wholesale when full (bounded memory) */
typedef struct {
    uint64_t *hash; int64_t *key_off, *ids_off; int32_t *key_len, *n_ids;
    uint64_t mask; int64_t count;
    uint8_t *keys; int64_t keys_len, keys_cap;
    int32_t *ids; int64_t ids_len, ids_cap;
} tok_cache;

int tok_cache_init(tok_cache *c, int log2_slots);
/* Appends the cached ids of word to out and returns 1; 0 when absent; -1 on OOM. */
int tok_cache_get(const tok_cache *c, const uint8_t *word, int64_t n, tok_ids *out);
int tok_cache_put(tok_cache *c, const uint8_t *word, int64_t n, const int32_t *ids, int64_t k);
void tok_cache_free(tok_cache *c);

/* ---- merging long words (merge_queue.c) ---- */
/* A symbol of a word being merged: a doubly linked list over the word's bytes. */
typedef struct { int32_t tok, start, len, prev, next; } tok_node;

/* What a merge loop needs to know about pairs of adjacent symbols. */
typedef struct {
    /* Can sym[left] merge with its right neighbour? Then 1, its priority (smaller merges
     * first) and a check value that changes whenever the right symbol does. */
    int (*pair)(const void *ctx, const tok_node *sym, int32_t left, int32_t *prio, int32_t *check);
    int32_t (*merged)(const void *ctx, const tok_node *sym, int32_t left, int32_t right);
    int32_t (*check)(const tok_node *sym, int32_t right);
    const void *ctx;
} tok_pair_rules;

/* One bucket of candidates per priority, reused from word to word (empty between words). */
typedef struct tok_bucket tok_bucket;
typedef struct { tok_bucket *slots; int32_t n_prio; } tok_buckets;

/* Merge sym[0..n) (a linked list, n >= 2) until no pair merges, in the order (priority,
 * position). Returns 0, or -1 on out-of-memory. */
int tok_merge_long(tok_node *sym, int64_t n, const tok_pair_rules *rules, tok_buckets *b);
void tok_buckets_free(tok_buckets *b);

/* SentencePiece pairs of known tokens -> the token they spell (-1 none): a direct-mapped
 * memo, since a long word asks for the same few pairs again and again. */
typedef struct { uint64_t *keys; int32_t *merged, *prio; } tok_pair_memo;
#define TOK_PAIR_MEMO_BITS 14
void tok_pair_memo_free(tok_pair_memo *memo);

/* ---- merge loops (bpe.c) ---- */
/* Byte-level BPE of one word: appends ids to out. byte_ids[b] = token of byte b. */
int tok_bpe_word(const tok_merges *m, const int32_t *byte_ids, const uint8_t *word,
                 int64_t n, tok_buckets *b, tok_ids *out);
/* SentencePiece-style BPE of one word (already ' '->U+2581 escaped): appends ids to out.
 * prio[id] orders merges (0 = highest score); chars not in the vocab fall back to
 * byte_ids (or unk_id). */
int tok_spm_word(const tok_vocab *v, const int32_t *prio, const int32_t *byte_ids,
                 int32_t unk_id, const uint8_t *word, int64_t n, tok_buckets *b,
                 tok_pair_memo *memo, tok_ids *out);

/* ---- the whole encoder (tok_encode.c) ---- */
enum tok_kind { TOK_KIND_BYTE_BPE = 0, TOK_KIND_SPM = 1 };

typedef struct {
    int kind, pretok;
    int ignore_merges;        /* byte-level: a word that is itself a token skips merging */
    int add_space_prefix;     /* SPM: prepend ' ' to a fragment at the start / after a special */
    int spm_split_words;      /* SPM: cut fragments into words at U+2581 (see encode_spm) */
    const int32_t *crossing;  /* SPM: tokens with U+2581 after their first char (caller's) */
    int32_t n_crossing;
    int32_t unk_id;
    int32_t byte_ids[256];
    const int32_t *priorities; /* SPM: merge order of each token, by score (caller's) */
    tok_vocab vocab;
    tok_merges merges;
    tok_trie always_trie;     /* user-defined tokens: matched even without parse_special */
    tok_trie special_trie;    /* control + user-defined + unknown: with parse_special */
    tok_cache cache;
    tok_buckets buckets;      /* scratch of tok_merge_long */
    tok_pair_memo pair_memo;  /* SPM: scratch of long words */
} tok_model;

/* Zeroes m, then builds the vocab table and the word cache; merges, tries, priorities and
 * byte ids are filled in by the caller. tok_model_free releases what was built. */
int tok_model_init(tok_model *m, int kind, int pretok, const uint8_t *blob,
                   const int64_t *offsets, int32_t n_tokens);
void tok_model_free(tok_model *m);

/* Encode text (UTF-8); appends ids to out. Returns 0, or -1 on out-of-memory. */
int tok_encode(tok_model *m, const uint8_t *text, int64_t n, int parse_special, tok_ids *out);

#endif
