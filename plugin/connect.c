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
#include <stdlib.h>
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

/* Add c's connection as what who says, and start its session. */
static int admit(plg_ctx *ctx, struct mosquitto *client, const plg_principal *who)
{
	plg_conn *c = plg_conn_by_client(&ctx->conns, client);

	if (c != NULL)
		plg_conn_remove(&ctx->conns, c);
	c = plg_conn_add(&ctx->conns, client, who->kind, who->device_id);
	if (c == NULL)
		return MOSQ_ERR_NOMEM;
	c->rights = who->rights;
	c->expires = who->expires;
	if (who->kind == PLG_CONN_DEVICE)
		start_session(ctx, c, mosquitto_client_clean_session(client));
	return MOSQ_ERR_SUCCESS;
}

/* A client that may be device id, if the broker's other authenticators
 * admit it. The plugin cannot see their verdict: a refused client is
 * disconnected right away, which removes the pending connection; one that
 * is still here at its first ACL check or at the next TICK was admitted. */
static int pending(plg_ctx *ctx, struct mosquitto *client, const char *id)
{
	plg_conn *c = plg_conn_by_client(&ctx->conns, client);

	if (c != NULL)
		plg_conn_remove(&ctx->conns, c);
	if (plg_conn_add(&ctx->conns, client, PLG_CONN_PENDING, id) == NULL)
		return MOSQ_ERR_NOMEM;
	ctx->npending++;
	return MOSQ_ERR_PLUGIN_DEFER;
}

plg_conn *plg_admit_pending(plg_ctx *ctx, plg_conn *c)
{
	twin_identity identity;
	twin_error err;
	twin_err rc;

	ctx->npending--;
	/* Open mode registers devices; external mode serves registered ones. */
	rc = ctx->opts.auth == PLG_AUTH_OPEN
	             ? identity_for(ctx, c->device_id, &identity, &err)
	             : twin_device_get(ctx->store, c->device_id, &identity, &err);
	if (rc != TWIN_OK || !identity.enabled) {
		if (rc != TWIN_OK && rc != TWIN_E_NOT_FOUND)
			log_store_error("cannot load device", c->device_id, &err);
		plg_conn_remove(&ctx->conns, c); /* an ordinary MQTT client */
		return NULL;
	}
	plg_conn_promote(&ctx->conns, c);
	start_session(ctx, c, mosquitto_client_clean_session(c->client));
	return c;
}

static void admit_if_pending(plg_conn *c, void *arg)
{
	plg_conn **list = arg;

	if (c->kind == PLG_CONN_PENDING) {
		c->next_expired = *list;
		*list = c;
	}
}

void plg_admit_all_pending(plg_ctx *ctx)
{
	plg_conn *list = NULL, *next;

	if (ctx->npending == 0)
		return;
	plg_conns_each(&ctx->conns, admit_if_pending, &list);
	for (plg_conn *c = list; c != NULL; c = next) {
		next = c->next_expired;
		plg_admit_pending(ctx, c);
	}
}

/* SIGHUP re-runs BASIC_AUTH for every session (DESIGN.md §2). A live
 * connection is checked again exactly as at its CONNECT, with the
 * credentials it connected with: an expired token, a disabled or deleted
 * device, a regenerated key or a changed thumbprint closes it. Offline
 * sessions are left to their next CONNECT. */
static int reauthenticate(plg_ctx *ctx, struct mosquitto_evt_basic_auth *ed)
{
	plg_conn *c = plg_conn_by_client(&ctx->conns, ed->client);
	plg_principal who;
	twin_identity id;
	int rc;

	if (c == NULL || c->kind == PLG_CONN_PENDING)
		return MOSQ_ERR_PLUGIN_DEFER;
	if (ctx->opts.auth == PLG_AUTH_SAS) {
		rc = plg_authenticate(ctx, ed->client, ed->username, ed->password, &who);
		if (rc == MOSQ_ERR_SUCCESS &&
		    (who.kind != c->kind || strcmp(who.device_id, c->device_id) != 0))
			rc = MOSQ_ERR_AUTH;
		return rc;
	}
	if (ctx->opts.auth == PLG_AUTH_EXTERNAL)
		return MOSQ_ERR_PLUGIN_DEFER; /* the broker's authenticator decides */
	switch (twin_device_get(ctx->store, c->device_id, &id, NULL)) {
	case TWIN_OK:
		return id.enabled ? MOSQ_ERR_SUCCESS : MOSQ_ERR_AUTH;
	case TWIN_E_NOT_FOUND:
		return MOSQ_ERR_AUTH; /* deleted while connected */
	default:
		return MOSQ_ERR_SUCCESS; /* a storage hiccup is no reason to disconnect */
	}
}

