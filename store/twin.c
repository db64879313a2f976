/*
 * twin.c - twin reads and writes over LMDB (PROTOCOL.md §2.3, §4, §5).
 *
 * A twin is four records (store/db.h): 'V' the twin version, 'T' tags,
 * 'D' desired, 'R' reported. Sections are stored apart so a reported patch
 * rewrites neither tags nor desired. A section record is
 *
 *     int64 $version | uint32 data length | data JSON | metadata JSON
 *
 * with data and metadata as separate compact JSON texts: the device GET
 * body is spliced from the two data texts without parsing anything.
 *
 * Every write parses and validates its whole input before it touches the
 * batch, and merges into scratch trees that are dropped on any failure, so a
 * rejected write leaves versions, etags and data exactly as they were.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "db.h"
#include "twin/doc.h"
#include "twin/json.h"
#include "twin/twin.h"
#include "twin_records.h"

#define TWIN_INITIAL_VERSION 2 /* as IoT Hub shows for a new twin (§4.2) */
#define KEY_MAX              (TWIN_DEVICE_ID_MAX + 2)

/* A section loaded for reading or rewriting. meta is NULL for tags. */
typedef struct section {
	int64_t version;
	cJSON *data;
	cJSON *meta;
} section;

static void section_free(section *sec)
{
	cJSON_Delete(sec->data);
	cJSON_Delete(sec->meta);
	memset(sec, 0, sizeof(*sec));
}

static size_t twin_key(char key[KEY_MAX], const char *device_id, char kind)
{
	size_t n = strlen(device_id);

	memcpy(key, device_id, n);
	key[n] = '\0';
	key[n + 1] = kind;
	return n + 2;
}

static twin_err corrupt(twin_error *err, const char *device_id)
{
	return twin_error_set(err, TWIN_E_STORAGE, "Storage error: corrupt twin record of '%s'.",
	                      device_id);
}

static twin_err not_found(twin_error *err, const char *device_id)
{
	return twin_error_set(err, TWIN_E_NOT_FOUND, "Device '%s' not found.", device_id);
}

twin_err twin_record_get(twin_store *s, const char *device_id, char kind, MDB_val *v,
                         twin_error *err)
{
	char key[KEY_MAX];
	twin_err rc = db_get(s, DB_TWINS, key, twin_key(key, device_id, kind), v, err);

	return rc == TWIN_E_NOT_FOUND ? not_found(err, device_id) : rc;
}

twin_err twin_record_put(twin_store *s, const char *device_id, char kind, const void *val,
                         size_t len, twin_error *err)
{
	char key[KEY_MAX];

	return db_put(s, DB_TWINS, key, twin_key(key, device_id, kind), val, len, err);
}

twin_err twin_record_del(twin_store *s, const char *device_id, char kind, twin_error *err)
{
	char key[KEY_MAX];

	return db_del(s, DB_TWINS, key, twin_key(key, device_id, kind), err);
}

static twin_err load_version(twin_store *s, const char *device_id, int64_t *version,
                             twin_error *err)
{
	MDB_val v;
	twin_err rc = twin_record_get(s, device_id, TWIN_KIND_VERSION, &v, err);

	if (rc != TWIN_OK)
		return rc;
	if (v.mv_size != sizeof(*version))
		return corrupt(err, device_id);
	memcpy(version, v.mv_data, sizeof(*version));
	return TWIN_OK;
}

/* Split a raw section record into its parts without parsing. */
static int record_split(const MDB_val *v, int64_t *version, const char **data, size_t *dlen,
                        const char **meta, size_t *mlen)
{
	const char *p = v->mv_data;
	uint32_t n;

	if (v->mv_size < sizeof(*version) + sizeof(n))
		return 0;
	memcpy(version, p, sizeof(*version));
	memcpy(&n, p + sizeof(*version), sizeof(n));
	if (n > v->mv_size - sizeof(*version) - sizeof(n))
		return 0;
	*data = p + sizeof(*version) + sizeof(n);
	*dlen = n;
	*meta = *data + n;
	*mlen = v->mv_size - sizeof(*version) - sizeof(n) - n;
	return 1;
}

