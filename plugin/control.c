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

#include "plugin.h"
#include "twin/json.h"
#include "twin/registry.h"

#define PLG_CONTROL_TOPIC    "$CONTROL/twin/v1"
#define PLG_CONTROL_RESPONSE "$CONTROL/twin/v1/response"

/* The broker has one thread: one request may not hold it for long. */
#define PLG_CONTROL_MAX_COMMANDS 100

typedef struct command {
	const char *name;
	twin_err (*run)(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err);
} command;

/* A required string member of cmd, or TWIN_E_INVALID naming it. */
static twin_err string_arg(const cJSON *cmd, const char *name, const char **out, twin_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(cmd, name);

	if (!cJSON_IsString(v))
		return twin_error_set(err, TWIN_E_INVALID, "'%s' is missing or not a string.",
		                      name);
	*out = v->valuestring;
	return TWIN_OK;
}

static twin_err optional_string_arg(const cJSON *cmd, const char *name, const char **out,
                                    twin_error *err)
{
	*out = NULL;
	if (cJSON_GetObjectItemCaseSensitive(cmd, name) == NULL)
		return TWIN_OK;
	return string_arg(cmd, name, out, err);
}

static twin_err get_twin(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err)
{
	const char *id = NULL;
	twin_err rc = string_arg(cmd, "deviceId", &id, err);

	return rc == TWIN_OK ? twin_get(ctx->store, id, data, err) : rc;
}

/* updateTwin and replaceTwin: write, notify the device, answer the twin. */
static twin_err write_twin(plg_ctx *ctx, const cJSON *cmd, cJSON **data, int replace,
                           twin_error *err)
{
	const cJSON *twin = cJSON_GetObjectItemCaseSensitive(cmd, "twin");
	twin_write_result res = {0};
	const char *id = NULL, *etag = NULL;
	twin_err rc = string_arg(cmd, "deviceId", &id, err);

	if (rc == TWIN_OK)
		rc = optional_string_arg(cmd, "etag", &etag, err);
	if (rc == TWIN_OK && !cJSON_IsObject(twin))
		rc = twin_error_set(err, TWIN_E_INVALID, "'twin' is missing or not an object.");
	if (rc == TWIN_OK)
		rc = replace ? twin_replace(ctx->store, id, twin, etag, &res, err)
		             : twin_update(ctx->store, id, twin, etag, &res, err);
	if (rc != TWIN_OK)
		return rc;
	plg_desired_changed(ctx, id, &res);
	twin_write_result_clear(&res);
	return twin_get(ctx->store, id, data, err);
}

static twin_err update_twin(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err)
{
	return write_twin(ctx, cmd, data, 0, err);
}

static twin_err replace_twin(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err)
{
	return write_twin(ctx, cmd, data, 1, err);
}

static const command commands[] = {
        {"getTwin", get_twin},
        {"updateTwin", update_twin},
        {"replaceTwin", replace_twin},
};

static cJSON *error_object(const twin_error *e)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddNumberToObject(o, "code", twin_err_code(e->err));
	cJSON_AddStringToObject(o, "message", e->message);
	return o;
}

/* Run one command and append its response. */
static void run_command(plg_ctx *ctx, const cJSON *cmd, cJSON *responses)
{
	const cJSON *name = cJSON_GetObjectItemCaseSensitive(cmd, "command");
	const cJSON *corr = cJSON_GetObjectItemCaseSensitive(cmd, "correlationData");
	cJSON *resp = cJSON_CreateObject(), *data = NULL;
	twin_error err = {0};
	twin_err rc = TWIN_E_INVALID;
	size_t i;

	if (resp == NULL || !cJSON_AddItemToArray(responses, resp)) {
		cJSON_Delete(resp);
		return;
	}
	if (!cJSON_IsObject(cmd) || !cJSON_IsString(name)) {
		twin_error_set(&err, rc, "'command' is missing or not a string.");
	} else {
		for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
			if (strcmp(commands[i].name, name->valuestring) == 0)
				break;
		if (i == sizeof(commands) / sizeof(commands[0]))
			twin_error_set(&err, rc, "Unknown command '%.64s'.", name->valuestring);
		else
			rc = commands[i].run(ctx, cmd, &data, &err);
		cJSON_AddStringToObject(resp, "command", name->valuestring);
	}
	if (corr != NULL)
		cJSON_AddItemToObject(resp, "correlationData", cJSON_Duplicate(corr, 1));
	cJSON_AddNumberToObject(resp, "status", twin_err_status(rc));
	if (rc == TWIN_OK)
		cJSON_AddItemToObject(resp, "data", data ? data : cJSON_CreateNull());
	else
		cJSON_AddItemToObject(resp, "error", error_object(&err));
}

/* The responses to a whole request payload. */
static cJSON *handle_request(plg_ctx *ctx, const void *payload, size_t len)
{
	cJSON *req = NULL, *out = cJSON_CreateObject(), *responses;
	const cJSON *cmds;
	twin_error err = {0};
	const twin_limits *l = twin_store_limits(ctx->store);

	responses = cJSON_AddArrayToObject(out, "responses");
	if (responses == NULL)
		return out;
	if (twin_json_parse(payload ? payload : "", len, l->int_min, l->int_max, &req, &err) !=
	    TWIN_OK) {
		cJSON *bad = cJSON_CreateObject();

		cJSON_AddNumberToObject(bad, "status", 400);
		cJSON_AddItemToObject(bad, "error", error_object(&err));
		cJSON_AddItemToArray(responses, bad);
		return out;
	}
	cmds = cJSON_GetObjectItemCaseSensitive(req, "commands");
	if (!cJSON_IsArray(cmds) || cJSON_GetArraySize(cmds) > PLG_CONTROL_MAX_COMMANDS) {
		cJSON *bad = cJSON_CreateObject();

		twin_error_set(&err, TWIN_E_INVALID,
		               "'commands' must be an array of at most %d commands.",
		               PLG_CONTROL_MAX_COMMANDS);
		cJSON_AddNumberToObject(bad, "status", 400);
		cJSON_AddItemToObject(bad, "error", error_object(&err));
		cJSON_AddItemToArray(responses, bad);
	} else {
		for (const cJSON *cmd = cmds->child; cmd != NULL; cmd = cmd->next)
			run_command(ctx, cmd, responses);
	}
	cJSON_Delete(req);
	return out;
}

int plg_on_control(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_control *ed = event_data;
	plg_ctx *ctx = userdata;
	const char *client_id = mosquitto_client_id(ed->client);
	cJSON *out = handle_request(ctx, ed->payload, ed->payloadlen);
	char *text = cJSON_PrintUnformatted(out);

	(void)event;
	cJSON_Delete(out);
	if (text == NULL || client_id == NULL) {
		free(text);
		return MOSQ_ERR_SUCCESS;
	}
	plg_send_after_commit(ctx, client_id, PLG_CONTROL_RESPONSE, ed->qos, text, strlen(text));
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
