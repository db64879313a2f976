/*
 * test_changes.c - the change log (twin/changes.h, PROTOCOL.md §9), one
 * test per rule.
 *
 * The log is checked through its two readers: replay (twin_changes_read,
 * followed page by page through nextSequence, as getChanges clients do)
 * and the drain the plugin publishes events from. Most tests compare the
 * log as one line of "seq opType deviceId" items, so a test reads like the
 * sequence of events it expects. Bodies are compared as exact text where
 * the shape is the rule, since member order ("sequenceNumber" first) is
 * part of it.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"
#include "twin/changes.h"
#include "twin/doc.h"
#include "twin/registry.h"
#include "twin/twin.h"

#define T0_TEXT   "2024-05-01T08:15:30.1234567Z" /* TEST_T0 */
#define SECOND    10000000LL                     /* ticks */
#define NEVER     "0001-01-01T00:00:00Z"
#define EMPTY_SEC "{\"$metadata\":{\"$lastUpdated\":\"" NEVER "\"},\"$version\":1}"

static test_db db;

static int setup(void **state)
{
	(void)state;
	test_db_open(&db, "test_changes", 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_db_close(&db);
	return 0;
}

/* Writes that must succeed; a failure names the operation and the error. */

static void create_ok(const char *id)
{
	twin_error err = {0};

	if (twin_device_create(db.s, id, NULL, NULL, &err) != TWIN_OK)
		fail_msg("create %s: %s", id, err.message);
}

static void patch_ok(const char *id, const char *body)
{
	twin_error err = {0};

	if (twin_patch_reported(db.s, id, body, strlen(body), NULL, &err) != TWIN_OK)
		fail_msg("patch %s: %s", id, err.message);
}

static void update_ok(const char *id, const char *body)
{
	cJSON *b = test_json(body);
	twin_error err = {0};
	twin_err rc = twin_update(db.s, id, b, NULL, NULL, &err);

	cJSON_Delete(b);
	if (rc != TWIN_OK)
		fail_msg("update %s: %s", id, err.message);
}

static void replace_ok(const char *id, const char *body)
{
	cJSON *b = test_json(body);
	twin_error err = {0};
	twin_err rc = twin_replace(db.s, id, b, NULL, NULL, &err);

	cJSON_Delete(b);
	if (rc != TWIN_OK)
		fail_msg("replace %s: %s", id, err.message);
}

static void identity_update_ok(const char *id, const char *spec)
{
	cJSON *b = test_json(spec);
	twin_error err = {0};
	twin_err rc = twin_device_update(db.s, id, b, NULL, NULL, &err);

	cJSON_Delete(b);
	if (rc != TWIN_OK)
		fail_msg("identity update %s: %s", id, err.message);
}

static void delete_ok(const char *id)
{
	twin_error err = {0};

	if (twin_device_delete(db.s, id, NULL, &err) != TWIN_OK)
		fail_msg("delete %s: %s", id, err.message);
}

static void connected_ok(const char *id, int connected)
{
	twin_error err = {0};

	if (twin_device_set_connected(db.s, id, connected, &err) != TWIN_OK)
		fail_msg("set_connected %s %d: %s", id, connected, err.message);
}

static void commit_ok(void)
{
	twin_error err = {0};

	if (twin_store_commit(db.s, &err) != TWIN_OK)
		fail_msg("commit: %s", err.message);
	assert_false(twin_store_batch_open(db.s));
}

static void trim_ok(uint64_t max_count, int64_t max_age, size_t max_delete, size_t want_deleted)
{
	twin_error err = {0};
	size_t deleted = 12345;

	if (twin_changes_trim(db.s, max_count, max_age, max_delete, &deleted, &err) != TWIN_OK)
		fail_msg("trim: %s", err.message);
	assert_int_equal(deleted, want_deleted);
}

/* Growing text for log descriptions. */
typedef struct strbuf {
	char *s;
	size_t len;
} strbuf;

static void text_add(strbuf *t, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	assert_true(n >= 0);
	t->s = realloc(t->s, t->len + (size_t)n + 1);
	assert_non_null(t->s);
	va_start(ap, fmt);
	vsnprintf(t->s + t->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	t->len += (size_t)n;
}

/* "seq opType deviceId" appended to t, ", "-separated. */
static void text_add_entry(strbuf *t, uint64_t seq, const char *op, const char *device_id)
{
	text_add(t, "%s%" PRIu64 " %s %s", t->len ? ", " : "", seq, op, device_id);
}

/* One replay page that must be returned. */
static cJSON *read_page(uint64_t from, size_t limit, const char *device_id, twin_op op)
{
	twin_error err = {0};
	cJSON *page = NULL;

	if (twin_changes_read(db.s, from, limit, device_id, op, &page, &err) != TWIN_OK)
		fail_msg("read from %" PRIu64 ": %s", from, err.message);
	assert_non_null(page);
	assert_true(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(page, "items")));
	return page;
}

static uint64_t number_of(const cJSON *obj, const char *name)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(obj, name);

	assert_true(cJSON_IsNumber(n));
	return (uint64_t)n->valuedouble;
}

static const char *string_of(const cJSON *obj, const char *name)
{
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(obj, name);

	assert_true(cJSON_IsString(s));
	return s->valuestring;
}

/* The log from `from` on, read `limit` entries at a time by following
 * nextSequence until a page comes back empty, as "seq opType deviceId"
 * items. Checks on the way that pages respect the limit, that entries come
 * in rising sequence order and that nextSequence always moves forward.
 * The text is malloc'd ("" for none). */
static char *log_text_from(uint64_t from, size_t limit, const char *device_id, twin_op op)
{
	strbuf t = {calloc(1, 1), 0};
	uint64_t prev = 0;

	assert_non_null(t.s);
	for (;;) {
		cJSON *page = read_page(from, limit, device_id, op), *it;
		cJSON *items = cJSON_GetObjectItemCaseSensitive(page, "items");
		uint64_t next = number_of(page, "nextSequence");
		int n = cJSON_GetArraySize(items);

		assert_true((size_t)n <= limit);
		cJSON_ArrayForEach(it, items)
		{
			uint64_t seq = number_of(it, "sequenceNumber");

			assert_true(seq >= from && seq > prev && seq < next);
			prev = seq;
			text_add_entry(&t, seq, string_of(it, "opType"), string_of(it, "deviceId"));
		}
		cJSON_Delete(page);
		if (n == 0)
			break;
		assert_true(next > from);
		from = next;
	}
	return t.s;
}

static void assert_log_filtered(const char *device_id, twin_op op, const char *want)
{
	char *got = log_text_from(1, 2, device_id, op);

	assert_string_equal(got, want);
	free(got);
}

/* The whole log, read two entries per page. */
static void assert_log(const char *want)
{
	assert_log_filtered(NULL, 0, want);
}

