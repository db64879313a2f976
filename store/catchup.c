/*
 * catchup.c - session state and the catch-up notification (PROTOCOL.md §3.1).
 *
 * A device that was offline (or never re-subscribes, like the official SDKs)
 * has seen desired version L; the broker holds version V. The catch-up body
 * is the change from L to V, computed without storing old documents:
 *
 *   - changed and added keys: every node whose $lastUpdatedVersion is > L
 *     (a write stamps each node it sets and every ancestor, §4.1);
 *   - removed keys: tombstones, path -> version of the write that removed
 *     the key. Every key present before a desired write and absent after it
 *     gets one, descendants of removed objects included, so a device whose
 *     old copy holds {"o":{"x":1}} learns "o.x" is gone even when "o" was
 *     deleted and then re-created.
 *
 * Tombstones are kept per twin, the newest TWIN_TOMBSTONES_MAX of them. When
 * older ones were dropped ("$floor" records the newest dropped version) and
 * L is older than that, the body is the whole document at V plus the
 * tombstones still known: the §3.1 "history not available" form.
 *
 * Records (store/db.h): 'S' session state (binary), 'X' tombstones (JSON
 * object {"a.b": version, …, "$floor": version}; '.' cannot occur in keys).
 */
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "twin/doc.h"
#include "twin/json.h"
#include "twin/twin.h"
#include "twin_records.h"

#define FLOOR_KEY "$floor"

typedef struct session_record {
	int32_t res_qos;
	int32_t desired_qos;
	int64_t notified_version;
	int64_t connection_base;
} session_record;

twin_err twin_session_get(twin_store *s, const char *device_id, twin_session *out, twin_error *err)
{
	session_record rec = {-1, -1, 1, 1};
	MDB_val v;
	twin_err rc = db_read_begin(s, err);

	if (rc != TWIN_OK)
		return rc;
	rc = twin_record_get(s, device_id, TWIN_KIND_SESSION, &v, err);
	if (rc == TWIN_E_NOT_FOUND) /* no session yet: does the twin exist? */
		rc = twin_record_get(s, device_id, TWIN_KIND_VERSION, &v, err) == TWIN_OK
		             ? TWIN_OK
		             : twin_error_set(err, TWIN_E_NOT_FOUND, "Device '%s' not found.",
		                              device_id);
	else if (rc == TWIN_OK && v.mv_size == sizeof(rec))
		memcpy(&rec, v.mv_data, sizeof(rec));
	else if (rc == TWIN_OK)
		rc = twin_error_set(err, TWIN_E_STORAGE, "Storage error: bad session record.");
	db_read_end(s);
	out->res_qos = rec.res_qos;
	out->desired_qos = rec.desired_qos;
	out->notified_version = rec.notified_version;
	out->connection_base = rec.connection_base;
	return rc;
}

twin_err twin_session_put(twin_store *s, const char *device_id, const twin_session *in,
                          twin_error *err)
{
	session_record rec = {in->res_qos, in->desired_qos, in->notified_version,
	                      in->connection_base};
	twin_err rc = db_write_begin(s, err);

	if (rc == TWIN_OK)
		rc = twin_record_put(s, device_id, TWIN_KIND_SESSION, &rec, sizeof(rec), err);
	return rc;
}

/* "prefix.key", or "key" at the root; malloc'd. */
static char *path_join(const char *prefix, const char *key)
{
	size_t p = prefix ? strlen(prefix) : 0, k = strlen(key);
	char *out = malloc(p + k + 2);

	if (out == NULL)
		return NULL;
	if (p) {
		memcpy(out, prefix, p);
		out[p++] = '.';
	}
	memcpy(out + p, key, k + 1);
	return out;
}

static int tomb_set(cJSON *tombs, const char *path, int64_t version)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(tombs, path);

	if (v != NULL) {
		cJSON_SetNumberValue(v, (double)version);
		return 1;
	}
	return cJSON_AddNumberToObject(tombs, path, (double)version) != NULL;
}

/* Tombstone every key of old (under prefix) that new does not hold, and the
 * descendants of every removed or de-objectified object. */
static int collect_removed(const cJSON *old, const cJSON *new, const char *prefix, cJSON *tombs,
                           int64_t version)
{
	for (const cJSON *o = old->child; o != NULL; o = o->next) {
		const cJSON *n = new ? cJSON_GetObjectItemCaseSensitive(new, o->string) : NULL;
		char *path = path_join(prefix, o->string);
		int ok = path != NULL;

		if (ok && n == NULL)
			ok = tomb_set(tombs, path, version);
		if (ok && cJSON_IsObject(o))
			ok = collect_removed(o, cJSON_IsObject(n) ? n : NULL, path, tombs, version);
		free(path);
		if (!ok)
			return 0;
	}
	return 1;
}

