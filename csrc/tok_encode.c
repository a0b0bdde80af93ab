/* The encoder: special tokens, then words, then BPE, with a cache of encoded words. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

#define CACHE_WORD_MAX 64  /* bytes; longer words are rare and would bloat the cache */

static int encode_word(tok_model *m, const uint8_t *word, int64_t n, tok_ids *out) {
    if (n <= 0) return 0;
    int cacheable = n <= CACHE_WORD_MAX;
    if (cacheable) {
        int hit = tok_cache_get(&m->cache, word, n, out);
        if (hit) return hit < 0 ? -1 : 0;
    }
    int64_t first = out->len;
    int rc;
    if (m->kind == TOK_KIND_SPM) {
        rc = tok_spm_word(&m->vocab, m->priorities, m->byte_ids, m->unk_id, word, n, &m->buckets,
                          &m->pair_memo, out);
    } else {
        int32_t whole = m->ignore_merges ? tok_vocab_find(&m->vocab, word, n) : -1;
        rc = whole >= 0 ? tok_ids_push(out, whole)
                        : tok_bpe_word(&m->merges, m->byte_ids, word, n, &m->buckets, out);
    }
    if (rc == 0 && cacheable) rc = tok_cache_put(&m->cache, word, n, out->data + first, out->len - first);
    return rc;
}

static int encode_byte_level(tok_model *m, const uint8_t *text, int64_t n, tok_ids *out) {
    tok_offs ends = {0};
    int rc = tok_pretokenize(m->pretok, text, n, &ends);
    int64_t start = 0;
    for (int64_t k = 0; rc == 0 && k < ends.len; k++) {
        rc = encode_word(m, text + start, ends.data[k] - start, out);
        start = ends.data[k];
    }
    free(ends.data);
    return rc;
}

static const uint8_t LOWER_ONE_EIGHTH_BLOCK[3] = {0xe2, 0x96, 0x81};  /* U+2581 '▁' */

/* Could a token spanning the U+2581 that starts at text[pos] occur here? Only a token
 * with U+2581 after its first char can span it, and only where its text matches. */
static int spm_crossing_at(const tok_model *m, const uint8_t *text, int64_t n, int64_t pos) {
    const tok_vocab *v = &m->vocab;
    for (int32_t k = 0; k < m->n_crossing; k++) {
        const uint8_t *tok = v->blob + v->offsets[m->crossing[k]];
        int64_t len = v->offsets[m->crossing[k] + 1] - v->offsets[m->crossing[k]];
        for (int64_t j = 1; j + 3 <= len; j++) {  /* each inner U+2581 of the token */
            if (memcmp(tok + j, LOWER_ONE_EIGHTH_BLOCK, 3) != 0) continue;
            int64_t start = pos - j;
            if (start >= 0 && start + len <= n && memcmp(text + start, tok, (size_t)len) == 0)
                return 1;
        }
    }
    return 0;
}

/* SentencePiece: spaces become U+2581, then BPE runs over the fragment. Merges are local:
 * a symbol can only grow across the start of a U+2581 if some token contains U+2581 after
 * its first char and matches the text there. Everywhere else the fragment is cut into
 * words that are merged, and cached, independently: same result, far less work. */
static int encode_spm(tok_model *m, const uint8_t *text, int64_t n, int space_prefix,
                      tok_ids *out) {
    int64_t n_spaces = space_prefix;
    for (int64_t i = 0; i < n; i++) n_spaces += text[i] == ' ';
    uint8_t *escaped = malloc((size_t)(n + 2 * n_spaces + 1));
    if (!escaped) return -1;
    int64_t len = 0;
    if (space_prefix) {
        memcpy(escaped, LOWER_ONE_EIGHTH_BLOCK, 3);
        len = 3;
    }
    for (int64_t i = 0; i < n; i++) {
        if (text[i] == ' ') {
            memcpy(escaped + len, LOWER_ONE_EIGHTH_BLOCK, 3);
            len += 3;
        } else {
            escaped[len++] = text[i];
        }
    }
    int rc = 0;
    if (!m->spm_split_words) {
        rc = tok_spm_word(&m->vocab, m->priorities, m->byte_ids, m->unk_id, escaped, len,
                          &m->buckets, &m->pair_memo, out);
    } else {
        int64_t start = 0;
        for (int64_t i = 1; rc == 0 && i <= len; i++) {
            int cut = i == len || (i + 3 <= len && memcmp(escaped + i, LOWER_ONE_EIGHTH_BLOCK, 3) == 0
                                   && !spm_crossing_at(m, escaped, len, i));
            if (cut) {
                rc = encode_word(m, escaped + start, i - start, out);
                start = i;
            }
        }
    }
    free(escaped);
    return rc;
}

/* Every raw fragment starts the text or follows a special token: with add_space_prefix,
 * llama.cpp prefixes each one with a space. */
static int encode_fragment(tok_model *m, const uint8_t *text, int64_t n, tok_ids *out) {
    if (m->kind == TOK_KIND_SPM) return encode_spm(m, text, n, m->add_space_prefix, out);
    return encode_byte_level(m, text, n, out);
}

int tok_encode(tok_model *m, const uint8_t *text, int64_t n, int parse_special, tok_ids *out) {
    const tok_trie *trie = parse_special ? &m->special_trie : &m->always_trie;
    int64_t fragment_start = 0;
    for (int64_t pos = 0; pos < n;) {
        int32_t id;
        int64_t len = trie->n_nodes > 1 ? tok_trie_match(trie, text, pos, n, &id) : 0;
        if (len == 0) {
            pos++;
            continue;
        }
        if (pos > fragment_start && encode_fragment(m, text + fragment_start, pos - fragment_start, out))
            return -1;
        if (tok_ids_push(out, id)) return -1;
        pos += len;
        fragment_start = pos;
    }
    if (n > fragment_start)
        return encode_fragment(m, text + fragment_start, n - fragment_start, out);
    return 0;
}

int tok_model_init(tok_model *m, int kind, int pretok, const uint8_t *blob,
                   const int64_t *offsets, int32_t n_tokens) {
    memset(m, 0, sizeof *m);
    m->kind = kind;
    m->pretok = pretok;
    m->unk_id = -1;
    memset(m->byte_ids, 0xff, sizeof m->byte_ids);
    memset(m->always_trie.root, 0xff, sizeof m->always_trie.root);
    memset(m->special_trie.root, 0xff, sizeof m->special_trie.root);
    if (tok_vocab_init(&m->vocab, blob, offsets, n_tokens)) return -1;
    return tok_cache_init(&m->cache, 16);
}

void tok_model_free(tok_model *m) {
    tok_vocab_free(&m->vocab);
    tok_merges_free(&m->merges);
    tok_trie_free(&m->always_trie);
    tok_trie_free(&m->special_trie);
    tok_cache_free(&m->cache);
    tok_buckets_free(&m->buckets);
    tok_pair_memo_free(&m->pair_memo);
}
