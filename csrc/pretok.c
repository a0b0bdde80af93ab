/* Pre-tokenizers of byte-level BPE: hand-written scanners equivalent to the split regexes
 * (leftmost alternative first, greedy, with the (?!\S) backtrack spelled out).
 *
 *   gpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   smollm: every \p{N} is its own word; the gpt2 rules run on the text between digits
 *           (HF: Digits(individual_digits) then ByteLevel; llama.cpp: two regexes)
 *   llama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}
 *           | ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   qwen2:  llama3 with \p{N} (one digit per word) instead of \p{N}{1,3}
 *
 * A scanner sees only its range [pos, end): lookahead past `end` finds nothing, exactly
 * like a regex applied to the piece alone (this matters for smollm's pieces).
 */
#include "tokenizer.h"

/* what the rules distinguish about a char */
enum { K_NONE = 0, K_LETTER, K_NUMBER, K_SPACE, K_OTHER };

uint32_t tok_utf8_decode(const uint8_t *s, int64_t pos, int64_t end, int *len) {
    uint8_t b = s[pos];
    int n = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xe ? 3 : (b >> 3) == 0x1e ? 4 : 0;
    if (n == 0 || pos + n > end) {
        *len = 1;  /* invalid lead byte or truncated char: one "other" byte */
        return 0xFFFD;
    }
    uint32_t cp = n == 1 ? b : n == 2 ? (b & 0x1fu) : n == 3 ? (b & 0x0fu) : (b & 0x07u);
    for (int k = 1; k < n; k++) {
        if ((s[pos + k] & 0xc0) != 0x80) {
            *len = 1;
            return 0xFFFD;
        }
        cp = (cp << 6) | (s[pos + k] & 0x3fu);
    }
    *len = n;
    return cp;
}

typedef struct {
    const uint8_t *s;
    int64_t end;
} scan;

static inline int kind_of(uint32_t cp) {
    int cls = tok_uclass(cp);
    return (cls & TOK_SPACE) ? K_SPACE : (cls & TOK_LETTER) ? K_LETTER
           : (cls & TOK_NUMBER) ? K_NUMBER : K_OTHER;
}

/* kind of the char at pos (K_NONE at or past the end); *next = offset after it */
static inline int kind_at(const scan *sc, int64_t pos, int64_t *next) {
    if (pos >= sc->end) {
        *next = pos;
        return K_NONE;
    }
    if (sc->s[pos] < 0x80) {  /* ASCII fast path */
        *next = pos + 1;
        return kind_of(sc->s[pos]);
    }
    int len;
    uint32_t cp = tok_utf8_decode(sc->s, pos, sc->end, &len);
    *next = pos + len;
    return kind_of(cp);
}

/* end of the run of `kind` chars starting at pos */
static int64_t run_end(const scan *sc, int64_t pos, int kind) {
    int64_t next;
    while (kind_at(sc, pos, &next) == kind) pos = next;
    return pos;
}

static inline int lower_ascii(uint8_t c) {
    return (c >= 'A' && c <= 'Z') ? c + 32 : c;
}

/* 's 't 're 've 'm 'll 'd at pos (case-insensitive or not): end of the match, or 0 */
static int64_t contraction(const scan *sc, int64_t pos, int any_case) {
    if (sc->s[pos] != '\'' || pos + 1 >= sc->end) return 0;
    int c1 = any_case ? lower_ascii(sc->s[pos + 1]) : sc->s[pos + 1];
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return pos + 2;
    if (pos + 2 >= sc->end) return 0;
    int c2 = any_case ? lower_ascii(sc->s[pos + 2]) : sc->s[pos + 2];
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
        return pos + 3;
    return 0;
}

/* \s+(?!\S) then \s+ (plus, for llama3/qwen2, \s*[\r\n]+ first); pos is whitespace */
static int64_t whitespace_word(const scan *sc, int64_t pos, int newline_rule) {
    int64_t q = pos, last_start = pos, after_newline = 0, next;
    int n_spaces = 0;
    while (kind_at(sc, q, &next) == K_SPACE) {
        if (sc->s[q] == '\r' || sc->s[q] == '\n') after_newline = next;
        last_start = q;
        q = next;
        n_spaces++;
    }
    if (newline_rule && after_newline) return after_newline;
    /* followed by a non-space: leave the last space to start the next word */
    if (n_spaces > 1 && q < sc->end) return last_start;
    return q;
}

static int64_t gpt2_word(const scan *sc, int64_t pos) {
    int64_t end, next;
    if ((end = contraction(sc, pos, 0))) return end;
    int kind = kind_at(sc, pos, &next);
    int64_t start = pos;
    if (sc->s[pos] == ' ') {  /* " ?X+": the optional space joins the next char's run */
        kind = kind_at(sc, next, &next);
        start = pos + 1;
    }
    if (kind == K_LETTER || kind == K_NUMBER || kind == K_OTHER) return run_end(sc, start, kind);
    return whitespace_word(sc, pos, 0);
}

static int64_t llama3_word(const scan *sc, int64_t pos, int max_digits) {
    int64_t end, next, after;
    if ((end = contraction(sc, pos, 1))) return end;
    uint8_t c = sc->s[pos];
    int kind = kind_at(sc, pos, &next);
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (c != '\r' && c != '\n' && kind != K_NUMBER) {
        if (kind == K_LETTER || kind_at(sc, next, &after) == K_LETTER)
            return run_end(sc, next, K_LETTER);
    }
    if (kind == K_NUMBER) {  /* \p{N}{1,max_digits} */
        int64_t q = pos;
        for (int k = 0; k < max_digits && kind_at(sc, q, &next) == K_NUMBER; k++) q = next;
        return q;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    int64_t start = pos;
    if (c == ' ') {
        kind = kind_at(sc, next, &after);
        start = next;
    }
    if (kind == K_OTHER) {
        int64_t q = run_end(sc, start, K_OTHER);
        while (q < sc->end && (sc->s[q] == '\r' || sc->s[q] == '\n')) q++;
        return q;
    }
    return whitespace_word(sc, pos, 1);
}

static int scan_range(int rule, const uint8_t *text, int64_t pos, int64_t end, tok_offs *ends) {
    scan sc = {text, end};
    while (pos < end) {
        int64_t word_end = rule == TOK_PRE_LLAMA3 ? llama3_word(&sc, pos, 3)
                         : rule == TOK_PRE_QWEN2  ? llama3_word(&sc, pos, 1)
                         : gpt2_word(&sc, pos);
        if (word_end <= pos) word_end = pos + 1;  /* cannot happen; never loop forever */
        if (tok_offs_push(ends, word_end)) return -1;
        pos = word_end;
    }
    return 0;
}

/* smollm: each number char alone, gpt2 rules on the pieces in between */
static int scan_digits_apart(const uint8_t *text, int64_t n, tok_offs *ends) {
    scan sc = {text, n};
    int64_t piece_start = 0, pos = 0, next;
    while (pos < n) {
        if (kind_at(&sc, pos, &next) != K_NUMBER) {
            pos = next;
            continue;
        }
        if (scan_range(TOK_PRE_GPT2, text, piece_start, pos, ends)) return -1;
        if (tok_offs_push(ends, next)) return -1;
        piece_start = pos = next;
    }
    return scan_range(TOK_PRE_GPT2, text, piece_start, n, ends);
}

int tok_pretokenize(int rule, const uint8_t *text, int64_t n, tok_offs *ends) {
    if (rule == TOK_PRE_SMOLLM) return scan_digits_apart(text, n, ends);
    return scan_range(rule, text, 0, n, ends);
}
