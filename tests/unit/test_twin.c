/*
 * test_twin.c - twin reads and writes through the store (PROTOCOL.md §2.3,
 * §4, §5): versions, etags, atomicity, notifications, sizes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"
#include "twin/registry.h"
#include "twin/twin.h"

static test_db db;

static int setup(void **state)
{
	(void)state;
	test_db_open(&db, "test_twin", 0);
	assert_int_equal(twin_device_create(db.s, "d1", NULL, NULL, NULL), TWIN_OK);
	assert_int_equal(twin_store_commit(db.s, NULL), TWIN_OK);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_db_close(&db);
	return 0;
}

static twin_err patch(const char *text, twin_write_result *res, twin_error *err)
{
	return twin_patch_reported(db.s, "d1", text, strlen(text), res, err);
}

static twin_err update(const char *body, const char *if_match, twin_write_result *res,
                       twin_error *err)
{
	cJSON *b = test_json(body);
	twin_err rc = twin_update(db.s, "d1", b, if_match, res, err);

	cJSON_Delete(b);
	return rc;
}

static twin_err replace(const char *body, twin_write_result *res, twin_error *err)
{
	cJSON *b = test_json(body);
	twin_err rc = twin_replace(db.s, "d1", b, NULL, res, err);

	cJSON_Delete(b);
	return rc;
}

/* The device GET body of d1, compared exactly. */
static void assert_body(const char *want)
{
	char *body;
	size_t len;

	int64_t desired_version = -1;

	assert_int_equal(twin_get_device_body(db.s, "d1", &body, &len, &desired_version, NULL),
	                 TWIN_OK);
	assert_string_equal(body, want);
	assert_non_null(strstr(want, "\"desired\":{"));
	assert_true(desired_version >= 1);
	assert_int_equal(len, strlen(want));
	free(body);
}

/* The whole service view, printed: a rejected write must leave it identical. */
static char *twin_text(void)
{
	cJSON *t;
	char *text;

	assert_int_equal(twin_get(db.s, "d1", &t, NULL), TWIN_OK);
	text = cJSON_PrintUnformatted(t);
	cJSON_Delete(t);
	return text;
}

static cJSON *twin_json(void)
{
	cJSON *t;

	assert_int_equal(twin_get(db.s, "d1", &t, NULL), TWIN_OK);
	return t;
}

static void assert_rejected_changes_nothing(twin_err rc, twin_err want, const char *before)
{
	char *after;

	assert_int_equal(rc, want);
	assert_int_equal(twin_store_commit(db.s, NULL), TWIN_OK);
	after = twin_text();
	assert_string_equal(after, before);
	free(after);
}

static void test_new_twin_device_body(void **state)
{
	(void)state;
	assert_body("{\"desired\":{\"$version\":1},\"reported\":{\"$version\":1}}");
}

static void test_new_twin_version_2_and_etag(void **state)
{
	cJSON *t = twin_json();

	(void)state;
	assert_int_equal(cJSON_GetObjectItem(t, "version")->valueint, 2);
	assert_string_equal(cJSON_GetObjectItem(t, "etag")->valuestring, "AAAAAAAAAAE=");
	cJSON_Delete(t);
}

static void test_reported_patch_bumps_reported_and_twin_version(void **state)
{
	twin_write_result r = {0};

	(void)state;
	assert_int_equal(patch("{\"fw\":\"1.2\"}", &r, NULL), TWIN_OK);
	assert_int_equal(r.reported_version, 2);
	assert_int_equal(r.version, 3);
	assert_null(r.notification); /* reported patches never notify */
	assert_int_equal(patch("{\"fw\":\"1.3\"}", &r, NULL), TWIN_OK);
	assert_int_equal(r.reported_version, 3);
	assert_int_equal(r.version, 4);
	assert_body("{\"desired\":{\"$version\":1},\"reported\":{\"fw\":\"1.3\",\"$version\":3}}");
}

