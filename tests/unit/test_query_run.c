/*
 * test_query_run.c - the query executor (store/query_run.c, query_row.c,
 * query_group.c, query_eval.c) against PROTOCOL.md §8.2-§8.5, one test per
 * rule.
 *
 * Every query goes through the public API on a real store: parse, start,
 * step in small slices, take the page, follow its token. run_all() does
 * that for a whole result and checks on the way that every page with a
 * token is full and that each run holds exactly one reader while it lives.
 * Expression rules are observed through WHERE: a value is "true" when
 * WHERE keeps the row, "false" when WHERE NOT keeps it, and "undefined"
 * when neither does (IS_DEFINED tells undefined from other non-booleans).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"
#include "twin/query.h"
#include "twin/registry.h"
#include "twin/twin.h"

#define SLICE    3                  /* twins per twin_query_step in the helpers */
#define SECOND   10000000LL         /* clock ticks */
#define EMOJI    "\xF0\x9F\x98\x80" /* U+1F600: a surrogate pair in UTF-16 */
#define WIDE     "\xEF\xBD\x9E"     /* U+FF5E: above the surrogates in UTF-16 */
#define E_ACUTE  "\xC3\xA9"         /* U+00E9 */
#define THUMB_LC "0123456789abcdef0123456789abcdef01234567"
#define THUMB_UC "0123456789ABCDEF0123456789ABCDEF01234567"

static test_db db;
static int pages; /* pages read by the last run_all */

static int setup(void **state)
{
	(void)state;
	test_db_open(&db, "query_run", 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	test_db_close(&db);
	return 0;
}

/* ---- writes ---- */

static void create_spec_ok(const char *id, const char *spec)
{
	cJSON *j = spec ? test_json(spec) : NULL;
	twin_error err = {0};

	if (twin_device_create(db.s, id, j, NULL, &err) != TWIN_OK)
		fail_msg("create %s: %s", id, err.message);
	cJSON_Delete(j);
}

static void create_ok(const char *id)
{
	create_spec_ok(id, NULL);
}

/* A back-end update with patch, e.g. {"tags":{…},"properties":{"desired":{…}}}. */
static void update_ok(const char *id, const char *patch)
{
	cJSON *j = test_json(patch);
	twin_write_result res = {0};
	twin_error err = {0};

	if (twin_update(db.s, id, j, NULL, &res, &err) != TWIN_OK)
		fail_msg("update %s: %s", id, err.message);
	twin_write_result_clear(&res);
	cJSON_Delete(j);
}

static void tags_ok(const char *id, const char *tags)
{
	char patch[2048];

	snprintf(patch, sizeof(patch), "{\"tags\":%s}", tags);
	update_ok(id, patch);
}

static void reported_ok(const char *id, const char *body)
{
	twin_write_result res = {0};
	twin_error err = {0};

	if (twin_patch_reported(db.s, id, body, strlen(body), &res, &err) != TWIN_OK)
		fail_msg("reported %s: %s", id, err.message);
	twin_write_result_clear(&res);
}

static void delete_ok(const char *id)
{
	twin_error err = {0};

	if (twin_device_delete(db.s, id, NULL, &err) != TWIN_OK)
		fail_msg("delete %s: %s", id, err.message);
}

static void commit_ok(void)
{
	twin_error err = {0};

	if (twin_store_commit(db.s, &err) != TWIN_OK)
		fail_msg("commit: %s", err.message);
}

/* Devices <prefix>00 … <prefix>(n-1), committed. */
static void create_many(const char *prefix, int n)
{
	char id[64];

	for (int i = 0; i < n; i++) {
		snprintf(id, sizeof(id), "%s%02d", prefix, i);
		create_ok(id);
	}
	commit_ok();
}

/* ---- running queries ---- */

static twin_query *parse_ok(const char *text)
{
	twin_query *q = NULL;
	twin_error err = {0};

	if (twin_query_parse(text, strlen(text), &q, &err) != TWIN_OK)
		fail_msg("parse \"%s\": %s", text, err.message);
	return q;
}

static twin_query_run *start_ok(twin_store *s, const twin_query *q, const char *token,
                                size_t page_size)
{
	twin_query_run *r = NULL;
	twin_error err = {0};

	if (twin_query_start(s, q, token, page_size, &r, &err) != TWIN_OK)
		fail_msg("start: %s", err.message);
	assert_non_null(r);
	return r;
}

static void step_to_done(twin_query_run *r)
{
	twin_error err = {0};
	int done = 0;

	for (int i = 0; !done; i++) {
		if (twin_query_step(r, SLICE, &done, &err) != TWIN_OK)
			fail_msg("step: %s", err.message);
		assert_true(i < 1000000);
	}
}

static cJSON *page_ok(twin_query_run *r, char **next)
{
	twin_error err = {0};
	cJSON *items = NULL;

	if (twin_query_page(r, &items, next, &err) != TWIN_OK)
		fail_msg("page: %s", err.message);
	assert_true(cJSON_IsArray(items));
	return items;
}

static size_t effective_page(size_t page_size)
{
	return page_size == 0 ? 100 : page_size > 1000 ? 1000 : page_size;
}

/* One whole page of q after token; *next is its token (malloc'd) or NULL. */
static cJSON *one_page(twin_store *s, const twin_query *q, const char *token, size_t page_size,
                       char **next)
{
	int readers = twin_store_readers(s);
	twin_query_run *r = start_ok(s, q, token, page_size);
	cJSON *items;

	assert_int_equal(twin_store_readers(s), readers + 1);
	step_to_done(r);
	items = page_ok(r, next);
	twin_query_end(r);
	assert_int_equal(twin_store_readers(s), readers);
	/* A page is cut only when it is full. */
	if (*next != NULL)
		assert_int_equal(cJSON_GetArraySize(items), effective_page(page_size));
	return items;
}

/* Move every item of from to the end of to, and delete from. */
static void append_all(cJSON *to, cJSON *from)
{
	cJSON *it;

	while ((it = cJSON_DetachItemFromArray(from, 0)) != NULL)
		cJSON_AddItemToArray(to, it);
	cJSON_Delete(from);
}

/* The whole result of text: every page, following tokens. */
static cJSON *run_all(twin_store *s, const char *text, size_t page_size)
{
	twin_query *q = parse_ok(text);
	cJSON *all = cJSON_CreateArray();
	char *token = NULL, *next = NULL;

	pages = 0;
	do {
		append_all(all, one_page(s, q, token, page_size, &next));
		free(token);
		token = next;
		assert_true(++pages < 100000);
	} while (token != NULL);
	twin_query_free(q);
	return all;
}

/* Assert the compact print of got (which is deleted) is want. */
static void assert_result(cJSON *got, const char *want)
{
	test_assert_json(got, want);
	cJSON_Delete(got);
}

/* The result of text is want, whatever the page size. */
static void assert_query(const char *text, const char *want)
{
	static const size_t sizes[] = {0, 1, 2, 1000};

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
		assert_result(run_all(db.s, text, sizes[i]), want);
}

/* The deviceIds of rows, comma-separated (e.g. "d1,d2"). */
static void ids_of(const cJSON *rows, char *out, size_t size)
{
	const cJSON *row;
	size_t n = 0;

	out[0] = '\0';
	cJSON_ArrayForEach(row, rows)
	{
		const char *id =
		        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(row, "deviceId"));

		assert_non_null(id);
		n += (size_t)snprintf(out + n, size - n, "%s%s", n ? "," : "", id);
		assert_true(n < size);
	}
}

/* The devices that text returns are want (comma-separated ids). */
static void assert_ids(const char *text, size_t page_size, const char *want)
{
	cJSON *rows = run_all(db.s, text, page_size);
	char got[8192];

	ids_of(rows, got, sizeof(got));
	cJSON_Delete(rows);
	assert_string_equal(got, want);
}

/* ---- expression values through WHERE (device "e") ---- */

static int count_rows(const char *text)
{
	cJSON *rows = run_all(db.s, text, 0);
	int n = cJSON_GetArraySize(rows);

	cJSON_Delete(rows);
	return n;
}

/* "true", "false" or "undefined" (any non-boolean) for expr over device e. */
static const char *truth(const char *expr)
{
	char text[2048];
	int yes, no;

	snprintf(text, sizeof(text), "SELECT deviceId FROM devices WHERE deviceId = 'e' AND (%s)",
	         expr);
	yes = count_rows(text);
	snprintf(text, sizeof(text),
	         "SELECT deviceId FROM devices WHERE deviceId = 'e' AND NOT (%s)", expr);
	no = count_rows(text);
	if (yes > 1 || no > 1 || (yes && no))
		fail_msg("%s: kept by both WHERE x and WHERE NOT x", expr);
	return yes ? "true" : no ? "false" : "undefined";
}

static void expect(const char *expr, const char *want)
{
	const char *got = truth(expr);

	if (strcmp(got, want) != 0)
		fail_msg("%s: got %s, want %s", expr, got, want);
}

/* expr is undefined, not merely some other non-boolean. */
static void expect_undefined(const char *expr)
{
	char defined[1024];

	expect(expr, "undefined");
	snprintf(defined, sizeof(defined), "IS_DEFINED(%s)", expr);
	expect(defined, "false");
}

/* Device e with one value of every type, and device x with nothing. */
static void seed_eval(void)
{
	create_ok("e");
	create_ok("x");
	tags_ok("e",
	        "{\"s\":\"abc\",\"n\":2,\"z\":0,\"neg\":-1.5,\"big\":4503599627370495,"
	        "\"t\":true,\"f\":false,\"o\":{\"x\":1,\"y\":{\"z\":\"deep\"}},\"a\":[1,2],"
	        "\"q\":\"a\\\"b\",\"Site\":\"north\",\"acc\":\"" E_ACUTE "\",\"esc\":\"\\u00e9\","
	        "\"emoji\":\"" EMOJI "\",\"wide\":\"" WIDE "\",\"up\":\"B\",\"low\":\"a\","
	        "\"group\":{\"name\":\"A\\\"B\"},\"nl\":\"a\\nb\",\"ctl\":\"\\u0001x\","
	        "\"sur\":\"\\ud83d\\ude00\"}");
	update_ok("e", "{\"properties\":{\"desired\":{\"interval\":30}}}");
	reported_ok("e", "{\"fw\":{\"ver\":\"1.2\"},\"temp\":21}");
	commit_ok();
}