static twin_err load_section(twin_store *s, const char *device_id, char kind, section *sec,
                             twin_error *err)
{
	const char *data, *meta;
	size_t dlen, mlen;
	MDB_val v;
	twin_err rc = twin_record_get(s, device_id, kind, &v, err);

	memset(sec, 0, sizeof(*sec));
	if (rc != TWIN_OK)
		return rc;
	if (!record_split(&v, &sec->version, &data, &dlen, &meta, &mlen))
		return corrupt(err, device_id);
	rc = twin_json_parse(data, dlen, INT64_MIN, INT64_MAX, &sec->data, NULL);
	if (rc == TWIN_OK && mlen > 0)
		rc = twin_json_parse(meta, mlen, INT64_MIN, INT64_MAX, &sec->meta, NULL);
	if (rc == TWIN_E_NOMEM) {
		section_free(sec);
		return twin_error_set(err, rc, "Out of memory.");
	}
	if (rc != TWIN_OK || !cJSON_IsObject(sec->data) ||
	    (mlen > 0 && !cJSON_IsObject(sec->meta))) {
		section_free(sec);
		return corrupt(err, device_id);
	}
	return TWIN_OK;
}

twin_err twin_desired_version(twin_store *s, const char *device_id, int64_t *version,
                              twin_error *err)
{
	const char *data, *meta;
	size_t dlen, mlen;
	MDB_val v;
	twin_err rc = twin_record_get(s, device_id, TWIN_KIND_DESIRED, &v, err);

	if (rc == TWIN_OK && !record_split(&v, version, &data, &dlen, &meta, &mlen))
		rc = corrupt(err, device_id);
	return rc;
}

twin_err twin_desired_load(twin_store *s, const char *device_id, cJSON **data, cJSON **meta,
                           int64_t *version, twin_error *err)
{
	section sec;
	twin_err rc = load_section(s, device_id, TWIN_KIND_DESIRED, &sec, err);

	*data = sec.data;
	*meta = sec.meta;
	*version = sec.version;
	return rc;
}

static twin_err put_raw_section(twin_store *s, const char *device_id, char kind, int64_t version,
                                const char *data, const char *meta, twin_error *err)
{
	char key[KEY_MAX];
	uint32_t dlen = (uint32_t)strlen(data);
	size_t mlen = meta ? strlen(meta) : 0, len = sizeof(version) + sizeof(dlen) + dlen + mlen;
	char *buf = malloc(len);
	twin_err rc;

	if (buf == NULL) {
		db_fail_batch(s); /* an earlier record of this operation may be in */
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	}
	memcpy(buf, &version, sizeof(version));
	memcpy(buf + sizeof(version), &dlen, sizeof(dlen));
	memcpy(buf + sizeof(version) + sizeof(dlen), data, dlen);
	if (mlen)
		memcpy(buf + sizeof(version) + sizeof(dlen) + dlen, meta, mlen);
	rc = db_put(s, DB_TWINS, key, twin_key(key, device_id, kind), buf, len, err);
	free(buf);
	return rc;
}

static twin_err store_section(twin_store *s, const char *device_id, char kind, const section *sec,
                              twin_error *err)
{
	char *data = cJSON_PrintUnformatted(sec->data);
	char *meta = sec->meta ? cJSON_PrintUnformatted(sec->meta) : NULL;
	twin_err rc;

	if (data == NULL || (sec->meta != NULL && meta == NULL)) {
		db_fail_batch(s); /* an earlier record of this operation may be in */
		rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	} else
		rc = put_raw_section(s, device_id, kind, sec->version, data, meta, err);
	free(data);
	free(meta);
	return rc;
}

static twin_err store_version(twin_store *s, const char *device_id, int64_t version,
                              twin_error *err)
{
	char key[KEY_MAX];

	return db_put(s, DB_TWINS, key, twin_key(key, device_id, TWIN_KIND_VERSION), &version,
	              sizeof(version), err);
}

