/*
 * test_harness.c - proves the integration harness against the real broker
 * with the plugin loaded, on plain (non-$iothub) topics only, so it holds
 * whatever the plugin does with twin traffic: start and readiness, clients,
 * publish/subscribe at QoS 0 and 1, the message queue, restart, kill -9,
 * persistent sessions, refused connections, and the parsing helpers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

static int teardown(void **state)
{
	(void)state;
	tb_cleanup_all();
	return 0;
}

static int64_t elapsed_ms(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)(now.tv_sec - since->tv_sec) * 1000 +
	       (now.tv_nsec - since->tv_nsec) / 1000000;
}

static bool file_exists(const char *dir, const char *name)
{
	char path[4096];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &st) == 0;
}

static int count(const char *haystack, const char *needle)
{
	int n = 0;

	for (const char *p = haystack; (p = strstr(p, needle)) != NULL; p += strlen(needle))
		n++;
	return n;
}

static tb_msg *expect_msg(tb_client *c, const char *topic, const char *payload, int qos)
{
	tb_msg *m = tb_client_wait(c, topic, TB_WAIT_MS);

	assert_non_null(m);
	assert_string_equal(m->topic, topic);
	assert_string_equal(m->payload, payload);
	assert_int_equal(m->payloadlen, (int)strlen(payload));
	assert_int_equal(m->qos, qos);
	return m;
}

static void test_broker_starts_with_plugin_and_opens_database(void **state)
{
	tb_broker *b = tb_broker_start(NULL);
	char *log = tb_broker_log(b);

	(void)state;
	assert_true(tb_broker_running(b));
	assert_true(tb_broker_port(b) > 0 && tb_broker_port(b) != 1883);
	assert_non_null(strstr(log, "mosquitto-twin: database open at "));
	assert_non_null(strstr(log, tb_broker_db_path(b)));
	assert_true(file_exists(tb_broker_db_path(b), "data.mdb"));
	assert_true(file_exists(tb_broker_dir(b), "mosquitto.conf"));
	free(log);
	tb_broker_free(b);
}

static void test_echo_qos0_and_qos1_between_two_clients(void **state)
{
	tb_broker *b = tb_broker_start(NULL);
	tb_client *rx = tb_client_connect(b, "echo-rx", NULL);
	tb_client *tx = tb_client_connect(b, "echo-tx", NULL);
	tb_msg *m;

	(void)state;
	assert_non_null(rx);
	assert_non_null(tx);
	assert_int_equal(tb_client_subscribe(rx, "t/echo", 1), 1);
	assert_int_equal(tb_client_publish(tx, "t/echo", "zero", -1, 0, false), 0);
	assert_int_equal(tb_client_publish(tx, "t/echo", "one", -1, 1, false), 0);
	m = expect_msg(rx, "t/echo", "zero", 0);
	assert_false(m->retain);
	tb_msg_free(m);
	tb_msg_free(expect_msg(rx, "t/echo", "one", 1));
	/* A QoS 0 subscription downgrades. */
	assert_int_equal(tb_client_subscribe(tx, "t/echo", 0), 0);
	assert_int_equal(tb_client_publish(rx, "t/echo", "down", -1, 1, false), 0);
	tb_msg_free(expect_msg(tx, "t/echo", "down", 0));
	tb_msg_free(expect_msg(rx, "t/echo", "down", 1));
	assert_int_equal(tb_client_queue_len(rx), 0);
	assert_int_equal(tb_client_queue_len(tx), 0);
	tb_client_free(tx);
	tb_client_free(rx);
	tb_broker_free(b);
}

static void test_wait_filters_by_prefix_and_keeps_order(void **state)
{
	tb_broker *b = tb_broker_start(NULL);
	tb_client *c = tb_client_connect(b, "prefix", NULL);

	(void)state;
	assert_int_equal(tb_client_subscribe(c, "t/#", 1), 1);
	assert_int_equal(tb_client_publish(c, "t/a/1", "a1", -1, 1, false), 0);
	assert_int_equal(tb_client_publish(c, "t/b/1", "b1", -1, 1, false), 0);
	assert_int_equal(tb_client_publish(c, "t/a/2", "a2", -1, 1, false), 0);
	tb_msg_free(expect_msg(c, "t/b/1", "b1", 1));
	tb_msg_free(expect_msg(c, "t/a/1", "a1", 1));
	tb_msg_free(expect_msg(c, "t/a/2", "a2", 1));
	assert_int_equal(tb_client_queue_len(c), 0);
	tb_client_free(c);
	tb_broker_free(b);
}

