/*
 * test_device_protocol.c - the device twin protocol over MQTT, rule by rule
 * (PROTOCOL.md §2 topics, QoS, bodies and errors; §5 merge; §6 limits), in
 * open mode: the MQTT client id is the device id, unknown devices are
 * registered on first connect, no credentials.
 *
 * Every test gets its own broker and a device "dev1" subscribed to
 * $iothub/twin/res/# at QoS 1 and publishing at QoS 1 (the Python SDK's
 * choice); tests about other QoS combinations connect their own device.
 * "Twin unchanged" after a rejected request is checked by comparing the
 * exact GET body before and after.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define RES      "$iothub/twin/res/"
#define GET      "$iothub/twin/GET/?$rid="
#define PATCH    "$iothub/twin/PATCH/properties/reported/?$rid="
#define DESIRED  "$iothub/twin/PATCH/properties/desired/"
#define FRESH    "{\"desired\":{\"$version\":1},\"reported\":{\"$version\":1}}"
#define E_ARG    400004
#define E_SIZE   403100
#define SIZE_MSG "'Properties.Reported' size should be less than 32768 bytes."

typedef struct fx {
	tb_broker *b;
	tb_client *dev;
} fx;

/* A device with $iothub/twin/res/# at qos. */
static tb_client *device(tb_broker *b, const char *id, int qos)
{
	tb_client *c = tb_client_connect(b, id, NULL);

	if (c == NULL)
		fail_msg("device %s could not connect", id);
	assert_int_equal(tb_client_subscribe(c, RES "#", qos), qos);
	return c;
}

static int setup(void **state)
{
	fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	*state = f;
	f->b = tb_broker_start(NULL);
	f->dev = device(f->b, "dev1", 1);
	return 0;
}

static int teardown(void **state)
{
	free(*state);
	tb_cleanup_all();
	return 0;
}

/* Publish len bytes (len < 0: strlen) at QoS 1 and return the next reply. */
static tb_msg *request_raw(tb_client *c, const char *topic, const char *body, int len)
{
	tb_msg *m;

	if (tb_client_publish(c, topic, body, len, 1, false) != 0)
		fail_msg("request on %s was not acknowledged", topic);
	m = tb_client_wait(c, RES, TB_WAIT_MS);
	if (m == NULL)
		fail_msg("no reply to %s within %d ms", topic, TB_WAIT_MS);
	return m;
}

static tb_msg *request(tb_client *c, const char *topic, const char *body)
{
	return request_raw(c, topic, body, -1);
}

/* The GET body, malloc'd. */
static char *get_twin(tb_client *c)
{
	tb_msg *m = request(c, GET "get", NULL);
	char *body;

	tb_assert_str_exact(m->topic, RES "200/?$rid=get");
	assert_true(tb_json_valid(m->payload));
	body = strdup(m->payload);
	tb_msg_free(m);
	return body;
}

/* Apply a reported patch that must succeed; returns the new $version after
 * checking the 204 topic and its empty payload. */
static long long patch_ok(tb_client *c, const char *body)
{
	tb_msg *m = request(c, PATCH "p", body);
	char *v;
	long long version;

	if (tb_res_status(m->topic) != 204)
		fail_msg("patch %.200s: got %s %.300s", body, m->topic, m->payload);
	assert_int_equal(m->payloadlen, 0);
	v = tb_topic_param(m->topic, "$version");
	assert_non_null(v);
	version = atoll(v);
	free(v);
	tb_msg_free(m);
	return version;
}

/* A request that must be rejected with status/code on res/{status}/?$rid=x
 * and leave the twin exactly as it was. */
static void assert_rejected_raw(tb_client *c, const char *topic, const char *body, int len,
                                int status, long long code)
{
	char *before = get_twin(c), *after, want[64];
	tb_msg *m = request_raw(c, topic, body, len);

	snprintf(want, sizeof(want), RES "%d/?$rid=x", status);
	if (strcmp(m->topic, want) != 0)
		print_error("request %s body %.200s\n", topic, body != NULL ? body : "");
	tb_assert_error_reply(m, want, code, NULL, NULL);
	tb_msg_free(m);
	after = get_twin(c);
	tb_assert_str_exact(after, before);
	free(before);
	free(after);
}

static void assert_patch_rejected(tb_client *c, const char *body, int status, long long code)
{
	assert_rejected_raw(c, PATCH "x", body, -1, status, code);
}

/* A string of n copies of ch, malloc'd. */
static char *repeat(char ch, size_t n)
{
	char *s = malloc(n + 1);

	assert_non_null(s);
	memset(s, ch, n);
	s[n] = '\0';
	return s;
}

/* {"k1":{"k2":…{"kN":{"p":1}}}} (objects) or {"a":[[…[1]…]]} (N arrays):
 * N containers, the innermost primitive at level N + 1 (PROTOCOL.md §6). */
static char *nested(int n, bool arrays)
{
	char *s = malloc((size_t)n * 16 + 32);
	size_t len = 0;

	assert_non_null(s);
	if (arrays) {
		len += (size_t)sprintf(s + len, "{\"a\":");
		for (int i = 0; i < n; i++)
			s[len++] = '[';
		s[len++] = '1';
		for (int i = 0; i < n; i++)
			s[len++] = ']';
		s[len++] = '}';
		s[len] = '\0';
		return s;
	}
	s[len++] = '{';
	for (int i = 1; i <= n; i++)
		len += (size_t)sprintf(s + len, "\"k%d\":{", i);
	len += (size_t)sprintf(s + len, "\"p\":1");
	for (int i = 0; i <= n; i++)
		s[len++] = '}';
	s[len] = '\0';
	return s;
}

/* ---- GET ------------------------------------------------------------------ */