twin_err twin_records_create(twin_store *s, const char *device_id, twin_error *err)
{
	static const char never[] = "{\"$lastUpdated\":\"0001-01-01T00:00:00Z\"}";
	twin_err rc = store_version(s, device_id, TWIN_INITIAL_VERSION, err);

	if (rc == TWIN_OK)
		rc = put_raw_section(s, device_id, TWIN_KIND_TAGS, 0, "{}", NULL, err);
	if (rc == TWIN_OK)
		rc = put_raw_section(s, device_id, TWIN_KIND_DESIRED, 1, "{}", never, err);
	if (rc == TWIN_OK)
		rc = put_raw_section(s, device_id, TWIN_KIND_REPORTED, 1, "{}", never, err);
	return rc;
}

twin_err twin_records_delete(twin_store *s, const char *device_id, twin_error *err)
{
	static const char kinds[] = {TWIN_KIND_DESIRED, TWIN_KIND_REPORTED, TWIN_KIND_SESSION,
	                             TWIN_KIND_TAGS,    TWIN_KIND_VERSION,  TWIN_KIND_TOMBSTONES};
	char key[KEY_MAX];
	twin_err rc = TWIN_OK;

	for (size_t i = 0; i < sizeof(kinds) && rc == TWIN_OK; i++)
		rc = db_del(s, DB_TWINS, key, twin_key(key, device_id, kinds[i]), err);
	return rc;
}

void twin_etag_format(int64_t version, char out[TWIN_ETAG_MAX])
{
	uint64_t v = (uint64_t)(version - 1);
	unsigned char be[8];

	for (int i = 7; i >= 0; i--, v >>= 8)
		be[i] = (unsigned char)(v & 0xff);
	EVP_EncodeBlock((unsigned char *)out, be, sizeof(be));
}

int twin_etag_matches(const char *if_match, const char *etag)
{
	size_t n;

	if (if_match == NULL || if_match[0] == '\0' || strcmp(if_match, "*") == 0)
		return 1;
	n = strlen(if_match);
	if (n >= 2 && if_match[0] == '"' && if_match[n - 1] == '"')
		return n - 2 == strlen(etag) && memcmp(if_match + 1, etag, n - 2) == 0;
	return strcmp(if_match, etag) == 0;
}

static twin_err check_etag(int64_t version, const char *if_match, twin_error *err)
{
	char etag[TWIN_ETAG_MAX];

	twin_etag_format(version, etag);
	if (!twin_etag_matches(if_match, etag))
		return twin_error_set(err, TWIN_E_PRECONDITION,
		                      "Precondition failed: the twin etag is %s.", etag);
	return TWIN_OK;
}

/* Append `"$version":v` as the last member of a JSON object text. */
static int append_with_version(char **buf, size_t *len, size_t *cap, const char *obj, size_t olen,
                               int64_t v)
{
	char tail[40];
	int tlen = snprintf(tail, sizeof(tail), "%s\"$version\":%lld}", olen > 2 ? "," : "",
	                    (long long)v);
	size_t need = *len + olen + (size_t)tlen + 1;

	if (need > *cap) {
		char *p = realloc(*buf, need * 2);

		if (p == NULL)
			return 0;
		*buf = p;
		*cap = need * 2;
	}
	memcpy(*buf + *len, obj, olen - 1); /* without the closing brace */
	memcpy(*buf + *len + olen - 1, tail, (size_t)tlen + 1);
	*len += olen - 1 + (size_t)tlen;
	return 1;
}

static int append_str(char **buf, size_t *len, size_t *cap, const char *str)
{
	size_t n = strlen(str);

	if (*len + n + 1 > *cap) {
		char *p = realloc(*buf, (*len + n + 1) * 2);

		if (p == NULL)
			return 0;
		*buf = p;
		*cap = (*len + n + 1) * 2;
	}
	memcpy(*buf + *len, str, n + 1);
	*len += n;
	return 1;
}

twin_err twin_print_with_version(const cJSON *obj, int64_t v, char **out, size_t *out_len,
                                 twin_error *err)
{
	char *text = cJSON_PrintUnformatted(obj);
	size_t len = 0, cap = 0;
	char *buf = NULL;

	if (text == NULL || !append_with_version(&buf, &len, &cap, text, strlen(text), v)) {
		free(text);
		free(buf);
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	}
	free(text);
	*out = buf;
	*out_len = len;
	return TWIN_OK;
}