/* Entry seq alone, as replay returns it; caller deletes it. */
static cJSON *entry_get(uint64_t seq)
{
	cJSON *page = read_page(seq, 1, NULL, 0);
	cJSON *items = cJSON_GetObjectItemCaseSensitive(page, "items");
	cJSON *it;

	if (cJSON_GetArraySize(items) != 1)
		fail_msg("no entry %" PRIu64, seq);
	it = cJSON_DetachItemFromArray(items, 0);
	cJSON_Delete(page);
	assert_int_equal(number_of(it, "sequenceNumber"), seq);
	return it;
}

/* The body of entry seq, exactly as stored. */
static void assert_body(uint64_t seq, const char *want)
{
	cJSON *it = entry_get(seq);

	test_assert_json(cJSON_GetObjectItemCaseSensitive(it, "body"), want);
	cJSON_Delete(it);
}

static void assert_actor(uint64_t seq, const char *want)
{
	cJSON *it = entry_get(seq);

	test_assert_json(cJSON_GetObjectItemCaseSensitive(it, "actor"), want);
	cJSON_Delete(it);
}

/* The body of entry seq parsed (it must be valid JSON); caller deletes it. */
static cJSON *body_json(uint64_t seq)
{
	cJSON *it = entry_get(seq), *body;

	body = cJSON_Parse(cJSON_GetObjectItemCaseSensitive(it, "body")->valuestring);
	cJSON_Delete(it);
	assert_non_null(body);
	return body;
}

/* The service view of id, which the twin bodies are cut from. */
static cJSON *view_of(const char *id)
{
	cJSON *view = NULL;

	assert_int_equal(twin_get(db.s, id, &view, NULL), TWIN_OK);
	return view;
}

/* A createDeviceIdentity, replaceTwin or deleteDeviceIdentity body: exactly
 * sequenceNumber (the number seq), then deviceId, etag, version, tags and
 * properties as the service view shows them. Takes view. */
static void assert_twin_body(uint64_t seq, cJSON *view)
{
	static const char *members[] = {"sequenceNumber", "deviceId", "etag",
	                                "version",        "tags",     "properties"};
	cJSON *body = body_json(seq);
	const cJSON *m = body->child;

	for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++, m = m->next) {
		assert_non_null(m);
		assert_string_equal(m->string, members[i]);
		if (i == 0) {
			assert_true(cJSON_IsNumber(m));
			assert_int_equal((uint64_t)m->valuedouble, seq);
		} else if (!cJSON_Compare(m, cJSON_GetObjectItemCaseSensitive(view, members[i]),
		                          1)) {
			fail_msg("entry %" PRIu64 ": %s differs from the twin", seq, members[i]);
		}
	}
	assert_null(m);
	cJSON_Delete(body);
	cJSON_Delete(view);
}

/* A connection body: {"sequenceNumber":"<64 upper-case hex digits of seq>"}. */
static void assert_connection_body(uint64_t seq)
{
	cJSON *body = body_json(seq);
	const cJSON *sn = body->child;
	char *end;

	assert_non_null(sn);
	assert_null(sn->next);
	assert_string_equal(sn->string, "sequenceNumber");
	assert_true(cJSON_IsString(sn));
	assert_int_equal(strlen(sn->valuestring), 64);
	for (const char *p = sn->valuestring; *p; p++)
		assert_non_null(strchr("0123456789ABCDEF", *p));
	assert_int_equal(strtoull(sn->valuestring, &end, 16), seq);
	cJSON_Delete(body);
}

/* Nine changes of every kind over three batches, one entry each. */
#define MIXED_LOG                                                                                  \
	"1 createDeviceIdentity d1, 2 createDeviceIdentity d2, 3 updateTwin d1, "                  \
	"4 updateTwin d1, 5 replaceTwin d2, 6 updateDeviceIdentity d1, "                           \
	"7 deviceConnected d1, 8 deviceDisconnected d1, 9 deleteDeviceIdentity d2"

static void mixed_changes(void)
{
	create_ok("d1");
	create_ok("d2");
	patch_ok("d1", "{\"fw\":\"1.0\"}");
	commit_ok();
	update_ok("d1", "{\"tags\":{\"site\":\"north\"},\"properties\":{\"desired\":{\"i\":30}}}");
	replace_ok("d2", "{\"tags\":{\"t\":1}}");
	identity_update_ok("d1", "{\"status\":\"disabled\"}");
	commit_ok();
	connected_ok("d1", 1);
	connected_ok("d1", 0);
	delete_ok("d2");
	commit_ok();
}

/* What the drain hands out, in the log's text form. */
typedef struct drained {
	strbuf log;
	size_t count;
} drained;

static void collect(void *arg, const twin_change *c)
{
	drained *d = arg;

	text_add_entry(&d->log, c->seq, twin_op_name(c->op), c->device_id);
	d->count++;
}

static void assert_drain(const char *want)
{
	drained d = {{calloc(1, 1), 0}, 0};

	assert_non_null(d.log.s);
	twin_changes_drain(db.s, collect, &d);
	assert_string_equal(d.log.s, want);
	free(d.log.s);
}

/* ---- operation names (§9 envelope) ---- */

