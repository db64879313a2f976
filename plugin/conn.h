/*
 * conn.h - the live connections of devices.
 *
 * Keyed by the broker's struct mosquitto *, not by client id: on a session
 * takeover the new connection authenticates before the old one's DISCONNECT
 * arrives (DESIGN.md §2), so two connections of one device briefly coexist.
 * A second index maps deviceId to the newest connection, the only one that
 * is "live": replies and notifications for an older one are dropped.
 *
 * Back-end connections (shared access policies) and connections whose
 * admission another authenticator still decides ("pending", see connect.c)
 * are in the first index only.
 */
#ifndef TWIN_PLUGIN_CONN_H
#define TWIN_PLUGIN_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "twin/limits.h"
#include "twin/twin.h"

struct mosquitto;

typedef enum plg_conn_kind {
	PLG_CONN_DEVICE = 0, /* a device, indexed by its id */
	PLG_CONN_PENDING,    /* a device whose CONNECT another authenticator decides */
	PLG_CONN_BACKEND,    /* a shared access policy principal */
} plg_conn_kind;

typedef struct plg_conn {
	struct mosquitto *client;
	plg_conn_kind kind;
	unsigned rights;                        /* back ends: TWIN_RIGHT_* of the policy */
	int64_t expires;                        /* when the credential expires (seconds since the
	                                           epoch; PROTOCOL.md §1.2), 0 for never */
	char device_id[TWIN_DEVICE_ID_MAX + 1]; /* "" for a back end */
	uint64_t generation;                    /* unique per connection, never reused */
	twin_session session;                   /* cached copy of the persisted session state; its
	                                           notified_version moves only when a message is
	                                           handed to the broker (outbox.c) */
	int64_t queued;                         /* highest desired version queued, not yet handed */
	int64_t activity;                       /* last device activity (ticks) */
	int64_t activity_saved;                 /* last lastActivityTime written to the store */
	double tokens;                          /* requests the rate limit still allows now */
	int64_t tokens_at;                      /* when tokens was last topped up (ticks) */
	struct plg_conn *next_by_client, *next_by_device;
	struct plg_conn *next_expired; /* scratch list link of a table walk */
} plg_conn;

typedef struct plg_conns {
	plg_conn **by_client, **by_device;
	size_t buckets; /* power of two */
	size_t count;
	uint64_t next_generation;
} plg_conns;

/* Add a connection of kind for client (device_id: "" for a back end). A
 * PLG_CONN_DEVICE becomes the device's live connection. NULL when out of
 * memory. */
plg_conn *plg_conn_add(plg_conns *t, struct mosquitto *client, plg_conn_kind kind,
                       const char *device_id);

/* Make a pending connection its device's live connection. */
void plg_conn_promote(plg_conns *t, plg_conn *c);

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

/* Call fn for every connection, live or not. fn must not add or remove. */
void plg_conns_each(plg_conns *t, void (*fn)(plg_conn *c, void *arg), void *arg);

#endif
