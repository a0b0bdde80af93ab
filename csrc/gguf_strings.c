/* See gguf_strings.h. */
#include "gguf_strings.h"

#include <string.h>

/* The file's byte order, whatever the host's. */
static uint64_t load_u64_le(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

int64_t gguf_string_bounds(const uint8_t *buf, int64_t size, int64_t pos, int64_t n,
                           int64_t *bounds) {
    for (int64_t i = 0; i < n; i++) {
        /* pos <= size holds here, so neither subtraction wraps */
        if (size - pos < 8) return i;
        uint64_t length = load_u64_le(buf + pos);
        if (length > (uint64_t)(size - pos - 8)) return i;
        bounds[i] = pos;
        pos += 8 + (int64_t)length;
    }
    bounds[n] = pos;
    return -1;
}

int64_t gguf_pack_strings(const uint8_t *buf, const int64_t *bounds, int64_t n, uint8_t *blob,
                          int64_t *offsets) {
    int64_t at = 0, split_char = -1;
    for (int64_t i = 0; i < n; i++) {
        int64_t length = bounds[i + 1] - bounds[i] - 8;
        const uint8_t *bytes = buf + bounds[i] + 8;
        offsets[i] = at;
        if (length > 0 && (bytes[0] & 0xC0) == 0x80 && split_char < 0) split_char = i;
        memcpy(blob + at, bytes, (size_t)length);
        at += length;
    }
    offsets[n] = at;
    return split_char;
}

int64_t gguf_join_strings(const uint8_t *buf, const int64_t *bounds, int64_t n,
                          uint8_t separator, uint8_t *out) {
    int64_t holding = 0;
    for (int64_t i = 0; i < n; i++) {
        size_t length = (size_t)(bounds[i + 1] - bounds[i] - 8);
        const uint8_t *bytes = buf + bounds[i] + 8;
        if (i > 0) *out++ = separator;
        holding += length && memchr(bytes, separator, length) != NULL;
        memcpy(out, bytes, length);
        out += length;
    }
    return holding;
}
