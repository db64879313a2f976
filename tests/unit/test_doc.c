/*
 * test_doc.c - the document model rules of PROTOCOL.md §4.1, §5.1, §5.3, §6,
 * on cJSON trees, without storage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_support.h"
#include "twin/doc.h"

static twin_limits limits(void)
{
	twin_limits l;

	twin_limits_default(&l);
	return l;
}

static twin_err validate(const char *text)
{
	twin_limits l = limits();
	cJSON *doc = test_json(text);
	twin_error err;
	twin_err rc = twin_doc_validate(doc, 1, &l, &err);

	cJSON_Delete(doc);
	return rc;
}

/* Merge patch into data (without metadata) and compare the result. */
static void assert_merge(const char *data_text, const char *patch_text, const char *want)
{
	cJSON *data = test_json(data_text), *patch = test_json(patch_text);

	assert_int_equal(validate(patch_text), TWIN_OK);
	assert_int_equal(twin_doc_merge(data, NULL, patch, NULL), TWIN_OK);
	test_assert_json(data, want);
	cJSON_Delete(data);
	cJSON_Delete(patch);
}

/* A string of n copies of c. */
static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	assert_non_null(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* {"<key>":1} */
static twin_err validate_key(const char *key)
{
	cJSON *doc = cJSON_CreateObject();
	twin_limits l = limits();
	twin_err rc;

	cJSON_AddNumberToObject(doc, key, 1);
	rc = twin_doc_validate(doc, 1, &l, NULL);
	cJSON_Delete(doc);
	return rc;
}

/* §5.1 merge table */

static void test_merge_primitive_sets_value(void **state)
{
	(void)state;
	assert_merge("{}", "{\"a\":1,\"b\":\"x\",\"c\":true}", "{\"a\":1,\"b\":\"x\",\"c\":true}");
	assert_merge("{\"a\":{\"deep\":1}}", "{\"a\":2}", "{\"a\":2}");
}

static void test_merge_array_replaced_whole(void **state)
{
	(void)state;
	assert_merge("{\"a\":[1,2,3]}", "{\"a\":[4]}", "{\"a\":[4]}");
	assert_merge("{\"a\":{\"x\":1}}", "{\"a\":[{\"x\":2}]}", "{\"a\":[{\"x\":2}]}");
}

static void test_merge_object_into_object_is_recursive(void **state)
{
	(void)state;
	assert_merge("{\"a\":{\"x\":1,\"y\":{\"p\":1,\"q\":2}}}",
	             "{\"a\":{\"y\":{\"q\":3},\"z\":4}}",
	             "{\"a\":{\"x\":1,\"y\":{\"p\":1,\"q\":3},\"z\":4}}");
}

static void test_merge_object_replaces_non_object(void **state)
{
	(void)state;
	assert_merge("{\"a\":5}", "{\"a\":{\"x\":1}}", "{\"a\":{\"x\":1}}");
	assert_merge("{\"a\":[1]}", "{\"a\":{\"x\":1}}", "{\"a\":{\"x\":1}}");
}

static void test_merge_null_deletes_key(void **state)
{
	(void)state;
	assert_merge("{\"a\":1,\"b\":{\"c\":2,\"d\":3}}", "{\"a\":null,\"b\":{\"c\":null}}",
	             "{\"b\":{\"d\":3}}");
}

static void test_merge_null_on_missing_key_is_noop(void **state)
{
	(void)state;
	assert_merge("{\"a\":1}", "{\"zz\":null}", "{\"a\":1}");
}

static void test_merge_nested_null_creates_empty_parent(void **state)
{
	cJSON *data = test_json("{}");

	(void)state;
	for (int i = 0; i < 2; i++) { /* repeating is idempotent */
		cJSON *patch = test_json("{\"a\":{\"b\":null}}");

		assert_int_equal(twin_doc_merge(data, NULL, patch, NULL), TWIN_OK);
		test_assert_json(data, "{\"a\":{}}");
		cJSON_Delete(patch);
	}
	cJSON_Delete(data);
}

static void test_null_inside_array_rejected(void **state)
{
	(void)state;
	assert_int_equal(validate("{\"a\":[1,null]}"), TWIN_E_INVALID);
}

static void test_null_inside_object_inside_array_rejected(void **state)
{
	(void)state;
	assert_int_equal(validate("{\"a\":[{\"b\":null}]}"), TWIN_E_INVALID);
	assert_int_equal(validate("{\"a\":[[{\"b\":{\"c\":null}}]]}"), TWIN_E_INVALID);
}

static void test_null_outside_patch_rejected(void **state)
{
	twin_limits l = limits();
	cJSON *doc = test_json("{\"a\":null}");

	(void)state;
	assert_int_equal(twin_doc_validate(doc, 0, &l, NULL), TWIN_E_INVALID);
	assert_int_equal(twin_doc_validate(doc, 1, &l, NULL), TWIN_OK);
	cJSON_Delete(doc);
}

static void test_body_must_be_object(void **state)
{
	(void)state;
	assert_int_equal(validate("[1]"), TWIN_E_INVALID);
	assert_int_equal(validate("\"x\""), TWIN_E_INVALID);
	assert_int_equal(validate("3"), TWIN_E_INVALID);
	assert_int_equal(validate("null"), TWIN_E_INVALID);
}

/* §6 limits */

static void test_key_length_limit_boundary(void **state)
{
	char *ok = repeat('k', 1024), *over = repeat('k', 1025);

	(void)state;
	assert_int_equal(validate_key(ok), TWIN_OK);
	assert_int_equal(validate_key(over), TWIN_E_INVALID);
	free(ok);
	free(over);
}

static void test_empty_key_rejected(void **state)
{
	(void)state;
	assert_int_equal(validate_key(""), TWIN_E_INVALID);
}

static void test_key_forbidden_characters_rejected(void **state)
{
	static const char *bad[] = {"a.b",  "$a",    "a$",        "a b",     "a\x01",
	                            "\x1f", "a\x7f", "a\xc2\x80", "\xc2\x9f"};

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(validate_key(bad[i]), TWIN_E_INVALID);
}

static void test_key_allowed_characters_accepted(void **state)
{
	/* '#' is allowed (project decision); U+00A0 is not a control character. */
	static const char *good[] = {"a#b", "A-Z_0", "\xc2\xa0", "\xe6\x97\xa5\xe6\x9c\xac", "a:b"};

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_int_equal(validate_key(good[i]), TWIN_OK);
}

static void test_keys_checked_at_every_depth_and_inside_arrays(void **state)
{
	(void)state;
	assert_int_equal(validate("{\"a\":{\"b\":{\"c.d\":1}}}"), TWIN_E_INVALID);
	assert_int_equal(validate("{\"a\":[{\"$x\":1}]}"), TWIN_E_INVALID);
	assert_int_equal(validate("{\"a\":[[{\"ok\":{\"b c\":1}}]]}"), TWIN_E_INVALID);
}

static twin_err validate_string_of(size_t n, int in_array)
{
	char *s = repeat('v', n);
	cJSON *doc = cJSON_CreateObject(), *arr = cJSON_CreateArray();
	twin_limits l = limits();
	twin_err rc;

	cJSON_AddItemToArray(arr, cJSON_CreateString(s));
	cJSON_AddItemToObject(doc, "a", in_array ? arr : cJSON_CreateString(s));
	if (!in_array)
		cJSON_Delete(arr);
	rc = twin_doc_validate(doc, 1, &l, NULL);
	cJSON_Delete(doc);
	free(s);
	return rc;
}

static void test_string_length_limit_boundary(void **state)
{
	(void)state;
	assert_int_equal(validate_string_of(4096, 0), TWIN_OK);
	assert_int_equal(validate_string_of(4097, 0), TWIN_E_INVALID);
	assert_int_equal(validate_string_of(4096, 1), TWIN_OK);
	assert_int_equal(validate_string_of(4097, 1), TWIN_E_INVALID);
}

/* {"l1":{"l2":…{"lN": leaf}}} with N nested objects. */
static char *nested(int n, const char *leaf)
{
	char *s = malloc((size_t)n * 16 + strlen(leaf) + 8), *p = s;

	p += sprintf(p, "{");
	for (int i = 1; i <= n; i++)
		p += sprintf(p, "\"l%d\":%s", i, i < n ? "{" : "");
	p += sprintf(p, "%s", leaf);
	for (int i = 1; i <= n; i++)
		p += sprintf(p, "}");
	return s;
}

static void test_depth_limit_objects_at_level_10(void **state)
{
	char *ok = nested(10, "{}"), *over = nested(11, "{}");

	(void)state;
	/* nested(10, "{}") puts an object at level 10 ("l10":{}). */
	assert_int_equal(validate(ok), TWIN_OK);
	assert_int_equal(validate(over), TWIN_E_INVALID);
	free(ok);
	free(over);
}

static void test_depth_limit_primitives_at_level_11(void **state)
{
	/* tags.one.….ten.property: ten objects, then a primitive at level 11. */
	char *ok = nested(10, "{\"p\":1}"), *over = nested(11, "{\"p\":1}");

	(void)state;
	assert_int_equal(validate(ok), TWIN_OK);
	assert_int_equal(validate(over), TWIN_E_INVALID);
	free(ok);
	free(over);
}

static void test_depth_array_element_is_one_level_below_array(void **state)
{
	/* Array at level 10 holding a primitive (level 11): fine; holding an
	 * array (level 11): too deep. */
	char *ok = nested(9, "{\"arr\":[1]}"), *over = nested(9, "{\"arr\":[[1]]}");

	(void)state;
	assert_int_equal(validate(ok), TWIN_OK);
	assert_int_equal(validate(over), TWIN_E_INVALID);
	free(ok);
	free(over);
}

static void test_depth_limit_is_configurable(void **state)
{
	twin_limits l = limits();
	cJSON *doc = test_json("{\"a\":{\"b\":{\"c\":1}}}");

	(void)state;
	l.max_depth = 2;
	assert_int_equal(twin_doc_validate(doc, 1, &l, NULL), TWIN_OK);
	l.max_depth = 1;
	assert_int_equal(twin_doc_validate(doc, 1, &l, NULL), TWIN_E_INVALID);
	cJSON_Delete(doc);
}

static void test_size_formula(void **state)
{
	cJSON *d;

	(void)state;
	d = test_json("{\"ab\":\"xyz\"}"); /* 2 + 3 */
	assert_int_equal(twin_doc_size(d), 5);
	cJSON_Delete(d);
	d = test_json("{\"n\":1.5,\"b\":true,\"f\":false}"); /* 1+8 + 1+4 + 1+4 */
	assert_int_equal(twin_doc_size(d), 19);
	cJSON_Delete(d);
	d = test_json("{\"o\":{\"k\":[1,\"ab\",{\"z\":true}]}}"); /* 1 + 1 + 8+2+(1+4) */
	assert_int_equal(twin_doc_size(d), 17);
	cJSON_Delete(d);
	/* Control characters are not counted in strings; multi-byte UTF-8 is. */
	d = test_json("{\"s\":\"a\\n\\u0001b\\u00e9\"}"); /* 1 + (a b é=2) */
	assert_int_equal(twin_doc_size(d), 5);
	cJSON_Delete(d);
}

static void test_section_size_limit_message(void **state)
{
	twin_limits l = limits();
	cJSON *d = test_json("{\"abcd\":\"12345\"}"); /* size 9 */
	twin_error err;

	(void)state;
	l.tags_max = 9;
	assert_int_equal(twin_doc_check_size(d, TWIN_SECTION_TAGS, &l, &err), TWIN_OK);
	l.tags_max = 8;
	assert_int_equal(twin_doc_check_size(d, TWIN_SECTION_TAGS, &l, &err), TWIN_E_SECTION_SIZE);
	assert_string_equal(err.message, "'Tags' size should be less than 8 bytes.");
	assert_int_equal(twin_err_status(err.err), 403);
	assert_int_equal(twin_err_code(err.err), 403100);
	l.reported_max = 8;
	twin_doc_check_size(d, TWIN_SECTION_REPORTED, &l, &err);
	assert_string_equal(err.message, "'Properties.Reported' size should be less than 8 bytes.");
	l.desired_max = 8;
	twin_doc_check_size(d, TWIN_SECTION_DESIRED, &l, &err);
	assert_string_equal(err.message, "'Properties.Desired' size should be less than 8 bytes.");
	cJSON_Delete(d);
}

static void test_default_limits_are_iot_hub_values(void **state)
{
	twin_limits l = limits();

	(void)state;
	assert_int_equal(l.key_max_bytes, 1024);
	assert_int_equal(l.string_max_bytes, 4096);
	assert_true(l.int_min == -4503599627370496LL && l.int_max == 4503599627370495LL);
	assert_int_equal(l.max_depth, 10);
	assert_int_equal(l.tags_max, 8192);
	assert_int_equal(l.desired_max, 32768);
	assert_int_equal(l.reported_max, 32768);
}

/* §4.1 metadata */

static const char *T1 = "2024-05-01T08:15:30.1234567Z";
static const char *T2 = "2024-05-02T00:00:00.0000001Z";

static twin_stamp stamp(const char *when, int64_t version)
{
	twin_stamp st;

	snprintf(st.when, sizeof(st.when), "%s", when);
	st.version = version;
	return st;
}

static void merge_meta(cJSON *data, cJSON *meta, const char *patch_text, twin_stamp st)
{
	cJSON *patch = test_json(patch_text);

	assert_int_equal(twin_doc_merge(data, meta, patch, &st), TWIN_OK);
	cJSON_Delete(patch);
}

static void test_metadata_stamps_written_nodes_parents_and_root(void **state)
{
	cJSON *data = test_json("{}"), *meta = twin_meta_new_section();

	(void)state;
	merge_meta(data, meta, "{\"a\":{\"b\":1,\"c\":[1]},\"x\":true}", stamp(T1, 0));
	merge_meta(data, meta, "{\"a\":{\"b\":2}}", stamp(T2, 0));
	test_assert_json(meta, "{\"$lastUpdated\":\"2024-05-02T00:00:00.0000001Z\","
	                       "\"a\":{\"$lastUpdated\":\"2024-05-02T00:00:00.0000001Z\","
	                       "\"b\":{\"$lastUpdated\":\"2024-05-02T00:00:00.0000001Z\"},"
	                       "\"c\":{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\"}},"
	                       "\"x\":{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\"}}");
	cJSON_Delete(data);
	cJSON_Delete(meta);
}

static void test_metadata_desired_nodes_carry_last_updated_version(void **state)
{
	cJSON *data = test_json("{}"), *meta = twin_meta_new_section();

	(void)state;
	merge_meta(data, meta, "{\"a\":{\"b\":1},\"c\":2}", stamp(T1, 2));
	merge_meta(data, meta, "{\"c\":3}", stamp(T2, 3));
	test_assert_json(meta, "{\"$lastUpdated\":\"2024-05-02T00:00:00.0000001Z\","
	                       "\"$lastUpdatedVersion\":3,"
	                       "\"a\":{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\","
	                       "\"$lastUpdatedVersion\":2,"
	                       "\"b\":{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\","
	                       "\"$lastUpdatedVersion\":2}},"
	                       "\"c\":{\"$lastUpdated\":\"2024-05-02T00:00:00.0000001Z\","
	                       "\"$lastUpdatedVersion\":3}}");
	cJSON_Delete(data);
	cJSON_Delete(meta);
}

static void test_metadata_reported_nodes_have_no_version(void **state)
{
	cJSON *data = test_json("{}"), *meta = twin_meta_new_section();

	(void)state;
	merge_meta(data, meta, "{\"a\":1}", stamp(T1, 0));
	test_assert_json(meta, "{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\","
	                       "\"a\":{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\"}}");
	cJSON_Delete(data);
	cJSON_Delete(meta);
}

static void test_metadata_delete_removes_subtree_and_stamps_parent(void **state)
{
	cJSON *data = test_json("{}"), *meta = twin_meta_new_section();

	(void)state;
	merge_meta(data, meta, "{\"p\":{\"gone\":{\"x\":1},\"kept\":1}}", stamp(T1, 0));
	merge_meta(data, meta, "{\"p\":{\"gone\":null}}", stamp(T2, 0));
	test_assert_json(data, "{\"p\":{\"kept\":1}}");
	test_assert_json(meta, "{\"$lastUpdated\":\"2024-05-02T00:00:00.0000001Z\","
	                       "\"p\":{\"$lastUpdated\":\"2024-05-02T00:00:00.0000001Z\","
	                       "\"kept\":{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\"}}}");
	cJSON_Delete(data);
	cJSON_Delete(meta);
}

static void test_metadata_never_written_section(void **state)
{
	cJSON *meta = twin_meta_new_section();

	(void)state;
	test_assert_json(meta, "{\"$lastUpdated\":\"0001-01-01T00:00:00Z\"}");
	cJSON_Delete(meta);
}

static void test_metadata_replace_stamps_every_node(void **state)
{
	cJSON *data = test_json("{\"a\":{\"b\":[1]},\"c\":1}");
	twin_stamp st = stamp(T1, 5);
	cJSON *meta = twin_meta_stamp_all(data, &st);

	(void)state;
	test_assert_json(meta, "{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\","
	                       "\"$lastUpdatedVersion\":5,"
	                       "\"a\":{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\","
	                       "\"$lastUpdatedVersion\":5,"
	                       "\"b\":{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\","
	                       "\"$lastUpdatedVersion\":5}},"
	                       "\"c\":{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\","
	                       "\"$lastUpdatedVersion\":5}}");
	cJSON_Delete(data);
	cJSON_Delete(meta);
}

/* Metadata as stored (store/doc_meta.c): without inherited stamps. */

static char *compact_text(const cJSON *meta)
{
	twin_buf b = {0};

	assert_true(twin_meta_print_compact(&b, meta));
	return b.data;
}

/* Print meta compactly, read it back against data, and compare with the
 * whole tree. */
static void assert_compact_round_trip(const cJSON *data, const cJSON *meta)
{
	char *want = twin_json_print(meta), *compact = compact_text(meta), *got;
	cJSON *back = test_json(compact);

	assert_int_equal(twin_meta_expand(back, data), TWIN_OK);
	got = twin_json_print(back);
	assert_string_equal(got, want);
	cJSON_free(want);
	cJSON_free(compact);
	cJSON_free(got);
	cJSON_Delete(back);
}

static void test_metadata_stored_without_inherited_stamps(void **state)
{
	cJSON *data = test_json("{}"), *meta = twin_meta_new_section();
	char *compact;

	(void)state;
	merge_meta(data, meta, "{\"a\":{\"b\":1,\"c\":[1]},\"x\":true}", stamp(T1, 0));
	compact = compact_text(meta);
	assert_string_equal(compact, "{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\"}");
	cJSON_free(compact);
	merge_meta(data, meta, "{\"a\":{\"b\":2}}", stamp(T2, 0));
	compact = compact_text(meta);
	assert_string_equal(compact,
	                    "{\"$lastUpdated\":\"2024-05-02T00:00:00.0000001Z\","
	                    "\"a\":{\"c\":{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\"}},"
	                    "\"x\":{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\"}}");
	cJSON_free(compact);
	assert_compact_round_trip(data, meta);
	cJSON_Delete(data);
	cJSON_Delete(meta);
}

static void test_metadata_stored_desired_versions_inherited(void **state)
{
	cJSON *data = test_json("{}"), *meta = twin_meta_new_section();
	char *compact;

	(void)state;
	merge_meta(data, meta, "{\"a\":{\"b\":1},\"c\":2}", stamp(T1, 2));
	merge_meta(data, meta, "{\"c\":3}", stamp(T2, 3));
	compact = compact_text(meta);
	assert_string_equal(compact, "{\"$lastUpdated\":\"2024-05-02T00:00:00.0000001Z\","
	                             "\"$lastUpdatedVersion\":3,"
	                             "\"a\":{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\","
	                             "\"$lastUpdatedVersion\":2}}");
	cJSON_free(compact);
	assert_compact_round_trip(data, meta);
	cJSON_Delete(data);
	cJSON_Delete(meta);
}

static void test_metadata_stored_in_full_reads_back_unchanged(void **state)
{
	/* Records written before the compact encoding hold every stamp. */
	const char *full = "{\"$lastUpdated\":\"2024-05-02T00:00:00.0000001Z\","
	                   "\"$lastUpdatedVersion\":3,"
	                   "\"a\":{\"$lastUpdated\":\"2024-05-02T00:00:00.0000001Z\","
	                   "\"$lastUpdatedVersion\":3,"
	                   "\"b\":{\"$lastUpdated\":\"2024-05-02T00:00:00.0000001Z\","
	                   "\"$lastUpdatedVersion\":3}}}";
	cJSON *data = test_json("{\"a\":{\"b\":1}}"), *meta = test_json(full);

	(void)state;
	assert_int_equal(twin_meta_expand(meta, data), TWIN_OK);
	test_assert_json(meta, full);
	cJSON_Delete(data);
	cJSON_Delete(meta);
}

static void test_metadata_stored_keeps_a_missing_stamp_missing(void **state)
{
	cJSON *data = test_json("{\"a\":{\"b\":1}}");
	cJSON *meta =
	        test_json("{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\","
	                  "\"a\":{\"b\":{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\"}}}");
	char *compact = compact_text(meta);

	(void)state;
	assert_string_equal(compact, "{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\","
	                             "\"a\":{\"$lastUpdated\":null,"
	                             "\"b\":{\"$lastUpdated\":\"2024-05-01T08:15:30.1234567Z\"}}}");
	cJSON_free(compact);
	assert_compact_round_trip(data, meta);
	cJSON_Delete(data);
	cJSON_Delete(meta);
}

/* A small deterministic generator for random patches. */
static unsigned long long rng_state = 88172645463325252ULL;

static unsigned rnd(unsigned n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (unsigned)(rng_state % n);
}

static cJSON *random_patch(int depth)
{
	static const char *keys[] = {"a", "b", "c", "d", "e"};
	cJSON *p = cJSON_CreateObject();
	unsigned n = 1 + rnd(3);

	for (unsigned i = 0; i < n; i++) {
		const char *k = keys[rnd(5)];
		unsigned kind = rnd(depth < 3 ? 6 : 4);
		cJSON *v = kind == 0   ? cJSON_CreateNull()
		           : kind == 1 ? cJSON_CreateNumber(rnd(100))
		           : kind == 2 ? cJSON_CreateString("s")
		           : kind == 3 ? cJSON_CreateArray()
		                       : random_patch(depth + 1);

		if (cJSON_GetObjectItemCaseSensitive(p, k) != NULL)
			cJSON_Delete(v);
		else
			cJSON_AddItemToObject(p, k, v);
	}
	return p;
}

static void test_metadata_stored_round_trips_after_any_merges(void **state)
{
	static const char *times[] = {"2024-05-01T00:00:00.0000001Z",
	                              "2024-05-01T00:00:01.0000001Z",
	                              "2024-05-01T00:00:02.0000001Z"};

	(void)state;
	for (int run = 0; run < 200; run++) {
		int64_t version = run % 2 ? 1 : 0; /* desired-like and reported-like */
		cJSON *data = test_json("{}"), *meta = twin_meta_new_section();

		for (int step = 0; step < 12; step++) {
			cJSON *patch = random_patch(1);
			twin_stamp st = stamp(times[rnd(3)], version ? ++version : 0);

			assert_int_equal(twin_doc_merge(data, meta, patch, &st), TWIN_OK);
			cJSON_Delete(patch);
			assert_compact_round_trip(data, meta);
		}
		cJSON_Delete(data);
		cJSON_Delete(meta);
	}
}

static void test_timestamp_format_has_seven_digits(void **state)
{
	char ts[TWIN_TIMESTAMP_MAX];

	(void)state;
	twin_timestamp_format(TEST_T0, ts);
	assert_string_equal(ts, "2024-05-01T08:15:30.1234567Z");
	twin_timestamp_format(0, ts);
	assert_string_equal(ts, "0001-01-01T00:00:00Z");
}

/* §5.3 replace notification */

static void test_replace_notification_nulls_removed_keys(void **state)
{
	cJSON *old = test_json("{\"a\":1,\"b\":2,\"o\":{\"x\":1,\"y\":2}}");
	cJSON *new = test_json("{\"a\":1,\"c\":100,\"o\":{\"x\":1}}");
	cJSON *n = twin_doc_with_removals(old, new);

	(void)state;
	test_assert_json(n, "{\"a\":1,\"c\":100,\"o\":{\"x\":1,\"y\":null},\"b\":null}");
	cJSON_Delete(old);
	cJSON_Delete(new);
	cJSON_Delete(n);
}

static void test_replace_notification_object_replaced_by_primitive(void **state)
{
	cJSON *old = test_json("{\"o\":{\"x\":1}}"), *new = test_json("{\"o\":5}");
	cJSON *n = twin_doc_with_removals(old, new);

	(void)state;
	test_assert_json(n, "{\"o\":5}");
	cJSON_Delete(old);
	cJSON_Delete(new);
	cJSON_Delete(n);
}

static void test_drop_nulls_recursively(void **state)
{
	cJSON *d = test_json("{\"a\":null,\"b\":{\"c\":null,\"d\":1}}");

	(void)state;
	twin_doc_drop_nulls(d);
	test_assert_json(d, "{\"b\":{\"d\":1}}");
	cJSON_Delete(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(test_merge_primitive_sets_value),
	        cmocka_unit_test(test_merge_array_replaced_whole),
	        cmocka_unit_test(test_merge_object_into_object_is_recursive),
	        cmocka_unit_test(test_merge_object_replaces_non_object),
	        cmocka_unit_test(test_merge_null_deletes_key),
	        cmocka_unit_test(test_merge_null_on_missing_key_is_noop),
	        cmocka_unit_test(test_merge_nested_null_creates_empty_parent),
	        cmocka_unit_test(test_null_inside_array_rejected),
	        cmocka_unit_test(test_null_inside_object_inside_array_rejected),
	        cmocka_unit_test(test_null_outside_patch_rejected),
	        cmocka_unit_test(test_body_must_be_object),
	        cmocka_unit_test(test_key_length_limit_boundary),
	        cmocka_unit_test(test_empty_key_rejected),
	        cmocka_unit_test(test_key_forbidden_characters_rejected),
	        cmocka_unit_test(test_key_allowed_characters_accepted),
	        cmocka_unit_test(test_keys_checked_at_every_depth_and_inside_arrays),
	        cmocka_unit_test(test_string_length_limit_boundary),
	        cmocka_unit_test(test_depth_limit_objects_at_level_10),
	        cmocka_unit_test(test_depth_limit_primitives_at_level_11),
	        cmocka_unit_test(test_depth_array_element_is_one_level_below_array),
	        cmocka_unit_test(test_depth_limit_is_configurable),
	        cmocka_unit_test(test_size_formula),
	        cmocka_unit_test(test_section_size_limit_message),
	        cmocka_unit_test(test_default_limits_are_iot_hub_values),
	        cmocka_unit_test(test_metadata_stamps_written_nodes_parents_and_root),
	        cmocka_unit_test(test_metadata_desired_nodes_carry_last_updated_version),
	        cmocka_unit_test(test_metadata_reported_nodes_have_no_version),
	        cmocka_unit_test(test_metadata_delete_removes_subtree_and_stamps_parent),
	        cmocka_unit_test(test_metadata_never_written_section),
	        cmocka_unit_test(test_metadata_replace_stamps_every_node),
	        cmocka_unit_test(test_metadata_stored_without_inherited_stamps),
	        cmocka_unit_test(test_metadata_stored_desired_versions_inherited),
	        cmocka_unit_test(test_metadata_stored_in_full_reads_back_unchanged),
	        cmocka_unit_test(test_metadata_stored_keeps_a_missing_stamp_missing),
	        cmocka_unit_test(test_metadata_stored_round_trips_after_any_merges),
	        cmocka_unit_test(test_timestamp_format_has_seven_digits),
	        cmocka_unit_test(test_replace_notification_nulls_removed_keys),
	        cmocka_unit_test(test_replace_notification_object_replaced_by_primitive),
	        cmocka_unit_test(test_drop_nulls_recursively),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