/* ---- §8.2 semantics ---- */

static void test_query_missing_path_is_undefined(void **state)
{
	(void)state;
	seed_eval();
	expect_undefined("tags.nope");
	expect_undefined("tags.nope = 1");
	expect_undefined("tags.nope.deeper = 1");
	expect_undefined("properties.reported.nope");
	expect_undefined("properties.desired.fw");
	expect_undefined("moduleId");
	expect_undefined("nosuchfield");
	expect("IS_DEFINED(tags.o.y.z)", "true");
}

static void test_query_path_through_non_object_is_undefined(void **state)
{
	(void)state;
	seed_eval();
	expect_undefined("tags.s.length");
	expect_undefined("tags.n.x");
	expect_undefined("tags.a.x");
	expect_undefined("tags.t.x");
	expect_undefined("tags.o.x.y");
	expect_undefined("deviceId.x");
	expect_undefined("status.x");
	expect_undefined("version.x");
	expect_undefined("properties.reported.fw.ver.x");
}

static void test_query_null_equals_null(void **state)
{
	(void)state;
	seed_eval();
	expect("null = null", "true");
	expect("null != null", "false");
	expect("x509Thumbprint.primaryThumbprint = null", "true");
	expect("null = x509Thumbprint.secondaryThumbprint", "true");
	expect("x509Thumbprint.primaryThumbprint <> null", "false");
}

static void test_query_compare_same_types(void **state)
{
	(void)state;
	seed_eval();
	expect("tags.n = 2", "true");
	expect("tags.n = 2.0", "true");
	expect("tags.n != 2", "false");
	expect("tags.n <> 3", "true");
	expect("tags.n < 3", "true");
	expect("tags.n > 3", "false");
	expect("tags.n <= 2", "true");
	expect("tags.n >= 2.5", "false");
	expect("tags.neg < tags.z", "true");
	expect("tags.big = 4503599627370495", "true");
	expect("tags.big > 4503599627370494", "true");
	expect("tags.f < tags.t", "true");
	expect("tags.t = true", "true");
	expect("tags.s = 'abc'", "true");
	expect("tags.s = \"abc\"", "true");
	expect("tags.s > 'abb'", "true");
	expect("tags.s = 'ABC'", "false");
}

static void test_query_compare_different_types_is_undefined(void **state)
{
	(void)state;
	seed_eval();
	expect_undefined("tags.n = '2'");
	expect_undefined("tags.n != '2'");
	expect_undefined("tags.t = 1");
	expect_undefined("tags.n = null");
	expect_undefined("tags.s <> null");
	expect_undefined("tags.s < 5");
	expect_undefined("tags.o = tags.o");
	expect_undefined("tags.a = tags.a");
	expect_undefined("tags.o != 1");
	expect_undefined("tags.nope = tags.nope");
}

static void test_query_strings_compare_by_code_point(void **state)
{
	(void)state;
	seed_eval();
	expect("tags.up < tags.low", "true");     /* 'B' < 'a': not case-folded */
	expect("tags.acc > 'z'", "true");         /* U+00E9 after every ASCII letter */
	expect("tags.emoji > tags.wide", "true"); /* UTF-16 order would say less */
	expect("tags.wide < '" EMOJI "'", "true");
	expect("'ab' < 'abc'", "true");
	expect("'abc' > 'ab'", "true");
	expect("'' < 'a'", "true");
	expect("'10.0' < '2.0'", "true");
}

static void test_query_escaped_strings_compare_by_value(void **state)
{
	(void)state;
	seed_eval();
	expect("tags.q = 'a\"b'", "true");
	expect("tags.q = \"a\\\"b\"", "true");
	expect("tags.esc = tags.acc", "true");
	expect("tags.esc = '\\u00e9'", "true");
	expect("tags.acc = '" E_ACUTE "'", "true");
	expect("tags.q < 'a#'", "true"); /* '"' (0x22) sorts before '#' */
	expect("tags.nl = 'a\\nb'", "true");
	expect("tags.nl > 'a\\tb'", "true");
	expect("tags.ctl = '\\u0001x'", "true");
	expect("tags.ctl < ' '", "true");
	expect("tags.sur = tags.emoji", "true");
	expect("tags.sur = '\\ud83d\\ude00'", "true");
	expect("tags.q IN ['x', 'a\"b']", "true");
}

static void test_query_and_false_beats_undefined(void **state)
{
	(void)state;
	seed_eval();
	expect("tags.f AND tags.nope", "false");
	expect("tags.nope AND tags.f", "false");
	expect("tags.n AND tags.f", "false");
	expect("tags.t AND tags.nope", "undefined");
	expect("tags.nope AND tags.t", "undefined");
	expect("tags.t AND tags.n", "undefined");
	expect("tags.t AND tags.t", "true");
	expect("tags.t AND tags.f", "false");
}

static void test_query_or_true_beats_undefined(void **state)
{
	(void)state;
	seed_eval();
	expect("tags.t OR tags.nope", "true");
	expect("tags.nope OR tags.t", "true");
	expect("tags.s OR tags.t", "true");
	expect("tags.f OR tags.nope", "undefined");
	expect("tags.nope OR tags.f", "undefined");
	expect("tags.f OR tags.f", "false");
	expect("tags.f OR tags.t", "true");
}

static void test_query_not_undefined_is_undefined(void **state)
{
	(void)state;
	seed_eval();
	expect_undefined("NOT tags.nope");
	expect_undefined("NOT tags.n");
	expect_undefined("NOT tags.s");
	expect_undefined("NOT (tags.n = 'x')");
	expect("NOT tags.t", "false");
	expect("NOT tags.f", "true");
	expect("NOT NOT tags.t", "true");
}

static void test_query_where_keeps_only_exactly_true(void **state)
{
	(void)state;
	seed_eval();
	assert_ids("SELECT deviceId FROM devices WHERE tags.t", 0, "e");
	assert_ids("SELECT deviceId FROM devices WHERE tags.n", 0, "");
	assert_ids("SELECT deviceId FROM devices WHERE tags.s", 0, "");
	assert_ids("SELECT deviceId FROM devices WHERE tags.o", 0, "");
	assert_ids("SELECT deviceId FROM devices WHERE tags.nope", 0, "");
	assert_ids("SELECT deviceId FROM devices WHERE null", 0, "");
	assert_ids("SELECT deviceId FROM devices WHERE true", 0, "e,x");
	assert_ids("SELECT deviceId FROM devices WHERE NOT tags.t", 0, "");
}

static void test_query_in_true_when_equal_to_an_element(void **state)
{
	(void)state;
	seed_eval();
	expect("tags.n IN [1, 2]", "true");
	expect("tags.n IN [1, 3]", "false");
	expect("tags.n IN ['2', true]", "false");
	expect("tags.s IN ['x', 'abc']", "true");
	expect("tags.t IN [false, true]", "true");
	expect("null IN [1, null]", "true");
	expect("x509Thumbprint.primaryThumbprint IN [null]", "true");
}

static void test_query_in_with_undefined_left_is_undefined(void **state)
{
	(void)state;
	seed_eval();
	expect_undefined("tags.nope IN [1, 2]");
	expect_undefined("tags.nope NIN [1, 2]");
	expect_undefined("(tags.s + 1) IN [1]");
}

static void test_query_nin_true_when_equal_to_none(void **state)
{
	(void)state;
	seed_eval();
	expect("tags.n NIN [1, 3]", "true");
	expect("tags.n NIN [1, 2]", "false");
	expect("tags.n NIN ['2']", "true");
	expect("tags.s NIN ['abc']", "false");
	expect("null NIN [null]", "false");
}

static void test_query_arithmetic_on_numbers(void **state)
{
	(void)state;
	seed_eval();
	expect("tags.n + 3 = 5", "true");
	expect("tags.n - 5 = -3", "true");
	expect("tags.n * 4 = 8", "true");
	expect("5 / 2 = 2.5", "true");
	expect("7 % 3 = 1", "true");
	expect("tags.neg * 2 = -3", "true");
	expect("-tags.n = -2", "true");
	expect("-(tags.neg) = 1.5", "true");
	expect("tags.n + tags.neg = 0.5", "true");
}

static void test_query_arithmetic_on_non_numbers_is_undefined(void **state)
{
	(void)state;
	seed_eval();
	expect_undefined("tags.s + 1");
	expect_undefined("'1' + 1");
	expect_undefined("tags.s + tags.s");
	expect_undefined("tags.t + 1");
	expect_undefined("null * 2");
	expect_undefined("tags.o - 1");
	expect_undefined("tags.a * 1");
	expect_undefined("tags.nope + 1");
	expect_undefined("1 + tags.nope");
	expect_undefined("-tags.s");
	expect_undefined("-tags.nope");
	expect_undefined("(tags.s + 1) = (tags.s + 1)");
}

static void test_query_division_by_zero_is_undefined(void **state)
{
	(void)state;
	seed_eval();
	expect_undefined("tags.n / 0");
	expect_undefined("tags.n / tags.z");
	expect_undefined("tags.n % 0");
	expect_undefined("tags.n % tags.z");
	expect_undefined("0 / 0");
	expect_undefined("tags.n / 0 = tags.n / 0");
	expect("tags.z / tags.n = 0", "true");
}

static void test_query_top_level_names_case_insensitive(void **state)
{
	(void)state;
	seed_eval();
	expect("DEVICEID = 'e'", "true");
	expect("DeviceId = 'e'", "true");
	expect("TAGS.s = 'abc'", "true");
	expect("Tags.o.x = 1", "true");
	expect("PROPERTIES.REPORTED.temp = 21", "true");
	expect("Properties.Desired.interval = 30", "true");
	expect("properties.DESIRED.$version = 2", "true");
	expect("STATUS = 'enabled'", "true");
	expect("ConnectionState = 'Disconnected'", "true");
	expect("AUTHENTICATIONTYPE = 'sas'", "true");
	expect("VERSION = version", "true");
	expect("Etag = etag", "true");
	expect("CAPABILITIES.iotEdge = false", "true");
	expect("X509THUMBPRINT.primaryThumbprint = null", "true");
}

static void test_query_names_below_tags_case_sensitive(void **state)
{
	(void)state;
	seed_eval();
	expect("tags.Site = 'north'", "true");
	expect_undefined("tags.site");
	expect_undefined("tags.SITE");
	expect_undefined("tags.O.x");
	expect_undefined("tags.o.X");
	expect_undefined("properties.reported.FW.ver");
	expect_undefined("properties.reported.fw.VER");
	expect_undefined("properties.desired.Interval");
	expect_undefined("properties.reported.$Version");
}

