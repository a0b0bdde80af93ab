/* Hash tables of the tokenizer: vocab (text -> id), merges (pair -> rank), special-token
 * trie, and the word cache. All use open addressing with linear probing on power-of-two
 * tables kept at most half full. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

/* ---- growable arrays ---- */

int tok_ids_push(tok_ids *a, int32_t v) {
    if (a->len == a->cap) {
        int64_t cap = a->cap ? a->cap * 2 : 256;
        int32_t *data = realloc(a->data, (size_t)cap * sizeof *data);
        if (!data) return -1;
        a->data = data;
        a->cap = cap;
    }
    a->data[a->len++] = v;
    return 0;
}

int tok_offs_push(tok_offs *a, int64_t v) {
    if (a->len == a->cap) {
        int64_t cap = a->cap ? a->cap * 2 : 256;
        int64_t *data = realloc(a->data, (size_t)cap * sizeof *data);
        if (!data) return -1;
        a->data = data;
        a->cap = cap;
    }
    a->data[a->len++] = v;
    return 0;
}

/* ---- hashing ---- */

static inline uint64_t mix64(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

uint64_t tok_hash_bytes(const uint8_t *p, int64_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, (size_t)n);
    return mix64(h ^ w);
}

/* smallest power of two >= 2 * n (at least 16) */
static uint64_t table_size(int64_t n) {
    uint64_t size = 16;
    while (size < (uint64_t)n * 2) size <<= 1;
    return size;
}

/* ---- vocab ----
 * A slot holds a token id and the high half of its text's hash: a lookup that misses
 * (most lookups of BPE pairs do) is settled by the slots alone, without touching the
 * token texts. */

static int vocab_equal(const tok_vocab *v, int32_t id, const uint8_t *p, int64_t n) {
    int64_t start = v->offsets[id], len = v->offsets[id + 1] - start;
    return len == n && memcmp(v->blob + start, p, (size_t)n) == 0;
}

static inline uint64_t vocab_slot(int32_t id, uint64_t hash) {
    return (hash & 0xFFFFFFFF00000000ULL) | (uint32_t)id;
}

int tok_vocab_init(tok_vocab *v, const uint8_t *blob, const int64_t *offsets, int32_t n_tokens) {
    v->blob = blob;
    v->offsets = offsets;
    v->n_tokens = n_tokens;
    uint64_t size = table_size(n_tokens);
    v->mask = size - 1;
    v->slots = malloc(size * sizeof *v->slots);
    if (!v->slots) return -1;
    memset(v->slots, 0xff, size * sizeof *v->slots);
    for (int32_t id = 0; id < n_tokens; id++) {
        const uint8_t *p = blob + offsets[id];
        int64_t n = offsets[id + 1] - offsets[id];
        uint64_t hash = tok_hash_bytes(p, n), i = hash & v->mask;
        /* a repeated text maps to its last id, as in llama.cpp's token_to_id */
        while (v->slots[i] != UINT64_MAX &&
               !((v->slots[i] >> 32) == (hash >> 32) && vocab_equal(v, (int32_t)v->slots[i], p, n)))
            i = (i + 1) & v->mask;
        v->slots[i] = vocab_slot(id, hash);
    }
    return 0;
}

int32_t tok_vocab_find(const tok_vocab *v, const uint8_t *p, int64_t n) {
    uint64_t hash = tok_hash_bytes(p, n), i = hash & v->mask;
    for (;;) {
        uint64_t slot = v->slots[i];
        if (slot == UINT64_MAX) return -1;
        if ((slot >> 32) == (hash >> 32) && vocab_equal(v, (int32_t)slot, p, n)) return (int32_t)slot;
        i = (i + 1) & v->mask;
    }
}

void tok_vocab_free(tok_vocab *v) {
    free(v->slots);
    v->slots = NULL;
}

/* ---- merges ---- */

static inline uint64_t pair_key(int32_t left, int32_t right) {
    return ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
}