static void test_changes_op_names_schemas_and_sources_follow_protocol(void **state)
{
	static const struct {
		twin_op op;
		const char *name, *schema, *source;
	} want[] = {
	        {TWIN_OP_UPDATE_TWIN, "updateTwin", "twinChangeNotification", "twinChangeEvents"},
	        {TWIN_OP_REPLACE_TWIN, "replaceTwin", "twinChangeNotification", "twinChangeEvents"},
	        {TWIN_OP_CREATE_IDENTITY, "createDeviceIdentity", "deviceLifecycleNotification",
	         "deviceLifecycleEvents"},
	        {TWIN_OP_UPDATE_IDENTITY, "updateDeviceIdentity", "deviceLifecycleNotification",
	         "deviceLifecycleEvents"},
	        {TWIN_OP_DELETE_IDENTITY, "deleteDeviceIdentity", "deviceLifecycleNotification",
	         "deviceLifecycleEvents"},
	        {TWIN_OP_CONNECTED, "deviceConnected", "deviceConnectionStateNotification",
	         "deviceConnectionStateEvents"},
	        {TWIN_OP_DISCONNECTED, "deviceDisconnected", "deviceConnectionStateNotification",
	         "deviceConnectionStateEvents"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_string_equal(twin_op_name(want[i].op), want[i].name);
		assert_string_equal(twin_op_schema(want[i].op), want[i].schema);
		assert_string_equal(twin_op_source(want[i].op), want[i].source);
		assert_int_equal(twin_op_parse(want[i].name), want[i].op);
	}
	assert_int_equal(twin_op_parse("updatetwin"), 0);
	assert_int_equal(twin_op_parse(""), 0);
	assert_string_equal(twin_op_name(0), "unknown");
	assert_string_equal(twin_op_name(TWIN_OP_COUNT), "unknown");
}

/* ---- one entry per change, numbered without gaps ---- */

static void test_changes_empty_log_starts_at_one(void **state)
{
	cJSON *page;

	(void)state;
	assert_int_equal(twin_changes_next(db.s), 1);
	page = read_page(1, 10, NULL, 0);
	test_assert_json(page, "{\"items\":[],\"nextSequence\":1,\"lastSequence\":0}");
	cJSON_Delete(page);
}

static void test_changes_every_change_has_one_entry_in_order(void **state)
{
	(void)state;
	mixed_changes();
	assert_log(MIXED_LOG);
	assert_int_equal(twin_changes_next(db.s), 10);
	/* Page sizes do not change what a reader sees. */
	for (size_t limit = 1; limit <= 10; limit++) {
		char *got = log_text_from(1, limit, NULL, 0);

		assert_string_equal(got, MIXED_LOG);
		free(got);
	}
}

static void test_changes_numbering_continues_after_reopen(void **state)
{
	(void)state;
	mixed_changes();
	test_db_reopen(&db);
	assert_log(MIXED_LOG);
	assert_int_equal(twin_changes_next(db.s), 10);
	patch_ok("d1", "{\"fw\":\"1.1\"}");
	connected_ok("d1", 1);
	commit_ok();
	test_db_reopen(&db);
	assert_int_equal(twin_changes_next(db.s), 12);
	assert_log(MIXED_LOG ", 10 updateTwin d1, 11 deviceConnected d1");
}

static void test_changes_aborted_batch_leaves_no_entry_and_its_numbers_are_reused(void **state)
{
	(void)state;
	mixed_changes();
	patch_ok("d1", "{\"aborted\":1}");
	connected_ok("d1", 1);
	create_ok("d3");
	assert_int_equal(twin_changes_next(db.s), 13);
	twin_store_abort(db.s);
	assert_int_equal(twin_changes_next(db.s), 10);
	assert_log(MIXED_LOG);

	patch_ok("d1", "{\"kept\":1}");
	commit_ok();
	assert_log(MIXED_LOG ", 10 updateTwin d1");
	/* Entry 10 is the committed write, not the aborted one that had 10 first. */
	assert_body(10, "{\"sequenceNumber\":10,\"version\":5,\"properties\":{\"reported\":{"
	                "\"kept\":1,\"$metadata\":{\"$lastUpdated\":\"" T0_TEXT "\","
	                "\"kept\":{\"$lastUpdated\":\"" T0_TEXT "\"}},\"$version\":3}}}");
	test_db_reopen(&db);
	assert_int_equal(twin_changes_next(db.s), 11);
}

static void test_changes_rejected_write_adds_no_entry(void **state)
{
	static const char *bad_etag = "\"AAAAAAAAAAA=\"";
	twin_error err;
	cJSON *tags = test_json("{\"tags\":{\"t\":1}}");
	cJSON *backend_reported = test_json("{\"properties\":{\"reported\":{\"r\":1}}}");
	cJSON *bad_desired = test_json("{\"properties\":{\"desired\":{\"$bad\":1}}}");
	cJSON *status = test_json("{\"status\":\"disabled\"}");
	cJSON *bad_status = test_json("{\"status\":\"sleeping\"}");

	(void)state;
	create_ok("d1");
	commit_ok();
	assert_int_equal(twin_patch_reported(db.s, "d1", "{\"a\":", 5, NULL, &err), TWIN_E_INVALID);
	assert_int_equal(twin_patch_reported(db.s, "nobody", "{\"a\":1}", 7, NULL, &err),
	                 TWIN_E_NOT_FOUND);
	assert_int_equal(twin_update(db.s, "d1", tags, bad_etag, NULL, &err), TWIN_E_PRECONDITION);
	assert_int_equal(twin_update(db.s, "d1", backend_reported, NULL, NULL, &err),
	                 TWIN_E_INVALID);
	assert_int_equal(twin_update(db.s, "d1", bad_desired, NULL, NULL, &err), TWIN_E_INVALID);
	assert_int_equal(twin_replace(db.s, "d1", tags, bad_etag, NULL, &err), TWIN_E_PRECONDITION);
	assert_int_equal(twin_device_create(db.s, "d1", NULL, NULL, &err), TWIN_E_EXISTS);
	/* The deviceEtag is "MQ==" (counter 1). */
	assert_int_equal(twin_device_update(db.s, "d1", status, "\"Mg==\"", NULL, &err),
	                 TWIN_E_PRECONDITION);
	assert_int_equal(twin_device_update(db.s, "d1", bad_status, NULL, NULL, &err),
	                 TWIN_E_INVALID);
	assert_int_equal(twin_device_delete(db.s, "d1", "\"Mg==\"", &err), TWIN_E_PRECONDITION);
	assert_int_equal(twin_device_delete(db.s, "nobody", NULL, &err), TWIN_E_NOT_FOUND);
	assert_int_equal(twin_device_set_connected(db.s, "nobody", 1, &err), TWIN_E_NOT_FOUND);
	assert_int_equal(twin_changes_next(db.s), 2);
	commit_ok();
	assert_log("1 createDeviceIdentity d1");
	/* The next accepted write takes the next number. */
	patch_ok("d1", "{\"a\":1}");
	commit_ok();
	assert_log("1 createDeviceIdentity d1, 2 updateTwin d1");
	cJSON_Delete(tags);
	cJSON_Delete(backend_reported);
	cJSON_Delete(bad_desired);
	cJSON_Delete(status);
	cJSON_Delete(bad_status);
}

static void test_changes_empty_patch_or_update_is_not_a_write_and_has_no_entry(void **state)
{
	(void)state;
	create_ok("d1");
	patch_ok("d1", "{}");
	update_ok("d1", "{\"tags\":{},\"properties\":{\"desired\":{},\"reported\":{}}}");
	commit_ok();
	assert_log("1 createDeviceIdentity d1");
}

static void test_changes_noop_write_still_has_an_entry(void **state)
{
	(void)state;
	create_ok("d1");
	patch_ok("d1", "{\"a\":1}");
	patch_ok("d1", "{\"a\":1}");
	update_ok("d1", "{\"tags\":{\"t\":1}}");
	update_ok("d1", "{\"tags\":{\"t\":1}}");
	commit_ok();
	assert_log("1 createDeviceIdentity d1, 2 updateTwin d1, 3 updateTwin d1, "
	           "4 updateTwin d1, 5 updateTwin d1");
}

static void test_changes_entries_survive_map_growth(void **state)
{
	enum { DEVICES = 150 };
	size_t size;
	char id[16];
	cJSON *page, *it;
	uint64_t want = 1;

	(void)state;
	test_db_close(&db);
	test_db_open(&db, "test_changes", 128 * 1024);
	size = twin_store_map_size(db.s);
	for (int i = 0; i < DEVICES; i++) {
		snprintf(id, sizeof(id), "dev%03d", i);
		create_ok(id);
		patch_ok(id, "{\"payload\":\"0123456789012345678901234567890123456789\"}");
	}
	commit_ok();
	assert_true(twin_store_map_size(db.s) > size);
	page = read_page(1, TWIN_CHANGES_READ_MAX, NULL, 0);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(page, "items")), 2 * DEVICES);
	cJSON_ArrayForEach(it, cJSON_GetObjectItem(page, "items"))
	{
		assert_int_equal(number_of(it, "sequenceNumber"), want);
		assert_string_equal(string_of(it, "opType"),
		                    want % 2 ? "createDeviceIdentity" : "updateTwin");
		want++;
	}
	assert_int_equal(number_of(page, "lastSequence"), 2 * DEVICES);
	cJSON_Delete(page);
}

