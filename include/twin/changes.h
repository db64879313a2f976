/*
 * twin/changes.h - the change log (PROTOCOL.md §9, DESIGN.md §6).
 *
 * Every change the store makes to a twin or an identity, and every connect
 * and disconnect, appends one entry to the change log in the same LMDB
 * transaction as the change itself: a committed change always has its
 * entry, an aborted one never does, and a crash loses neither. Entries are
 * numbered by a sequence number that starts at 1, grows by one per entry
 * and is never reused, across restarts and trimming.
 *
 * An entry holds what an event subscriber receives: the operation, the
 * device, when, who (the actor), and the PROTOCOL.md §9 body of the
 * operation with "sequenceNumber" as its first member. In the connection
 * events that member is the §9 form, 64 upper-case hex digits; in all
 * others it is a JSON number.
 */
#ifndef TWIN_CHANGES_H
#define TWIN_CHANGES_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "twin/error.h"
#include "twin/store.h"

typedef enum twin_op {
	TWIN_OP_UPDATE_TWIN = 1,
	TWIN_OP_REPLACE_TWIN,
	TWIN_OP_CREATE_IDENTITY,
	TWIN_OP_UPDATE_IDENTITY, /* project extension: identity fields changed */
	TWIN_OP_DELETE_IDENTITY,
	TWIN_OP_CONNECTED,
	TWIN_OP_DISCONNECTED,
	TWIN_OP_COUNT
} twin_op;

/* The opType: "updateTwin", "replaceTwin", "createDeviceIdentity",
 * "updateDeviceIdentity", "deleteDeviceIdentity", "deviceConnected",
 * "deviceDisconnected". */
const char *twin_op_name(twin_op op);

/* iothub-message-schema and iothub-message-source of op's events. */
const char *twin_op_schema(twin_op op);
const char *twin_op_source(twin_op op);

/* The op named name, or 0 when there is none. */
twin_op twin_op_parse(const char *name);

/* Who makes the back-end changes that follow, until the next call: kind
 * "policy" (a shared access policy name), "client" (an MQTT client id in
 * the open and external modes) or "broker"; job is the id of the job doing
 * them, or NULL. Device patches and connection changes are always recorded
 * as made by the device. The strings are copied (and cut at 128 bytes).
 * NULL kind restores the default, {"type":"broker"}. */
void twin_store_set_actor(twin_store *s, const char *kind, const char *name, const char *job);

/* One entry. The pointers are valid only during the callback that gets it. */
typedef struct twin_change {
	uint64_t seq;
	twin_op op;
	int64_t ticks;         /* operationTimestamp, 100 ns since the epoch */
	const char *device_id; /* NUL-terminated */
	const char *actor;     /* JSON object text, e.g. {"type":"device","name":"d1"} */
	size_t actor_len;
	const char *body; /* JSON object text: the §9 body with "sequenceNumber" */
	size_t body_len;
} twin_change;

typedef void (*twin_change_fn)(void *arg, const twin_change *c);

/* After twin_store_commit succeeded: call fn for each entry the committed
 * batches made durable and that was not drained yet, in sequence order,
 * then forget them. Entries of aborted or failed batches never appear. */
void twin_changes_drain(twin_store *s, twin_change_fn fn, void *arg);

/* The sequence number the next entry will get (1 for an empty, never
 * trimmed log). Counts entries of the open batch. */
uint64_t twin_changes_next(const twin_store *s);

/* A point in the open batch to roll the log back to: an operation that
 * undoes its own writes inside the batch (createDevice with a bad initial
 * twin) also removes the entries they made. */
typedef struct twin_changes_mark {
	uint64_t batch; /* the batch it was taken in */
	uint64_t seq;
	size_t pending;
} twin_changes_mark;

twin_changes_mark twin_changes_mark_get(const twin_store *s);
/* Remove the entries made since m, if m was taken in the batch still open
 * (else nothing happens: that batch was committed or aborted). */
twin_err twin_changes_rollback(twin_store *s, twin_changes_mark m, twin_error *err);

/* Entries examined per twin_changes_read at most, whatever the filters, so
 * one read never holds the broker long. */
#define TWIN_CHANGES_SCAN_MAX 20000
#define TWIN_CHANGES_READ_MAX 1000

/* Replay (the getChanges control command): entries with sequence number >=
 * from, at most limit (1…TWIN_CHANGES_READ_MAX) of them, only of device_id
 * and of op when given (NULL / 0: all). *out = {"items":[{"sequenceNumber",
 * "opType","deviceId","operationTimestamp","actor","body"}…],
 * "nextSequence":N,"lastSequence":L}: continue from N; L is the newest
 * entry (0 when the log is empty). Entries trimmed away are skipped: the
 * first item may start later than from. Caller owns *out (cJSON_Delete).
 * TWIN_E_INVALID for a bad limit, TWIN_E_STORAGE, TWIN_E_NOMEM. */
twin_err twin_changes_read(twin_store *s, uint64_t from, size_t limit, const char *device_id,
                           twin_op op, cJSON **out, twin_error *err);

/* Retention: delete, inside the batch, up to max_delete of the oldest
 * entries while there are more than max_count (0: no count limit) or the
 * oldest is older than max_age_ticks (0: no age limit) at the store's
 * clock. *deleted (may be NULL) is how many went. Call repeatedly (one
 * slice per batch) to trim a large backlog without a long stall. */
twin_err twin_changes_trim(twin_store *s, uint64_t max_count, int64_t max_age_ticks,
                           size_t max_delete, size_t *deleted, twin_error *err);

#endif
