/*
 * key.c - the base64 symmetric-key rule and the key generator (key.h).
 *
 * Validation only counts: nothing here decodes a key, so no key bytes are
 * left on the stack. twin_sas_verify decodes (and wipes) keys itself.
 */
#include <ctype.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "key.h"

/* Decoded length of a strict, padded base64 string, or -1 if it is not one. */
static long base64_decoded_len(const char *s)
{
	size_t n = strlen(s), pad = 0;

	if (n == 0 || n % 4 != 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '=' && i >= n - 2) {
			pad++;
			continue;
		}
		if (pad || !(c < 0x80 && (isalnum(c) || c == '+' || c == '/')))
			return -1;
	}
	return (long)(n / 4 * 3 - pad);
}

int key_b64_valid(const char *b64)
{
	long n = b64 != NULL ? base64_decoded_len(b64) : -1;

	return n >= TWIN_SYM_KEY_MIN_BYTES && n <= TWIN_SYM_KEY_MAX_BYTES;
}

twin_err key_generate(char out[TWIN_SYM_KEY_B64_MAX + 1], twin_error *err)
{
	unsigned char raw[TWIN_SYM_KEY_GEN_BYTES];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return twin_error_set(err, TWIN_E_STORAGE, "Random number generator failed.");
	EVP_EncodeBlock((unsigned char *)out, raw, sizeof(raw));
	OPENSSL_cleanse(raw, sizeof(raw));
	return TWIN_OK;
}
