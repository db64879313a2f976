/*
 * twin/twin.h - twin reads and writes (PROTOCOL.md §2.3, §4, §5).
 *
 * Writes validate the whole input first and change nothing when any part is
 * invalid (§5.1 atomicity): no version bump, no etag change, no notification.
 * They join the store's open batch; a caller publishes the results only after
 * twin_store_commit succeeds.
 */
#ifndef TWIN_TWIN_H
#define TWIN_TWIN_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "twin/error.h"
#include "twin/registry.h"
#include "twin/store.h"

/* What an accepted write produced. */
typedef struct twin_write_result {
	int64_t version;          /* twin version after the write */
	int64_t desired_version;  /* properties.desired.$version after */
	int64_t reported_version; /* properties.reported.$version after */
	char *notification;       /* desired notification body (§5.3) with "$version"
	                             last, or NULL when the device is not notified;
	                             malloc'd, freed by twin_write_result_clear */
	size_t notification_len;
} twin_write_result;

/* Free what r holds and zero it. */
void twin_write_result_clear(twin_write_result *r);

/* The twin etag for a twin version: base64 of the 8-byte big-endian value
 * version - 1 ("AAAAAAAAAAE=" for a new twin). */
void twin_etag_format(int64_t version, char out[TWIN_ETAG_MAX]);

/* The device GET body {"desired":{…,"$version":D},"reported":{…,"$version":R}}
 * of device_id. *out is malloc'd (caller frees), *len its length, and
 * *desired_version (if not NULL) is D. TWIN_E_NOT_FOUND when there is no
 * such twin. */
twin_err twin_get_device_body(twin_store *s, const char *device_id, char **out, size_t *len,
                              int64_t *desired_version, twin_error *err);

/* The service view (§4) of device_id: identity fields, tags and properties
 * with $metadata and $version. Caller owns *out (cJSON_Delete). */
twin_err twin_get(twin_store *s, const char *device_id, cJSON **out, twin_error *err);

/* Apply a device's reported PATCH body[0..len) (§2.3): a JSON object merged
 * into reported. "{}" is not a write: TWIN_OK with the current versions.
 * Errors: TWIN_E_INVALID, TWIN_E_SECTION_SIZE, TWIN_E_NOT_FOUND, storage. */
twin_err twin_patch_reported(twin_store *s, const char *device_id, const char *body, size_t len,
                             twin_write_result *res, twin_error *err);

/* Back-end update (§5.2, PATCH): patch is {"tags"?:{…},"properties"?:{"desired"?:{…},
 * "reported"?:{}}}; tags and desired are merged; a non-empty reported is
 * TWIN_E_INVALID. Other members are ignored. if_match: NULL, "*" or a twin
 * etag (quoted or not); mismatch is TWIN_E_PRECONDITION. A non-empty desired
 * gives res->notification: the desired patch as accepted plus "$version". */
twin_err twin_update(twin_store *s, const char *device_id, const cJSON *patch, const char *if_match,
                     twin_write_result *res, twin_error *err);

/* Back-end replace (§5.2, PUT): tags and properties.desired of body become
 * the new sections (missing → {}, null members dropped, "$metadata" and
 * "$version" at the desired root ignored); reported and other members are
 * untouched. Always a desired write: res->notification is the full new
 * desired with null for every removed key. */
twin_err twin_replace(twin_store *s, const char *device_id, const cJSON *body, const char *if_match,
                      twin_write_result *res, twin_error *err);

/* What the broker remembers of a device's MQTT session, persisted with the
 * twin because the official SDKs subscribe once and never again (§1.5):
 * after a broker restart the plugin must still know where to deliver. */
typedef struct twin_session {
	int res_qos;              /* granted QoS of $iothub/twin/res/#, -1 when none */
	int desired_qos;          /* granted QoS of the desired filter, -1 when none */
	int64_t notified_version; /* L of §3.1: last desired $version handed to the
	                             device by a notification or a GET (1 initially) */
	int64_t connection_base;  /* the desired version the device surely holds:
	                             set when a connection starts, raised by a
	                             GET result. Notifications may be lost in
	                             flight when a connection drops, so a resumed
	                             session catches up from here (1 initially) */
} twin_session;

/* Read the session state of device_id. A twin without one gets the initial
 * state (no subscriptions, L = 1). TWIN_E_NOT_FOUND when there is no twin. */
twin_err twin_session_get(twin_store *s, const char *device_id, twin_session *out, twin_error *err);

/* Replace the session state of device_id (joins the batch). */
twin_err twin_session_put(twin_store *s, const char *device_id, const twin_session *in,
                          twin_error *err);

/* The catch-up notification of §3.1 for a device that has seen desired
 * version since: when the current desired $version V is greater, *out is
 * the change from since to V (changed and added keys with their values,
 * removed keys as null, any depth, arrays whole) plus "$version":V last, and
 * *version = V; otherwise *out is NULL and *version = V. Keys removed after
 * since are known from tombstones kept with the twin; the newest
 * TWIN_TOMBSTONES_MAX are kept. *out is malloc'd; the caller frees it. */
#define TWIN_TOMBSTONES_MAX 512
twin_err twin_desired_since(twin_store *s, const char *device_id, int64_t since, char **out,
                            size_t *len, int64_t *version, twin_error *err);

#endif
