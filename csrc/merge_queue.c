/* Merging a long word: the order of a priority queue keyed by (priority, position), at
 * close to linear cost.
 *
 * A plain heap holding every candidate pair of a 1 MB word spends its time in cache
 * misses. Instead candidates wait in one bucket (an array) per priority, and a small heap
 * holds only the priorities whose bucket is not empty. The best bucket is taken whole,
 * sorted by position and swept left to right, merging each pair that is still current.
 * Merges create new pairs: those of a later priority go to their buckets; those of the
 * same priority join a small heap swept along with the bucket (still by position); one
 * of a better priority interrupts the sweep (the rest goes back into its bucket), so the
 * order stays exactly (priority, position) for any merge list or scores. With trained
 * merge lists new pairs are always of a later priority, and each bucket is swept once.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

#define PREFETCH_AHEAD 8

/* a candidate: merge sym[left] with sym[right], valid while `check` still holds */
typedef struct { int32_t left, right, check; } entry;

struct tok_bucket { entry *items; int64_t len, cap; };

typedef struct {
    int32_t *prios; int64_t n_prios, cap_prios;    /* min-heap of priorities with a bucket */
    int32_t *touched; int64_t n_touched, cap_touched;  /* buckets that hold memory */
    tok_bucket *slots;
    const tok_pair_rules *rules;
    tok_node *sym;
} queue;

static int grow(void **data, int64_t *cap, int64_t need, size_t item) {
    if (need <= *cap) return 0;
    int64_t new_cap = *cap ? *cap * 2 : 64;
    while (new_cap < need) new_cap *= 2;
    void *p = realloc(*data, (size_t)new_cap * item);
    if (!p) return -1;
    *data = p;
    *cap = new_cap;
    return 0;
}

/* ---- min-heap of int32 priorities ---- */

static int prio_push(queue *q, int32_t p) {
    if (grow((void **)&q->prios, &q->cap_prios, q->n_prios + 1, sizeof *q->prios)) return -1;
    int64_t i = q->n_prios++;
    while (i > 0 && p < q->prios[(i - 1) / 2]) {
        q->prios[i] = q->prios[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    q->prios[i] = p;
    return 0;
}

static int32_t prio_pop(queue *q) {
    int32_t top = q->prios[0], last = q->prios[--q->n_prios];
    int64_t i = 0;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= q->n_prios) break;
        if (c + 1 < q->n_prios && q->prios[c + 1] < q->prios[c]) c++;
        if (q->prios[c] >= last) break;
        q->prios[i] = q->prios[c];
        i = c;
    }
    if (q->n_prios > 0) q->prios[i] = last;
    return top;
}

/* ---- buckets ---- */

static int bucket_add(queue *q, int32_t prio, entry e) {
    tok_bucket *b = &q->slots[prio];
    if (b->len == 0) {
        if (prio_push(q, prio)) return -1;
        if (b->cap == 0) {
            if (grow((void **)&q->touched, &q->cap_touched, q->n_touched + 1, sizeof *q->touched))
                return -1;
            q->touched[q->n_touched++] = prio;
        }
    }
    if (grow((void **)&b->items, &b->cap, b->len + 1, sizeof *b->items)) return -1;
    b->items[b->len++] = e;
    return 0;
}

static int cmp_left(const void *a, const void *b) {
    int32_t x = ((const entry *)a)->left, y = ((const entry *)b)->left;
    return (x > y) - (x < y);
}

/* Swap bucket `prio`'s array with the (empty) `todo` array, then sort it by position. */
static void bucket_take(queue *q, int32_t prio, tok_bucket *todo) {
    tok_bucket *b = &q->slots[prio];
    tok_bucket taken = *b;
    *b = (tok_bucket){todo->items, 0, todo->cap};
    *todo = taken;
    for (int64_t i = 1; i < todo->len; i++) {
        if (todo->items[i - 1].left > todo->items[i].left) {
            qsort(todo->items, (size_t)todo->len, sizeof *todo->items, cmp_left);
            break;
        }
    }
}

/* ---- same-priority newcomers: a min-heap by position ---- */

