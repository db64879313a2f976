/*
 * harness.h - C integration test harness: a real mosquitto with the plugin,
 * driven by real libmosquitto clients, for cmocka tests.
 *
 * A tb_broker is one mosquitto process with its own config, log, LMDB
 * database and (optionally) Mosquitto persistence file, in a private
 * temporary directory, on a free port of 127.0.0.1 with max_qos 1 (as
 * mosquitto.conf.sample and conftest.py). A tb_client is one
 * libmosquitto connection whose network loop runs in its own thread; what it
 * receives goes into a queue the test reads with tb_client_wait().
 *
 * Failure policy: a harness call that cannot do what a test needs to go on
 * (the broker does not start, a packet is never acknowledged) fails the
 * running cmocka test with a message, and must therefore be called from the
 * test's own thread. Calls whose failure is an outcome a test may assert
 * (a refused CONNECT, a refused SUBSCRIBE, no message in time) return it.
 *
 * Every wait is bounded, none is a fixed sleep. Every broker and client the
 * harness creates is registered; tb_cleanup_all() (call it from every test's
 * teardown) frees whatever a failed test left behind, so a failure never
 * leaves a broker process or a client thread running. Brokers also die with
 * the test process (PR_SET_PDEATHSIG).
 *
 * Environment:
 *   TWIN_PLUGIN        path of mosquitto_twin.so (required)
 *   MOSQUITTO          the broker (default /usr/sbin/mosquitto)
 *   TWIN_SANITIZE      ON when the plugin is built with ASan/UBSan: the broker
 *                      runs with both runtimes preloaded, and a sanitizer
 *                      report in its log fails the test
 *   TWIN_TEST_TMPDIR   parent of the brokers' directories (default /tmp)
 *   TWIN_KEEP_TMP      when set and non-empty, directories are kept
 *
 * harness.h includes <cmocka.h> and the headers cmocka needs before it.
 */
#ifndef TWIN_ITEST_HARNESS_H
#define TWIN_ITEST_HARNESS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* Default bound of every wait for something the broker must do (an
 * acknowledgement, a reply). Generous: sanitizer builds are slow. */
#define TB_WAIT_MS 5000

/* ---- broker ------------------------------------------------------------ */

typedef struct tb_broker tb_broker;

typedef struct tb_broker_opts {
	/* Extra mosquitto.conf lines, '\n'-separated, appended after the
	 * harness's own; NULL for none. */
	const char *config;
	/* Extra plugin options, '\n'-separated "name value" lines without the
	 * plugin_opt_ prefix (e.g. "max_depth 5\nmap_size_mb 8"); NULL for none. */
	const char *plugin_opts;
	/* Directory to use instead of a new temporary one, e.g. one made by
	 * tb_tmpdir_new() and shared by two brokers in turn. Created if missing;
	 * never removed by the harness. It holds mosquitto.conf, broker.log,
	 * db/ (the plugin's LMDB) and mosquitto.db (persistence). */
	const char *dir;
	/* Mosquitto persistence off (sessions, subscriptions and queued messages
	 * are then lost at a restart). Default (false): persistence on, saved in
	 * <dir>/ at shutdown. */
	bool no_persistence;
	/* Return as soon as the process is started, without waiting for it to be
	 * ready (for tests of brokers that must refuse to start). */
	bool no_wait;
} tb_broker_opts;

/* Start a broker with the plugin (o may be NULL for the defaults) and wait
 * until it serves: the plugin logged "mosquitto-twin: database open", the
 * broker logged that it is running and its main loop answers on the port.
 * Fails the test (printing the log) when that takes over 10 s or the broker
 * exits. The returned broker is owned by the caller: tb_broker_free(). */
tb_broker *tb_broker_start(const tb_broker_opts *o);

/* SIGTERM, repeated every second (Mosquitto 2.0.11 loses one sent in the
 * instant before its main loop), until the broker exits; SIGKILL and a test
 * failure after 10 s. Returns the exit status (128 + signal number when
 * killed by a signal); the last one when it had already exited. */
int tb_broker_stop(tb_broker *b);

/* SIGKILL: a crash. Returns once the process is gone. */
void tb_broker_kill9(tb_broker *b);

/* Stop the broker if it runs, then start it again with the same directory,
 * configuration and port, and wait until it serves (as tb_broker_start). */
void tb_broker_restart(tb_broker *b);

