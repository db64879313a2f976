/*
 * fuzz_request.c - libFuzzer target for the plugin's whole request path:
 * ACL check, MESSAGE or CONTROL, TICK (group commit), publishes.
 *
 * The plugin runs as in the broker, over a real store in a temporary
 * directory (under /dev/shm when there is one: commits fsync), with
 * mock_broker.c playing Mosquitto 2.0.11. Four clients take turns:
 *
 *   0 dev1         a device: username, MQTT 3.1.1, persistent session,
 *                  subscribed to twin replies (QoS 1) and desired (QoS 0)
 *   1 dev2         a device: username, MQTT v5, clean session, replies
 *                  QoS 0 and desired QoS 1
 *   2 backend      a valid device id without username: admitted by the
 *                  broker after the plugin defers (a "pending" device)
 *   3 svc/backend  not a device id: a client the plugin does not own
 *
 * plugin_opt_auth is open, so every client may use the control API.
 *
 * Input: byte 0 selects, the topic runs to the first '\n' (topics cannot
 * hold control characters), the rest is the payload.
 *   bits 0-1  client
 *   bits 2-3  QoS 0-2; 3 means, for ops 0, 2, 3: QoS 1, and the next
 *             commit fails (fdatasync reports EIO); for ops 1 and 6: QoS 2;
 *             for ops 4, 5, 7: no message after the connection event
 *   bit 4     retain; for ops 1, 4, 5: unsubscribe / clean session
 *   bits 5-7  op:
 *     0  publish; no TICK, so the next input joins this batch
 *     1  SUBSCRIBE to the topic as a filter (UNSUBSCRIBE with bit 4)
 *     2  publish
 *     3  publish as MQTT v5 with properties: the payload's first line is
 *        the response topic, its second the correlation data (empty: none)
 *     4  reconnect the client, then publish
 *     5  a new connection takes the client's session over, then publish
 *     6  the connection drops; the topic and payload are its will
 *     7  SIGHUP (RELOAD, BASIC_AUTH for every session), then publish
 * A client that is not connected connects first (and subscribes, if its
 * session is new), as a device SDK would. Every op but 0 ends with TICK.
 *
 * The disk error is the store's real failure path: LMDB's fdatasync is
 * this file's, which can fail once on request.
 *
 * Invariants checked (abort on violation): no crash, leak or undefined
 * behaviour (the sanitizers); the broker API used as 2.0.11 allows
 * (mock_broker.c); MESSAGE never replaces the topic pointer and leaves a
 * valid topic; nothing under $iothub/ is ever stored retained or readable
 * by any client, nor accepted as a will; every publish has a valid topic and
 * strict JSON (twin_json_parse) as payload, except empty twin replies;
 * $iothub/ publishes target a connected client, only the event stream is
 * broadcast; control responses are {"responses":[…]}; all callbacks are
 * unregistered at cleanup; the store opens again after every restart and at
 * exit.
 *
 * State persists from one input to the next, as in a broker: the store,
 * the sessions, open jobs. Every RESTART_EVERY inputs the plugin is
 * cleaned up and started again on the same store, and every WIPE_EVERY
 * restarts on an empty one, so the store stays small. A crash may need
 * the inputs before it: replay the corpus in order (-runs=N corpus/) when
 * a single input does not reproduce it. A failed check leaves the store
 * in its directory, which the message names, for inspection; remove it by
 * hand. FUZZ_REQUEST_LOG=1 prints the plugin's log lines and every publish.
 *
 * Built a second time as fuzz_control (-DFUZZ_CONTROL), where every input
 * is one control API request body instead (see parse()).
 *
 * Build and run with tools/run-fuzz.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>

#include "mock_broker.h"
#include "twin/json.h"
#include "twin/store.h"

#define RESTART_EVERY 2000
#define WIPE_EVERY    8

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fail(__VA_ARGS__);                                                         \
	} while (0)

enum {
	OP_PUBLISH_NO_TICK,
	OP_SUBSCRIBE,
	OP_PUBLISH,
	OP_PUBLISH_V5,
	OP_RECONNECT,
	OP_TAKEOVER,
	OP_DROP,
	OP_RELOAD
};

enum { NCLIENTS = 4, MAX_SUBS = 2 };

static const struct client_spec {
	const char *id, *username;
	int protocol_version;
	bool clean_start;
	const char *filters[MAX_SUBS];
	int qos[MAX_SUBS];
} specs[NCLIENTS] = {
        {"dev1",
         "dev1",
         4,
         false,
         {"$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#"},
         {1, 0}},
        {"dev2",
         "dev2",
         5,
         true,
         {"$iothub/twin/res/#", "$iothub/twin/PATCH/properties/desired/#"},
         {0, 1}},
        {"backend", NULL, 5, false, {"$twin/events/#", NULL}, {1, 0}},
        {"svc/backend", NULL, 5, true, {"$CONTROL/twin/v1/response", "$twin/events/#"}, {1, 1}},
};

static char opt_db_path[PATH_MAX];
static char opt_auth[] = "open";
static char opt_changes_max_count[] = "2000";
static char key_db_path[] = "db_path", key_auth[] = "auth",
            key_changes_max_count[] = "changes_max_count";
static struct mosquitto_opt options[] = {
        {key_db_path, opt_db_path},
        {key_auth, opt_auth},
        {key_changes_max_count, opt_changes_max_count},
};

static struct {
	char dir[PATH_MAX];
	void *userdata; /* the plugin's context */
	bool running;
	struct mosquitto *client[NCLIENTS];
	struct mosquitto **retired; /* disconnected, freed after TICK */
	size_t nretired, retired_cap;
	bool fail_next_sync; /* the next fdatasync reports EIO */
	bool log;            /* FUZZ_REQUEST_LOG is set */
	/* For the summary at exit. */
	unsigned long inputs, refused, publishes, restarts, failed_syncs;
} fz;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void fail(const char *fmt, ...)
{
	va_list ap;

	fputs("fuzz_request: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (store in %s)\n", fz.dir);
	abort();
}

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static char *dup_n(const void *s, size_t n)
{
	char *d = malloc(n + 1);

	CHECK(d != NULL, "out of memory");
	if (n > 0)
		memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

/* What the broker accepts as a topic name or filter before any callback:
 * non-empty, UTF-8 without control characters, at most 200 levels. t need
 * not be NUL-terminated: the checks run on a terminated copy, as in the
 * broker (libmosquitto 2.0.11's mosquitto_validate_utf8 reads past a
 * truncated sequence at the end of its input). */
static bool topic_ok(const char *t, size_t len, bool filter)
{
	size_t levels = 0;
	char *s;
	bool ok;

	if (len == 0 || len > 65535 || memchr(t, '\0', len) != NULL)
		return false;
	for (size_t i = 0; i < len; i++)
		levels += t[i] == '/';
	if (levels > 200)
		return false;
	s = dup_n(t, len);
	ok = mosquitto_validate_utf8(s, (int)len) == MOSQ_ERR_SUCCESS &&
	     (filter ? mosquitto_sub_topic_check(s) : mosquitto_pub_topic_check(s)) ==
	             MOSQ_ERR_SUCCESS;
	free(s);
	return ok;
}

/* ---- the disk ---- */

/* LMDB's commit calls fdatasync once, before it writes the meta page that
 * makes the transaction durable: failing it loses the whole batch, as a
 * disk error would. This definition interposes on libc's for liblmdb. */
int fdatasync(int fd)
{
	if (fz.fail_next_sync) {
		fz.fail_next_sync = false;
		fz.failed_syncs++;
		errno = EIO;
		return -1;
	}
	return (int)syscall(SYS_fdatasync, fd);
}

/* ---- what the plugin publishes ---- */

static void check_publish(const mock_publish *m, void *arg)
{
	bool device = starts_with(m->topic, "$iothub/");
	bool event = starts_with(m->topic, "$twin/events/");
	cJSON *doc = NULL;
	twin_error err;

	(void)arg;
	if (fz.log)
		fprintf(stderr, "publish to %s on %s: %.*s\n",
		        m->client_id ? m->client_id : "(all)", m->topic, m->len,
		        (const char *)m->payload);
	CHECK(m->client_id != NULL || event, "broadcast on %s: only events may be broadcast",
	      m->topic);
	CHECK(!event || m->client_id == NULL, "event %s targeted at %s", m->topic, m->client_id);
	CHECK(!device || m->connected, "%s published to %s, which is not connected", m->topic,
	      m->client_id);
	if (m->len == 0) {
		CHECK(starts_with(m->topic, "$iothub/twin/res/"), "empty payload on %s", m->topic);
		return;
	}
	CHECK(twin_json_parse(m->payload, (size_t)m->len, INT64_MIN, INT64_MAX, &doc, &err) ==
	              TWIN_OK,
	      "payload on %s is not strict JSON (%s): %.*s", m->topic, err.message, m->len,
	      (const char *)m->payload);
	if (!device && !event)
		CHECK(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(doc, "responses")),
		      "control response on %s without \"responses\": %.*s", m->topic, m->len,
		      (const char *)m->payload);
	cJSON_Delete(doc);
}

