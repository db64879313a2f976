/*
 * entry.c - the three plugin entry points: version, init, cleanup.
 *
 * Init refuses two configurations it cannot serve correctly (DESIGN.md §2):
 * per_listener_settings true, where Mosquitto 2.0.11 never fires TICK and
 * group commit would never commit; and a second init of this copy of the
 * library (the plugin named twice), which would open the database twice.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plugin.h"
#include "twin/registry.h"

#define PLG_EXPORT __attribute__((visibility("default")))

/* Mirror of Mosquitto 2.0's private struct mosquitto_plugin_id_t, whose only
 * member is the listener the plugin was configured on: NULL unless
 * per_listener_settings is true (src/plugin.c, src/security.c). The public
 * API offers no other way to tell. */
struct plg_plugin_id_2_0 {
	void *listener;
};

static const char *const auth_names[] = {
        [PLG_AUTH_SAS] = "sas (devices and back ends prove themselves to the registry)",
        [PLG_AUTH_OPEN] = "open (no credentials: localhost trials only)",
        [PLG_AUTH_EXTERNAL] = "external (the broker authenticates; the plugin isolates)",
};

/* Set by the first successful init; the library is loaded once per broker. */
static int plg_initialised;

PLG_EXPORT int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for (int i = 0; i < supported_version_count; i++)
		if (supported_versions[i] == 5)
			return 5;
	return -1;
}

/* TICK: once per broker loop iteration (DESIGN.md §2). */
static int on_tick(int event, void *event_data, void *userdata)
{
	plg_ctx *ctx = userdata;

	(void)event;
	(void)event_data;
	ctx->reloading = 0;
	ctx->gone = NULL;
	plg_admit_all_pending(ctx);
	plg_expiry_sweep(ctx);
	plg_events_trim(ctx);
	plg_jobs_tick(ctx);
	plg_outbox_flush(ctx);
	plg_queries_tick(ctx);
	twin_store_maintain(ctx->store, NULL); /* grow the map between batches */
	return MOSQ_ERR_SUCCESS;
}

static const struct {
	int event;
	MOSQ_FUNC_generic_callback cb;
} callbacks[] = {
        {MOSQ_EVT_BASIC_AUTH, plg_on_basic_auth}, {MOSQ_EVT_ACL_CHECK, plg_on_acl_check},
        {MOSQ_EVT_MESSAGE, plg_on_message},       {MOSQ_EVT_TICK, on_tick},
        {MOSQ_EVT_DISCONNECT, plg_on_disconnect}, {MOSQ_EVT_RELOAD, plg_on_reload},
};

static int register_callbacks(plg_ctx *ctx)
{
	int rc = plg_control_register(ctx);

	if (rc != MOSQ_ERR_SUCCESS)
		return rc;
	for (size_t i = 0; i < sizeof(callbacks) / sizeof(callbacks[0]); i++) {
		rc = mosquitto_callback_register(ctx->pid, callbacks[i].event, callbacks[i].cb,
		                                 NULL, ctx);

		if (rc != MOSQ_ERR_SUCCESS) {
			mosquitto_log_printf(MOSQ_LOG_ERR,
			                     PLG_LOG_PREFIX
			                     "cannot register for event %d (error %d).",
			                     callbacks[i].event, rc);
			return rc;
		}
	}
	return MOSQ_ERR_SUCCESS;
}

static void unregister_callbacks(plg_ctx *ctx)
{
	plg_control_unregister(ctx);
	for (size_t i = 0; i < sizeof(callbacks) / sizeof(callbacks[0]); i++)
		mosquitto_callback_unregister(ctx->pid, callbacks[i].event, callbacks[i].cb, NULL);
}

static int refuse(const char *why)
{
	mosquitto_log_printf(MOSQ_LOG_ERR, PLG_LOG_PREFIX "refusing to start: %s", why);
	return MOSQ_ERR_NOT_SUPPORTED;
}

PLG_EXPORT int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
                                     struct mosquitto_opt *opts, int opt_count)
{
	plg_ctx *ctx;
	twin_error err;
	size_t stale = 0;
	int rc;

