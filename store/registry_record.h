/*
 * registry_record.h - private to store/: the stored form of an identity.
 *
 * A binary record behind a format tag: identities are read on every device
 * connect, and copying fields is cheaper than a parse. Format 2 holds the
 * numbers, then each string as a 16-bit length and its bytes: a typical
 * identity takes about 200 bytes where format 1, a fixed-size copy of
 * twin_identity (1,187 bytes, every string at its maximum), took six
 * times that. Format 1 records are still read. Timestamps are 100 ns
 * ticks, which a JSON number (a double) cannot hold exactly.
 */
#ifndef TWIN_STORE_REGISTRY_RECORD_H
#define TWIN_STORE_REGISTRY_RECORD_H

#include <lmdb.h>

#include "twin/registry.h"

#define REGISTRY_FORMAT_1 0x74770001u /* "tw" + format 1: a copy of the struct */
#define REGISTRY_FORMAT   0x74770002u /* "tw" + format 2 */

typedef struct identity_record_v1 {
	uint32_t format;
	twin_identity id;
} identity_record_v1;

/* Room for the longest format 2 record. */
#define REGISTRY_RECORD_MAX (sizeof(identity_record_v1) + 64)

/* Encode id into out (REGISTRY_RECORD_MAX bytes) as format 2; returns the
 * record's length. */
size_t registry_record_encode(const twin_identity *id, unsigned char *out);

/* Decode the devices-table value v into *out. TWIN_E_STORAGE for a record
 * of the wrong size or format. */
twin_err registry_record_decode(const MDB_val *v, twin_identity *out, twin_error *err);

#endif