/* ---- drain ---- */

static void test_changes_drain_gives_committed_entries_once_in_order(void **state)
{
	(void)state;
	mixed_changes(); /* three commits, not drained in between */
	assert_drain(MIXED_LOG);
	assert_drain("");
	patch_ok("d1", "{\"x\":1}");
	commit_ok();
	assert_drain("10 updateTwin d1");
	assert_drain("");
}

static void test_changes_drain_before_commit_gives_nothing(void **state)
{
	(void)state;
	create_ok("d1");
	assert_drain("");
	commit_ok();
	assert_drain("1 createDeviceIdentity d1");
}

static void test_changes_drain_after_abort_gives_nothing(void **state)
{
	(void)state;
	create_ok("d1");
	commit_ok();
	patch_ok("d1", "{\"x\":1}");
	connected_ok("d1", 1);
	twin_store_abort(db.s);
	assert_drain("1 createDeviceIdentity d1");
	commit_ok(); /* nothing open: nothing to publish */
	assert_drain("");
	connected_ok("d1", 1);
	commit_ok();
	assert_drain("2 deviceConnected d1");
}

static void count_calls(void *arg, const twin_change *c)
{
	(void)c;
	(*(int *)arg)++;
}

/* A store opened without drain_changes (a tool) writes the log but keeps
 * nothing in memory for publishing. */
static void test_changes_store_without_drain_keeps_only_the_log(void **state)
{
	twin_store_options o;
	twin_store *s;
	twin_error err;
	cJSON *page;
	int calls = 0;

	(void)state;
	twin_store_options_default(&o);
	o.path = db.dir;
	twin_store_close(db.s); /* the same directory, opened as a tool would */
	db.s = NULL;
	assert_int_equal(twin_store_open(&o, &s, &err), TWIN_OK);
	assert_int_equal(twin_device_create(s, "t1", NULL, NULL, &err), TWIN_OK);
	assert_int_equal(twin_store_commit(s, &err), TWIN_OK);
	twin_changes_drain(s, count_calls, &calls);
	assert_int_equal(calls, 0);
	assert_int_equal(twin_changes_read(s, 1, 10, NULL, 0, &page, &err), TWIN_OK);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(page, "items")), 1);
	cJSON_Delete(page);
	twin_store_close(s);
	test_db_reopen(&db);
}

/* The drained entry is the entry replay returns: same fields, same texts. */
static void compare_with_replay(void *arg, const twin_change *c)
{
	char when[TWIN_TIMESTAMP_MAX];
	cJSON *it = entry_get(c->seq);
	const cJSON *actor = cJSON_GetObjectItemCaseSensitive(it, "actor");
	const cJSON *body = cJSON_GetObjectItemCaseSensitive(it, "body");

	assert_string_equal(string_of(it, "opType"), twin_op_name(c->op));
	assert_string_equal(string_of(it, "deviceId"), c->device_id);
	twin_timestamp_format(c->ticks, when);
	assert_string_equal(string_of(it, "operationTimestamp"), when);
	assert_int_equal(strlen(actor->valuestring), c->actor_len);
	assert_memory_equal(actor->valuestring, c->actor, c->actor_len);
	assert_int_equal(strlen(body->valuestring), c->body_len);
	assert_memory_equal(body->valuestring, c->body, c->body_len);
	cJSON_Delete(it);
	(*(size_t *)arg)++;
}

static void test_changes_drained_entry_is_the_replayed_entry(void **state)
{
	size_t n = 0;

	(void)state;
	twin_store_set_actor(db.s, "policy", "svc", "job-1");
	mixed_changes();
	twin_changes_drain(db.s, compare_with_replay, &n);
	assert_int_equal(n, 9);
}

/* ---- replay envelope ---- */

static void test_changes_replay_item_has_the_event_envelope(void **state)
{
	cJSON *it;

	(void)state;
	create_ok("d1");
	commit_ok();
	test_now += 5 * SECOND;
	connected_ok("d1", 1);
	commit_ok();
	it = entry_get(2);
	test_assert_json(it,
	                 "{\"sequenceNumber\":2,\"opType\":\"deviceConnected\","
	                 "\"deviceId\":\"d1\","
	                 "\"operationTimestamp\":\"2024-05-01T08:15:35.1234567Z\","
	                 "\"actor\":{\"type\":\"device\",\"name\":\"d1\"},"
	                 "\"body\":{\"sequenceNumber\":"
	                 "\"0000000000000000000000000000000000000000000000000000000000000002\"}}");
	cJSON_Delete(it);
	it = entry_get(1);
	assert_string_equal(string_of(it, "operationTimestamp"), T0_TEXT);
	cJSON_Delete(it);
}

/* ---- bodies (§9 table) ---- */

static void test_changes_reported_patch_body_is_the_patch_with_touched_metadata(void **state)
{
	(void)state;
	create_ok("d1");
	patch_ok("d1", "{\"keep\":true,\"old\":1,\"o\":{\"w\":0}}");
	commit_ok();
	test_now += SECOND;
	patch_ok("d1", "{\"a\":1,\"o\":{\"x\":\"y\"},\"old\":null}");
	commit_ok();
	/* Nulls kept; "$metadata" has the root and only what the patch set
	 * ("keep", "o.w" untouched, "old" removed); "$version" last. */
	assert_body(3, "{\"sequenceNumber\":3,\"version\":4,\"properties\":{\"reported\":{"
	               "\"a\":1,\"o\":{\"x\":\"y\"},\"old\":null,"
	               "\"$metadata\":{\"$lastUpdated\":\"2024-05-01T08:15:31.1234567Z\","
	               "\"a\":{\"$lastUpdated\":\"2024-05-01T08:15:31.1234567Z\"},"
	               "\"o\":{\"$lastUpdated\":\"2024-05-01T08:15:31.1234567Z\","
	               "\"x\":{\"$lastUpdated\":\"2024-05-01T08:15:31.1234567Z\"}}},"
	               "\"$version\":3}}}");
}

/* Entries are stored packed against the write's stamp (store/changes.c);
 * user data that looks like the stamp, or like its metadata objects, comes
 * back byte for byte, in replay and in the drain. */