static void test_get_returns_200_with_device_body(void **state)
{
	fx *f = *state;
	tb_msg *m;

	patch_ok(f->dev, "{\"fw\":{\"ver\":\"1.2\"}}");
	m = request(f->dev, GET "1", NULL);
	tb_assert_str_exact(m->topic, RES "200/?$rid=1");
	assert_false(m->retain);
	/* desired then reported, each with $version last; nothing else: no
	 * $metadata, no tags, no properties wrapper, no identity fields. */
	tb_assert_json_eq_ordered(
	        m->payload, "{\"desired\":{\"$version\":1},\"reported\":{\"fw\":{\"ver\":\"1.2\"},"
	                    "\"$version\":2}}");
	tb_assert_str_exact(m->payload,
	                    "{\"desired\":{\"$version\":1},\"reported\":{\"fw\":{\"ver\":"
	                    "\"1.2\"},\"$version\":2}}");
	tb_msg_free(m);
}

static void test_get_body_ignored_single_space(void **state)
{
	static const char *bodies[] = {" ", "", "not json {", "{\"fw\":\"9\"}"};
	fx *f = *state;

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		tb_msg *m = request(f->dev, GET "s", bodies[i]);

		tb_assert_str_exact(m->topic, RES "200/?$rid=s");
		tb_assert_str_exact(m->payload, FRESH);
		tb_msg_free(m);
	}
}

static void test_get_fresh_twin_body_exact(void **state)
{
	fx *f = *state;
	tb_msg *m = request(f->dev, GET "fresh", NULL);

	tb_assert_str_exact(m->topic, RES "200/?$rid=fresh");
	tb_assert_str_exact(m->payload, FRESH);
	tb_msg_free(m);
}

/* ---- reported PATCH: success ---------------------------------------------- */

static void test_patch_reported_returns_204_with_version_and_empty_payload(void **state)
{
	fx *f = *state;
	tb_msg *m = request(f->dev, PATCH "2", "{\"fw\":\"1.2\"}");
	char *body;

	tb_assert_str_exact(m->topic, RES "204/?$rid=2&$version=2");
	assert_int_equal(m->payloadlen, 0);
	assert_false(m->retain);
	tb_msg_free(m);
	body = get_twin(f->dev);
	tb_assert_str_exact(body, "{\"desired\":{\"$version\":1},\"reported\":{\"fw\":\"1.2\","
	                          "\"$version\":2}}");
	free(body);
}

static void test_patch_versions_increase_by_one(void **state)
{
	fx *f = *state;

	assert_int_equal(patch_ok(f->dev, "{\"a\":1}"), 2);
	assert_int_equal(patch_ok(f->dev, "{\"a\":2}"), 3);
	assert_int_equal(patch_ok(f->dev, "{\"b\":true}"), 4);
}

static void test_patch_merges_nested_objects(void **state)
{
	fx *f = *state;
	char *body;

	patch_ok(f->dev, "{\"a\":{\"x\":1,\"y\":2},\"s\":\"k\"}");
	patch_ok(f->dev, "{\"a\":{\"y\":3,\"z\":{\"d\":4}}}");
	body = get_twin(f->dev);
	tb_assert_json_eq(body,
	                  "{\"desired\":{\"$version\":1},\"reported\":{\"a\":{\"x\":1,\"y\":3,"
	                  "\"z\":{\"d\":4}},\"s\":\"k\",\"$version\":3}}");
	free(body);
}

static void test_patch_null_deletes_key(void **state)
{
	fx *f = *state;
	char *body;

	patch_ok(f->dev, "{\"a\":1,\"b\":{\"c\":2,\"d\":3}}");
	patch_ok(f->dev, "{\"a\":null,\"b\":{\"c\":null}}");
	body = get_twin(f->dev);
	tb_assert_json_eq(
	        body,
	        "{\"desired\":{\"$version\":1},\"reported\":{\"b\":{\"d\":3},\"$version\":3}}");
	free(body);
}

static void test_patch_null_on_absent_key_is_noop_write(void **state)
{
	fx *f = *state;
	char *body;

	/* Still a write: the version bumps (§5.1), the key is not created. */
	assert_int_equal(patch_ok(f->dev, "{\"ghost\":null}"), 2);
	body = get_twin(f->dev);
	tb_assert_str_exact(body, "{\"desired\":{\"$version\":1},\"reported\":{\"$version\":2}}");
	free(body);
}

static void test_patch_nested_null_creates_empty_parent(void **state)
{
	fx *f = *state;
	char *body;

	patch_ok(f->dev, "{\"a\":{\"b\":null}}");
	assert_int_equal(patch_ok(f->dev, "{\"a\":{\"b\":null}}"), 3);
	body = get_twin(f->dev);
	tb_assert_str_exact(body, "{\"desired\":{\"$version\":1},\"reported\":{\"a\":{},"
	                          "\"$version\":3}}");
	free(body);
}

static void test_patch_arrays_replaced_whole(void **state)
{
	fx *f = *state;
	char *body;

	patch_ok(f->dev, "{\"l\":[1,2,3],\"o\":[{\"a\":1},{\"b\":2}]}");
	patch_ok(f->dev, "{\"l\":[4],\"o\":[{\"c\":3}]}");
	body = get_twin(f->dev);
	tb_assert_json_eq(body, "{\"desired\":{\"$version\":1},\"reported\":{\"l\":[4],"
	                        "\"o\":[{\"c\":3}],\"$version\":3}}");
	free(body);
}

static void test_patch_object_and_primitive_replace_each_other(void **state)
{
	fx *f = *state;
	char *body;

	patch_ok(f->dev, "{\"a\":1,\"b\":{\"x\":1}}");
	patch_ok(f->dev, "{\"a\":{\"y\":2},\"b\":\"flat\"}");
	body = get_twin(f->dev);
	tb_assert_json_eq(body, "{\"desired\":{\"$version\":1},\"reported\":{\"a\":{\"y\":2},"
	                        "\"b\":\"flat\",\"$version\":3}}");
	free(body);
}

