/*
 * test_catchup.c - session state and the catch-up notification
 * (PROTOCOL.md §3.1): merging the catch-up body into the desired document a
 * device last saw must give the current one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"
#include "twin/doc.h"
#include "twin/registry.h"
#include "twin/twin.h"

#define MAX_VERSIONS 200

static test_db db;

static int setup(void **state)
{
	(void)state;
	test_db_open(&db, "test_catchup", 0);
	assert_int_equal(twin_device_create(db.s, "d1", NULL, NULL, NULL), TWIN_OK);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_db_close(&db);
	return 0;
}

static void desired(const char *patch)
{
	char body[4096];
	cJSON *b;

	snprintf(body, sizeof(body), "{\"properties\":{\"desired\":%s}}", patch);
	b = test_json(body);
	assert_int_equal(twin_update(db.s, "d1", b, NULL, NULL, NULL), TWIN_OK);
	cJSON_Delete(b);
}

static void replace_desired(const char *doc)
{
	char body[4096];
	cJSON *b;

	snprintf(body, sizeof(body), "{\"properties\":{\"desired\":%s}}", doc);
	b = test_json(body);
	assert_int_equal(twin_replace(db.s, "d1", b, NULL, NULL, NULL), TWIN_OK);
	cJSON_Delete(b);
}

/* The current desired document, without "$version". */
static cJSON *desired_now(void)
{
	char *body;
	size_t len;
	cJSON *all, *d;

	assert_int_equal(twin_get_device_body(db.s, "d1", &body, &len, NULL, NULL), TWIN_OK);
	all = test_json(body);
	free(body);
	d = cJSON_DetachItemFromObject(all, "desired");
	cJSON_DeleteItemFromObject(d, "$version");
	cJSON_Delete(all);
	return d;
}

/* Catch-up body since L, or NULL when none is due. */
static char *catchup(int64_t since, int64_t *version)
{
	char *out;
	size_t len;

	assert_int_equal(twin_desired_since(db.s, "d1", since, &out, &len, version, NULL), TWIN_OK);
	if (out != NULL)
		assert_int_equal(len, strlen(out));
	return out;
}

/* Merge the catch-up body since `since` into old and compare with now. */
static void assert_catchup_rebuilds(const cJSON *old, int64_t since)
{
	int64_t v;
	char *body = catchup(since, &v);
	cJSON *doc = cJSON_Duplicate(old, 1), *patch, *now = desired_now();

	assert_non_null(body);
	patch = test_json(body);
	assert_int_equal((int64_t)cJSON_GetObjectItem(patch, "$version")->valuedouble, v);
	cJSON_DeleteItemFromObject(patch, "$version");
	assert_int_equal(twin_doc_merge(doc, NULL, patch, NULL), TWIN_OK);
	if (!cJSON_Compare(doc, now, 1)) {
		char *a = cJSON_PrintUnformatted(doc), *b = cJSON_PrintUnformatted(now);

		fail_msg("since %lld: catch-up %s rebuilt %s, want %s", (long long)since, body, a,
		         b);
	}
	cJSON_Delete(patch);
	cJSON_Delete(doc);
	cJSON_Delete(now);
	free(body);
}

static void test_session_initial_state(void **state)
{
	twin_session ss;

	(void)state;
	assert_int_equal(twin_session_get(db.s, "d1", &ss, NULL), TWIN_OK);
	assert_int_equal(ss.res_qos, -1);
	assert_int_equal(ss.desired_qos, -1);
	assert_int_equal(ss.notified_version, 1);
	assert_int_equal(ss.connection_base, 1);
	assert_int_equal(twin_session_get(db.s, "nobody", &ss, NULL), TWIN_E_NOT_FOUND);
}

static void test_session_state_persists(void **state)
{
	twin_session in = {1, 0, 7, 5}, out;

	(void)state;
	assert_int_equal(twin_session_put(db.s, "d1", &in, NULL), TWIN_OK);
	assert_int_equal(twin_store_commit(db.s, NULL), TWIN_OK);
	test_db_reopen(&db);
	assert_int_equal(twin_session_get(db.s, "d1", &out, NULL), TWIN_OK);
	assert_int_equal(out.res_qos, 1);
	assert_int_equal(out.desired_qos, 0);
	assert_int_equal(out.notified_version, 7);
	assert_int_equal(out.connection_base, 5);
}

static void test_catchup_none_when_device_is_current(void **state)
{
	int64_t v;

	(void)state;
	assert_null(catchup(1, &v));
	assert_int_equal(v, 1);
	desired("{\"a\":1}");
	assert_null(catchup(2, &v));
	assert_int_equal(v, 2);
}

static void test_catchup_protocol_example(void **state)
{
	int64_t v;
	char *body;

	(void)state;
	desired("{\"x\":1}");    /* v2 */
	desired("{\"x\":null}"); /* v3 */
	desired("{\"a\":0}");    /* v4: the device saw this one */
	desired("{\"a\":1}");    /* v5 */
	desired("{\"b\":{\"c\":2}}");
	desired("{\"a\":null}"); /* v7 */
	body = catchup(4, &v);
	assert_int_equal(v, 7);
	/* Member order is not significant; "$version" comes last. */
	assert_string_equal(body, "{\"b\":{\"c\":2},\"a\":null,\"$version\":7}");
	free(body);
}

static void test_catchup_from_never_seen_is_whole_document(void **state)
{
	cJSON *empty = cJSON_CreateObject();

	(void)state;
	desired("{\"a\":{\"b\":[1,2]},\"c\":\"x\"}");
	desired("{\"d\":true}");
	assert_catchup_rebuilds(empty, 1);
	cJSON_Delete(empty);
}

