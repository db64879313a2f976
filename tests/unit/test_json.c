/*
 * test_json.c - the strict wire JSON parser (store/json.c) against RFC 8259
 * and PROTOCOL.md §6, one test per rule.
 *
 * Every input is copied into a heap buffer of exactly its length, with no NUL
 * after it, so AddressSanitizer catches any read past len.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "twin/json.h"
#include "twin/limits.h"

/* Parse text[0..len) from an exact-size copy with the given integer range. */
static twin_err parse_range(const char *text, size_t len, int64_t lo, int64_t hi, cJSON **out,
                            twin_error *e)
{
	char *copy = malloc(len ? len : 1);
	twin_err rc;

	assert_non_null(copy);
	memcpy(copy, text, len);
	rc = twin_json_parse(copy, len, lo, hi, out, e);
	free(copy);
	return rc;
}

static twin_err parse_len(const char *text, size_t len, cJSON **out, twin_error *e)
{
	return parse_range(text, len, TWIN_DEFAULT_INT_MIN, TWIN_DEFAULT_INT_MAX, out, e);
}

static cJSON *accept_len(const char *text, size_t len)
{
	twin_error e = {0};
	cJSON *out = NULL;

	if (parse_len(text, len, &out, &e) != TWIN_OK)
		fail_msg("rejected: %.*s (%s)", (int)len, text, e.message);
	assert_non_null(out);
	return out;
}

/* Parse text and return the error message; fails the test if it is accepted. */
static const char *reject_len(const char *text, size_t len)
{
	static twin_error e;
	cJSON *out = (cJSON *)&e; /* must be reset to NULL */
	twin_err rc;

	memset(&e, 0, sizeof(e));
	rc = parse_len(text, len, &out, &e);
	if (rc != TWIN_E_INVALID)
		fail_msg("not rejected as invalid (rc %d): %.*s", rc, (int)len, text);
	assert_null(out);
	assert_int_equal(e.err, TWIN_E_INVALID);
	assert_non_null(strstr(e.message, "Invalid JSON at byte "));
	return e.message;
}

#define ACCEPT(lit) accept_len(lit, sizeof(lit) - 1)
#define REJECT(lit) reject_len(lit, sizeof(lit) - 1)

static void assert_contains(const char *haystack, const char *needle)
{
	if (strstr(haystack, needle) == NULL)
		fail_msg("'%s' does not contain '%s'", haystack, needle);
}

/* The JSON string literal lit decodes to want[0..want_len). */
static void assert_string_decodes(const char *lit, size_t len, const char *want, size_t want_len)
{
	cJSON *v = accept_len(lit, len);

	assert_true(cJSON_IsString(v));
	assert_int_equal(strlen(v->valuestring), want_len);
	assert_memory_equal(v->valuestring, want, want_len);
	cJSON_Delete(v);
}

#define DECODES(lit, want) assert_string_decodes(lit, sizeof(lit) - 1, want, sizeof(want) - 1)

static void test_json_all_value_types_parsed(void **state)
{
	cJSON *v = ACCEPT("{\"s\":\"x\",\"n\":-1.5,\"i\":42,\"t\":true,\"f\":false,\"z\":null,"
	                  "\"a\":[1,{}],\"o\":{\"k\":[]}}");
	cJSON *a;

	(void)state;
	assert_true(cJSON_IsObject(v));
	assert_string_equal(cJSON_GetObjectItemCaseSensitive(v, "s")->valuestring, "x");
	assert_true(cJSON_GetObjectItemCaseSensitive(v, "n")->valuedouble == -1.5);
	assert_true(cJSON_GetObjectItemCaseSensitive(v, "i")->valuedouble == 42);
	assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "t")));
	assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(v, "f")));
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(v, "z")));
	a = cJSON_GetObjectItemCaseSensitive(v, "a");
	assert_int_equal(cJSON_GetArraySize(a), 2);
	assert_true(cJSON_IsObject(cJSON_GetArrayItem(a, 1)));
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(v, "o")), 1);
	assert_int_equal(cJSON_GetArraySize(v), 8);
	cJSON_Delete(v);
}

static void test_json_member_order_preserved(void **state)
{
	cJSON *v = ACCEPT("{\"b\":1,\"a\":2,\"c\":3}");
	char *text = cJSON_PrintUnformatted(v);

	(void)state;
	assert_string_equal(text, "{\"b\":1,\"a\":2,\"c\":3}");
	cJSON_free(text);
	cJSON_Delete(v);
}

static void test_json_scalar_top_level_accepted(void **state)
{
	(void)state;
	cJSON_Delete(ACCEPT("1"));
	cJSON_Delete(ACCEPT("\"x\""));
	cJSON_Delete(ACCEPT("null"));
	cJSON_Delete(ACCEPT("[]"));
}

