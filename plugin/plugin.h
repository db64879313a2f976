/*
 * plugin.h - the plugin's one context, its options, and the functions the
 * plugin's files share.
 *
 * The only mutable state of the plugin is the plg_ctx created in
 * mosquitto_plugin_init and handed back by Mosquitto to every callback.
 */
#ifndef TWIN_PLUGIN_H
#define TWIN_PLUGIN_H

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "conn.h"
#include "twin/store.h"
#include "twin/twin.h"

#define PLG_LOG_PREFIX "mosquitto-twin: "

#define PLG_DEFAULT_DB_PATH "/var/lib/mosquitto/twin"

/* lastActivityTime is written at most this often per device (§4). */
#define PLG_ACTIVITY_SAVE_TICKS (60LL * 10000000)

typedef struct plg_options {
	char *db_path;            /* plugin_opt_db_path */
	int catchup;              /* plugin_opt_catchup: the §3.1 extension */
	twin_store_options store; /* map size and limits; store.path = db_path */
} plg_options;

/* A publish waiting for the commit of its batch. */
typedef struct plg_msg {
	char *client_id;     /* target */
	uint64_t generation; /* device connection it is for, dropped if no longer
	                        live; 0 for back-end clients (no check) */
	int qos;
	int control;     /* a control API response */
	int64_t desired; /* desired $version this message hands the device (a GET
	                    result or a notification), 0 for none */
	char *rid;       /* a reply's $rid (for an error reply if the commit fails); NULL
	                  for notifications, which are dropped instead */
	char *topic;
	char *payload;
	size_t len;
} plg_msg;

typedef struct plg_outbox {
	plg_msg *msgs;
	size_t len, cap;
} plg_outbox;

typedef struct plg_ctx {
	mosquitto_plugin_id_t *pid;
	plg_options opts;
	twin_store *store;
	plg_conns conns;
	plg_outbox out;
	int reloading; /* between RELOAD and the next TICK (DESIGN.md §2) */
} plg_ctx;

/* options.c */
int plg_options_parse(plg_options *o, struct mosquitto_opt *opts, int count);
void plg_options_free(plg_options *o);

/* outbox.c - group commit: replies and notifications wait for TICK. */
/* Queue a reply to c on $iothub/twin/res/{status}/?$rid={rid}[&$version=v]
 * (version < 0: none). Takes body (malloc'd, may be NULL for empty). Not
 * sent when c holds no res/# subscription (the request still ran). */
void plg_reply(plg_ctx *ctx, plg_conn *c, const char *rid, size_t rid_len, int status,
               int64_t version, char *body, size_t len);
/* The same for a GET result that hands the device desired version D. */
void plg_reply_get(plg_ctx *ctx, plg_conn *c, const char *rid, size_t rid_len, int64_t desired,
                   char *body, size_t len);
/* Queue the §2.4 error reply for e. rid may be NULL (missing $rid). */
void plg_reply_error(plg_ctx *ctx, plg_conn *c, const char *rid, size_t rid_len,
                     const twin_error *e);
/* Queue a desired notification of version v to c. Takes body. */
void plg_notify(plg_ctx *ctx, plg_conn *c, int64_t v, char *body, size_t len);
/* Queue a publish to any client (control API responses). Takes payload.
 * Sent even if the batch fails: the payload reports per-command results
 * computed before the commit, so a failed batch turns it into an error. */
void plg_send_after_commit(plg_ctx *ctx, const char *client_id, const char *topic, int qos,
                           char *payload, size_t len);
/* Commit the batch, then publish what it answered (TICK). */
void plg_outbox_flush(plg_ctx *ctx);
void plg_outbox_free(plg_outbox *o);

/* device_api.c - MESSAGE: device requests. */
int plg_on_message(int event, void *event_data, void *userdata);

/* connect.c - BASIC_AUTH, DISCONNECT, RELOAD, activity, subscriptions. */
int plg_on_basic_auth(int event, void *event_data, void *userdata);
int plg_on_disconnect(int event, void *event_data, void *userdata);
int plg_on_reload(int event, void *event_data, void *userdata);
int plg_on_acl_check(int event, void *event_data, void *userdata);
/* Note device activity (a publish); saved at most every PLG_ACTIVITY_SAVE_TICKS. */
void plg_activity(plg_ctx *ctx, plg_conn *c);
/* Persist c->session (joins the batch). */
void plg_session_save(plg_ctx *ctx, plg_conn *c);

/* control.c - the back-end control API on $CONTROL/twin/v1. */
int plg_control_register(plg_ctx *ctx);
void plg_control_unregister(plg_ctx *ctx);

/* notify.c - desired notifications. */
/* After a desired write of device_id with result res: notify its live
 * connection if it is subscribed. Joins the batch (L is saved with it). */
void plg_desired_changed(plg_ctx *ctx, const char *device_id, twin_write_result *res);
/* Send c the §3.1 catch-up notification if the current desired version is
 * newer than since. */
void plg_catchup(plg_ctx *ctx, plg_conn *c, int64_t since);
/* What a live connection has been handed or has queued (subscribe trigger). */
int64_t plg_seen(const plg_conn *c);

#endif