static void test_empty_reported_patch_is_not_a_write(void **state)
{
	twin_write_result r = {0};
	char *before;

	(void)state;
	assert_int_equal(patch("{\"a\":1}", &r, NULL), TWIN_OK);
	before = twin_text();
	test_now += 10000000;
	assert_int_equal(patch(" { } ", &r, NULL), TWIN_OK);
	assert_int_equal(r.reported_version, 2);
	assert_int_equal(r.version, 3);
	assert_rejected_changes_nothing(TWIN_OK, TWIN_OK, before);
	free(before);
}

static void test_noop_patch_still_bumps_versions(void **state)
{
	twin_write_result r = {0};

	(void)state;
	assert_int_equal(patch("{\"absent\":null}", &r, NULL), TWIN_OK);
	assert_int_equal(r.reported_version, 2);
	assert_int_equal(r.version, 3);
	assert_int_equal(patch("{\"a\":1}", &r, NULL), TWIN_OK);
	assert_int_equal(patch("{\"a\":1}", &r, NULL), TWIN_OK); /* same value again */
	assert_int_equal(r.reported_version, 4);
}

static void test_twin_etag_changes_with_every_write(void **state)
{
	cJSON *t;

	(void)state;
	assert_int_equal(patch("{\"a\":1}", NULL, NULL), TWIN_OK);
	t = twin_json();
	assert_int_equal(cJSON_GetObjectItem(t, "version")->valueint, 3);
	assert_string_equal(cJSON_GetObjectItem(t, "etag")->valuestring, "AAAAAAAAAAI=");
	cJSON_Delete(t);
}

static void test_patch_atomicity_one_bad_key_rejects_all(void **state)
{
	char *before = twin_text();
	twin_error err;

	(void)state;
	test_now += 10000000;
	assert_rejected_changes_nothing(
	        patch("{\"good\":1,\"deep\":{\"x\":{\"bad.key\":2}}}", NULL, &err), TWIN_E_INVALID,
	        before);
	assert_non_null(strstr(err.message, "bad.key"));
	free(before);
}

static void test_patch_rejections_change_nothing(void **state)
{
	static const char *bad[] = {
	        "",                         /* empty body */
	        "   ",                      /* only whitespace */
	        "{\"a\":",                  /* malformed JSON */
	        "[1,2]",                    /* not an object */
	        "\"text\"",                 /* not an object */
	        "42",                       /* not an object */
	        "{\"a\":1,\"a\":2}",        /* duplicate key */
	        "{\"a\":\"\xff\"}",         /* invalid UTF-8 */
	        "{\"a\":\"\\ud800\"}",      /* lone surrogate */
	        "{\"a\":4503599627370496}", /* integer over the limit */
	        "{\"a\":[1,null]}",         /* null inside an array */
	        "{\"$version\":3}",         /* forbidden key character */
	        "{\"a\":1} x",              /* trailing data */
	};
	char *before = twin_text();

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		twin_write_result r = {0};

		assert_rejected_changes_nothing(patch(bad[i], &r, NULL), TWIN_E_INVALID, before);
	}
	free(before);
}

static void test_patch_integer_range_boundary(void **state)
{
	(void)state;
	assert_int_equal(patch("{\"a\":4503599627370495,\"b\":-4503599627370496}", NULL, NULL),
	                 TWIN_OK);
	assert_int_equal(patch("{\"a\":-4503599627370497}", NULL, NULL), TWIN_E_INVALID);
	assert_int_equal(patch("{\"a\":4503599627370496.5}", NULL, NULL), TWIN_OK);
}

/* A reported patch {"s":"<n - 1 bytes>"}: section size n (key 1 + string). */
static twin_err patch_of_size(size_t n, twin_error *err)
{
	char *body = malloc(n + 16);
	twin_err rc;

	strcpy(body, "{\"s\":\"");
	memset(body + 6, 'x', n - 1);
	strcpy(body + 6 + n - 1, "\"}");
	rc = patch(body, NULL, err);
	free(body);
	return rc;
}