static void test_query_bracketed_names_match_like_plain_ones(void **state)
{
	(void)state;
	seed_eval();
	expect("tags.[[group]].name = 'A\"B'", "true");
	expect("tags.[[s]] = 'abc'", "true");
	expect("[[tags]].[[o]].[[x]] = 1", "true");
	expect_undefined("tags.[[Group]].name");
}

static void test_query_paths_skip_strings_that_look_like_json(void **state)
{
	(void)state;
	create_ok("e");
	tags_ok("e", "{\"a\":\"{\\\"k\\\":1}\",\"b\":\"x\\\\\",\"c\":[{\"k\":3}],\"o\":{\"k\":4},"
	             "\"k\":2}");
	commit_ok();
	expect("tags.k = 2", "true");
	expect("tags.o.k = 4", "true");
	expect("tags.b = 'x\\\\'", "true");
	expect("tags.a = '{\"k\":1}'", "true");
	expect_undefined("tags.a.k");
	expect_undefined("tags.c.k");
}

static void test_query_names_with_escapes_match_by_value(void **state)
{
	(void)state;
	create_ok("e");
	tags_ok("e", "{\"k\\\"q\":1,\"b\\\\s\":2,\"\\u00e9\":{\"n\":3}}");
	commit_ok();
	expect("tags.[[k\"q]] = 1", "true");
	expect("tags.[[b\\s]] = 2", "true");
	expect("tags.[[" E_ACUTE "]].n = 3", "true");
	assert_query("SELECT tags.[[k\"q]], tags.[[" E_ACUTE "]].n AS n FROM devices",
	             "[{\"k\\\"q\":1,\"n\":3}]");
}

/* The IS_* functions over one value of each kind. */
static const char *const kinds[] = {
        "null",      "x509Thumbprint.primaryThumbprint",
        "tags.t",    "tags.f",
        "tags.n",    "tags.s",
        "tags.o",    "tags.a",
        "tags.nope", "undefined",
};
#define KINDS (sizeof(kinds) / sizeof(kinds[0]))

/* want: one letter per entry of kinds, 't' true or 'f' false. */
static void expect_function(const char *fn, const char *want)
{
	char expr[256];

	assert_int_equal(strlen(want), KINDS);
	seed_eval();
	for (size_t i = 0; i < KINDS; i++) {
		snprintf(expr, sizeof(expr), "%s(%s)", fn, kinds[i]);
		expect(expr, want[i] == 't' ? "true" : "false");
	}
}

static void test_query_is_defined_true_even_for_null(void **state)
{
	(void)state;
	expect_function("IS_DEFINED", "ttttttttff");
}

static void test_query_is_null_only_for_null(void **state)
{
	(void)state;
	expect_function("IS_NULL", "ttffffffff");
}

static void test_query_is_bool_only_for_booleans(void **state)
{
	(void)state;
	expect_function("IS_BOOL", "ffttffffff");
}

static void test_query_is_number_only_for_numbers(void **state)
{
	(void)state;
	expect_function("IS_NUMBER", "fffftfffff");
}

static void test_query_is_string_only_for_strings(void **state)
{
	(void)state;
	expect_function("IS_STRING", "ffffftffff");
}

static void test_query_is_object_only_for_objects(void **state)
{
	(void)state;
	expect_function("IS_OBJECT", "fffffftfff");
}

static void test_query_is_array_only_for_arrays(void **state)
{
	(void)state;
	expect_function("IS_ARRAY", "ffffffftff");
}

static void test_query_is_primitive_for_null_bool_number_string(void **state)
{
	(void)state;
	expect_function("IS_PRIMITIVE", "ttttttffff");
}

static void test_query_type_functions_on_computed_values(void **state)
{
	(void)state;
	seed_eval();
	expect("IS_NUMBER(tags.n + 1)", "true");
	expect("IS_BOOL(tags.n = 2)", "true");
	expect("IS_BOOL(tags.n = 'x')", "false");
	expect("IS_STRING(deviceId)", "true");
	expect("IS_NUMBER(version)", "true");
	expect("IS_OBJECT(properties.reported)", "true");
	expect("IS_OBJECT(tags)", "true");
	expect("IS_OBJECT(properties.desired.$metadata)", "true");
	expect("IS_NUMBER(properties.reported.$version)", "true");
}

static void test_query_startswith_endswith_contains_are_case_sensitive(void **state)
{
	(void)state;
	seed_eval();
	expect("STARTSWITH(tags.s, 'ab')", "true");
	expect("STARTSWITH(tags.s, 'AB')", "false");
	expect("STARTSWITH(tags.s, 'abcd')", "false");
	expect("STARTSWITH(tags.s, '')", "true");
	expect("ENDSWITH(tags.s, 'bc')", "true");
	expect("ENDSWITH(tags.s, 'BC')", "false");
	expect("ENDSWITH(tags.s, 'ab')", "false");
	expect("CONTAINS(tags.s, 'b')", "true");
	expect("CONTAINS(tags.s, 'B')", "false");
	expect("CONTAINS(tags.s, 'abc')", "true");
	expect("CONTAINS(tags.s, 'bd')", "false");
	expect("CONTAINS(tags.s, '')", "true");
	expect("ENDSWITH(tags.s, '')", "true");
	expect("CONTAINS(tags.q, '\"')", "true");
	expect("ENDSWITH(tags.q, '\"b')", "true");
	expect("ENDSWITH(tags.esc, '" E_ACUTE "')", "true");
	expect("startswith(deviceId, 'e')", "true");
}

static void test_query_startswith_endswith_contains_need_two_strings(void **state)
{
	(void)state;
	seed_eval();
	expect_undefined("STARTSWITH(tags.n, '2')");
	expect_undefined("STARTSWITH(tags.s, 1)");
	expect_undefined("STARTSWITH(tags.nope, 'a')");
	expect_undefined("ENDSWITH(tags.s, tags.nope)");
	expect_undefined("ENDSWITH(null, 'a')");
	expect_undefined("CONTAINS(tags.o, 'x')");
	expect_undefined("CONTAINS(tags.a, 1)");
	expect_undefined("CONTAINS(tags.t, 'true')");
}

static void test_query_precedence_arith_before_compare(void **state)
{
	(void)state;
	seed_eval();
	expect("tags.n + 1 = 3", "true");
	expect("3 = tags.n + 1", "true");
	expect("tags.n * 2 > 3", "true");
	expect("tags.n - 1 IN [1]", "true");
}

static void test_query_precedence_mul_before_add(void **state)
{
	(void)state;
	seed_eval();
	expect("1 + 2 * 3 = 7", "true");
	expect("tags.n + tags.n * tags.n = 6", "true");
	expect("7 - 4 % 3 = 6", "true");
	expect("10 - 2 - 3 = 5", "true");
	expect("12 / 3 / 2 = 2", "true");
	expect("-tags.n * 3 = -6", "true");
	expect("(1 + 2) * 3 = 9", "true");
}

static void test_query_precedence_compare_before_not_before_and_before_or(void **state)
{
	(void)state;
	seed_eval();
	expect("NOT tags.n = 3", "true");              /* NOT (n = 3) */
	expect("NOT tags.t AND tags.nope", "false");   /* (NOT t) AND undefined */
	expect("tags.t OR tags.f AND tags.f", "true"); /* t OR (f AND f) */
	expect("tags.f AND tags.f OR tags.t", "true"); /* (f AND f) OR t */
	expect("(tags.t OR tags.f) AND tags.f", "false");
}

/* ---- projections (§8.3) ---- */

static void test_query_projection_alias_names_member(void **state)
{
	(void)state;
	seed_eval();
	assert_query("SELECT deviceId AS id, tags.o.x AS ox, properties.reported.fw.ver AS fwv "
	             "FROM devices WHERE deviceId = 'e'",
	             "[{\"id\":\"e\",\"ox\":1,\"fwv\":\"1.2\"}]");
}

static void test_query_projection_default_name_is_last_segment(void **state)
{
	(void)state;
	seed_eval();
	assert_query("SELECT tags.o.x, properties.reported.fw.ver, tags.[[group]].name, tags.Site "
	             "FROM devices WHERE deviceId = 'e'",
	             "[{\"x\":1,\"ver\":\"1.2\",\"name\":\"A\\\"B\",\"Site\":\"north\"}]");
}

static void test_query_projection_system_names_canonical_case(void **state)
{
	(void)state;
	seed_eval();
	assert_query("SELECT DEVICEID, Status, CONNECTIONSTATE, authenticationtype, VERSION "
	             "FROM devices WHERE deviceId = 'e'",
	             "[{\"deviceId\":\"e\",\"status\":\"enabled\",\"connectionState\":"
	             "\"Disconnected\",\"authenticationType\":\"sas\",\"version\":5}]");
	assert_query("SELECT Tags, X509THUMBPRINT, Capabilities FROM devices WHERE deviceId = 'x'",
	             "[{\"tags\":{},\"x509Thumbprint\":{\"primaryThumbprint\":null,"
	             "\"secondaryThumbprint\":null},\"capabilities\":{\"iotEdge\":false}}]");
}

static void test_query_projection_omits_undefined(void **state)
{
	(void)state;
	seed_eval();
	assert_query("SELECT deviceId, tags.nope, tags.s.x AS sx, moduleId, statusReason "
	             "FROM devices",
	             "[{\"deviceId\":\"e\"},{\"deviceId\":\"x\"}]");
	/* A row whose every item is undefined is still a row. */
	assert_query("SELECT tags.s FROM devices", "[{\"s\":\"abc\"},{}]");
}

static void test_query_projection_returns_objects_and_arrays_as_json(void **state)
{
	cJSON *rows, *copy;
	char *text;

	(void)state;
	seed_eval();
	assert_query(
	        "SELECT tags.o, tags.a, properties.reported.fw FROM devices WHERE deviceId = 'e'",
	        "[{\"o\":{\"x\":1,\"y\":{\"z\":\"deep\"}},\"a\":[1,2],\"fw\":{\"ver\":\"1.2\"}}]");
	/* Printed as JSON values, never as strings holding JSON. */
	rows = run_all(db.s, "SELECT tags.o FROM devices WHERE deviceId = 'e'", 0);
	text = cJSON_PrintUnformatted(rows);
	copy = test_json(text);
	assert_true(
	        cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(copy, 0), "o")));
	free(text);
	cJSON_Delete(copy);
	cJSON_Delete(rows);
}