static void test_patch_empty_object_returns_204_current_version_no_write(void **state)
{
	fx *f = *state;
	char *before, *after;
	tb_msg *m;

	assert_int_equal(patch_ok(f->dev, "{\"a\":1}"), 2);
	before = get_twin(f->dev);
	m = request(f->dev, PATCH "e", "{}");
	tb_assert_str_exact(m->topic, RES "204/?$rid=e&$version=2");
	assert_int_equal(m->payloadlen, 0);
	tb_msg_free(m);
	m = request(f->dev, PATCH "w", " { } ");
	tb_assert_str_exact(m->topic, RES "204/?$rid=w&$version=2");
	tb_msg_free(m);
	after = get_twin(f->dev);
	tb_assert_str_exact(after, before);
	assert_int_equal(patch_ok(f->dev, "{\"a\":2}"), 3);
	free(before);
	free(after);
}

/* ---- reported PATCH: rejected (§2.3, §6) --------------------------------- */

static void test_patch_malformed_json_400004(void **state)
{
	static const char *bodies[] = {"{\"a\":",    "{\"a\":1,}",     "{a:1}",
	                               "{'a':1}",    "{\"a\":1} x",    "{\"a\":01}",
	                               "{\"a\":1}}", "{\"a\":\"\\q\"}"};
	fx *f = *state;

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		assert_patch_rejected(f->dev, bodies[i], 400, E_ARG);
}

static void test_patch_not_object_400(void **state)
{
	static const char *bodies[] = {"[1,2]", "\"s\"", "42", "true", "null", "[]"};
	fx *f = *state;

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		assert_patch_rejected(f->dev, bodies[i], 400, E_ARG);
}

static void test_patch_whitespace_only_400(void **state)
{
	static const char *bodies[] = {" ", "\t\r\n ", ""};
	fx *f = *state;

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		assert_patch_rejected(f->dev, bodies[i], 400, E_ARG);
}

static void test_patch_invalid_utf8_400(void **state)
{
	static const char *bodies[] = {
	        "{\"a\":\"\xff\"}",         /* not UTF-8 at all */
	        "{\"\xc3\x28\":1}",         /* bad continuation, in a key */
	        "{\"a\":\"\xc0\xaf\"}",     /* overlong */
	        "{\"a\":\"\xed\xa0\x80\"}", /* an encoded surrogate */
	        "{\"a\":\"\\ud800\"}",      /* a lone surrogate escape */
	        "{\"a\":\"\\udc00x\"}",     /* a lone low surrogate */
	};
	fx *f = *state;

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		assert_patch_rejected(f->dev, bodies[i], 400, E_ARG);
	/* A NUL byte inside the body. */
	assert_rejected_raw(f->dev, PATCH "x", "{\"a\":\"b\0\"}", 10, 400, E_ARG);
}

static void test_patch_bad_key_400_and_twin_unchanged(void **state)
{
	static const char *bodies[] = {
	        "{\"ok\":1,\"$x\":1}",
	        "{\"a.b\":1}",
	        "{\"a b\":1}",
	        "{\"\":1}",
	        "{\"a\\u0001\":1}",
	        "{\"a\\u007f\":1}",
	        "{\"a\\u0085\":1}",
	        "{\"a\\u0000\":1}",
	        "{\"ok\":{\"in\":{\"$x\":1}}}",
	        "{\"arr\":[1,{\"a.b\":1}]}",
	        "{\"arr\":[[{\"x y\":1}]]}",
	};
	fx *f = *state;

	patch_ok(f->dev, "{\"keep\":\"me\"}");
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		assert_patch_rejected(f->dev, bodies[i], 400, E_ARG);
}

static void test_patch_key_characters_allowed(void **state)
{
	fx *f = *state;
	char *body;

	/* '#' is allowed (project decision), keys are case-sensitive UTF-8. */
	patch_ok(f->dev, "{\"a#b\":1,\"K\":1,\"k\":2,\"\xc3\xa9t\xc3\xa9\":3,\"a-b_c:d\":4}");
	body = get_twin(f->dev);
	tb_assert_json_eq(body, "{\"desired\":{\"$version\":1},\"reported\":{\"a#b\":1,\"K\":1,"
	                        "\"k\":2,\"\xc3\xa9t\xc3\xa9\":3,\"a-b_c:d\":4,\"$version\":2}}");
	free(body);
}

static void test_patch_key_length_limit_1024(void **state)
{
	fx *f = *state;
	char *key = repeat('k', 1025), *body = malloc(1100);

	assert_non_null(body);
	snprintf(body, 1100, "{\"%s\":1}", key);
	assert_patch_rejected(f->dev, body, 400, E_ARG);
	key[1024] = '\0';
	snprintf(body, 1100, "{\"%s\":1}", key);
	assert_int_equal(patch_ok(f->dev, body), 2);
	free(key);
	free(body);
}

static void test_patch_string_length_limit_4096(void **state)
{
	fx *f = *state;
	char *s = repeat('v', 4097), *body = malloc(4200);

	assert_non_null(body);
	snprintf(body, 4200, "{\"s\":\"%s\"}", s);
	assert_patch_rejected(f->dev, body, 400, E_ARG);
	snprintf(body, 4200, "{\"l\":[\"%s\"]}", s);
	assert_patch_rejected(f->dev, body, 400, E_ARG);
	s[4096] = '\0';
	snprintf(body, 4200, "{\"s\":\"%s\"}", s);
	assert_int_equal(patch_ok(f->dev, body), 2);
	free(s);
	free(body);
}

static void test_patch_null_in_array_400(void **state)
{
	static const char *bodies[] = {"{\"a\":[1,null]}", "{\"a\":[{\"b\":null}]}",
	                               "{\"a\":[[null]]}",
	                               "{\"o\":{\"a\":[{\"b\":{\"c\":null}}]}}"};
	fx *f = *state;

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		assert_patch_rejected(f->dev, bodies[i], 400, E_ARG);
}

static void test_patch_depth_over_limit_400(void **state)
{
	fx *f = *state;
	char *objects = nested(11, false), *arrays = nested(11, true);

	assert_patch_rejected(f->dev, objects, 400, E_ARG);
	assert_patch_rejected(f->dev, arrays, 400, E_ARG);
	free(objects);
	free(arrays);
}

