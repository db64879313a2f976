/*
 * control.h - the control API's commands, shared by the dispatcher
 * (control.c) and the commands (control_commands.c).
 */
#ifndef TWIN_PLUGIN_CONTROL_H
#define TWIN_PLUGIN_CONTROL_H

#include <cjson/cJSON.h>

#include "plugin.h"

typedef struct plg_command {
	const char *name;
	unsigned right; /* TWIN_RIGHT_* the caller needs (PROTOCOL.md §7) */
	int status;     /* on success: 200, or 204 without data */
	/* Run cmd; on TWIN_OK *data (owned by the caller) is the response data,
	 * NULL for none; otherwise err says why. */
	twin_err (*run)(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err);
} plg_command;

/* The `query` command (query.c). */
twin_err plg_query_command(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err);

/* The `getChanges` command (events.c). */
twin_err plg_get_changes_command(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err);

/* The job commands (jobs.c). */
twin_err plg_create_job_command(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err);
twin_err plg_get_job_command(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err);
twin_err plg_cancel_job_command(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err);
twin_err plg_list_jobs_command(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err);

/* The command called name, or NULL. */
const plg_command *plg_command_find(const char *name);

#endif
