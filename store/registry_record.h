/*
 * registry_record.h - private to store/: the stored form of an identity.
 *
 * A fixed-size binary copy of twin_identity behind a format tag: identities
 * are read on every device connect, and a memcpy is cheaper than a parse.
 * Timestamps are 100 ns ticks, which a JSON number (a double) cannot hold
 * exactly. A change of twin_identity's layout must bump REGISTRY_FORMAT and
 * convert old records.
 */
#ifndef TWIN_STORE_REGISTRY_RECORD_H
#define TWIN_STORE_REGISTRY_RECORD_H

#include <lmdb.h>

#include "twin/registry.h"

#define REGISTRY_FORMAT 0x74770001u /* "tw" + format 1 */

typedef struct identity_record {
	uint32_t format;
	twin_identity id;
} identity_record;

/* Decode the devices-table value v into *out. TWIN_E_STORAGE for a record
 * of the wrong size or format. */
twin_err registry_record_decode(const MDB_val *v, twin_identity *out, twin_error *err);

#endif