static void test_json_surrounding_whitespace_accepted(void **state)
{
	(void)state;
	cJSON_Delete(ACCEPT(" \t\r\n{ \"a\" : [ 1 , 2 ] , \"b\" :\n{ } }\r\n\t "));
	cJSON_Delete(ACCEPT("\n7\n"));
}

static void test_json_non_json_whitespace_rejected(void **state)
{
	(void)state;
	REJECT("\f1");
	REJECT("\v1");
	REJECT("1\f");
	REJECT("\xC2\xA0"
	       "1");              /* U+00A0 */
	REJECT("\xEF\xBB\xBF{}"); /* byte order mark */
	REJECT("[1,\xC2\xA0"
	       "2]");
}

static void test_json_empty_input_rejected(void **state)
{
	(void)state;
	assert_contains(REJECT(""), "byte 0: unexpected end of input");
	assert_contains(REJECT("   "), "byte 3: unexpected end of input");
}

static void test_json_trailing_data_rejected(void **state)
{
	(void)state;
	assert_contains(REJECT("{} x"), "byte 3: trailing data");
	REJECT("1 2");
	REJECT("{}{}");
	REJECT("[]]");
	REJECT("truex");
	REJECT("\"a\"\"b\"");
	REJECT("1,");
	REJECT("{}\0");
}

static void test_json_structural_errors_rejected(void **state)
{
	(void)state;
	assert_contains(REJECT("{\"a\" 1}"), "byte 5: expected ':'");
	assert_contains(REJECT("{\"a\":1 \"b\":2}"), "expected ',' or '}'");
	assert_contains(REJECT("[1 2]"), "expected ',' or ']'");
	assert_contains(REJECT("{1:2}"), "expected a string key");
	REJECT("{'a':1}");
	REJECT("{a:1}");
	REJECT("[1,]");
	REJECT("{\"a\":1,}");
	REJECT("[,1]");
	REJECT("{,}");
	REJECT("{\"a\"}");
	REJECT("{\"a\":}");
	REJECT("[");
	REJECT("{");
	REJECT("[1");
	REJECT("{\"a\":1");
	REJECT("]");
	REJECT("}");
	REJECT(":");
	REJECT("/* c */ 1");
}

static void test_json_literals_exact(void **state)
{
	cJSON *v = ACCEPT("[true,false,null]");

	(void)state;
	assert_true(cJSON_IsTrue(cJSON_GetArrayItem(v, 0)));
	assert_true(cJSON_IsFalse(cJSON_GetArrayItem(v, 1)));
	assert_true(cJSON_IsNull(cJSON_GetArrayItem(v, 2)));
	cJSON_Delete(v);
	REJECT("True");
	REJECT("tru");
	REJECT("nul");
	REJECT("fals");
	REJECT("NULL");
	REJECT("[nulll]");
	REJECT("trux");
	REJECT("[nul1]");
	REJECT("falsE");
	REJECT("undefined");
}

static void test_json_duplicate_key_rejected(void **state)
{
	(void)state;
	assert_contains(REJECT("{\"a\":1,\"b\":2,\"a\":3}"), "byte 13: duplicate key 'a'");
	REJECT("{\"a\":1,\"a\":1}");
	REJECT("{\"x\":{\"a\":null,\"a\":null}}");
	REJECT("[{\"\":1,\"\":2}]");
}

static void test_json_duplicate_key_found_after_decoding_escapes(void **state)
{
	(void)state;
	assert_contains(REJECT("{\"ab\":1,\"a\\u0062\":2}"), "duplicate key 'ab'");
	REJECT("{\"\\u00e9\":1,\"\xC3\xA9\":2}");
}

static void test_json_same_key_in_different_objects_accepted(void **state)
{
	(void)state;
	cJSON_Delete(ACCEPT("{\"a\":{\"a\":{\"a\":1}},\"b\":[{\"a\":1},{\"a\":2}]}"));
}

/* {"k0":0,"k1":1,...} with n members, then extra appended before the '}'. */
static char *object_with_keys(size_t n, const char *extra)
{
	size_t cap = n * 24 + strlen(extra) + 8, o = 0;
	char *buf = malloc(cap);
	size_t i;

	assert_non_null(buf);
	buf[o++] = '{';
	for (i = 0; i < n; i++)
		o += (size_t)snprintf(buf + o, cap - o, "%s\"k%zu\":%zu", i ? "," : "", i, i);
	o += (size_t)snprintf(buf + o, cap - o, "%s}", extra);
	return buf;
}