/* Wait up to timeout_ms for the broker to exit on its own. Returns its exit
 * status as tb_broker_stop does, or -1 if it is still running. */
int tb_broker_wait_exit(tb_broker *b, int timeout_ms);

bool tb_broker_running(tb_broker *b);
int tb_broker_port(const tb_broker *b);
/* The broker's directory; valid until tb_broker_free(). */
const char *tb_broker_dir(const tb_broker *b);
/* The plugin's database directory (<dir>/db); valid until tb_broker_free(). */
const char *tb_broker_db_path(const tb_broker *b);

/* The whole log (all runs), malloc'd, NUL-terminated; the caller frees it. */
char *tb_broker_log(const tb_broker *b);

/* Wait up to timeout_ms until the log of the current run contains needle. */
bool tb_broker_wait_log(tb_broker *b, const char *needle, int timeout_ms);

/* Stop the broker if it runs (a non-zero exit status fails the test), remove
 * its directory (unless it was given in tb_broker_opts.dir, or TWIN_KEEP_TMP
 * is set) and free it. A sanitizer report in the log fails the test, after
 * everything is freed. NULL is a no-op. */
void tb_broker_free(tb_broker *b);

/* A new empty directory for tb_broker_opts.dir, under $TWIN_TEST_TMPDIR or
 * /tmp; malloc'd path. tb_tmpdir_free() removes it (unless TWIN_KEEP_TMP)
 * and frees the path. */
char *tb_tmpdir_new(const char *name);
void tb_tmpdir_free(char *path);

/* ---- client ------------------------------------------------------------ */

typedef struct tb_client tb_client;

/* 3.1.1 and 5 as in MQTT's protocol level byte. */
#define TB_MQTT_311 4
#define TB_MQTT_5   5

/* CONNACK outcome that is not a broker's return code. */
#define TB_CONNACK_NONE (-1) /* no CONNACK: connection failed, closed or timed out */

typedef struct tb_client_opts {
	bool persistent_session; /* clean session 0 (default: clean session 1) */
	int protocol;            /* TB_MQTT_311 (default when 0) or TB_MQTT_5 */
	const char *username;    /* NULL: none */
	const char *password;    /* NULL: none (needs a username) */
	int keepalive;           /* seconds; 0 means 60 */
	const char *will_topic;  /* NULL: no will */
	const char *will_payload;
	int will_qos;
	bool will_retain;
} tb_client_opts;

/* Connect to b as client_id (NULL or "" lets the broker choose, with a clean
 * session) with options o (NULL for defaults) and wait for the CONNACK.
 * Returns the connected client (the caller frees it with tb_client_free),
 * or NULL when the connection was refused or failed. */
tb_client *tb_client_connect(tb_broker *b, const char *client_id, const tb_client_opts *o);

/* As tb_client_connect, but returns the CONNACK code: 0 when *out is the
 * connected client, else the broker's return code (MQTT 3.1.1: 1-5; MQTT 5:
 * the reason code, e.g. 0x87) or TB_CONNACK_NONE, with *out = NULL. */
int tb_client_try_connect(tb_broker *b, const char *client_id, const tb_client_opts *o,
                          tb_client **out);

/* The CONNACK's session-present flag. */
bool tb_client_session_present(const tb_client *c);

/* Subscribe and wait for the SUBACK. Returns the granted QoS (0-2) or the
 * failure code (128, MQTT 5: a reason code >= 0x80); -1 when no SUBACK came
 * (e.g. the broker closed the connection). */
int tb_client_subscribe(tb_client *c, const char *filter, int qos);

/* Unsubscribe and wait for the UNSUBACK. 0, or -1 when none came. */
int tb_client_unsubscribe(tb_client *c, const char *filter);

/* Publish and wait until it is done: QoS 0 written to the socket, QoS 1
 * PUBACK, QoS 2 PUBCOMP. payload may be NULL (empty); len < 0 means
 * strlen(payload). Returns 0 when done (MQTT 5: the acknowledgement's reason
 * code, >= 0x80 for a refusal), or -1 when it could not be sent or was not
 * acknowledged within TB_WAIT_MS (e.g. the broker closed the connection). */
int tb_client_publish(tb_client *c, const char *topic, const void *payload, int len, int qos,
                      bool retain);

/* Publish without waiting for anything (pipelining; QoS 2 on topics where
 * the broker will never complete the flow). 0, or -1 when libmosquitto
 * refused it. */
