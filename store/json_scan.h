/*
 * json_scan.h - private to store/: read a path out of stored JSON text
 * without building a tree.
 *
 * A query over 100k twins looks at one or two values of each; parsing every
 * section to find them would cost more than the rest of the scan together.
 * The store printed these texts itself (compact, valid), so a scanner that
 * skips what it does not need is enough; it still checks every bound, so a
 * corrupt record reads as "undefined", never past its end.
 */
#ifndef TWIN_STORE_JSON_SCAN_H
#define TWIN_STORE_JSON_SCAN_H

#include <stddef.h>

/* Find the member path seg[0..n) inside the JSON value text[0..len). With
 * n == 0 the value itself is the result. Returns 1 and the value's span in
 * *v, *vlen when found; 0 when a name is missing or a step is not an
 * object. Names compare byte for byte after unescaping. */
int json_scan_path(const char *text, size_t len, char *const *seg, size_t n, const char **v,
                   size_t *vlen);

/* Unescape the JSON string token s[0..len) (with its quotes) into a new
 * NUL-terminated malloc'd string; *out_len is its length. NULL when out of
 * memory or the token is malformed. */
char *json_scan_string(const char *s, size_t len, size_t *out_len);

/* The value of the four hex digits at p[0..4), or -1. */
long json_hex4(const char *p);

/* Write code point cp (at most U+10FFFF) as UTF-8 at out; the number of
 * bytes written, 1 to 4. */
size_t json_put_utf8(char *out, unsigned cp);

#endif