/* ---- the service view (§4) ---- */

/* Assert that every item of rows prints as twin_get's view of its device. */
static void assert_rows_are_twins(const cJSON *rows)
{
	const cJSON *row;

	cJSON_ArrayForEach(row, rows)
	{
		const char *id =
		        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(row, "deviceId"));
		char *want, *got = cJSON_PrintUnformatted(row);

		assert_non_null(id);
		want = test_twin_text(db.s, id);
		assert_string_equal(got, want);
		free(got);
		free(want);
	}
}

/* Devices in several states: fresh, written, disconnected after a
 * connect, disabled with a reason, selfSigned, tags with escapes. */
static void seed_views(void)
{
	create_ok("fresh");
	create_ok("full");
	test_now = TEST_T0 + SECOND;
	tags_ok("full",
	        "{\"site\":\"north\",\"n\":{\"deep\":[1,{\"k\":\"v\"}]},\"q\":\"a\\\"b\\\\\"}");
	update_ok("full", "{\"properties\":{\"desired\":{\"interval\":30,\"o\":{\"a\":1.5}}}}");
	test_now += SECOND;
	reported_ok("full", "{\"fw\":{\"ver\":\"1.2\"},\"nums\":[0.1,1e21,-2,4503599627370495],"
	                    "\"u\":\"" EMOJI "\\u00e9\"}");
	assert_int_equal(twin_device_set_connected(db.s, "full", 1, NULL), TWIN_OK);
	assert_int_equal(twin_device_set_activity(db.s, "full", TEST_T0 + 5 * SECOND, NULL),
	                 TWIN_OK);
	create_spec_ok("off", "{\"status\":\"disabled\",\"statusReason\":\"maintenance\"}");
	create_spec_ok("x509", "{\"authentication\":{\"type\":\"selfSigned\",\"x509Thumbprint\":"
	                       "{\"primaryThumbprint\":\"" THUMB_LC "\"}}}");
	commit_ok();
}

static void test_query_select_star_equals_twin_get(void **state)
{
	cJSON *rows;

	(void)state;
	seed_views();
	rows = run_all(db.s, "SELECT * FROM devices", 0);
	assert_int_equal(cJSON_GetArraySize(rows), 4);
	assert_rows_are_twins(rows);
	cJSON_Delete(rows);
}

static void test_query_select_star_after_reported_only_write(void **state)
{
	cJSON *rows;

	(void)state;
	create_ok("d1");
	reported_ok("d1", "{\"a\":{\"b\":1}}");
	reported_ok("d1", "{\"a\":{\"b\":null}}");
	commit_ok();
	rows = run_all(db.s, "SELECT * FROM devices", 1);
	assert_int_equal(cJSON_GetArraySize(rows), 1);
	assert_rows_are_twins(rows);
	cJSON_Delete(rows);
}

static void test_query_projection_of_every_field_matches_twin_get(void **state)
{
	cJSON *rows;

	(void)state;
	seed_views();
	rows = run_all(db.s,
	               "SELECT deviceId, etag, deviceEtag, status, statusReason, statusUpdateTime, "
	               "connectionState, lastActivityTime, cloudToDeviceMessageCount, "
	               "authenticationType, x509Thumbprint, modelId, version, capabilities, tags, "
	               "properties FROM devices",
	               2);
	assert_int_equal(cJSON_GetArraySize(rows), 4);
	assert_rows_are_twins(rows);
	cJSON_Delete(rows);
}

/* The compact print of the member at dotted path in twin_get's view of id
 * (malloc'd). */
static char *view_part(const char *id, const char *path)
{
	twin_error err = {0};
	cJSON *twin = NULL, *at;
	char buf[256], *seg, *save = NULL, *text;

	if (twin_get(db.s, id, &twin, &err) != TWIN_OK)
		fail_msg("twin_get %s: %s", id, err.message);
	snprintf(buf, sizeof(buf), "%s", path);
	at = twin;
	for (seg = strtok_r(buf, ".", &save); seg; seg = strtok_r(NULL, ".", &save))
		at = cJSON_GetObjectItemCaseSensitive(at, seg);
	assert_non_null(at);
	text = cJSON_PrintUnformatted(at);
	cJSON_Delete(twin);
	return text;
}

/* SELECT <path> AS v FROM devices WHERE deviceId = id prints as twin_get's
 * member at path. */
static void assert_path_like_view(const char *id, const char *path)
{
	char text[512], want[8192], *part = view_part(id, path);

	snprintf(text, sizeof(text), "SELECT %s AS v FROM devices WHERE deviceId = '%s'", path, id);
	snprintf(want, sizeof(want), "[{\"v\":%s}]", part);
	free(part);
	assert_query(text, want);
}

static void test_query_sections_match_twin_get(void **state)
{
	static const char *const paths[] = {
	        "tags",
	        "properties",
	        "properties.desired",
	        "properties.reported",
	        "properties.desired.$metadata",
	        "properties.reported.$metadata",
	        "properties.desired.$metadata.interval",
	        "properties.reported.$metadata.fw.ver",
	};

	(void)state;
	seed_views();
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		assert_path_like_view("full", paths[i]);
		if (i != 6 && i != 7)
			assert_path_like_view("fresh", paths[i]);
	}
}

/* $metadata is stored without inherited stamps (store/doc_meta.c); every
 * stamp a query reads, inherited or written down, is the one twin_get
 * shows, and so is every metadata node. */
static void test_query_metadata_stored_compact_reads_like_the_view(void **state)
{
	static const char *const paths[] = {
	        "properties.reported.$metadata.$lastUpdated",
	        "properties.reported.$metadata.a.$lastUpdated",
	        "properties.reported.$metadata.a.x.$lastUpdated",
	        "properties.reported.$metadata.a.y.$lastUpdated",
	        "properties.reported.$metadata.a.z.$lastUpdated",
	        "properties.reported.$metadata.b.$lastUpdated",
	        "properties.reported.$metadata.a",
	        "properties.desired.$metadata.$lastUpdatedVersion",
	        "properties.desired.$metadata.p.$lastUpdated",
	        "properties.desired.$metadata.p.$lastUpdatedVersion",
	        "properties.desired.$metadata.p.q.$lastUpdatedVersion",
	        "properties.desired.$metadata.p.r.$lastUpdatedVersion",
	        "properties.desired.$metadata.p.r.$lastUpdated",
	        "properties.desired.$metadata.p",
	};

	(void)state;
	create_ok("m");
	reported_ok("m", "{\"a\":{\"x\":1,\"y\":2,\"z\":{\"deep\":true}}}");
	update_ok("m", "{\"properties\":{\"desired\":{\"p\":{\"q\":1,\"r\":2}}}}");
	commit_ok();
	test_now += SECOND;
	reported_ok("m", "{\"a\":{\"y\":3},\"b\":4}");
	update_ok("m", "{\"properties\":{\"desired\":{\"p\":{\"r\":3}}}}");
	commit_ok();
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		assert_path_like_view("m", paths[i]);
	assert_ids("SELECT deviceId FROM devices "
	           "WHERE properties.reported.$metadata.a.x.$lastUpdated < "
	           "properties.reported.$metadata.a.y.$lastUpdated",
	           0, "m");
	assert_ids("SELECT deviceId FROM devices "
	           "WHERE IS_DEFINED(properties.reported.$metadata.nope.$lastUpdated) "
	           "OR IS_DEFINED(properties.reported.$metadata.a.x.y.$lastUpdated) "
	           "OR IS_DEFINED(properties.reported.$metadata.a.$lastUpdatedVersion)",
	           0, "");
}

static void test_query_metadata_and_version_paths(void **state)
{
	(void)state;
	seed_views();
	assert_query(
	        "SELECT properties.desired.$version AS dv, properties.reported.$version AS rv, "
	        "properties.desired.$metadata.$lastUpdatedVersion AS dlv, "
	        "properties.desired.$metadata.interval.$lastUpdated AS it, "
	        "properties.desired.$metadata.o.a.$lastUpdatedVersion AS av, "
	        "properties.reported.$metadata.fw.ver.$lastUpdated AS ft, "
	        "properties.reported.$metadata.fw.ver.$lastUpdatedVersion AS none "
	        "FROM devices WHERE deviceId = 'full'",
	        "[{\"dv\":2,\"rv\":2,\"dlv\":2,\"it\":\"2024-05-01T08:15:31.1234567Z\","
	        "\"av\":2,\"ft\":\"2024-05-01T08:15:32.1234567Z\"}]");
	assert_query("SELECT properties.reported.$version AS rv, "
	             "properties.reported.$metadata.$lastUpdated AS lu FROM devices "
	             "WHERE deviceId = 'fresh'",
	             "[{\"rv\":1,\"lu\":\"0001-01-01T00:00:00Z\"}]");
	assert_ids("SELECT deviceId FROM devices WHERE properties.desired.$version = 2", 0, "full");
	assert_ids("SELECT deviceId FROM devices "
	           "WHERE properties.reported.$metadata.fw.$lastUpdated > '2024'",
	           0, "full");
	assert_ids("SELECT deviceId FROM devices WHERE IS_DEFINED(tags.$version) "
	           "OR IS_DEFINED(tags.$metadata) OR IS_DEFINED(properties.desired.$version.x)",
	           0, "");
}

static void test_query_identity_fields_of_new_device(void **state)
{
	(void)state;
	create_ok("d1");
	commit_ok();
	assert_query(
	        "SELECT status, connectionState, authenticationType, "
	        "x509Thumbprint.primaryThumbprint AS p, x509Thumbprint.secondaryThumbprint AS s, "
	        "capabilities.iotEdge AS edge, etag, version, cloudToDeviceMessageCount, "
	        "modelId, lastActivityTime FROM devices",
	        "[{\"status\":\"enabled\",\"connectionState\":\"Disconnected\","
	        "\"authenticationType\":\"sas\",\"p\":null,\"s\":null,\"edge\":false,"
	        "\"etag\":\"AAAAAAAAAAE=\",\"version\":2,\"cloudToDeviceMessageCount\":0,"
	        "\"modelId\":\"\",\"lastActivityTime\":\"0001-01-01T00:00:00Z\"}]");
}

