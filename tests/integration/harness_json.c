/*
 * harness_json.c - JSON checks for tests: equality with and without member
 * order, strict validity (one value, valid UTF-8), integers at a member
 * path, PROTOCOL.md §2.4 error bodies and their 7-digit UTC timestamps.
 *
 * Parsing is cJSON's with require_null_terminated (nothing may follow the
 * value); tb_json_valid() also checks the UTF-8 that cJSON passes through
 * unchecked.
 */
#define _GNU_SOURCE
#include "harness_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

static bool utf8_valid(const unsigned char *s)
{
	while (*s != '\0') {
		unsigned c = *s++;
		unsigned cp, need;

		if (c < 0x80)
			continue;
		if (c >= 0xC2 && c <= 0xDF)
			need = 1, cp = c & 0x1F;
		else if (c >= 0xE0 && c <= 0xEF)
			need = 2, cp = c & 0x0F;
		else if (c >= 0xF0 && c <= 0xF4)
			need = 3, cp = c & 0x07;
		else
			return false;
		for (unsigned i = 0; i < need; i++, s++) {
			if ((*s & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (*s & 0x3F);
		}
		if ((need == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
		    (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
			return false;
	}
	return true;
}

static cJSON *parse_strict(const char *s)
{
	return s != NULL ? cJSON_ParseWithOpts(s, NULL, true) : NULL;
}

bool tb_json_valid(const char *s)
{
	cJSON *j;

	if (s == NULL || !utf8_valid((const unsigned char *)s))
		return false;
	j = parse_strict(s);
	cJSON_Delete(j);
	return j != NULL;
}

static bool json_equal(const cJSON *a, const cJSON *b, bool ordered)
{
	int type = a->type & 0xFF;

	if (type != (b->type & 0xFF))
		return false;
	switch (type) {
	case cJSON_Number:
		return a->valuedouble == b->valuedouble;
	case cJSON_String:
		return strcmp(a->valuestring, b->valuestring) == 0;
	case cJSON_Array:
	case cJSON_Object:
		if (cJSON_GetArraySize(a) != cJSON_GetArraySize(b))
			return false;
		if (type == cJSON_Array || ordered) {
			const cJSON *y = b->child;

			for (const cJSON *x = a->child; x != NULL; x = x->next, y = y->next)
				if ((type == cJSON_Object && strcmp(x->string, y->string) != 0) ||
				    !json_equal(x, y, ordered))
					return false;
			return true;
		}
		for (const cJSON *x = a->child; x != NULL; x = x->next) {
			const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, x->string);

			if (y == NULL || !json_equal(x, y, ordered))
				return false;
		}
		for (const cJSON *y = b->child; y != NULL; y = y->next)
			if (cJSON_GetObjectItemCaseSensitive(a, y->string) == NULL)
				return false;
		return true;
	default: /* true, false, null */
		return true;
	}
}

static void assert_json(const char *got, const char *want, bool ordered)
{
	cJSON *g = parse_strict(got), *w = parse_strict(want);
	bool eq = g != NULL && w != NULL && json_equal(g, w, ordered);

	cJSON_Delete(g);
	cJSON_Delete(w);
	if (w == NULL)
		fail_msg("bad expected JSON in the test: %s", want);
	if (!eq)
		fail_msg("JSON differs%s:\n  got:  %s\n  want: %s", ordered ? " (ordered)" : "",
		         got != NULL ? got : "(null)", want);
}

void tb_assert_json_eq(const char *got, const char *want)
{
	assert_json(got, want, false);
}

void tb_assert_json_eq_ordered(const char *got, const char *want)
{
	assert_json(got, want, true);
}

void tb_assert_str_exact(const char *got, const char *want)
{
	if (got == NULL || strcmp(got, want) != 0)
		fail_msg("strings differ:\n  got:  %s\n  want: %s", got != NULL ? got : "(null)",
		         want);
}

long long tb_json_int(const char *json, const char *path)
{
	cJSON *root = parse_strict(json);
	const cJSON *v = root;
	char *copy = tbi_xstrdup(path), *seg, *save = NULL;
	double d = 0;
	bool ok;

	for (seg = strtok_r(copy, ".", &save); seg != NULL && v != NULL;
	     seg = strtok_r(NULL, ".", &save))
		v = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, seg) : NULL;
	ok = v != NULL && cJSON_IsNumber(v);
	if (ok) {
		d = v->valuedouble;
		ok = d == (double)(long long)d;
	}
	free(copy);
	cJSON_Delete(root);
	if (!ok)
		fail_msg("no integer at %s in %s", path, json != NULL ? json : "(null)");
	return (long long)d;
}

bool tb_timestamp_valid(const char *ts)
{
	static const char pattern[] = "dddd-dd-ddTdd:dd:dd.dddddddZ";
	int mon, day, hour, min, sec;

	if (ts == NULL || strlen(ts) != sizeof(pattern) - 1)
		return false;
	for (size_t i = 0; pattern[i] != '\0'; i++)
		if (pattern[i] == 'd' ? ts[i] < '0' || ts[i] > '9' : ts[i] != pattern[i])
			return false;
	if (sscanf(ts + 5, "%2d-%2dT%2d:%2d:%2d", &mon, &day, &hour, &min, &sec) != 5)
		return false;
	return mon >= 1 && mon <= 12 && day >= 1 && day <= 31 && hour < 24 && min < 60 && sec < 61;
}

double tb_timestamp_age(const char *ts)
{
	struct tm tm = {0};
	struct timespec now;

	if (!tb_timestamp_valid(ts) || strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm) == NULL)
		fail_msg("bad timestamp '%s'", ts != NULL ? ts : "(null)");
	clock_gettime(CLOCK_REALTIME, &now);
	return (double)now.tv_sec + now.tv_nsec / 1e9 - ((double)timegm(&tm) + atof(ts + 19));
}

static bool copy_string(const cJSON *v, char *out, size_t size)
{
	if (!cJSON_IsString(v) || strlen(v->valuestring) >= size)
		return false;
	strcpy(out, v->valuestring);
	return true;
}

bool tb_error_body_parse(const char *body, tb_error_body *out)
{
	cJSON *j = parse_strict(body);
	const cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "errorCode");
	const char *why = NULL;

	memset(out, 0, sizeof(*out));
	if (j == NULL || !cJSON_IsObject(j) || !tb_json_valid(body))
		why = "not a JSON object";
	else if (cJSON_GetArraySize(j) != 4)
		why = "not exactly the members errorCode, trackingId, message, timestampUtc";
	else if (!cJSON_IsNumber(code) || code->valuedouble != (double)(long long)code->valuedouble)
		why = "errorCode is not an integer";
	else if (!copy_string(cJSON_GetObjectItemCaseSensitive(j, "trackingId"), out->tracking_id,
	                      sizeof(out->tracking_id)) ||
	         strlen(out->tracking_id) != 32 ||
	         strspn(out->tracking_id, "0123456789abcdef") != 32)
		why = "trackingId is not 32 lower-case hex digits";
	else if (!copy_string(cJSON_GetObjectItemCaseSensitive(j, "message"), out->message,
	                      sizeof(out->message)) ||
	         out->message[0] == '\0')
		why = "message is not a non-empty string";
	else if (!copy_string(cJSON_GetObjectItemCaseSensitive(j, "timestampUtc"),
	                      out->timestamp_utc, sizeof(out->timestamp_utc)) ||
	         !tb_timestamp_valid(out->timestamp_utc))
		why = "timestampUtc is not YYYY-MM-DDTHH:MM:SS.fffffffZ";
	else
		out->error_code = (long long)code->valuedouble;
	cJSON_Delete(j);
	if (why != NULL)
		print_error("bad error body (%s): %s\n", why, body != NULL ? body : "(null)");
	return why == NULL;
}

void tb_assert_error_reply(const tb_msg *m, const char *want_topic, long long want_code,
                           const char *want_message, tb_error_body *out)
{
	tb_error_body e;

	if (m == NULL)
		fail_msg("no reply (wanted %s)", want_topic);
	tb_assert_str_exact(m->topic, want_topic);
	if (!tb_error_body_parse(m->payload, &e))
		fail_msg("reply on %s has no valid error body", m->topic);
	if (e.error_code != want_code)
		fail_msg("errorCode %lld, want %lld, in %s", e.error_code, want_code, m->payload);
	if (want_message != NULL)
		tb_assert_str_exact(e.message, want_message);
	if (out != NULL)
		*out = e;
}
