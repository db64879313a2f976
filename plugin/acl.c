/*
 * acl.c - ACL_CHECK: what each client may do on the topics the plugin owns,
 * and which twin subscriptions a device holds.
 *
 * The plugin owns four topic trees (topic.h): $iothub/, devices/,
 * $CONTROL/twin/ and $twin/. On them it decides for devices and back ends;
 * every other client gets what the mode gives strangers (open: allowed,
 * sas: denied, external: the broker's ACL). Outside them it defers, so an
 * acl_file or dynamic-security governs ordinary topics (in 2.0.11 a check
 * every callback defers is a denial, DESIGN.md §2) — except in open mode,
 * where the quick start needs no ACL file.
 *
 * A device may use only its own twin and its own telemetry and C2D topics
 * (PROTOCOL.md §11); it never reaches the control API or the event stream.
 * Its identity is its connection, never the topic.
 *
 * Subscriptions are learnt from the SUBSCRIBE/UNSUBSCRIBE checks and
 * persisted, because the SDKs subscribe once per MQTT session and a session
 * outlives both reconnects and broker restarts (PROTOCOL.md §1.5).
 */
#include <string.h>

#include "plugin.h"
#include "topic.h"

static int subscribe_twin(plg_ctx *ctx, plg_conn *c, const char *filter, int qos)
{
	plg_filter_kind kind = plg_filter_classify(filter);

	if (kind == PLG_FILTER_FORBIDDEN || c == NULL || c->kind != PLG_CONN_DEVICE)
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

static void unsubscribe_twin(plg_ctx *ctx, plg_conn *c, const char *filter)
{
	plg_filter_kind kind = plg_filter_classify(filter);

	if (c == NULL || c->kind != PLG_CONN_DEVICE)
		return;
	if (kind == PLG_FILTER_TWIN_RES && c->session.res_qos >= 0)
		c->session.res_qos = -1;
	else if (kind == PLG_FILTER_DESIRED && c->session.desired_qos >= 0)
		c->session.desired_qos = -1;
	else
		return;
	plg_session_save(ctx, c);
}

/* $iothub/: devices only. */
static int iothub_acl(plg_ctx *ctx, plg_conn *c, const struct mosquitto_evt_acl_check *ed)
{
	switch (ed->access) {
	case MOSQ_ACL_SUBSCRIBE:
		return subscribe_twin(ctx, c, ed->topic, ed->qos);
	case MOSQ_ACL_WRITE:
		/* A live device's publish goes on to MESSAGE, which answers or
		 * refuses it. Wills are checked after DISCONNECT dropped the
		 * connection, so a will under $iothub/ is refused here. */
		return c != NULL && plg_conn_is_live(&ctx->conns, c) ? MOSQ_ERR_SUCCESS
		                                                     : MOSQ_ERR_ACL_DENIED;
	default:
		/* READ: nothing under $iothub/ is ever fanned out; the plugin's
		 * own replies are targeted and skip this check. */
		return MOSQ_ERR_ACL_DENIED;
	}
}

/* devices/ for a device (§11): its own telemetry and C2D only. A live
 * device's publish elsewhere passes here so that MESSAGE can close the
 * connection (a denial would only drop it); a will cannot get that far. */
static int device_devices_acl(plg_ctx *ctx, plg_conn *c, int access, const char *topic)
{
	plg_device_topic t = plg_device_topic_of(topic, c->device_id);

	switch (access) {
	case MOSQ_ACL_SUBSCRIBE:
		/* An id with '+' or '#' would be a wildcard in the filter, matching
		 * other devices' topics (PROTOCOL.md §7: such ids cannot use
		 * devices/{id}/ topics). */
		if (strpbrk(c->device_id, "+#") != NULL)
			return MOSQ_ERR_ACL_DENIED;
		return t == PLG_DEVTOPIC_C2D_FILTER ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
	case MOSQ_ACL_WRITE:
		return t == PLG_DEVTOPIC_EVENTS || plg_conn_is_live(&ctx->conns, c)
		               ? MOSQ_ERR_SUCCESS
		               : MOSQ_ERR_ACL_DENIED;
	default:
		return t == PLG_DEVTOPIC_C2D ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
	}
}

/* A back end on an owned tree, by its policy's rights. */
static int backend_acl(const plg_conn *c, plg_zone zone, int access, const char *topic)
{
	int write = access == MOSQ_ACL_WRITE, ok;

	switch (zone) {
	case PLG_ZONE_DEVICES: /* read telemetry, send C2D */
		ok = (c->rights & TWIN_RIGHT_SERVICE_CONNECT) &&
		     (!write || plg_is_c2d_topic(topic));
		break;
	case PLG_ZONE_CONTROL: /* per-command rights are control.c's */
		ok = c->rights != 0;
		break;
	case PLG_ZONE_EVENTS:
		ok = (c->rights & TWIN_RIGHT_SERVICE_CONNECT) && !write;
		break;
	default:
		ok = 0;
	}
	return ok ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
}

/* A client the plugin does not know, on an owned tree. */
static int stranger_acl(const plg_ctx *ctx, plg_zone zone, int access)
{
	if (zone == PLG_ZONE_EVENTS && access == MOSQ_ACL_WRITE)
		return MOSQ_ERR_ACL_DENIED; /* only the plugin publishes events */
	switch (ctx->opts.auth) {
	case PLG_AUTH_OPEN:
		return MOSQ_ERR_SUCCESS;
	case PLG_AUTH_EXTERNAL:
		return MOSQ_ERR_PLUGIN_DEFER;
	default:
		return MOSQ_ERR_ACL_DENIED;
	}
}

int plg_on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	plg_ctx *ctx = userdata;
	plg_conn *c = plg_conn_by_client(&ctx->conns, ed->client);
	plg_zone zone = plg_zone_of(ed->topic);

	(void)event;
	/* Only admitted clients are checked: a pending device is in. */
	if (c != NULL && c->kind == PLG_CONN_PENDING)
		c = plg_admit_pending(ctx, c);
	if (ed->access == MOSQ_ACL_UNSUBSCRIBE) {
		unsubscribe_twin(ctx, c, ed->topic);
		return MOSQ_ERR_SUCCESS; /* leaving is always allowed */
	}
	if (zone == PLG_ZONE_IOTHUB)
		return iothub_acl(ctx, c, ed);
	if (zone == PLG_ZONE_OTHER)
		return ctx->opts.auth == PLG_AUTH_OPEN ? MOSQ_ERR_SUCCESS : MOSQ_ERR_PLUGIN_DEFER;
	if (c != NULL && c->kind == PLG_CONN_DEVICE) {
		if (zone == PLG_ZONE_DEVICES)
			return device_devices_acl(ctx, c, ed->access, ed->topic);
		/* Open mode cannot tell devices from back ends: any local
		 * client may use the control API there (README). */
		return ctx->opts.auth == PLG_AUTH_OPEN ? stranger_acl(ctx, zone, ed->access)
		                                       : MOSQ_ERR_ACL_DENIED;
	}
	if (c != NULL && c->kind == PLG_CONN_BACKEND)
		return backend_acl(c, zone, ed->access, ed->topic);
	/* The will of a device that just disconnected (§1.4): its own
	 * telemetry topic only. */
	if (c == NULL && ed->client == ctx->gone && zone == PLG_ZONE_DEVICES &&
	    ed->access == MOSQ_ACL_WRITE)
		return plg_device_topic_of(ed->topic, ctx->gone_id) == PLG_DEVTOPIC_EVENTS
		               ? MOSQ_ERR_SUCCESS
		               : MOSQ_ERR_ACL_DENIED;
	return stranger_acl(ctx, zone, ed->access);
}