static void test_patch_depth_at_limit_accepted(void **state)
{
	fx *f = *state;
	char *objects = nested(10, false), *arrays = nested(10, true);

	/* Ten nested containers, a primitive at level 11: valid (§6). */
	assert_int_equal(patch_ok(f->dev, objects), 2);
	assert_int_equal(patch_ok(f->dev, arrays), 3);
	free(objects);
	free(arrays);
}

static void test_patch_integer_out_of_range_400(void **state)
{
	static const char *bodies[] = {"{\"i\":4503599627370496}", "{\"i\":-4503599627370497}",
	                               "{\"i\":9223372036854775808}", "{\"l\":[4503599627370496]}"};
	fx *f = *state;

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		assert_patch_rejected(f->dev, bodies[i], 400, E_ARG);
}

static void test_patch_integer_at_limits_accepted(void **state)
{
	fx *f = *state;
	char *body;

	patch_ok(f->dev, "{\"max\":4503599627370495,\"min\":-4503599627370496,\"f\":1.5,"
	                 "\"big\":1e300}");
	body = get_twin(f->dev);
	tb_assert_json_eq(body,
	                  "{\"desired\":{\"$version\":1},\"reported\":{\"max\":"
	                  "4503599627370495,\"min\":-4503599627370496,\"f\":1.5,\"big\":1e300,"
	                  "\"$version\":2}}");
	assert_non_null(strstr(body, "4503599627370495"));
	free(body);
}

static void test_patch_duplicate_key_400(void **state)
{
	static const char *bodies[] = {"{\"a\":1,\"a\":2}", "{\"o\":{\"b\":1,\"b\":1}}",
	                               "{\"l\":[{\"c\":1,\"c\":2}]}"};
	fx *f = *state;

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		assert_patch_rejected(f->dev, bodies[i], 400, E_ARG);
}

/* {"kA":"<4000 x>", …}: each member counts 2 + 4000 bytes (§6 sizes). */
static char *big_members(const char *keys)
{
	char *v = repeat('x', 4000), *s = malloc(strlen(keys) / 2 * 4020 + 8);
	size_t len = 1;

	assert_non_null(s);
	s[0] = '{';
	for (const char *k = keys; k[0] != '\0' && k[1] != '\0'; k += 2)
		len += (size_t)sprintf(s + len, "%s\"%.2s\":\"%s\"", len > 1 ? "," : "", k, v);
	s[len++] = '}';
	s[len] = '\0';
	free(v);
	return s;
}

static void test_patch_reported_section_too_large_403100(void **state)
{
	fx *f = *state;
	char *eight = big_members("k0k1k2k3k4k5k6k7"), *ninth = big_members("k8");
	char *nine = big_members("n0n1n2n3n4n5n6n7n8"), *before, *after;
	tb_msg *m;

	/* 8 x 4002 = 32016 bytes: fits. */
	assert_int_equal(patch_ok(f->dev, eight), 2);
	before = get_twin(f->dev);
	/* The result of the write would be 36018 bytes. */
	m = request(f->dev, PATCH "big", ninth);
	tb_assert_error_reply(m, RES "403/?$rid=big", E_SIZE, SIZE_MSG, NULL);
	tb_msg_free(m);
	after = get_twin(f->dev);
	tb_assert_str_exact(after, before);
	free(after);
	/* One patch over the limit by itself. */
	m = request(f->dev, PATCH "big2", nine);
	tb_assert_error_reply(m, RES "403/?$rid=big2", E_SIZE, SIZE_MSG, NULL);
	tb_msg_free(m);
	after = get_twin(f->dev);
	tb_assert_str_exact(after, before);
	free(after);
	free(before);
	free(eight);
	free(ninth);
	free(nine);
}

static void test_patch_size_checked_on_result_of_write(void **state)
{
	fx *f = *state;
	char *eight = big_members("k0k1k2k3k4k5k6k7"), *k8 = big_members("k8");
	char *swap = malloc(strlen(k8) + 16);

	assert_non_null(swap);
	assert_int_equal(patch_ok(f->dev, eight), 2);
	/* Deleting k0 while adding k8 keeps the result at 32016 bytes, although
	 * the twin would be over the limit if the patch were only added. */
	sprintf(swap, "{\"k0\":null,%s", k8 + 1);
	assert_int_equal(patch_ok(f->dev, swap), 3);
	free(eight);
	free(k8);
	free(swap);
}

/* ---- topics and $rid (§2.1) ----------------------------------------------- */

static void test_missing_rid_answers_400_with_empty_rid(void **state)
{
	static const char *topics[] = {
	        "$iothub/twin/GET/",
	        "$iothub/twin/GET/?",
	        "$iothub/twin/GET/?foo=1",
	        "$iothub/twin/GET/?$RID=1", /* parameter names are case-sensitive */
	        "$iothub/twin/PATCH/properties/reported/",
	        "$iothub/twin/PATCH/properties/reported/?$version=3",
	};
	fx *f = *state;

	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
		tb_msg *m = request(f->dev, topics[i], "{\"notapplied\":1}");

		tb_assert_error_reply(m, RES "400/?$rid=", E_ARG, NULL, NULL);
		tb_msg_free(m);
	}
	/* The PATCHes were not executed. */
	{
		char *body = get_twin(f->dev);

		tb_assert_str_exact(body, FRESH);
		free(body);
	}
}