int tb_client_publish_nowait(tb_client *c, const char *topic, const void *payload, int len, int qos,
                             bool retain);

/* A received message. */
typedef struct tb_msg {
	char *topic;
	char *payload; /* payloadlen bytes plus a NUL; never NULL */
	int payloadlen;
	int qos;
	bool retain;
} tb_msg;

/* The oldest queued message whose topic starts with topic_prefix ("" for
 * any), removed from the queue; other messages stay queued in order. Waits up
 * to timeout_ms for one to arrive; NULL on timeout. The caller frees it. */
tb_msg *tb_client_wait(tb_client *c, const char *topic_prefix, int timeout_ms);

void tb_msg_free(tb_msg *m);

/* Number of queued, not yet taken messages. */
int tb_client_queue_len(tb_client *c);

/* Wait up to timeout_ms for the broker to close the connection; true if it
 * did (also when that happened earlier). A tb_client_disconnect() does not
 * count. */
bool tb_client_disconnected(tb_client *c, int timeout_ms);

/* Send DISCONNECT, wait for the socket to close and stop the network thread.
 * Queued messages remain readable. Idempotent. */
void tb_client_disconnect(tb_client *c);

/* Disconnect if connected and free everything. NULL is a no-op. */
void tb_client_free(tb_client *c);

/* Free every broker and client the harness still holds (in a test's
 * teardown: whatever a failed test left behind). */
void tb_cleanup_all(void);

/* ---- twin protocol helpers ----------------------------------------------- */

/* Publish body (NULL: empty; else its strlen bytes) to topic at qos and wait
 * up to timeout_ms for the next message under "$iothub/twin/res/". NULL when
 * the publish failed or no reply came. */
tb_msg *tb_twin_request(tb_client *c, const char *topic, const char *body, int qos, int timeout_ms);

/* Barrier: prove that nothing else is on its way to c. Sends a GET with a
 * fresh $rid and fails the test unless the first message c then receives
 * (any topic, queued ones included) is that GET's 200 reply and the queue is
 * empty after it. c must hold a $iothub/twin/res/# subscription. */
void tb_twin_assert_quiet(tb_client *c);

/* Status of a "$iothub/twin/res/{status}/?..." topic, -1 for another topic. */
int tb_res_status(const char *topic);

/* Value of query parameter name in topic (text after the first '?', split on
 * '&', each at its first '='), malloc'd; NULL when absent. */
char *tb_topic_param(const char *topic, const char *name);

/* ---- JSON assertions ----------------------------------------------------- */

/* Fail unless got and want are equal JSON values; object member order is
 * ignored (tb_assert_json_eq_ordered: significant, whitespace still ignored). */
void tb_assert_json_eq(const char *got, const char *want);
void tb_assert_json_eq_ordered(const char *got, const char *want);

/* Fail unless got is byte for byte want (e.g. compact JSON in exact order). */
void tb_assert_str_exact(const char *got, const char *want);

/* True when s is one valid JSON value, nothing after it, and valid UTF-8. */
bool tb_json_valid(const char *s);

/* The integer at a '.'-separated member path of a JSON object (twin keys
 * cannot contain '.'), e.g. tb_json_int(body, "reported.$version"). Fails
 * the test when the path is missing or not an integer. */
long long tb_json_int(const char *json, const char *path);

/* A parsed §2.4 error body. */
typedef struct tb_error_body {
	long long error_code;
	char tracking_id[64];
	char message[1024];
	char timestamp_utc[64];
} tb_error_body;

/* Parse an error body; false (with a printed reason) unless it is a JSON
 * object with exactly the members errorCode (integer), trackingId (32
 * lower-case hex digits), message (non-empty string) and timestampUtc
 * (YYYY-MM-DDTHH:MM:SS.fffffffZ). */
bool tb_error_body_parse(const char *body, tb_error_body *out);

/* Fail unless m is an error reply: topic exactly want_topic, a valid error
 * body with errorCode want_code and, when want_message is not NULL, that
 * exact message. Fills *out if not NULL. */
void tb_assert_error_reply(const tb_msg *m, const char *want_topic, long long want_code,
                           const char *want_message, tb_error_body *out);

/* True when ts has the 7-digit timestamp format YYYY-MM-DDTHH:MM:SS.fffffffZ. */
bool tb_timestamp_valid(const char *ts);

/* Seconds between ts (timestamp format above) and now; fails on a bad ts. */
double tb_timestamp_age(const char *ts);

#endif