/* A message the broker stores and fans out: nothing under $iothub/ may
 * stay retained or reach any client. */
static void check_fanout(struct mosquitto *from, const char *topic, size_t orig_len, bool retain,
                         const void *payload, uint32_t len, int qos)
{
	size_t n = strlen(topic);

	CHECK(n <= orig_len && topic_ok(topic, n, false),
	      "MESSAGE left an invalid topic '%s' (from %zu bytes)", topic, orig_len);
	if (!starts_with(topic, "$iothub/"))
		return;
	CHECK(!retain, "a message on %s from %s is stored retained", topic,
	      mosquitto_client_id(from));
	for (int k = 0; k < NCLIENTS; k++)
		if (fz.client[k] != NULL && mock_client_connected(fz.client[k]))
			CHECK(mock_acl_check(fz.client[k], MOSQ_ACL_READ, topic, payload, len, qos,
			                     retain) != MOSQ_ERR_SUCCESS,
			      "%s may read %s", specs[k].id, topic);
}

/* ---- clients ---- */

static void retire(struct mosquitto *c)
{
	if (fz.nretired == fz.retired_cap) {
		size_t cap = fz.retired_cap ? 2 * fz.retired_cap : 16;
		struct mosquitto **grown = realloc(fz.retired, cap * sizeof(*grown));

		CHECK(grown != NULL, "out of memory");
		fz.retired = grown;
		fz.retired_cap = cap;
	}
	fz.retired[fz.nretired++] = c;
}

