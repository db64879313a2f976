/*
 * mock_broker.c - the broker side of fuzz_request (see mock_broker.h).
 *
 * Each function mirrors what Mosquitto 2.0.11 does with the same call
 * (src/plugin.c, src/plugin_public.c, src/control.c, src/security.c,
 * src/handle_publish.c), down to which checks it makes and in what order,
 * but keeps no state beyond the registered callbacks, the clients and the
 * publishes not yet drained. Where the real broker would silently drop a
 * malformed publish, the mock aborts instead: a reply that never arrives is
 * a bug the fuzzer should report.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>

#include "mock_broker.h"

/* Mirror of 2.0's private identifier: only the listener, NULL without
 * per_listener_settings. entry.c reads it. */
struct mosquitto_plugin_id_t {
	void *listener;
};

/* The fields of 2.0's struct mosquitto the plugin API exposes. */
struct mosquitto {
	char *id;
	char *username;
	char *password;
	bool clean_start;
	int protocol_version;
	bool connected;
	struct mosquitto *next; /* every client context, for kicks by id */
};

#define MOCK_MAX_CALLBACKS 32

typedef struct mock_callback {
	int event;
	MOSQ_FUNC_generic_callback cb;
	void *userdata;
	char *topic; /* MOSQ_EVT_CONTROL: the control topic */
} mock_callback;