static void test_json_keys_compared_case_sensitively(void **state)
{
	cJSON *v = ACCEPT("{\"a\":1,\"A\":2,\"\xC3\xA9\":3,\"\xC3\x89\":4}");

	(void)state;
	assert_int_equal(cJSON_GetArraySize(v), 4);
	cJSON_Delete(v);
}

static void test_json_large_object_keys_compared_case_sensitively(void **state)
{
	char *text = object_with_keys(40, ",\"K5\":0,\"k\xC3\xA9\":1,\"k\xC3\x89\":2");
	cJSON *v = accept_len(text, strlen(text));

	(void)state;
	assert_int_equal(cJSON_GetArraySize(v), 43);
	cJSON_Delete(v);
	free(text);
}

static void test_json_large_object_distinct_keys_accepted(void **state)
{
	char *text = object_with_keys(20000, "");
	cJSON *v = accept_len(text, strlen(text));

	(void)state;
	assert_int_equal(cJSON_GetArraySize(v), 20000);
	assert_true(cJSON_GetObjectItemCaseSensitive(v, "k19999")->valuedouble == 19999);
	cJSON_Delete(v);
	free(text);
}

static void test_json_large_object_duplicate_detected(void **state)
{
	char *text = object_with_keys(1000, ",\"k500\":0");
	char want[64];

	(void)state;
	snprintf(want, sizeof(want), "byte %zu: duplicate key 'k500'", strlen(text) - 9);
	assert_contains(reject_len(text, strlen(text)), want);
	free(text);
	/* Just past the linear-scan size, and a duplicate of the very first key. */
	text = object_with_keys(17, ",\"k0\":0");
	assert_contains(reject_len(text, strlen(text)), "duplicate key 'k0'");
	free(text);
	text = object_with_keys(16, ",\"k15\":0");
	assert_contains(reject_len(text, strlen(text)), "duplicate key 'k15'");
	free(text);
}

static void test_json_large_object_first_duplicate_reported(void **state)
{
	/* k900 repeats before k3 does: the earlier repetition is named. */
	char *text = object_with_keys(1000, ",\"k900\":0,\"k3\":0,\"k900\":0");

	(void)state;
	assert_contains(reject_len(text, strlen(text)), "duplicate key 'k900'");
	free(text);
}

static void test_json_duplicate_key_message_truncated_on_code_point(void **state)
{
	char key[400] = "a", text[1000];
	const char *msg;
	int len;

	(void)state;
	for (int i = 0; i < 100; i++)
		strcat(key, "\xE2\x82\xAC"); /* U+20AC, 3 bytes: 64 falls inside one */
	len = snprintf(text, sizeof(text), "{\"%s\":1,\"%s\":2}", key, key);
	msg = reject_len(text, (size_t)len);
	assert_contains(msg, "duplicate key 'a\xE2\x82\xAC");
	assert_contains(msg, "...'");
	assert_true(twin_utf8_valid(msg, strlen(msg)));
}

static void test_json_invalid_utf8_rejected(void **state)
{
	(void)state;
	assert_contains(REJECT("\"ab\x80\""), "byte 3: invalid UTF-8"); /* lone continuation */
	REJECT("\"\xBF\"");
	REJECT("\"\xC0\xAF\"");                 /* overlong '/' */
	REJECT("\"\xC1\xBF\"");                 /* overlong */
	REJECT("\"\xE0\x80\xAF\"");             /* overlong 3-byte */
	REJECT("\"\xE0\x9F\xBF\"");             /* overlong U+07FF */
	REJECT("\"\xF0\x80\x80\xAF\"");         /* overlong 4-byte */
	REJECT("\"\xF0\x8F\xBF\xBF\"");         /* overlong U+FFFF */
	REJECT("\"\xED\xA0\x80\"");             /* U+D800 encoded */
	REJECT("\"\xED\xBF\xBF\"");             /* U+DFFF encoded */
	REJECT("\"\xED\xA0\xBD\xED\xB8\x80\""); /* CESU-8 pair */
	REJECT("\"\xF4\x90\x80\x80\"");         /* U+110000 */
	REJECT("\"\xF5\x80\x80\x80\"");
	REJECT("\"\xF8\x88\x80\x80\x80\"");
	REJECT("\"\xFE\"");
	REJECT("\"\xFF\"");
	REJECT("\"\xC3\""); /* truncated before the quote */
	REJECT("\"\xE2\x82\"");
	REJECT("\"\xF0\x9F\x98\"");
	REJECT("\"\xC3\x28\""); /* bad continuation */
	REJECT("\"\xE2\x28\xA1\"");
	REJECT("\"\xE2\x82\x28\"");
	REJECT("\"\xC3"); /* truncated at end of input */
	REJECT("\"\xF0\x9F\x98");
	REJECT("\xC3\xA9"); /* outside any string */
	REJECT("[1]\xC3\xA9");
}