/* The member of obj named name[0..n), or NULL. */
static const cJSON *member(const cJSON *obj, const char *name, size_t n)
{
	for (const cJSON *c = obj->child; c != NULL; c = c->next)
		if (c->string != NULL && strncmp(c->string, name, n) == 0 && c->string[n] == '\0')
			return c;
	return NULL;
}

/* The node at a dotted path of data, or NULL. *parent_is_object tells
 * whether the path's direct parent exists as an object. Allocates nothing:
 * a missing key must never be the result of memory running out (a catch-up
 * would then leave out a removal). */
static const cJSON *path_find(const cJSON *data, const char *path, int *parent_is_object)
{
	const cJSON *node = data;
	const char *seg = path;

	*parent_is_object = 0;
	for (;;) {
		const char *dot = strchr(seg, '.');
		size_t n = dot ? (size_t)(dot - seg) : strlen(seg);

		if (!cJSON_IsObject(node))
			return NULL;
		node = member(node, seg, n);
		if (dot == NULL) {
			*parent_is_object = 1;
			return node;
		}
		if (node == NULL)
			return NULL;
		seg = dot + 1;
	}
}

static twin_err load_tombstones(twin_store *s, const char *device_id, cJSON **out, twin_error *err)
{
	MDB_val v;
	twin_err rc = twin_record_get(s, device_id, TWIN_KIND_TOMBSTONES, &v, err);

	*out = NULL;
	if (rc == TWIN_E_NOT_FOUND) {
		*out = cJSON_CreateObject();
		return *out ? TWIN_OK : twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	}
	if (rc != TWIN_OK)
		return rc;
	rc = twin_json_parse(v.mv_data, v.mv_size, INT64_MIN, INT64_MAX, out, err);
	if (rc == TWIN_OK && !cJSON_IsObject(*out)) {
		cJSON_Delete(*out);
		*out = NULL;
		rc = twin_error_set(err, TWIN_E_STORAGE, "Storage error: bad tombstone record.");
	}
	return rc;
}

/* Keep the newest TWIN_TOMBSTONES_MAX; remember the newest dropped version. */
static void tombstones_prune(cJSON *tombs)
{
	int n = cJSON_GetArraySize(tombs) - (cJSON_GetObjectItem(tombs, FLOOR_KEY) ? 1 : 0);

	while (n-- > TWIN_TOMBSTONES_MAX) {
		cJSON *oldest = NULL, *floor;

		for (cJSON *t = tombs->child; t != NULL; t = t->next)
			if (strcmp(t->string, FLOOR_KEY) != 0 &&
			    (oldest == NULL || t->valuedouble < oldest->valuedouble))
				oldest = t;
		floor = cJSON_GetObjectItem(tombs, FLOOR_KEY);
		if (floor == NULL)
			cJSON_AddNumberToObject(tombs, FLOOR_KEY, oldest->valuedouble);
		else if (oldest->valuedouble > floor->valuedouble)
			cJSON_SetNumberValue(floor, oldest->valuedouble);
		cJSON_Delete(cJSON_DetachItemViaPointer(tombs, oldest));
	}
}

twin_err twin_tombstones_record(twin_store *s, const char *device_id, const cJSON *old_data,
                                const cJSON *new_data, int64_t version, twin_error *err)
{
	cJSON *tombs = NULL, *t, *next;
	char *text = NULL;
	int parent_ok;
	twin_err rc = load_tombstones(s, device_id, &tombs, err);

	if (rc == TWIN_OK && !collect_removed(old_data, new_data, NULL, tombs, version))
		rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	/* A key that exists again needs no tombstone. */
	for (t = rc == TWIN_OK ? tombs->child : NULL; t != NULL; t = next) {
		next = t->next;
		if (strcmp(t->string, FLOOR_KEY) != 0 && path_find(new_data, t->string, &parent_ok))
			cJSON_Delete(cJSON_DetachItemViaPointer(tombs, t));
	}
	if (rc == TWIN_OK)
		tombstones_prune(tombs);
	if (rc == TWIN_OK && tombs->child == NULL)
		rc = twin_record_del(s, device_id, TWIN_KIND_TOMBSTONES, err);
	else if (rc == TWIN_OK && (text = twin_json_print(tombs)) == NULL)
		rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	else if (rc == TWIN_OK)
		rc = twin_record_put(s, device_id, TWIN_KIND_TOMBSTONES, text, strlen(text), err);
	if (rc != TWIN_OK && twin_store_batch_open(s))
		db_fail_batch(s); /* the desired write itself is already in */
	free(text);
	cJSON_Delete(tombs);
	return rc;
}

