/*
 * outbox.c - group commit and the publishes that wait for it.
 *
 * Every request of a broker loop iteration writes into one store batch and
 * queues its reply here. TICK commits the batch once (one fsync) and only
 * then publishes, in arrival order, so a reply always means "on disk"
 * (DESIGN.md §2, §3). If the commit fails, every reply of the batch becomes
 * an error reply and notifications are dropped: nothing they announced
 * happened.
 *
 * Replies are targeted publishes to the requesting client id; a message for
 * a connection that was taken over meanwhile is dropped (PROTOCOL.md §1.4).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "plugin.h"
#include "twin/json.h"
#include "topic.h"

static plg_msg *outbox_push(plg_outbox *o)
{
	if (o->len == o->cap) {
		size_t cap = o->cap ? o->cap * 2 : 64;
		plg_msg *m = realloc(o->msgs, cap * sizeof(*m));

		if (m == NULL)
			return NULL;
		o->msgs = m;
		o->cap = cap;
	}
	memset(&o->msgs[o->len], 0, sizeof(o->msgs[0]));
	return &o->msgs[o->len++];
}

static void msg_free(plg_msg *m)
{
	free(m->client_id);
	free(m->rid);
	free(m->topic);
	free(m->payload);
	free(m->correlation);
}

static char *dup_n(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d != NULL) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static char *reply_topic(int status, const char *rid, size_t rid_len, int64_t version)
{
	char *t;
	size_t n = rid_len + 64;

	t = malloc(n);
	if (t == NULL)
		return NULL;
	if (version >= 0)
		snprintf(t, n, "$iothub/twin/res/%d/?$rid=%.*s&$version=%" PRId64, status,
		         (int)rid_len, rid ? rid : "", version);
	else
		snprintf(t, n, "$iothub/twin/res/%d/?$rid=%.*s", status, (int)rid_len,
		         rid ? rid : "");
	return t;
}

void plg_lost(plg_ctx *ctx, const char *what, const char *client_id)
{
	mosquitto_log_printf(MOSQ_LOG_ERR,
	                     PLG_LOG_PREFIX "out of memory: %s %s is lost; the batch fails, so "
	                                    "that nothing is applied without its answer.",
	                     what, client_id);
	twin_store_fail(ctx->store);
}

static plg_msg *queue(plg_ctx *ctx, plg_conn *c, int qos, char *rid, char *topic, char *body,
                      size_t len)
{
	char *client_id = strdup(c->device_id);
	plg_msg *m = NULL;

	if (topic != NULL && client_id != NULL && (m = outbox_push(&ctx->out)) != NULL) {
		m->client_id = client_id;
		m->generation = c->generation;
		m->qos = qos > 1 ? 1 : qos;
		m->rid = rid;
		m->topic = topic;
		m->payload = body;
		m->len = len;
		return m;
	}
	plg_lost(ctx, "a message to", c->device_id);
	free(client_id);
	free(rid);
	free(topic);
	free(body);
	return NULL;
}

/* Queue a reply; NULL when none is sent (no res/# subscription, no memory). */
static plg_msg *reply(plg_ctx *ctx, plg_conn *c, const char *rid, size_t rid_len, int status,
                      int64_t version, char *body, size_t len)
{
	if (c->session.res_qos < 0) {
		/* Not subscribed to replies: executed, not answered (§2.2). */
		free(body);
		return NULL;
	}
	return queue(ctx, c, c->session.res_qos, dup_n(rid ? rid : "", rid ? rid_len : 0),
	             reply_topic(status, rid, rid_len, version), body, len);
}

void plg_reply_get(plg_ctx *ctx, plg_conn *c, const char *rid, size_t rid_len, int64_t desired,
                   char *body, size_t len)
{
	plg_msg *m = reply(ctx, c, rid, rid_len, 200, -1, body, len);

	if (m != NULL) {
		m->desired = desired;
		if (desired > c->queued)
			c->queued = desired;
	}
}

void plg_reply(plg_ctx *ctx, plg_conn *c, const char *rid, size_t rid_len, int status,
               int64_t version, char *body, size_t len)
{
	reply(ctx, c, rid, rid_len, status, version, body, len);
}

void plg_reply_error(plg_ctx *ctx, plg_conn *c, const char *rid, size_t rid_len,
                     const twin_error *e)
{
	char *body = twin_error_body(e, twin_store_now(ctx->store));

	plg_reply(ctx, c, rid, rid_len, twin_err_status(e->err), -1, body, body ? strlen(body) : 0);
}