static void test_json_invalid_utf8_in_key_rejected(void **state)
{
	(void)state;
	assert_contains(REJECT("{\"k\xC0\xAF\":1}"), "byte 3: invalid UTF-8");
	REJECT("{\"\xED\xA0\x80\":1}");
}

static void test_json_valid_utf8_accepted(void **state)
{
	(void)state;
	DECODES("\"\xC2\x80\"", "\xC2\x80");                 /* U+0080 */
	DECODES("\"\xDF\xBF\"", "\xDF\xBF");                 /* U+07FF */
	DECODES("\"\xE0\xA0\x80\"", "\xE0\xA0\x80");         /* U+0800 */
	DECODES("\"\xED\x9F\xBF\"", "\xED\x9F\xBF");         /* U+D7FF */
	DECODES("\"\xEE\x80\x80\"", "\xEE\x80\x80");         /* U+E000 */
	DECODES("\"\xEF\xBF\xBF\"", "\xEF\xBF\xBF");         /* U+FFFF */
	DECODES("\"\xF0\x90\x80\x80\"", "\xF0\x90\x80\x80"); /* U+10000 */
	DECODES("\"\xF4\x8F\xBF\xBF\"", "\xF4\x8F\xBF\xBF"); /* U+10FFFF */
	DECODES("\"\x7F\"", "\x7F");                         /* DEL is not a control char in JSON */
	DECODES("\"h\xC3\xA9llo \xF0\x9F\x98\x80\"", "h\xC3\xA9llo \xF0\x9F\x98\x80");
}

static void test_utf8_valid_follows_the_same_rule(void **state)
{
	(void)state;
	assert_true(twin_utf8_valid("", 0));
	assert_true(twin_utf8_valid("abc", 3));
	assert_true(twin_utf8_valid("\xF4\x8F\xBF\xBF", 4));
	assert_true(twin_utf8_valid("\xED\x9F\xBF", 3));
	assert_true(twin_utf8_valid("a\xC3\xA9", 3));
	assert_false(twin_utf8_valid("\x80", 1));
	assert_false(twin_utf8_valid("\xC0\xAF", 2));
	assert_false(twin_utf8_valid("\xE0\x9F\xBF", 3));
	assert_false(twin_utf8_valid("\xED\xA0\x80", 3));
	assert_false(twin_utf8_valid("\xF4\x90\x80\x80", 4));
	assert_false(twin_utf8_valid("\xF5\x80\x80\x80", 4));
	assert_false(twin_utf8_valid("\xFF", 1));
	/* Truncated by len although the bytes after it would complete it. */
	assert_false(twin_utf8_valid("a\xC3\xA9", 2));
	assert_false(twin_utf8_valid("\xF0\x9F\x98\x80", 3));
}

static void test_json_lone_high_surrogate_rejected(void **state)
{
	(void)state;
	assert_contains(REJECT("\"ab\\uD800\""), "byte 3: lone high surrogate");
	REJECT("\"\\uDBFF\"");
	REJECT("\"\\uD800x\"");
	REJECT("\"\\uD800\\n\"");
	REJECT("\"\\uD800\\u0041\"");
	REJECT("\"\\uD800\\uD800\"");
	REJECT("\"\\uD800\\uE000\"");
	REJECT("\"\\uD800\\uDC0\"");
	REJECT("{\"\\uD83D\":1}");
}

static void test_json_lone_low_surrogate_rejected(void **state)
{
	(void)state;
	assert_contains(REJECT("\"\\uDC00\""), "byte 1: lone low surrogate");
	REJECT("\"\\uDFFF\"");
	REJECT("\"\\uDE00\\uD83D\""); /* pair in the wrong order */
	REJECT("{\"\\uDE00\":1}");
}

static void test_json_surrogate_pair_decoded(void **state)
{
	(void)state;
	DECODES("\"\\uD83D\\uDE00\"", "\xF0\x9F\x98\x80"); /* U+1F600 */
	DECODES("\"\\ud800\\udc00\"", "\xF0\x90\x80\x80"); /* U+10000 */
	DECODES("\"\\uDBFF\\uDFFF\"", "\xF4\x8F\xBF\xBF"); /* U+10FFFF */
	DECODES("\"a\\uD83D\\uDE00b\"", "a\xF0\x9F\x98\x80"
	                                "b");
}