static void test_query_identity_fields_follow_identity(void **state)
{
	(void)state;
	seed_views();
	assert_query(
	        "SELECT deviceId, status, statusReason, connectionState, authenticationType, "
	        "x509Thumbprint.primaryThumbprint AS p, lastActivityTime FROM devices",
	        "[{\"deviceId\":\"fresh\",\"status\":\"enabled\","
	        "\"connectionState\":\"Disconnected\",\"authenticationType\":\"sas\",\"p\":null,"
	        "\"lastActivityTime\":\"0001-01-01T00:00:00Z\"},"
	        "{\"deviceId\":\"full\",\"status\":\"enabled\","
	        "\"connectionState\":\"Connected\",\"authenticationType\":\"sas\",\"p\":null,"
	        "\"lastActivityTime\":\"2024-05-01T08:15:35.1234567Z\"},"
	        "{\"deviceId\":\"off\",\"status\":\"disabled\",\"statusReason\":\"maintenance\","
	        "\"connectionState\":\"Disconnected\",\"authenticationType\":\"sas\",\"p\":null,"
	        "\"lastActivityTime\":\"0001-01-01T00:00:00Z\"},"
	        "{\"deviceId\":\"x509\",\"status\":\"enabled\","
	        "\"connectionState\":\"Disconnected\",\"authenticationType\":\"selfSigned\","
	        "\"p\":\"" THUMB_UC "\",\"lastActivityTime\":\"0001-01-01T00:00:00Z\"}]");
	assert_ids("SELECT deviceId FROM devices WHERE IS_STRING(x509Thumbprint.primaryThumbprint)",
	           0, "x509");
	assert_ids("SELECT deviceId FROM devices WHERE status = 'disabled'", 0, "off");
	assert_ids("SELECT deviceId FROM devices WHERE capabilities.iotEdge = false", 0,
	           "fresh,full,off,x509");
}

static void test_query_etag_and_version_follow_writes(void **state)
{
	(void)state;
	create_ok("d1");
	tags_ok("d1", "{\"a\":1}");
	reported_ok("d1", "{\"b\":2}");
	assert_int_equal(twin_device_set_connected(db.s, "d1", 1, NULL), TWIN_OK);
	commit_ok();
	assert_query("SELECT etag, version FROM devices",
	             "[{\"etag\":\"AAAAAAAAAAM=\",\"version\":4}]");
	assert_path_like_view("d1", "etag");
	assert_path_like_view("d1", "deviceEtag");
	assert_path_like_view("d1", "statusUpdateTime");
	assert_ids("SELECT deviceId FROM devices WHERE version = 4 AND etag = 'AAAAAAAAAAM='", 0,
	           "d1");
}

/* ---- aggregates (§8.3) ---- */

static void test_query_count_over_none_is_zero(void **state)
{
	(void)state;
	assert_query("SELECT COUNT() AS n FROM devices", "[{\"n\":0}]");
	create_ok("d1");
	commit_ok();
	assert_query("SELECT COUNT() AS n FROM devices WHERE tags.nope = 1", "[{\"n\":0}]");
}

static void test_query_count_counts_rows_passing_where(void **state)
{
	(void)state;
	create_many("d", 7);
	tags_ok("d01", "{\"k\":1}");
	tags_ok("d04", "{\"k\":1}");
	commit_ok();
	assert_query("SELECT COUNT() AS n FROM devices", "[{\"n\":7}]");
	assert_query("SELECT COUNT() AS n FROM devices WHERE tags.k = 1", "[{\"n\":2}]");
	assert_query("SELECT COUNT() FROM devices WHERE NOT IS_DEFINED(tags.k)", "[{\"count\":5}]");
}

/* Devices whose tags.v are 20, 23, "hot", true, {"x":1}, missing. */
static void seed_mixed_values(void)
{
	static const char *const values[] = {"20", "23", "\"hot\"", "true", "{\"x\":1}", NULL};
	char id[8], tags[64];

	for (int i = 0; i < 6; i++) {
		snprintf(id, sizeof(id), "m%d", i);
		create_ok(id);
		if (values[i] != NULL) {
			snprintf(tags, sizeof(tags), "{\"v\":%s}", values[i]);
			tags_ok(id, tags);
		}
	}
	commit_ok();
}

static void test_query_numeric_aggregates_ignore_non_numbers(void **state)
{
	(void)state;
	seed_mixed_values();
	assert_query("SELECT COUNT() AS n, AVG(tags.v) AS a, SUM(tags.v) AS s, MIN(tags.v) AS lo, "
	             "MAX(tags.v) AS hi FROM devices",
	             "[{\"n\":6,\"a\":21.5,\"s\":43,\"lo\":20,\"hi\":23}]");
}

static void test_query_numeric_aggregates_omitted_without_numbers(void **state)
{
	(void)state;
	seed_mixed_values();
	assert_query("SELECT COUNT() AS n, AVG(tags.v) AS a, SUM(tags.v) AS s, MIN(tags.v) AS lo, "
	             "MAX(tags.v) AS hi FROM devices WHERE NOT IS_NUMBER(tags.v)",
	             "[{\"n\":4}]");
	assert_query("SELECT AVG(tags.v) AS a, SUM(tags.nope) AS s FROM devices", "[{\"a\":21.5}]");
}

static void test_query_numeric_aggregates_of_negatives_and_fractions(void **state)
{
	(void)state;
	create_many("d", 3);
	tags_ok("d00", "{\"v\":-5}");
	tags_ok("d01", "{\"v\":-0.5}");
	tags_ok("d02", "{\"v\":-7.25}");
	commit_ok();
	assert_query("SELECT SUM(tags.v) AS s, MIN(tags.v) AS lo, MAX(tags.v) AS hi FROM devices",
	             "[{\"s\":-12.75,\"lo\":-7.25,\"hi\":-0.5}]");
}

static void test_query_aggregate_default_names(void **state)
{
	(void)state;
	seed_mixed_values();
	assert_query("SELECT COUNT(), AVG(tags.v), SUM(tags.v), MIN(tags.v), MAX(tags.v) "
	             "FROM devices",
	             "[{\"count\":6,\"avg\":21.5,\"sum\":43,\"min\":20,\"max\":23}]");
}

/* Devices g0…g5 with tags.g "b", "a", "b", missing, 1, "1". */
static void seed_groups(void)
{
	static const char *const g[] = {"\"b\"", "\"a\"", "\"b\"", NULL, "1", "\"1\""};
	char id[8], tags[64];

	for (int i = 0; i < 6; i++) {
		snprintf(id, sizeof(id), "g%d", i);
		create_ok(id);
		if (g[i] != NULL) {
			snprintf(tags, sizeof(tags), "{\"g\":%s,\"w\":%d}", g[i], i * 10);
			tags_ok(id, tags);
		}
	}
	commit_ok();
}

static void test_query_group_by_groups_with_undefined_group(void **state)
{
	(void)state;
	seed_groups();
	/* Groups in key order; the undefined group has no member for the key. */
	assert_query(
	        "SELECT tags.g AS g, COUNT() AS n FROM devices WHERE tags.g != 1 "
	        "OR NOT IS_DEFINED(tags.g) OR IS_STRING(tags.g) GROUP BY tags.g",
	        "[{\"n\":1},{\"g\":\"1\",\"n\":1},{\"g\":\"a\",\"n\":1},{\"g\":\"b\",\"n\":2}]");
}

static void test_query_group_by_keeps_types_apart(void **state)
{
	(void)state;
	seed_groups();
	assert_query("SELECT tags.g, COUNT() AS n FROM devices GROUP BY tags.g",
	             "[{\"n\":1},{\"g\":\"1\",\"n\":1},{\"g\":\"a\",\"n\":1},{\"g\":\"b\",\"n\":2},"
	             "{\"g\":1,\"n\":1}]");
}

static void test_query_group_by_aggregates_per_group(void **state)
{
	(void)state;
	seed_groups();
	assert_query("SELECT tags.g AS g, SUM(tags.w) AS s, MIN(tags.w) AS lo, AVG(tags.w) AS a "
	             "FROM devices WHERE IS_STRING(tags.g) GROUP BY tags.g",
	             "[{\"g\":\"1\",\"s\":50,\"lo\":50,\"a\":50},{\"g\":\"a\",\"s\":10,\"lo\":10,"
	             "\"a\":10},{\"g\":\"b\",\"s\":20,\"lo\":0,\"a\":10}]");
}

static void test_query_group_by_several_paths(void **state)
{
	(void)state;
	create_many("d", 6);
	tags_ok("d00", "{\"c\":\"x\",\"k\":1}");
	tags_ok("d01", "{\"c\":\"x\",\"k\":2}");
	tags_ok("d02", "{\"c\":\"x\",\"k\":1}");
	tags_ok("d03", "{\"c\":\"y\",\"k\":1}");
	tags_ok("d04", "{\"c\":\"y\"}");
	commit_ok();
	assert_query("SELECT tags.c AS c, tags.k AS k, COUNT() AS n FROM devices "
	             "GROUP BY tags.c, tags.k",
	             "[{\"n\":1},{\"c\":\"x\",\"k\":1,\"n\":2},{\"c\":\"x\",\"k\":2,\"n\":1},"
	             "{\"c\":\"y\",\"n\":1},{\"c\":\"y\",\"k\":1,\"n\":1}]");
	/* The select list may name a subset of the grouped paths. */
	assert_query("SELECT COUNT() AS n FROM devices GROUP BY tags.c, tags.k",
	             "[{\"n\":1},{\"n\":2},{\"n\":1},{\"n\":1},{\"n\":1}]");
	/* Keys of several paths do not run together: (1, 23) is not (12, 3). */
	tags_ok("d00", "{\"c\":1,\"k\":23}");
	tags_ok("d01", "{\"c\":12,\"k\":3}");
	commit_ok();
	assert_query("SELECT tags.c AS c, tags.k AS k, COUNT() AS n FROM devices "
	             "WHERE IS_NUMBER(tags.c) GROUP BY tags.c, tags.k",
	             "[{\"c\":1,\"k\":23,\"n\":1},{\"c\":12,\"k\":3,\"n\":1}]");
}

static void test_query_group_by_matches_select_path_by_name_rules(void **state)
{
	(void)state;
	create_many("d", 2);
	reported_ok("d00", "{\"s\":\"ok\"}");
	commit_ok();
	/* Top-level names and desired/reported ignore case, as in WHERE (§8.2). */
	assert_query("SELECT PROPERTIES.Reported.s AS s, COUNT() AS n FROM devices "
	             "GROUP BY properties.reported.s",
	             "[{\"n\":1},{\"s\":\"ok\",\"n\":1}]");
}