void plg_notify(plg_ctx *ctx, plg_conn *c, int64_t v, char *body, size_t len)
{
	char *topic = malloc(sizeof(PLG_DESIRED_TOPIC) + 32);
	plg_msg *m;

	if (topic != NULL)
		snprintf(topic, sizeof(PLG_DESIRED_TOPIC) + 32,
		         PLG_DESIRED_TOPIC "?$version=%" PRId64, v);
	m = queue(ctx, c, c->session.desired_qos, NULL, topic, body, len);
	if (m != NULL) {
		m->desired = v;
		if (v > c->queued)
			c->queued = v;
	}
}

/* Replace a reply of a failed batch by a 500 error reply. */
static void fail_reply(plg_ctx *ctx, plg_msg *m, const twin_error *e)
{
	char *body = twin_error_body(e, twin_store_now(ctx->store));
	char *topic = reply_topic(twin_err_status(e->err), m->rid, strlen(m->rid), -1);

	free(m->topic);
	free(m->payload);
	m->topic = topic;
	m->payload = body;
	m->len = body ? strlen(body) : 0;
}

void plg_send_after_commit(plg_ctx *ctx, const char *client_id, const char *topic, int qos,
                           char *payload, size_t len, const void *correlation,
                           uint16_t correlation_len)
{
	char *id = strdup(client_id), *t = strdup(topic);
	void *corr = correlation ? malloc(correlation_len ? correlation_len : 1) : NULL;
	plg_msg *m = NULL;

	if (id != NULL && t != NULL && (correlation == NULL || corr != NULL) &&
	    (m = outbox_push(&ctx->out)) != NULL) {
		m->client_id = id;
		m->qos = qos > 1 ? 1 : qos;
		m->topic = t;
		m->payload = payload;
		m->len = len;
		m->control = 1;
		if (corr != NULL)
			memcpy(corr, correlation, correlation_len);
		m->correlation = corr;
		m->correlation_len = correlation_len;
		return;
	}
	plg_lost(ctx, "the control response to", client_id);
	free(id);
	free(t);
	free(corr);
	free(payload);
}

/* Publish m to its client, with its correlation data as an MQTT v5
 * property (the broker owns the property list once the publish succeeds). */
static void publish(const plg_msg *m)
{
	mosquitto_property *props = NULL;

	if (m->correlation != NULL &&
	    mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, m->correlation,
	                                  m->correlation_len) != MOSQ_ERR_SUCCESS) {
		mosquitto_property_free_all(&props);
		props = NULL;
	}
	if (mosquitto_broker_publish_copy(m->client_id, m->topic, (int)m->len, m->payload, m->qos,
	                                  false, props) != MOSQ_ERR_SUCCESS)
		mosquitto_property_free_all(&props);
}

void plg_control_response_fail(cJSON *r, const twin_error *e)
{
	cJSON *err = cJSON_CreateObject();

	cJSON_DeleteItemFromObjectCaseSensitive(r, "data");
	cJSON_DeleteItemFromObjectCaseSensitive(r, "error");
	cJSON_DeleteItemFromObjectCaseSensitive(r, "status");
	cJSON_AddNumberToObject(r, "status", twin_err_status(e->err));
	cJSON_AddNumberToObject(err, "code", twin_err_code(e->err));
	cJSON_AddStringToObject(err, "message", e->message);
	cJSON_AddItemToObject(r, "error", err);
}

/* A control response of a failed batch: none of its writes happened, so
 * every command becomes the commit's error, keeping what identifies it. */
static void fail_control(plg_msg *m, const twin_error *e)
{
	cJSON *out = cJSON_ParseWithLength(m->payload, m->len), *r;
	cJSON *responses = cJSON_GetObjectItemCaseSensitive(out, "responses");
	char *text;

	cJSON_ArrayForEach(r, responses)
	{
		plg_control_response_fail(r, e);
	}
	text = out ? twin_json_print(out) : NULL;
	cJSON_Delete(out);
	free(m->payload);
	m->payload = text;
	m->len = text ? strlen(text) : 0;
	if (text == NULL)
		m->topic[0] = '\0'; /* nothing sensible to send */
}

/* The live connection a device message was made for, or NULL. */
static plg_conn *target(plg_ctx *ctx, const plg_msg *m)
{
	plg_conn *c = plg_conn_by_device(&ctx->conns, m->client_id);

	return c != NULL && c->generation == m->generation ? c : NULL;
}