/* After TICK, as the broker frees disused contexts in its loop. */
static void free_retired(void)
{
	for (size_t i = 0; i < fz.nretired; i++)
		mock_client_free(fz.retired[i]);
	free(fz.retired);
	fz.retired = NULL;
	fz.nretired = fz.retired_cap = 0;
}

static void subscribe(int k, struct mosquitto *c)
{
	for (int i = 0; i < MAX_SUBS && specs[k].filters[i] != NULL; i++)
		mock_acl_check(c, MOSQ_ACL_SUBSCRIBE, specs[k].filters[i], NULL, 0, specs[k].qos[i],
		               false);
}

/* A new connection of client k (taking over a connected one). NULL when
 * the CONNECT is refused. */
static struct mosquitto *connect_client(int k, bool clean)
{
	const struct client_spec *s = &specs[k];
	struct mosquitto *c = mock_client_new(s->id, s->username, NULL, clean, s->protocol_version);
	bool fresh = fz.client[k] == NULL;

	if (mock_connect(c) != MOSQ_ERR_SUCCESS) {
		retire(c); /* refused; a connected predecessor stays */
		return NULL;
	}
	if (fz.client[k] != NULL)
		retire(fz.client[k]); /* disconnected now, by takeover if not before */
	fz.client[k] = c;
	/* The SDKs subscribe once per session (PROTOCOL.md §1.5). */
	if (clean || fresh)
		subscribe(k, c);
	return c;
}

static struct mosquitto *connected(int k)
{
	if (fz.client[k] != NULL && mock_client_connected(fz.client[k]))
		return fz.client[k];
	return connect_client(k, specs[k].clean_start);
}

static void tick(void)
{
	mock_tick();
	fz.publishes += mock_publishes_drain(check_publish, NULL);
	free_retired();
}

/* ---- the plugin's life ---- */

static void plugin_start(void)
{
	static const int versions[] = {5, 4, 3, 2};
	int rc;

	CHECK(mosquitto_plugin_version(4, versions) == 5, "plugin version");
	fz.fail_next_sync = false; /* a failed start would end the run */
	rc = mosquitto_plugin_init(mock_plugin_id(), &fz.userdata, options,
	                           (int)(sizeof(options) / sizeof(options[0])));
	CHECK(rc == MOSQ_ERR_SUCCESS, "mosquitto_plugin_init failed (%d) on %s", rc, opt_db_path);
	fz.running = true;
	for (int k = 0; k < NCLIENTS; k++)
		connected(k);
	tick();
}

/* Broker shutdown: 2.0 sends no DISCONNECT, then cleans up the plugin. */
static void plugin_stop(void)
{
	if (!fz.running)
		return;
	CHECK(mosquitto_plugin_cleanup(fz.userdata, options,
	                               (int)(sizeof(options) / sizeof(options[0]))) ==
	              MOSQ_ERR_SUCCESS,
	      "mosquitto_plugin_cleanup failed");
	fz.running = false;
	fz.userdata = NULL;
	CHECK(mock_callbacks_registered() == 0, "%zu callbacks still registered after cleanup",
	      mock_callbacks_registered());
	CHECK(mock_publishes_drain(NULL, NULL) == 0, "publishes made by cleanup");
	for (int k = 0; k < NCLIENTS; k++) {
		if (fz.client[k] != NULL)
			mock_client_forget(fz.client[k]);
		mock_client_free(fz.client[k]);
		fz.client[k] = NULL;
	}
	free_retired();
}

