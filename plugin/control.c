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

	cJSON_AddNumberToObject(o, "code", twin_err_code(e->err));
	cJSON_AddStringToObject(o, "message", e->message);
	return o;
}

/* Run one command for a caller holding rights and append its response. */
static void run_command(plg_ctx *ctx, const cJSON *cmd, unsigned rights, cJSON *responses)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(cmd, "command");
	const cJSON *corr = cJSON_GetObjectItemCaseSensitive(cmd, "correlationData");
	cJSON *resp = cJSON_CreateObject(), *data = NULL;
	twin_error err = {0};
	twin_err rc = TWIN_E_INVALID;
	const plg_command *c = NULL;

	if (resp == NULL || !cJSON_AddItemToArray(responses, resp)) {
		cJSON_Delete(resp);
		return;
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
		}
		cJSON_AddStringToObject(resp, "command", name->valuestring);
	}
	if (corr != NULL)
		cJSON_AddItemToObject(resp, "correlationData", cJSON_Duplicate(corr, 1));
	if (rc != TWIN_OK) {
		cJSON_AddNumberToObject(resp, "status", twin_err_status(rc));
		cJSON_AddItemToObject(resp, "error", error_object(&err));
	} else if (c->status == 204) {
		cJSON_AddNumberToObject(resp, "status", 204);
		cJSON_Delete(data);
	} else {
		cJSON_AddNumberToObject(resp, "status", c->status);
		cJSON_AddItemToObject(resp, "data", data ? data : cJSON_CreateNull());
	}
}

/* The responses to a whole request payload. */
/* A response for the request as a whole (no command to name). */
static void request_error(cJSON *responses, const twin_error *err)
{
	cJSON *bad = cJSON_CreateObject();

	cJSON_AddNumberToObject(bad, "status", twin_err_status(err->err));
	cJSON_AddItemToObject(bad, "error", error_object(err));
	cJSON_AddItemToArray(responses, bad);
}

/* The responses to a whole request payload. */
static cJSON *handle_request(plg_ctx *ctx, const void *payload, size_t len, unsigned rights)
{
	cJSON *req = NULL, *out = cJSON_CreateObject(), *responses;
	const cJSON *cmds;
	twin_error err = {0};
	const twin_limits *l = twin_store_limits(ctx->store);

	responses = cJSON_AddArrayToObject(out, "responses");
	if (responses == NULL)
		return out;
	if (len > PLG_CONTROL_MAX_BYTES) {
		twin_error_set(&err, TWIN_E_TOO_LARGE,
		               "The request is %zu bytes; at most %d are accepted.", len,
		               PLG_CONTROL_MAX_BYTES);
		request_error(responses, &err);
		return out;
	}
	if (twin_json_parse(payload ? payload : "", len, l->int_min, l->int_max, &req, &err) !=
	    TWIN_OK) {
		request_error(responses, &err);
		return out;
	}
	cmds = cJSON_GetObjectItemCaseSensitive(req, "commands");
	if (!cJSON_IsArray(cmds) || cJSON_GetArraySize(cmds) > PLG_CONTROL_MAX_COMMANDS) {
		twin_error_set(&err, TWIN_E_INVALID,
		               "'commands' must be an array of at most %d commands.",
		               PLG_CONTROL_MAX_COMMANDS);
		request_error(responses, &err);
	} else {
		for (const cJSON *cmd = cmds->child; cmd != NULL; cmd = cmd->next)
			run_command(ctx, cmd, rights, responses);
	}
	cJSON_Delete(req);
	return out;
}

/* MQTT v5 request/response: a request's response topic (when it is a valid
 * topic to publish on) replaces the default one, and its correlation data
 * goes back with the response. The response still goes only to the
 * requester, whatever topic it names. */
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
	    mosquitto_pub_topic_check(*owned) == MOSQ_ERR_SUCCESS)
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
	if (client_id == NULL) {
		plg_query_discard(ctx);
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