int tok_merges_init(tok_merges *m, int32_t n, const int32_t *left, const int32_t *right,
                    const int32_t *merged) {
    uint64_t size = table_size(n);
    m->mask = size - 1;
    m->n = n;
    m->keys = malloc(size * sizeof *m->keys);
    m->rank = malloc(size * sizeof *m->rank);
    m->merged = malloc(size * sizeof *m->merged);
    if (!m->keys || !m->rank || !m->merged) return -1;
    memset(m->keys, 0xff, size * sizeof *m->keys);  /* all-ones key = empty slot */
    for (int32_t r = 0; r < n; r++) {
        uint64_t key = pair_key(left[r], right[r]);
        uint64_t i = mix64(key) & m->mask;
        while (m->keys[i] != UINT64_MAX && m->keys[i] != key) i = (i + 1) & m->mask;
        if (m->keys[i] == key) continue;  /* a repeated pair keeps its first (best) rank */
        m->keys[i] = key;
        m->rank[i] = r;
        m->merged[i] = merged[r];
    }
    return 0;
}

int tok_merges_find(const tok_merges *m, int32_t left, int32_t right, int32_t *merged) {
    if (left < 0 || right < 0) return -1;  /* a byte without a token never merges */
    uint64_t key = pair_key(left, right);
    uint64_t i = mix64(key) & m->mask;
    for (;;) {
        uint64_t k = m->keys[i];
        if (k == key) {
            *merged = m->merged[i];
            return m->rank[i];
        }
        if (k == UINT64_MAX) return -1;
        i = (i + 1) & m->mask;
    }
}

void tok_merges_free(tok_merges *m) {
    free(m->keys);
    free(m->rank);
    free(m->merged);
    m->keys = NULL;
    m->rank = m->merged = NULL;
}

/* ---- special-token trie ---- */

static int32_t trie_find_child(const tok_trie *t, int32_t node, uint8_t byte) {
    if (node == 0) return t->root[byte];
    uint64_t key = ((uint64_t)node << 8) | byte;
    uint64_t i = mix64(key) & t->mask;
    for (;;) {
        if (t->keys[i] == key) return t->child[i];
        if (t->keys[i] == UINT64_MAX) return -1;
        i = (i + 1) & t->mask;
    }
}

static int32_t trie_add_child(tok_trie *t, int32_t node, uint8_t byte) {
    int32_t child = t->n_nodes++;
    t->token[child] = -1;
    if (node == 0) {
        t->root[byte] = child;
        return child;
    }
    uint64_t key = ((uint64_t)node << 8) | byte;
    uint64_t i = mix64(key) & t->mask;
    while (t->keys[i] != UINT64_MAX) i = (i + 1) & t->mask;
    t->keys[i] = key;
    t->child[i] = child;
    return child;
}

int tok_trie_init(tok_trie *t, const tok_vocab *v, int32_t n, const int32_t *ids) {
    int64_t total_bytes = 0;
    for (int32_t k = 0; k < n; k++) total_bytes += v->offsets[ids[k] + 1] - v->offsets[ids[k]];
    memset(t->root, 0xff, sizeof t->root);
    uint64_t size = table_size(total_bytes);
    t->mask = size - 1;
    t->keys = malloc(size * sizeof *t->keys);
    t->child = malloc(size * sizeof *t->child);
    t->cap_nodes = (int32_t)total_bytes + 1;
    t->token = malloc((size_t)t->cap_nodes * sizeof *t->token);
    if (!t->keys || !t->child || !t->token) return -1;
    memset(t->keys, 0xff, size * sizeof *t->keys);
    t->n_nodes = 1;
    t->token[0] = -1;
    for (int32_t k = 0; k < n; k++) {
        const uint8_t *p = v->blob + v->offsets[ids[k]];
        int64_t len = v->offsets[ids[k] + 1] - v->offsets[ids[k]];
        if (len == 0) continue;  /* an empty text can never be matched */
        int32_t node = 0;
        for (int64_t j = 0; j < len; j++) {
            int32_t child = trie_find_child(t, node, p[j]);
            node = child >= 0 ? child : trie_add_child(t, node, p[j]);
        }
        t->token[node] = ids[k];
    }
    return 0;
}

