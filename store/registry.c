/*
 * registry.c - device identities (PROTOCOL.md §7). Their stored form is in
 * registry_record.h, paging in registry_list.c.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "changes_log.h"
#include "db.h"
#include "key.h"
#include "twin/doc.h"
#include "twin/registry.h"
#include "registry_record.h"
#include "twin_records.h"

static const char *auth_names[] = {
        [TWIN_AUTH_SAS] = "sas",
        [TWIN_AUTH_SELF_SIGNED] = "selfSigned",
        [TWIN_AUTH_CA] = "certificateAuthority",
        [TWIN_AUTH_NONE] = "none",
};

const char *twin_auth_type_name(twin_auth_type t)
{
	return auth_names[t];
}

int twin_device_id_valid(const char *id)
{
	static const char extra[] = "-:.+%_#*?!(),=@;$'";
	size_t n = id ? strlen(id) : 0;

	if (n == 0 || n > TWIN_DEVICE_ID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)id[i];

		if (!(c < 0x80 && (isalnum(c) || strchr(extra, c) != NULL)))
			return 0;
	}
	return 1;
}

void twin_identity_etag(const twin_identity *id, char out[TWIN_ETAG_MAX])
{
	char dec[24];
	int n = snprintf(dec, sizeof(dec), "%" PRIu64, id->etag_counter);

	EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)dec, n);
}

/* Set *key from spec member name: absent or "" generates one, else it must be
 * base64 of 16–64 bytes. */
static twin_err key_from_spec(const cJSON *sym, const char *name, char *key, twin_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(sym, name);

	if (v == NULL || cJSON_IsNull(v) || (cJSON_IsString(v) && v->valuestring[0] == '\0'))
		return key_generate(key, err);
	if (!cJSON_IsString(v))
		return twin_error_set(err, TWIN_E_INVALID,
		                      "authentication.symmetricKey.%s must be a string.", name);
	if (!key_b64_valid(v->valuestring))
		return twin_error_set(
		        err, TWIN_E_INVALID,
		        "authentication.symmetricKey.%s must be base64 of %d to %d bytes.", name,
		        TWIN_SYM_KEY_MIN_BYTES, TWIN_SYM_KEY_MAX_BYTES);
	snprintf(key, TWIN_SYM_KEY_B64_MAX + 1, "%s", v->valuestring);
	return TWIN_OK;
}

static twin_err thumbprint_from_spec(const cJSON *x509, const char *name, char *out,
                                     twin_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(x509, name);
	size_t n;

	out[0] = '\0';
	if (v == NULL || cJSON_IsNull(v) || (cJSON_IsString(v) && v->valuestring[0] == '\0'))
		return TWIN_OK;
	n = cJSON_IsString(v) ? strlen(v->valuestring) : 0;
	for (size_t i = 0; i < n; i++)
		if (!isxdigit((unsigned char)v->valuestring[i]))
			n = 0;
	if (n != 40 && n != 64)
		return twin_error_set(
		        err, TWIN_E_INVALID,
		        "authentication.x509Thumbprint.%s must be 40 or 64 hex digits.", name);
	for (size_t i = 0; i <= n; i++)
		out[i] = (char)toupper((unsigned char)v->valuestring[i]);
	return TWIN_OK;
}

static twin_err auth_type_from_spec(const cJSON *auth, twin_auth_type *type, twin_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(auth, "type");

	if (v == NULL)
		return TWIN_OK;
	for (int t = TWIN_AUTH_SAS; cJSON_IsString(v) && t <= TWIN_AUTH_NONE; t++) {
		if (strcmp(v->valuestring, auth_names[t]) == 0) {
			*type = (twin_auth_type)t;
			return TWIN_OK;
		}
	}
	return twin_error_set(err, TWIN_E_INVALID,
	                      "authentication.type must be one of sas, selfSigned, "
	                      "certificateAuthority, none.");
}

/* Apply spec.authentication to id. Keys exist only for sas identities,
 * thumbprints only for selfSigned ones. */