static void test_reported_size_limit_boundary(void **state)
{
	twin_limits *l = (twin_limits *)twin_store_limits(db.s);
	twin_error err;
	char *before;

	(void)state;
	l->string_max_bytes = 1 << 20; /* let the section limit bite first */
	assert_int_equal(patch_of_size(32768, &err), TWIN_OK);
	assert_int_equal(twin_store_commit(db.s, NULL), TWIN_OK);
	before = twin_text();
	assert_rejected_changes_nothing(patch_of_size(32769, &err), TWIN_E_SECTION_SIZE, before);
	assert_string_equal(err.message,
	                    "'Properties.Reported' size should be less than 32768 bytes.");
	free(before);
}

static void test_size_is_checked_on_the_result_of_the_write(void **state)
{
	twin_limits *l = (twin_limits *)twin_store_limits(db.s);

	(void)state;
	l->reported_max = 20;
	assert_int_equal(patch("{\"a\":\"123456789\"}", NULL, NULL), TWIN_OK); /* 10 */
	assert_int_equal(patch("{\"b\":\"123456789\"}", NULL, NULL), TWIN_OK); /* 20 */
	assert_int_equal(patch("{\"c\":\"1\"}", NULL, NULL), TWIN_E_SECTION_SIZE);
	/* A delete shrinks the result, so the same write then fits. */
	assert_int_equal(patch("{\"a\":null,\"c\":\"1\"}", NULL, NULL), TWIN_OK);
}

static void test_reported_metadata_stamped_at_write_time(void **state)
{
	cJSON *t, *meta;

	(void)state;
	assert_int_equal(patch("{\"fw\":{\"ver\":\"1.2\"}}", NULL, NULL), TWIN_OK);
	t = twin_json();
	meta = cJSON_GetObjectItem(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(t, "properties"), "reported"), "$metadata");
	test_assert_json(meta, "{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\","
	                       "\"fw\":{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\","
	                       "\"ver\":{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\"}}}");
	cJSON_Delete(t);
}

static void test_patch_unknown_device_404(void **state)
{
	twin_error err;

	(void)state;
	assert_int_equal(twin_patch_reported(db.s, "nobody", "{\"a\":1}", 7, NULL, &err),
	                 TWIN_E_NOT_FOUND);
	assert_int_equal(twin_err_code(err.err), 404001);
}

static void test_update_desired_bumps_versions_and_notifies(void **state)
{
	twin_write_result r = {0};

	(void)state;
	assert_int_equal(update("{\"properties\":{\"desired\":{\"interval\":30}}}", NULL, &r, NULL),
	                 TWIN_OK);
	assert_int_equal(r.desired_version, 2);
	assert_int_equal(r.version, 3);
	assert_string_equal(r.notification, "{\"interval\":30,\"$version\":2}");
	assert_int_equal(r.notification_len, strlen(r.notification));
	twin_write_result_clear(&r);
	assert_body("{\"desired\":{\"interval\":30,\"$version\":2},\"reported\":{\"$version\":1}}");
}

static void test_update_notification_is_patch_as_accepted(void **state)
{
	twin_write_result r = {0};

	(void)state;
	assert_int_equal(
	        update("{\"properties\":{\"desired\":{\"a\":1,\"b\":{\"c\":2}}}}", NULL, &r, NULL),
	        TWIN_OK);
	twin_write_result_clear(&r);
	/* Received member order, nulls and no-op members kept. */
	assert_int_equal(
	        update("{\"properties\":{\"desired\":{\"z\":null,\"a\":1,\"b\":{\"c\":null}}}}",
	               NULL, &r, NULL),
	        TWIN_OK);
	assert_string_equal(r.notification,
	                    "{\"z\":null,\"a\":1,\"b\":{\"c\":null},\"$version\":3}");
	twin_write_result_clear(&r);
	assert_body(
	        "{\"desired\":{\"a\":1,\"b\":{},\"$version\":3},\"reported\":{\"$version\":1}}");
}

static void test_update_tags_only_does_not_notify(void **state)
{
	twin_write_result r = {0};
	cJSON *t;

	(void)state;
	assert_int_equal(update("{\"tags\":{\"site\":\"north\"}}", NULL, &r, NULL), TWIN_OK);
	assert_null(r.notification);
	assert_int_equal(r.desired_version, 1);
	assert_int_equal(r.version, 3);
	t = twin_json();
	test_assert_json(cJSON_GetObjectItem(t, "tags"), "{\"site\":\"north\"}");
	cJSON_Delete(t);
}