/* Open mode: the client id is the device; unknown devices are registered. */
static int authenticate_open(plg_ctx *ctx, struct mosquitto *client, const char *username,
                             plg_principal *who)
{
	const char *id = mosquitto_client_id(client);
	twin_identity identity;
	twin_error err;

	if (id == NULL || !twin_device_id_valid(id))
		return MOSQ_ERR_PLUGIN_DEFER; /* not a device: an ordinary MQTT client */
	/* Without a username, allow_anonymous decides, not the plugin. */
	if (username == NULL)
		return pending(ctx, client, id);
	if (identity_for(ctx, id, &identity, &err) != TWIN_OK) {
		log_store_error("cannot load or register device", id, &err);
		return MOSQ_ERR_AUTH;
	}
	if (!identity.enabled)
		return MOSQ_ERR_AUTH;
	memset(who, 0, sizeof(*who));
	who->kind = PLG_CONN_DEVICE;
	strcpy(who->device_id, id);
	/* Admitting with a username is the point of open mode: had it
	 * deferred, 2.0.11 would refuse every client that sends one (the SDKs
	 * always do), whatever allow_anonymous says. */
	return MOSQ_ERR_SUCCESS;
}

int plg_on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	plg_ctx *ctx = userdata;
	const char *id = mosquitto_client_id(ed->client);
	plg_principal who;
	int rc;

	(void)event;
	if (ctx->reloading)
		return reauthenticate(ctx, ed);
	switch (ctx->opts.auth) {
	case PLG_AUTH_SAS:
		rc = plg_authenticate(ctx, ed->client, ed->username, ed->password, &who);
		break;
	case PLG_AUTH_OPEN:
		rc = authenticate_open(ctx, ed->client, ed->username, &who);
		break;
	default: /* external: whoever the broker admits under a device's id */
		if (id == NULL || !twin_device_id_valid(id))
			return MOSQ_ERR_PLUGIN_DEFER;
		return pending(ctx, ed->client, id);
	}
	return rc == MOSQ_ERR_SUCCESS ? admit(ctx, ed->client, &who) : rc;
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
	if (c->kind == PLG_CONN_PENDING)
		ctx->npending--;
	if (c->kind == PLG_CONN_DEVICE) {
		/* Its will, if any, is checked right after this (acl.c). */
		ctx->gone = ed->client;
		strcpy(ctx->gone_id, c->device_id);
	}
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

typedef struct sweep {
	int64_t now;
	char **ids;
	size_t n, cap;
} sweep;

static void note_expired(plg_conn *c, void *arg)
{
	sweep *s = arg;
	const char *id = mosquitto_client_id(c->client);
	char **grown;

	/* A token is valid while se > now (§1.2 step 2). */
	if (c->expires == 0 || c->expires > s->now || id == NULL)
		return;
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 16;
		grown = realloc(s->ids, s->cap * sizeof(*grown));
		if (grown == NULL)
			return; /* the next sweep tries again */
		s->ids = grown;
	}
	if ((s->ids[s->n] = strdup(id)) != NULL)
		s->n++;
	c->expires = 0; /* one attempt: the kick ends the connection */
}

void plg_expiry_sweep(plg_ctx *ctx)
{
	sweep s = {twin_store_now(ctx->store) / 10000000, NULL, 0, 0};

	if (s.now < ctx->next_sweep)
		return;
	ctx->next_sweep = s.now + 1;
	plg_conns_each(&ctx->conns, note_expired, &s);
	/* Kicking runs DISCONNECT, which frees connections: ids first. */
	for (size_t i = 0; i < s.n; i++) {
		mosquitto_log_printf(MOSQ_LOG_NOTICE,
		                     PLG_LOG_PREFIX "closing client %s: its SAS token expired.",
		                     s.ids[i]);
		mosquitto_kick_client_by_clientid(s.ids[i], false);
		free(s.ids[i]);
	}
	free(s.ids);
}
