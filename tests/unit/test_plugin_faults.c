/*
 * test_plugin_faults.c - the plugin's request paths with every allocation
 * and every LMDB call failed in turn (fault.h), in the plugin as the broker
 * runs it: tests/fuzz/mock_broker.c plays Mosquitto 2.0.11, as for
 * fuzz_request.
 *
 * A request is published and one broker loop iteration (TICK) runs with the
 * n-th call of a kind failing, for n = 1, 2, … until the request goes
 * through without reaching call n. Each time the request gets exactly one
 * reply, with its fault-free status or 500 (errorCode 500001), never
 * another status and never silence; a fault-free read afterwards shows the
 * write applied exactly when the reply said so; the plugin goes on serving.
 * A connection attempt is either admitted or refused, and the plugin's
 * view of the device stays consistent. Nothing leaks (LeakSanitizer in the
 * ASan build, valgrind by hand).
 */
#define _GNU_SOURCE
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "fault.h"
#include "mock_broker.h"
#include "test_support.h"

static char opt_db_path[PATH_MAX], opt_auth[] = "open", key_db_path[] = "db_path",
                                   key_auth[] = "auth";
static struct mosquitto_opt options[] = {{key_db_path, opt_db_path}, {key_auth, opt_auth}};

static struct {
	char *dir;
	void *userdata;
	struct mosquitto *dev, *backend;
	int rid;
	/* What the last iteration published, copied out of the mock. */
	char *topic[16], *client[16], *payload[16];
	int n;
} t;

static void on_publish(const mock_publish *m, void *arg)
{
	(void)arg;
	assert_true(t.n < 16);
	t.topic[t.n] = strdup(m->topic);
	t.client[t.n] = strdup(m->client_id ? m->client_id : "");
	t.payload[t.n] = strndup(m->payload ? m->payload : "", (size_t)m->len);
	t.n++;
}

static void published_clear(void)
{
	for (int i = 0; i < t.n; i++) {
		free(t.topic[i]);
		free(t.client[i]);
		free(t.payload[i]);
	}
	t.n = 0;
}

/* One broker loop iteration, keeping what was published. */
static void tick(void)
{
	mock_tick();
	mock_publishes_drain(on_publish, NULL);
}

static void plugin_start(void)
{
	static const int versions[] = {5, 4, 3, 2};

	assert_int_equal(mosquitto_plugin_version(4, versions), 5);
	assert_int_equal(mosquitto_plugin_init(mock_plugin_id(), &t.userdata, options, 2),
	                 MOSQ_ERR_SUCCESS);
	t.dev = mock_client_new("dev1", "dev1", NULL, false, 4);
	assert_int_equal(mock_connect(t.dev), MOSQ_ERR_SUCCESS);
	mock_acl_check(t.dev, MOSQ_ACL_SUBSCRIBE, "$iothub/twin/res/#", NULL, 0, 1, false);
	mock_acl_check(t.dev, MOSQ_ACL_SUBSCRIBE, "$iothub/twin/PATCH/properties/desired/#", NULL,
	               0, 0, false);
	t.backend = mock_client_new("svc/backend", NULL, NULL, true, 5);
	assert_int_equal(mock_connect(t.backend), MOSQ_ERR_SUCCESS);
	mock_acl_check(t.backend, MOSQ_ACL_SUBSCRIBE, "$CONTROL/twin/v1/response", NULL, 0, 1,
	               false);
	tick();
	published_clear();
}

static void plugin_stop(void)
{
	mock_client_forget(t.dev);
	mock_client_forget(t.backend);
	assert_int_equal(mosquitto_plugin_cleanup(t.userdata, options, 2), MOSQ_ERR_SUCCESS);
	assert_int_equal(mock_callbacks_registered(), 0);
	mock_client_free(t.dev);
	mock_client_free(t.backend);
	mock_publishes_drain(NULL, NULL);
}

/* The next request, composed before the faults are armed: only the
 * plugin's and the store's calls are to fail. */
static struct {
	struct mosquitto *from;
	char topic[128], body[512];
} next;

/* PUBLISH next, as handle__publish hands it to the plugin (MESSAGE or
 * CONTROL), with faults armed in between if armed is set. */
static int send_next(int armed, fault_kind k, long n)
{
	char *tp = strdup(next.topic), *pl = strdup(next.body);
	bool retain = false;
	int fired = 0;

	assert_non_null(tp);
	assert_non_null(pl);
	if (armed)
		fault_arm(k, n);
	mock_publish_in(next.from, tp, next.body[0] ? pl : NULL, (uint32_t)strlen(next.body), 1,
	                &retain, NULL);
	mock_tick();
	if (armed)
		fired = fault_disarm();
	free(tp);
	free(pl);
	mock_publishes_drain(on_publish, NULL);
	return fired;
}