static void test_query_group_by_object_and_escaped_values(void **state)
{
	(void)state;
	create_many("d", 6);
	tags_ok("d00", "{\"o\":{\"x\":1},\"s\":\"a\\\"b\"}");
	tags_ok("d01", "{\"o\":{\"x\":2},\"s\":\"a\\u0022b\"}");
	tags_ok("d02", "{\"o\":{\"x\":1},\"s\":\"" E_ACUTE "\"}");
	tags_ok("d03", "{\"o\":[1],\"s\":\"\\u00e9\"}");
	commit_ok();
	assert_query("SELECT tags.o AS o, COUNT() AS n FROM devices WHERE IS_DEFINED(tags.o) "
	             "GROUP BY tags.o",
	             "[{\"o\":[1],\"n\":1},{\"o\":{\"x\":1},\"n\":2},{\"o\":{\"x\":2},\"n\":1}]");
	/* Equal strings share a group however they were escaped. */
	assert_query("SELECT tags.s AS s, COUNT() AS n FROM devices WHERE IS_DEFINED(tags.s) "
	             "GROUP BY tags.s",
	             "[{\"s\":\"a\\\"b\",\"n\":2},{\"s\":\"" E_ACUTE "\",\"n\":2}]");
}

static void test_query_group_by_without_aggregates_gives_distinct_values(void **state)
{
	(void)state;
	seed_groups();
	assert_query("SELECT tags.g AS g FROM devices GROUP BY tags.g",
	             "[{},{\"g\":\"1\"},{\"g\":\"a\"},{\"g\":\"b\"},{\"g\":1}]");
}

static void test_query_group_by_over_no_rows_is_empty(void **state)
{
	(void)state;
	seed_groups();
	assert_query("SELECT tags.g AS g, COUNT() AS n FROM devices WHERE false GROUP BY tags.g",
	             "[]");
}

static void test_query_group_by_pages_and_top(void **state)
{
	(void)state;
	seed_groups();
	assert_result(
	        run_all(db.s, "SELECT tags.g, COUNT() AS n FROM devices GROUP BY tags.g", 2),
	        "[{\"n\":1},{\"g\":\"1\",\"n\":1},{\"g\":\"a\",\"n\":1},{\"g\":\"b\",\"n\":2},"
	        "{\"g\":1,\"n\":1}]");
	assert_int_equal(pages, 3);
	assert_result(
	        run_all(db.s, "SELECT TOP 3 tags.g, COUNT() AS n FROM devices GROUP BY tags.g", 2),
	        "[{\"n\":1},{\"g\":\"1\",\"n\":1},{\"g\":\"a\",\"n\":1}]");
	assert_int_equal(pages, 2);
	assert_result(
	        run_all(db.s, "SELECT TOP 2 tags.g, COUNT() AS n FROM devices GROUP BY tags.g", 2),
	        "[{\"n\":1},{\"g\":\"1\",\"n\":1}]");
	assert_int_equal(pages, 1);
	assert_result(run_all(db.s, "SELECT COUNT() AS n FROM devices", 1), "[{\"n\":6}]");
	assert_int_equal(pages, 1);
}

/* ---- order, paging and tokens (§8.2, §8.4) ---- */

static void test_query_rows_in_device_id_byte_order(void **state)
{
	static const char *const ids[] = {"b", "B", "a-1", "a", "_x", "0", "a.b", "Z"};

	(void)state;
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		create_ok(ids[i]);
	commit_ok();
	assert_ids("SELECT deviceId FROM devices", 0, "0,B,Z,_x,a,a-1,a.b,b");
	assert_ids("SELECT deviceId FROM devices", 1, "0,B,Z,_x,a,a-1,a.b,b");
}

static void test_query_pages_follow_tokens_without_gaps_or_duplicates(void **state)
{
	char want[512];
	size_t n = 0;

	(void)state;
	create_many("d", 25);
	for (int i = 0; i < 25; i++)
		n += (size_t)snprintf(want + n, sizeof(want) - n, "%sd%02d", i ? "," : "", i);
	for (size_t size = 1; size <= 26; size++) {
		assert_ids("SELECT deviceId FROM devices", size, want);
		assert_int_equal(pages, size >= 25 ? 1 : (25 + size - 1) / size);
	}
}

static void test_query_paging_with_where_skips_non_matching(void **state)
{
	(void)state;
	create_many("d", 12);
	for (int i = 0; i < 12; i += 3) {
		char id[8];

		snprintf(id, sizeof(id), "d%02d", i);
		tags_ok(id, "{\"k\":true}");
	}
	commit_ok();
	assert_ids("SELECT deviceId FROM devices WHERE tags.k", 2, "d00,d03,d06,d09");
	assert_int_equal(pages, 2);
	assert_ids("SELECT deviceId FROM devices WHERE tags.k", 3, "d00,d03,d06,d09");
	assert_int_equal(pages, 2);
}

/* Writes between page 1 (d00…d04) and page 2 of the paging test. */
static void change_between_pages(void)
{
	delete_ok("d02");  /* already returned */
	delete_ok("d04");  /* the last row returned: the token names it */
	delete_ok("d05");  /* not yet reached */
	create_ok("d03x"); /* before the token: never seen */
	create_ok("d10x"); /* after it: seen */
	tags_ok("d07", "{\"seen\":1}");
	tags_ok("d08", "{\"skip\":1}");
	commit_ok();
}

static void test_query_paging_survives_creates_deletes_updates(void **state)
{
	const char *text = "SELECT deviceId FROM devices WHERE NOT IS_DEFINED(tags.skip)";
	twin_query *q;
	cJSON *all = cJSON_CreateArray();
	char *token = NULL, *next = NULL, got[512];

	(void)state;
	create_many("d", 15);
	q = parse_ok(text);
	append_all(all, one_page(db.s, q, NULL, 5, &token));
	assert_non_null(token);
	change_between_pages();
	append_all(all, one_page(db.s, q, token, 5, &next));
	free(token);
	assert_non_null(next);
	delete_ok("d11"); /* between pages 2 and 3 */
	create_ok("d99");
	commit_ok();
	while (next != NULL) {
		token = next;
		append_all(all, one_page(db.s, q, token, 5, &next));
		free(token);
	}
	ids_of(all, got, sizeof(got));
	assert_string_equal(got, "d00,d01,d02,d03,d04,d06,d07,d09,d10,d10x,d12,d13,d14,d99");
	cJSON_Delete(all);
	twin_query_free(q);
}

static void test_query_tokens_carry_any_device_id(void **state)
{
	char longest[TWIN_DEVICE_ID_MAX + 1], want[1024];

	(void)state;
	memset(longest, 'z', TWIN_DEVICE_ID_MAX);
	longest[TWIN_DEVICE_ID_MAX] = '\0';
	create_ok("a:b:c");
	create_ok("p%q'$(r)");
	create_ok("u=v@w;x,y");
	create_ok("z#*?!");
	create_ok(longest);
	longest[TWIN_DEVICE_ID_MAX - 1] = 'y';
	create_ok(longest);
	commit_ok();
	snprintf(want, sizeof(want), "a:b:c,p%%q'$(r),u=v@w;x,y,z#*?!,%s", longest);
	longest[TWIN_DEVICE_ID_MAX - 1] = 'z';
	snprintf(want + strlen(want), sizeof(want) - strlen(want), ",%s", longest);
	assert_ids("SELECT deviceId FROM devices", 1, want);
	assert_int_equal(pages, 6);
}

static void test_query_last_page_has_no_token(void **state)
{
	(void)state;
	create_many("d", 10);
	assert_ids("SELECT deviceId FROM devices", 5, "d00,d01,d02,d03,d04,d05,d06,d07,d08,d09");
	assert_int_equal(pages, 2);
	assert_ids("SELECT deviceId FROM devices WHERE false", 5, "");
	assert_int_equal(pages, 1);
}

static void test_query_top_caps_total_across_pages(void **state)
{
	(void)state;
	create_many("t", 10);
	assert_ids("SELECT TOP 7 deviceId FROM devices", 3, "t00,t01,t02,t03,t04,t05,t06");
	assert_int_equal(pages, 3);
	assert_ids("SELECT TOP 6 deviceId FROM devices", 3, "t00,t01,t02,t03,t04,t05");
	assert_int_equal(pages, 2);
	assert_ids("SELECT TOP 3 deviceId FROM devices", 0, "t00,t01,t02");
	assert_int_equal(pages, 1);
	assert_ids("SELECT TOP 0 deviceId FROM devices", 2, "");
	assert_ids("SELECT TOP 20 deviceId FROM devices", 4,
	           "t00,t01,t02,t03,t04,t05,t06,t07,t08,t09");
	assert_ids("SELECT TOP 2 deviceId FROM devices WHERE deviceId > 't05'", 1, "t06,t07");
	assert_int_equal(pages, 2);
}

/* Start q with token: it must be refused as TWIN_E_INVALID with no run
 * and no reader left behind. */
static void assert_token_refused(const twin_query *q, const char *token)
{
	twin_query_run *r = NULL;
	twin_error err = {0};

	assert_int_equal(twin_query_start(db.s, q, token, 5, &r, &err), TWIN_E_INVALID);
	assert_int_equal(err.err, TWIN_E_INVALID);
	assert_null(r);
	assert_int_equal(twin_store_readers(db.s), 0);
}

static void test_query_token_of_other_query_refused(void **state)
{
	twin_query *a, *b, *agg;
	cJSON *items;
	char *token = NULL, *gtoken = NULL, *next = NULL;

	(void)state;
	create_many("d", 6);
	a = parse_ok("SELECT deviceId FROM devices");
	b = parse_ok("SELECT deviceId FROM devices WHERE true");
	agg = parse_ok("SELECT deviceId, COUNT() FROM devices GROUP BY deviceId");
	cJSON_Delete(one_page(db.s, a, NULL, 2, &token));
	cJSON_Delete(one_page(db.s, agg, NULL, 2, &gtoken));
	assert_non_null(token);
	assert_non_null(gtoken);
	assert_token_refused(b, token);
	assert_token_refused(agg, token);
	assert_token_refused(a, gtoken);
	items = one_page(db.s, a, token, 2, &next); /* its own query accepts it */
	test_assert_json(items, "[{\"deviceId\":\"d02\"},{\"deviceId\":\"d03\"}]");
	cJSON_Delete(items);
	free(next);
	free(token);
	free(gtoken);
	twin_query_free(a);
	twin_query_free(b);
	twin_query_free(agg);
}

