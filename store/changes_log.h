/*
 * changes_log.h - private to store/: how the writers and the batch code
 * feed the change log (store/changes.c, twin/changes.h).
 */
#ifndef TWIN_STORE_CHANGES_LOG_H
#define TWIN_STORE_CHANGES_LOG_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "twin/changes.h"
#include "twin/json.h"

/* An actor's JSON text: a type and two 128-byte names, escaped (6 bytes
 * each at worst). */
#define CHANGES_ACTOR_MAX 1700

/* The log's state inside a store (db.h). */
typedef struct changes_state {
	uint64_t next;                 /* sequence number of the next entry */
	uint64_t base;                 /* next when the open batch began */
	uint64_t batch;                /* counts batches, so a mark knows its own */
	twin_buf pending;              /* entries of the open batch */
	twin_buf ready;                /* entries committed, not yet drained */
	twin_buf body;                 /* the body being built */
	char actor[CHANGES_ACTOR_MAX]; /* JSON object text */
	char stamp[41];                /* the next entry's write stamp, "" for none */
	int64_t stamp_version;
} changes_state;

/* Store life cycle: open reads the next sequence number; begin, committed
 * and aborted follow the batch (db.c). */
twin_err changes_open(twin_store *s, twin_error *err);
void changes_free(twin_store *s);
void changes_batch_begin(twin_store *s);
void changes_committed(twin_store *s);
void changes_aborted(twin_store *s);

/* The stamp (twin_stamp.when, and the desired version or 0) the write
 * about to append its entry put on the nodes it touched: the entry is
 * stored packed against it (changes.c). Holds for the next entry only. */
void changes_stamp(twin_store *s, const char *when, int64_t version);

/* Append an entry to the batch. body is the §9 body (a JSON object) without
 * "sequenceNumber"; NULL for the connection ops, whose body is the
 * sequence number itself. by_device: the device made the change (else the
 * actor set by twin_store_set_actor). A failure fails the batch: the change
 * it records is already in. */
twin_err changes_append(twin_store *s, twin_op op, const char *device_id, int by_device,
                        const char *body, size_t len, twin_error *err);

/* The same with the body of createDeviceIdentity, replaceTwin and
 * deleteDeviceIdentity: the twin of device_id as it is in the batch now. */
twin_err changes_append_twin(twin_store *s, twin_op op, const char *device_id, twin_error *err);

/* One written section of an updateTwin body: the patch as accepted and, for
 * properties, the section's metadata after the merge and its $version. */
typedef struct changes_section {
	const cJSON *patch; /* NULL: section not written */
	const cJSON *meta;  /* NULL for tags */
	int64_t version;
} changes_section;

/* Append an updateTwin entry for twin version `version`. */
twin_err changes_append_update(twin_store *s, const char *device_id, int by_device, int64_t version,
                               const changes_section *tags, const changes_section *desired,
                               const changes_section *reported, twin_error *err);

#endif