static twin_err auth_from_spec(const cJSON *auth, twin_identity *id, int creating, twin_error *err)
{
	const cJSON *sym = cJSON_GetObjectItemCaseSensitive(auth, "symmetricKey");
	const cJSON *x509 = cJSON_GetObjectItemCaseSensitive(auth, "x509Thumbprint");
	twin_err rc;

	if (auth != NULL && !cJSON_IsObject(auth))
		return twin_error_set(err, TWIN_E_INVALID, "authentication must be a JSON object.");
	if (auth == NULL && !creating)
		return TWIN_OK;
	rc = auth_type_from_spec(auth, &id->auth_type, err);
	id->primary_key[0] = id->secondary_key[0] = '\0';
	id->primary_thumbprint[0] = id->secondary_thumbprint[0] = '\0';
	if (rc == TWIN_OK && id->auth_type == TWIN_AUTH_SAS) {
		rc = key_from_spec(sym, "primaryKey", id->primary_key, err);
		if (rc == TWIN_OK)
			rc = key_from_spec(sym, "secondaryKey", id->secondary_key, err);
	}
	if (rc == TWIN_OK && id->auth_type == TWIN_AUTH_SELF_SIGNED) {
		rc = thumbprint_from_spec(x509, "primaryThumbprint", id->primary_thumbprint, err);
		if (rc == TWIN_OK)
			rc = thumbprint_from_spec(x509, "secondaryThumbprint",
			                          id->secondary_thumbprint, err);
		if (rc == TWIN_OK && !id->primary_thumbprint[0] && !id->secondary_thumbprint[0])
			rc = twin_error_set(err, TWIN_E_INVALID,
			                    "A selfSigned identity needs a thumbprint.");
	}
	return rc;
}

static twin_err status_from_spec(twin_store *s, const cJSON *spec, twin_identity *id,
                                 twin_error *err)
{
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(spec, "status");
	const cJSON *why = cJSON_GetObjectItemCaseSensitive(spec, "statusReason");
	int enabled = id->enabled;

	if (st != NULL) {
		if (cJSON_IsString(st) && strcmp(st->valuestring, "enabled") == 0)
			enabled = 1;
		else if (cJSON_IsString(st) && strcmp(st->valuestring, "disabled") == 0)
			enabled = 0;
		else
			return twin_error_set(err, TWIN_E_INVALID,
			                      "status must be \"enabled\" or \"disabled\".");
	}
	if (why != NULL && !cJSON_IsNull(why)) {
		if (!cJSON_IsString(why) || strlen(why->valuestring) > TWIN_STATUS_REASON_MAX)
			return twin_error_set(
			        err, TWIN_E_INVALID,
			        "statusReason must be a string of at most %d characters.",
			        TWIN_STATUS_REASON_MAX);
		snprintf(id->status_reason, sizeof(id->status_reason), "%s", why->valuestring);
	} else if (why != NULL) {
		id->status_reason[0] = '\0';
	}
	if (enabled != id->enabled)
		id->status_updated = twin_store_now(s);
	id->enabled = enabled;
	return TWIN_OK;
}

/* Apply the writable fields of spec (status, statusReason, authentication). */
static twin_err identity_from_spec(twin_store *s, const char *device_id, const cJSON *spec,
                                   twin_identity *id, int creating, twin_error *err)
{
	const cJSON *sid;
	twin_err rc;

	if (spec == NULL)
		return creating ? auth_from_spec(NULL, id, 1, err) : TWIN_OK;
	if (!cJSON_IsObject(spec))
		return twin_error_set(err, TWIN_E_INVALID, "The identity must be a JSON object.");
	sid = cJSON_GetObjectItemCaseSensitive(spec, "deviceId");
	if (sid != NULL && !(cJSON_IsString(sid) && strcmp(sid->valuestring, device_id) == 0))
		return twin_error_set(err, TWIN_E_INVALID,
		                      "deviceId in the body does not match '%s'.", device_id);
	rc = status_from_spec(s, spec, id, err);
	if (rc == TWIN_OK)
		rc = auth_from_spec(cJSON_GetObjectItemCaseSensitive(spec, "authentication"), id,
		                    creating, err);
	return rc;
}

twin_err twin_device_id_check(const char *device_id, twin_error *err)
{
	if (!twin_device_id_valid(device_id))
		return twin_error_set(err, TWIN_E_INVALID,
		                      "Invalid deviceId: 1-128 ASCII letters, digits or "
		                      "-:.+%%_#*?!(),=@;$' are allowed.");
	return TWIN_OK;
}