static void test_wait_times_out_with_null(void **state)
{
	tb_broker *b = tb_broker_start(NULL);
	tb_client *c = tb_client_connect(b, "timeout", NULL);
	struct timespec t0;
	int64_t ms;

	(void)state;
	assert_int_equal(tb_client_subscribe(c, "t/none", 0), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_null(tb_client_wait(c, "t/none", 200));
	ms = elapsed_ms(&t0);
	assert_true(ms >= 190 && ms < 2000);
	tb_client_free(c);
	tb_broker_free(b);
}

static void test_binary_and_empty_payloads(void **state)
{
	static const char bin[5] = {'a', '\0', 'b', '\xff', '\0'};
	tb_broker *b = tb_broker_start(NULL);
	tb_client *c = tb_client_connect(b, "binary", NULL);
	tb_msg *m;

	(void)state;
	assert_int_equal(tb_client_subscribe(c, "t/bin", 1), 1);
	assert_int_equal(tb_client_publish(c, "t/bin", bin, sizeof(bin), 1, false), 0);
	assert_int_equal(tb_client_publish(c, "t/bin", NULL, 0, 1, false), 0);
	m = tb_client_wait(c, "t/bin", TB_WAIT_MS);
	assert_non_null(m);
	assert_int_equal(m->payloadlen, sizeof(bin));
	assert_memory_equal(m->payload, bin, sizeof(bin));
	assert_int_equal(m->payload[m->payloadlen], '\0');
	tb_msg_free(m);
	m = tb_client_wait(c, "t/bin", TB_WAIT_MS);
	assert_non_null(m);
	assert_int_equal(m->payloadlen, 0);
	assert_string_equal(m->payload, "");
	tb_msg_free(m);
	tb_client_free(c);
	tb_broker_free(b);
}

static void test_retained_message_reaches_late_subscriber(void **state)
{
	tb_broker *b = tb_broker_start(NULL);
	tb_client *tx = tb_client_connect(b, "ret-tx", NULL);
	tb_client *rx;
	tb_msg *m;

	(void)state;
	assert_int_equal(tb_client_publish(tx, "t/ret", "kept", -1, 1, true), 0);
	rx = tb_client_connect(b, "ret-rx", NULL);
	assert_int_equal(tb_client_subscribe(rx, "t/#", 0), 0);
	m = expect_msg(rx, "t/ret", "kept", 0);
	assert_true(m->retain);
	tb_msg_free(m);
	tb_client_free(rx);
	tb_client_free(tx);
	tb_broker_free(b);
}

static void test_unsubscribe_stops_delivery(void **state)
{
	tb_broker *b = tb_broker_start(NULL);
	tb_client *c = tb_client_connect(b, "unsub", NULL);
	tb_msg *m;

	(void)state;
	assert_int_equal(tb_client_subscribe(c, "t/x", 1), 1);
	assert_int_equal(tb_client_subscribe(c, "t/barrier", 1), 1);
	assert_int_equal(tb_client_unsubscribe(c, "t/x"), 0);
	assert_int_equal(tb_client_publish(c, "t/x", "gone", -1, 1, false), 0);
	assert_int_equal(tb_client_publish(c, "t/barrier", "b", -1, 1, false), 0);
	/* Delivery is in order: once the barrier is here, t/x is not coming. */
	m = tb_client_wait(c, "", TB_WAIT_MS);
	assert_non_null(m);
	assert_string_equal(m->topic, "t/barrier");
	tb_msg_free(m);
	assert_int_equal(tb_client_queue_len(c), 0);
	tb_client_free(c);
	tb_broker_free(b);
}

static void test_restart_keeps_port_and_database(void **state)
{
	tb_broker *b = tb_broker_start(NULL);
	int port = tb_broker_port(b);
	tb_client *c = tb_client_connect(b, "before", NULL);
	char *log;

	(void)state;
	assert_non_null(c);
	tb_broker_restart(b);
	assert_true(tb_client_disconnected(c, TB_WAIT_MS));
	assert_int_equal(tb_broker_port(b), port);
	tb_client_free(c);
	c = tb_client_connect(b, "after", NULL);
	assert_non_null(c);
	log = tb_broker_log(b);
	assert_int_equal(count(log, "mosquitto-twin: database open at "), 2);
	assert_int_equal(count(log, "mosquitto-twin: database closed cleanly"), 1);
	free(log);
	tb_client_free(c);
	tb_broker_free(b);
}

static void test_stop_returns_zero_and_closes_database(void **state)
{
	tb_broker *b = tb_broker_start(NULL);
	struct timespec t0;

	(void)state;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(tb_broker_stop(b), 0);
	/* The readiness probe guarantees the first SIGTERM is not lost. */
	assert_true(elapsed_ms(&t0) < 900);
	assert_false(tb_broker_running(b));
	assert_int_equal(tb_broker_stop(b), 0);
	assert_true(tb_broker_wait_log(b, "mosquitto-twin: database closed cleanly", 0));
	tb_broker_free(b);
}

static void test_kill9_is_detected_and_restart_recovers(void **state)
{
	tb_broker *b = tb_broker_start(NULL);
	tb_client *c = tb_client_connect(b, "crash", NULL);

	(void)state;
	assert_int_equal(tb_client_subscribe(c, "t/k", 1), 1);
	tb_broker_kill9(b);
	assert_false(tb_broker_running(b));
	assert_true(tb_client_disconnected(c, TB_WAIT_MS));
	assert_int_equal(tb_client_publish(c, "t/k", "x", -1, 1, false), -1);
	tb_client_free(c);
	assert_null(tb_client_connect(b, "refused", NULL));
	tb_broker_restart(b);
	c = tb_client_connect(b, "crash", NULL);
	assert_non_null(c);
	assert_int_equal(tb_client_subscribe(c, "t/k", 1), 1);
	assert_int_equal(tb_client_publish(c, "t/k", "y", -1, 1, false), 0);
	tb_msg_free(expect_msg(c, "t/k", "y", 1));
	tb_client_free(c);
	tb_broker_free(b);
}

static void test_persistent_session_survives_restart(void **state)
{
	tb_client_opts persistent = {.persistent_session = true};
	tb_broker *b = tb_broker_start(NULL);
	tb_client *c = tb_client_connect(b, "persist", &persistent), *tx;

	(void)state;
	assert_false(tb_client_session_present(c));
	assert_int_equal(tb_client_subscribe(c, "t/p", 1), 1);
	tb_client_free(c);
	tb_broker_restart(b);
	c = tb_client_connect(b, "persist", &persistent);
	assert_non_null(c);
	assert_true(tb_client_session_present(c));
	tx = tb_client_connect(b, "persist-tx", NULL);
	assert_int_equal(tb_client_publish(tx, "t/p", "kept", -1, 1, false), 0);
	tb_msg_free(expect_msg(c, "t/p", "kept", 1));
	tb_client_free(tx);
	tb_client_free(c);
	tb_broker_free(b);
}

static void test_no_persistence_loses_session_at_restart(void **state)
{
	tb_broker_opts o = {.no_persistence = true};
	tb_client_opts persistent = {.persistent_session = true};
	tb_broker *b = tb_broker_start(&o);
	tb_client *c = tb_client_connect(b, "volatile", &persistent);

	(void)state;
	assert_int_equal(tb_client_subscribe(c, "t/p", 1), 1);
	tb_client_free(c);
	c = tb_client_connect(b, "volatile", &persistent);
	assert_true(tb_client_session_present(c));
	tb_client_free(c);
	tb_broker_restart(b);
	c = tb_client_connect(b, "volatile", &persistent);
	assert_false(tb_client_session_present(c));
	tb_client_free(c);
	tb_broker_free(b);
}

static void test_refused_connect_reports_connack_code(void **state)
{
	tb_broker_opts o = {.config = "clientid_prefixes ok-"};
	tb_client_opts v5 = {.protocol = TB_MQTT_5};
	tb_broker *b = tb_broker_start(&o);
	tb_client *c = NULL;

	(void)state;
	assert_int_equal(tb_client_try_connect(b, "bad-id", NULL, &c), 5);
	assert_null(c);
	assert_int_equal(tb_client_try_connect(b, "bad-id", &v5, &c), 0x87);
	assert_null(c);
	assert_int_equal(tb_client_try_connect(b, "ok-id", &v5, &c), 0);
	assert_non_null(c);
	assert_int_equal(tb_client_subscribe(c, "t/v5", 1), 1);
	assert_int_equal(tb_client_publish(c, "t/v5", "five", -1, 1, false), 0);
	tb_msg_free(expect_msg(c, "t/v5", "five", 1));
	tb_client_free(c);
	tb_broker_free(b);
}

static void test_broker_closing_a_connection_is_detected(void **state)
{
	tb_broker *b = tb_broker_start(NULL);
	tb_client *old = tb_client_connect(b, "twice", NULL), *new;

	(void)state;
	assert_false(tb_client_disconnected(old, 0));
	new = tb_client_connect(b, "twice", NULL);
	assert_non_null(new);
	assert_true(tb_client_disconnected(old, TB_WAIT_MS));
	assert_false(tb_client_disconnected(new, 0));
	tb_client_disconnect(new);
	assert_false(tb_client_disconnected(new, 0));
	tb_client_free(new);
	tb_client_free(old);
	tb_broker_free(b);
}

static void test_will_published_when_connection_is_taken_over(void **state)
{
	tb_client_opts will = {.will_topic = "t/will", .will_payload = "gone", .will_qos = 1};
	tb_broker *b = tb_broker_start(NULL);
	tb_client *obs = tb_client_connect(b, "will-obs", NULL);
	tb_client *c = tb_client_connect(b, "will-dev", &will), *again;

	(void)state;
	assert_non_null(c);
	assert_int_equal(tb_client_subscribe(obs, "t/will", 1), 1);
	/* A clean-session takeover sends the older connection's will. */
	again = tb_client_connect(b, "will-dev", NULL);
	assert_non_null(again);
	assert_true(tb_client_disconnected(c, TB_WAIT_MS));
	tb_msg_free(expect_msg(obs, "t/will", "gone", 1));
	tb_client_free(again);
	tb_client_free(c);
	tb_client_free(obs);
	tb_broker_free(b);
}

static void test_broker_refusing_to_start_is_awaited(void **state)
{
	tb_broker_opts o = {.plugin_opts = "no_such_option 1", .no_wait = true};
	tb_broker *b = tb_broker_start(&o);

	(void)state;
	assert_true(tb_broker_wait_exit(b, TB_WAIT_MS) > 0);
	assert_true(tb_broker_wait_log(b, "unknown option plugin_opt_no_such_option", 0));
	tb_broker_free(b);
}

static void test_shared_directory_outlives_brokers(void **state)
{
	char *dir = tb_tmpdir_new("twin-shared");
	tb_broker_opts o = {.dir = dir, .plugin_opts = "map_size_mb 8"};
	tb_broker *b = tb_broker_start(&o);
	char *log;

	(void)state;
	assert_string_equal(tb_broker_dir(b), dir);
	tb_broker_free(b);
	assert_true(file_exists(dir, "db/data.mdb"));
	b = tb_broker_start(&o);
	log = tb_broker_log(b);
	assert_int_equal(count(log, "mosquitto-twin: database open at "), 2);
	free(log);
	tb_broker_free(b);
	tb_tmpdir_free(dir);
}

static void test_topic_helpers(void **state)
{
	char *v;

	(void)state;
	assert_int_equal(tb_res_status("$iothub/twin/res/204/?$rid=1&$version=2"), 204);
	assert_int_equal(tb_res_status("$iothub/twin/res/400/?$rid="), 400);
	assert_int_equal(tb_res_status("$iothub/twin/res/x/?$rid=1"), -1);
	assert_int_equal(tb_res_status("$iothub/twin/PATCH/properties/desired/?$version=2"), -1);
	v = tb_topic_param("$iothub/twin/res/204/?$rid=a%2F=b&$version=7", "$rid");
	assert_string_equal(v, "a%2F=b");
	free(v);
	v = tb_topic_param("$iothub/twin/res/204/?$rid=a&$version=7", "$version");
	assert_string_equal(v, "7");
	free(v);
	v = tb_topic_param("x/?$rid=&flag", "flag");
	assert_string_equal(v, "");
	free(v);
	v = tb_topic_param("x/?$rid=", "$rid");
	assert_string_equal(v, "");
	free(v);
	assert_null(tb_topic_param("x/?$ridx=1", "$rid"));
	assert_null(tb_topic_param("x/", "$rid"));
}

static void test_json_helpers(void **state)
{
	tb_error_body e;

	(void)state;
	tb_assert_json_eq("{\"a\":1,\"b\":[1,{\"c\":null}]}",
	                  "{ \"b\": [1, {\"c\": null}], \"a\": 1.0 }");
	tb_assert_json_eq_ordered("{\"a\":1, \"b\":2}", "{\"a\":1,\"b\":2}");
	tb_assert_str_exact("{\"a\":1}", "{\"a\":1}");
	assert_true(tb_json_valid("{\"a\":\"\xc3\xa9\"}"));
	assert_false(tb_json_valid("{\"a\":\"\xff\"}"));
	assert_false(tb_json_valid("{\"a\":1} x"));
	assert_false(tb_json_valid(""));
	assert_int_equal(tb_json_int("{\"reported\":{\"$version\":5}}", "reported.$version"), 5);
	assert_true(tb_timestamp_valid("2024-05-01T08:15:30.1234567Z"));
	assert_false(tb_timestamp_valid("2024-05-01T08:15:30.123456Z"));
	assert_false(tb_timestamp_valid("2024-13-01T08:15:30.1234567Z"));
	assert_false(tb_timestamp_valid("0001-01-01T00:00:00Z"));
	assert_true(
	        tb_error_body_parse("{\"errorCode\":400004,\"trackingId\":"
	                            "\"9f1c2a7e0b6d4c3a8e5f1a2b3c4d5e6f\",\"message\":\"Invalid "
	                            "property name '$x'.\",\"timestampUtc\":"
	                            "\"2024-05-01T08:15:30.1234567Z\"}",
	                            &e));
	assert_int_equal(e.error_code, 400004);
	assert_string_equal(e.tracking_id, "9f1c2a7e0b6d4c3a8e5f1a2b3c4d5e6f");
	assert_string_equal(e.message, "Invalid property name '$x'.");
	assert_true(tb_timestamp_age(e.timestamp_utc) > 0);
	/* Upper-case hex, a missing member, an extra member. */
	assert_false(tb_error_body_parse("{\"errorCode\":400004,\"trackingId\":"
	                                 "\"9F1C2A7E0B6D4C3A8E5F1A2B3C4D5E6F\",\"message\":\"m\","
	                                 "\"timestampUtc\":\"2024-05-01T08:15:30.1234567Z\"}",
	                                 &e));
	assert_false(tb_error_body_parse("{\"errorCode\":400004,\"message\":\"m\"}", &e));
	assert_false(tb_error_body_parse(
	        "{\"errorCode\":1,\"trackingId\":\"9f1c2a7e0b6d4c3a8e5f1a2b3c4d5e6f\",\"message\":"
	        "\"m\",\"timestampUtc\":\"2024-05-01T08:15:30.1234567Z\",\"x\":1}",
	        &e));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_teardown(test_broker_starts_with_plugin_and_opens_database,
	                                  teardown),
	        cmocka_unit_test_teardown(test_echo_qos0_and_qos1_between_two_clients, teardown),
	        cmocka_unit_test_teardown(test_wait_filters_by_prefix_and_keeps_order, teardown),
	        cmocka_unit_test_teardown(test_wait_times_out_with_null, teardown),
	        cmocka_unit_test_teardown(test_binary_and_empty_payloads, teardown),
	        cmocka_unit_test_teardown(test_retained_message_reaches_late_subscriber, teardown),
	        cmocka_unit_test_teardown(test_unsubscribe_stops_delivery, teardown),
	        cmocka_unit_test_teardown(test_restart_keeps_port_and_database, teardown),
	        cmocka_unit_test_teardown(test_stop_returns_zero_and_closes_database, teardown),
	        cmocka_unit_test_teardown(test_kill9_is_detected_and_restart_recovers, teardown),
	        cmocka_unit_test_teardown(test_persistent_session_survives_restart, teardown),
	        cmocka_unit_test_teardown(test_no_persistence_loses_session_at_restart, teardown),
	        cmocka_unit_test_teardown(test_refused_connect_reports_connack_code, teardown),
	        cmocka_unit_test_teardown(test_broker_closing_a_connection_is_detected, teardown),
	        cmocka_unit_test_teardown(test_will_published_when_connection_is_taken_over,
	                                  teardown),
	        cmocka_unit_test_teardown(test_broker_refusing_to_start_is_awaited, teardown),
	        cmocka_unit_test_teardown(test_shared_directory_outlives_brokers, teardown),
	        cmocka_unit_test(test_topic_helpers),
	        cmocka_unit_test(test_json_helpers),
	};

	return cmocka_run_group_tests_name("integration.harness", tests, NULL, NULL);
}