static int64_t meta_version(const cJSON *meta, const char *key)
{
	const cJSON *m = meta ? cJSON_GetObjectItemCaseSensitive(meta, key) : NULL;
	const cJSON *v = m ? cJSON_GetObjectItemCaseSensitive(m, "$lastUpdatedVersion") : NULL;

	return cJSON_IsNumber(v) ? (int64_t)v->valuedouble : INT64_MAX;
}

/* The members of data written after since, recursively. */
static cJSON *changed_since(const cJSON *data, const cJSON *meta, int64_t since)
{
	cJSON *out = cJSON_CreateObject();

	for (const cJSON *d = data->child; out != NULL && d != NULL; d = d->next) {
		cJSON *item;

		if (meta_version(meta, d->string) <= since)
			continue;
		item = cJSON_IsObject(d)
		               ? changed_since(d, cJSON_GetObjectItemCaseSensitive(meta, d->string),
		                               since)
		               : cJSON_Duplicate(d, 1);
		if (item == NULL || !cJSON_AddItemToObject(out, d->string, item)) {
			cJSON_Delete(item);
			cJSON_Delete(out);
			out = NULL;
		}
	}
	return out;
}

/* diff[path] = null, creating the intermediate objects. */
static int put_null_at(cJSON *diff, const char *path)
{
	char *copy = strdup(path), *save = NULL, *seg, *next;
	cJSON *node = diff;
	int ok = copy != NULL;

	for (seg = ok ? strtok_r(copy, ".", &save) : NULL; ok && seg != NULL; seg = next) {
		cJSON *child = cJSON_GetObjectItemCaseSensitive(node, seg);

		next = strtok_r(NULL, ".", &save);
		if (next == NULL) {
			if (child == NULL)
				ok = cJSON_AddNullToObject(node, seg) != NULL;
			break;
		}
		if (child == NULL)
			child = cJSON_AddObjectToObject(node, seg);
		ok = cJSON_IsObject(child);
		node = child;
	}
	free(copy);
	return ok;
}

static int add_tombstones(cJSON *diff, const cJSON *data, const cJSON *tombs, int64_t since)
{
	for (const cJSON *t = tombs->child; t != NULL; t = t->next) {
		int parent_ok;

		if (strcmp(t->string, FLOOR_KEY) == 0 || (int64_t)t->valuedouble <= since)
			continue;
		/* Only keys absent now whose parent object exists: a removed
		 * ancestor carries the removal of its whole subtree. */
		if (path_find(data, t->string, &parent_ok) == NULL && parent_ok &&
		    !put_null_at(diff, t->string))
			return 0;
	}
	return 1;
}

twin_err twin_desired_since(twin_store *s, const char *device_id, int64_t since, char **out,
                            size_t *len, int64_t *version, twin_error *err)
{
	cJSON *data = NULL, *meta = NULL, *tombs = NULL, *diff = NULL, *floor;
	twin_err rc = db_read_begin(s, err);

	*out = NULL;
	*len = 0;
	if (rc != TWIN_OK)
		return rc;
	/* The common case, nothing missed, costs no parse. */
	rc = twin_desired_version(s, device_id, version, err);
	if (rc == TWIN_OK && *version > since)
		rc = twin_desired_load(s, device_id, &data, &meta, version, err);
	if (rc == TWIN_OK && *version > since)
		rc = load_tombstones(s, device_id, &tombs, err);
	db_read_end(s);
	if (rc != TWIN_OK || *version <= since)
		goto out;
	floor = cJSON_GetObjectItem(tombs, FLOOR_KEY);
	if (floor != NULL && since < (int64_t)floor->valuedouble)
		diff = cJSON_Duplicate(data, 1); /* history not available */
	else
		diff = changed_since(data, meta, since);
	if (diff == NULL || !add_tombstones(diff, data, tombs, since))
		rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	else
		rc = twin_print_with_version(diff, *version, out, len, err);
out:
	cJSON_Delete(diff);
	cJSON_Delete(tombs);
	cJSON_Delete(data);
	cJSON_Delete(meta);
	return rc;
}