static void test_json_nul_escape_rejected(void **state)
{
	(void)state;
	assert_contains(REJECT("\"ab\\u0000cd\""), "byte 3: \\u0000 is not allowed");
	REJECT("{\"a\\u0000b\":1}");
	REJECT("{\"a\\u0000\":1,\"a\":2}");
	REJECT("[\"\\u0000\"]");
}

static void test_json_raw_nul_byte_rejected(void **state)
{
	(void)state;
	assert_contains(REJECT("\"a\0b\""), "byte 2: control character in string");
	REJECT("{\"a\0\":1}");
}

static void test_json_escapes_decoded(void **state)
{
	(void)state;
	DECODES("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t");
	DECODES("\"\\u0041\\u00e9\\u20AC\\uFFFF\\u0001\"", "A\xC3\xA9\xE2\x82\xAC\xEF\xBF\xBF\x01");
	DECODES("\"\\u007f\\u0080\\u07FF\\u0800\"", "\x7F\xC2\x80\xDF\xBF\xE0\xA0\x80");
	DECODES("\"\"", "");
}

static void test_json_key_escapes_decoded(void **state)
{
	cJSON *v = ACCEPT("{\"a\\nb\\u00e9\":1}");

	(void)state;
	assert_string_equal(v->child->string, "a\nb\xC3\xA9");
	cJSON_Delete(v);
}

static void test_json_invalid_escape_rejected(void **state)
{
	(void)state;
	assert_contains(REJECT("\"a\\x41\""), "byte 2: invalid escape");
	REJECT("\"\\'\"");
	REJECT("\"\\a\"");
	REJECT("\"\\U0041\"");
	REJECT("\"\\0\"");
	REJECT("\"\\ \"");
	REJECT("\"\\\xC3\xA9\"");
	REJECT("\"\\u41\"");
	REJECT("\"\\u004\"");
	REJECT("\"\\uGGGG\"");
	REJECT("\"\\u 041\"");
	REJECT("\"\\u+041\"");
	REJECT("\"\\");
	REJECT("\"\\\"");
	REJECT("\"\\u00");
}

static void test_json_control_char_in_string_rejected(void **state)
{
	(void)state;
	assert_contains(REJECT("\"a\x01\""), "byte 2: control character in string");
	REJECT("\"\n\"");
	REJECT("\"\t\"");
	REJECT("\"\r\"");
	REJECT("\"\x1F\"");
	REJECT("{\"a\nb\":1}");
}

static void test_json_unterminated_string_rejected(void **state)
{
	(void)state;
	assert_contains(REJECT("[\"abc"), "byte 1: unterminated string");
	REJECT("\"");
	REJECT("{\"a");
	REJECT("{\"a\":\"b}");
}

static void test_json_integer_at_max_accepted(void **state)
{
	cJSON *v = ACCEPT("4503599627370495");

	(void)state;
	assert_true(v->valuedouble == 4503599627370495.0);
	cJSON_Delete(v);
}

static void test_json_integer_one_over_max_rejected(void **state)
{
	(void)state;
	assert_contains(REJECT("[4503599627370496]"),
	                "byte 1: integer out of range -4503599627370496..4503599627370495");
	REJECT("9007199254740993");
}

static void test_json_integer_at_min_accepted(void **state)
{
	cJSON *v = ACCEPT("-4503599627370496");

	(void)state;
	assert_true(v->valuedouble == -4503599627370496.0);
	cJSON_Delete(v);
}

static void test_json_integer_one_under_min_rejected(void **state)
{
	(void)state;
	assert_contains(REJECT("-4503599627370497"), "integer out of range");
}

static void test_json_integer_overflowing_int64_rejected(void **state)
{
	static const char *const bad[] = {
	        "9223372036854775808",
	        "-9223372036854775809",
	        "18446744073709551616",
	        "18446744073709551626",
	        "99999999999999999999999999999999",
	        "-99999999999999999999999999999999",
	};
	twin_error e;
	cJSON *v = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&e, 0, sizeof(e));
		if (parse_range(bad[i], strlen(bad[i]), INT64_MIN, INT64_MAX, &v, &e) !=
		    TWIN_E_INVALID)
			fail_msg("accepted %s", bad[i]);
		assert_null(v);
		assert_contains(e.message, "integer out of range");
	}
	assert_int_equal(parse_range("9223372036854775807", 19, INT64_MIN, INT64_MAX, &v, &e),
	                 TWIN_OK);
	cJSON_Delete(v);
	assert_int_equal(parse_range("-9223372036854775808", 20, INT64_MIN, INT64_MAX, &v, &e),
	                 TWIN_OK);
	cJSON_Delete(v);
}