twin_err twin_get_device_body(twin_store *s, const char *device_id, char **out, size_t *len,
                              int64_t *desired_version, twin_error *err)
{
	static const char kinds[] = {TWIN_KIND_DESIRED, TWIN_KIND_REPORTED};
	static const char *prefix[] = {"{\"desired\":", ",\"reported\":"};
	size_t blen = 0, cap = 0;
	char *buf = NULL;
	twin_err rc = db_read_begin(s, err);

	*out = NULL;
	for (int i = 0; i < 2 && rc == TWIN_OK; i++) {
		const char *data, *meta;
		size_t dlen, mlen;
		int64_t version;
		MDB_val v;

		rc = twin_record_get(s, device_id, kinds[i], &v, err);
		if (rc != TWIN_OK)
			break;
		if (!record_split(&v, &version, &data, &dlen, &meta, &mlen) || dlen < 2) {
			rc = corrupt(err, device_id);
			break;
		}
		if (i == 0 && desired_version != NULL)
			*desired_version = version;
		if (!append_str(&buf, &blen, &cap, prefix[i]) ||
		    !append_with_version(&buf, &blen, &cap, data, dlen, version))
			rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	}
	db_read_end(s);
	if (rc == TWIN_OK && !append_str(&buf, &blen, &cap, "}"))
		rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	if (rc != TWIN_OK) {
		free(buf);
		return rc;
	}
	*out = buf;
	*len = blen;
	return TWIN_OK;
}

static void result_set(twin_write_result *res, int64_t version, const section *desired,
                       const section *reported)
{
	if (res == NULL)
		return;
	res->version = version;
	res->desired_version = desired->version;
	res->reported_version = reported->version;
}

static void stamp_now(twin_store *s, twin_stamp *st, int64_t version)
{
	twin_timestamp_format(twin_store_now(s), st->when);
	st->version = version;
}

/* Parse and validate a device patch; on success *patch is an object. */
static twin_err parse_patch(twin_store *s, const char *body, size_t len, cJSON **patch,
                            twin_error *err)
{
	twin_err rc = twin_json_parse(body, len, s->limits.int_min, s->limits.int_max, patch, err);

	if (rc == TWIN_OK)
		rc = twin_doc_validate(*patch, 1, &s->limits, err);
	if (rc != TWIN_OK) {
		cJSON_Delete(*patch);
		*patch = NULL;
	}
	return rc;
}

twin_err twin_patch_reported(twin_store *s, const char *device_id, const char *body, size_t len,
                             twin_write_result *res, twin_error *err)
{
	section desired = {0}, reported = {0};
	twin_stamp st;
	int64_t version = 0;
	cJSON *patch = NULL;
	twin_err rc = parse_patch(s, body, len, &patch, err);

	if (rc == TWIN_OK)
		rc = db_write_begin(s, err);
	if (rc == TWIN_OK)
		rc = load_version(s, device_id, &version, err);
	if (rc == TWIN_OK)
		rc = load_section(s, device_id, TWIN_KIND_REPORTED, &reported, err);
	if (rc == TWIN_OK && patch->child == NULL) {
		/* "{}" is not a write (project decision): answer the current version. */
		rc = load_section(s, device_id, TWIN_KIND_DESIRED, &desired, err);
		if (rc == TWIN_OK)
			result_set(res, version, &desired, &reported);
		goto out;
	}
	if (rc == TWIN_OK) {
		stamp_now(s, &st, 0); /* reported nodes carry no $lastUpdatedVersion */
		rc = twin_doc_merge(reported.data, reported.meta, patch, &st);
		if (rc == TWIN_E_NOMEM)
			twin_error_set(err, rc, "Out of memory.");
	}
	if (rc == TWIN_OK)
		rc = twin_doc_check_size(reported.data, TWIN_SECTION_REPORTED, &s->limits, err);
	if (rc == TWIN_OK) {
		reported.version++;
		version++;
		rc = store_section(s, device_id, TWIN_KIND_REPORTED, &reported, err);
	}
	if (rc == TWIN_OK)
		rc = store_version(s, device_id, version, err);
	if (rc == TWIN_OK && res != NULL) {
		res->version = version;
		res->reported_version = reported.version;
		res->desired_version = 0; /* not loaded: a reported patch never reads desired */
	}
out:
	cJSON_Delete(patch);
	section_free(&desired);
	section_free(&reported);
	return rc;
}

