/* GGUF string arrays: n strings back to back, each a little-endian u64 byte length and
 * then its bytes. A vocabulary is 50k-260k of them; walking them in Python cost Gemma 3's
 * start ~40 ms. C never allocates: the caller sizes every buffer. */
#ifndef LLMCLI_GGUF_STRINGS_H
#define LLMCLI_GGUF_STRINGS_H

#include <stdint.h>

/* Walks n strings from byte `pos` of buf[0, size): bounds[i] = offset of string i's
 * length, bounds[n] = the end of the last string. Returns -1 when all n fit in the
 * buffer, else the index of the first string whose length or bytes run past its end
 * (bounds past that index are left unset). Requires pos <= size. */
int64_t gguf_string_bounds(const uint8_t *buf, int64_t size, int64_t pos, int64_t n,
                           int64_t *bounds);

/* Copies the bytes of the n strings that gguf_string_bounds found into blob, back to
 * back: string i is blob[offsets[i], offsets[i + 1]). blob holds
 * bounds[n] - bounds[0] - 8 n bytes, offsets n + 1 values. Returns -1, or the index of
 * the first non-empty string that starts with a UTF-8 continuation byte (10xxxxxx): a
 * blob that is valid UTF-8 as a whole holds n valid strings exactly when there is none. */
int64_t gguf_pack_strings(const uint8_t *buf, const int64_t *bounds, int64_t n, uint8_t *blob,
                          int64_t *offsets);

/* The n strings with one `separator` byte between each two: out holds
 * bounds[n] - bounds[0] - 7 n - 1 bytes (nothing for n = 0). Returns how many strings
 * hold the separator byte themselves. */
int64_t gguf_join_strings(const uint8_t *buf, const int64_t *bounds, int64_t n,
                          uint8_t separator, uint8_t *out);

#endif