static void test_changes_body_holding_the_stamp_text_comes_back_exactly(void **state)
{
	const char *want = "{\"sequenceNumber\":2,\"version\":3,\"properties\":{\"reported\":{"
	                   "\"s\":\"" T0_TEXT "\",\"q\":\"x\\\"" T0_TEXT "\","
	                   "\"o\":{\"lastUpdated\":\"" T0_TEXT "\"},"
	                   "\"$metadata\":{\"$lastUpdated\":\"" T0_TEXT "\","
	                   "\"s\":{\"$lastUpdated\":\"" T0_TEXT "\"},"
	                   "\"q\":{\"$lastUpdated\":\"" T0_TEXT "\"},"
	                   "\"o\":{\"$lastUpdated\":\"" T0_TEXT "\","
	                   "\"lastUpdated\":{\"$lastUpdated\":\"" T0_TEXT "\"}}},"
	                   "\"$version\":2}}}";

	(void)state;
	create_ok("d1");
	patch_ok("d1", "{\"s\":\"" T0_TEXT "\",\"q\":\"x\\\"" T0_TEXT "\","
	               "\"o\":{\"lastUpdated\":\"" T0_TEXT "\"}}");
	commit_ok();
	assert_body(2, want);
}

static void test_changes_backend_update_body_has_the_written_sections_only(void **state)
{
	(void)state;
	create_ok("d1");
	update_ok("d1", "{\"tags\":{\"t\":1,\"gone\":null},"
	                "\"properties\":{\"desired\":{\"p\":\"v\",\"q\":null},\"reported\":{}}}");
	update_ok("d1", "{\"tags\":{\"u\":{\"v\":2}}}");
	update_ok("d1", "{\"properties\":{\"desired\":{\"p\":\"w\"}}}");
	commit_ok();
	assert_body(2, "{\"sequenceNumber\":2,\"version\":3,\"tags\":{\"t\":1,\"gone\":null},"
	               "\"properties\":{\"desired\":{\"p\":\"v\",\"q\":null,"
	               "\"$metadata\":{\"$lastUpdated\":\"" T0_TEXT "\",\"$lastUpdatedVersion\":2,"
	               "\"p\":{\"$lastUpdated\":\"" T0_TEXT "\",\"$lastUpdatedVersion\":2}},"
	               "\"$version\":2}}}");
	assert_body(3, "{\"sequenceNumber\":3,\"version\":4,\"tags\":{\"u\":{\"v\":2}}}");
	assert_body(4, "{\"sequenceNumber\":4,\"version\":5,\"properties\":{\"desired\":{"
	               "\"p\":\"w\","
	               "\"$metadata\":{\"$lastUpdated\":\"" T0_TEXT "\",\"$lastUpdatedVersion\":3,"
	               "\"p\":{\"$lastUpdated\":\"" T0_TEXT "\",\"$lastUpdatedVersion\":3}},"
	               "\"$version\":3}}}");
}

static void test_changes_create_body_is_the_new_twin(void **state)
{
	(void)state;
	create_ok("d1");
	commit_ok();
	assert_body(1, "{\"sequenceNumber\":1,\"deviceId\":\"d1\",\"etag\":\"AAAAAAAAAAE=\","
	               "\"version\":2,\"tags\":{},"
	               "\"properties\":{\"desired\":" EMPTY_SEC ",\"reported\":" EMPTY_SEC "}}");
	assert_twin_body(1, view_of("d1"));
}

static void test_changes_replace_body_is_the_twin_after_the_replace(void **state)
{
	(void)state;
	create_ok("d1");
	patch_ok("d1", "{\"r\":1}");
	update_ok("d1", "{\"properties\":{\"desired\":{\"old\":1}}}");
	test_now += SECOND;
	replace_ok("d1", "{\"tags\":{\"t\":1},\"properties\":{\"desired\":{\"p\":{\"q\":2}}}}");
	commit_ok();
	assert_twin_body(4, view_of("d1"));
}

static void test_changes_delete_body_is_the_twin_before_the_delete(void **state)
{
	cJSON *before;

	(void)state;
	create_ok("d1");
	patch_ok("d1", "{\"r\":1}");
	update_ok("d1", "{\"tags\":{\"t\":1},\"properties\":{\"desired\":{\"p\":2}}}");
	commit_ok();
	before = view_of("d1");
	delete_ok("d1");
	commit_ok();
	assert_log("1 createDeviceIdentity d1, 2 updateTwin d1, 3 updateTwin d1, "
	           "4 deleteDeviceIdentity d1");
	assert_twin_body(4, before);
}

static void test_changes_connection_bodies_are_64_hex_digits_of_the_sequence(void **state)
{
	(void)state;
	create_ok("d1");
	for (int i = 0; i < 15; i++)
		connected_ok("d1", i % 2 == 0); /* entries 2 … 16: hex digits up to F */
	commit_ok();
	for (uint64_t seq = 2; seq <= 16; seq++)
		assert_connection_body(seq);
	assert_body(11, "{\"sequenceNumber\":"
	                "\"000000000000000000000000000000000000000000000000000000000000000B\"}");
	assert_body(16, "{\"sequenceNumber\":"
	                "\"0000000000000000000000000000000000000000000000000000000000000010\"}");
}

static void test_changes_identity_update_body_has_no_symmetric_key(void **state)
{
	twin_identity id;
	cJSON *body;
	const cJSON *auth;
	char *text;

	(void)state;
	create_ok("d1");
	identity_update_ok("d1", "{\"status\":\"disabled\",\"statusReason\":\"maintenance\"}");
	commit_ok();
	assert_int_equal(twin_device_get(db.s, "d1", &id, NULL), TWIN_OK);
	body = body_json(2);
	text = cJSON_PrintUnformatted(body);
	assert_string_equal(body->child->string, "sequenceNumber");
	assert_int_equal(number_of(body, "sequenceNumber"), 2);
	assert_string_equal(string_of(body, "deviceId"), "d1");
	assert_string_equal(string_of(body, "etag"), "Mg=="); /* the new deviceEtag */
	assert_string_equal(string_of(body, "status"), "disabled");
	assert_string_equal(string_of(body, "statusReason"), "maintenance");
	auth = cJSON_GetObjectItemCaseSensitive(body, "authentication");
	assert_string_equal(string_of(auth, "type"), "sas");
	assert_null(cJSON_GetObjectItemCaseSensitive(auth, "symmetricKey"));
	assert_true(id.primary_key[0] && id.secondary_key[0]);
	assert_null(strstr(text, id.primary_key));
	assert_null(strstr(text, id.secondary_key));
	free(text);
	cJSON_Delete(body);
}

/* ---- actors ---- */

static void test_changes_backend_changes_default_to_the_broker_actor(void **state)
{
	(void)state;
	create_ok("d1");
	update_ok("d1", "{\"tags\":{\"t\":1}}");
	commit_ok();
	assert_actor(1, "{\"type\":\"broker\"}");
	assert_actor(2, "{\"type\":\"broker\"}");
}