/* The optional object member name of obj: NULL when absent, TWIN_E_INVALID
 * when present with another type. */
static twin_err optional_object(const cJSON *obj, const char *name, const char *label,
                                const cJSON **out, twin_error *err)
{
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(obj, name);

	*out = NULL;
	if (m == NULL)
		return TWIN_OK;
	if (!cJSON_IsObject(m))
		return twin_error_set(err, TWIN_E_INVALID, "'%s' must be a JSON object.", label);
	*out = m;
	return TWIN_OK;
}

/* Pick tags and properties.desired out of a back-end body; rejects a non-empty
 * properties.reported when reject_reported (update), ignores it otherwise. */
static twin_err split_body(const cJSON *body, int reject_reported, const cJSON **tags,
                           const cJSON **desired, twin_error *err)
{
	const cJSON *props, *reported;
	twin_err rc;

	if (!cJSON_IsObject(body))
		return twin_error_set(err, TWIN_E_INVALID, "The twin must be a JSON object.");
	rc = optional_object(body, "tags", "tags", tags, err);
	if (rc == TWIN_OK)
		rc = optional_object(body, "properties", "properties", &props, err);
	if (rc == TWIN_OK && props != NULL)
		rc = optional_object(props, "desired", "properties.desired", desired, err);
	if (rc == TWIN_OK && props != NULL && reject_reported)
		rc = optional_object(props, "reported", "properties.reported", &reported, err);
	if (rc == TWIN_OK && props != NULL && reject_reported && reported != NULL &&
	    reported->child != NULL)
		rc = twin_error_set(err, TWIN_E_INVALID,
		                    "properties.reported cannot be written by the back end.");
	return rc;
}

/* A validated private copy of a patch subtree, or NULL for absent/empty. */
static twin_err patch_copy(twin_store *s, const cJSON *src, cJSON **out, twin_error *err)
{
	twin_err rc;

	*out = NULL;
	if (src == NULL || src->child == NULL)
		return TWIN_OK;
	rc = twin_doc_validate(src, 1, &s->limits, err);
	if (rc != TWIN_OK)
		return rc;
	*out = cJSON_Duplicate(src, 1);
	return *out ? TWIN_OK : twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
}

/* Load what a back-end write needs after checking existence and etag. */
static twin_err load_for_write(twin_store *s, const char *device_id, const char *if_match,
                               int64_t *version, section *tags, section *desired, section *reported,
                               twin_error *err)
{
	twin_err rc = db_write_begin(s, err);

	if (rc == TWIN_OK)
		rc = load_version(s, device_id, version, err);
	if (rc == TWIN_OK)
		rc = check_etag(*version, if_match, err);
	if (rc == TWIN_OK)
		rc = load_section(s, device_id, TWIN_KIND_TAGS, tags, err);
	if (rc == TWIN_OK)
		rc = load_section(s, device_id, TWIN_KIND_DESIRED, desired, err);
	if (rc == TWIN_OK)
		rc = load_section(s, device_id, TWIN_KIND_REPORTED, reported, err);
	return rc;
}

/* Write tags (when tags_changed), desired (when desired_changed) and the new
 * version. Every failure on the way fails the whole batch (store_section,
 * db_put), because the operation would otherwise be half-applied. */
static twin_err store_backend_write(twin_store *s, const char *device_id, int64_t version,
                                    const section *tags, int tags_changed, const section *desired,
                                    int desired_changed, twin_error *err)
{
	twin_err rc = TWIN_OK;

	if (tags_changed)
		rc = store_section(s, device_id, TWIN_KIND_TAGS, tags, err);
	if (rc == TWIN_OK && desired_changed)
		rc = store_section(s, device_id, TWIN_KIND_DESIRED, desired, err);
	if (rc == TWIN_OK)
		rc = store_version(s, device_id, version, err);
	return rc;
}

