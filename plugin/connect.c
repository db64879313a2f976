/*
 * connect.c - who is connected, what they subscribed to, what they may do.
 *
 * Mosquitto 2.0 has no CONNECT event: BASIC_AUTH is the connect hook, with
 * the client id known (DESIGN.md §2). In open mode (the quick start) the
 * identity is the client id: unknown devices are registered on their first
 * connect and credentials are not checked. Clients whose id is not a valid
 * deviceId are not devices; for them the callback defers to the broker's
 * own settings.
 *
 * SIGHUP re-runs BASIC_AUTH for every session, offline ones included, with
 * no way to tell it from a connect except the RELOAD event just before it:
 * between RELOAD and the next TICK the callback only re-checks clients it
 * already knows.
 *
 * Subscriptions are learnt from the ACL SUBSCRIBE/UNSUBSCRIBE checks and
 * persisted, because the SDKs subscribe once per MQTT session and a session
 * outlives both reconnects and broker restarts (PROTOCOL.md §1.5).
 */
#include <string.h>

#include "plugin.h"
#include "topic.h"
#include "twin/registry.h"

static void log_store_error(const char *what, const char *id, const twin_error *e)
{
	mosquitto_log_printf(MOSQ_LOG_ERR, PLG_LOG_PREFIX "%s %s: %s", what, id, e->message);
}

void plg_session_save(plg_ctx *ctx, plg_conn *c)
{
	twin_error err;

	if (twin_session_put(ctx->store, c->device_id, &c->session, &err) != TWIN_OK)
		log_store_error("cannot save the session of", c->device_id, &err);
}

void plg_activity(plg_ctx *ctx, plg_conn *c)
{
	twin_error err;

	c->activity = twin_store_now(ctx->store);
	if (c->activity - c->activity_saved < PLG_ACTIVITY_SAVE_TICKS)
		return;
	c->activity_saved = c->activity;
	if (twin_device_set_activity(ctx->store, c->device_id, c->activity, &err) != TWIN_OK)
		log_store_error("cannot save the activity of", c->device_id, &err);
}

/* The identity of a connecting device, registered if unknown (open mode). */
static twin_err identity_for(plg_ctx *ctx, const char *id, twin_identity *out, twin_error *err)
{
	twin_err rc = twin_device_get(ctx->store, id, out, err);

	if (rc == TWIN_E_NOT_FOUND) {
		rc = twin_device_create(ctx->store, id, NULL, out, err);
		if (rc == TWIN_OK)
			mosquitto_log_printf(MOSQ_LOG_INFO, PLG_LOG_PREFIX "registered device %s.",
			                     id);
	}
	return rc;
}

static void start_session(plg_ctx *ctx, plg_conn *c, int clean)
{
	twin_error err;
	int64_t since;

	if (twin_session_get(ctx->store, c->device_id, &c->session, &err) != TWIN_OK) {
		log_store_error("cannot read the session of", c->device_id, &err);
		c->session = (twin_session){-1, -1, 1, 1};
	}
	if (clean) /* a clean session starts without subscriptions */
		c->session.res_qos = c->session.desired_qos = -1;
	/* Notifications in flight when the last connection dropped may be lost
	 * (QoS 0 is never redelivered; QoS 1 redelivery under $iothub/ is
	 * refused so nothing can be forged), so a resumed session catches up
	 * from what the device surely had when that connection started. */
	since = c->session.connection_base < c->session.notified_version
	                ? c->session.connection_base
	                : c->session.notified_version;
	c->session.connection_base = since;
	plg_session_save(ctx, c);
	c->activity = c->activity_saved = twin_store_now(ctx->store);
	if (twin_device_set_connected(ctx->store, c->device_id, 1, &err) != TWIN_OK)
		log_store_error("cannot record the connection of", c->device_id, &err);
	/* A resumed session that holds the desired subscription (§3.1 b). */
	if (!clean && c->session.desired_qos >= 0)
		plg_catchup(ctx, c, since);
}

static int reauthenticate(plg_ctx *ctx, struct mosquitto *client)
{
	plg_conn *c = plg_conn_by_client(&ctx->conns, client);
	twin_identity id;

	if (c == NULL)
		return MOSQ_ERR_PLUGIN_DEFER; /* an offline session */
	switch (twin_device_get(ctx->store, c->device_id, &id, NULL)) {
	case TWIN_OK:
		return id.enabled ? MOSQ_ERR_SUCCESS : MOSQ_ERR_AUTH;
	case TWIN_E_NOT_FOUND:
		return MOSQ_ERR_AUTH; /* deleted while connected */
	default:
		return MOSQ_ERR_SUCCESS; /* a storage hiccup is no reason to disconnect */
	}
}