static void test_json_integer_range_is_configurable(void **state)
{
	twin_error e;
	cJSON *v = NULL;

	(void)state;
	assert_int_equal(parse_range("[0,10]", 6, 0, 10, &v, &e), TWIN_OK);
	cJSON_Delete(v);
	assert_int_equal(parse_range("11", 2, 0, 10, &v, &e), TWIN_E_INVALID);
	assert_int_equal(parse_range("-1", 2, 0, 10, &v, &e), TWIN_E_INVALID);
	assert_contains(e.message, "integer out of range 0..10");
	/* Only integer literals are range-checked. */
	assert_int_equal(parse_range("[-1.0,11e0,1E1]", 15, 0, 10, &v, &e), TWIN_OK);
	cJSON_Delete(v);
}

static void test_json_float_beyond_int_range_accepted(void **state)
{
	cJSON *v = ACCEPT(
	        "[4503599627370496.0,1e300,-1E+300,4503599627370496e0,1.7976931348623157e308]");

	(void)state;
	assert_true(cJSON_GetArrayItem(v, 0)->valuedouble == 4503599627370496.0);
	assert_true(cJSON_GetArrayItem(v, 1)->valuedouble == 1e300);
	assert_true(cJSON_GetArrayItem(v, 2)->valuedouble == -1e300);
	assert_true(cJSON_GetArrayItem(v, 3)->valuedouble == 4503599627370496.0);
	assert_true(cJSON_GetArrayItem(v, 4)->valuedouble == 1.7976931348623157e308);
	cJSON_Delete(v);
}

static void test_json_numbers_decoded(void **state)
{
	cJSON *v = ACCEPT("[0,-0,0.5,-0.25,1e2,1E-2,2.5e+1,123456789,-7,0e0]");
	static const double want[] = {0, 0, 0.5, -0.25, 100, 0.01, 25, 123456789, -7, 0};

	(void)state;
	for (int i = 0; i < 10; i++)
		assert_true(cJSON_GetArrayItem(v, i)->valuedouble == want[i]);
	cJSON_Delete(v);
}

static void test_json_long_float_literal_parsed(void **state)
{
	char text[400] = "0.";
	cJSON *v;

	(void)state;
	memset(text + 2, '0', 300);
	memcpy(text + 302, "15", 2);
	v = accept_len(text, 304);
	assert_true(v->valuedouble > 1.4e-301 && v->valuedouble < 1.6e-301);
	cJSON_Delete(v);
}

static void test_json_non_finite_rejected(void **state)
{
	char text[400];

	(void)state;
	assert_contains(REJECT("[1e400]"), "byte 1: number is not finite");
	REJECT("-1e400");
	REJECT("1.8e308");
	REJECT("1e99999999999999999999");
	memset(text, '9', 320);
	memcpy(text + 320, ".0", 2);
	reject_len(text, 322);
}

static void test_json_tiny_float_accepted_as_zero(void **state)
{
	cJSON *v = ACCEPT("1e-400");

	(void)state;
	assert_true(v->valuedouble == 0);
	cJSON_Delete(v);
}

static void test_json_leading_zero_rejected(void **state)
{
	(void)state;
	assert_contains(REJECT("[01]"), "byte 1: leading zero in number");
	REJECT("00");
	REJECT("-01");
	REJECT("00.5");
	REJECT("012e3");
}

static void test_json_number_grammar_enforced(void **state)
{
	(void)state;
	REJECT("+1");
	REJECT("-");
	REJECT("- 1");
	REJECT(".5");
	REJECT("1.");
	REJECT("1.e5");
	REJECT("1e");
	REJECT("1e+");
	REJECT("1e-");
	REJECT("1E+-1");
	REJECT("0x10");
	REJECT("0X1F");
	REJECT("1_000");
	REJECT("--1");
	REJECT("1.5.5");
	REJECT("1e5e5");
	REJECT("[1 .5]");
}

static void test_json_nan_and_infinity_rejected(void **state)
{
	(void)state;
	REJECT("NaN");
	REJECT("nan");
	REJECT("Infinity");
	REJECT("-Infinity");
	REJECT("inf");
	REJECT("[-inf]");
}

/* depth levels of arrays/objects alternating, innermost holding 1. */
static char *nested(int depth, size_t *len)
{
	char *buf = malloc((size_t)depth * 6 + 2);
	size_t o = 0;

	assert_non_null(buf);
	for (int i = 0; i < depth; i++) {
		if (i % 2)
			buf[o++] = '[';
		else
			o += (size_t)sprintf(buf + o, "{\"a\":");
	}
	buf[o++] = '1';
	for (int i = depth - 1; i >= 0; i--)
		buf[o++] = i % 2 ? ']' : '}';
	*len = o;
	return buf;
}

