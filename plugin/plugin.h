/*
 * plugin.h - the plugin's one context, its options, and the functions the
 * plugin's files share.
 *
 * The only mutable state of the plugin is the plg_ctx created in
 * mosquitto_plugin_init and handed back by Mosquitto to every callback.
 */
#ifndef TWIN_PLUGIN_H
#define TWIN_PLUGIN_H

#include <cjson/cJSON.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>

#include "conn.h"
#include "twin/policy.h"
#include "twin/store.h"
#include "twin/twin.h"

#define PLG_LOG_PREFIX "mosquitto-twin: "

#define PLG_DEFAULT_DB_PATH "/var/lib/mosquitto/twin"

/* Longest $rid a request may carry (project decision; the SDKs send a
 * number or a UUID). */
#define PLG_RID_MAX 1024

/* lastActivityTime is written at most this often per device (§4). */
#define PLG_ACTIVITY_SAVE_TICKS (60LL * 10000000)

/* plugin_opt_auth: who authenticates devices (README "Authentication"). */
typedef enum plg_auth_mode {
	PLG_AUTH_SAS = 0,  /* the plugin, against its registry: SAS tokens, X.509
	                      certificates, policy tokens (the default) */
	PLG_AUTH_OPEN,     /* nobody: the client id is the device (quick start) */
	PLG_AUTH_EXTERNAL, /* the broker's password_file or another plugin; the
	                      plugin maps client id to device and isolates */
} plg_auth_mode;

typedef struct plg_options {
	char *db_path;         /* plugin_opt_db_path */
	int catchup;           /* plugin_opt_catchup: the §3.1 extension */
	plg_auth_mode auth;    /* plugin_opt_auth */
	char *hostname;        /* plugin_opt_hostname: the hub name in SAS tokens */
	twin_policy *policies; /* plugin_opt_policy_<name> lines */
	size_t npolicies;
	unsigned long long changes_max_count; /* plugin_opt_changes_max_count */
	unsigned long long changes_max_age;   /* plugin_opt_changes_max_age, seconds */
	unsigned long long device_rate;       /* plugin_opt_device_rate_limit, requests/s; 0 off */
	unsigned long long device_burst;      /* plugin_opt_device_rate_burst, requests */
	twin_store_options store;             /* map size and limits; store.path = db_path */
} plg_options;

/* A publish waiting for the commit of its batch. */
typedef struct plg_msg {
	char *client_id;     /* target */
	uint64_t generation; /* device connection it is for, dropped if no longer
	                        live; 0 for back-end clients (no check) */
	int qos;
	int control;       /* a control API response */
	int64_t desired;   /* desired $version this message hands the device (a GET
	                      result or a notification), 0 for none */
	char *rid;         /* a reply's $rid (for an error reply if the commit fails); NULL
	                    for notifications, which are dropped instead */
	void *correlation; /* MQTT v5 correlation data of a control response */
	uint16_t correlation_len;
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
	char **kicks; /* device ids to disconnect once the batch is committed */
	size_t nkicks, kicks_cap;
	int64_t next_sweep; /* when the expiry sweep runs next (seconds) */
	size_t npending;    /* connections of kind PLG_CONN_PENDING */
	/* The device connection DISCONNECT just removed: its will is checked
	 * next (acl.c); cleared at TICK. */
	const struct mosquitto *gone;
	char gone_id[TWIN_DEVICE_ID_MAX + 1];
	int reloading;               /* between RELOAD and the next TICK (DESIGN.md §2) */
	struct plg_queries *queries; /* query.c */
	int control_index;           /* the response the control command being run fills */
	int64_t next_trim;           /* when change log retention runs next (ticks) */
	int64_t jobs_next;           /* monotonic ns before which no job slice runs */
} plg_ctx;

/* options.c */
int plg_options_parse(plg_options *o, struct mosquitto_opt *opts, int count);
void plg_options_free(plg_options *o);

/* outbox.c - group commit: replies and notifications wait for TICK. */
/* Queue a reply to c on $iothub/twin/res/{status}/?$rid={rid}[&$version=v]
 * (version < 0: none). Takes body (malloc'd, may be NULL for empty). Not
 * sent when c holds no res/# subscription (the request still ran). When
 * memory runs out for it, the batch fails (plg_lost); so do these: */
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

/* Memory ran out for a message that answers a request or announces a write
 * of the open batch: log it and fail the batch (twin_store_fail), so that
 * no write is applied whose answer is lost. what and client_id name the
 * message in the log. */
void plg_lost(plg_ctx *ctx, const char *what, const char *client_id);
/* Queue a control response to any client. Takes payload; copies topic and
 * the MQTT v5 correlation data (NULL for none). Sent even if the batch
 * fails: the payload reports per-command results computed before the
 * commit, so a failed batch turns it into an error. Out of memory: as
 * plg_reply. */