static void test_query_garbage_token_refused(void **state)
{
	static const char *const bad[] = {"garbage",
	                                  "!!!!",
	                                  "AAAA",
	                                  "MQ==",
	                                  "MTox",
	                                  "====",
	                                  "MTp4eXo6MTpkMDA=",
	                                  "not a token at all, really"};
	twin_query *q;
	char *token = NULL, *changed, longer[700];

	(void)state;
	create_many("d", 4);
	q = parse_ok("SELECT deviceId FROM devices");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_token_refused(q, bad[i]);
	memset(longer, 'A', sizeof(longer) - 1);
	longer[sizeof(longer) - 1] = '\0';
	assert_token_refused(q, longer);
	cJSON_Delete(one_page(db.s, q, NULL, 1, &token));
	assert_non_null(token);
	changed = malloc(strlen(token) + 2);
	assert_non_null(changed);
	sprintf(changed, "%s", token + 4); /* cut the head of a real token */
	assert_token_refused(q, changed);
	free(changed);
	free(token);
	twin_query_free(q);
}

static void test_query_empty_token_is_first_page(void **state)
{
	twin_query *q;
	cJSON *items;
	char *next = NULL;

	(void)state;
	create_many("d", 3);
	q = parse_ok("SELECT deviceId FROM devices");
	items = one_page(db.s, q, "", 2, &next);
	test_assert_json(items, "[{\"deviceId\":\"d00\"},{\"deviceId\":\"d01\"}]");
	cJSON_Delete(items);
	free(next);
	twin_query_free(q);
}

/* Every one of 1001 twins comes back once at page_size, in want_pages pages. */
static void check_all_pages(size_t page_size, int want_pages)
{
	cJSON *rows = run_all(db.s, "SELECT deviceId FROM devices", page_size);

	assert_int_equal(cJSON_GetArraySize(rows), 1001);
	assert_int_equal(pages, want_pages);
	cJSON_Delete(rows);
}

static void test_query_page_size_zero_is_default_and_large_is_clamped(void **state)
{
	static const size_t sizes[] = {0, 1000, 1001, 5000, (size_t)-1};
	static const int first[] = {100, 1000, 1000, 1000, 1000};
	twin_query *q;

	(void)state;
	create_many("d", 1001);
	q = parse_ok("SELECT deviceId FROM devices");
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char *next = NULL;
		cJSON *items = one_page(db.s, q, NULL, sizes[i], &next);

		assert_int_equal(cJSON_GetArraySize(items), first[i]);
		assert_non_null(next);
		cJSON_Delete(items);
		free(next);
	}
	twin_query_free(q);
	check_all_pages(0, 11);
	check_all_pages(5000, 2);
}

static void test_query_from_modules_gives_no_rows(void **state)
{
	(void)state;
	create_many("d", 3);
	assert_query("SELECT * FROM devices.modules", "[]");
	assert_query("SELECT deviceId, moduleId FROM devices.modules", "[]");
	assert_query("SELECT * FROM devices.modules WHERE true", "[]");
	assert_query("SELECT COUNT() AS n FROM devices.modules", "[{\"n\":0}]");
	assert_query("SELECT deviceId, COUNT() AS n FROM devices.modules GROUP BY deviceId", "[]");
}

/* ---- consistency and run control (§8.4, twin/query.h) ---- */

static void test_query_sees_writes_committed_before_start(void **state)
{
	(void)state;
	create_ok("d1");
	commit_ok();
	assert_query("SELECT deviceId, tags.k FROM devices", "[{\"deviceId\":\"d1\"}]");
	tags_ok("d1", "{\"k\":1}");
	create_ok("d2");
	commit_ok();
	assert_query("SELECT deviceId, tags.k FROM devices",
	             "[{\"deviceId\":\"d1\",\"k\":1},{\"deviceId\":\"d2\"}]");
	delete_ok("d1");
	commit_ok();
	assert_query("SELECT deviceId, tags.k FROM devices", "[{\"deviceId\":\"d2\"}]");
}

static void test_query_run_ignores_commits_after_start(void **state)
{
	twin_query *q;
	twin_query_run *r;
	cJSON *items;
	char *next = NULL;

	(void)state;
	create_many("d", 4);
	q = parse_ok("SELECT deviceId, tags.k FROM devices");
	r = start_ok(db.s, q, NULL, 0);
	tags_ok("d00", "{\"k\":1}");
	delete_ok("d02");
	create_ok("d01a");
	commit_ok();
	step_to_done(r);
	items = page_ok(r, &next);
	twin_query_end(r);
	test_assert_json(items, "[{\"deviceId\":\"d00\"},{\"deviceId\":\"d01\"},"
	                        "{\"deviceId\":\"d02\"},{\"deviceId\":\"d03\"}]");
	assert_null(next);
	cJSON_Delete(items);
	twin_query_free(q);
}

static void test_query_run_ignores_uncommitted_batch(void **state)
{
	twin_query *q;
	twin_query_run *r;
	cJSON *items;
	char *next = NULL;

	(void)state;
	create_ok("d1");
	commit_ok();
	create_ok("d2");
	tags_ok("d1", "{\"k\":1}");
	assert_true(twin_store_batch_open(db.s));
	q = parse_ok("SELECT deviceId, tags.k FROM devices");
	r = start_ok(db.s, q, NULL, 0); /* the batch is not committed yet */
	step_to_done(r);
	commit_ok();
	items = page_ok(r, &next);
	twin_query_end(r);
	test_assert_json(items, "[{\"deviceId\":\"d1\"}]");
	cJSON_Delete(items);
	twin_query_free(q);
	assert_query("SELECT deviceId, tags.k FROM devices",
	             "[{\"deviceId\":\"d1\",\"k\":1},{\"deviceId\":\"d2\"}]");
}

static void test_query_cancel_makes_step_fail(void **state)
{
	twin_query *q;
	twin_query_run *r;
	twin_error err = {0};
	cJSON *items = NULL;
	char *next = NULL;
	int done = 0;

	(void)state;
	create_many("d", 10);
	q = parse_ok("SELECT deviceId FROM devices");
	r = start_ok(db.s, q, NULL, 0);
	assert_int_equal(twin_query_step(r, 2, &done, &err), TWIN_OK);
	assert_false(done);
	twin_query_cancel(r);
	assert_int_equal(twin_query_step(r, 100, &done, &err), TWIN_E_STORAGE);
	assert_false(done);
	assert_int_equal(twin_query_step(r, 100, &done, &err), TWIN_E_STORAGE);
	assert_false(done);
	assert_int_not_equal(twin_query_page(r, &items, &next, &err), TWIN_OK);
	assert_null(items);
	assert_null(next);
	twin_query_end(r);
	assert_int_equal(twin_store_readers(db.s), 0);
	/* A cancelled run before its first step fails too. */
	r = start_ok(db.s, q, NULL, 0);
	twin_query_cancel(r);
	assert_int_equal(twin_query_step(r, 100, &done, &err), TWIN_E_STORAGE);
	twin_query_end(r);
	twin_query_free(q);
}

static void test_query_readers_count_live_runs(void **state)
{
	twin_query *q;
	twin_query_run *r1, *r2;

	(void)state;
	create_many("d", 3);
	q = parse_ok("SELECT * FROM devices");
	assert_int_equal(twin_store_readers(db.s), 0);
	r1 = start_ok(db.s, q, NULL, 0);
	assert_int_equal(twin_store_readers(db.s), 1);
	r2 = start_ok(db.s, q, NULL, 1);
	assert_int_equal(twin_store_readers(db.s), 2);
	step_to_done(r2);
	assert_int_equal(twin_store_readers(db.s), 2); /* done is not ended */
	twin_query_end(r1);
	assert_int_equal(twin_store_readers(db.s), 1);
	twin_query_end(r2);
	assert_int_equal(twin_store_readers(db.s), 0);
	twin_query_end(NULL);
	assert_int_equal(twin_store_readers(db.s), 0);
	twin_query_free(q);
}

static void test_query_page_before_done_fails(void **state)
{
	twin_query *q;
	twin_query_run *r;
	twin_error err = {0};
	cJSON *items = NULL;
	char *next = NULL;
	int done = 0;

	(void)state;
	create_many("d", 5);
	q = parse_ok("SELECT deviceId FROM devices");
	r = start_ok(db.s, q, NULL, 0);
	assert_int_equal(twin_query_step(r, 1, &done, &err), TWIN_OK);
	assert_false(done);
	assert_int_not_equal(twin_query_page(r, &items, &next, &err), TWIN_OK);
	assert_null(items);
	step_to_done(r);
	assert_int_equal(twin_query_scanned(r), 5);
	items = page_ok(r, &next);
	assert_int_equal(cJSON_GetArraySize(items), 5);
	cJSON_Delete(items);
	twin_query_end(r);
	twin_query_free(q);
}

/* ---- the examples of §8.5 ---- */

static void seed_examples(void)
{
	static const char *const reported[][2] = {
	        {"d1", "{\"telemetryConfig\":{\"sendFrequencyInSecs\":60,\"status\":\"Success\"},"
	               "\"connectivity\":\"wired\",\"fw\":\"1.2\",\"temp\":20}"},
	        {"d2", "{\"telemetryConfig\":{\"sendFrequencyInSecs\":30,\"status\":\"Pending\"},"
	               "\"connectivity\":\"cellular\",\"fw\":\"2.1\",\"temp\":30}"},
	        {"d3", "{\"telemetryConfig\":{\"sendFrequencyInSecs\":90,\"status\":\"Success\"},"
	               "\"connectivity\":\"wifi\",\"fw\":\"10.0\",\"temp\":14.5}"},
	        {"d4", "{\"telemetryConfig\":{\"sendFrequencyInSecs\":120,\"status\":\"Success\"},"
	               "\"connectivity\":\"WiFi\",\"temp\":100}"},
	        {"d5", "{\"telemetryConfig\":{\"status\":\"Pending\"},\"temp\":\"warm\"}"},
	};

	create_ok("d1");
	create_ok("d2");
	create_ok("d3");
	create_spec_ok("d4", "{\"status\":\"disabled\"}");
	create_ok("d5");
	create_ok("d7");
	create_many("test", 3);
	for (size_t i = 0; i < sizeof(reported) / sizeof(reported[0]); i++)
		reported_ok(reported[i][0], reported[i][1]);
	tags_ok("d1", "{\"location\":{\"region\":\"US\"}}");
	tags_ok("d2", "{\"location\":{\"region\":\"US\"}}");
	tags_ok("d3", "{\"location\":{\"region\":\"EU\"}}");
	tags_ok("d4", "{\"location\":{\"region\":\"us\"}}");
	tags_ok("d7", "{\"group\":{\"name\":\"A\\\"B\"}}");
	assert_int_equal(twin_device_set_activity(db.s, "test00", TEST_T0, NULL), TWIN_OK);
	assert_int_equal(twin_device_set_activity(db.s, "test01", TEST_T0 + SECOND, NULL), TWIN_OK);
	commit_ok();
}