static void test_update_tags_and_desired_bumps_version_once(void **state)
{
	twin_write_result r = {0};

	(void)state;
	assert_int_equal(update("{\"tags\":{\"a\":1},\"properties\":{\"desired\":{\"b\":2}}}", NULL,
	                        &r, NULL),
	                 TWIN_OK);
	assert_int_equal(r.version, 3);
	assert_int_equal(r.desired_version, 2);
	twin_write_result_clear(&r);
}

static void test_update_empty_sections_not_a_write(void **state)
{
	twin_write_result r = {0};
	char *before = twin_text();

	(void)state;
	assert_int_equal(update("{\"tags\":{},\"properties\":{\"desired\":{},\"reported\":{}}}",
	                        NULL, &r, NULL),
	                 TWIN_OK);
	assert_null(r.notification);
	assert_int_equal(r.version, 2);
	assert_rejected_changes_nothing(TWIN_OK, TWIN_OK, before);
	free(before);
}

static void test_update_reported_by_backend_rejected(void **state)
{
	char *before = twin_text();

	(void)state;
	assert_rejected_changes_nothing(
	        update("{\"tags\":{\"a\":1},\"properties\":{\"reported\":{\"x\":1}}}", NULL, NULL,
	               NULL),
	        TWIN_E_INVALID, before);
	free(before);
}

static void test_update_etag_match_rules(void **state)
{
	twin_write_result r = {0};
	twin_error err;
	char *before;

	(void)state;
	assert_int_equal(update("{\"tags\":{\"a\":1}}", "*", &r, NULL), TWIN_OK);
	assert_int_equal(update("{\"tags\":{\"a\":2}}", "\"AAAAAAAAAAI=\"", &r, NULL), TWIN_OK);
	assert_int_equal(update("{\"tags\":{\"a\":3}}", "AAAAAAAAAAM=", &r, NULL), TWIN_OK);
	assert_int_equal(twin_store_commit(db.s, NULL), TWIN_OK);
	before = twin_text();
	assert_rejected_changes_nothing(
	        update("{\"tags\":{\"a\":4}}", "\"AAAAAAAAAAM=\"", &r, &err), TWIN_E_PRECONDITION,
	        before);
	assert_int_equal(twin_err_status(err.err), 412);
	assert_int_equal(twin_err_code(err.err), 412001);
	free(before);
}

static void test_update_invalid_desired_changes_nothing(void **state)
{
	char *before = twin_text();

	(void)state;
	assert_rejected_changes_nothing(
	        update("{\"tags\":{\"ok\":1},\"properties\":{\"desired\":{\"a b\":1}}}", NULL, NULL,
	               NULL),
	        TWIN_E_INVALID, before);
	assert_rejected_changes_nothing(update("{\"tags\":5}", NULL, NULL, NULL), TWIN_E_INVALID,
	                                before);
	free(before);
}

static void test_tags_size_limit(void **state)
{
	twin_limits *l = (twin_limits *)twin_store_limits(db.s);
	twin_error err;

	(void)state;
	l->tags_max = 9;
	assert_int_equal(update("{\"tags\":{\"abcd\":\"12345\"}}", NULL, NULL, &err), TWIN_OK);
	assert_int_equal(update("{\"tags\":{\"abcd\":\"123456\"}}", NULL, NULL, &err),
	                 TWIN_E_SECTION_SIZE);
	assert_string_equal(err.message, "'Tags' size should be less than 9 bytes.");
}

static void test_desired_size_limit(void **state)
{
	twin_limits *l = (twin_limits *)twin_store_limits(db.s);
	twin_error err;

	(void)state;
	l->desired_max = 9;
	assert_int_equal(
	        update("{\"properties\":{\"desired\":{\"abcd\":\"123456\"}}}", NULL, NULL, &err),
	        TWIN_E_SECTION_SIZE);
	assert_string_equal(err.message, "'Properties.Desired' size should be less than 9 bytes.");
}

