/*
 * key.h - private to store/: symmetric keys as base64 text, the one rule
 * shared by identity keys (PROTOCOL.md §7), shared access policy keys and
 * connection-string keys, so the three cannot drift apart.
 */
#ifndef TWIN_STORE_KEY_H
#define TWIN_STORE_KEY_H

#include "twin/error.h"
#include "twin/limits.h"

/* Non-zero if b64 is strict, padded base64 (no whitespace, '=' only as the
 * final padding) of TWIN_SYM_KEY_MIN_BYTES..TWIN_SYM_KEY_MAX_BYTES bytes.
 * NULL and "" are not. */
int key_b64_valid(const char *b64);

/* Write a fresh key of TWIN_SYM_KEY_GEN_BYTES random bytes from OpenSSL's
 * RNG, base64-encoded and NUL-terminated, into out. TWIN_OK, or
 * TWIN_E_STORAGE when the RNG fails (out is then unspecified). */
twin_err key_generate(char out[TWIN_SYM_KEY_B64_MAX + 1], twin_error *err);

#endif