int plg_on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	plg_ctx *ctx = userdata;
	const char *id = mosquitto_client_id(ed->client);
	twin_identity identity;
	twin_error err;
	plg_conn *c;

	(void)event;
	if (id == NULL || !twin_device_id_valid(id))
		return MOSQ_ERR_PLUGIN_DEFER; /* not a device: an ordinary MQTT client */
	if (ctx->reloading)
		return reauthenticate(ctx, ed->client);
	if (identity_for(ctx, id, &identity, &err) != TWIN_OK) {
		log_store_error("cannot load or register device", id, &err);
		return MOSQ_ERR_UNKNOWN;
	}
	if (!identity.enabled)
		return MOSQ_ERR_AUTH;
	c = plg_conn_by_client(&ctx->conns, ed->client);
	if (c != NULL)
		plg_conn_remove(&ctx->conns, c);
	c = plg_conn_add(&ctx->conns, ed->client, id);
	if (c == NULL)
		return MOSQ_ERR_NOMEM;
	start_session(ctx, c, mosquitto_client_clean_session(ed->client));
	/* Open mode admits devices itself: had it deferred, 2.0.11 would refuse
	 * every client that sends a username (the SDKs always do), whatever
	 * allow_anonymous says. */
	return MOSQ_ERR_SUCCESS;
}

int plg_on_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ed = event_data;
	plg_ctx *ctx = userdata;
	plg_conn *c = plg_conn_by_client(&ctx->conns, ed->client);
	twin_error err;

	(void)event;
	if (c == NULL)
		return MOSQ_ERR_SUCCESS;
	/* After a takeover the device is still connected, by its new connection. */
	if (plg_conn_is_live(&ctx->conns, c)) {
		if (c->activity > c->activity_saved)
			twin_device_set_activity(ctx->store, c->device_id, c->activity, NULL);
		if (twin_device_set_connected(ctx->store, c->device_id, 0, &err) != TWIN_OK)
			log_store_error("cannot record the disconnection of", c->device_id, &err);
	}
	plg_conn_remove(&ctx->conns, c);
	return MOSQ_ERR_SUCCESS;
}

int plg_on_reload(int event, void *event_data, void *userdata)
{
	plg_ctx *ctx = userdata;

	(void)event;
	(void)event_data;
	ctx->reloading = 1;
	return MOSQ_ERR_PLUGIN_DEFER; /* RELOAD carries no options in 2.0 */
}

static int subscribe(plg_ctx *ctx, plg_conn *c, const char *filter, int qos)
{
	plg_filter_kind kind = plg_filter_classify(filter);

	if (kind == PLG_FILTER_NOT_IOTHUB)
		return MOSQ_ERR_SUCCESS; /* open mode: ordinary topics are open */
	if (kind == PLG_FILTER_FORBIDDEN || c == NULL)
		return MOSQ_ERR_ACL_DENIED;
	qos = qos > 1 ? 1 : qos;
	if (kind == PLG_FILTER_TWIN_RES && c->session.res_qos != qos) {
		c->session.res_qos = qos;
		plg_session_save(ctx, c);
	} else if (kind == PLG_FILTER_DESIRED) {
		if (c->session.desired_qos != qos) {
			c->session.desired_qos = qos;
			plg_session_save(ctx, c);
		}
		plg_catchup(ctx, c, plg_seen(c)); /* §3.1 trigger a */
	}
	return MOSQ_ERR_SUCCESS;
}

static void unsubscribe(plg_ctx *ctx, plg_conn *c, const char *filter)
{
	plg_filter_kind kind = plg_filter_classify(filter);

	if (c == NULL)
		return;
	if (kind == PLG_FILTER_TWIN_RES && c->session.res_qos >= 0)
		c->session.res_qos = -1;
	else if (kind == PLG_FILTER_DESIRED && c->session.desired_qos >= 0)
		c->session.desired_qos = -1;
	else
		return;
	plg_session_save(ctx, c);
}

int plg_on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	plg_ctx *ctx = userdata;
	plg_conn *c = plg_conn_by_client(&ctx->conns, ed->client);
	int iothub = strncmp(ed->topic, PLG_IOTHUB_PREFIX, strlen(PLG_IOTHUB_PREFIX)) == 0;

	(void)event;
	switch (ed->access) {
	case MOSQ_ACL_SUBSCRIBE:
		return subscribe(ctx, c, ed->topic, ed->qos);
	case MOSQ_ACL_UNSUBSCRIBE:
		unsubscribe(ctx, c, ed->topic);
		return MOSQ_ERR_SUCCESS;
	case MOSQ_ACL_WRITE:
		/* A live device's publish goes on to MESSAGE, which answers or
		 * refuses it. Wills are checked after DISCONNECT dropped the
		 * connection, so a will under $iothub/ is refused here. */
		return iothub && (c == NULL || !plg_conn_is_live(&ctx->conns, c))
		               ? MOSQ_ERR_ACL_DENIED
		               : MOSQ_ERR_SUCCESS;
	default:
		/* READ: nothing under $iothub/ is ever fanned out; the plugin's
		 * own replies are targeted and skip this check. */
		return iothub ? MOSQ_ERR_ACL_DENIED : MOSQ_ERR_SUCCESS;
	}
}
