/*
 * error.c - twin_err to IoT Hub status/errorCode, and the error body.
 *
 * The only place where the numbers of PROTOCOL.md §2.4 and §7 appear, so
 * device replies, control API replies and tests cannot drift apart.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <openssl/rand.h>

#include "twin/doc.h"
#include "twin/error.h"
#include "twin/json.h"

static const struct {
	int status;
	int code;
} err_table[] = {
        [TWIN_OK] = {200, 0},
        [TWIN_E_INVALID] = {400, 400004},
        [TWIN_E_UNAUTHORIZED] = {401, 401002},
        [TWIN_E_SECTION_SIZE] = {403, 403100},
        [TWIN_E_NOT_FOUND] = {404, 404001},
        [TWIN_E_NO_OPERATION] = {404, 404},
        [TWIN_E_EXISTS] = {409, 409001},
        [TWIN_E_TOO_LARGE] = {413, 413002},
        [TWIN_E_PRECONDITION] = {412, 412001},
        [TWIN_E_NOMEM] = {500, 500001},
        [TWIN_E_STORAGE] = {500, 500001},
        [TWIN_E_UNAVAILABLE] = {503, 503001},
        [TWIN_E_THROTTLED] = {429, 429001},
};

static int err_known(twin_err err)
{
	return (unsigned)err < sizeof(err_table) / sizeof(err_table[0]);
}

int twin_err_status(twin_err err)
{
	return err_known(err) ? err_table[err].status : 500;
}

int twin_err_code(twin_err err)
{
	return err_known(err) ? err_table[err].code : 500001;
}

/* Messages end up in JSON error bodies, which must be valid UTF-8, but a
 * "%.64s" of a key or the cut at TWIN_ERROR_MESSAGE_MAX can split a
 * character: drop the bytes of any split (or otherwise broken) sequence. */
static void keep_whole_characters(char *m)
{
	size_t out = 0;

	for (size_t i = 0; m[i] != '\0';) {
		unsigned char c = (unsigned char)m[i];
		size_t n = c < 0x80             ? 1
		           : (c & 0xE0) == 0xC0 ? 2
		           : (c & 0xF0) == 0xE0 ? 3
		           : (c & 0xF8) == 0xF0 ? 4
		                                : 0;
		size_t k = 1;

		while (n > 1 && k < n && ((unsigned char)m[i + k] & 0xC0) == 0x80)
			k++;
		if (n == 0 || k < n || !twin_utf8_valid(m + i, n)) {
			i += n == 0 ? 1 : k; /* the broken sequence goes */
			continue;
		}
		memmove(m + out, m + i, n);
		out += n;
		i += n;
	}
	m[out] = '\0';
}

twin_err twin_error_set(twin_error *e, twin_err err, const char *fmt, ...)
{
	va_list ap;

	if (e == NULL)
		return err;
	e->err = err;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	keep_whole_characters(e->message);
	return err;
}

/* 32 lower-case hex digits (project decision). Falls back to a counter-free
 * all-zero id only if the RNG fails, which must not stop an error reply. */
static void tracking_id(char out[33])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[16] = {0};

	(void)RAND_bytes(raw, sizeof(raw));
	for (int i = 0; i < 16; i++) {
		out[2 * i] = hex[raw[i] >> 4];
		out[2 * i + 1] = hex[raw[i] & 15];
	}
	out[32] = '\0';
}

char *twin_error_body(const twin_error *e, int64_t now)
{
	char id[33], ts[TWIN_TIMESTAMP_MAX];
	cJSON *body = cJSON_CreateObject();
	char *text = NULL;

	if (body == NULL)
		return NULL;
	tracking_id(id);
	twin_timestamp_format(now, ts);
	if (cJSON_AddNumberToObject(body, "errorCode", twin_err_code(e->err)) &&
	    cJSON_AddStringToObject(body, "trackingId", id) &&
	    cJSON_AddStringToObject(body, "message", e->message) &&
	    cJSON_AddStringToObject(body, "timestampUtc", ts))
		text = twin_json_print(body);
	cJSON_Delete(body);
	return text;
}
