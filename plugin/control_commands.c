/*
 * control_commands.c - the commands of the control API (DESIGN.md §6,
 * PROTOCOL.md §7), named after IoT Hub's REST operations. Each reads its
 * arguments from the command object, calls the store, and leaves the
 * effects on devices (notifications, disconnects) to the outbox, which
 * carries them out after the commit.
 */
#include <string.h>

#include "control.h"
#include "twin/changes.h"
#include "twin/registry.h"

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

/* createDevice: the identity, and with "twin" its initial tags and
 * desired properties. A bad initial twin undoes the create inside the
 * batch, so a refused command leaves nothing behind. */
static twin_err create_device(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err)
{
	const cJSON *spec = NULL, *twin = NULL;
	twin_write_result res = {0};
	const char *id = NULL;
	twin_identity created;
	twin_changes_mark mark = twin_changes_mark_get(ctx->store);
	twin_err rc = string_arg(cmd, "deviceId", &id, err);

	if (rc == TWIN_OK)
		rc = optional_object_arg(cmd, "device", &spec, err);
	if (rc == TWIN_OK)
		rc = optional_object_arg(cmd, "twin", &twin, err);
	if (rc == TWIN_OK)
		rc = twin_device_create(ctx->store, id, spec, &created, err);
	if (rc == TWIN_OK && twin != NULL) {
		rc = twin_update(ctx->store, id, twin, NULL, &res, err);
		twin_write_result_clear(&res);
		if (rc != TWIN_OK) {
			/* Undone inside the batch, log entries included. */
			twin_device_delete(ctx->store, id, NULL, NULL);
			twin_changes_rollback(ctx->store, mark, NULL);
		}
	}
	return rc == TWIN_OK ? identity_data(&created, data, err) : rc;
}

/* listDevices: one page, maxCount (default TWIN_LIST_DEFAULT) and an
 * optional continuationToken from the previous page. */
static twin_err list_devices(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err)
{
	const cJSON *max = cJSON_GetObjectItemCaseSensitive(cmd, "maxCount");
	const char *token = NULL;
	double n = TWIN_LIST_DEFAULT;
	twin_err rc = optional_string_arg(cmd, "continuationToken", &token, err);

	if (rc != TWIN_OK)
		return rc;
	if (max != NULL) {
		n = cJSON_IsNumber(max) ? max->valuedouble : 0;
		/* The range first: casting a double beyond long is undefined. */
		if (n < 1 || n > TWIN_LIST_MAX || n != (double)(long)n)
			return twin_error_set(err, TWIN_E_INVALID,
			                      "'maxCount' must be an integer from 1 to %d.",
			                      TWIN_LIST_MAX);
	}
	return twin_device_list(ctx->store, token, (size_t)n, data, err);
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

static const plg_command commands[] = {
        {"createDevice", TWIN_RIGHT_REGISTRY_WRITE, 200, create_device},
        {"getDevice", TWIN_RIGHT_REGISTRY_READ, 200, get_device},
        {"listDevices", TWIN_RIGHT_REGISTRY_READ, 200, list_devices},
        {"updateDevice", TWIN_RIGHT_REGISTRY_WRITE, 200, update_device},
        {"deleteDevice", TWIN_RIGHT_REGISTRY_WRITE, 204, delete_device},
        {"getTwin", TWIN_RIGHT_SERVICE_CONNECT, 200, get_twin},
        {"updateTwin", TWIN_RIGHT_SERVICE_CONNECT, 200, update_twin},
        {"replaceTwin", TWIN_RIGHT_SERVICE_CONNECT, 200, replace_twin},
        {"query", TWIN_RIGHT_SERVICE_CONNECT, 200, plg_query_command},
        {"getChanges", TWIN_RIGHT_SERVICE_CONNECT, 200, plg_get_changes_command},
        {"createJob", TWIN_RIGHT_SERVICE_CONNECT, 200, plg_create_job_command},
        {"getJob", TWIN_RIGHT_SERVICE_CONNECT, 200, plg_get_job_command},
        {"cancelJob", TWIN_RIGHT_SERVICE_CONNECT, 200, plg_cancel_job_command},
        {"listJobs", TWIN_RIGHT_SERVICE_CONNECT, 200, plg_list_jobs_command},
};

const plg_command *plg_command_find(const char *name)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}
