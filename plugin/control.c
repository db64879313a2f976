/*
 * control.c - the back-end control API on $CONTROL/twin/v1 (DESIGN.md §6).
 *
 * Shaped like Mosquitto's dynamic-security control API, with two
 * differences: the response goes only to the requesting client (a targeted
 * publish on $CONTROL/twin/v1/response), and it leaves only after the batch
 * holding its writes is committed. The callback always returns success
 * (anything else disconnects the client); errors live in the payload.
 *
 * Request:  {"commands":[{"command":"updateTwin","deviceId":"d1",
 *             "twin":{…},"etag":"…","correlationData":…}, …]}
 * Response: {"responses":[{"command":…,"correlationData":…,"status":200,
 *             "data":…} | {…,"status":4xx,"error":{"code":…,"message":…}}]}
 */
#include <stdlib.h>
#include <string.h>

#include "control.h"
#include "topic.h"
#include "twin/changes.h"
#include "twin/json.h"

#define PLG_CONTROL_TOPIC    "$CONTROL/twin/v1"
#define PLG_CONTROL_RESPONSE "$CONTROL/twin/v1/response"

/* The broker has one thread: one request may not hold it for long. */
#define PLG_CONTROL_MAX_COMMANDS 100
#define PLG_CONTROL_MAX_BYTES    (512 * 1024) /* project decision */

static cJSON *error_object(const twin_error *e)
{
	cJSON *o = cJSON_CreateObject();

	if (!cJSON_AddNumberToObject(o, "code", twin_err_code(e->err)) ||
	    !cJSON_AddStringToObject(o, "message", e->message)) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

/* Add item as member name of obj (taking it); 0 when memory ran out. */
static int add(cJSON *obj, const char *name, cJSON *item)
{
	if (item != NULL && cJSON_AddItemToObject(obj, name, item))
		return 1;
	cJSON_Delete(item);
	return 0;
}

/* Run one command for a caller holding rights and append its response.
 * 0 when memory ran out for the response: it may be incomplete. */
static int run_command(plg_ctx *ctx, const cJSON *cmd, unsigned rights, cJSON *responses)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(cmd, "command");
	const cJSON *corr = cJSON_GetObjectItemCaseSensitive(cmd, "correlationData");
	cJSON *resp = cJSON_CreateObject(), *data = NULL;
	twin_error err = {0};
	twin_err rc = TWIN_E_INVALID;
	const plg_command *c = NULL;

	int ok = 1;

	if (resp == NULL || !cJSON_AddItemToArray(responses, resp)) {
		cJSON_Delete(resp);
		return 0;
	}
	if (!cJSON_IsObject(cmd) || !cJSON_IsString(name)) {
		twin_error_set(&err, rc, "'command' is missing or not a string.");
	} else {
		c = plg_command_find(name->valuestring);
		if (c == NULL)
			twin_error_set(&err, rc, "Unknown command '%.64s'.", name->valuestring);
		else if ((c->right & rights) == 0)
			rc = twin_error_set(&err, TWIN_E_UNAUTHORIZED,
			                    "The policy does not grant the right this "
			                    "command needs.");
		else {
			ctx->control_index = cJSON_GetArraySize(responses) - 1;
			rc = c->run(ctx, cmd, &data, &err);
			/* A command may fail after it wrote (building its answer, say):
			 * a 500 must mean "not applied", so the batch goes too. */
			if (rc == TWIN_E_NOMEM || rc == TWIN_E_STORAGE)
				twin_store_fail(ctx->store);
		}
		ok = add(resp, "command", cJSON_CreateString(name->valuestring));
	}
	if (corr != NULL)
		ok &= add(resp, "correlationData", cJSON_Duplicate(corr, 1));
	if (rc != TWIN_OK) {
		ok &= add(resp, "status", cJSON_CreateNumber(twin_err_status(rc)));
		ok &= add(resp, "error", error_object(&err));
	} else if (c->status == 204) {
		ok &= add(resp, "status", cJSON_CreateNumber(204));
		cJSON_Delete(data);
	} else {
		ok &= add(resp, "status", cJSON_CreateNumber(c->status));
		ok &= add(resp, "data", data ? data : cJSON_CreateNull());
	}
	return ok;
}

/* A response for the request as a whole (no command to name). 0 when
 * memory ran out. */
static int request_error(cJSON *responses, const twin_error *err)
{
	cJSON *bad = cJSON_CreateObject();

	if (bad == NULL || !cJSON_AddItemToArray(responses, bad)) {
		cJSON_Delete(bad);
		return 0;
	}
	return add(bad, "status", cJSON_CreateNumber(twin_err_status(err->err))) &&
	       add(bad, "error", error_object(err));
}

/* The responses to a whole request payload; NULL when memory ran out for
 * them (the commands that ran may have written: the caller fails the
 * batch). */
