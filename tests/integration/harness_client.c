/*
 * harness_client.c - libmosquitto clients: connect and wait for the CONNACK,
 * the broker closing the connection, disconnect, free; plus the client half
 * of the cleanup registry. What a connected client sends and receives is in
 * harness_pubsub.c.
 *
 * Clients run libmosquitto's threaded loop. The loop thread only touches the
 * client's fields under the client's mutex and signals its condition
 * variable; every waiting call in the test thread is a bounded wait on that
 * variable. A client never reconnects on its own: a test sees exactly the
 * connection it opened.
 */
#define _GNU_SOURCE
#include "harness_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>

/* Every client not yet freed, for tb_cleanup_all(). */
static tb_client *live_clients;

static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void lib_cleanup(void)
{
	mosquitto_lib_cleanup();
}

static void lib_init(void)
{
	mosquitto_lib_init();
	atexit(lib_cleanup);
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
	tb_client *c = obj;

	(void)mosq;
	(void)props;
	pthread_mutex_lock(&c->lock);
	c->connack_seen = true;
	c->connack_rc = rc;
	c->session_present = (flags & 1) != 0;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc,
                          const mosquitto_property *props)
{
	tb_client *c = obj;
	bool ours;

	(void)rc;
	(void)props;
	pthread_mutex_lock(&c->lock);
	ours = c->we_disconnect;
	c->closed = true;
	c->closed_by_broker = !ours;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	/* Marks the client disconnected, so the loop thread ends instead of
	 * reconnecting: a test sees exactly the connection it opened. */
	if (!ours)
		mosquitto_disconnect(mosq);
}

static void client_destroy(tb_client *c)
{
	while (c->head != NULL) {
		msg_node *n = c->head;

		c->head = n->next;
		tb_msg_free(n->msg);
		free(n);
	}
	if (c->mosq != NULL)
		mosquitto_destroy(c->mosq);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static tb_client *client_new(const char *client_id, const tb_client_opts *o)
{
	tb_client *c = calloc(1, sizeof(*c));
	pthread_condattr_t ca;
	bool clean = !o->persistent_session || client_id == NULL || client_id[0] == '\0';
	int version = o->protocol == TB_MQTT_5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311;

	if (c == NULL)
		fail_msg("out of memory");
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	c->mosq = mosquitto_new(client_id != NULL && client_id[0] != '\0' ? client_id : NULL, clean,
	                        c);
	if (c->mosq == NULL) {
		client_destroy(c);
		fail_msg("mosquitto_new(%s) failed", client_id != NULL ? client_id : "");
	}
	mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION, version);
	if ((o->username != NULL &&
	     mosquitto_username_pw_set(c->mosq, o->username, o->password) != MOSQ_ERR_SUCCESS) ||
	    (o->will_topic != NULL &&
	     mosquitto_will_set(c->mosq, o->will_topic,
	                        o->will_payload != NULL ? (int)strlen(o->will_payload) : 0,
	                        o->will_payload, o->will_qos,
	                        o->will_retain) != MOSQ_ERR_SUCCESS)) {
		client_destroy(c);
		fail_msg("invalid client options for %s", client_id != NULL ? client_id : "");
	}
	/* Never reconnect on our own (on_disconnect also prevents it). */
	mosquitto_reconnect_delay_set(c->mosq, 3600, 3600, false);
	mosquitto_connect_v5_callback_set(c->mosq, on_connect);
	mosquitto_disconnect_v5_callback_set(c->mosq, on_disconnect);
	tbi_pubsub_callbacks_set(c->mosq);
	return c;
}

int tb_client_try_connect(tb_broker *b, const char *client_id, const tb_client_opts *o,
                          tb_client **out)
{
	tb_client_opts none = {0};
	struct timespec ts;
	tb_client *c;
	int rc;

	*out = NULL;
	pthread_once(&lib_once, lib_init);
	c = client_new(client_id, o != NULL ? o : &none);
	if (mosquitto_connect(c->mosq, "127.0.0.1", tb_broker_port(b),
	                      o != NULL && o->keepalive > 0 ? o->keepalive : 60) !=
	            MOSQ_ERR_SUCCESS ||
	    mosquitto_loop_start(c->mosq) != MOSQ_ERR_SUCCESS) {
		client_destroy(c);
		return TB_CONNACK_NONE;
	}
	c->loop_running = true;
	c->next = live_clients;
	live_clients = c;
	tbi_deadline_ts(&ts, TB_WAIT_MS);
	pthread_mutex_lock(&c->lock);
	while (!c->connack_seen && !c->closed)
		if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT)
			break;
	rc = c->connack_seen ? c->connack_rc : TB_CONNACK_NONE;
	if (rc == 0 && c->closed)
		rc = TB_CONNACK_NONE;
	pthread_mutex_unlock(&c->lock);
	if (rc != 0) {
		tb_client_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

tb_client *tb_client_connect(tb_broker *b, const char *client_id, const tb_client_opts *o)
{
	tb_client *c;

	tb_client_try_connect(b, client_id, o, &c);
	return c;
}

bool tb_client_session_present(const tb_client *c)
{
	return c->session_present;
}

bool tb_client_disconnected(tb_client *c, int timeout_ms)
{
	struct timespec ts;
	bool closed;

	tbi_deadline_ts(&ts, timeout_ms);
	pthread_mutex_lock(&c->lock);
	while (!c->closed)
		if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT)
			break;
	closed = c->closed_by_broker;
	pthread_mutex_unlock(&c->lock);
	return closed;
}

void tb_client_disconnect(tb_client *c)
{
	struct timespec ts;
	bool closed;

	if (!c->loop_running)
		return;
	pthread_mutex_lock(&c->lock);
	c->we_disconnect = true;
	pthread_mutex_unlock(&c->lock);
	mosquitto_disconnect(c->mosq);
	tbi_deadline_ts(&ts, TB_WAIT_MS);
	pthread_mutex_lock(&c->lock);
	while (!c->closed)
		if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT)
			break;
	closed = c->closed;
	pthread_mutex_unlock(&c->lock);
	/* The loop thread ends once the client is disconnected; if the socket
	 * never closed, cancel it (it then sits in select(), a cancellation
	 * point, not in one of our callbacks). */
	mosquitto_loop_stop(c->mosq, !closed);
	c->loop_running = false;
}

void tb_client_free(tb_client *c)
{
	if (c == NULL)
		return;
	tb_client_disconnect(c);
	for (tb_client **p = &live_clients; *p != NULL; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	client_destroy(c);
}

void tbi_clients_free_all(void)
{
	while (live_clients != NULL)
		tb_client_free(live_clients);
}