static void remove_store(void)
{
	DIR *d = opendir(opt_db_path);
	struct dirent *e;
	char path[PATH_MAX + 256];

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", opt_db_path, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(opt_db_path);
}

static void check_store_opens(void)
{
	twin_store_options o;
	twin_store *s = NULL;
	twin_error err;

	twin_store_options_default(&o);
	o.path = opt_db_path;
	CHECK(twin_store_open(&o, &s, &err) == TWIN_OK, "the store does not open: %s", err.message);
	twin_store_close(s);
}

static void at_exit(void)
{
	plugin_stop();
	check_store_opens();
	remove_store();
	rmdir(fz.dir);
	fprintf(stderr,
	        "fuzz_request: %lu inputs run, %lu refused as the broker would; %lu publishes "
	        "checked; %lu commits failed on purpose; %lu restarts, the store wiped at "
	        "every %dth.\n",
	        fz.inputs, fz.refused, fz.publishes, fz.failed_syncs, fz.restarts, WIPE_EVERY);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct stat st;
	const char *base =
	        stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
	                ? "/dev/shm"
	                : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");

	(void)argc;
	(void)argv;
	fz.log = getenv("FUZZ_REQUEST_LOG") != NULL;
	snprintf(fz.dir, sizeof(fz.dir), "%s/fuzz_request.XXXXXX", base);
	CHECK(mkdtemp(fz.dir) != NULL, "cannot create a directory under %s", base);
	snprintf(opt_db_path, sizeof(opt_db_path), "%s/db", fz.dir);
	plugin_start();
	atexit(at_exit);
	return 0;
}

static void restart(void)
{
	plugin_stop();
	check_store_opens();
	if (++fz.restarts % WIPE_EVERY == 0)
		remove_store();
	plugin_start();
}

/* ---- one input ---- */

typedef struct input {
	int client, qos, op;
	bool flag;
	bool special; /* the QoS bits were 3 */
	const char *topic;
	size_t topic_len;
	const uint8_t *payload;
	size_t len;
	const char *response_topic; /* OP_PUBLISH_V5 */
	size_t response_topic_len;
	const uint8_t *correlation;
	size_t correlation_len;
} input;

#ifdef FUZZ_CONTROL
/* fuzz_control (the same file, built with FUZZ_CONTROL): every input is the
 * whole payload of one control request from svc/backend, which is
 * subscribed to the responses, so libFuzzer spends its time in command
 * decoding instead of in finding the topic. */
static bool parse(const uint8_t *data, size_t size, input *in)
{
	static const char topic[] = "$CONTROL/twin/v1";

	memset(in, 0, sizeof(*in));
	in->client = 3;
	in->op = OP_PUBLISH;
	in->qos = 1;
	in->topic = topic;
	in->topic_len = sizeof(topic) - 1;
	in->payload = data;
	in->len = size;
	return true;
}
#else
/* Split the next '\n'-terminated line off *p; false if there is none. */
static bool next_line(const uint8_t **p, size_t *n, const uint8_t **line, size_t *len)
{
	const uint8_t *nl = memchr(*p, '\n', *n);

	if (nl == NULL)
		return false;
	*line = *p;
	*len = (size_t)(nl - *p);
	*n -= *len + 1;
	*p = nl + 1;
	return true;
}

static bool parse(const uint8_t *data, size_t size, input *in)
{
	const uint8_t *p = data + 1, *line;
	size_t n = size - 1, len;

	memset(in, 0, sizeof(*in));
	in->client = data[0] & 3;
	in->op = data[0] >> 5;
	in->flag = (data[0] >> 4) & 1;
	in->qos = (data[0] >> 2) & 3;
	in->special = in->qos == 3;
	if (in->special)
		in->qos = in->op == OP_SUBSCRIBE || in->op == OP_DROP ? 2 : 1;
	if (!next_line(&p, &n, &line, &len)) {
		line = p; /* no payload */
		len = n;
		n = 0;
	}
	in->topic = (const char *)line;
	in->topic_len = len;
	if (in->op == OP_PUBLISH_V5) {
		if (!next_line(&p, &n, &line, &len))
			return false;
		in->response_topic = (const char *)line;
		in->response_topic_len = len;
		if (!next_line(&p, &n, &line, &len) || len > UINT16_MAX)
			return false;
		in->correlation = line;
		in->correlation_len = len;
	}
	in->payload = p;
	in->len = n;
	return topic_ok(in->topic, in->topic_len, in->op == OP_SUBSCRIBE);
}
#endif

