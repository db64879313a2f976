/*
 * test_device_isolation.c - a device only ever sees and touches its own twin
 * (PROTOCOL.md §2.2 "only the owning connection"; DESIGN.md §5: identity from
 * the connection, never from a topic), although every device uses the same
 * topic strings and $rid values; and the connection rules of §1.4.
 *
 * Open mode: the client id is the device id. Desired-property notifications
 * have no MQTT API yet (the control API comes later); their isolation tests
 * belong with that API.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define RES   "$iothub/twin/res/"
#define GET   "$iothub/twin/GET/?$rid="
#define PATCH "$iothub/twin/PATCH/properties/reported/?$rid="
#define FRESH "{\"desired\":{\"$version\":1},\"reported\":{\"$version\":1}}"

#define N_DEVICES  5
#define N_REQUESTS 10

static int setup(void **state)
{
	*state = tb_broker_start(NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tb_cleanup_all();
	return 0;
}

static tb_client *device(tb_broker *b, const char *id)
{
	tb_client *c = tb_client_connect(b, id, NULL);

	if (c == NULL)
		fail_msg("device %s could not connect", id);
	assert_int_equal(tb_client_subscribe(c, RES "#", 1), 1);
	return c;
}

static tb_msg *next_reply(tb_client *c)
{
	tb_msg *m = tb_client_wait(c, RES, TB_WAIT_MS);

	if (m == NULL)
		fail_msg("no reply within %d ms", TB_WAIT_MS);
	return m;
}

static void expect_reply(tb_client *c, const char *topic, const char *payload)
{
	tb_msg *m = next_reply(c);

	tb_assert_str_exact(m->topic, topic);
	if (payload != NULL)
		tb_assert_str_exact(m->payload, payload);
	tb_msg_free(m);
}

static void test_two_devices_same_topics_get_only_own_replies(void **state)
{
	tb_broker *b = *state;
	tb_client *d1 = device(b, "d1"), *d2 = device(b, "d2");
	tb_msg *m;

	/* Same topics, same $rid values, interleaved without waiting. */
	assert_int_equal(tb_client_publish_nowait(d1, PATCH "1", "{\"who\":\"d1\"}", -1, 1, false),
	                 0);
	assert_int_equal(tb_client_publish_nowait(d2, PATCH "1", "{\"who\":\"d2\"}", -1, 1, false),
	                 0);
	assert_int_equal(tb_client_publish_nowait(d2, PATCH "2", "{\"n\":2}", -1, 1, false), 0);
	assert_int_equal(tb_client_publish_nowait(d1, GET "2", NULL, 0, 1, false), 0);
	assert_int_equal(tb_client_publish_nowait(d2, GET "3", NULL, 0, 1, false), 0);
	expect_reply(d1, RES "204/?$rid=1&$version=2", "");
	expect_reply(d1, RES "200/?$rid=2",
	             "{\"desired\":{\"$version\":1},\"reported\":{\"who\":\"d1\",\"$version\":2}}");
	expect_reply(d2, RES "204/?$rid=1&$version=2", "");
	expect_reply(d2, RES "204/?$rid=2&$version=3", "");
	m = next_reply(d2);
	tb_assert_str_exact(m->topic, RES "200/?$rid=3");
	tb_assert_json_eq(m->payload, "{\"desired\":{\"$version\":1},\"reported\":{\"who\":\"d2\","
	                              "\"n\":2,\"$version\":3}}");
	tb_msg_free(m);
	/* Nothing of the other device's is on its way. */
	tb_twin_assert_quiet(d1);
	tb_twin_assert_quiet(d2);
	tb_client_free(d1);
	tb_client_free(d2);
}

static void test_device_cannot_read_other_twin(void **state)
{
	tb_broker *b = *state;
	tb_client *d1 = device(b, "d1"), *d2 = device(b, "d2");

	assert_int_equal(tb_client_publish(d2, PATCH "s", "{\"secret\":\"d2\"}", -1, 1, false), 0);
	expect_reply(d2, RES "204/?$rid=s&$version=2", "");
	assert_int_equal(tb_client_publish(d1, GET "g", NULL, 0, 1, false), 0);
	expect_reply(d1, RES "200/?$rid=g", FRESH);
	tb_client_free(d1);
	tb_client_free(d2);
}

static void test_patch_applies_only_to_own_twin(void **state)
{
	tb_broker *b = *state;
	tb_client *d1 = device(b, "d1"), *d2 = device(b, "d2");

	for (int i = 0; i < 3; i++) {
		assert_int_equal(tb_client_publish(d1, PATCH "p", "{\"a\":1}", -1, 1, false), 0);
		tb_msg_free(next_reply(d1));
	}
	assert_int_equal(tb_client_publish(d2, PATCH "p", "{\"b\":1}", -1, 1, false), 0);
	/* d2's reported version counts d2's writes only. */
	expect_reply(d2, RES "204/?$rid=p&$version=2", "");
	assert_int_equal(tb_client_publish(d2, GET "g", NULL, 0, 1, false), 0);
	expect_reply(d2, RES "200/?$rid=g",
	             "{\"desired\":{\"$version\":1},\"reported\":{\"b\":1,\"$version\":2}}");
	tb_client_free(d1);
	tb_client_free(d2);
}