static void compose(struct mosquitto *from, const char *topic, const char *body)
{
	next.from = from;
	snprintf(next.topic, sizeof(next.topic), "%s", topic);
	snprintf(next.body, sizeof(next.body), "%s", body);
}

/* The status of the one reply to request rid of the device, or of the one
 * control response; -1 when there is none, -2 when there are several. */
static int reply_status(int rid)
{
	char want[64];
	int status = -1;

	snprintf(want, sizeof(want), "$rid=%d", rid);
	for (int i = 0; i < t.n; i++) {
		int st;

		if (strncmp(t.topic[i], "$iothub/twin/res/", 17) == 0 && strstr(t.topic[i], want)) {
			st = atoi(t.topic[i] + 17);
		} else if (strcmp(t.topic[i], "$CONTROL/twin/v1/response") == 0) {
			cJSON *doc = cJSON_Parse(t.payload[i]);
			cJSON *r = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "responses"), 0);

			assert_non_null(r);
			st = cJSON_GetObjectItem(r, "status")->valueint;
			if (st == 500)
				assert_int_equal(
				        cJSON_GetObjectItem(cJSON_GetObjectItem(r, "error"), "code")
				                ->valueint,
				        500001);
			cJSON_Delete(doc);
		} else
			continue;
		if (status != -1)
			return -2;
		status = st;
	}
	return status;
}

/* The device's twin as its GET returns it (no faults), malloc'd. */
static char *device_twin(void)
{
	char topic[64], *body = NULL;
	int rid = ++t.rid;

	snprintf(topic, sizeof(topic), "$iothub/twin/GET/?$rid=%d", rid);
	compose(t.dev, topic, "");
	send_next(0, FAULT_ALLOC, 0);
	assert_int_equal(reply_status(rid), 200);
	for (int i = 0; i < t.n; i++)
		if (strncmp(t.topic[i], "$iothub/twin/res/200/", 21) == 0)
			body = strdup(t.payload[i]);
	published_clear();
	assert_non_null(body);
	return body;
}

/* ---- the requests ---- */

typedef struct request {
	const char *name;
	int ok_status;
	/* Send request number i (its $rid or correlation, and its value). */
	void (*send)(int i);
	/* Whether request i was applied, read without faults; NULL for a
	 * read-only request (the device's twin must not change). */
	int (*applied)(int i);
} request;

static void send_get(int i)
{
	char topic[64];

	snprintf(topic, sizeof(topic), "$iothub/twin/GET/?$rid=%d", i);
	compose(t.dev, topic, "");
}

static void send_patch(int i)
{
	char topic[80], body[64];

	snprintf(topic, sizeof(topic), "$iothub/twin/PATCH/properties/reported/?$rid=%d", i);
	snprintf(body, sizeof(body), "{\"n\":%d,\"s\":{\"deep\":[%d,{\"x\":1}]},\"gone\":null}", i,
	         i);
	compose(t.dev, topic, body);
}

/* Whether the device's twin holds the text want. */
static int twin_holds(const char *want)
{
	char *twin = device_twin();
	int yes = strstr(twin, want) != NULL;

	free(twin);
	return yes;
}

static int patch_applied(int i)
{
	char want[32];

	snprintf(want, sizeof(want), "\"n\":%d,", i);
	return twin_holds(want);
}

static void send_update(int i)
{
	char body[256];

	snprintf(
	        body, sizeof(body),
	        "{\"commands\":[{\"command\":\"updateTwin\",\"deviceId\":\"dev1\",\"twin\":"
	        "{\"tags\":{\"t\":%d},\"properties\":{\"desired\":{\"u\":%d,\"o\":{\"p\":%d}}}}}]}",
	        i, i, i);
	compose(t.backend, "$CONTROL/twin/v1", body);
}

static int update_applied(int i)
{
	char want[32];

	snprintf(want, sizeof(want), "\"u\":%d,", i);
	return twin_holds(want);
}

static void send_get_twin(int i)
{
	(void)i;
	compose(t.backend, "$CONTROL/twin/v1",
	        "{\"commands\":[{\"command\":\"getTwin\",\"deviceId\":\"dev1\"},"
	        "{\"command\":\"getChanges\",\"fromSequence\":1,\"limit\":5}]}");
}

static void send_create(int i)
{
	char body[160];

	snprintf(body, sizeof(body),
	         "{\"commands\":[{\"command\":\"createDevice\",\"deviceId\":\"new%d\",\"twin\":"
	         "{\"tags\":{\"a\":%d}}}]}",
	         i, i);
	compose(t.backend, "$CONTROL/twin/v1", body);
}