static void sections_free(section *a, section *b, section *c)
{
	section_free(a);
	section_free(b);
	section_free(c);
}

twin_err twin_update(twin_store *s, const char *device_id, const cJSON *patch, const char *if_match,
                     twin_write_result *res, twin_error *err)
{
	const cJSON *tags_in = NULL, *desired_in = NULL;
	cJSON *tags_patch = NULL, *desired_patch = NULL, *old_desired = NULL;
	section tags = {0}, desired = {0}, reported = {0};
	twin_write_result local = {0};
	int64_t version = 0;
	twin_stamp st;
	twin_err rc = split_body(patch, 1, &tags_in, &desired_in, err);

	if (res == NULL)
		res = &local;
	if (rc == TWIN_OK)
		rc = patch_copy(s, tags_in, &tags_patch, err);
	if (rc == TWIN_OK)
		rc = patch_copy(s, desired_in, &desired_patch, err);
	if (rc == TWIN_OK)
		rc = load_for_write(s, device_id, if_match, &version, &tags, &desired, &reported,
		                    err);
	if (rc != TWIN_OK || (tags_patch == NULL && desired_patch == NULL))
		goto out; /* empty sections are not a write (§5.1) */
	if (tags_patch != NULL && twin_doc_merge(tags.data, NULL, tags_patch, NULL) != TWIN_OK)
		rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	if (rc == TWIN_OK && tags_patch != NULL)
		rc = twin_doc_check_size(tags.data, TWIN_SECTION_TAGS, &s->limits, err);
	if (rc == TWIN_OK && desired_patch != NULL &&
	    (old_desired = cJSON_Duplicate(desired.data, 1)) == NULL)
		rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	if (rc == TWIN_OK && desired_patch != NULL) {
		/* The notification is the patch as accepted, so print it before
		 * merging moves its nodes away. */
		rc = twin_print_with_version(desired_in, desired.version + 1, &res->notification,
		                             &res->notification_len, err);
		stamp_now(s, &st, desired.version + 1);
		if (rc == TWIN_OK &&
		    twin_doc_merge(desired.data, desired.meta, desired_patch, &st) != TWIN_OK)
			rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
		if (rc == TWIN_OK)
			rc = twin_doc_check_size(desired.data, TWIN_SECTION_DESIRED, &s->limits,
			                         err);
		desired.version++;
	}
	if (rc == TWIN_OK)
		rc = store_backend_write(s, device_id, ++version, &tags, tags_patch != NULL,
		                         &desired, desired_patch != NULL, err);
	if (rc == TWIN_OK && desired_patch != NULL)
		rc = twin_tombstones_record(s, device_id, old_desired, desired.data,
		                            desired.version, err);
out:
	if (rc == TWIN_OK)
		result_set(res, version, &desired, &reported);
	else
		twin_write_result_clear(res);
	twin_write_result_clear(&local);
	cJSON_Delete(old_desired);
	cJSON_Delete(tags_patch);
	cJSON_Delete(desired_patch);
	sections_free(&tags, &desired, &reported);
	return rc;
}

/* The new desired of a replace: a copy without the service-view members a
 * client may echo back from getTwin, and without null members. */
static twin_err replace_desired(twin_store *s, const cJSON *in, cJSON **out, twin_error *err)
{
	twin_err rc;

	*out = in ? cJSON_Duplicate(in, 1) : cJSON_CreateObject();
	if (*out == NULL)
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	cJSON_DeleteItemFromObjectCaseSensitive(*out, "$metadata");
	cJSON_DeleteItemFromObjectCaseSensitive(*out, "$version");
	rc = twin_doc_validate(*out, 1, &s->limits, err);
	if (rc == TWIN_OK)
		twin_doc_drop_nulls(*out);
	return rc;
}