static void test_identity_from_connection_not_topic(void **state)
{
	tb_broker *b = *state;
	tb_client *d1 = device(b, "d1"), *d2 = device(b, "d2");

	/* Naming another device in the topic changes nothing. */
	assert_int_equal(tb_client_publish(d1, PATCH "1&deviceId=d2&$deviceId=d2", "{\"x\":1}", -1,
	                                   1, false),
	                 0);
	expect_reply(d1, RES "204/?$rid=1&$version=2", "");
	assert_int_equal(tb_client_publish(d2, GET "g", NULL, 0, 1, false), 0);
	expect_reply(d2, RES "200/?$rid=g", FRESH);
	assert_int_equal(tb_client_publish(d1, GET "g", NULL, 0, 1, false), 0);
	expect_reply(d1, RES "200/?$rid=g",
	             "{\"desired\":{\"$version\":1},\"reported\":{\"x\":1,\"$version\":2}}");
	tb_client_free(d1);
	tb_client_free(d2);
}

static void test_concurrent_devices_versions_independent(void **state)
{
	tb_broker *b = *state;
	tb_client *d[N_DEVICES];
	char id[16], topic[64], body[64];

	for (int k = 0; k < N_DEVICES; k++) {
		snprintf(id, sizeof(id), "dev%d", k);
		d[k] = device(b, id);
	}
	/* Round-robin, nobody waits: the broker sees the devices interleaved. */
	for (int i = 0; i < N_REQUESTS; i++)
		for (int k = 0; k < N_DEVICES; k++) {
			snprintf(topic, sizeof(topic), PATCH "%d", i);
			snprintf(body, sizeof(body), "{\"dev\":%d,\"i\":%d}", k, i);
			assert_int_equal(tb_client_publish_nowait(d[k], topic, body, -1, 1, false),
			                 0);
		}
	for (int k = 0; k < N_DEVICES; k++) {
		for (int i = 0; i < N_REQUESTS; i++) {
			snprintf(topic, sizeof(topic), RES "204/?$rid=%d&$version=%d", i, i + 2);
			expect_reply(d[k], topic, "");
		}
		snprintf(body, sizeof(body), "{\"dev\":%d,\"i\":%d}", k, N_REQUESTS - 1);
		assert_int_equal(tb_client_publish(d[k], GET "g", NULL, 0, 1, false), 0);
		{
			tb_msg *m = next_reply(d[k]);

			tb_assert_str_exact(m->topic, RES "200/?$rid=g");
			assert_int_equal(tb_json_int(m->payload, "reported.dev"), k);
			assert_int_equal(tb_json_int(m->payload, "reported.i"), N_REQUESTS - 1);
			assert_int_equal(tb_json_int(m->payload, "reported.$version"),
			                 N_REQUESTS + 1);
			tb_msg_free(m);
		}
		tb_twin_assert_quiet(d[k]);
	}
	for (int k = 0; k < N_DEVICES; k++)
		tb_client_free(d[k]);
}

static void test_second_connection_same_id_closes_older(void **state)
{
	tb_broker *b = *state;
	tb_client *old = device(b, "d1"), *new;

	assert_int_equal(tb_client_publish(old, PATCH "p", "{\"a\":1}", -1, 1, false), 0);
	expect_reply(old, RES "204/?$rid=p&$version=2", "");
	new = tb_client_connect(b, "d1", NULL);
	assert_non_null(new);
	assert_true(tb_client_disconnected(old, TB_WAIT_MS));
	/* The new connection is the same device, with the same twin. */
	assert_int_equal(tb_client_subscribe(new, RES "#", 1), 1);
	assert_int_equal(tb_client_publish(new, GET "g", NULL, 0, 1, false), 0);
	expect_reply(new, RES "200/?$rid=g",
	             "{\"desired\":{\"$version\":1},\"reported\":{\"a\":1,\"$version\":2}}");
	tb_client_free(old);
	tb_client_free(new);
}

static void test_other_device_cannot_inject_replies(void **state)
{
	tb_broker *b = *state;
	tb_client *d1 = device(b, "d1"), *d2 = device(b, "d2");
	tb_msg *m;

	/* d2 forges a reply on the shared topic string: only d2 hears of it
	 * (a 404), d1 sees nothing. */
	assert_int_equal(tb_client_publish(d2, RES "200/?$rid=1", FRESH, -1, 1, false), 0);
	m = next_reply(d2);
	tb_assert_error_reply(m, RES "404/?$rid=1", 404, NULL, NULL);
	tb_msg_free(m);
	tb_twin_assert_quiet(d1);
	tb_twin_assert_quiet(d2);
	tb_client_free(d1);
	tb_client_free(d2);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(test_two_devices_same_topics_get_only_own_replies),
	        T(test_device_cannot_read_other_twin),
	        T(test_patch_applies_only_to_own_twin),
	        T(test_identity_from_connection_not_topic),
	        T(test_concurrent_devices_versions_independent),
	        T(test_second_connection_same_id_closes_older),
	        T(test_other_device_cannot_inject_replies),
	};

	return cmocka_run_group_tests_name("integration.device_isolation", tests, NULL, NULL);
}