/* The rows of text are the twins of want (ids) exactly as twin_get shows them. */
static void assert_twins(const char *text, const char *want)
{
	cJSON *rows = run_all(db.s, text, 2);
	char got[1024];

	ids_of(rows, got, sizeof(got));
	assert_string_equal(got, want);
	assert_rows_are_twins(rows);
	cJSON_Delete(rows);
}

static void test_query_example_select_star(void **state)
{
	(void)state;
	seed_examples();
	assert_twins("SELECT * FROM devices", "d1,d2,d3,d4,d5,d7,test00,test01,test02");
}

static void test_query_example_tag_equals(void **state)
{
	(void)state;
	seed_examples();
	assert_twins("SELECT * FROM devices WHERE tags.location.region = 'US'", "d1,d2");
}

static void test_query_example_tag_and_reported(void **state)
{
	(void)state;
	seed_examples();
	assert_twins("SELECT * FROM devices WHERE tags.location.region = 'US' AND "
	             "properties.reported.telemetryConfig.sendFrequencyInSecs >= 60",
	             "d1");
}

static void test_query_example_in_list(void **state)
{
	(void)state;
	seed_examples();
	assert_twins("SELECT * FROM devices WHERE properties.reported.connectivity IN "
	             "['wired', 'wifi']",
	             "d1,d3");
}

static void test_query_example_projection_where_defined(void **state)
{
	(void)state;
	seed_examples();
	assert_query("SELECT deviceId, properties.reported.fw AS fw FROM devices "
	             "WHERE IS_DEFINED(properties.reported.fw)",
	             "[{\"deviceId\":\"d1\",\"fw\":\"1.2\"},{\"deviceId\":\"d2\",\"fw\":\"2.1\"},"
	             "{\"deviceId\":\"d3\",\"fw\":\"10.0\"}]");
}

static void test_query_example_count_total(void **state)
{
	(void)state;
	seed_examples();
	assert_query("SELECT COUNT() AS total FROM devices", "[{\"total\":9}]");
}

static void test_query_example_group_by_status(void **state)
{
	(void)state;
	seed_examples();
	/* §8.5 lists the two status groups; devices without a status form a
	 * third group, first in key order, with no status member. */
	assert_query("SELECT properties.reported.telemetryConfig.status AS status, "
	             "COUNT() AS numberOfDevices FROM devices "
	             "GROUP BY properties.reported.telemetryConfig.status",
	             "[{\"numberOfDevices\":4},{\"status\":\"Pending\",\"numberOfDevices\":2},"
	             "{\"status\":\"Success\",\"numberOfDevices\":3}]");
}

static void test_query_example_modules(void **state)
{
	(void)state;
	seed_examples();
	assert_query("SELECT * FROM devices.modules WHERE properties.reported.status = 'scanning' "
	             "AND deviceId IN ['device1','device2']",
	             "[]");
}

static void test_query_example_top_startswith(void **state)
{
	(void)state;
	seed_examples();
	assert_query(
	        "SELECT TOP 2 DeviceId, LastActivityTime FROM devices "
	        "WHERE STARTSWITH(deviceId, 'test')",
	        "[{\"deviceId\":\"test00\",\"lastActivityTime\":\"2024-05-01T08:15:30.1234567Z\"},"
	        "{\"deviceId\":\"test01\",\"lastActivityTime\":\"2024-05-01T08:15:31.1234567Z\"}]");
}

static void test_query_example_bracketed_keyword(void **state)
{
	(void)state;
	seed_examples();
	assert_query("SELECT deviceId FROM devices WHERE tags.[[group]].name = \"A\\\"B\"",
	             "[{\"deviceId\":\"d7\"}]");
}

static void test_query_example_avg_max(void **state)
{
	(void)state;
	seed_examples();
	assert_query("SELECT AVG(properties.reported.temp) AS avgT, "
	             "MAX(properties.reported.temp) AS maxT FROM devices WHERE status = 'enabled'",
	             "[{\"avgT\":21.5,\"maxT\":30}]");
}

static void test_query_example_not_defined_or_less(void **state)
{
	(void)state;
	seed_examples();
	assert_ids("SELECT deviceId FROM devices WHERE NOT IS_DEFINED(properties.reported.fw) "
	           "OR properties.reported.fw < '2.0'",
	           1, "d1,d3,d4,d5,d7,test00,test01,test02");
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(test_query_missing_path_is_undefined),
	        T(test_query_path_through_non_object_is_undefined),
	        T(test_query_null_equals_null),
	        T(test_query_compare_same_types),
	        T(test_query_compare_different_types_is_undefined),
	        T(test_query_strings_compare_by_code_point),
	        T(test_query_escaped_strings_compare_by_value),
	        T(test_query_and_false_beats_undefined),
	        T(test_query_or_true_beats_undefined),
	        T(test_query_not_undefined_is_undefined),
	        T(test_query_where_keeps_only_exactly_true),
	        T(test_query_in_true_when_equal_to_an_element),
	        T(test_query_in_with_undefined_left_is_undefined),
	        T(test_query_nin_true_when_equal_to_none),
	        T(test_query_arithmetic_on_numbers),
	        T(test_query_arithmetic_on_non_numbers_is_undefined),
	        T(test_query_division_by_zero_is_undefined),
	        T(test_query_top_level_names_case_insensitive),
	        T(test_query_names_below_tags_case_sensitive),
	        T(test_query_bracketed_names_match_like_plain_ones),
	        T(test_query_paths_skip_strings_that_look_like_json),
	        T(test_query_names_with_escapes_match_by_value),
	        T(test_query_is_defined_true_even_for_null),
	        T(test_query_is_null_only_for_null),
	        T(test_query_is_bool_only_for_booleans),
	        T(test_query_is_number_only_for_numbers),
	        T(test_query_is_string_only_for_strings),
	        T(test_query_is_object_only_for_objects),
	        T(test_query_is_array_only_for_arrays),
	        T(test_query_is_primitive_for_null_bool_number_string),
	        T(test_query_type_functions_on_computed_values),
	        T(test_query_startswith_endswith_contains_are_case_sensitive),
	        T(test_query_startswith_endswith_contains_need_two_strings),
	        T(test_query_precedence_arith_before_compare),
	        T(test_query_precedence_mul_before_add),
	        T(test_query_precedence_compare_before_not_before_and_before_or),
	        T(test_query_projection_alias_names_member),
	        T(test_query_projection_default_name_is_last_segment),
	        T(test_query_projection_system_names_canonical_case),
	        T(test_query_projection_omits_undefined),
	        T(test_query_projection_returns_objects_and_arrays_as_json),
	        T(test_query_select_star_equals_twin_get),
	        T(test_query_select_star_after_reported_only_write),
	        T(test_query_projection_of_every_field_matches_twin_get),
	        T(test_query_sections_match_twin_get),
	        T(test_query_metadata_stored_compact_reads_like_the_view),
	        T(test_query_metadata_and_version_paths),
	        T(test_query_identity_fields_of_new_device),
	        T(test_query_identity_fields_follow_identity),
	        T(test_query_etag_and_version_follow_writes),
	        T(test_query_count_over_none_is_zero),
	        T(test_query_count_counts_rows_passing_where),
	        T(test_query_numeric_aggregates_ignore_non_numbers),
	        T(test_query_numeric_aggregates_omitted_without_numbers),
	        T(test_query_numeric_aggregates_of_negatives_and_fractions),
	        T(test_query_aggregate_default_names),
	        T(test_query_group_by_groups_with_undefined_group),
	        T(test_query_group_by_keeps_types_apart),
	        T(test_query_group_by_aggregates_per_group),
	        T(test_query_group_by_several_paths),
	        T(test_query_group_by_matches_select_path_by_name_rules),
	        T(test_query_group_by_object_and_escaped_values),
	        T(test_query_group_by_without_aggregates_gives_distinct_values),
	        T(test_query_group_by_over_no_rows_is_empty),
	        T(test_query_group_by_pages_and_top),
	        T(test_query_rows_in_device_id_byte_order),
	        T(test_query_pages_follow_tokens_without_gaps_or_duplicates),
	        T(test_query_paging_with_where_skips_non_matching),
	        T(test_query_paging_survives_creates_deletes_updates),
	        T(test_query_tokens_carry_any_device_id),
	        T(test_query_last_page_has_no_token),
	        T(test_query_top_caps_total_across_pages),
	        T(test_query_token_of_other_query_refused),
	        T(test_query_garbage_token_refused),
	        T(test_query_empty_token_is_first_page),
	        T(test_query_page_size_zero_is_default_and_large_is_clamped),
	        T(test_query_from_modules_gives_no_rows),
	        T(test_query_sees_writes_committed_before_start),
	        T(test_query_run_ignores_commits_after_start),
	        T(test_query_run_ignores_uncommitted_batch),
	        T(test_query_cancel_makes_step_fail),
	        T(test_query_readers_count_live_runs),
	        T(test_query_page_before_done_fails),
	        T(test_query_example_select_star),
	        T(test_query_example_tag_equals),
	        T(test_query_example_tag_and_reported),
	        T(test_query_example_in_list),
	        T(test_query_example_projection_where_defined),
	        T(test_query_example_count_total),
	        T(test_query_example_group_by_status),
	        T(test_query_example_modules),
	        T(test_query_example_top_startswith),
	        T(test_query_example_bracketed_keyword),
	        T(test_query_example_avg_max),
	        T(test_query_example_not_defined_or_less),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