static void test_rid_echoed_verbatim(void **state)
{
	static const char *rids[] = {"AbC%2F-1",  "3f2504e0-4f89-41d3-9d0c-0305e82c3301",
	                             "42",        "a=b",
	                             "%E2%82%AC", "_.~!*"};
	fx *f = *state;
	char topic[128], want[128];
	tb_msg *m;

	for (size_t i = 0; i < sizeof(rids) / sizeof(rids[0]); i++) {
		snprintf(topic, sizeof(topic), GET "%s", rids[i]);
		snprintf(want, sizeof(want), RES "200/?$rid=%s", rids[i]);
		m = request(f->dev, topic, NULL);
		tb_assert_str_exact(m->topic, want);
		tb_msg_free(m);
	}
	m = request(f->dev, PATCH "AbC%2F-1", "{\"a\":1}");
	tb_assert_str_exact(m->topic, RES "204/?$rid=AbC%2F-1&$version=2");
	tb_msg_free(m);
	m = request(f->dev, PATCH "3f2504e0-4f89-41d3-9d0c-0305e82c3301", "[]");
	tb_assert_error_reply(m, RES "400/?$rid=3f2504e0-4f89-41d3-9d0c-0305e82c3301", E_ARG, NULL,
	                      NULL);
	tb_msg_free(m);
}

static void test_rid_found_anywhere_in_query(void **state)
{
	fx *f = *state;
	tb_msg *m = request(f->dev, "$iothub/twin/GET/?foo=1&$rid=9&bar", NULL);

	tb_assert_str_exact(m->topic, RES "200/?$rid=9");
	tb_msg_free(m);
}

static void test_unknown_twin_operation_404_with_rid(void **state)
{
	static const char *topics[] = {
	        "$iothub/twin/POST/?$rid=x",
	        "$iothub/twin/DELETE/?$rid=x",
	        "$iothub/twin/PATCH/properties/tags/?$rid=x",
	        "$iothub/twin/PUT/properties/reported/?$rid=x",
	};
	fx *f = *state;
	tb_msg *m;

	for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++)
		assert_rejected_raw(f->dev, topics[i], "{\"a\":1}", -1, 404, 404);
	m = request(f->dev, "$iothub/twin/POST/?$rid=7", NULL);
	tb_assert_error_reply(m, RES "404/?$rid=7", 404, NULL, NULL);
	tb_msg_free(m);
}

static void test_unknown_twin_operation_without_rid_dropped(void **state)
{
	fx *f = *state;

	assert_int_equal(tb_client_publish(f->dev, "$iothub/twin/POST/", "{}", -1, 1, false), 0);
	assert_int_equal(tb_client_publish(f->dev, "$iothub/twin/POST/?x=1", "{}", -1, 0, false),
	                 0);
	/* No reply, and the connection is still open. */
	tb_twin_assert_quiet(f->dev);
	assert_false(tb_client_disconnected(f->dev, 0));
}

static void test_unknown_query_params_ignored(void **state)
{
	fx *f = *state;
	tb_msg *m = request(f->dev, PATCH "1&$version=9&foo=bar", "{\"a\":1}");

	tb_assert_str_exact(m->topic, RES "204/?$rid=1&$version=2");
	tb_msg_free(m);
	m = request(f->dev, GET "2&flag&x=", NULL);
	tb_assert_str_exact(m->topic, RES "200/?$rid=2");
	tb_assert_json_eq(m->payload,
	                  "{\"desired\":{\"$version\":1},\"reported\":{\"a\":1,\"$version\":2}}");
	tb_msg_free(m);
}

static void test_requests_answered_in_arrival_order(void **state)
{
	fx *f = *state;
	char topic[96], body[32], want[96];
	long long version = 1;
	int last = -1;

	/* 50 requests without waiting; every fifth is a GET. */
	for (int i = 0; i < 50; i++) {
		if (i % 5 == 4) {
			snprintf(topic, sizeof(topic), GET "%d", i);
			assert_int_equal(tb_client_publish_nowait(f->dev, topic, NULL, 0, 1, false),
			                 0);
		} else {
			snprintf(topic, sizeof(topic), PATCH "%d", i);
			snprintf(body, sizeof(body), "{\"n\":%d}", i);
			assert_int_equal(
			        tb_client_publish_nowait(f->dev, topic, body, -1, 1, false), 0);
		}
	}
	for (int i = 0; i < 50; i++) {
		tb_msg *m = tb_client_wait(f->dev, RES, TB_WAIT_MS);

		assert_non_null(m);
		if (i % 5 == 4) {
			snprintf(want, sizeof(want), RES "200/?$rid=%d", i);
			tb_assert_str_exact(m->topic, want);
			assert_int_equal(tb_json_int(m->payload, "reported.n"), last);
			assert_int_equal(tb_json_int(m->payload, "reported.$version"), version);
		} else {
			snprintf(want, sizeof(want), RES "204/?$rid=%d&$version=%lld", i,
			         ++version);
			tb_assert_str_exact(m->topic, want);
			last = i;
		}
		tb_msg_free(m);
	}
}

/* ---- QoS, retain, delivery (§2.2) ------------------------------------------ */

static void test_qos1_request_gets_qos1_reply_when_subscribed_qos1(void **state)
{
	fx *f = *state;
	tb_msg *m = tb_twin_request(f->dev, GET "q1", NULL, 1, TB_WAIT_MS);

	assert_non_null(m);
	tb_assert_str_exact(m->topic, RES "200/?$rid=q1");
	assert_int_equal(m->qos, 1);
	tb_msg_free(m);
	/* The subscription decides, not the request. */
	m = tb_twin_request(f->dev, PATCH "q0", "{\"a\":1}", 0, TB_WAIT_MS);
	assert_non_null(m);
	tb_assert_str_exact(m->topic, RES "204/?$rid=q0&$version=2");
	assert_int_equal(m->qos, 1);
	tb_msg_free(m);
}

