/*
 * device_api.c - device twin requests over MQTT (PROTOCOL.md §2).
 *
 * MESSAGE runs after the ACL WRITE check and before the broker stores and
 * fans out the message. A twin request is consumed by rewriting its topic,
 * in place, to a sink topic nobody may subscribe to, and clearing retain:
 * there is no "consume" return code, and any other non-success return
 * disconnects the client (DESIGN.md §2). The topic pointer itself is never
 * replaced, because 2.0.11 and later versions disagree on who frees it.
 *
 * The device's identity is its connection, never the topic.
 */
#include <string.h>

#include "plugin.h"
#include "topic.h"

/* Shorter than any $iothub/ topic, and denied to every subscriber (acl). */
#define PLG_SINK_TOPIC "$iothub/"

static void consume(struct mosquitto_evt_message *ed)
{
	memcpy(ed->topic, PLG_SINK_TOPIC, sizeof(PLG_SINK_TOPIC));
	ed->retain = false;
}

static void handle_get(plg_ctx *ctx, plg_conn *c, const plg_topic *t)
{
	twin_error err;
	int64_t desired_version = 0;
	size_t len = 0;
	char *body = NULL;

	if (twin_get_device_body(ctx->store, c->device_id, &body, &len, &desired_version, &err) !=
	    TWIN_OK) {
		plg_reply_error(ctx, c, t->rid, t->rid_len, &err);
		return;
	}
	plg_reply_get(ctx, c, t->rid, t->rid_len, desired_version, body, len);
}

static void handle_patch(plg_ctx *ctx, plg_conn *c, const plg_topic *t, const void *payload,
                         size_t len)
{
	twin_write_result res = {0};
	twin_error err;

	if (twin_patch_reported(ctx->store, c->device_id, payload ? payload : "", len, &res,
	                        &err) != TWIN_OK) {
		plg_reply_error(ctx, c, t->rid, t->rid_len, &err);
		return;
	}
	plg_reply(ctx, c, t->rid, t->rid_len, 204, res.reported_version, NULL, 0);
	twin_write_result_clear(&res);
}

/* Telemetry and C2D (§11): never retained; a device publishing on any
 * devices/ topic but its own telemetry is disconnected. */
static int other_message(plg_ctx *ctx, plg_conn *c, struct mosquitto_evt_message *ed)
{
	if (plg_zone_of(ed->topic) == PLG_ZONE_DEVICES) {
		if (c != NULL &&
		    plg_device_topic_of(ed->topic, c->device_id) != PLG_DEVTOPIC_EVENTS) {
			mosquitto_log_printf(MOSQ_LOG_NOTICE,
			                     PLG_LOG_PREFIX
			                     "closing device %s: it published on %s, not its "
			                     "own telemetry topic.",
			                     c->device_id, ed->topic);
			/* Not ACL_DENIED: 2.0.11 would only drop the message. */
			return MOSQ_ERR_AUTH;
		}
		ed->retain = false;
	}
	if (c != NULL)
		plg_activity(ctx, c);
	return MOSQ_ERR_SUCCESS;
}

/* plugin_opt_device_rate_limit: a token bucket per connection, holding up
 * to device_rate_burst requests (default: one second's worth) and refilled
 * at device_rate_limit per second. Non-zero when c's request must be
 * refused with 429 (PROTOCOL.md §2.4); the request is then not executed. */
static int throttled(plg_ctx *ctx, plg_conn *c)
{
	double rate = (double)ctx->opts.device_rate;
	double burst = ctx->opts.device_burst ? (double)ctx->opts.device_burst : rate;
	int64_t now;

	if (rate == 0)
		return 0;
	now = twin_store_now(ctx->store);
	if (c->tokens_at == 0)
		c->tokens = burst; /* a new connection starts with a full bucket */
	else
		c->tokens += (double)(now - c->tokens_at) * rate / 1e7;
	if (c->tokens > burst)
		c->tokens = burst;
	c->tokens_at = now;
	if (c->tokens < 1)
		return 1;
	c->tokens -= 1;
	return 0;
}

int plg_on_message(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_message *ed = event_data;
	plg_ctx *ctx = userdata;
	plg_conn *c = plg_conn_by_client(&ctx->conns, ed->client);
	twin_error err;
	plg_topic t;

	(void)event;
	if (c != NULL && c->kind != PLG_CONN_DEVICE)
		c = NULL; /* back ends and clients still pending are no devices here */
	plg_topic_parse(ed->topic, &t);
	if (t.kind == PLG_TOPIC_NOT_IOTHUB)
		return other_message(ctx, c, ed);
	/* QoS 2 on the dialect closes the connection (§2.2), as does any
	 * $iothub/ topic outside the twin API, and any request from a client
	 * that is not a device. */
	if (ed->qos > 1 || t.kind == PLG_TOPIC_IOTHUB_OTHER || c == NULL ||
	    !plg_conn_is_live(&ctx->conns, c))
		return MOSQ_ERR_PROTOCOL;
	consume(ed);
	plg_activity(ctx, c);
	if (t.rid == NULL || t.rid_len > PLG_RID_MAX) {
		/* Not executed (project decision); answered only for known
		 * operations, with an empty $rid. A longer $rid could not even
		 * be echoed: the reply topic would pass MQTT's 65,535 bytes. */
		if (t.kind != PLG_TOPIC_TWIN_UNKNOWN) {
			if (t.rid == NULL)
				twin_error_set(&err, TWIN_E_INVALID,
				               "The topic has no $rid parameter.");
			else
				twin_error_set(
				        &err, TWIN_E_INVALID,
				        "The $rid is %zu bytes long; at most %d are accepted.",
				        t.rid_len, PLG_RID_MAX);
			plg_reply_error(ctx, c, NULL, 0, &err);
		}
		return MOSQ_ERR_SUCCESS;
	}
	if (throttled(ctx, c)) {
		twin_error_set(&err, TWIN_E_THROTTLED,
		               "Rate limit of %llu requests per second exceeded; retry later.",
		               ctx->opts.device_rate);
		plg_reply_error(ctx, c, t.rid, t.rid_len, &err);
	} else if (t.kind == PLG_TOPIC_TWIN_GET)
		handle_get(ctx, c, &t);
	else if (t.kind == PLG_TOPIC_TWIN_PATCH)
		handle_patch(ctx, c, &t, ed->payload, ed->payloadlen);
	else {
		/* Includes devices publishing on reply and notification topics:
		 * only the plugin publishes there (§2.2). */
		twin_error_set(&err, TWIN_E_NO_OPERATION, "Unknown twin operation topic.");
		plg_reply_error(ctx, c, t.rid, t.rid_len, &err);
	}
	return MOSQ_ERR_SUCCESS;
}
