/*
 * twin_records.h - private to store/: what registry.c needs from twin.c.
 *
 * Identities and twins live and die together (PROTOCOL.md §7); the registry
 * drives that through these two calls inside its own batch.
 */
#ifndef TWIN_STORE_TWIN_RECORDS_H
#define TWIN_STORE_TWIN_RECORDS_H

#include "twin/store.h"

/* Write the records of a new, empty twin: version 2, empty tags, both
 * sections at $version 1 with never-written metadata. */
twin_err twin_records_create(twin_store *s, const char *device_id, twin_error *err);

/* Delete every record of the twin of device_id. */
twin_err twin_records_delete(twin_store *s, const char *device_id, twin_error *err);

/* Non-zero if if_match (NULL, "", "*", or an etag, quoted or not) matches etag. */
int twin_etag_matches(const char *if_match, const char *etag);

#endif