static twin_err load_identity(twin_store *s, const char *device_id, twin_identity *out,
                              twin_error *err)
{
	MDB_val v;
	twin_err rc = db_get(s, DB_DEVICES, device_id, strlen(device_id), &v, err);

	if (rc == TWIN_E_NOT_FOUND)
		return twin_error_set(err, rc, "Device '%s' not found.", device_id);
	if (rc != TWIN_OK)
		return rc;
	return registry_record_decode(&v, out, err);
}

static twin_err store_identity(twin_store *s, const twin_identity *id, twin_error *err)
{
	unsigned char rec[REGISTRY_RECORD_MAX];
	size_t n = registry_record_encode(id, rec);

	return db_put(s, DB_DEVICES, id->device_id, strlen(id->device_id), rec, n, err);
}

twin_err twin_device_get(twin_store *s, const char *device_id, twin_identity *out, twin_error *err)
{
	twin_err rc = twin_device_id_check(device_id, err);

	if (rc == TWIN_OK)
		rc = db_read_begin(s, err);
	if (rc != TWIN_OK)
		return rc;
	rc = load_identity(s, device_id, out, err);
	db_read_end(s);
	return rc;
}

twin_err twin_device_create(twin_store *s, const char *device_id, const cJSON *spec,
                            twin_identity *out, twin_error *err)
{
	twin_identity id, existing;
	uint64_t gen;
	twin_err rc = twin_device_id_check(device_id, err);

	memset(&id, 0, sizeof(id));
	snprintf(id.device_id, sizeof(id.device_id), "%s", device_id);
	id.enabled = 1;
	id.etag_counter = 1;
	if (rc == TWIN_OK)
		rc = identity_from_spec(s, device_id, spec, &id, 1, err);
	if (rc == TWIN_OK && RAND_bytes((unsigned char *)&gen, sizeof(gen)) != 1)
		rc = twin_error_set(err, TWIN_E_STORAGE, "Random number generator failed.");
	if (rc == TWIN_OK)
		rc = db_write_begin(s, err);
	if (rc == TWIN_OK) {
		rc = load_identity(s, device_id, &existing, err);
		if (rc == TWIN_OK)
			return twin_error_set(err, TWIN_E_EXISTS, "Device '%s' already exists.",
			                      device_id);
		if (rc == TWIN_E_NOT_FOUND)
			rc = TWIN_OK;
	}
	if (rc != TWIN_OK)
		return rc;
	/* generationId tells a re-created identity from the deleted one. */
	snprintf(id.generation_id, sizeof(id.generation_id), "%018" PRIu64,
	         gen % UINT64_C(1000000000000000000));
	rc = store_identity(s, &id, err);
	if (rc == TWIN_OK)
		rc = twin_records_create(s, device_id, err);
	if (rc == TWIN_OK)
		rc = changes_append_twin(s, TWIN_OP_CREATE_IDENTITY, device_id, err);
	if (rc == TWIN_OK && out != NULL)
		*out = id;
	return rc;
}

/* The updateDeviceIdentity entry: the identity as it is now, without its
 * keys (event subscribers need not see device secrets). */
static twin_err log_identity(twin_store *s, const twin_identity *id, twin_error *err)
{
	cJSON *body = twin_identity_to_json(id);
	char *text;
	twin_err rc;

	cJSON_DeleteItemFromObjectCaseSensitive(
	        cJSON_GetObjectItemCaseSensitive(body, "authentication"), "symmetricKey");
	text = body ? twin_json_print(body) : NULL;
	cJSON_Delete(body);
	if (text == NULL) {
		db_fail_batch(s);
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	}
	rc = changes_append(s, TWIN_OP_UPDATE_IDENTITY, id->device_id, 0, text, strlen(text), err);
	cJSON_free(text);
	return rc;
}