/* MQTT v5 request/response properties; NULL for none or an invalid one
 * (the broker would have closed the connection). */
static mosquitto_property *properties(const input *in, bool *ok)
{
	mosquitto_property *props = NULL;
	char *rt;

	*ok = true;
	if (in->response_topic_len > 0) {
		rt = dup_n(in->response_topic, in->response_topic_len);
		*ok = memchr(in->response_topic, '\0', in->response_topic_len) == NULL &&
		      mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, rt) ==
		              MOSQ_ERR_SUCCESS;
		free(rt);
	}
	if (*ok && in->correlation_len > 0)
		*ok = mosquitto_property_add_binary(
		              &props, MQTT_PROP_CORRELATION_DATA, in->correlation,
		              (uint16_t)in->correlation_len) == MOSQ_ERR_SUCCESS;
	if (!*ok)
		mosquitto_property_free_all(&props);
	return props;
}

static void publish(const input *in)
{
	struct mosquitto *c = connected(in->client);
	mosquitto_property *props = NULL;
	char *topic, *payload;
	bool retain = in->flag, ok = true;
	mock_pub_fate fate;

	if (c == NULL)
		return; /* refused: disabled or deleted meanwhile */
	if (in->op == OP_PUBLISH_V5 && specs[in->client].protocol_version == 5)
		props = properties(in, &ok);
	if (!ok)
		return;
	topic = dup_n(in->topic, in->topic_len);
	/* 2.0.11 allocates payloadlen + 1 and ends the payload with a 0. */
	payload = in->len > 0 ? dup_n(in->payload, in->len) : NULL;
	fate = mock_publish_in(c, topic, payload, (uint32_t)in->len, in->qos, &retain, props);
	if (fate == MOCK_PUB_STORED)
		check_fanout(c, topic, in->topic_len, retain, payload, (uint32_t)in->len, in->qos);
	free(topic);
	free(payload);
	mosquitto_property_free_all(&props);
}

static void subscribe_op(const input *in)
{
	struct mosquitto *c = connected(in->client);
	char *filter;

	if (c == NULL)
		return;
	filter = dup_n(in->topic, in->topic_len);
	mock_acl_check(c, in->flag ? MOSQ_ACL_UNSUBSCRIBE : MOSQ_ACL_SUBSCRIBE, filter, NULL, 0,
	               in->qos, false);
	free(filter);
}

static void drop(const input *in)
{
	struct mosquitto *c = fz.client[in->client];
	char *topic;
	int rc;

	if (c == NULL || !mock_client_connected(c))
		return;
	topic = dup_n(in->topic, in->topic_len);
	rc = mock_disconnect(c, topic, in->payload, (uint32_t)in->len, in->qos, in->flag);
	CHECK(rc != MOSQ_ERR_SUCCESS || !starts_with(topic, "$iothub/"),
	      "the will of %s on %s is accepted", specs[in->client].id, topic);
	free(topic);
}

static void reload(void)
{
	struct mosquitto *sessions[NCLIENTS];
	size_t n = 0;

	for (int k = 0; k < NCLIENTS; k++)
		if (fz.client[k] != NULL)
			sessions[n++] = fz.client[k];
	mock_reload(sessions, n);
}

static bool sends_message(const input *in)
{
	switch (in->op) {
	case OP_SUBSCRIBE:
	case OP_DROP:
		return false;
	case OP_RECONNECT:
	case OP_TAKEOVER:
	case OP_RELOAD:
		return !in->special;
	default:
		return true;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	input in;

	if (size == 0 || !parse(data, size, &in)) {
		fz.refused++;
		return -1; /* the broker refuses it before any callback */
	}
	if (++fz.inputs % RESTART_EVERY == 0)
		restart();
	switch (in.op) {
	case OP_SUBSCRIBE:
		subscribe_op(&in);
		break;
	case OP_RECONNECT:
		if (fz.client[in.client] != NULL)
			mock_disconnect(fz.client[in.client], NULL, NULL, 0, 0, false);
		connect_client(in.client, in.flag);
		break;
	case OP_TAKEOVER:
		connect_client(in.client, in.flag);
		break;
	case OP_DROP:
		drop(&in);
		break;
	case OP_RELOAD:
		reload();
		break;
	default: /* the publish ops */
		fz.fail_next_sync |= in.special;
	}
	if (sends_message(&in))
		publish(&in);
	if (in.op != OP_PUBLISH_NO_TICK)
		tick();
	return 0;
}