static void test_reply_qos_is_granted_subscription_qos(void **state)
{
	fx *f = *state;
	tb_client *c = device(f->b, "dev-qos0", 0);
	tb_msg *m;

	m = tb_twin_request(c, GET "a", NULL, 1, TB_WAIT_MS);
	assert_non_null(m);
	tb_assert_str_exact(m->topic, RES "200/?$rid=a");
	assert_int_equal(m->qos, 0);
	tb_msg_free(m);
	m = tb_twin_request(c, PATCH "b", "{\"a\":1}", 1, TB_WAIT_MS);
	assert_non_null(m);
	tb_assert_str_exact(m->topic, RES "204/?$rid=b&$version=2");
	assert_int_equal(m->qos, 0);
	tb_msg_free(m);
	m = tb_twin_request(c, PATCH "c", "[", 1, TB_WAIT_MS);
	tb_assert_error_reply(m, RES "400/?$rid=c", E_ARG, NULL, NULL);
	assert_int_equal(m->qos, 0);
	tb_msg_free(m);
	tb_client_free(c);
}

static void test_subscribe_qos2_granted_1(void **state)
{
	fx *f = *state;
	tb_client *c = tb_client_connect(f->b, "dev-qos2", NULL);
	tb_msg *m;

	assert_non_null(c);
	assert_int_equal(tb_client_subscribe(c, RES "#", 2), 1);
	assert_int_equal(tb_client_subscribe(c, DESIRED "#", 2), 1);
	assert_int_equal(tb_client_subscribe(c, "$iothub/methods/POST/#", 2), 1);
	m = tb_twin_request(c, GET "q", NULL, 1, TB_WAIT_MS);
	assert_non_null(m);
	tb_assert_str_exact(m->topic, RES "200/?$rid=q");
	assert_int_equal(m->qos, 1);
	tb_msg_free(m);
	tb_client_free(c);
}

static void test_publish_qos2_on_iothub_closes_connection(void **state)
{
	fx *f = *state;
	tb_client *c;

	assert_int_equal(tb_client_publish_nowait(f->dev, GET "q2", NULL, 0, 2, false), 0);
	assert_true(tb_client_disconnected(f->dev, TB_WAIT_MS));
	c = device(f->b, "dev1", 1);
	assert_int_equal(tb_client_publish_nowait(c, PATCH "q2", "{\"a\":1}", -1, 2, false), 0);
	assert_true(tb_client_disconnected(c, TB_WAIT_MS));
	tb_client_free(c);
}

static void test_publish_outside_twin_and_methods_closes_connection(void **state)
{
	fx *f = *state;

	assert_int_equal(tb_client_publish_nowait(f->dev, "$iothub/foo/bar", "x", -1, 0, false), 0);
	assert_true(tb_client_disconnected(f->dev, TB_WAIT_MS));
}

static void test_retain_flag_ignored_nothing_retained(void **state)
{
	fx *f = *state;
	tb_client *late;
	tb_msg *m;

	assert_int_equal(tb_client_publish(f->dev, GET "r1", NULL, 0, 1, true), 0);
	m = tb_client_wait(f->dev, RES, TB_WAIT_MS);
	assert_non_null(m);
	tb_assert_str_exact(m->topic, RES "200/?$rid=r1");
	assert_false(m->retain);
	tb_msg_free(m);
	assert_int_equal(tb_client_publish(f->dev, PATCH "r2", "{\"a\":1}", -1, 1, true), 0);
	m = tb_client_wait(f->dev, RES, TB_WAIT_MS);
	assert_non_null(m);
	tb_assert_str_exact(m->topic, RES "204/?$rid=r2&$version=2");
	assert_false(m->retain);
	tb_msg_free(m);
	/* A later subscriber to every filter it may hold gets nothing retained. */
	late = tb_client_connect(f->b, "dev-late", NULL);
	assert_non_null(late);
	assert_int_equal(tb_client_subscribe(late, "#", 1), 1);
	assert_int_equal(tb_client_subscribe(late, RES "#", 1), 1);
	assert_int_equal(tb_client_subscribe(late, DESIRED "#", 1), 1);
	assert_int_equal(tb_client_subscribe(late, "$iothub/methods/POST/#", 1), 1);
	tb_twin_assert_quiet(late);
	/* Nor does the requester when it subscribes again. */
	assert_int_equal(tb_client_unsubscribe(f->dev, RES "#"), 0);
	assert_int_equal(tb_client_subscribe(f->dev, RES "#", 1), 1);
	tb_twin_assert_quiet(f->dev);
	tb_client_free(late);
}

static void test_no_res_subscription_request_executed_no_reply(void **state)
{
	fx *f = *state;
	tb_client *c = tb_client_connect(f->b, "dev-nosub", NULL);
	tb_msg *m;

	assert_non_null(c);
	assert_int_equal(tb_client_publish(c, PATCH "p", "{\"a\":1}", -1, 1, false), 0);
	assert_int_equal(tb_client_publish(c, GET "g1", NULL, 0, 1, false), 0);
	assert_int_equal(tb_client_publish(c, PATCH "bad", "[", -1, 1, false), 0);
	assert_int_equal(tb_client_subscribe(c, RES "#", 1), 1);
	m = tb_twin_request(c, GET "g2", NULL, 1, TB_WAIT_MS);
	assert_non_null(m);
	/* The first reply this device ever sees is the one to g2. */
	tb_assert_str_exact(m->topic, RES "200/?$rid=g2");
	tb_assert_str_exact(m->payload,
	                    "{\"desired\":{\"$version\":1},\"reported\":{\"a\":1,\"$version\":2}}");
	tb_msg_free(m);
	assert_int_equal(tb_client_queue_len(c), 0);
	tb_client_free(c);
}

static void test_device_publish_to_res_topic_not_forwarded(void **state)
{
	fx *f = *state;
	tb_client *other = device(f->b, "dev2", 1);
	tb_msg *m;

	assert_int_equal(tb_client_subscribe(other, "#", 1), 1);
	assert_int_equal(tb_client_publish(f->dev, RES "200/?$rid=1", FRESH, -1, 1, false), 0);
	/* The sender is subscribed to res/# itself: had the publish been
	 * forwarded, the forged 200 would come first. */
	m = tb_client_wait(f->dev, "", TB_WAIT_MS);
	tb_assert_error_reply(m, RES "404/?$rid=1", 404, NULL, NULL);
	tb_msg_free(m);
	assert_int_equal(tb_client_publish(f->dev, RES "204/", NULL, 0, 1, false), 0);
	tb_twin_assert_quiet(f->dev);
	tb_twin_assert_quiet(other);
	tb_client_free(other);
}