static cJSON *handle_request(plg_ctx *ctx, const void *payload, size_t len, unsigned rights)
{
	cJSON *req = NULL, *out = cJSON_CreateObject(), *responses;
	const cJSON *cmds;
	twin_error err = {0};
	const twin_limits *l = twin_store_limits(ctx->store);
	int ok = 1;

	responses = cJSON_AddArrayToObject(out, "responses");
	if (responses == NULL) {
		cJSON_Delete(out);
		return NULL;
	}
	if (len > PLG_CONTROL_MAX_BYTES) {
		twin_error_set(&err, TWIN_E_TOO_LARGE,
		               "The request is %zu bytes; at most %d are accepted.", len,
		               PLG_CONTROL_MAX_BYTES);
		ok = request_error(responses, &err);
	} else if (twin_json_parse(payload ? payload : "", len, l->int_min, l->int_max, &req,
	                           &err) != TWIN_OK) {
		/* Out of memory is no client error: only the batch can say it. */
		ok = err.err != TWIN_E_NOMEM && request_error(responses, &err);
	} else {
		cmds = cJSON_GetObjectItemCaseSensitive(req, "commands");
		if (!cJSON_IsArray(cmds) || cJSON_GetArraySize(cmds) > PLG_CONTROL_MAX_COMMANDS) {
			twin_error_set(&err, TWIN_E_INVALID,
			               "'commands' must be an array of at most %d commands.",
			               PLG_CONTROL_MAX_COMMANDS);
			ok = request_error(responses, &err);
		} else {
			for (const cJSON *cmd = cmds->child; cmd != NULL; cmd = cmd->next)
				ok &= run_command(ctx, cmd, rights, responses);
		}
	}
	cJSON_Delete(req);
	if (!ok) {
		cJSON_Delete(out);
		return NULL;
	}
	return out;
}

/* MQTT v5 request/response: a request's response topic (when it is a valid
 * topic to publish on) replaces the default one, and its correlation data
 * goes back with the response. The response still goes only to the
 * requester, whatever topic it names. Topics in the plugin's own
 * namespaces are not taken: what arrives on $iothub/ is device traffic
 * and on $twin/ the event stream, and a control response there would pass
 * for either. */
static const char *response_topic(const struct mosquitto_evt_control *ed, char **owned, void **corr,
                                  uint16_t *corr_len)
{
	*owned = NULL;
	*corr = NULL;
	*corr_len = 0;
	mosquitto_property_read_binary(ed->properties, MQTT_PROP_CORRELATION_DATA, corr, corr_len,
	                               false);
	if (mosquitto_property_read_string(ed->properties, MQTT_PROP_RESPONSE_TOPIC, owned,
	                                   false) != NULL &&
	    mosquitto_pub_topic_check(*owned) == MOSQ_ERR_SUCCESS &&
	    strncmp(*owned, PLG_IOTHUB_PREFIX, strlen(PLG_IOTHUB_PREFIX)) != 0 &&
	    strncmp(*owned, "$twin/", 6) != 0)
		return *owned;
	return PLG_CONTROL_RESPONSE;
}

int plg_on_control(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_control *ed = event_data;
	plg_ctx *ctx = userdata;
	const char *client_id = mosquitto_client_id(ed->client), *topic;
	char *text = NULL, *owned;
	uint16_t corr_len;
	void *corr;
	cJSON *out;

	(void)event;
	/* The change log records who wrote: the policy (its name is the
	 * username of a back end in sas mode), else the MQTT client. */
	if (ctx->opts.auth == PLG_AUTH_SAS)
		twin_store_set_actor(ctx->store, "policy", mosquitto_client_username(ed->client),
		                     NULL);
	else
		twin_store_set_actor(ctx->store, "client", client_id, NULL);
	out = handle_request(ctx, ed->payload, ed->payloadlen, plg_client_rights(ctx, ed->client));
	twin_store_set_actor(ctx->store, NULL, NULL, NULL);
	if (client_id == NULL || out == NULL) {
		plg_query_discard(ctx);
		if (out == NULL)
			plg_lost(ctx, "the control response to", client_id ? client_id : "?");
		cJSON_Delete(out);
		return MOSQ_ERR_SUCCESS;
	}
	topic = response_topic(ed, &owned, &corr, &corr_len);
	if (plg_query_collecting(ctx)) {
		/* Queries answer after the commit: the response waits for them. */
		plg_query_defer(ctx, out, client_id, topic, ed->qos, corr, corr_len);
	} else {
		text = twin_json_print(out);
		cJSON_Delete(out);
		if (text != NULL)
			plg_send_after_commit(ctx, client_id, topic, ed->qos, text, strlen(text),
			                      corr, corr_len);
		else
			plg_lost(ctx, "the control response to", client_id);
	}
	free(owned);
	free(corr);
	return MOSQ_ERR_SUCCESS;
}

int plg_control_register(plg_ctx *ctx)
{
	return mosquitto_callback_register(ctx->pid, MOSQ_EVT_CONTROL, plg_on_control,
	                                   PLG_CONTROL_TOPIC, ctx);
}

void plg_control_unregister(plg_ctx *ctx)
{
	mosquitto_callback_unregister(ctx->pid, MOSQ_EVT_CONTROL, plg_on_control,
	                              PLG_CONTROL_TOPIC);
}