static void test_changes_backend_changes_have_the_actor_set_by_set_actor(void **state)
{
	static const char *policy = "{\"type\":\"policy\",\"name\":\"svc\",\"jobId\":\"job-7\"}";

	(void)state;
	twin_store_set_actor(db.s, "policy", "svc", "job-7");
	create_ok("d1");
	create_ok("d2");
	update_ok("d1", "{\"tags\":{\"t\":1}}");
	replace_ok("d1", "{\"tags\":{\"t\":2}}");
	identity_update_ok("d1", "{\"status\":\"disabled\"}");
	delete_ok("d2");
	twin_store_set_actor(db.s, "client", "c1", NULL);
	update_ok("d1", "{\"tags\":{\"t\":3}}");
	twin_store_set_actor(db.s, NULL, "ignored", "ignored");
	update_ok("d1", "{\"tags\":{\"t\":4}}");
	commit_ok();
	for (uint64_t seq = 1; seq <= 6; seq++)
		assert_actor(seq, policy);
	assert_actor(7, "{\"type\":\"client\",\"name\":\"c1\"}");
	assert_actor(8, "{\"type\":\"broker\"}");
}

static void test_changes_device_changes_are_made_by_the_device(void **state)
{
	static const char *device = "{\"type\":\"device\",\"name\":\"d1\"}";

	(void)state;
	create_ok("d1");
	twin_store_set_actor(db.s, "policy", "svc", "job-7");
	patch_ok("d1", "{\"r\":1}");
	connected_ok("d1", 1);
	connected_ok("d1", 0);
	connected_ok("d1", 1);
	delete_ok("d1"); /* the disconnect is the device's, the delete the policy's */
	commit_ok();
	assert_log("1 createDeviceIdentity d1, 2 updateTwin d1, 3 deviceConnected d1, "
	           "4 deviceDisconnected d1, 5 deviceConnected d1, 6 deviceDisconnected d1, "
	           "7 deleteDeviceIdentity d1");
	for (uint64_t seq = 2; seq <= 6; seq++)
		assert_actor(seq, device);
	assert_actor(7, "{\"type\":\"policy\",\"name\":\"svc\",\"jobId\":\"job-7\"}");
}

static void test_changes_actor_strings_are_escaped_and_cut_at_128_bytes(void **state)
{
	char long_name[201], want[300];

	(void)state;
	memset(long_name, 'n', 200);
	long_name[200] = '\0';
	create_ok("d1");
	twin_store_set_actor(db.s, "policy", "a\"b\\c", NULL);
	update_ok("d1", "{\"tags\":{\"t\":1}}");
	twin_store_set_actor(db.s, "policy", long_name, long_name);
	update_ok("d1", "{\"tags\":{\"t\":2}}");
	commit_ok();
	assert_actor(2, "{\"type\":\"policy\",\"name\":\"a\\\"b\\\\c\"}");
	snprintf(want, sizeof(want),
	         "{\"type\":\"policy\",\"name\":\"%.128s\",\"jobId\":\"%.128s\"}", long_name,
	         long_name);
	assert_actor(3, want);
}

/* ---- connection rules (§9) ---- */

static void test_changes_takeover_logs_disconnect_then_connect(void **state)
{
	(void)state;
	create_ok("d1");
	connected_ok("d1", 1);
	commit_ok();
	connected_ok("d1", 1);
	commit_ok();
	assert_log("1 createDeviceIdentity d1, 2 deviceConnected d1, 3 deviceDisconnected d1, "
	           "4 deviceConnected d1");
}

static void test_changes_disconnect_of_a_disconnected_device_logs_nothing(void **state)
{
	(void)state;
	create_ok("d1");
	connected_ok("d1", 0);
	connected_ok("d1", 1);
	connected_ok("d1", 0);
	connected_ok("d1", 0);
	commit_ok();
	assert_log("1 createDeviceIdentity d1, 2 deviceConnected d1, 3 deviceDisconnected d1");
}

static void test_changes_delete_of_a_connected_device_logs_disconnect_first(void **state)
{
	(void)state;
	create_ok("d1");
	connected_ok("d1", 1);
	commit_ok();
	delete_ok("d1");
	commit_ok();
	assert_log("1 createDeviceIdentity d1, 2 deviceConnected d1, 3 deviceDisconnected d1, "
	           "4 deleteDeviceIdentity d1");
	assert_connection_body(3);
}

static void test_changes_reset_connections_logs_a_disconnect_per_connected_device(void **state)
{
	size_t count = 99;

	(void)state;
	create_ok("d1");
	create_ok("d2");
	create_ok("d3");
	connected_ok("d1", 1);
	connected_ok("d3", 1);
	commit_ok();
	test_db_reopen(&db); /* a restart after a crash left them marked connected */
	assert_int_equal(twin_registry_reset_connections(db.s, &count, NULL), TWIN_OK);
	assert_int_equal(count, 2);
	commit_ok();
	assert_log("1 createDeviceIdentity d1, 2 createDeviceIdentity d2, "
	           "3 createDeviceIdentity d3, 4 deviceConnected d1, 5 deviceConnected d3, "
	           "6 deviceDisconnected d1, 7 deviceDisconnected d3");
	assert_actor(6, "{\"type\":\"device\",\"name\":\"d1\"}");
	assert_int_equal(twin_registry_reset_connections(db.s, &count, NULL), TWIN_OK);
	assert_int_equal(count, 0);
	commit_ok();
	assert_int_equal(twin_changes_next(db.s), 8);
}

/* ---- replay filters and bounds ---- */

static void test_changes_read_filters_by_device_and_op(void **state)
{
	(void)state;
	mixed_changes();
	assert_log_filtered(
	        "d2", 0, "2 createDeviceIdentity d2, 5 replaceTwin d2, 9 deleteDeviceIdentity d2");
	assert_log_filtered(NULL, TWIN_OP_UPDATE_TWIN, "3 updateTwin d1, 4 updateTwin d1");
	assert_log_filtered("d1", TWIN_OP_CONNECTED, "7 deviceConnected d1");
	assert_log_filtered("d1", TWIN_OP_REPLACE_TWIN, "");
	assert_log_filtered("d", 0, ""); /* an exact match, not a prefix */
	assert_log_filtered("nobody", 0, "");
}

static void test_changes_read_limit_must_be_1_to_1000(void **state)
{
	static cJSON not_null;
	twin_error err = {0};
	cJSON *page = &not_null; /* a refused read sets *out to NULL */

	(void)state;
	mixed_changes();
	assert_int_equal(twin_changes_read(db.s, 1, 0, NULL, 0, &page, &err), TWIN_E_INVALID);
	assert_null(page);
	assert_int_equal(err.err, TWIN_E_INVALID);
	assert_int_equal(
	        twin_changes_read(db.s, 1, TWIN_CHANGES_READ_MAX + 1, NULL, 0, &page, &err),
	        TWIN_E_INVALID);
	assert_null(page);
	assert_int_equal(twin_changes_read(db.s, 1, SIZE_MAX, NULL, 0, &page, &err),
	                 TWIN_E_INVALID);
	assert_null(page);
	page = read_page(1, 1, NULL, 0);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(page, "items")), 1);
	cJSON_Delete(page);
	page = read_page(1, TWIN_CHANGES_READ_MAX, NULL, 0);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(page, "items")), 9);
	cJSON_Delete(page);
}