static twin_err replace_tags(twin_store *s, const cJSON *in, cJSON **out, twin_error *err)
{
	twin_err rc;

	*out = in ? cJSON_Duplicate(in, 1) : cJSON_CreateObject();
	if (*out == NULL)
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	rc = twin_doc_validate(*out, 1, &s->limits, err);
	if (rc == TWIN_OK)
		twin_doc_drop_nulls(*out);
	return rc;
}

twin_err twin_replace(twin_store *s, const char *device_id, const cJSON *body, const char *if_match,
                      twin_write_result *res, twin_error *err)
{
	const cJSON *tags_in = NULL, *desired_in = NULL;
	cJSON *new_tags = NULL, *new_desired = NULL, *notification = NULL;
	section tags = {0}, desired = {0}, reported = {0};
	twin_write_result local = {0};
	int64_t version = 0;
	twin_stamp st;
	twin_err rc = split_body(body, 0, &tags_in, &desired_in, err);

	if (res == NULL)
		res = &local;
	if (rc == TWIN_OK)
		rc = replace_tags(s, tags_in, &new_tags, err);
	if (rc == TWIN_OK)
		rc = replace_desired(s, desired_in, &new_desired, err);
	if (rc == TWIN_OK)
		rc = twin_doc_check_size(new_tags, TWIN_SECTION_TAGS, &s->limits, err);
	if (rc == TWIN_OK)
		rc = twin_doc_check_size(new_desired, TWIN_SECTION_DESIRED, &s->limits, err);
	if (rc == TWIN_OK)
		rc = load_for_write(s, device_id, if_match, &version, &tags, &desired, &reported,
		                    err);
	if (rc != TWIN_OK)
		goto out;
	/* Always a desired write: the device learns the whole new document,
	 * with null for every key that disappeared (§5.3). */
	desired.version++;
	stamp_now(s, &st, desired.version);
	notification = twin_doc_with_removals(desired.data, new_desired);
	cJSON_Delete(desired.meta);
	desired.meta = twin_meta_stamp_all(new_desired, &st);
	if (notification == NULL || desired.meta == NULL) {
		rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
		goto out;
	}
	rc = twin_print_with_version(notification, desired.version, &res->notification,
	                             &res->notification_len, err);
	cJSON_Delete(tags.data);
	tags.data = new_tags;
	new_tags = NULL;
	if (rc == TWIN_OK)
		rc = store_backend_write(s, device_id, ++version, &tags, 1,
		                         &(section){desired.version, new_desired, desired.meta}, 1,
		                         err);
	if (rc == TWIN_OK)
		rc = twin_tombstones_record(s, device_id, desired.data, new_desired,
		                            desired.version, err);
	cJSON_Delete(desired.data);
	desired.data = new_desired;
	new_desired = NULL;
out:
	if (rc == TWIN_OK)
		result_set(res, version, &desired, &reported);
	else
		twin_write_result_clear(res);
	twin_write_result_clear(&local);
	cJSON_Delete(notification);
	cJSON_Delete(new_tags);
	cJSON_Delete(new_desired);
	sections_free(&tags, &desired, &reported);
	return rc;
}

void twin_write_result_clear(twin_write_result *r)
{
	free(r->notification);
	memset(r, 0, sizeof(*r));
}

/* {data…, "$metadata": meta, "$version": v}; takes data and meta. */
static cJSON *section_view(section *sec)
{
	cJSON *view = sec->data;

	sec->data = NULL;
	if (sec->meta != NULL) {
		if (!cJSON_AddItemToObject(view, "$metadata", sec->meta)) {
			cJSON_Delete(view); /* sec->meta stays with sec */
			return NULL;
		}
		sec->meta = NULL;
		if (cJSON_AddNumberToObject(view, "$version", (double)sec->version) == NULL) {
			cJSON_Delete(view);
			return NULL;
		}
	}
	return view;
}

static int add_view(cJSON *obj, const char *name, section *sec)
{
	cJSON *v = section_view(sec);

	if (v == NULL || !cJSON_AddItemToObject(obj, name, v)) {
		cJSON_Delete(v);
		return 0;
	}
	return 1;
}