static void test_device_publish_to_desired_topic_not_forwarded(void **state)
{
	fx *f = *state;
	tb_client *other = device(f->b, "dev2", 1);
	char *body;
	tb_msg *m;

	assert_int_equal(tb_client_subscribe(f->dev, DESIRED "#", 1), 1);
	assert_int_equal(tb_client_subscribe(other, DESIRED "#", 1), 1);
	assert_int_equal(tb_client_publish(f->dev, DESIRED "?$version=5",
	                                   "{\"x\":1,\"$version\":5}", -1, 1, false),
	                 0);
	assert_int_equal(tb_client_publish(f->dev, DESIRED "?$rid=3&$version=5",
	                                   "{\"x\":1,\"$version\":5}", -1, 1, false),
	                 0);
	m = tb_client_wait(f->dev, "", TB_WAIT_MS);
	tb_assert_error_reply(m, RES "404/?$rid=3", 404, NULL, NULL);
	tb_msg_free(m);
	tb_twin_assert_quiet(f->dev);
	tb_twin_assert_quiet(other);
	body = get_twin(f->dev);
	tb_assert_str_exact(body, FRESH);
	free(body);
	tb_client_free(other);
}

static void test_disallowed_iothub_subscription_refused(void **state)
{
	static const char *filters[] = {
	        "$iothub/#",
	        "$iothub/twin/#",
	        "$iothub/twin/res/200/#",
	        "$iothub/twin/GET/#",
	        "$iothub/twin/PATCH/properties/reported/#",
	        "$iothub/twin/PATCH/#",
	};
	fx *f = *state;

	for (size_t i = 0; i < sizeof(filters) / sizeof(filters[0]); i++) {
		if (tb_client_subscribe(f->dev, filters[i], 0) != 0x80)
			fail_msg("SUBSCRIBE %s was not refused with 0x80", filters[i]);
	}
	/* A refusal does not close the connection; its replies still come. */
	tb_twin_assert_quiet(f->dev);
}

static void test_allowed_iothub_filters_granted(void **state)
{
	fx *f = *state;
	tb_client *c = tb_client_connect(f->b, "dev-filters", NULL);

	assert_non_null(c);
	assert_int_equal(tb_client_subscribe(c, RES "#", 0), 0);
	assert_int_equal(tb_client_subscribe(c, DESIRED "#", 1), 1);
	assert_int_equal(tb_client_subscribe(c, "$iothub/methods/POST/#", 1), 1);
	assert_int_equal(tb_client_subscribe(c, RES "#", 1), 1);
	tb_twin_assert_quiet(c);
	tb_client_free(c);
}

/* ---- error bodies (§2.4) --------------------------------------------------- */

static void test_error_body_shape(void **state)
{
	fx *f = *state;
	tb_error_body e1, e2;
	tb_msg *m;
	double age;

	m = request(f->dev, PATCH "e1", "{\"$x\":1}");
	tb_assert_error_reply(m, RES "400/?$rid=e1", E_ARG, NULL, &e1);
	tb_msg_free(m);
	m = request(f->dev, PATCH "e2", "{\"$x\":1}");
	tb_assert_error_reply(m, RES "400/?$rid=e2", E_ARG, NULL, &e2);
	tb_msg_free(m);
	/* trackingId: 32 lower-case hex digits (checked by the parser), unique. */
	assert_string_not_equal(e1.tracking_id, e2.tracking_id);
	/* timestampUtc: 7 fractional digits (parser), and now. */
	age = tb_timestamp_age(e1.timestamp_utc);
	if (age < -60 || age > 60)
		fail_msg("timestampUtc %s is %.1f s away from now", e1.timestamp_utc, age);
}

static void test_error_responses_are_valid_json(void **state)
{
	struct {
		const char *topic, *body;
	} cases[] = {
	        {PATCH "a", "{\"a\":"},
	        {PATCH "b", "[1]"},
	        {PATCH "c", "{\"a.b\":1}"},
	        {PATCH "d", "{\"a\":[null]}"},
	        {PATCH "e", ""},
	        {"$iothub/twin/GET/", NULL},
	        {"$iothub/twin/POST/?$rid=f", "{}"},
	};
	fx *f = *state;
	char *big = big_members("k0k1k2k3k4k5k6k7k8");

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]) + 1; i++) {
		bool last = i == sizeof(cases) / sizeof(cases[0]);
		tb_msg *m = request(f->dev, last ? PATCH "g" : cases[i].topic,
		                    last ? big : cases[i].body);
		int status = tb_res_status(m->topic);
		tb_error_body e;

		assert_true(status >= 400);
		assert_true(m->payloadlen > 0);
		if (!tb_json_valid(m->payload) || !tb_error_body_parse(m->payload, &e))
			fail_msg("invalid error body on %s: %s", m->topic, m->payload);
		/* HTTP status x 1000 + detail, or the bare status. */
		assert_true(e.error_code == status || e.error_code / 1000 == status);
		tb_msg_free(m);
	}
	free(big);
}

/* ---- persistence and isolation from observers ----------------------------- */

static void test_twin_survives_restart_versions_continue(void **state)
{
	fx *f = *state;
	char *body;

	assert_int_equal(patch_ok(f->dev, "{\"a\":1}"), 2);
	assert_int_equal(patch_ok(f->dev, "{\"b\":{\"c\":\"d\"}}"), 3);
	tb_client_free(f->dev);
	f->dev = NULL;
	tb_broker_restart(f->b);
	f->dev = device(f->b, "dev1", 1);
	body = get_twin(f->dev);
	tb_assert_json_eq(body, "{\"desired\":{\"$version\":1},\"reported\":{\"a\":1,"
	                        "\"b\":{\"c\":\"d\"},\"$version\":3}}");
	free(body);
	assert_int_equal(patch_ok(f->dev, "{\"a\":2}"), 4);
}

