/*
 * plugin.h - the plugin's one context and its options.
 *
 * The only mutable state of the plugin is the plg_ctx created in
 * mosquitto_plugin_init and handed back by Mosquitto to every callback.
 */
#ifndef TWIN_PLUGIN_H
#define TWIN_PLUGIN_H

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "twin/store.h"

#define PLG_LOG_PREFIX "mosquitto-twin: "

#define PLG_DEFAULT_DB_PATH "/var/lib/mosquitto/twin"

typedef struct plg_options {
	char *db_path;            /* plugin_opt_db_path */
	twin_store_options store; /* map size and limits; store.path = db_path */
} plg_options;

typedef struct plg_ctx {
	mosquitto_plugin_id_t *pid;
	plg_options opts;
	twin_store *store;
} plg_ctx;

/* Parse the plugin_opt_* options into o (defaults first). Logs and returns
 * MOSQ_ERR_INVAL for an unknown option or a bad value, naming it. */
int plg_options_parse(plg_options *o, struct mosquitto_opt *opts, int count);

/* Free what plg_options_parse allocated. */
void plg_options_free(plg_options *o);

#endif