static int create_applied(int i)
{
	char body[128];
	int status;

	snprintf(body, sizeof(body),
	         "{\"commands\":[{\"command\":\"getDevice\",\"deviceId\":\"new%d\"}]}", i);
	compose(t.backend, "$CONTROL/twin/v1", body);
	send_next(0, FAULT_ALLOC, 0);
	status = reply_status(0);
	published_clear();
	assert_true(status == 200 || status == 404);
	return status == 200;
}

static const request requests[] = {
        {"device GET", 200, send_get, NULL},
        {"device reported PATCH", 204, send_patch, patch_applied},
        {"updateTwin with notification", 200, send_update, update_applied},
        {"getTwin and getChanges", 200, send_get_twin, NULL},
        {"createDevice", 200, send_create, create_applied},
};

static long run_request(const request *rq, fault_kind k)
{
	long n;

	for (n = 1;; n++) {
		char *before = device_twin(), *after;
		int i = ++t.rid, status, fired;

		rq->send(i);
		fired = send_next(1, k, n);
		tick(); /* what a fault may have put off */
		status = reply_status(i);
		/* No reply only when memory ran out for the reply itself; the
		 * batch then failed (checked below: nothing applied). */
		if (status != rq->ok_status && status != 500 && !(fired && status == -1))
			fail_msg("%s, %s %ld: reply status %d: %s %s", rq->name, fault_kind_name(k),
			         n, status, t.n ? t.topic[0] : "", t.n ? t.payload[0] : "");
		published_clear();
		if (!fired && status != rq->ok_status)
			fail_msg("%s: status %d without a fault", rq->name, status);
		after = device_twin(); /* and the plugin still serves */
		if (rq->applied != NULL && rq->applied(i) != (status == rq->ok_status))
			fail_msg("%s, %s %ld: status %d, but applied is the opposite", rq->name,
			         fault_kind_name(k), n, status);
		if (rq->applied == NULL && status != rq->ok_status && strcmp(before, after) != 0)
			fail_msg("%s, %s %ld: a failed read changed the twin", rq->name,
			         fault_kind_name(k), n);
		free(before);
		free(after);
		if (!fired)
			return n - 1;
	}
}

static void test_plugin_faults(void **state)
{
	const request *rq = *state;
	static const fault_kind kinds[] = {FAULT_ALLOC, FAULT_IO};

	for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		long runs = run_request(rq, kinds[k]);

		print_message("%-30s %-12s %4ld faulted runs\n", rq->name,
		              fault_kind_name(kinds[k]), runs);
		assert_true(runs > 0);
	}
}

/* A new device connecting (in open mode its first connection registers
 * it): admitted, or refused (the CONNACK says so); either way the plugin's
 * state stays whole, and the device connects at the next attempt. */
static void test_plugin_faults_connect(void **state)
{
	long n;

	(void)state;
	for (n = 1;; n++) {
		char id[32];
		struct mosquitto *c;
		int rc, fired;

		snprintf(id, sizeof(id), "conn%ld", n);
		c = mock_client_new(id, id, NULL, true, 4);
		fault_arm(FAULT_ALLOC, n);
		rc = mock_connect(c);
		mock_tick();
		fired = fault_disarm();
		mock_publishes_drain(NULL, NULL);
		if (rc == MOSQ_ERR_SUCCESS)
			mock_disconnect(c, NULL, NULL, 0, 0, false);
		tick();
		published_clear();
		mock_client_free(c);
		c = mock_client_new(id, id, NULL, true, 4);
		assert_int_equal(mock_connect(c), MOSQ_ERR_SUCCESS);
		mock_disconnect(c, NULL, NULL, 0, 0, false);
		tick();
		published_clear();
		mock_client_free(c);
		if (!fired)
			break;
	}
	print_message("%-30s %-12s %4ld faulted runs\n", "connect", "allocation", n - 1);
	assert_true(n > 1);
}

static int setup(void **state)
{
	(void)state;
	t.dir = test_dir_new("plugin_faults");
	snprintf(opt_db_path, sizeof(opt_db_path), "%s", t.dir);
	plugin_start();
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	published_clear();
	plugin_stop();
	test_dir_free(t.dir);
	t.dir = NULL;
	return 0;
}

int main(void)
{
	enum { N = sizeof(requests) / sizeof(requests[0]) };
	struct CMUnitTest tests[N + 1];
	char names[N][64];

	for (size_t i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "test_plugin_faults_%s", requests[i].name);
		tests[i] = (struct CMUnitTest){names[i], test_plugin_faults, setup, teardown,
		                               (void *)&requests[i]};
	}
	tests[N] = (struct CMUnitTest){"test_plugin_faults_connect", test_plugin_faults_connect,
	                               setup, teardown, NULL};
	return _cmocka_run_group_tests("plugin_faults", tests, N + 1, NULL, NULL);
}