static void test_changes_read_reports_next_and_last_sequence(void **state)
{
	cJSON *page;

	(void)state;
	mixed_changes();
	page = read_page(1, 4, NULL, 0);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(page, "items")), 4);
	assert_int_equal(number_of(page, "nextSequence"), 5);
	assert_int_equal(number_of(page, "lastSequence"), 9);
	cJSON_Delete(page);
	page = read_page(9, 4, NULL, 0); /* the newest entry */
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(page, "items")), 1);
	assert_int_equal(number_of(page, "nextSequence"), 10);
	cJSON_Delete(page);
	page = read_page(10, 4, NULL, 0); /* caught up: wait at 10 */
	test_assert_json(page, "{\"items\":[],\"nextSequence\":10,\"lastSequence\":9}");
	cJSON_Delete(page);
	/* A filter that matches nothing more still moves the reader to the end. */
	page = read_page(3, 10, "d2", 0);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(page, "items")), 2);
	assert_int_equal(number_of(page, "nextSequence"), 10);
	cJSON_Delete(page);
	page = read_page(3, 1, "d2", 0); /* the page ends at the match */
	assert_int_equal(number_of(cJSON_GetArrayItem(cJSON_GetObjectItem(page, "items"), 0),
	                           "sequenceNumber"),
	                 5);
	assert_int_equal(number_of(page, "nextSequence"), 6);
	cJSON_Delete(page);
}

/* ---- marks and rollback ---- */

static void test_changes_rollback_removes_the_entries_after_the_mark(void **state)
{
	twin_changes_mark mark;

	(void)state;
	create_ok("d1");
	mark = twin_changes_mark_get(db.s);
	assert_int_equal(mark.seq, 2);
	create_ok("d2");
	patch_ok("d2", "{\"r\":1}");
	delete_ok("d2"); /* the caller undoes its writes; the rollback its entries */
	assert_int_equal(twin_changes_next(db.s), 5);
	assert_int_equal(twin_changes_rollback(db.s, mark, NULL), TWIN_OK);
	assert_int_equal(twin_changes_next(db.s), 2);
	commit_ok();
	assert_log("1 createDeviceIdentity d1");
	assert_drain("1 createDeviceIdentity d1");
	/* The numbers rolled back are the next ones given. */
	patch_ok("d1", "{\"r\":2}");
	commit_ok();
	assert_drain("2 updateTwin d1");
	assert_log("1 createDeviceIdentity d1, 2 updateTwin d1");
}

static void test_changes_rollback_to_a_mark_taken_before_the_batch_removes_all(void **state)
{
	twin_changes_mark mark;
	cJSON *bad = test_json("{\"properties\":{\"desired\":{\"$bad\":1}}}");

	(void)state;
	/* createDevice with a bad initial twin, as the control API runs it. */
	mark = twin_changes_mark_get(db.s);
	create_ok("d1");
	assert_int_equal(twin_update(db.s, "d1", bad, NULL, NULL, NULL), TWIN_E_INVALID);
	delete_ok("d1");
	assert_int_equal(twin_changes_rollback(db.s, mark, NULL), TWIN_OK);
	commit_ok();
	assert_log("");
	assert_drain("");
	assert_int_equal(twin_changes_next(db.s), 1);
	cJSON_Delete(bad);
}

static void test_changes_rollback_to_a_mark_of_a_committed_batch_changes_nothing(void **state)
{
	twin_changes_mark mark;

	(void)state;
	create_ok("d1");
	mark = twin_changes_mark_get(db.s);
	create_ok("d2");
	commit_ok();
	create_ok("d3");
	assert_int_equal(twin_changes_rollback(db.s, mark, NULL), TWIN_OK);
	assert_int_equal(twin_changes_next(db.s), 4);
	commit_ok();
	assert_log("1 createDeviceIdentity d1, 2 createDeviceIdentity d2, "
	           "3 createDeviceIdentity d3");
}

/* ---- retention ---- */

/* Entry 1 creates d1, entries 2 … n are reported patches. */
static void make_entries(int n)
{
	create_ok("d1");
	for (int i = 2; i <= n; i++)
		patch_ok("d1", "{\"r\":1}");
	commit_ok();
}

static void test_changes_trim_by_count_keeps_the_newest_max_count(void **state)
{
	cJSON *page;

	(void)state;
	make_entries(10);
	for (int slice = 0; slice < 3; slice++) {
		trim_ok(4, 0, 2, 2);
		commit_ok();
	}
	trim_ok(4, 0, 2, 0);
	commit_ok();
	assert_log("7 updateTwin d1, 8 updateTwin d1, 9 updateTwin d1, 10 updateTwin d1");
	/* A reader behind the trim skips to the oldest entry left. */
	page = read_page(1, 1, NULL, 0);
	assert_int_equal(number_of(cJSON_GetArrayItem(cJSON_GetObjectItem(page, "items"), 0),
	                           "sequenceNumber"),
	                 7);
	assert_int_equal(number_of(page, "lastSequence"), 10);
	cJSON_Delete(page);
	assert_int_equal(twin_changes_next(db.s), 11);
}

static void test_changes_trim_by_age_removes_only_entries_older_than_max_age(void **state)
{
	(void)state;
	create_ok("d1");
	patch_ok("d1", "{\"r\":1}"); /* 1, 2 at T0 */
	commit_ok();
	test_now += 10 * SECOND;
	patch_ok("d1", "{\"r\":2}"); /* 3 at T0 + 10 s */
	commit_ok();
	test_now += 10 * SECOND;
	patch_ok("d1", "{\"r\":3}"); /* 4 at T0 + 20 s */
	commit_ok();
	trim_ok(0, 15 * SECOND, 100, 2);
	commit_ok();
	trim_ok(0, 15 * SECOND, 100, 0);
	assert_log("3 updateTwin d1, 4 updateTwin d1");
	/* Exactly max_age old is not older than max_age. */
	test_now += 10 * SECOND;
	trim_ok(0, 10 * SECOND, 100, 1);
	commit_ok();
	assert_log("4 updateTwin d1");
}

static void test_changes_trim_deletes_at_most_max_delete_per_call(void **state)
{
	(void)state;
	make_entries(10);
	trim_ok(1, 0, 0, 0);
	trim_ok(1, 0, 4, 4);
	trim_ok(1, 0, 4, 4); /* same batch: the slice is per call */
	trim_ok(1, 0, 4, 1);
	trim_ok(1, 0, 4, 0);
	commit_ok();
	assert_log("10 updateTwin d1");
	/* deleted may be NULL. */
	test_now += 100 * SECOND;
	assert_int_equal(twin_changes_trim(db.s, 0, SECOND, 1000, NULL, NULL), TWIN_OK);
	commit_ok();
	assert_log("");
}

