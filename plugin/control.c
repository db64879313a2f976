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
	unsigned right; /* TWIN_RIGHT_* the caller needs (PROTOCOL.md §7) */
	int status;     /* on success: 200, or 204 without data */
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

/* The identity object of id as data. */
static twin_err identity_data(const twin_identity *id, cJSON **data, twin_error *err)
{
	*data = twin_identity_to_json(id);
	return *data != NULL ? TWIN_OK : twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
}

/* An optional object member of cmd, or TWIN_E_INVALID naming it. */
static twin_err optional_object_arg(const cJSON *cmd, const char *name, const cJSON **out,
                                    twin_error *err)
{
	*out = cJSON_GetObjectItemCaseSensitive(cmd, name);
	if (*out != NULL && !cJSON_IsObject(*out))
		return twin_error_set(err, TWIN_E_INVALID, "'%s' is not an object.", name);
	return TWIN_OK;
}

static twin_err create_device(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err)
{
	const cJSON *spec = NULL;
	const char *id = NULL;
	twin_identity created;
	twin_err rc = string_arg(cmd, "deviceId", &id, err);

	if (rc == TWIN_OK)
		rc = optional_object_arg(cmd, "device", &spec, err);
	if (rc == TWIN_OK)
		rc = twin_device_create(ctx->store, id, spec, &created, err);
	return rc == TWIN_OK ? identity_data(&created, data, err) : rc;
}

static twin_err get_device(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err)
{
	const char *id = NULL;
	twin_identity found;
	twin_err rc = string_arg(cmd, "deviceId", &id, err);

	if (rc == TWIN_OK)
		rc = twin_device_get(ctx->store, id, &found, err);
	return rc == TWIN_OK ? identity_data(&found, data, err) : rc;
}

/* Non-zero if the update took a device's right to be connected away. */
static int access_changed(const twin_identity *a, const twin_identity *b)
{
	return (a->enabled && !b->enabled) || a->auth_type != b->auth_type ||
	       strcmp(a->primary_key, b->primary_key) != 0 ||
	       strcmp(a->secondary_key, b->secondary_key) != 0 ||
	       strcmp(a->primary_thumbprint, b->primary_thumbprint) != 0 ||
	       strcmp(a->secondary_thumbprint, b->secondary_thumbprint) != 0;
}

static twin_err update_device(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err)
{
	const cJSON *spec = NULL;
	const char *id = NULL, *etag = NULL;
	twin_identity before, after;
	twin_err rc = string_arg(cmd, "deviceId", &id, err);

	if (rc == TWIN_OK)
		rc = optional_string_arg(cmd, "etag", &etag, err);
	if (rc == TWIN_OK && (rc = optional_object_arg(cmd, "device", &spec, err)) == TWIN_OK &&
	    spec == NULL)
		rc = twin_error_set(err, TWIN_E_INVALID, "'device' is missing.");
	if (rc == TWIN_OK)
		rc = twin_device_get(ctx->store, id, &before, err);
	if (rc == TWIN_OK)
		rc = twin_device_update(ctx->store, id, spec, etag, &after, err);
	if (rc != TWIN_OK)
		return rc;
	/* PROTOCOL.md §7: disabling or changing the credentials closes the
	 * live connection; the device must prove itself again. */
	if (access_changed(&before, &after))
		plg_kick_after_commit(ctx, id);
	return identity_data(&after, data, err);
}

static twin_err delete_device(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err)
{
	const char *id = NULL, *etag = NULL;
	twin_err rc = string_arg(cmd, "deviceId", &id, err);

	(void)data;
	if (rc == TWIN_OK)
		rc = optional_string_arg(cmd, "etag", &etag, err);
	if (rc == TWIN_OK)
		rc = twin_device_delete(ctx->store, id, etag, err);
	if (rc == TWIN_OK)
		plg_kick_after_commit(ctx, id);
	return rc;
}

static const command commands[] = {
        {"createDevice", TWIN_RIGHT_REGISTRY_WRITE, 200, create_device},
        {"getDevice", TWIN_RIGHT_REGISTRY_READ, 200, get_device},
        {"updateDevice", TWIN_RIGHT_REGISTRY_WRITE, 200, update_device},
        {"deleteDevice", TWIN_RIGHT_REGISTRY_WRITE, 204, delete_device},
        {"getTwin", TWIN_RIGHT_SERVICE_CONNECT, 200, get_twin},
        {"updateTwin", TWIN_RIGHT_SERVICE_CONNECT, 200, update_twin},
        {"replaceTwin", TWIN_RIGHT_SERVICE_CONNECT, 200, replace_twin},
};

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
	size_t i = 0;

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
		else if ((commands[i].right & rights) == 0)
			rc = twin_error_set(&err, TWIN_E_UNAUTHORIZED,
			                    "The policy does not grant the right this "
			                    "command needs.");
		else
			rc = commands[i].run(ctx, cmd, &data, &err);
		cJSON_AddStringToObject(resp, "command", name->valuestring);
	}
	if (corr != NULL)
		cJSON_AddItemToObject(resp, "correlationData", cJSON_Duplicate(corr, 1));
	if (rc != TWIN_OK) {
		cJSON_AddNumberToObject(resp, "status", twin_err_status(rc));
		cJSON_AddItemToObject(resp, "error", error_object(&err));
	} else if (commands[i].status == 204) {
		cJSON_AddNumberToObject(resp, "status", 204);
		cJSON_Delete(data);
	} else {
		cJSON_AddNumberToObject(resp, "status", commands[i].status);
		cJSON_AddItemToObject(resp, "data", data ? data : cJSON_CreateNull());
	}
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
			run_command(ctx, cmd, rights, responses);
	}
	cJSON_Delete(req);
	return out;
}

int plg_on_control(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_control *ed = event_data;
	plg_ctx *ctx = userdata;
	const char *client_id = mosquitto_client_id(ed->client);
	cJSON *out = handle_request(ctx, ed->payload, ed->payloadlen,
	                            plg_client_rights(ctx, ed->client));
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
