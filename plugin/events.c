/*
 * events.c - the event stream, its replay and its retention (DESIGN.md §6,
 * PROTOCOL.md §9).
 *
 * The store writes a change log entry with every change (twin/changes.h);
 * here the entries of each committed batch are published, after the
 * batch's replies, to $twin/events/{opType}/{deviceId}. These are the only
 * publishes the plugin fans out to subscribers: only back ends holding
 * serviceConnect may subscribe (acl.c), and the body is the entry itself,
 * so a subscriber that misses some can fetch them with getChanges.
 *
 * Retention trims the oldest entries in slices of PLG_TRIM_SLICE per
 * batch, so a large backlog (after lowering the limits) never stalls the
 * broker.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "control.h"
#include "twin/changes.h"
#include "twin/doc.h"

#define PLG_EVENTS_PREFIX "$twin/events/"
#define PLG_TRIM_SLICE    1000
#define PLG_TRIM_EVERY    10000000LL /* ticks: check retention once a second */

/* deviceId may hold '+' and '#', which a topic name may not: they and '%'
 * are percent-encoded. Other legal id characters are legal in topics. */
static void event_topic(char *out, size_t size, const twin_change *c)
{
	size_t n = (size_t)snprintf(out, size, PLG_EVENTS_PREFIX "%s/", twin_op_name(c->op));

	for (const char *p = c->device_id; *p && n + 4 < size; p++) {
		if (*p == '%' || *p == '+' || *p == '#')
			n += (size_t)snprintf(out + n, size - n, "%%%02X", (unsigned char)*p);
		else
			out[n++] = *p;
	}
	out[n] = '\0';
}

static int add_prop(mosquitto_property **props, const char *name, const char *value)
{
	return mosquitto_property_add_string_pair(props, MQTT_PROP_USER_PROPERTY, name, value) ==
	       MOSQ_ERR_SUCCESS;
}

/* The §9 envelope as MQTT v5 user properties (v3 subscribers get none). */
static mosquitto_property *event_props(const plg_ctx *ctx, const twin_change *c)
{
	mosquitto_property *props = NULL;
	char when[TWIN_TIMESTAMP_MAX], seq[24], actor[1100]; /* CHANGES_ACTOR_MAX fits */
	int ok;

	twin_timestamp_format(c->ticks, when);
	snprintf(seq, sizeof(seq), "%" PRIu64, c->seq);
	snprintf(actor, sizeof(actor), "%.*s", (int)c->actor_len, c->actor);
	ok = add_prop(&props, "opType", twin_op_name(c->op)) &&
	     add_prop(&props, "deviceId", c->device_id) &&
	     add_prop(&props, "iothub-message-schema", twin_op_schema(c->op)) &&
	     add_prop(&props, "iothub-message-source", twin_op_source(c->op)) &&
	     add_prop(&props, "operationTimestamp", when) &&
	     add_prop(&props, "sequenceNumber", seq) && add_prop(&props, "actor", actor) &&
	     (ctx->opts.hostname == NULL || add_prop(&props, "hubName", ctx->opts.hostname));
	if (!ok)
		mosquitto_property_free_all(&props);
	return props;
}

static void publish_event(void *arg, const twin_change *c)
{
	plg_ctx *ctx = arg;
	char topic[sizeof(PLG_EVENTS_PREFIX) + 32 + 3 * TWIN_DEVICE_ID_MAX];
	mosquitto_property *props = event_props(ctx, c);

	event_topic(topic, sizeof(topic), c);
	/* QoS 1 so a subscriber's session holds events while it is offline. */
	if (mosquitto_broker_publish_copy(NULL, topic, (int)c->body_len, c->body, 1, false,
	                                  props) != MOSQ_ERR_SUCCESS) {
		mosquitto_property_free_all(&props);
		mosquitto_log_printf(MOSQ_LOG_WARNING,
		                     PLG_LOG_PREFIX "event %" PRIu64
		                                    " not published (out of memory); "
		                                    "getChanges still has it.",
		                     c->seq);
	}
}

void plg_events_publish(plg_ctx *ctx)
{
	twin_changes_drain(ctx->store, publish_event, ctx);
}

void plg_events_trim(plg_ctx *ctx)
{
	int64_t now = twin_store_now(ctx->store);
	size_t deleted = 0;
	twin_error err;

	if (now < ctx->next_trim)
		return;
	if (twin_changes_trim(ctx->store, ctx->opts.changes_max_count,
	                      ctx->opts.changes_max_age * 10000000LL, PLG_TRIM_SLICE, &deleted,
	                      &err) != TWIN_OK)
		mosquitto_log_printf(MOSQ_LOG_ERR, PLG_LOG_PREFIX "change log retention: %s",
		                     err.message);
	/* A full slice means a backlog: go on at the next batch. */
	ctx->next_trim = deleted == PLG_TRIM_SLICE ? 0 : now + PLG_TRIM_EVERY;
}

/* An optional integer member of cmd within [min, max], else *out = dflt. */
static twin_err int_arg(const cJSON *cmd, const char *name, double min, double max, double dflt,
                        double *out, twin_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(cmd, name);

	*out = dflt;
	if (v == NULL)
		return TWIN_OK;
	/* The range first: casting a double beyond long long is undefined. */
	if (!cJSON_IsNumber(v) || v->valuedouble < min || v->valuedouble > max ||
	    v->valuedouble != (double)(long long)v->valuedouble)
		return twin_error_set(err, TWIN_E_INVALID,
		                      "'%s' must be an integer from %.0f to %.0f.", name, min, max);
	*out = v->valuedouble;
	return TWIN_OK;
}

/* getChanges {fromSequence?, limit?, deviceId?, opType?}: replay. */
twin_err plg_get_changes_command(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err)
{
	const cJSON *device = cJSON_GetObjectItemCaseSensitive(cmd, "deviceId");
	const cJSON *op_name = cJSON_GetObjectItemCaseSensitive(cmd, "opType");
	double from, limit;
	twin_op op = 0;
	twin_err rc = int_arg(cmd, "fromSequence", 1, 9007199254740992.0, 1, &from, err);

	if (rc == TWIN_OK)
		rc = int_arg(cmd, "limit", 1, TWIN_CHANGES_READ_MAX, 100, &limit, err);
	if (rc == TWIN_OK && device != NULL && !cJSON_IsString(device))
		rc = twin_error_set(err, TWIN_E_INVALID, "'deviceId' is not a string.");
	if (rc == TWIN_OK && op_name != NULL &&
	    (!cJSON_IsString(op_name) || (op = twin_op_parse(op_name->valuestring)) == 0))
		rc = twin_error_set(err, TWIN_E_INVALID, "'opType' is not an operation type.");
	if (rc != TWIN_OK)
		return rc;
	return twin_changes_read(ctx->store, (uint64_t)from, (size_t)limit,
	                         device ? device->valuestring : NULL, op, data, err);
}