static void test_desired_metadata_has_last_updated_version(void **state)
{
	cJSON *t, *meta;

	(void)state;
	assert_int_equal(
	        update("{\"properties\":{\"desired\":{\"interval\":30}}}", NULL, NULL, NULL),
	        TWIN_OK);
	t = twin_json();
	meta = cJSON_GetObjectItem(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(t, "properties"), "desired"), "$metadata");
	test_assert_json(meta, "{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\","
	                       "\"$lastUpdatedVersion\":2,"
	                       "\"interval\":{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\","
	                       "\"$lastUpdatedVersion\":2}}");
	cJSON_Delete(t);
}

static void test_replace_notification_has_nulls_for_removed_keys(void **state)
{
	twin_write_result r = {0};

	(void)state;
	assert_int_equal(
	        update("{\"properties\":{\"desired\":{\"a\":1,\"b\":2,\"o\":{\"x\":1,\"y\":2}}}}",
	               NULL, NULL, NULL),
	        TWIN_OK);
	assert_int_equal(
	        replace("{\"tags\":{\"t\":1},\"properties\":{\"desired\":{\"a\":1,\"c\":100,"
	                "\"o\":{\"x\":1}}}}",
	                &r, NULL),
	        TWIN_OK);
	assert_string_equal(
	        r.notification,
	        "{\"a\":1,\"c\":100,\"o\":{\"x\":1,\"y\":null},\"b\":null,\"$version\":3}");
	assert_int_equal(r.desired_version, 3);
	assert_int_equal(r.version, 4);
	twin_write_result_clear(&r);
	assert_body("{\"desired\":{\"a\":1,\"c\":100,\"o\":{\"x\":1},\"$version\":3},"
	            "\"reported\":{\"$version\":1}}");
}

static void test_replace_missing_sections_become_empty(void **state)
{
	cJSON *t;

	(void)state;
	assert_int_equal(update("{\"tags\":{\"a\":1},\"properties\":{\"desired\":{\"b\":2}}}", NULL,
	                        NULL, NULL),
	                 TWIN_OK);
	assert_int_equal(replace("{}", NULL, NULL), TWIN_OK);
	t = twin_json();
	test_assert_json(cJSON_GetObjectItem(t, "tags"), "{}");
	cJSON_Delete(t);
	assert_body("{\"desired\":{\"$version\":3},\"reported\":{\"$version\":1}}");
}

static void test_replace_drops_nulls_and_ignores_service_members(void **state)
{
	twin_write_result r = {0};

	(void)state;
	assert_int_equal(
	        replace("{\"deviceId\":\"other\",\"version\":99,\"tags\":{\"a\":null,\"b\":1},"
	                "\"properties\":{\"desired\":{\"x\":null,\"y\":2,\"$version\":7,"
	                "\"$metadata\":{\"$lastUpdated\":\"x\"}},"
	                "\"reported\":{\"r\":1}}}",
	                &r, NULL),
	        TWIN_OK);
	assert_string_equal(r.notification, "{\"y\":2,\"$version\":2}");
	twin_write_result_clear(&r);
	assert_body("{\"desired\":{\"y\":2,\"$version\":2},\"reported\":{\"$version\":1}}");
}

static void test_replace_is_always_a_desired_write(void **state)
{
	twin_write_result r = {0};

	(void)state;
	assert_int_equal(replace("{\"tags\":{\"only\":\"tags\"}}", &r, NULL), TWIN_OK);
	assert_int_equal(r.desired_version, 2);
	assert_string_equal(r.notification, "{\"$version\":2}");
	twin_write_result_clear(&r);
}

static void test_replace_leaves_reported_untouched(void **state)
{
	(void)state;
	assert_int_equal(patch("{\"fw\":\"1\"}", NULL, NULL), TWIN_OK);
	assert_int_equal(replace("{\"properties\":{\"desired\":{\"d\":1}}}", NULL, NULL), TWIN_OK);
	assert_body("{\"desired\":{\"d\":1,\"$version\":2},\"reported\":{\"fw\":\"1\",\"$version\":"
	            "2}}");
}

