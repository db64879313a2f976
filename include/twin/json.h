/*
 * twin/json.h - strict JSON input for everything that crosses the wire.
 *
 * cJSON's own parser accepts invalid UTF-8, duplicate keys and numbers that
 * overflow to infinity, and forgets whether a number was written as an
 * integer. PROTOCOL.md §6 needs all four, so untrusted input goes through
 * this parser, which builds ordinary cJSON trees. The integer range is
 * enforced while parsing, because the tree, like cJSON's, no longer knows
 * how a number was written. Data the store wrote itself
 * is read back with cJSON_ParseWithLength.
 */
#ifndef TWIN_JSON_H
#define TWIN_JSON_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "twin/error.h"

/* Parse exactly one RFC 8259 JSON value from text[0..len) (surrounding
 * whitespace allowed, nothing else; text need not be NUL-terminated).
 * Rejects with TWIN_E_INVALID and a message giving the 0-based byte offset:
 * invalid UTF-8 anywhere, raw control characters in strings, invalid escapes,
 * lone surrogates, "\u0000" anywhere (cJSON strings end at a NUL, so it
 * would silently cut the string), duplicate keys in one object, integer
 * literals outside [int_min, int_max], non-finite numbers, nesting deeper
 * than TWIN_JSON_MAX_NESTING, and trailing data. TWIN_E_NOMEM when out of
 * memory. out must not be NULL: *out is the tree on success (the caller frees
 * it with cJSON_Delete) and NULL on any error. err may be NULL. */
twin_err twin_json_parse(const char *text, size_t len, int64_t int_min, int64_t int_max,
                         cJSON **out, twin_error *err);

/* True if s[0..len) is well-formed UTF-8 (no overlongs, no surrogates,
 * <= U+10FFFF). A 0x00 byte is well-formed; callers that cannot hold one
 * check for it themselves. */
int twin_utf8_valid(const char *s, size_t len);

/* A growable text buffer. Zero-initialise it; data is NULL or
 * NUL-terminated at len. It grows through cJSON_malloc, so whoever owns the
 * buffer frees data with cJSON_free (free() unless cJSON_InitHooks). */
typedef struct twin_buf {
	char *data;
	size_t len, cap;
} twin_buf;

/* Append n bytes (and keep the NUL after them). 1 on success, 0 when out of
 * memory, and then b is as it was. */
int twin_buf_put(twin_buf *b, const void *bytes, size_t n);

/* Append the compact JSON text of item to b: byte for byte what
 * cJSON_PrintUnformatted prints, several times faster (no printf for
 * integers, no strlen per token). Returns 1 on success; 0 when out of memory
 * or when the tree holds an invalid item, and then b is as it was. */
int twin_json_print_append(twin_buf *b, const cJSON *item);

/* Append s as a JSON string literal, escaped as cJSON escapes it. 1 on
 * success, 0 when out of memory. */
int twin_json_print_string_append(twin_buf *b, const char *s);

/* The compact JSON text of item in a new string the caller frees with
 * cJSON_free, as cJSON_PrintUnformatted's; NULL when out of memory or for an
 * invalid item. */
char *twin_json_print(const cJSON *item);

#endif
