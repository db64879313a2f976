/*
 * test_error.c - status codes and the error body (PROTOCOL.md §2.4, §7).
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"
#include "twin/error.h"
#include "twin/json.h"

static void test_error_status_and_code_table(void **state)
{
	static const struct {
		twin_err err;
		int status, code;
	} want[] = {
	        {TWIN_OK, 200, 0},
	        {TWIN_E_INVALID, 400, 400004},
	        {TWIN_E_SECTION_SIZE, 403, 403100},
	        {TWIN_E_NOT_FOUND, 404, 404001},
	        {TWIN_E_EXISTS, 409, 409001},
	        {TWIN_E_PRECONDITION, 412, 412001},
	        {TWIN_E_NOMEM, 500, 500001},
	        {TWIN_E_STORAGE, 500, 500001},
	        {TWIN_E_UNAVAILABLE, 503, 503001},
	        {TWIN_E_UNAUTHORIZED, 401, 401002},
	        {TWIN_E_TOO_LARGE, 413, 413002},
	        {TWIN_E_THROTTLED, 429, 429001},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(twin_err_status(want[i].err), want[i].status);
		assert_int_equal(twin_err_code(want[i].err), want[i].code);
	}
}

static void test_error_code_starts_with_status(void **state)
{
	(void)state;
	/* Six-digit codes begin with their status; generic ones are the status. */
	for (int e = TWIN_E_INVALID; e <= TWIN_E_UNAVAILABLE; e++) {
		int code = twin_err_code((twin_err)e), status = twin_err_status((twin_err)e);

		assert_true(code / 1000 == status || code == status);
	}
}

static void test_error_set_formats_and_tolerates_null(void **state)
{
	twin_error err;

	(void)state;
	assert_int_equal(twin_error_set(&err, TWIN_E_INVALID, "bad '%s' %d", "k", 7),
	                 TWIN_E_INVALID);
	assert_int_equal(err.err, TWIN_E_INVALID);
	assert_string_equal(err.message, "bad 'k' 7");
	assert_int_equal(twin_error_set(NULL, TWIN_E_EXISTS, "x"), TWIN_E_EXISTS);
}

/* Messages go into JSON error bodies: a key quoted with "%.64s", or the cut
 * at TWIN_ERROR_MESSAGE_MAX, must not leave half a character behind (found
 * by tests/fuzz/fuzz_patch). */
static void test_error_message_never_splits_a_utf8_character(void **state)
{
	char key[80], path[400];
	twin_error e;

	(void)state;
	memset(key, 'a', 63);
	strcpy(key + 63, "\xc3\xa9.");
	twin_error_set(&e, TWIN_E_INVALID, "Invalid property name '%.64s'.", key);
	assert_string_equal(e.message,
	                    "Invalid property name '"
	                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'.");
	for (size_t i = 0; i + 2 < sizeof(path); i += 2)
		memcpy(path + i, "\xc3\xa9", 2);
	path[sizeof(path) - 2] = '\0';
	twin_error_set(&e, TWIN_E_INVALID, "xy%s", path); /* cut inside a character */
	assert_true(twin_utf8_valid(e.message, strlen(e.message)));
	assert_int_equal(strlen(e.message), TWIN_ERROR_MESSAGE_MAX - 2);
}

static void test_error_body_shape(void **state)
{
	twin_error err;
	char *text;
	cJSON *body, *tid;

	(void)state;
	twin_error_set(&err, TWIN_E_INVALID, "Invalid property name '$x'.");
	text = twin_error_body(&err, TEST_T0);
	assert_non_null(text);
	body = test_json(text);
	assert_int_equal(cJSON_GetObjectItem(body, "errorCode")->valueint, 400004);
	assert_string_equal(cJSON_GetObjectItem(body, "message")->valuestring,
	                    "Invalid property name '$x'.");
	assert_string_equal(cJSON_GetObjectItem(body, "timestampUtc")->valuestring,
	                    "2024-05-01T08:15:30.1234567Z");
	tid = cJSON_GetObjectItem(body, "trackingId");
	assert_int_equal(strlen(tid->valuestring), 32);
	for (int i = 0; i < 32; i++)
		assert_true(isxdigit((unsigned char)tid->valuestring[i]) &&
		            !isupper((unsigned char)tid->valuestring[i]));
	assert_int_equal(cJSON_GetArraySize(body), 4);
	cJSON_Delete(body);
	free(text);
}

static void test_error_tracking_ids_are_unique(void **state)
{
	twin_error err;
	char *a, *b;

	(void)state;
	twin_error_set(&err, TWIN_E_STORAGE, "x");
	a = twin_error_body(&err, TEST_T0);
	b = twin_error_body(&err, TEST_T0);
	assert_string_not_equal(a, b);
	free(a);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_error_status_and_code_table),
	        cmocka_unit_test(test_error_code_starts_with_status),
	        cmocka_unit_test(test_error_set_formats_and_tolerates_null),
	        cmocka_unit_test(test_error_message_never_splits_a_utf8_character),
	        cmocka_unit_test(test_error_body_shape),
	        cmocka_unit_test(test_error_tracking_ids_are_unique),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