/* Load for a write and check the identity etag. */
static twin_err load_for_update(twin_store *s, const char *device_id, const char *if_match,
                                twin_identity *id, twin_error *err)
{
	char etag[TWIN_ETAG_MAX];
	twin_err rc = twin_device_id_check(device_id, err);

	if (rc == TWIN_OK)
		rc = db_write_begin(s, err);
	if (rc == TWIN_OK)
		rc = load_identity(s, device_id, id, err);
	if (rc != TWIN_OK)
		return rc;
	twin_identity_etag(id, etag);
	if (!twin_etag_matches(if_match, etag))
		return twin_error_set(err, TWIN_E_PRECONDITION,
		                      "Precondition failed: the device etag is %s.", etag);
	return TWIN_OK;
}

twin_err twin_device_update(twin_store *s, const char *device_id, const cJSON *spec,
                            const char *if_match, twin_identity *out, twin_error *err)
{
	twin_identity id, updated;
	twin_err rc = load_for_update(s, device_id, if_match, &id, err);

	if (rc != TWIN_OK)
		return rc;
	updated = id;
	rc = identity_from_spec(s, device_id, spec, &updated, 0, err);
	if (rc != TWIN_OK)
		return rc;
	updated.etag_counter++;
	rc = store_identity(s, &updated, err);
	if (rc == TWIN_OK)
		rc = log_identity(s, &updated, err);
	if (rc == TWIN_OK && out != NULL)
		*out = updated;
	return rc;
}

twin_err twin_device_delete(twin_store *s, const char *device_id, const char *if_match,
                            twin_error *err)
{
	twin_identity id;
	twin_err rc = load_for_update(s, device_id, if_match, &id, err);

	/* The twin as it was, and the end of a live connection, go first. */
	if (rc == TWIN_OK && id.connected)
		rc = changes_append(s, TWIN_OP_DISCONNECTED, device_id, 1, NULL, 0, err);
	if (rc == TWIN_OK)
		rc = changes_append_twin(s, TWIN_OP_DELETE_IDENTITY, device_id, err);
	if (rc == TWIN_OK)
		rc = db_del(s, DB_DEVICES, device_id, strlen(device_id), err);
	if (rc == TWIN_OK)
		rc = db_del(s, DB_CONNECTED, device_id, strlen(device_id), err);
	if (rc == TWIN_OK)
		rc = twin_records_delete(s, device_id, err);
	return rc;
}

twin_err twin_device_set_connected(twin_store *s, const char *device_id, int connected,
                                   twin_error *err)
{
	twin_identity id;
	int64_t now = twin_store_now(s);
	twin_err rc = twin_device_id_check(device_id, err);

	if (rc == TWIN_OK)
		rc = db_write_begin(s, err);
	if (rc == TWIN_OK)
		rc = load_identity(s, device_id, &id, err);
	if (rc != TWIN_OK)
		return rc;
	/* §9: a takeover (connect while connected) is a disconnect, then a
	 * connect; a disconnect of a device not connected is nothing. */
	if (id.connected)
		rc = changes_append(s, TWIN_OP_DISCONNECTED, device_id, 1, NULL, 0, err);
	if (rc == TWIN_OK && connected)
		rc = changes_append(s, TWIN_OP_CONNECTED, device_id, 1, NULL, 0, err);
	if (rc != TWIN_OK)
		return rc;
	id.connected = connected != 0;
	id.connection_state_updated = now;
	if (connected)
		id.last_activity = now;
	rc = connected ? db_put(s, DB_CONNECTED, device_id, strlen(device_id), "", 0, err)
	               : db_del(s, DB_CONNECTED, device_id, strlen(device_id), err);
	return rc == TWIN_OK ? store_identity(s, &id, err) : rc;
}

twin_err twin_device_set_activity(twin_store *s, const char *device_id, int64_t ticks,
                                  twin_error *err)
{
	twin_identity id;
	twin_err rc = twin_device_id_check(device_id, err);

	if (rc == TWIN_OK)
		rc = db_write_begin(s, err);
	if (rc == TWIN_OK)
		rc = load_identity(s, device_id, &id, err);
	if (rc != TWIN_OK || id.last_activity >= ticks)
		return rc;
	id.last_activity = ticks;
	return store_identity(s, &id, err);
}