static void test_catchup_recreated_object_drops_stale_children(void **state)
{
	cJSON *seen;

	(void)state;
	desired("{\"o\":{\"x\":1,\"keep\":2}}");
	seen = desired_now(); /* L = 2 */
	desired("{\"o\":null}");
	desired("{\"o\":{\"y\":3}}");
	assert_catchup_rebuilds(seen, 2);
	cJSON_Delete(seen);
}

static void test_catchup_object_replaced_by_primitive_and_back(void **state)
{
	cJSON *seen;

	(void)state;
	desired("{\"o\":{\"x\":1}}");
	seen = desired_now();
	desired("{\"o\":5}");
	desired("{\"o\":{\"y\":2}}");
	assert_catchup_rebuilds(seen, 2);
	cJSON_Delete(seen);
}

static void test_catchup_after_replace_nulls_removed_keys(void **state)
{
	cJSON *seen;

	(void)state;
	desired("{\"a\":1,\"b\":2,\"o\":{\"x\":1,\"y\":2}}");
	seen = desired_now();
	replace_desired("{\"a\":1,\"c\":100,\"o\":{\"x\":1}}");
	assert_catchup_rebuilds(seen, 2);
	cJSON_Delete(seen);
}

/* A deterministic pseudo-random walk of desired writes; every version's
 * document is kept, and the catch-up from each of them must rebuild the
 * latest one. */
static unsigned rnd_state = 12345;

static unsigned rnd(unsigned n)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return (rnd_state >> 16) % n;
}

static void random_value(char *out, size_t n, int depth)
{
	static const char *keys[] = {"a", "b", "c", "o"};
	unsigned kind = depth > 2 ? rnd(3) : rnd(5);

	if (kind == 0)
		snprintf(out, n, "%u", rnd(100));
	else if (kind == 1)
		snprintf(out, n, "null");
	else if (kind == 2)
		snprintf(out, n, "[%u]", rnd(9));
	else {
		char inner[512];

		random_value(inner, sizeof(inner), depth + 1);
		snprintf(out, n, "{\"%s\":%s}", keys[rnd(4)], inner);
	}
}

static void test_catchup_rebuilds_current_document_from_any_version(void **state)
{
	cJSON *seen[MAX_VERSIONS] = {0};
	int64_t last = 1;

	(void)state;
	seen[1] = cJSON_CreateObject();
	for (int step = 0; step < 120; step++) {
		char value[600], patch[700];

		random_value(value, sizeof(value), 0);
		/* patch a top-level key (nulls at top level are fine) */
		snprintf(patch, sizeof(patch), "{\"%c\":%s}", "abco"[rnd(4)], value);
		if (strstr(patch, "[null") == NULL) {
			if (rnd(10) == 0)
				replace_desired(strcmp(value, "null") ? patch : "{}");
			else
				desired(patch);
			last++;
			assert_true(last < MAX_VERSIONS);
			seen[last] = desired_now();
		}
		if (step % 7 == 0)
			assert_int_equal(twin_store_commit(db.s, NULL), TWIN_OK);
	}
	for (int64_t l = 1; l < last; l++)
		assert_catchup_rebuilds(seen[l], l);
	for (int64_t l = 1; l <= last; l++)
		cJSON_Delete(seen[l]);
}

static void test_tombstones_bounded_fall_back_to_whole_document(void **state)
{
	char patch[64];
	cJSON *seen;

	(void)state;
	desired("{\"old\":1}");
	seen = desired_now(); /* L = 2 */
	for (int i = 0; i < TWIN_TOMBSTONES_MAX + 10; i++) {
		snprintf(patch, sizeof(patch), "{\"k%d\":1}", i);
		desired(patch);
		snprintf(patch, sizeof(patch), "{\"k%d\":null}", i);
		desired(patch);
	}
	desired("{\"old\":null,\"new\":2}");
	/* The newest removal is still known; old ones are not, so the body is
	 * the whole document plus the known nulls, which still rebuilds it here. */
	assert_catchup_rebuilds(seen, 2);
	cJSON_Delete(seen);
}

static void test_delete_device_deletes_session_and_tombstones(void **state)
{
	twin_session in = {1, 1, 3, 3}, out;
	int64_t v;
	char *body;

	(void)state;
	desired("{\"a\":1}");
	desired("{\"a\":null}");
	assert_int_equal(twin_session_put(db.s, "d1", &in, NULL), TWIN_OK);
	assert_int_equal(twin_device_delete(db.s, "d1", NULL, NULL), TWIN_OK);
	assert_int_equal(twin_device_create(db.s, "d1", NULL, NULL, NULL), TWIN_OK);
	assert_int_equal(twin_session_get(db.s, "d1", &out, NULL), TWIN_OK);
	assert_int_equal(out.desired_qos, -1);
	assert_int_equal(out.notified_version, 1);
	desired("{\"b\":1}");
	body = catchup(1, &v);
	assert_string_equal(body, "{\"b\":1,\"$version\":2}"); /* no stale "a":null */
	free(body);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(test_session_initial_state),
	        T(test_session_state_persists),
	        T(test_catchup_none_when_device_is_current),
	        T(test_catchup_protocol_example),
	        T(test_catchup_from_never_seen_is_whole_document),
	        T(test_catchup_recreated_object_drops_stale_children),
	        T(test_catchup_object_replaced_by_primitive_and_back),
	        T(test_catchup_after_replace_nulls_removed_keys),
	        T(test_catchup_rebuilds_current_document_from_any_version),
	        T(test_tombstones_bounded_fall_back_to_whole_document),
	        T(test_delete_device_deletes_session_and_tombstones),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
