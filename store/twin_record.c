/*
 * twin_record.c - the records of a twin in LMDB, and what every twin
 * operation shares: loading and storing sections, versions, etags.
 *
 * A twin is records in the twins table (store/db.h): 'V' the twin version,
 * 'T' tags, 'D' desired, 'R' reported, plus 'S' session state and 'X'
 * tombstones (store/catchup.c). Sections are stored apart so a reported
 * patch rewrites neither tags nor desired. A section record is
 *
 *     int64 $version | uint32 data length | data JSON | metadata JSON
 *
 * with data and metadata as separate compact JSON texts: the device GET
 * body is spliced from the two data texts without parsing anything. The
 * metadata text leaves out every stamp a node shares with its parent
 * (store/doc_meta.c); rec_load_section and rec_meta_text put them back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "twin/doc.h"
#include "twin/json.h"
#include "twin/twin.h"
#include "twin_records.h"
#include <openssl/evp.h>

#define TWIN_INITIAL_VERSION 2 /* as IoT Hub shows for a new twin (§4.2) */
#define KEY_MAX              (TWIN_DEVICE_ID_MAX + 2)

void rec_section_free(rec_section *sec)
{
	cJSON_Delete(sec->data);
	cJSON_Delete(sec->meta);
	memset(sec, 0, sizeof(*sec));
}

/* The key of one record; 0 for an id too long to be one (the caller then
 * refuses it: never copy past key). */
static size_t twin_key(char key[KEY_MAX], const char *device_id, char kind)
{
	size_t n = strnlen(device_id, TWIN_DEVICE_ID_MAX + 1);

	if (n > TWIN_DEVICE_ID_MAX)
		return 0;
	memcpy(key, device_id, n);
	key[n] = '\0';
	key[n + 1] = kind;
	return n + 2;
}

twin_err rec_corrupt(twin_error *err, const char *device_id)
{
	return twin_error_set(err, TWIN_E_STORAGE,
	                      "Storage error: rec_corrupt twin record of '%s'.", device_id);
}

static twin_err not_found(twin_error *err, const char *device_id)
{
	return twin_error_set(err, TWIN_E_NOT_FOUND, "Device '%s' not found.", device_id);
}

twin_err twin_record_get(twin_store *s, const char *device_id, char kind, MDB_val *v,
                         twin_error *err)
{
	char key[KEY_MAX];
	size_t n = twin_key(key, device_id, kind);
	twin_err rc =
	        n ? db_get(s, DB_TWINS, key, n, v, err) : twin_device_id_check(device_id, err);

	return rc == TWIN_E_NOT_FOUND ? not_found(err, device_id) : rc;
}

twin_err twin_record_put(twin_store *s, const char *device_id, char kind, const void *val,
                         size_t len, twin_error *err)
{
	char key[KEY_MAX];
	size_t n = twin_key(key, device_id, kind);

	return n ? db_put(s, DB_TWINS, key, n, val, len, err)
	         : twin_device_id_check(device_id, err);
}

twin_err twin_record_del(twin_store *s, const char *device_id, char kind, twin_error *err)
{
	char key[KEY_MAX];
	size_t n = twin_key(key, device_id, kind);

	return n ? db_del(s, DB_TWINS, key, n, err) : twin_device_id_check(device_id, err);
}

twin_err rec_load_version(twin_store *s, const char *device_id, int64_t *version, twin_error *err)
{
	MDB_val v;
	twin_err rc = twin_record_get(s, device_id, TWIN_KIND_VERSION, &v, err);

	if (rc != TWIN_OK)
		return rc;
	if (v.mv_size != sizeof(*version))
		return rec_corrupt(err, device_id);
	memcpy(version, v.mv_data, sizeof(*version));
	return TWIN_OK;
}