twin_err twin_registry_reset_connections(twin_store *s, size_t *count, twin_error *err)
{
	char(*ids)[TWIN_DEVICE_ID_MAX + 1] = NULL;
	size_t n = 0, cap = 0;
	MDB_cursor *cur;
	MDB_val k, v;
	twin_err rc = db_write_begin(s, err);
	int mrc;

	if (rc != TWIN_OK)
		return rc;
	/* The connected table lists exactly the devices marked connected. */
	if (mdb_cursor_open(s->wtxn, s->dbi[DB_CONNECTED], &cur) != 0)
		return twin_error_set(err, TWIN_E_STORAGE, "Storage error: cursor.");
	/* Collect first: writes go through db_put (and its write log), which a
	 * live cursor would not survive. */
	for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == TWIN_OK;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size > TWIN_DEVICE_ID_MAX)
			continue;
		if (n == cap) {
			void *p = realloc(ids, (cap = cap ? cap * 2 : 64) * sizeof(*ids));

			if (p == NULL)
				rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
			else
				ids = p;
		}
		if (rc == TWIN_OK)
			snprintf(ids[n++], sizeof(ids[0]), "%.*s", (int)k.mv_size,
			         (char *)k.mv_data);
	}
	mdb_cursor_close(cur);
	for (size_t i = 0; i < n && rc == TWIN_OK; i++) {
		rc = twin_device_set_connected(s, ids[i], 0, err);
		if (rc == TWIN_E_NOT_FOUND) /* a stale entry: drop it */
			rc = db_del(s, DB_CONNECTED, ids[i], strlen(ids[i]), err);
	}
	free(ids);
	if (count != NULL)
		*count = n;
	return rc;
}

static int add_string_or_null(cJSON *obj, const char *name, const char *value)
{
	return (value[0] ? cJSON_AddStringToObject(obj, name, value)
	                 : cJSON_AddNullToObject(obj, name)) != NULL;
}

static int add_time(cJSON *obj, const char *name, int64_t ticks)
{
	char ts[TWIN_TIMESTAMP_MAX];

	twin_timestamp_format(ticks, ts);
	return cJSON_AddStringToObject(obj, name, ts) != NULL;
}

cJSON *twin_identity_to_json(const twin_identity *id)
{
	char etag[TWIN_ETAG_MAX];
	cJSON *o = cJSON_CreateObject(), *auth, *sym, *x509, *caps;
	int ok = o != NULL;

	twin_identity_etag(id, etag);
	ok = ok && cJSON_AddStringToObject(o, "deviceId", id->device_id);
	ok = ok && cJSON_AddStringToObject(o, "generationId", id->generation_id);
	ok = ok && cJSON_AddStringToObject(o, "etag", etag);
	ok = ok && cJSON_AddStringToObject(o, "connectionState",
	                                   id->connected ? "Connected" : "Disconnected");
	ok = ok && cJSON_AddStringToObject(o, "status", id->enabled ? "enabled" : "disabled");
	ok = ok && add_string_or_null(o, "statusReason", id->status_reason);
	ok = ok && add_time(o, "connectionStateUpdatedTime", id->connection_state_updated);
	ok = ok && add_time(o, "statusUpdatedTime", id->status_updated);
	ok = ok && add_time(o, "lastActivityTime", id->last_activity);
	ok = ok && cJSON_AddNumberToObject(o, "cloudToDeviceMessageCount", 0);
	ok = ok && (auth = cJSON_AddObjectToObject(o, "authentication")) != NULL;
	ok = ok && (sym = cJSON_AddObjectToObject(auth, "symmetricKey")) != NULL;
	ok = ok && add_string_or_null(sym, "primaryKey", id->primary_key);
	ok = ok && add_string_or_null(sym, "secondaryKey", id->secondary_key);
	ok = ok && (x509 = cJSON_AddObjectToObject(auth, "x509Thumbprint")) != NULL;
	ok = ok && add_string_or_null(x509, "primaryThumbprint", id->primary_thumbprint);
	ok = ok && add_string_or_null(x509, "secondaryThumbprint", id->secondary_thumbprint);
	ok = ok && cJSON_AddStringToObject(auth, "type", auth_names[id->auth_type]);
	ok = ok && (caps = cJSON_AddObjectToObject(o, "capabilities")) != NULL;
	ok = ok && cJSON_AddFalseToObject(caps, "iotEdge");
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}