static void test_replace_stamps_every_desired_node(void **state)
{
	cJSON *t, *meta;

	(void)state;
	assert_int_equal(update("{\"properties\":{\"desired\":{\"keep\":1}}}", NULL, NULL, NULL),
	                 TWIN_OK);
	test_now += 10000000; /* one second later */
	assert_int_equal(
	        replace("{\"properties\":{\"desired\":{\"keep\":1,\"n\":{\"m\":2}}}}", NULL, NULL),
	        TWIN_OK);
	t = twin_json();
	meta = cJSON_GetObjectItem(
	        cJSON_GetObjectItem(cJSON_GetObjectItem(t, "properties"), "desired"), "$metadata");
	test_assert_json(meta, "{\"$lastUpdated\":\"2024-05-01T08:15:31.1234567Z\","
	                       "\"$lastUpdatedVersion\":3,"
	                       "\"keep\":{\"$lastUpdated\":\"2024-05-01T08:15:31.1234567Z\","
	                       "\"$lastUpdatedVersion\":3},"
	                       "\"n\":{\"$lastUpdated\":\"2024-05-01T08:15:31.1234567Z\","
	                       "\"$lastUpdatedVersion\":3,"
	                       "\"m\":{\"$lastUpdated\":\"2024-05-01T08:15:31.1234567Z\","
	                       "\"$lastUpdatedVersion\":3}}}");
	cJSON_Delete(t);
}

static void test_replace_etag_mismatch_changes_nothing(void **state)
{
	cJSON *b = test_json("{\"tags\":{\"a\":1}}");
	char *before = twin_text();

	(void)state;
	assert_rejected_changes_nothing(twin_replace(db.s, "d1", b, "\"AAAAAAAAAAA=\"", NULL, NULL),
	                                TWIN_E_PRECONDITION, before);
	cJSON_Delete(b);
	free(before);
}

static void test_service_view_shape(void **state)
{
	static const char *fields[] = {"deviceId",
	                               "etag",
	                               "deviceEtag",
	                               "status",
	                               "statusUpdateTime",
	                               "connectionState",
	                               "lastActivityTime",
	                               "cloudToDeviceMessageCount",
	                               "authenticationType",
	                               "x509Thumbprint",
	                               "modelId",
	                               "version",
	                               "capabilities",
	                               "tags",
	                               "properties"};
	cJSON *t = twin_json(), *props;

	(void)state;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		assert_non_null(cJSON_GetObjectItemCaseSensitive(t, fields[i]));
	assert_null(cJSON_GetObjectItem(t, "statusReason")); /* omitted when unset */
	assert_string_equal(cJSON_GetObjectItem(t, "connectionState")->valuestring, "Disconnected");
	assert_string_equal(cJSON_GetObjectItem(t, "deviceEtag")->valuestring, "MQ==");
	test_assert_json(cJSON_GetObjectItem(t, "capabilities"), "{\"iotEdge\":false}");
	props = cJSON_GetObjectItem(t, "properties");
	test_assert_json(props,
	                 "{\"desired\":{\"$metadata\":{\"$lastUpdated\":\"0001-01-01T00:00:00Z\"},"
	                 "\"$version\":1},"
	                 "\"reported\":{\"$metadata\":{\"$lastUpdated\":\"0001-01-01T00:00:00Z\"},"
	                 "\"$version\":1}}");
	cJSON_Delete(t);
}

static void test_system_fields_change_neither_version_nor_etag(void **state)
{
	cJSON *t;

	(void)state;
	assert_int_equal(twin_device_set_connected(db.s, "d1", 1, NULL), TWIN_OK);
	t = twin_json();
	assert_string_equal(cJSON_GetObjectItem(t, "connectionState")->valuestring, "Connected");
	assert_int_equal(cJSON_GetObjectItem(t, "version")->valueint, 2);
	assert_string_equal(cJSON_GetObjectItem(t, "etag")->valuestring, "AAAAAAAAAAE=");
	cJSON_Delete(t);
}

