/*
 * twin_records.h - private to store/: what registry.c needs from twin.c.
 *
 * Identities and twins live and die together (PROTOCOL.md §7); the registry
 * drives that through these two calls inside its own batch.
 */
#ifndef TWIN_STORE_TWIN_RECORDS_H
#define TWIN_STORE_TWIN_RECORDS_H

#include <cjson/cJSON.h>
#include <lmdb.h>

#include "twin/registry.h"
#include "twin/store.h"

/* Record kinds of a twin: key = deviceId "\0" kind (store/db.h). */
enum {
	TWIN_KIND_DESIRED = 'D',
	TWIN_KIND_REPORTED = 'R',
	TWIN_KIND_SESSION = 'S',
	TWIN_KIND_TAGS = 'T',
	TWIN_KIND_VERSION = 'V',
	TWIN_KIND_TOMBSTONES = 'X',
};

/* Raw access to one record of a twin; get needs db_read_begin or a batch,
 * put and del need a batch. get gives TWIN_E_NOT_FOUND when absent. */
twin_err twin_record_get(twin_store *s, const char *device_id, char kind, MDB_val *v,
                         twin_error *err);
twin_err twin_record_put(twin_store *s, const char *device_id, char kind, const void *val,
                         size_t len, twin_error *err);
twin_err twin_record_del(twin_store *s, const char *device_id, char kind, twin_error *err);

/* Parse the desired section of device_id: data and metadata trees (caller
 * frees) and its $version. Needs db_read_begin or a batch. */
twin_err twin_desired_load(twin_store *s, const char *device_id, cJSON **data, cJSON **meta,
                           int64_t *version, twin_error *err);

/* The desired $version of device_id, read from the record header without
 * parsing the section. Needs db_read_begin or a batch. */
twin_err twin_desired_version(twin_store *s, const char *device_id, int64_t *version,
                              twin_error *err);

/* obj printed compactly with "$version":v appended as its last member;
 * *out malloc'd. */
twin_err twin_print_with_version(const cJSON *obj, int64_t v, char **out, size_t *len,
                                 twin_error *err);

/* Record, for the catch-up notification, every key of old_data absent from
 * new_data as removed by desired version `version` (store/catchup.c). */
twin_err twin_tombstones_record(twin_store *s, const char *device_id, const cJSON *old_data,
                                const cJSON *new_data, int64_t version, twin_error *err);

/* Write the records of a new, empty twin: version 2, empty tags, both
 * sections at $version 1 with never-written metadata. */
twin_err twin_records_create(twin_store *s, const char *device_id, twin_error *err);

/* Delete every record of the twin of device_id. */
twin_err twin_records_delete(twin_store *s, const char *device_id, twin_error *err);

/* Non-zero if if_match (NULL, "", "*", or an etag, quoted or not) matches etag. */
int twin_etag_matches(const char *if_match, const char *etag);

/* A section loaded for reading or rewriting. meta is NULL for tags. */
typedef struct rec_section {
	int64_t version;
	cJSON *data;
	cJSON *meta;
} rec_section;

void rec_section_free(rec_section *sec);
void rec_sections_free(rec_section *a, rec_section *b, rec_section *c);

/* TWIN_E_STORAGE "corrupt twin record of …". */
twin_err rec_corrupt(twin_error *err, const char *device_id);

/* Split a raw section record into $version, data text and metadata text
 * (pointers into v). 0 if the record is malformed. */
int rec_split(const MDB_val *v, int64_t *version, const char **data, size_t *dlen,
              const char **meta, size_t *mlen);

/* The whole metadata text of a section from its stored data and compact
 * metadata texts (rec_split), in a new string the caller frees with
 * cJSON_free; *len is its length. NULL when out of memory or corrupt. */
char *rec_meta_text(const char *data, size_t dlen, const char *meta, size_t mlen, size_t *len);

/* Load / store a section, and the twin version. Loads need db_read_begin
 * or a batch; stores need a batch and fail it on any error (store.h). */
twin_err rec_load_section(twin_store *s, const char *device_id, char kind, rec_section *sec,
                          twin_error *err);
twin_err rec_store_section(twin_store *s, const char *device_id, char kind, const rec_section *sec,
                           twin_error *err);
twin_err rec_load_version(twin_store *s, const char *device_id, int64_t *version, twin_error *err);
twin_err rec_store_version(twin_store *s, const char *device_id, int64_t version, twin_error *err);

/* The cache of parsed reported sections (section_cache.c). take moves the
 * entry of device_id into *out (1) or finds none (0); put takes ownership
 * of *sec (zeroing it), replacing any entry; forget drops an entry; clear
 * drops all (every batch abort); free also releases the table. */
int rec_cache_take(twin_store *s, const char *device_id, rec_section *out);
void rec_cache_put(twin_store *s, const char *device_id, rec_section *sec);
void rec_cache_forget(twin_store *s, const char *device_id);
void rec_cache_clear(twin_store *s);
void rec_cache_free(twin_store *s);

/* TWIN_E_PRECONDITION unless if_match matches the etag of version. */
twin_err rec_check_etag(int64_t version, const char *if_match, twin_error *err);

/* The service view of a twin (PROTOCOL.md §4) from its identity, version and
 * three section views, which it takes over (they are freed on failure).
 * NULL when out of memory. */
cJSON *twin_view_make(const twin_identity *id, int64_t version, cJSON *tags, cJSON *desired,
                      cJSON *reported);

/* Growable-buffer appends for spliced JSON; 0 when out of memory. */
int rec_append_str(char **buf, size_t *len, size_t *cap, const char *str);
int rec_append_with_version(char **buf, size_t *len, size_t *cap, const char *obj, size_t olen,
                            int64_t v);

#endif