static cJSON *twin_view(const twin_identity *id, int64_t version, section *tags, section *desired,
                        section *reported)
{
	char etag[TWIN_ETAG_MAX], ts[TWIN_TIMESTAMP_MAX];
	cJSON *twin = cJSON_CreateObject(), *props, *caps, *thumbs;
	int ok = twin != NULL;

	ok = ok && cJSON_AddStringToObject(twin, "deviceId", id->device_id);
	twin_etag_format(version, etag);
	ok = ok && cJSON_AddStringToObject(twin, "etag", etag);
	twin_identity_etag(id, etag);
	ok = ok && cJSON_AddStringToObject(twin, "deviceEtag", etag);
	ok = ok && cJSON_AddStringToObject(twin, "status", id->enabled ? "enabled" : "disabled");
	if (id->status_reason[0])
		ok = ok && cJSON_AddStringToObject(twin, "statusReason", id->status_reason);
	twin_timestamp_format(id->status_updated, ts);
	ok = ok && cJSON_AddStringToObject(twin, "statusUpdateTime", ts);
	ok = ok && cJSON_AddStringToObject(twin, "connectionState",
	                                   id->connected ? "Connected" : "Disconnected");
	twin_timestamp_format(id->last_activity, ts);
	ok = ok && cJSON_AddStringToObject(twin, "lastActivityTime", ts);
	ok = ok && cJSON_AddNumberToObject(twin, "cloudToDeviceMessageCount", 0);
	ok = ok && cJSON_AddStringToObject(twin, "authenticationType",
	                                   twin_auth_type_name(id->auth_type));
	ok = ok && (thumbs = cJSON_AddObjectToObject(twin, "x509Thumbprint")) != NULL;
	ok = ok && (id->primary_thumbprint[0] ? cJSON_AddStringToObject(thumbs, "primaryThumbprint",
	                                                                id->primary_thumbprint)
	                                      : cJSON_AddNullToObject(thumbs, "primaryThumbprint"));
	ok = ok &&
	     (id->secondary_thumbprint[0] ? cJSON_AddStringToObject(thumbs, "secondaryThumbprint",
	                                                            id->secondary_thumbprint)
	                                  : cJSON_AddNullToObject(thumbs, "secondaryThumbprint"));
	ok = ok && cJSON_AddStringToObject(twin, "modelId", id->model_id);
	ok = ok && cJSON_AddNumberToObject(twin, "version", (double)version);
	ok = ok && (caps = cJSON_AddObjectToObject(twin, "capabilities")) != NULL;
	ok = ok && cJSON_AddFalseToObject(caps, "iotEdge");
	ok = ok && add_view(twin, "tags", tags);
	ok = ok && (props = cJSON_AddObjectToObject(twin, "properties")) != NULL;
	ok = ok && add_view(props, "desired", desired);
	ok = ok && add_view(props, "reported", reported);
	if (!ok) {
		cJSON_Delete(twin);
		return NULL;
	}
	return twin;
}

twin_err twin_get(twin_store *s, const char *device_id, cJSON **out, twin_error *err)
{
	section tags = {0}, desired = {0}, reported = {0};
	twin_identity id;
	int64_t version = 0;
	twin_err rc = db_read_begin(s, err);

	*out = NULL;
	if (rc == TWIN_OK)
		rc = twin_device_get(s, device_id, &id, err);
	if (rc == TWIN_OK)
		rc = load_version(s, device_id, &version, err);
	if (rc == TWIN_OK)
		rc = load_section(s, device_id, TWIN_KIND_TAGS, &tags, err);
	if (rc == TWIN_OK)
		rc = load_section(s, device_id, TWIN_KIND_DESIRED, &desired, err);
	if (rc == TWIN_OK)
		rc = load_section(s, device_id, TWIN_KIND_REPORTED, &reported, err);
	db_read_end(s);
	if (rc == TWIN_OK) {
		*out = twin_view(&id, version, &tags, &desired, &reported);
		if (*out == NULL)
			rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	}
	sections_free(&tags, &desired, &reported);
	return rc;
}
