/*
 * twin/registry.h - device identities (PROTOCOL.md §7).
 *
 * An identity is created with its twin and deleted with it. Writes join the
 * store's open batch (twin/store.h); nothing is durable before
 * twin_store_commit.
 */
#ifndef TWIN_REGISTRY_H
#define TWIN_REGISTRY_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "twin/error.h"
#include "twin/limits.h"
#include "twin/store.h"

typedef enum twin_auth_type {
	TWIN_AUTH_SAS = 0,
	TWIN_AUTH_SELF_SIGNED,
	TWIN_AUTH_CA,
	TWIN_AUTH_NONE,
} twin_auth_type;

typedef struct twin_identity {
	char device_id[TWIN_DEVICE_ID_MAX + 1];
	char generation_id[24];
	uint64_t etag_counter; /* deviceEtag = base64 of its decimal form */
	int enabled;
	char status_reason[TWIN_STATUS_REASON_MAX + 1];
	int64_t status_updated; /* ticks; 0 = never */
	twin_auth_type auth_type;
	char primary_key[TWIN_SYM_KEY_B64_MAX + 1]; /* base64; "" when not sas */
	char secondary_key[TWIN_SYM_KEY_B64_MAX + 1];
	char primary_thumbprint[TWIN_THUMBPRINT_MAX + 1]; /* hex, upper case; "" = null */
	char secondary_thumbprint[TWIN_THUMBPRINT_MAX + 1];
	int connected;
	int64_t connection_state_updated;
	int64_t last_activity;
	char model_id[TWIN_MODEL_ID_MAX + 1];
} twin_identity;

#define TWIN_ETAG_MAX 32

/* Non-zero if id is a valid deviceId: 1–128 ASCII letters, digits and
 * - : . + % _ # * ? ! ( ) , = @ ; $ ' */
int twin_device_id_valid(const char *id);

/* TWIN_OK, or TWIN_E_INVALID (400) with the message saying which ids are
 * allowed. Every operation that takes a deviceId from outside checks it. */
twin_err twin_device_id_check(const char *device_id, twin_error *err);

/* "sas", "selfSigned", "certificateAuthority", "none". */
const char *twin_auth_type_name(twin_auth_type t);

/* The identity etag (deviceEtag) of id into out. */
void twin_identity_etag(const twin_identity *id, char out[TWIN_ETAG_MAX]);

/* The IoT Hub identity object (§7) of id. Caller owns the result
 * (cJSON_Delete); NULL when out of memory. */
cJSON *twin_identity_to_json(const twin_identity *id);

/* Create identity device_id from spec, an IoT Hub identity object or NULL
 * for all defaults (enabled, sas). Missing or "" symmetric keys of a sas
 * identity are generated from OpenSSL's RNG. The twin is created with it
 * (version 2, both section $versions 1). spec's "deviceId", when present,
 * must equal device_id; broker-maintained fields in spec are ignored.
 * Errors: TWIN_E_INVALID (bad id or field, message names it), TWIN_E_EXISTS,
 * TWIN_E_STORAGE, TWIN_E_NOMEM. out may be NULL. */
twin_err twin_device_create(twin_store *s, const char *device_id, const cJSON *spec,
                            twin_identity *out, twin_error *err);

/* Read identity device_id into out. TWIN_E_NOT_FOUND when it does not exist. */
twin_err twin_device_get(twin_store *s, const char *device_id, twin_identity *out, twin_error *err);

/* Update identity device_id from spec (PUT semantics for the fields spec
 * has: status, statusReason, authentication; absent fields keep their value;
 * "" keys are regenerated). if_match: NULL or "*" for unconditional, else a
 * deviceEtag, quoted or not; a mismatch is TWIN_E_PRECONDITION. The identity
 * etag changes; the twin's version and etag do not. out may be NULL. */
twin_err twin_device_update(twin_store *s, const char *device_id, const cJSON *spec,
                            const char *if_match, twin_identity *out, twin_error *err);

/* Delete identity device_id and its twin. if_match as for update. */
twin_err twin_device_delete(twin_store *s, const char *device_id, const char *if_match,
                            twin_error *err);

/* Most identities one listDevices page returns, and the default page. */
#define TWIN_LIST_MAX     1000
#define TWIN_LIST_DEFAULT 100

/* One page of identities in deviceId byte order (PROTOCOL.md §7, listDevices):
 * *page = {"devices":[identity…],"continuationToken":"…"|null}, at most max
 * (1…TWIN_LIST_MAX) identities starting after the point continuation (NULL
 * or "" for the first page; otherwise a token from an earlier page, opaque
 * to callers) names. The token is null on the last page. A page reflects
 * the registry when it is read: identities created or deleted between pages
 * may or may not appear. Caller owns *page (cJSON_Delete).
 * Errors: TWIN_E_INVALID (bad max or token), TWIN_E_STORAGE, TWIN_E_NOMEM. */
twin_err twin_device_list(twin_store *s, const char *continuation, size_t max, cJSON **page,
                          twin_error *err);

/* Record a connect (connected != 0) or disconnect of device_id at the store's
 * clock. A system-field change: neither the twin version nor an etag moves. */
twin_err twin_device_set_connected(twin_store *s, const char *device_id, int connected,
                                   twin_error *err);

/* Mark every identity disconnected (at start-up: a broker that died or
 * stopped left its devices marked connected). *count, if not NULL, is how
 * many were marked connected. Joins the batch. */
twin_err twin_registry_reset_connections(twin_store *s, size_t *count, twin_error *err);

/* Record device activity at ticks (lastActivityTime); a system field like
 * the connection state. Callers rate-limit it (§4: at most once per 60 s). */
twin_err twin_device_set_activity(twin_store *s, const char *device_id, int64_t ticks,
                                  twin_error *err);

#endif