static struct mosquitto_plugin_id_t plugin_id;
static mock_callback callbacks[MOCK_MAX_CALLBACKS];
static size_t ncallbacks;
static struct mosquitto *clients;
static mock_publish *pubs;
static size_t npubs, pubs_cap;
static pthread_t broker_thread;
static int log_to_stderr = -1;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("mock_broker: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

static char *dup_or_die(const char *s)
{
	char *d;

	if (s == NULL)
		return NULL;
	if ((d = strdup(s)) == NULL)
		die("out of memory");
	return d;
}

/* The broker's API is not thread-safe: only its own thread may call it
 * (query.c's worker must hand results back through TICK). */
static void on_broker_thread(const char *fn)
{
	if (!pthread_equal(pthread_self(), broker_thread))
		die("%s called off the broker thread", fn);
}

mosquitto_plugin_id_t *mock_plugin_id(void)
{
	broker_thread = pthread_self();
	return &plugin_id;
}

size_t mock_callbacks_registered(void)
{
	return ncallbacks;
}

/* ---- registration (src/plugin.c, src/control.c) ---- */

static int event_supported(int event)
{
	return event >= MOSQ_EVT_RELOAD && event <= MOSQ_EVT_DISCONNECT;
}

static mock_callback *callback_find(int event, MOSQ_FUNC_generic_callback cb, const char *topic)
{
	for (size_t i = 0; i < ncallbacks; i++) {
		mock_callback *c = &callbacks[i];

		if (c->event != event)
			continue;
		if (event == MOSQ_EVT_CONTROL ? strcmp(c->topic, topic) == 0 : c->cb == cb)
			return c;
	}
	return NULL;
}

/* What 2.0.11 checks first in callback_register and _unregister. */
static int callback_args_check(const char *fn, mosquitto_plugin_id_t *identifier, int event,
                               MOSQ_FUNC_generic_callback cb_func)
{
	on_broker_thread(fn);
	if (identifier != &plugin_id)
		die("%s: not the identifier given to mosquitto_plugin_init", fn);
	if (cb_func == NULL)
		return MOSQ_ERR_INVAL;
	if (!event_supported(event))
		return MOSQ_ERR_NOT_SUPPORTED;
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_callback_register(mosquitto_plugin_id_t *identifier, int event,
                                MOSQ_FUNC_generic_callback cb_func, const void *event_data,
                                void *userdata)
{
	const char *topic = event_data;
	mock_callback *c;

	int rc = callback_args_check(__func__, identifier, event, cb_func);

	if (rc != MOSQ_ERR_SUCCESS)
		return rc;
	if (event == MOSQ_EVT_CONTROL &&
	    (topic == NULL || strncmp(topic, "$CONTROL/", 9) != 0 ||
	     strlen(topic) < strlen("$CONTROL/A/v1") || strlen(topic) > 65535))
		return MOSQ_ERR_INVAL;
	if (callback_find(event, cb_func, topic) != NULL)
		return MOSQ_ERR_ALREADY_EXISTS;
	if (ncallbacks == MOCK_MAX_CALLBACKS)
		die("%s: more than %d callbacks", __func__, MOCK_MAX_CALLBACKS);
	c = &callbacks[ncallbacks++];
	c->event = event;
	c->cb = cb_func;
	c->userdata = userdata;
	c->topic = event == MOSQ_EVT_CONTROL ? dup_or_die(topic) : NULL;
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_callback_unregister(mosquitto_plugin_id_t *identifier, int event,
                                  MOSQ_FUNC_generic_callback cb_func, const void *event_data)
{
	mock_callback *c;

	int rc = callback_args_check(__func__, identifier, event, cb_func);

	if (rc != MOSQ_ERR_SUCCESS)
		return rc;
	if (event == MOSQ_EVT_CONTROL && event_data == NULL)
		return MOSQ_ERR_INVAL;
	c = callback_find(event, cb_func, event_data);
	if (c == NULL || c->cb != cb_func)
		return MOSQ_ERR_NOT_FOUND;
	free(c->topic);
	memmove(c, c + 1, (size_t)(callbacks + ncallbacks - (c + 1)) * sizeof(*c));
	ncallbacks--;
	return MOSQ_ERR_SUCCESS;
}

/* ---- client accessors (src/plugin_public.c) ---- */

const char *mosquitto_client_id(const struct mosquitto *client)
{
	on_broker_thread(__func__);
	return client ? client->id : NULL;
}

const char *mosquitto_client_username(const struct mosquitto *client)
{
	on_broker_thread(__func__);
	return client ? client->username : NULL;
}

bool mosquitto_client_clean_session(const struct mosquitto *client)
{
	on_broker_thread(__func__);
	return client ? client->clean_start : true;
}

int mosquitto_client_protocol_version(const struct mosquitto *client)
{
	on_broker_thread(__func__);
	return client ? client->protocol_version : 0;
}

const char *mosquitto_client_address(const struct mosquitto *client)
{
	on_broker_thread(__func__);
	return client ? "127.0.0.1" : NULL;
}

/* No TLS in the mock: X.509 identities cannot connect. */
void *mosquitto_client_certificate(const struct mosquitto *client)
{
	(void)client;
	on_broker_thread(__func__);
	return NULL;
}

void mosquitto_log_printf(int level, const char *fmt, ...)
{
	va_list ap;

	(void)level;
	on_broker_thread(__func__);
	if (log_to_stderr < 0)
		log_to_stderr = getenv("FUZZ_REQUEST_LOG") != NULL;
	if (!log_to_stderr)
		return;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* ---- publishes (src/plugin_public.c) ---- */

/* What 2.0.11 refuses with MOSQ_ERR_INVAL, and a topic no client could
 * receive (it would disconnect on the malformed PUBLISH). */
static void check_publish(const char *fn, const char *topic, int payloadlen, const void *payload,
                          int qos)
{
	if (topic == NULL || payloadlen < 0 || (payloadlen > 0 && payload == NULL) || qos < 0 ||
	    qos > 2)
		die("%s: arguments the broker refuses (topic %s, payloadlen %d, payload %p, qos "
		    "%d)",
		    fn, topic ? topic : "NULL", payloadlen, payload, qos);
	if (mosquitto_validate_utf8(topic, (int)strlen(topic)) != MOSQ_ERR_SUCCESS ||
	    mosquitto_pub_topic_check(topic) != MOSQ_ERR_SUCCESS)
		die("%s: invalid topic '%s'", fn, topic);
}

int mosquitto_broker_publish(const char *clientid, const char *topic, int payloadlen, void *payload,
                             int qos, bool retain, mosquitto_property *properties)
{
	mock_publish *m;

	on_broker_thread(__func__);
	check_publish(__func__, topic, payloadlen, payload, qos);
	if (npubs == pubs_cap) {
		size_t cap = pubs_cap ? 2 * pubs_cap : 64;

		m = realloc(pubs, cap * sizeof(*m));
		if (m == NULL)
			die("out of memory");
		pubs = m;
		pubs_cap = cap;
	}
	m = &pubs[npubs++];
	m->client_id = dup_or_die(clientid);
	m->topic = dup_or_die(topic);
	m->payload = payload;
	m->len = payloadlen;
	m->qos = qos;
	m->retain = retain;
	m->properties = properties;
	m->connected = false;
	for (struct mosquitto *c = clients; c != NULL && clientid != NULL; c = c->next)
		if (c->connected && strcmp(c->id, clientid) == 0)
			m->connected = true;
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_broker_publish_copy(const char *clientid, const char *topic, int payloadlen,
                                  const void *payload, int qos, bool retain,
                                  mosquitto_property *properties)
{
	void *copy;

	on_broker_thread(__func__);
	check_publish(__func__, topic, payloadlen, payload, qos);
	copy = calloc(1, (size_t)payloadlen + 1);
	if (copy == NULL)
		die("out of memory");
	if (payloadlen > 0)
		memcpy(copy, payload, (size_t)payloadlen);
	return mosquitto_broker_publish(clientid, topic, payloadlen, copy, qos, retain, properties);
}

size_t mock_publishes_drain(void (*fn)(const mock_publish *m, void *arg), void *arg)
{
	size_t n = npubs;

	for (size_t i = 0; i < n; i++) {
		mock_publish *m = &pubs[i];

		if (fn != NULL)
			fn(m, arg);
		free(m->client_id);
		free(m->topic);
		free(m->payload);
		mosquitto_property_free_all(&m->properties);
	}
	npubs = 0;
	if (n == 0) {
		free(pubs); /* nothing outlives an idle phase: LeakSanitizer stays quiet */
		pubs = NULL;
		pubs_cap = 0;
	}
	return n;
}

/* ---- clients and connections ---- */

struct mosquitto *mock_client_new(const char *id, const char *username, const char *password,
                                  bool clean_start, int protocol_version)
{
	struct mosquitto *c = calloc(1, sizeof(*c));

	if (c == NULL)
		die("out of memory");
	c->id = dup_or_die(id);
	c->username = dup_or_die(username);
	c->password = dup_or_die(password);
	c->clean_start = clean_start;
	c->protocol_version = protocol_version;
	c->next = clients;
	clients = c;
	return c;
}

void mock_client_free(struct mosquitto *client)
{
	if (client == NULL)
		return;
	if (client->connected)
		die("%s: client %s is still connected", __func__, client->id);
	for (struct mosquitto **p = &clients; *p != NULL; p = &(*p)->next) {
		if (*p == client) {
			*p = client->next;
			break;
		}
	}
	free(client->id);
	free(client->username);
	free(client->password);
	free(client);
}

void mock_client_forget(struct mosquitto *client)
{
	client->connected = false;
}

bool mock_client_connected(const struct mosquitto *client)
{
	return client->connected;
}

/* mosquitto_unpwd_check: the first BASIC_AUTH callback that does not defer
 * decides; if all defer, a client without username is admitted
 * (allow_anonymous true) and one with a username is refused (no
 * password_file). */
static int unpwd_check(struct mosquitto *client)
{
	int rc = MOSQ_ERR_PLUGIN_DEFER;

	for (size_t i = 0; i < ncallbacks; i++) {
		struct mosquitto_evt_basic_auth ed;

		if (callbacks[i].event != MOSQ_EVT_BASIC_AUTH)
			continue;
		memset(&ed, 0, sizeof(ed));
		ed.client = client;
		ed.username = client->username;
		ed.password = client->password;
		rc = callbacks[i].cb(MOSQ_EVT_BASIC_AUTH, &ed, callbacks[i].userdata);
		if (rc != MOSQ_ERR_PLUGIN_DEFER)
			return rc;
	}
	if (rc == MOSQ_ERR_PLUGIN_DEFER)
		return client->username == NULL ? MOSQ_ERR_SUCCESS : MOSQ_ERR_AUTH;
	return rc;
}

/* plugin__handle_disconnect, reason -1 as context__disconnect gives it. */
static void handle_disconnect(struct mosquitto *client)
{
	for (size_t i = 0; i < ncallbacks; i++) {
		struct mosquitto_evt_disconnect ed;

		if (callbacks[i].event != MOSQ_EVT_DISCONNECT)
			continue;
		memset(&ed, 0, sizeof(ed));
		ed.client = client;
		ed.reason = -1;
		callbacks[i].cb(MOSQ_EVT_DISCONNECT, &ed, callbacks[i].userdata);
	}
}

int mock_connect(struct mosquitto *client)
{
	int rc;

	if (client->connected)
		die("%s: client %s is already connected", __func__, client->id);
	rc = unpwd_check(client);
	if (rc != MOSQ_ERR_SUCCESS) {
		handle_disconnect(client); /* a refused CONNECT is torn down too */
		return rc;
	}
	/* connect__on_authorised: the session's old connection goes now. */
	for (struct mosquitto *old = clients; old != NULL; old = old->next) {
		if (old != client && old->connected && strcmp(old->id, client->id) == 0) {
			mock_disconnect(old, NULL, NULL, 0, 0, false);
			break;
		}
	}
	client->connected = true;
	return MOSQ_ERR_SUCCESS;
}

int mock_disconnect(struct mosquitto *client, const char *will_topic, const void *will_payload,
                    uint32_t will_len, int will_qos, bool will_retain)
{
	if (!client->connected)
		return MOSQ_ERR_NOT_FOUND;
	client->connected = false;
	handle_disconnect(client);
	/* context__send_will: the will is checked after DISCONNECT. */
	if (will_topic == NULL)
		return MOSQ_ERR_NOT_FOUND;
	return mock_acl_check(client, MOSQ_ACL_WRITE, will_topic, will_payload, will_len, will_qos,
	                      will_retain);
}

int mosquitto_kick_client_by_clientid(const char *clientid, bool with_will)
{
	struct mosquitto *c;

	(void)with_will; /* the mock's clients carry no will */
	on_broker_thread(__func__);
	if (clientid == NULL) {
		for (int again = 1; again;) {
			again = 0;
			for (c = clients; c != NULL; c = c->next) {
				if (c->connected) {
					mock_disconnect(c, NULL, NULL, 0, 0, false);
					again = 1; /* DISCONNECT may have changed the list */
					break;
				}
			}
		}
		return MOSQ_ERR_SUCCESS;
	}
	for (c = clients; c != NULL; c = c->next) {
		if (c->connected && strcmp(c->id, clientid) == 0) {
			mock_disconnect(c, NULL, NULL, 0, 0, false);
			return MOSQ_ERR_SUCCESS;
		}
	}
	return MOSQ_ERR_NOT_FOUND;
}

/* ---- events ---- */

int mock_acl_check(struct mosquitto *client, int access, const char *topic, const void *payload,
                   uint32_t payloadlen, int qos, bool retain)
{
	for (size_t i = 0; i < ncallbacks; i++) {
		struct mosquitto_evt_acl_check ed;
		int rc;

		if (callbacks[i].event != MOSQ_EVT_ACL_CHECK)
			continue;
		memset(&ed, 0, sizeof(ed));
		ed.client = client;
		ed.topic = topic;
		ed.payload = payload;
		ed.payloadlen = payloadlen;
		ed.qos = (uint8_t)qos;
		ed.retain = retain;
		ed.access = access;
		rc = callbacks[i].cb(MOSQ_EVT_ACL_CHECK, &ed, callbacks[i].userdata);
		if (rc != MOSQ_ERR_PLUGIN_DEFER)
			return rc;
	}
	return MOSQ_ERR_ACL_DENIED; /* every check deferred */
}

/* control__process: the callback registered for exactly this topic. */
static int handle_control(struct mosquitto *client, const char *topic, const void *payload,
                          uint32_t payloadlen, int qos, bool retain,
                          const mosquitto_property *properties)
{
	mock_callback *c = callback_find(MOSQ_EVT_CONTROL, NULL, topic);
	struct mosquitto_evt_control ed;
	int rc;

	if (c == NULL)
		return MOSQ_ERR_SUCCESS;
	memset(&ed, 0, sizeof(ed));
	ed.client = client;
	ed.topic = topic;
	ed.payload = payload;
	ed.payloadlen = payloadlen;
	ed.qos = (uint8_t)qos;
	ed.retain = retain;
	ed.properties = properties;
	ed.reason_code = MQTT_RC_SUCCESS;
	rc = c->cb(MOSQ_EVT_CONTROL, &ed, c->userdata);
	free(ed.reason_string);
	return rc;
}

/* plugin__handle_message. 2.0.11 would adopt a replaced topic or payload
 * pointer; DESIGN.md §2 forbids the plugin to replace them, so the mock
 * aborts instead. */
static int handle_message(struct mosquitto *client, char *topic, void *payload, uint32_t payloadlen,
                          int qos, bool *retain, mosquitto_property *properties)
{
	struct mosquitto_evt_message ed;
	int rc = MOSQ_ERR_SUCCESS;

	memset(&ed, 0, sizeof(ed));
	ed.client = client;
	ed.topic = topic;
	ed.payload = payload;
	ed.payloadlen = payloadlen;
	ed.qos = (uint8_t)qos;
	ed.retain = *retain;
	ed.properties = properties;
	for (size_t i = 0; i < ncallbacks && rc == MOSQ_ERR_SUCCESS; i++)
		if (callbacks[i].event == MOSQ_EVT_MESSAGE)
			rc = callbacks[i].cb(MOSQ_EVT_MESSAGE, &ed, callbacks[i].userdata);
	if (ed.topic != topic || ed.payload != payload || ed.payloadlen != payloadlen ||
	    ed.properties != properties)
		die("MESSAGE replaced the topic, payload or properties of a message");
	free(ed.reason_string);
	*retain = ed.retain;
	return rc;
}

mock_pub_fate mock_publish_in(struct mosquitto *client, char *topic, void *payload,
                              uint32_t payloadlen, int qos, bool *retain,
                              mosquitto_property *properties)
{
	int rc;

	if (!client->connected)
		die("%s: client %s is not connected", __func__, client->id);
	rc = mock_acl_check(client, MOSQ_ACL_WRITE, topic, payload, payloadlen, qos, *retain);
	if (rc == MOSQ_ERR_ACL_DENIED)
		return MOCK_PUB_DENIED;
	if (rc == MOSQ_ERR_SUCCESS) {
		if (strncmp(topic, "$CONTROL/", 9) == 0)
			rc = handle_control(client, topic, payload, payloadlen, qos, *retain,
			                    properties);
		else
			rc = handle_message(client, topic, payload, payloadlen, qos, retain,
			                    properties);
		if (rc == MOSQ_ERR_SUCCESS)
			return strncmp(topic, "$CONTROL/", 9) == 0 ? MOCK_PUB_CONTROL
			                                           : MOCK_PUB_STORED;
		if (rc == MOSQ_ERR_ACL_DENIED)
			return MOCK_PUB_DENIED; /* PUBACK 0x87, the client stays */
	}
	/* Any other error ends the connection (loop.c do_disconnect). */
	mock_disconnect(client, NULL, NULL, 0, 0, false);
	return MOCK_PUB_DISCONNECTED;
}

void mock_tick(void)
{
	struct mosquitto_evt_tick ed;

	memset(&ed, 0, sizeof(ed)); /* 2.0.11 fills in nothing */
	for (size_t i = 0; i < ncallbacks; i++)
		if (callbacks[i].event == MOSQ_EVT_TICK)
			callbacks[i].cb(MOSQ_EVT_TICK, &ed, callbacks[i].userdata);
}

void mock_reload(struct mosquitto **sessions, size_t n)
{
	struct mosquitto_evt_reload ed;

	memset(&ed, 0, sizeof(ed)); /* 2.0 passes no options at reload */
	for (size_t i = 0; i < ncallbacks; i++)
		if (callbacks[i].event == MOSQ_EVT_RELOAD)
			callbacks[i].cb(MOSQ_EVT_RELOAD, &ed, callbacks[i].userdata);
	/* mosquitto_security_apply_default */
	for (size_t i = 0; i < n; i++)
		if (unpwd_check(sessions[i]) != MOSQ_ERR_SUCCESS)
			mock_disconnect(sessions[i], NULL, NULL, 0, 0, false);
}