void plg_send_after_commit(plg_ctx *ctx, const char *client_id, const char *topic, int qos,
                           char *payload, size_t len, const void *correlation,
                           uint16_t correlation_len);
/* Disconnect device_id's connection once the batch is committed (it was
 * disabled, deleted or its credentials changed, PROTOCOL.md §7); nothing
 * happens if the commit fails. */
void plg_kick_after_commit(plg_ctx *ctx, const char *device_id);
/* Commit the batch, then publish what it answered and carry out the kicks
 * (TICK). */
void plg_outbox_flush(plg_ctx *ctx);
void plg_outbox_free(plg_outbox *o);
/* Turn one control response object into the error e (failed commit). */
void plg_control_response_fail(cJSON *r, const twin_error *e);

/* query.c - the `query` control command, run after the commit, partly on a
 * worker thread (DESIGN.md §4). init starts the worker (-1 on failure);
 * free stops it and drops unanswered queries (before the store closes). */
int plg_queries_init(plg_ctx *ctx);
void plg_queries_free(plg_ctx *ctx);
/* Called by the CONTROL callback: non-zero when the request being handled
 * holds queries; then defer takes over its response out (and copies the
 * rest) to send once they are answered. */
int plg_query_collecting(plg_ctx *ctx);
void plg_query_defer(plg_ctx *ctx, cJSON *out, const char *client_id, const char *topic, int qos,
                     const void *corr, uint16_t corr_len);
/* Drop what the CONTROL callback collected (the requester is gone). */
void plg_query_discard(plg_ctx *ctx);
/* After each commit (err: the commit failed): start the deferred queries. */
void plg_queries_after_commit(plg_ctx *ctx, const twin_error *err);
/* TICK: answer the queries the worker finished. */
void plg_queries_tick(plg_ctx *ctx);
/* While on, the worker wakes the broker every 2 ms (a job has work). */
void plg_queries_pace(plg_ctx *ctx, int on);

/* jobs.c - TICK: run a slice of the current job (before the commit). */
void plg_jobs_tick(plg_ctx *ctx);

/* events.c - the event stream (PROTOCOL.md §9) and change log retention. */
/* After a commit: publish the entries it made durable to $twin/events/. */
void plg_events_publish(plg_ctx *ctx);
/* TICK, before the commit: trim one slice of the log past retention. */
void plg_events_trim(plg_ctx *ctx);

/* device_api.c - MESSAGE: device requests. */
int plg_on_message(int event, void *event_data, void *userdata);

/* auth.c - credentials (PROTOCOL.md §1): SAS tokens, X.509, policies. */
typedef struct plg_principal {
	plg_conn_kind kind; /* PLG_CONN_DEVICE or PLG_CONN_BACKEND */
	char device_id[TWIN_DEVICE_ID_MAX + 1];
	unsigned rights; /* back end: its policy's rights */
	int64_t expires; /* seconds since the epoch; 0 = never (X.509) */
} plg_principal;
/* Authenticate a CONNECT in sas mode. MOSQ_ERR_SUCCESS with *who filled;
 * MOSQ_ERR_AUTH after logging why (CONNACK 5); MOSQ_ERR_PLUGIN_DEFER for a
 * client that is neither a device nor a back end by its username. */
int plg_authenticate(plg_ctx *ctx, struct mosquitto *client, const char *username,
                     const char *password, plg_principal *who);
/* Create the default iothubowner policy on first start, logging its
 * connection string; a plugin_opt_policy_iothubowner line replaces it. */
int plg_policies_init(plg_ctx *ctx);
/* Policy name from the options, else from the store. TWIN_E_NOT_FOUND. */
twin_err plg_policy_find(plg_ctx *ctx, const char *name, twin_policy *out);
/* The control API rights of client: every right in open and external
 * mode (there the broker's ACL decides who may publish to the API), its
 * policy's rights for a back end in sas mode, none otherwise. */
unsigned plg_client_rights(plg_ctx *ctx, const struct mosquitto *client);

/* connect.c - BASIC_AUTH, DISCONNECT, RELOAD, expiry, activity. */
int plg_on_basic_auth(int event, void *event_data, void *userdata);
int plg_on_disconnect(int event, void *event_data, void *userdata);
int plg_on_reload(int event, void *event_data, void *userdata);
/* Admit a pending connection (its CONNECT succeeded elsewhere): see
 * connect.c. Returns c, now live, or NULL if it cannot be a device. */
plg_conn *plg_admit_pending(plg_ctx *ctx, plg_conn *c);
/* Admit every pending connection still here (TICK). */
void plg_admit_all_pending(plg_ctx *ctx);
/* Close connections whose credential expired (TICK; once a second). */
void plg_expiry_sweep(plg_ctx *ctx);

/* acl.c - ACL_CHECK: topic isolation and subscription tracking. */
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