static void test_changes_trim_without_limits_deletes_nothing(void **state)
{
	(void)state;
	make_entries(3);
	test_now += 1000 * SECOND;
	trim_ok(0, 0, 100, 0);
	trim_ok(0, -1, 100, 0);
	commit_ok();
	assert_log("1 createDeviceIdentity d1, 2 updateTwin d1, 3 updateTwin d1");
}

static void test_changes_trim_in_an_aborted_batch_deletes_nothing(void **state)
{
	(void)state;
	make_entries(5);
	trim_ok(1, 0, 100, 4);
	twin_store_abort(db.s);
	assert_log("1 createDeviceIdentity d1, 2 updateTwin d1, 3 updateTwin d1, "
	           "4 updateTwin d1, 5 updateTwin d1");
	test_db_reopen(&db);
	assert_int_equal(twin_changes_next(db.s), 6);
}

static void test_changes_numbering_continues_after_trimming_everything(void **state)
{
	cJSON *page;

	(void)state;
	mixed_changes();
	test_now += SECOND;
	trim_ok(0, 1, 1000, 9);
	commit_ok();
	assert_log("");
	assert_int_equal(twin_changes_next(db.s), 10);
	test_db_reopen(&db);
	assert_int_equal(twin_changes_next(db.s), 10);
	page = read_page(1, 10, NULL, 0);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(page, "items")), 0);
	assert_int_equal(number_of(page, "lastSequence"), 0);
	cJSON_Delete(page);
	patch_ok("d1", "{\"after\":\"trim\"}");
	commit_ok();
	assert_log("10 updateTwin d1");
	test_db_reopen(&db);
	assert_int_equal(twin_changes_next(db.s), 11);
	/* Trimmed again down to nothing, the floor moves with it. */
	test_now += SECOND;
	trim_ok(0, 1, 1000, 1);
	commit_ok();
	test_db_reopen(&db);
	assert_int_equal(twin_changes_next(db.s), 11);
	connected_ok("d1", 1);
	commit_ok();
	assert_log("11 deviceConnected d1");
}

/* ---- twin_meta_touched (twin/doc.h) ---- */

static void test_meta_touched_keeps_the_root_and_only_the_patched_nodes(void **state)
{
	cJSON *meta = test_json("{\"$lastUpdated\":\"A\",\"$lastUpdatedVersion\":3,"
	                        "\"a\":{\"$lastUpdated\":\"A\",\"$lastUpdatedVersion\":3},"
	                        "\"b\":{\"$lastUpdated\":\"B\",\"x\":{\"$lastUpdated\":\"B\"},"
	                        "\"y\":{\"$lastUpdated\":\"A\"}},"
	                        "\"c\":{\"$lastUpdated\":\"C\"}}");
	cJSON *patch = test_json("{\"b\":{\"y\":1},\"gone\":null,\"a\":5}");
	cJSON *got;

	(void)state;
	got = twin_meta_touched(meta, patch);
	test_assert_json(got, "{\"$lastUpdated\":\"A\",\"$lastUpdatedVersion\":3,"
	                      "\"b\":{\"$lastUpdated\":\"B\",\"y\":{\"$lastUpdated\":\"A\"}},"
	                      "\"a\":{\"$lastUpdated\":\"A\",\"$lastUpdatedVersion\":3}}");
	cJSON_Delete(got);
	got = twin_meta_touched(meta, NULL);
	test_assert_json(got, "{\"$lastUpdated\":\"A\",\"$lastUpdatedVersion\":3}");
	cJSON_Delete(got);
	cJSON_Delete(meta);
	cJSON_Delete(patch);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(test_changes_op_names_schemas_and_sources_follow_protocol),
	        T(test_changes_empty_log_starts_at_one),
	        T(test_changes_every_change_has_one_entry_in_order),
	        T(test_changes_numbering_continues_after_reopen),
	        T(test_changes_aborted_batch_leaves_no_entry_and_its_numbers_are_reused),
	        T(test_changes_rejected_write_adds_no_entry),
	        T(test_changes_empty_patch_or_update_is_not_a_write_and_has_no_entry),
	        T(test_changes_noop_write_still_has_an_entry),
	        T(test_changes_entries_survive_map_growth),
	        T(test_changes_drain_gives_committed_entries_once_in_order),
	        T(test_changes_drain_before_commit_gives_nothing),
	        T(test_changes_drain_after_abort_gives_nothing),
	        T(test_changes_store_without_drain_keeps_only_the_log),
	        T(test_changes_drained_entry_is_the_replayed_entry),
	        T(test_changes_replay_item_has_the_event_envelope),
	        T(test_changes_reported_patch_body_is_the_patch_with_touched_metadata),
	        T(test_changes_body_holding_the_stamp_text_comes_back_exactly),
	        T(test_changes_backend_update_body_has_the_written_sections_only),
	        T(test_changes_create_body_is_the_new_twin),
	        T(test_changes_replace_body_is_the_twin_after_the_replace),
	        T(test_changes_delete_body_is_the_twin_before_the_delete),
	        T(test_changes_connection_bodies_are_64_hex_digits_of_the_sequence),
	        T(test_changes_identity_update_body_has_no_symmetric_key),
	        T(test_changes_backend_changes_default_to_the_broker_actor),
	        T(test_changes_backend_changes_have_the_actor_set_by_set_actor),
	        T(test_changes_device_changes_are_made_by_the_device),
	        T(test_changes_actor_strings_are_escaped_and_cut_at_128_bytes),
	        T(test_changes_takeover_logs_disconnect_then_connect),
	        T(test_changes_disconnect_of_a_disconnected_device_logs_nothing),
	        T(test_changes_delete_of_a_connected_device_logs_disconnect_first),
	        T(test_changes_reset_connections_logs_a_disconnect_per_connected_device),
	        T(test_changes_read_filters_by_device_and_op),
	        T(test_changes_read_limit_must_be_1_to_1000),
	        T(test_changes_read_reports_next_and_last_sequence),
	        T(test_changes_rollback_removes_the_entries_after_the_mark),
	        T(test_changes_rollback_to_a_mark_taken_before_the_batch_removes_all),
	        T(test_changes_rollback_to_a_mark_of_a_committed_batch_changes_nothing),
	        T(test_changes_trim_by_count_keeps_the_newest_max_count),
	        T(test_changes_trim_by_age_removes_only_entries_older_than_max_age),
	        T(test_changes_trim_deletes_at_most_max_delete_per_call),
	        T(test_changes_trim_without_limits_deletes_nothing),
	        T(test_changes_trim_in_an_aborted_batch_deletes_nothing),
	        T(test_changes_numbering_continues_after_trimming_everything),
	        T(test_meta_touched_keeps_the_root_and_only_the_patched_nodes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
