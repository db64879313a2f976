/*
 * twin/doc.h - the twin document model on cJSON trees (PROTOCOL.md §4–§6).
 *
 * Pure functions: no storage, no clock. The store (store/twin.c) loads a
 * section, calls these, and writes the result back. Section data trees hold
 * only user data; metadata lives in a parallel tree whose object nodes carry
 * "$lastUpdated" (and "$lastUpdatedVersion" in desired) plus one member per
 * child key, mirroring the data.
 */
#ifndef TWIN_DOC_H
#define TWIN_DOC_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "twin/error.h"
#include "twin/json.h"
#include "twin/limits.h"

typedef enum twin_section {
	TWIN_SECTION_TAGS = 0,
	TWIN_SECTION_DESIRED,
	TWIN_SECTION_REPORTED,
} twin_section;

/* Name used in error messages: "Tags", "Properties.Desired", "Properties.Reported". */
const char *twin_section_label(twin_section s);

/* Size limit of section s under l. */
size_t twin_section_limit(const twin_limits *l, twin_section s);

/* Format ticks (100 ns units since 1970-01-01T00:00:00Z) as
 * "YYYY-MM-DDTHH:MM:SS.fffffffZ" into out. Ticks <= 0 mean "never" and give
 * "0001-01-01T00:00:00Z". */
void twin_timestamp_format(int64_t ticks, char out[TWIN_TIMESTAMP_MAX]);

/* Validate doc as a write to section s (PROTOCOL.md §6): doc is an object;
 * every key at every depth (objects inside arrays too) has 1..key_max_bytes
 * bytes and no forbidden character; strings are within string_max_bytes;
 * nesting within max_depth; no null inside arrays. With is_patch, null object
 * members are delete markers and allowed; otherwise they are rejected.
 * Integer range and UTF-8 are the parser's job (twin/json.h). Returns TWIN_OK
 * or TWIN_E_INVALID with a message naming the offending key. */
twin_err twin_doc_validate(const cJSON *doc, int is_patch, const twin_limits *l, twin_error *err);

/* Section size by the §6 algorithm: keys and strings count their UTF-8 bytes
 * (control characters excluded), numbers 8, booleans 4. */
size_t twin_doc_size(const cJSON *data);

/* TWIN_E_SECTION_SIZE with the IoT Hub message when data is larger than the
 * limit of section s, else TWIN_OK. */
twin_err twin_doc_check_size(const cJSON *data, twin_section s, const twin_limits *l,
                             twin_error *err);

/* What a write stamps on metadata nodes. version 0 means no
 * "$lastUpdatedVersion" (reported); desired writes pass the new $version. */
typedef struct twin_stamp {
	char when[TWIN_TIMESTAMP_MAX];
	int64_t version;
} twin_stamp;

/* A fresh metadata object for a never-written section:
 * {"$lastUpdated":"0001-01-01T00:00:00Z"}. NULL when out of memory. */
cJSON *twin_meta_new_section(void);

/* Merge a validated patch into data (§5.1) and, when meta is not NULL, stamp
 * every node the patch sets, every ancestor of a touched node and the root
 * (§4.1). Items are moved out of patch, which is left unusable but still owned
 * by the caller. On TWIN_E_NOMEM data and meta may be partly updated: callers
 * merge into scratch copies and drop them on failure. */
twin_err twin_doc_merge(cJSON *data, cJSON *meta, cJSON *patch, const twin_stamp *st);

/* The metadata a change event shows for a merged patch (PROTOCOL.md §9):
 * the root's own "$…" members and, for each member of patch still present
 * in meta, its metadata node, descending into object values so only the
 * nodes the patch set appear. meta is the section's metadata after the
 * merge, patch an intact copy of the patch. Caller owns the result; NULL
 * when out of memory. */
cJSON *twin_meta_touched(const cJSON *meta, const cJSON *patch);

/* Build the metadata tree of a replaced section: every node of data stamped
 * with st (§4.1, "a replace stamps every node"). NULL when out of memory. */
cJSON *twin_meta_stamp_all(const cJSON *data, const twin_stamp *st);

/* A copy of key from cJSON's allocator, to name an item: trees stay
 * freeable by cJSON_Delete whatever hooks are installed. NULL when out of
 * memory. */
char *twin_doc_key_dup(const char *key);

/* Append meta as stored (store/doc_meta.c): each node with only the stamps
 * it does not share with its parent, and without the nodes left empty.
 * 1 on success; 0 when out of memory or meta is not an object, and then b
 * is as it was. */
int twin_meta_print_compact(twin_buf *b, const cJSON *meta);

/* Undo twin_meta_print_compact in place: give every node of data a
 * metadata node and every node its parent's stamps where it has none, so
 * meta is again the whole tree twin_doc_merge keeps. Full trees come back
 * unchanged. On TWIN_E_NOMEM meta is partly filled; the caller drops it. */
twin_err twin_meta_expand(cJSON *meta, const cJSON *data);

/* Remove null members from doc's objects, recursively (replace drops them). */
void twin_doc_drop_nulls(cJSON *doc);

/* The desired notification a replace implies (§5.3): a copy of new_data in
 * which every key present in old_data and absent from new_data, at any
 * depth, is added as null after new_data's own members. Caller owns the
 * result (cJSON_Delete); NULL when out of memory. */
cJSON *twin_doc_with_removals(const cJSON *old_data, const cJSON *new_data);

#endif