static void test_limits_are_configurable(void **state)
{
	twin_limits *l = (twin_limits *)twin_store_limits(db.s);

	(void)state;
	l->key_max_bytes = 4;
	l->string_max_bytes = 3;
	assert_int_equal(patch("{\"abcd\":\"xyz\"}", NULL, NULL), TWIN_OK);
	assert_int_equal(patch("{\"abcde\":1}", NULL, NULL), TWIN_E_INVALID);
	assert_int_equal(patch("{\"a\":\"wxyz\"}", NULL, NULL), TWIN_E_INVALID);
}

/* Non-zero if the printed service view of d1 contains needle. */
static int twin_contains(const char *needle)
{
	char *text = twin_text();
	int found = strstr(text, needle) != NULL;

	free(text);
	return found;
}

/* The reported section a PATCH keeps parsed (store/section_cache.c) must
 * always be what the database holds: after a run of PATCHes, after an
 * aborted batch, after a refused PATCH, and across a reopen. */
static void test_cached_reported_section_matches_the_database(void **state)
{
	char *before, *after;

	(void)state;
	assert_int_equal(patch("{\"a\":1,\"n\":{\"x\":1}}", NULL, NULL), TWIN_OK);
	assert_int_equal(patch("{\"b\":2,\"n\":{\"y\":2}}", NULL, NULL), TWIN_OK);
	assert_int_equal(patch("{\"a\":null}", NULL, NULL), TWIN_OK);
	assert_int_equal(twin_store_commit(db.s, NULL), TWIN_OK);
	before = twin_text();
	test_db_reopen(&db); /* no cache: everything from disk */
	after = twin_text();
	assert_string_equal(after, before);
	free(before);
	free(after);
}

static void assert_stamps(const cJSON *node, const char *when, int version)
{
	assert_string_equal(cJSON_GetObjectItem(node, "$lastUpdated")->valuestring, when);
	assert_int_equal(cJSON_GetObjectItem(node, "$lastUpdatedVersion")->valueint, version);
}

/* Metadata is stored without the stamps a node shares with its parent
 * (store/doc_meta.c); the view read back from disk must still show every
 * node's own stamps, whatever mix of write times the twin has. */
static void test_metadata_stored_compact_reads_back_whole(void **state)
{
	char *before, *after;
	cJSON *t;
	const cJSON *m;

	(void)state;
	assert_int_equal(patch("{\"a\":{\"x\":1,\"y\":2},\"b\":[1]}", NULL, NULL), TWIN_OK);
	assert_int_equal(update("{\"properties\":{\"desired\":{\"p\":{\"q\":1,\"r\":2}}}}", NULL,
	                        NULL, NULL),
	                 TWIN_OK);
	assert_int_equal(twin_store_commit(db.s, NULL), TWIN_OK);
	test_now += 10000000; /* one second later */
	assert_int_equal(patch("{\"a\":{\"y\":3}}", NULL, NULL), TWIN_OK);
	assert_int_equal(
	        update("{\"properties\":{\"desired\":{\"p\":{\"r\":3}}}}", NULL, NULL, NULL),
	        TWIN_OK);
	assert_int_equal(twin_store_commit(db.s, NULL), TWIN_OK);
	before = twin_text();
	test_db_reopen(&db); /* no cache: everything from disk */
	after = twin_text();
	assert_string_equal(after, before);
	t = twin_json();
	m = cJSON_GetObjectItem(cJSON_GetObjectItem(t, "properties"), "desired");
	m = cJSON_GetObjectItem(cJSON_GetObjectItem(m, "$metadata"), "p");
	assert_stamps(cJSON_GetObjectItem(m, "q"), "2024-05-01T08:15:30.1234567Z", 2);
	assert_stamps(cJSON_GetObjectItem(m, "r"), "2024-05-01T08:15:31.1234567Z", 3);
	cJSON_Delete(t);
	free(before);
	free(after);
}