static void test_json_nesting_limit(void **state)
{
	size_t len;
	char *text = nested(TWIN_JSON_MAX_NESTING, &len);
	char deep[TWIN_JSON_MAX_NESTING + 2];

	(void)state;
	cJSON_Delete(accept_len(text, len));
	free(text);
	text = nested(TWIN_JSON_MAX_NESTING + 1, &len);
	assert_contains(reject_len(text, len), "nesting deeper than 64 levels");
	free(text);
	/* The offset is the bracket that opens level 65. */
	memset(deep, '[', sizeof(deep));
	assert_contains(reject_len(deep, sizeof(deep)), "byte 64: nesting");
	/* Deeply nested hostile input is cut off, not recursed into. */
	text = malloc(1000000);
	assert_non_null(text);
	memset(text, '[', 1000000);
	reject_len(text, 1000000);
	free(text);
}

static void test_json_not_nul_terminated_input_respects_len(void **state)
{
	const char buf[] = "123]";
	cJSON *v;

	(void)state;
	v = accept_len(buf, 2);
	assert_true(v->valuedouble == 12);
	cJSON_Delete(v);
	cJSON_Delete(accept_len("true!", 4));
	cJSON_Delete(accept_len("\"ab\"cd", 4));
	cJSON_Delete(accept_len("{\"a\":[1]}xx", 9));
	cJSON_Delete(accept_len("1.5e3 ", 5));
	reject_len("123", 0);
	reject_len("true", 3);
	reject_len("\"ab\"", 3);
	reject_len("\"a\\\"", 3);
	reject_len("\"\\u0041\"", 6);
	reject_len("\"\\uD83D\\uDE00\"", 12);
	reject_len("\"\xC3\xA9\"", 2);
	reject_len("{\"a\":1}", 6);
	reject_len("[1,2]", 4);
	reject_len("-1", 1);
	reject_len("1.5", 2);
	reject_len("1e5", 2);
}

static void test_json_error_message_contains_byte_offset(void **state)
{
	(void)state;
	assert_contains(REJECT("{\"a\":1,\"b\":2,\"c\":tru}"), "Invalid JSON at byte 17: ");
	assert_contains(REJECT("[1,2,\"x\",\"\\q\"]"), "Invalid JSON at byte 10: invalid escape.");
	assert_contains(REJECT("\n\n  @"), "Invalid JSON at byte 4: expected a value, found '@'.");
	assert_contains(REJECT("[\x01]"), "byte 1: expected a value, found byte 0x01");
}

static void test_json_error_sets_out_to_null_and_accepts_null_error(void **state)
{
	int sentinel;
	cJSON *v = (cJSON *)&sentinel;

	(void)state;
	assert_int_equal(twin_json_parse("[1,", 3, 0, 10, &v, NULL), TWIN_E_INVALID);
	assert_null(v);
	assert_int_equal(twin_json_parse("[1]", 3, 0, 10, &v, NULL), TWIN_OK);
	cJSON_Delete(v);
}

static void test_json_large_array_parsed(void **state)
{
	size_t n = 200000, o = 0;
	char *text = malloc(n * 2 + 1);
	cJSON *v;

	(void)state;
	assert_non_null(text);
	text[o++] = '[';
	for (size_t i = 0; i < n; i++) {
		text[o++] = '7';
		text[o++] = ',';
	}
	text[o - 1] = ']';
	v = accept_len(text, o);
	assert_int_equal(cJSON_GetArraySize(v), (int)n);
	cJSON_Delete(v);
	free(text);
}

/* cJSON allocation hooks that fail once the budget is spent. */
static long alloc_budget;

static void *failing_malloc(size_t n)
{
	if (alloc_budget-- <= 0)
		return NULL;
	return malloc(n);
}

/* Every allocation failure gives TWIN_E_NOMEM, *out NULL and (checked by
 * LeakSanitizer / valgrind) no leak, until the budget is large enough. */