/* Split a raw rec_section record into its parts without parsing. */
int rec_split(const MDB_val *v, int64_t *version, const char **data, size_t *dlen,
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

/* Parse stored JSON text. cJSON's parser cannot tell a syntax error from
 * an allocation failure, so when it fails the strict parser decides which. */
static twin_err parse_stored(const char *text, size_t len, cJSON **out)
{
	*out = cJSON_ParseWithLength(text, len);
	if (*out != NULL)
		return TWIN_OK;
	return twin_json_parse(text, len, INT64_MIN, INT64_MAX, out, NULL);
}

twin_err rec_load_section(twin_store *s, const char *device_id, char kind, rec_section *sec,
                          twin_error *err)
{
	const char *data, *meta;
	size_t dlen, mlen;
	MDB_val v;
	twin_err rc = twin_record_get(s, device_id, kind, &v, err);

	memset(sec, 0, sizeof(*sec));
	if (rc != TWIN_OK)
		return rc;
	if (!rec_split(&v, &sec->version, &data, &dlen, &meta, &mlen))
		return rec_corrupt(err, device_id);
	/* Stored sections were printed by cJSON from validated trees, so
	 * cJSON's own parser reads them back exactly (integers are within
	 * ±2^52, which a double holds) at a fraction of the strict parser's
	 * cost; that parser is for what crosses the wire. A tree that does not
	 * come back as an object is corruption (or, rarely, out of memory). */
	rc = parse_stored(data, dlen, &sec->data);
	if (rc == TWIN_OK && mlen > 0)
		rc = parse_stored(meta, mlen, &sec->meta);
	if (rc == TWIN_OK && cJSON_IsObject(sec->meta) && cJSON_IsObject(sec->data))
		rc = twin_meta_expand(sec->meta, sec->data); /* stored compact */
	if (rc == TWIN_E_NOMEM) {
		rec_section_free(sec);
		return twin_error_set(err, rc, "Out of memory.");
	}
	if (rc != TWIN_OK || !cJSON_IsObject(sec->data) ||
	    (mlen > 0 && !cJSON_IsObject(sec->meta))) {
		rec_section_free(sec);
		return rec_corrupt(err, device_id);
	}
	return TWIN_OK;
}

char *rec_meta_text(const char *data, size_t dlen, const char *meta, size_t mlen, size_t *len)
{
	cJSON *d = NULL, *m = NULL;
	char *text = NULL;

	if (parse_stored(data, dlen, &d) == TWIN_OK && parse_stored(meta, mlen, &m) == TWIN_OK &&
	    cJSON_IsObject(m) && twin_meta_expand(m, d) == TWIN_OK)
		text = twin_json_print(m);
	cJSON_Delete(d);
	cJSON_Delete(m);
	if (text != NULL)
		*len = strlen(text);
	return text;
}

twin_err twin_desired_version(twin_store *s, const char *device_id, int64_t *version,
                              twin_error *err)
{
	const char *data, *meta;
	size_t dlen, mlen;
	MDB_val v;
	twin_err rc = twin_record_get(s, device_id, TWIN_KIND_DESIRED, &v, err);

	if (rc == TWIN_OK && !rec_split(&v, version, &data, &dlen, &meta, &mlen))
		rc = rec_corrupt(err, device_id);
	return rc;
}

twin_err twin_desired_load(twin_store *s, const char *device_id, cJSON **data, cJSON **meta,
                           int64_t *version, twin_error *err)
{
	rec_section sec;
	twin_err rc = rec_load_section(s, device_id, TWIN_KIND_DESIRED, &sec, err);

	*data = sec.data;
	*meta = sec.meta;
	*version = sec.version;
	return rc;
}

/* Build a section record in the store's scratch buffer: the header, the
 * data text, then the metadata text (print either from a tree or copy a
 * literal), and put it. One reused buffer, so a PATCH allocates nothing
 * here. */
static int record_start(twin_buf *b, int64_t version)
{
	uint32_t dlen = 0;

	b->len = 0;
	return twin_buf_put(b, &version, sizeof(version)) && twin_buf_put(b, &dlen, sizeof(dlen));
}

static void record_mark_data_end(twin_buf *b)
{
	uint32_t dlen = (uint32_t)(b->len - sizeof(int64_t) - sizeof(uint32_t));

	memcpy(b->data + sizeof(int64_t), &dlen, sizeof(dlen));
}

static twin_err put_record(twin_store *s, const char *device_id, char kind, int ok, twin_error *err)
{
	/* Whatever was cached for this record is stale now. */
	if (kind == TWIN_KIND_REPORTED)
		rec_cache_forget(s, device_id);
	if (!ok) {
		db_fail_batch(s); /* an earlier record of this operation may be in */
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	}
	return twin_record_put(s, device_id, kind, s->scratch.data, s->scratch.len, err);
}

static twin_err put_raw_section(twin_store *s, const char *device_id, char kind, int64_t version,
                                const char *data, const char *meta, twin_error *err)
{
	twin_buf *b = &s->scratch;
	int ok = record_start(b, version) && twin_buf_put(b, data, strlen(data));

	if (ok)
		record_mark_data_end(b);
	if (ok && meta != NULL)
		ok = twin_buf_put(b, meta, strlen(meta));
	return put_record(s, device_id, kind, ok, err);
}

twin_err rec_store_section(twin_store *s, const char *device_id, char kind, const rec_section *sec,
                           twin_error *err)
{
	twin_buf *b = &s->scratch;
	int ok = record_start(b, sec->version) && twin_json_print_append(b, sec->data);

	if (ok)
		record_mark_data_end(b);
	if (ok && sec->meta != NULL)
		ok = twin_meta_print_compact(b, sec->meta);
	return put_record(s, device_id, kind, ok, err);
}

twin_err rec_store_version(twin_store *s, const char *device_id, int64_t version, twin_error *err)
{
	return twin_record_put(s, device_id, TWIN_KIND_VERSION, &version, sizeof(version), err);
}

twin_err twin_records_create(twin_store *s, const char *device_id, twin_error *err)
{
	static const char never[] = "{\"$lastUpdated\":\"0001-01-01T00:00:00Z\"}";
	twin_err rc = rec_store_version(s, device_id, TWIN_INITIAL_VERSION, err);

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
	twin_err rc = TWIN_OK;

	rec_cache_forget(s, device_id);
	for (size_t i = 0; i < sizeof(kinds) && rc == TWIN_OK; i++)
		rc = twin_record_del(s, device_id, kinds[i], err);
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

twin_err rec_check_etag(int64_t version, const char *if_match, twin_error *err)
{
	char etag[TWIN_ETAG_MAX];

	twin_etag_format(version, etag);
	if (!twin_etag_matches(if_match, etag))
		return twin_error_set(err, TWIN_E_PRECONDITION,
		                      "Precondition failed: the twin etag is %s.", etag);
	return TWIN_OK;
}

/* Append `"$version":v` as the last member of a JSON object text. */
int rec_append_with_version(char **buf, size_t *len, size_t *cap, const char *obj, size_t olen,
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

int rec_append_str(char **buf, size_t *len, size_t *cap, const char *str)
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
	char *text = twin_json_print(obj);
	size_t len = 0, cap = 0;
	char *buf = NULL;

	if (text == NULL || !rec_append_with_version(&buf, &len, &cap, text, strlen(text), v)) {
		free(text);
		free(buf);
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	}
	free(text);
	*out = buf;
	*out_len = len;
	return TWIN_OK;
}

void rec_sections_free(rec_section *a, rec_section *b, rec_section *c)
{
	rec_section_free(a);
	rec_section_free(b);
	rec_section_free(c);
}