/* After a failed commit: what the broker did (grant subscriptions, admit
 * the device) still stands, so the session is saved again and a device
 * registered by the lost batch is registered again. Nothing queued was
 * handed over. */
static void after_failed_commit(plg_conn *c, void *arg)
{
	plg_ctx *ctx = arg;
	twin_identity id;

	c->queued = 0;
	if (ctx->opts.auth == PLG_AUTH_OPEN &&
	    twin_device_get(ctx->store, c->device_id, &id, NULL) == TWIN_E_NOT_FOUND)
		twin_device_create(ctx->store, c->device_id, NULL, NULL, NULL);
	plg_session_save(ctx, c);
}

/* A message left for the broker: record the desired version it hands over
 * (§3.1 L), which is saved with the next batch. */
static void handed(plg_ctx *ctx, plg_conn *c, const plg_msg *m)
{
	int changed = 0;

	if (m->desired > c->session.notified_version) {
		c->session.notified_version = m->desired;
		changed = 1;
	}
	/* A GET result is the whole twin, asked for by a device that waits for
	 * it: from here on the device holds at least that version. */
	if (m->rid != NULL && m->desired > c->session.connection_base) {
		c->session.connection_base = m->desired;
		changed = 1;
	}
	if (changed)
		plg_session_save(ctx, c);
	if (c->queued <= m->desired)
		c->queued = 0;
}

void plg_kick_after_commit(plg_ctx *ctx, const char *device_id)
{
	char **grown, *id;

	if (ctx->nkicks == ctx->kicks_cap) {
		size_t cap = ctx->kicks_cap ? 2 * ctx->kicks_cap : 8;

		grown = realloc(ctx->kicks, cap * sizeof(*grown));
		if (grown == NULL)
			return;
		ctx->kicks = grown;
		ctx->kicks_cap = cap;
	}
	if ((id = strdup(device_id)) != NULL)
		ctx->kicks[ctx->nkicks++] = id;
}

/* Kicking runs DISCONNECT (it joins the next batch), so it comes after
 * every message of this batch was handed over. */
static void kick_all(plg_ctx *ctx, int failed)
{
	for (size_t i = 0; i < ctx->nkicks; i++) {
		if (!failed && plg_conn_by_device(&ctx->conns, ctx->kicks[i]) != NULL) {
			mosquitto_log_printf(MOSQ_LOG_NOTICE,
			                     PLG_LOG_PREFIX
			                     "closing device %s: disabled, deleted or its "
			                     "credentials changed.",
			                     ctx->kicks[i]);
			mosquitto_kick_client_by_clientid(ctx->kicks[i], false);
		}
		free(ctx->kicks[i]);
	}
	ctx->nkicks = 0;
}

void plg_outbox_flush(plg_ctx *ctx)
{
	twin_error err = {0};
	int failed = twin_store_commit(ctx->store, &err) != TWIN_OK;

	if (failed) {
		mosquitto_log_printf(MOSQ_LOG_ERR,
		                     PLG_LOG_PREFIX
		                     "commit failed, %zu replies turn into errors: %s",
		                     ctx->out.len, err.message);
		plg_conns_each_live(&ctx->conns, after_failed_commit, ctx);
	}
	for (size_t i = 0; i < ctx->out.len; i++) {
		plg_msg *m = &ctx->out.msgs[i];
		plg_conn *c = m->control ? NULL : target(ctx, m);

		if (failed && m->control)
			fail_control(m, &err);
		else if (failed && m->rid != NULL)
			fail_reply(ctx, m, &err);
		else if (failed)
			m->desired = 0; /* a notification of a write that did not happen */
		if (m->topic != NULL && m->topic[0] && (m->control || c != NULL) &&
		    !(failed && !m->control && !m->rid)) {
			publish(m);
			if (c != NULL && !failed)
				handed(ctx, c, m);
		}
		msg_free(m);
	}
	ctx->out.len = 0;
	plg_events_publish(ctx);
	kick_all(ctx, failed);
	plg_queries_after_commit(ctx, failed ? &err : NULL);
}

void plg_outbox_free(plg_outbox *o)
{
	for (size_t i = 0; i < o->len; i++)
		msg_free(&o->msgs[i]);
	free(o->msgs);
	memset(o, 0, sizeof(*o));
}