static int pos_push(tok_bucket *h, entry e) {
    if (grow((void **)&h->items, &h->cap, h->len + 1, sizeof *h->items)) return -1;
    int64_t i = h->len++;
    while (i > 0 && e.left < h->items[(i - 1) / 2].left) {
        h->items[i] = h->items[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->items[i] = e;
    return 0;
}

static entry pos_pop(tok_bucket *h) {
    entry top = h->items[0], last = h->items[--h->len];
    int64_t i = 0;
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= h->len) break;
        if (c + 1 < h->len && h->items[c + 1].left < h->items[c].left) c++;
        if (h->items[c].left >= last.left) break;
        h->items[i] = h->items[c];
        i = c;
    }
    if (h->len > 0) h->items[i] = last;
    return top;
}

/* ---- the sweep ---- */

/* A candidate for sym[left] and its right neighbour, if they can merge. */
static int make_candidate(const queue *q, int32_t left, int32_t *prio, entry *e) {
    if (left < 0) return 0;
    int32_t check;
    if (!q->rules->pair(q->rules->ctx, q->sym, left, prio, &check)) return 0;
    *e = (entry){left, q->sym[left].next, check};
    return 1;
}

static int is_current(const queue *q, const entry *e) {
    return q->sym[e->left].next == e->right && q->rules->check(q->sym, e->right) == e->check;
}

static void merge(tok_node *sym, int32_t left, int32_t right, int32_t tok) {
    sym[left].tok = tok;
    sym[left].len += sym[right].len;
    sym[left].next = sym[right].next;
    if (sym[right].next >= 0) sym[sym[right].next].prev = left;
    sym[right].next = -2;  /* merged away: matches no entry's `right` */
}

/* Sweep bucket `prio` (sorted, in `todo`). Returns 1 if interrupted by a better priority
 * (the unswept rest is back in its bucket), 0 when done, -1 on out-of-memory. */
static int sweep(queue *q, int32_t prio, const tok_bucket *todo, tok_bucket *same) {
    int64_t i = 0;
    same->len = 0;
    while (i < todo->len || same->len > 0) {
        /* the symbols of a bucket lie far apart in a long word: fetch ahead */
        if (i + PREFETCH_AHEAD < todo->len)
            __builtin_prefetch(&q->sym[todo->items[i + PREFETCH_AHEAD].left]);
        entry e = (same->len > 0 && (i >= todo->len || same->items[0].left < todo->items[i].left))
                  ? pos_pop(same) : todo->items[i++];
        if (!is_current(q, &e)) continue;
        merge(q->sym, e.left, e.right, q->rules->merged(q->rules->ctx, q->sym, e.left, e.right));
        int better = 0;
        int32_t sides[2] = {q->sym[e.left].prev, e.left};
        for (int s = 0; s < 2; s++) {
            int32_t p;
            entry c;
            if (!make_candidate(q, sides[s], &p, &c)) continue;
            if (p == prio ? pos_push(same, c) : bucket_add(q, p, c)) return -1;
            better |= p < prio;
        }
        if (!better) continue;
        for (; i < todo->len; i++)
            if (bucket_add(q, prio, todo->items[i])) return -1;
        while (same->len > 0)
            if (bucket_add(q, prio, pos_pop(same))) return -1;
        return 1;
    }
    return 0;
}

int tok_merge_long(tok_node *sym, int64_t n, const tok_pair_rules *rules, tok_buckets *b) {
    if (!b->slots) {
        b->slots = calloc((size_t)(b->n_prio > 0 ? b->n_prio : 1), sizeof *b->slots);
        if (!b->slots) return -1;
    }
    queue q = {.slots = b->slots, .rules = rules, .sym = sym};
    tok_bucket todo = {0}, same = {0};
    int rc = 0;
    for (int32_t left = 0; rc == 0 && left + 1 < n; left++) {
        int32_t p;
        entry c;
        if (make_candidate(&q, left, &p, &c)) rc = bucket_add(&q, p, c);
    }
    while (rc == 0 && q.n_prios > 0) {
        int32_t prio = prio_pop(&q);
        bucket_take(&q, prio, &todo);
        rc = sweep(&q, prio, &todo, &same) < 0 ? -1 : 0;
        todo.len = 0;
    }
    /* release what this word used, so a huge word does not keep its memory */
    for (int64_t k = 0; k < q.n_touched; k++) {
        tok_bucket *slot = &q.slots[q.touched[k]];
        free(slot->items);
        *slot = (tok_bucket){0};
    }
    free(q.prios);
    free(q.touched);
    free(todo.items);
    free(same.items);
    return rc;
}

void tok_buckets_free(tok_buckets *b) {
    free(b->slots);
    b->slots = NULL;
}