static void test_acknowledged_patch_survives_kill9(void **state)
{
	fx *f = *state;
	char *body;

	assert_int_equal(patch_ok(f->dev, "{\"durable\":true}"), 2);
	tb_broker_kill9(f->b);
	tb_client_free(f->dev);
	f->dev = NULL;
	tb_broker_restart(f->b);
	f->dev = device(f->b, "dev1", 1);
	body = get_twin(f->dev);
	tb_assert_str_exact(body, "{\"desired\":{\"$version\":1},\"reported\":{\"durable\":true,"
	                          "\"$version\":2}}");
	free(body);
}

static void test_persistent_session_keeps_res_subscription(void **state)
{
	tb_client_opts sdk = {.persistent_session = true, .keepalive = 180};
	fx *f = *state;
	tb_client *c = tb_client_connect(f->b, "dev-sdk", &sdk);
	tb_msg *m;

	/* SDKs subscribe once and never again, across reconnects (§1.5) and
	 * broker restarts. */
	assert_non_null(c);
	assert_int_equal(tb_client_subscribe(c, RES "#", 0), 0);
	tb_client_free(c);
	c = tb_client_connect(f->b, "dev-sdk", &sdk);
	assert_true(tb_client_session_present(c));
	m = tb_twin_request(c, GET "after-reconnect", " ", 0, TB_WAIT_MS);
	assert_non_null(m);
	tb_assert_str_exact(m->topic, RES "200/?$rid=after-reconnect");
	tb_msg_free(m);
	tb_client_free(c);
	tb_broker_restart(f->b);
	c = tb_client_connect(f->b, "dev-sdk", &sdk);
	assert_true(tb_client_session_present(c));
	m = tb_twin_request(c, GET "after-restart", " ", 0, TB_WAIT_MS);
	assert_non_null(m);
	tb_assert_str_exact(m->topic, RES "200/?$rid=after-restart");
	tb_msg_free(m);
	tb_client_free(c);
}

static void test_request_not_seen_by_other_subscribers(void **state)
{
	fx *f = *state;
	tb_client *obs = device(f->b, "observer", 1);
	tb_msg *m;

	/* $iothub/# is refused, and # never matches $ topics. */
	assert_int_equal(tb_client_subscribe(obs, "$iothub/#", 1), 0x80);
	assert_int_equal(tb_client_subscribe(obs, "#", 1), 1);
	assert_int_equal(tb_client_subscribe(obs, DESIRED "#", 1), 1);
	m = request(f->dev, GET "1", NULL);
	tb_msg_free(m);
	patch_ok(f->dev, "{\"a\":1}");
	m = request(f->dev, PATCH "bad", "{");
	tb_msg_free(m);
	m = request(f->dev, "$iothub/twin/POST/?$rid=2", NULL);
	tb_msg_free(m);
	tb_twin_assert_quiet(obs);
	tb_client_free(obs);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(test_get_returns_200_with_device_body),
	        T(test_get_body_ignored_single_space),
	        T(test_get_fresh_twin_body_exact),
	        T(test_patch_reported_returns_204_with_version_and_empty_payload),
	        T(test_patch_versions_increase_by_one),
	        T(test_patch_merges_nested_objects),
	        T(test_patch_null_deletes_key),
	        T(test_patch_null_on_absent_key_is_noop_write),
	        T(test_patch_nested_null_creates_empty_parent),
	        T(test_patch_arrays_replaced_whole),
	        T(test_patch_object_and_primitive_replace_each_other),
	        T(test_patch_empty_object_returns_204_current_version_no_write),
	        T(test_patch_malformed_json_400004),
	        T(test_patch_not_object_400),
	        T(test_patch_whitespace_only_400),
	        T(test_patch_invalid_utf8_400),
	        T(test_patch_bad_key_400_and_twin_unchanged),
	        T(test_patch_key_characters_allowed),
	        T(test_patch_key_length_limit_1024),
	        T(test_patch_string_length_limit_4096),
	        T(test_patch_null_in_array_400),
	        T(test_patch_depth_over_limit_400),
	        T(test_patch_depth_at_limit_accepted),
	        T(test_patch_integer_out_of_range_400),
	        T(test_patch_integer_at_limits_accepted),
	        T(test_patch_duplicate_key_400),
	        T(test_patch_reported_section_too_large_403100),
	        T(test_patch_size_checked_on_result_of_write),
	        T(test_missing_rid_answers_400_with_empty_rid),
	        T(test_rid_echoed_verbatim),
	        T(test_rid_found_anywhere_in_query),
	        T(test_unknown_twin_operation_404_with_rid),
	        T(test_unknown_twin_operation_without_rid_dropped),
	        T(test_unknown_query_params_ignored),
	        T(test_requests_answered_in_arrival_order),
	        T(test_qos1_request_gets_qos1_reply_when_subscribed_qos1),
	        T(test_reply_qos_is_granted_subscription_qos),
	        T(test_subscribe_qos2_granted_1),
	        T(test_publish_qos2_on_iothub_closes_connection),
	        T(test_publish_outside_twin_and_methods_closes_connection),
	        T(test_retain_flag_ignored_nothing_retained),
	        T(test_no_res_subscription_request_executed_no_reply),
	        T(test_device_publish_to_res_topic_not_forwarded),
	        T(test_device_publish_to_desired_topic_not_forwarded),
	        T(test_disallowed_iothub_subscription_refused),
	        T(test_allowed_iothub_filters_granted),
	        T(test_error_body_shape),
	        T(test_error_responses_are_valid_json),
	        T(test_twin_survives_restart_versions_continue),
	        T(test_acknowledged_patch_survives_kill9),
	        T(test_persistent_session_keeps_res_subscription),
	        T(test_request_not_seen_by_other_subscribers),
	};

	return cmocka_run_group_tests_name("integration.device_protocol", tests, NULL, NULL);
}
