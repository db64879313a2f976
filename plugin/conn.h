/*
 * conn.h - the live connections of devices.
 *
 * Keyed by the broker's struct mosquitto *, not by client id: on a session
 * takeover the new connection authenticates before the old one's DISCONNECT
 * arrives (DESIGN.md §2), so two connections of one device briefly coexist.
 * A second index maps deviceId to the newest connection, the only one that
 * is "live": replies and notifications for an older one are dropped.
 */
#ifndef TWIN_PLUGIN_CONN_H
#define TWIN_PLUGIN_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "twin/limits.h"
#include "twin/twin.h"

struct mosquitto;

typedef struct plg_conn {
	struct mosquitto *client;
	char device_id[TWIN_DEVICE_ID_MAX + 1];
	uint64_t generation;    /* unique per connection, never reused */
	twin_session session;   /* cached copy of the persisted session state; its
	                           notified_version moves only when a message is
	                           handed to the broker (outbox.c) */
	int64_t queued;         /* highest desired version queued, not yet handed */
	int64_t activity;       /* last device activity (ticks) */
	int64_t activity_saved; /* last lastActivityTime written to the store */
	struct plg_conn *next_by_client, *next_by_device;
} plg_conn;

typedef struct plg_conns {
	plg_conn **by_client, **by_device;
	size_t buckets; /* power of two */
	size_t count;
	uint64_t next_generation;
} plg_conns;

/* Add a connection for client as device_id; it becomes the device's live
 * connection. NULL when out of memory. */
plg_conn *plg_conn_add(plg_conns *t, struct mosquitto *client, const char *device_id);

/* The connection of client, live or not, or NULL. */
plg_conn *plg_conn_by_client(const plg_conns *t, const struct mosquitto *client);

/* The live connection of device_id, or NULL. */
plg_conn *plg_conn_by_device(const plg_conns *t, const char *device_id);

/* Non-zero if c is its device's live connection. */
int plg_conn_is_live(const plg_conns *t, const plg_conn *c);

/* Remove and free c. */
void plg_conn_remove(plg_conns *t, plg_conn *c);

/* Free every connection (shutdown). */
void plg_conns_free(plg_conns *t);

/* Call fn for each live connection. */
void plg_conns_each_live(plg_conns *t, void (*fn)(plg_conn *c, void *arg), void *arg);

#endif