int64_t tok_trie_match(const tok_trie *t, const uint8_t *text, int64_t pos, int64_t end,
                       int32_t *id) {
    int64_t best = 0;
    int32_t node = t->root[text[pos]];
    for (int64_t j = pos + 1; node >= 0; j++) {
        if (t->token[node] >= 0) {
            best = j - pos;
            *id = t->token[node];
        }
        if (j >= end) break;
        node = trie_find_child(t, node, text[j]);
    }
    return best;
}

void tok_trie_free(tok_trie *t) {
    free(t->keys);
    free(t->child);
    free(t->token);
    t->keys = NULL;
    t->child = t->token = NULL;
}

/* ---- word cache ---- */

int tok_cache_init(tok_cache *c, int log2_slots) {
    memset(c, 0, sizeof *c);
    uint64_t size = (uint64_t)1 << log2_slots;
    c->mask = size - 1;
    c->hash = malloc(size * sizeof *c->hash);
    c->key_off = malloc(size * sizeof *c->key_off);
    c->ids_off = malloc(size * sizeof *c->ids_off);
    c->key_len = malloc(size * sizeof *c->key_len);
    c->n_ids = malloc(size * sizeof *c->n_ids);
    if (!c->hash || !c->key_off || !c->ids_off || !c->key_len || !c->n_ids) return -1;
    memset(c->key_len, 0xff, size * sizeof *c->key_len);  /* -1 = empty slot */
    return 0;
}

static uint64_t cache_slot(const tok_cache *c, const uint8_t *word, int64_t n, uint64_t h) {
    uint64_t i = h & c->mask;
    while (c->key_len[i] >= 0) {
        if (c->hash[i] == h && c->key_len[i] == n &&
            memcmp(c->keys + c->key_off[i], word, (size_t)n) == 0) break;
        i = (i + 1) & c->mask;
    }
    return i;
}

int tok_cache_get(const tok_cache *c, const uint8_t *word, int64_t n, tok_ids *out) {
    uint64_t i = cache_slot(c, word, n, tok_hash_bytes(word, n));
    if (c->key_len[i] < 0) return 0;
    const int32_t *ids = c->ids + c->ids_off[i];
    for (int32_t k = 0; k < c->n_ids[i]; k++)
        if (tok_ids_push(out, ids[k])) return -1;
    return 1;
}

static void cache_clear(tok_cache *c) {
    memset(c->key_len, 0xff, (c->mask + 1) * sizeof *c->key_len);
    c->count = 0;
    c->keys_len = 0;
    c->ids_len = 0;
}

static int grow(void **data, int64_t *cap, int64_t need, size_t item) {
    if (need <= *cap) return 0;
    int64_t new_cap = *cap ? *cap : 4096;
    while (new_cap < need) new_cap *= 2;
    void *p = realloc(*data, (size_t)new_cap * item);
    if (!p) return -1;
    *data = p;
    *cap = new_cap;
    return 0;
}

int tok_cache_put(tok_cache *c, const uint8_t *word, int64_t n, const int32_t *ids, int64_t k) {
    if ((uint64_t)c->count * 2 >= c->mask + 1) cache_clear(c);
    if (grow((void **)&c->keys, &c->keys_cap, c->keys_len + n, 1) ||
        grow((void **)&c->ids, &c->ids_cap, c->ids_len + k, sizeof(int32_t))) return -1;
    uint64_t h = tok_hash_bytes(word, n);
    uint64_t i = cache_slot(c, word, n, h);
    if (c->key_len[i] >= 0) return 0;  /* already cached */
    memcpy(c->keys + c->keys_len, word, (size_t)n);
    if (k > 0) memcpy(c->ids + c->ids_len, ids, (size_t)k * sizeof *ids);  /* ids may be NULL */
    c->hash[i] = h;
    c->key_off[i] = c->keys_len;
    c->key_len[i] = (int32_t)n;
    c->ids_off[i] = c->ids_len;
    c->n_ids[i] = (int32_t)k;
    c->keys_len += n;
    c->ids_len += k;
    c->count++;
    return 0;
}

void tok_cache_free(tok_cache *c) {
    free(c->hash);
    free(c->key_off);
    free(c->ids_off);
    free(c->key_len);
    free(c->n_ids);
    free(c->keys);
    free(c->ids);
    memset(c, 0, sizeof *c);
}