static void test_json_out_of_memory_reported_without_leaks(void **state)
{
	static const char *const docs[] = {
	        "{\"a\":[1,2.5,\"x\",true,null,{\"b\":\"c\"}],\"d\":{}}",
	        /* longer than the parser's local buffer for strtod */
	        "[1e0000000000000000000000000000000000000000000000000000000000000000000001]",
	};
	cJSON_Hooks hooks = {failing_malloc, free};
	char *big = object_with_keys(40, ",\"k39\":1");
	char *big_ok = object_with_keys(40, "");
	twin_error e;
	cJSON *v;
	twin_err rc;

	(void)state;
	cJSON_InitHooks(&hooks);
	for (int d = 0; d < 4; d++) {
		const char *doc = d < 2 ? docs[d] : d == 2 ? big : big_ok;
		twin_err want = d == 2 ? TWIN_E_INVALID : TWIN_OK;

		for (alloc_budget = 0, rc = TWIN_E_NOMEM; rc == TWIN_E_NOMEM;) {
			long budget = alloc_budget;

			memset(&e, 0, sizeof(e));
			v = (cJSON *)&e;
			rc = twin_json_parse(doc, strlen(doc), TWIN_DEFAULT_INT_MIN,
			                     TWIN_DEFAULT_INT_MAX, &v, &e);
			if (rc == TWIN_E_NOMEM) {
				assert_null(v);
				assert_int_equal(e.err, TWIN_E_NOMEM);
			}
			cJSON_Delete(v);
			alloc_budget = budget + 1;
		}
		assert_int_equal(rc, want);
	}
	cJSON_InitHooks(NULL);
	free(big);
	free(big_ok);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_json_all_value_types_parsed),
	        cmocka_unit_test(test_json_member_order_preserved),
	        cmocka_unit_test(test_json_scalar_top_level_accepted),
	        cmocka_unit_test(test_json_surrounding_whitespace_accepted),
	        cmocka_unit_test(test_json_non_json_whitespace_rejected),
	        cmocka_unit_test(test_json_empty_input_rejected),
	        cmocka_unit_test(test_json_trailing_data_rejected),
	        cmocka_unit_test(test_json_structural_errors_rejected),
	        cmocka_unit_test(test_json_literals_exact),
	        cmocka_unit_test(test_json_duplicate_key_rejected),
	        cmocka_unit_test(test_json_duplicate_key_found_after_decoding_escapes),
	        cmocka_unit_test(test_json_same_key_in_different_objects_accepted),
	        cmocka_unit_test(test_json_keys_compared_case_sensitively),
	        cmocka_unit_test(test_json_large_object_keys_compared_case_sensitively),
	        cmocka_unit_test(test_json_large_object_distinct_keys_accepted),
	        cmocka_unit_test(test_json_large_object_duplicate_detected),
	        cmocka_unit_test(test_json_large_object_first_duplicate_reported),
	        cmocka_unit_test(test_json_duplicate_key_message_truncated_on_code_point),
	        cmocka_unit_test(test_json_invalid_utf8_rejected),
	        cmocka_unit_test(test_json_invalid_utf8_in_key_rejected),
	        cmocka_unit_test(test_json_valid_utf8_accepted),
	        cmocka_unit_test(test_utf8_valid_follows_the_same_rule),
	        cmocka_unit_test(test_json_lone_high_surrogate_rejected),
	        cmocka_unit_test(test_json_lone_low_surrogate_rejected),
	        cmocka_unit_test(test_json_surrogate_pair_decoded),
	        cmocka_unit_test(test_json_nul_escape_rejected),
	        cmocka_unit_test(test_json_raw_nul_byte_rejected),
	        cmocka_unit_test(test_json_escapes_decoded),
	        cmocka_unit_test(test_json_key_escapes_decoded),
	        cmocka_unit_test(test_json_invalid_escape_rejected),
	        cmocka_unit_test(test_json_control_char_in_string_rejected),
	        cmocka_unit_test(test_json_unterminated_string_rejected),
	        cmocka_unit_test(test_json_integer_at_max_accepted),
	        cmocka_unit_test(test_json_integer_one_over_max_rejected),
	        cmocka_unit_test(test_json_integer_at_min_accepted),
	        cmocka_unit_test(test_json_integer_one_under_min_rejected),
	        cmocka_unit_test(test_json_integer_overflowing_int64_rejected),
	        cmocka_unit_test(test_json_integer_range_is_configurable),
	        cmocka_unit_test(test_json_float_beyond_int_range_accepted),
	        cmocka_unit_test(test_json_numbers_decoded),
	        cmocka_unit_test(test_json_long_float_literal_parsed),
	        cmocka_unit_test(test_json_non_finite_rejected),
	        cmocka_unit_test(test_json_tiny_float_accepted_as_zero),
	        cmocka_unit_test(test_json_leading_zero_rejected),
	        cmocka_unit_test(test_json_number_grammar_enforced),
	        cmocka_unit_test(test_json_nan_and_infinity_rejected),
	        cmocka_unit_test(test_json_nesting_limit),
	        cmocka_unit_test(test_json_not_nul_terminated_input_respects_len),
	        cmocka_unit_test(test_json_error_message_contains_byte_offset),
	        cmocka_unit_test(test_json_error_sets_out_to_null_and_accepts_null_error),
	        cmocka_unit_test(test_json_large_array_parsed),
	        cmocka_unit_test(test_json_out_of_memory_reported_without_leaks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