	*userdata = NULL;
	if (plg_initialised)
		return refuse("the plugin is loaded more than once (one 'plugin' line only).");
	if (((struct plg_plugin_id_2_0 *)identifier)->listener != NULL)
		return refuse("per_listener_settings true is not supported (Mosquitto 2.0 "
		              "never sends it the TICK event group commit needs).");
	ctx = calloc(1, sizeof(*ctx));
	if (ctx == NULL)
		return MOSQ_ERR_NOMEM;
	ctx->pid = identifier;
	rc = plg_options_parse(&ctx->opts, opts, opt_count);
	if (rc != MOSQ_ERR_SUCCESS)
		goto fail;
	if (twin_store_open(&ctx->opts.store, &ctx->store, &err) != TWIN_OK) {
		mosquitto_log_printf(MOSQ_LOG_ERR, PLG_LOG_PREFIX "%s", err.message);
		/* The usual cause: a root-started broker has already switched to
		 * its unprivileged user when plugins are initialised. */
		mosquitto_log_printf(MOSQ_LOG_ERR,
		                     PLG_LOG_PREFIX
		                     "the database directory must be writable by uid %ld, "
		                     "e.g.: install -d -o mosquitto -m 700 %s",
		                     (long)geteuid(), ctx->opts.db_path);
		rc = MOSQ_ERR_UNKNOWN;
		goto fail;
	}
	mosquitto_log_printf(MOSQ_LOG_INFO, PLG_LOG_PREFIX "database open at %s (map %zu MiB).",
	                     ctx->opts.db_path, twin_store_map_size(ctx->store) >> 20);
	mosquitto_log_printf(MOSQ_LOG_INFO, PLG_LOG_PREFIX "authentication: %s%s%s.",
	                     auth_names[ctx->opts.auth],
	                     ctx->opts.hostname ? ", hub host name " : "",
	                     ctx->opts.hostname ? ctx->opts.hostname : "");
	if (twin_registry_reset_connections(ctx->store, &stale, &err) != TWIN_OK ||
	    twin_store_commit(ctx->store, &err) != TWIN_OK) {
		mosquitto_log_printf(MOSQ_LOG_ERR, PLG_LOG_PREFIX "%s", err.message);
		twin_store_close(ctx->store);
		rc = MOSQ_ERR_UNKNOWN;
		goto fail;
	}
	if (plg_policies_init(ctx) != MOSQ_ERR_SUCCESS) {
		twin_store_close(ctx->store);
		rc = MOSQ_ERR_UNKNOWN;
		goto fail;
	}
	if (stale > 0)
		mosquitto_log_printf(MOSQ_LOG_INFO,
		                     PLG_LOG_PREFIX
		                     "%zu devices were still marked connected from the "
		                     "last run; now disconnected.",
		                     stale);
	if (plg_queries_init(ctx) != 0) {
		mosquitto_log_printf(MOSQ_LOG_ERR, PLG_LOG_PREFIX "cannot start the query worker.");
		twin_store_close(ctx->store);
		rc = MOSQ_ERR_UNKNOWN;
		goto fail;
	}
	rc = register_callbacks(ctx);
	if (rc != MOSQ_ERR_SUCCESS) {
		unregister_callbacks(ctx);
		plg_queries_free(ctx);
		twin_store_close(ctx->store);
		goto fail;
	}
	plg_initialised = 1;
	*userdata = ctx;
	return MOSQ_ERR_SUCCESS;
fail:
	plg_options_free(&ctx->opts);
	free(ctx);
	return rc;
}

static void disconnect_at_shutdown(plg_conn *c, void *arg)
{
	plg_ctx *ctx = arg;

	if (c->activity > c->activity_saved)
		twin_device_set_activity(ctx->store, c->device_id, c->activity, NULL);
	twin_device_set_connected(ctx->store, c->device_id, 0, NULL);
}

PLG_EXPORT int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int opt_count)
{
	plg_ctx *ctx = userdata;
	twin_error err;

	(void)opts;
	(void)opt_count;
	/* NULL when init did not complete; Mosquitto 2.0.11 exits without
	 * calling cleanup then, but a later version may not. */
	if (ctx == NULL)
		return MOSQ_ERR_SUCCESS;
	unregister_callbacks(ctx);
	/* Mosquitto 2.0 sends no DISCONNECT events at shutdown. */
	plg_conns_each_live(&ctx->conns, disconnect_at_shutdown, ctx);
	/* Writes of the last loop iteration are kept; their replies cannot
	 * leave any more (nothing drains plugin publishes after the main loop),
	 * exactly as if the broker had died after the commit. */
	plg_outbox_free(&ctx->out);
	plg_queries_free(ctx); /* their snapshots end before the store closes */
	for (size_t i = 0; i < ctx->nkicks; i++)
		free(ctx->kicks[i]);
	free(ctx->kicks);
	if (twin_store_commit(ctx->store, &err) != TWIN_OK)
		mosquitto_log_printf(MOSQ_LOG_ERR, PLG_LOG_PREFIX "final commit failed: %s",
		                     err.message);
	plg_conns_free(&ctx->conns);
	twin_store_close(ctx->store);
	mosquitto_log_printf(MOSQ_LOG_INFO, PLG_LOG_PREFIX "database closed cleanly (%s).",
	                     ctx->opts.db_path);
	plg_options_free(&ctx->opts);
	free(ctx);
	plg_initialised = 0;
	return MOSQ_ERR_SUCCESS;
}