static void test_aborted_batch_forgets_cached_reported_sections(void **state)
{
	twin_write_result res = {0};

	(void)state;
	assert_int_equal(patch("{\"a\":1}", NULL, NULL), TWIN_OK);
	assert_int_equal(twin_store_commit(db.s, NULL), TWIN_OK);
	assert_int_equal(patch("{\"lost\":1}", NULL, NULL), TWIN_OK);
	twin_store_abort(db.s);
	assert_int_equal(patch("{\"c\":3}", &res, NULL), TWIN_OK);
	assert_int_equal(res.reported_version, 3); /* 1 + a + c: the lost one is gone */
	assert_int_equal(twin_store_commit(db.s, NULL), TWIN_OK);
	assert_false(twin_contains("lost"));
	twin_write_result_clear(&res);
}

static void test_refused_patch_leaves_the_cached_section_intact(void **state)
{
	twin_write_result res = {0};
	cJSON *o = cJSON_CreateObject();
	char value[4001], *text;

	(void)state;
	assert_int_equal(patch("{\"a\":1}", NULL, NULL), TWIN_OK);
	/* Nine 4000-byte strings: valid, merged, then refused by the 32 KiB
	 * section limit after the merge changed the parsed section. */
	memset(value, 'v', sizeof(value) - 1);
	value[sizeof(value) - 1] = '\0';
	for (int i = 0; i < 9; i++) {
		char key[8];

		snprintf(key, sizeof(key), "k%d", i);
		cJSON_AddStringToObject(o, key, value);
	}
	text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	assert_int_equal(patch(text, NULL, NULL), TWIN_E_SECTION_SIZE);
	free(text);
	assert_int_equal(patch("{\"c\":3}", &res, NULL), TWIN_OK);
	assert_int_equal(res.reported_version, 3);
	assert_int_equal(twin_store_commit(db.s, NULL), TWIN_OK);
	assert_false(twin_contains("k0"));
	assert_true(twin_contains("\"c\":3"));
	twin_write_result_clear(&res);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(test_new_twin_device_body),
	        T(test_new_twin_version_2_and_etag),
	        T(test_reported_patch_bumps_reported_and_twin_version),
	        T(test_empty_reported_patch_is_not_a_write),
	        T(test_noop_patch_still_bumps_versions),
	        T(test_twin_etag_changes_with_every_write),
	        T(test_patch_atomicity_one_bad_key_rejects_all),
	        T(test_patch_rejections_change_nothing),
	        T(test_patch_integer_range_boundary),
	        T(test_reported_size_limit_boundary),
	        T(test_size_is_checked_on_the_result_of_the_write),
	        T(test_reported_metadata_stamped_at_write_time),
	        T(test_patch_unknown_device_404),
	        T(test_update_desired_bumps_versions_and_notifies),
	        T(test_update_notification_is_patch_as_accepted),
	        T(test_update_tags_only_does_not_notify),
	        T(test_update_tags_and_desired_bumps_version_once),
	        T(test_update_empty_sections_not_a_write),
	        T(test_update_reported_by_backend_rejected),
	        T(test_update_etag_match_rules),
	        T(test_update_invalid_desired_changes_nothing),
	        T(test_tags_size_limit),
	        T(test_desired_size_limit),
	        T(test_desired_metadata_has_last_updated_version),
	        T(test_replace_notification_has_nulls_for_removed_keys),
	        T(test_replace_missing_sections_become_empty),
	        T(test_replace_drops_nulls_and_ignores_service_members),
	        T(test_replace_is_always_a_desired_write),
	        T(test_replace_leaves_reported_untouched),
	        T(test_replace_stamps_every_desired_node),
	        T(test_replace_etag_mismatch_changes_nothing),
	        T(test_service_view_shape),
	        T(test_system_fields_change_neither_version_nor_etag),
	        T(test_limits_are_configurable),
	        T(test_cached_reported_section_matches_the_database),
	        T(test_metadata_stored_compact_reads_back_whole),
	        T(test_aborted_batch_forgets_cached_reported_sections),
	        T(test_refused_patch_leaves_the_cached_section_intact),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
