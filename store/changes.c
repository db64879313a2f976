/*
 * changes.c - the change log: one entry per change, written in the batch
 * that makes the change (twin/changes.h).
 *
 * Table "changes": key = sequence number, 8 bytes big-endian (so LMDB's
 * byte order is numeric order and appends go to the right edge of the
 * tree); value = a 15-byte header (format 1, op, id length, actor length,
 * ticks, stamp length) followed by the device id, the actor JSON, the
 * write's stamp and the body JSON. The header lets replay filter by device
 * and op without parsing JSON.
 *
 * Stamps: a write stamps every node it touches with one timestamp (and, in
 * desired, one version), so a body is mostly copies of
 * {"$lastUpdated":"2026-11-24T05:37:12.1234567Z"}. Stored, each copy is one
 * byte: 0x01 for the quoted timestamp, 0x02 for that object, 0x03 for it
 * with "$lastUpdatedVersion"; the timestamp and version are stored once.
 * Raw bytes below 0x20 never occur in JSON text, so expanding them back is
 * exact whatever the body holds. This halves a PATCH entry, which keeps it
 * inside an LMDB page instead of an overflow page of its own.
 *
 * The next sequence number is one past the newest entry. When trimming
 * empties the table that would restart the count, so trimming also records
 * the floor in the "meta" table.
 *
 * Entries of the open batch are also kept in memory (pending); a commit
 * moves them to ready, where the plugin drains them to publish events, and
 * an abort drops them and rewinds the sequence number with the batch.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "changes_log.h"
#include "db.h"
#include "twin/doc.h"
#include "twin/twin.h"

#define HDR_LEN       15
#define STAMP_MAX     40
#define FLOOR_KEY     "changes.floor"
#define DEFAULT_ACTOR "{\"type\":\"broker\"}"

static const struct {
	const char *name, *schema, *source;
} ops[TWIN_OP_COUNT] = {
        [TWIN_OP_UPDATE_TWIN] = {"updateTwin", "twinChangeNotification", "twinChangeEvents"},
        [TWIN_OP_REPLACE_TWIN] = {"replaceTwin", "twinChangeNotification", "twinChangeEvents"},
        [TWIN_OP_CREATE_IDENTITY] = {"createDeviceIdentity", "deviceLifecycleNotification",
                                     "deviceLifecycleEvents"},
        [TWIN_OP_UPDATE_IDENTITY] = {"updateDeviceIdentity", "deviceLifecycleNotification",
                                     "deviceLifecycleEvents"},
        [TWIN_OP_DELETE_IDENTITY] = {"deleteDeviceIdentity", "deviceLifecycleNotification",
                                     "deviceLifecycleEvents"},
        [TWIN_OP_CONNECTED] = {"deviceConnected", "deviceConnectionStateNotification",
                               "deviceConnectionStateEvents"},
        [TWIN_OP_DISCONNECTED] = {"deviceDisconnected", "deviceConnectionStateNotification",
                                  "deviceConnectionStateEvents"},
};

static int op_valid(twin_op op)
{
	return op > 0 && op < TWIN_OP_COUNT;
}

const char *twin_op_name(twin_op op)
{
	return op_valid(op) ? ops[op].name : "unknown";
}

const char *twin_op_schema(twin_op op)
{
	return op_valid(op) ? ops[op].schema : "unknown";
}

const char *twin_op_source(twin_op op)
{
	return op_valid(op) ? ops[op].source : "unknown";
}

twin_op twin_op_parse(const char *name)
{
	for (int op = 1; op < TWIN_OP_COUNT; op++)
		if (strcmp(ops[op].name, name) == 0)
			return (twin_op)op;
	return 0;
}

static void seq_key(uint64_t seq, unsigned char key[8])
{
	for (int i = 7; i >= 0; i--, seq >>= 8)
		key[i] = (unsigned char)seq;
}

static uint64_t seq_of(const MDB_val *k)
{
	const unsigned char *p = k->mv_data;
	uint64_t seq = 0;

	for (size_t i = 0; i < 8 && i < k->mv_size; i++)
		seq = seq << 8 | p[i];
	return k->mv_size == 8 ? seq : 0;
}

/* Append "name":"value" to out[*at..max), value escaped as cJSON prints
 * strings (UTF-8 passes through). 0 when it does not fit. No allocation:
 * the actor must be right even when memory runs out. */
static int put_string_member(char *out, size_t *at, size_t max, const char *name, const char *value)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = *at;
	int k = snprintf(out + n, max - n, "\"%s\":\"", name);

	if (k < 0 || (size_t)k >= max - n)
		return 0;
	n += (size_t)k;
	for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
		char esc[7] = {'\\', 0};
		size_t len = 2;

		switch (*p) {
		case '"':
		case '\\':
			esc[1] = (char)*p;
			break;
		case '\b':
			esc[1] = 'b';
			break;
		case '\f':
			esc[1] = 'f';
			break;
		case '\n':
			esc[1] = 'n';
			break;
		case '\r':
			esc[1] = 'r';
			break;
		case '\t':
			esc[1] = 't';
			break;
		default:
			if (*p >= 0x20) {
				esc[0] = (char)*p;
				len = 1;
			} else {
				memcpy(esc + 1, "u00", 3);
				esc[4] = hex[*p >> 4];
				esc[5] = hex[*p & 15];
				len = 6;
			}
		}
		if (max - n <= len)
			return 0;
		memcpy(out + n, esc, len);
		n += len;
	}
	if (max - n <= 1)
		return 0;
	out[n++] = '"';
	out[n] = '\0';
	*at = n;
	return 1;
}

/* s cut to at most 128 bytes, at a character boundary, into out. */
static const char *cut128(const char *s, char out[129])
{
	size_t n = strlen(s);

	if (n > 128)
		for (n = 128; n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80; n--)
			; /* s[n] continues a character: cut before it starts */
	memcpy(out, s, n);
	out[n] = '\0';
	return out;
}

void twin_store_set_actor(twin_store *s, const char *kind, const char *name, const char *job)
{
	char text[CHANGES_ACTOR_MAX], cut[129];
	size_t at = 1;
	int ok;

	if (kind == NULL) {
		strcpy(s->chg.actor, DEFAULT_ACTOR);
		return;
	}
	text[0] = '{';
	ok = put_string_member(text, &at, sizeof(text), "type", kind);
	if (ok && name != NULL) {
		text[at++] = ',';
		ok = put_string_member(text, &at, sizeof(text), "name", cut128(name, cut));
	}
	if (ok && job != NULL) {
		text[at++] = ',';
		ok = put_string_member(text, &at, sizeof(text), "jobId", cut128(job, cut));
	}
	/* CHANGES_ACTOR_MAX holds the longest actor, so ok stays 1; the checks
	 * guard the buffer all the same. */
	ok = ok && at + 1 < sizeof(text);
	if (ok) {
		text[at++] = '}';
		text[at] = '\0';
	}
	memcpy(s->chg.actor, ok ? text : DEFAULT_ACTOR, ok ? at + 1 : sizeof(DEFAULT_ACTOR));
}

twin_err changes_open(twin_store *s, twin_error *err)
{
	MDB_cursor *cur;
	MDB_val k, v;
	uint64_t next = 1;
	twin_err rc = db_read_begin(s, err);
	int mrc;

	if (rc != TWIN_OK)
		return rc;
	strcpy(s->chg.actor, DEFAULT_ACTOR);
	mrc = mdb_cursor_open(db_txn(s), s->dbi[DB_CHANGES], &cur);
	if (mrc == 0) {
		if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && seq_of(&k) >= next)
			next = seq_of(&k) + 1;
		mdb_cursor_close(cur);
	}
	if (db_get(s, DB_META, FLOOR_KEY, strlen(FLOOR_KEY), &v, NULL) == TWIN_OK &&
	    v.mv_size == sizeof(uint64_t)) {
		uint64_t floor;

		memcpy(&floor, v.mv_data, sizeof(floor));
		if (floor > next)
			next = floor;
	}
	db_read_end(s);
	if (mrc != 0)
		return twin_error_set(err, TWIN_E_STORAGE, "Storage error: changes: %s",
		                      mdb_strerror(mrc));
	s->chg.next = s->chg.base = next;
	return TWIN_OK;
}

void changes_free(twin_store *s)
{
	cJSON_free(s->chg.pending.data);
	cJSON_free(s->chg.ready.data);
	cJSON_free(s->chg.body.data);
	memset(&s->chg.pending, 0, sizeof(twin_buf));
	memset(&s->chg.ready, 0, sizeof(twin_buf));
	memset(&s->chg.body, 0, sizeof(twin_buf));
}

void changes_batch_begin(twin_store *s)
{
	s->chg.base = s->chg.next;
	s->chg.pending.len = 0;
	s->chg.batch++;
}

void changes_committed(twin_store *s)
{
	changes_state *c = &s->chg;

	c->batch++; /* marks of this batch are void now */
	/* Nobody drains (a tool loading a million twins): keep nothing. */
	if (s->drain_changes && c->pending.len > 0 &&
	    !twin_buf_put(&c->ready, c->pending.data, c->pending.len)) {
		/* Durable, but no event goes out for these: replay still has them. */
	}
	c->pending.len = 0;
	c->base = c->next;
}

void changes_aborted(twin_store *s)
{
	s->chg.batch++;
	s->chg.pending.len = 0;
	s->chg.next = s->chg.base;
}

uint64_t twin_changes_next(const twin_store *s)
{
	return s->chg.next;
}

void changes_stamp(twin_store *s, const char *when, int64_t version)
{
	snprintf(s->chg.stamp, sizeof(s->chg.stamp), "%s", when ? when : "");
	s->chg.stamp_version = version;
}

/* The three texts a stamp stands for (index = token - 1). */
typedef struct stamp_texts {
	char text[3][STAMP_MAX + 96];
	size_t len[3];
} stamp_texts;

static void stamp_texts_make(stamp_texts *t, const char *stamp, size_t n, int64_t version)
{
	int k;

	k = snprintf(t->text[0], sizeof(t->text[0]), "\"%.*s\"", (int)n, stamp);
	t->len[0] = (size_t)k;
	k = snprintf(t->text[1], sizeof(t->text[1]), "{\"$lastUpdated\":\"%.*s\"}", (int)n, stamp);
	t->len[1] = (size_t)k;
	k = snprintf(t->text[2], sizeof(t->text[2]),
	             "{\"$lastUpdated\":\"%.*s\",\"$lastUpdatedVersion\":%" PRId64 "}", (int)n,
	             stamp, version);
	t->len[2] = version > 0 ? (size_t)k : 0; /* 0: never matched */
}

/* body[0..len) into out with the stamp's texts replaced by their tokens. */
static int put_packed(twin_buf *out, const char *body, size_t len, const stamp_texts *t)
{
	size_t from = 0;

	for (size_t i = 0; i < len; i++) {
		if (body[i] != '{' && body[i] != '"')
			continue;
		for (int k = 2; k >= 0; k--) {
			unsigned char token = (unsigned char)(k + 1);

			if (t->len[k] == 0 || len - i < t->len[k] ||
			    memcmp(body + i, t->text[k], t->len[k]) != 0)
				continue;
			if (!twin_buf_put(out, body + from, i - from) ||
			    !twin_buf_put(out, &token, 1))
				return 0;
			i += t->len[k] - 1;
			from = i + 1;
			break;
		}
	}
	return twin_buf_put(out, body + from, len - from);
}

/* The entry value for body (with its sequence number in front) into out. */
static int encode(twin_buf *out, uint64_t seq, twin_op op, int64_t ticks, const char *device_id,
                  const char *actor, size_t actor_len, const char *body, size_t len,
                  const char *stamp, int64_t stamp_version)
{
	unsigned char hdr[HDR_LEN];
	uint16_t idlen = (uint16_t)strlen(device_id), alen = (uint16_t)actor_len;
	size_t slen = body ? strlen(stamp) : 0;
	stamp_texts t;
	char num[128];
	int n;

	hdr[0] = 1;
	hdr[1] = (unsigned char)op;
	memcpy(hdr + 2, &idlen, 2);
	memcpy(hdr + 4, &alen, 2);
	memcpy(hdr + 6, &ticks, 8);
	hdr[14] = (unsigned char)slen;
	if (body == NULL)
		n = snprintf(num, sizeof(num), "{\"sequenceNumber\":\"%064" PRIX64 "\"}", seq);
	else
		n = snprintf(num, sizeof(num), "{\"sequenceNumber\":%" PRIu64 "%s", seq,
		             len > 2 ? "," : "");
	if (!twin_buf_put(out, hdr, HDR_LEN) || !twin_buf_put(out, device_id, idlen) ||
	    !twin_buf_put(out, actor, actor_len) || !twin_buf_put(out, num, (size_t)n))
		return 0;
	if (body == NULL)
		return 1;
	if (slen == 0)
		return twin_buf_put(out, body + 1, len - 1);
	/* The stamp goes after the body's start, so the body stays at the end. */
	stamp_texts_make(&t, stamp, slen, stamp_version);
	out->len -= (size_t)n; /* re-put the number after the stamp */
	return twin_buf_put(out, stamp, slen) &&
	       twin_buf_put(out, &stamp_version, sizeof(stamp_version)) &&
	       twin_buf_put(out, num, (size_t)n) && put_packed(out, body + 1, len - 1, &t);
}

twin_err changes_append(twin_store *s, twin_op op, const char *device_id, int by_device,
                        const char *body, size_t len, twin_error *err)
{
	changes_state *c = &s->chg;
	char device_actor[CHANGES_ACTOR_MAX];
	const char *actor = c->actor;
	unsigned char key[8];
	size_t start = c->pending.len, vstart;
	uint32_t vlen;
	twin_err rc;

	if (by_device) {
		snprintf(device_actor, sizeof(device_actor),
		         "{\"type\":\"device\",\"name\":\"%s\"}",
		         device_id); /* device ids need no escaping (twin_device_id_valid) */
		actor = device_actor;
	}
	seq_key(c->next, key);
	/* In memory: [seq][value length][value]; the value is what LMDB gets. */
	vlen = 0;
	if (!twin_buf_put(&c->pending, &c->next, sizeof(c->next)) ||
	    !twin_buf_put(&c->pending, &vlen, sizeof(vlen)) ||
	    !encode(&c->pending, c->next, op, twin_store_now(s), device_id, actor, strlen(actor),
	            body, len, c->stamp, c->stamp_version)) {
		c->pending.len = start;
		db_fail_batch(s);
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	}
	vstart = start + sizeof(uint64_t) + sizeof(uint32_t);
	vlen = (uint32_t)(c->pending.len - vstart);
	memcpy(c->pending.data + start + sizeof(uint64_t), &vlen, sizeof(vlen));
	rc = db_append(s, DB_CHANGES, key, sizeof(key), c->pending.data + vstart, vlen, err);
	if (rc != TWIN_OK) {
		c->pending.len = start;
		db_fail_batch(s);
		return rc;
	}
	c->next++;
	c->stamp[0] = '\0'; /* a stamp is for one entry */
	return TWIN_OK;
}

/* Decode an entry value; a packed body is expanded into buf (so out->body
 * is valid until buf changes). 1 when decoded, 0 if the value is
 * malformed, -1 when memory ran out. */
static int decode(uint64_t seq, const unsigned char *p, size_t n, twin_change *out, char *id,
                  twin_buf *buf)
{
	uint16_t idlen, alen;
	size_t slen, at;
	int64_t version;
	stamp_texts t;
	const char *body;

	if (n < HDR_LEN || p[0] != 1 || !op_valid((twin_op)p[1]))
		return 0;
	memcpy(&idlen, p + 2, 2);
	memcpy(&alen, p + 4, 2);
	slen = p[14];
	at = (size_t)HDR_LEN + idlen + alen + (slen ? slen + sizeof(version) : 0);
	if (idlen > TWIN_DEVICE_ID_MAX || slen > STAMP_MAX || at > n)
		return 0;
	out->seq = seq;
	out->op = (twin_op)p[1];
	memcpy(&out->ticks, p + 6, 8);
	memcpy(id, p + HDR_LEN, idlen);
	id[idlen] = '\0';
	out->device_id = id;
	out->actor = (const char *)p + HDR_LEN + idlen;
	out->actor_len = alen;
	out->body = (const char *)p + at;
	out->body_len = n - at;
	if (slen == 0)
		return 1;
	memcpy(&version, out->actor + alen + slen, sizeof(version));
	stamp_texts_make(&t, out->actor + alen, slen, version);
	buf->len = 0;
	body = out->body;
	for (size_t i = 0, from = 0; i <= out->body_len; i++) {
		unsigned char c = i < out->body_len ? (unsigned char)body[i] : 0;

		if (i < out->body_len && (c < 1 || c > 3))
			continue;
		if (!twin_buf_put(buf, body + from, i - from) ||
		    (i < out->body_len && !twin_buf_put(buf, t.text[c - 1], t.len[c - 1])))
			return -1;
		from = i + 1;
	}
	out->body = buf->data ? buf->data : "";
	out->body_len = buf->len;
	return 1;
}

void twin_changes_drain(twin_store *s, twin_change_fn fn, void *arg)
{
	twin_buf *r = &s->chg.ready;
	char id[TWIN_DEVICE_ID_MAX + 1];
	size_t off = 0;

	while (off + sizeof(uint64_t) + sizeof(uint32_t) <= r->len) {
		uint64_t seq;
		uint32_t vlen;
		twin_change c;

		memcpy(&seq, r->data + off, sizeof(seq));
		memcpy(&vlen, r->data + off + sizeof(seq), sizeof(vlen));
		off += sizeof(seq) + sizeof(vlen);
		if (decode(seq, (unsigned char *)r->data + off, vlen, &c, id, &s->chg.body) > 0)
			fn(arg, &c);
		off += vlen;
	}
	r->len = 0;
}

twin_changes_mark twin_changes_mark_get(const twin_store *s)
{
	return (twin_changes_mark){s->chg.batch, s->chg.next, s->chg.pending.len};
}

twin_err twin_changes_rollback(twin_store *s, twin_changes_mark m, twin_error *err)
{
	unsigned char key[8];
	twin_err rc = TWIN_OK;

	/* A mark taken before any write of the batch (batch - 1, wtxn not yet
	 * open then) is the batch's start. */
	int same = s->wtxn != NULL &&
	           (m.batch == s->chg.batch ||
	            (m.batch + 1 == s->chg.batch && m.seq == s->chg.base && m.pending == 0));

	if (!same || m.seq > s->chg.next || m.pending > s->chg.pending.len)
		return TWIN_OK; /* the batch it marked is gone already */
	for (uint64_t seq = m.seq; seq < s->chg.next && rc == TWIN_OK; seq++) {
		seq_key(seq, key);
		rc = db_del(s, DB_CHANGES, key, sizeof(key), err);
	}
	if (rc == TWIN_OK) {
		s->chg.next = m.seq;
		s->chg.pending.len = m.pending;
	}
	return rc;
}

/* §9: deviceId, etag, version, tags and properties of the twin as it is. */
twin_err changes_append_twin(twin_store *s, twin_op op, const char *device_id, twin_error *err)
{
	static const char *keep[] = {"deviceId", "etag", "version", "tags", "properties"};
	cJSON *view = NULL, *body = cJSON_CreateObject();
	twin_err rc = body ? twin_get(s, device_id, &view, err)
	                   : twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");

	for (size_t i = 0; rc == TWIN_OK && i < sizeof(keep) / sizeof(keep[0]); i++) {
		cJSON *m = cJSON_DetachItemFromObjectCaseSensitive(view, keep[i]);

		if (m != NULL && !cJSON_AddItemToObject(body, keep[i], m)) {
			cJSON_Delete(m);
			rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
		}
	}
	s->chg.body.len = 0;
	if (rc == TWIN_OK && !twin_json_print_append(&s->chg.body, body))
		rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	cJSON_Delete(view);
	cJSON_Delete(body);
	if (rc == TWIN_OK)
		return changes_append(s, op, device_id, 0, s->chg.body.data, s->chg.body.len, err);
	db_fail_batch(s);
	return rc;
}

/* "name":{patch…,"$metadata":{touched},"$version":v} appended to b. */
static int put_section(twin_buf *b, const char *name, const changes_section *sec)
{
	cJSON *touched = NULL;
	char num[40];
	int ok, n;

	ok = twin_buf_put(b, "\"", 1) && twin_buf_put(b, name, strlen(name)) &&
	     twin_buf_put(b, "\":", 2) && twin_json_print_append(b, sec->patch);
	if (!ok || sec->meta == NULL)
		return ok;
	b->len--; /* reopen the patch object */
	if (b->len > 0 && b->data[b->len - 1] != '{')
		ok = twin_buf_put(b, ",", 1);
	touched = twin_meta_touched(sec->meta, sec->patch);
	n = snprintf(num, sizeof(num), ",\"$version\":%" PRId64 "}", sec->version);
	ok = ok && touched != NULL && twin_buf_put(b, "\"$metadata\":", 12) &&
	     twin_json_print_append(b, touched) && twin_buf_put(b, num, (size_t)n);
	cJSON_Delete(touched);
	return ok;
}

twin_err changes_append_update(twin_store *s, const char *device_id, int by_device, int64_t version,
                               const changes_section *tags, const changes_section *desired,
                               const changes_section *reported, twin_error *err)
{
	twin_buf *b = &s->chg.body;
	char num[40];
	int n = snprintf(num, sizeof(num), "{\"version\":%" PRId64, version);
	int ok;

	b->len = 0;
	ok = twin_buf_put(b, num, (size_t)n);
	if (ok && tags->patch != NULL)
		ok = twin_buf_put(b, ",", 1) && put_section(b, "tags", tags);
	if (ok && (desired->patch != NULL || reported->patch != NULL)) {
		ok = twin_buf_put(b, ",\"properties\":{", 15);
		if (ok && desired->patch != NULL)
			ok = put_section(b, "desired", desired);
		if (ok && desired->patch != NULL && reported->patch != NULL)
			ok = twin_buf_put(b, ",", 1);
		if (ok && reported->patch != NULL)
			ok = put_section(b, "reported", reported);
		ok = ok && twin_buf_put(b, "}", 1);
	}
	ok = ok && twin_buf_put(b, "}", 1);
	if (!ok) {
		db_fail_batch(s);
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	}
	return changes_append(s, TWIN_OP_UPDATE_TWIN, device_id, by_device, b->data, b->len, err);
}

static twin_err lmdb_error(twin_error *err, int rc)
{
	return twin_error_set(err, TWIN_E_STORAGE, "Storage error: changes: %s", mdb_strerror(rc));
}

/* One replay item: the entry with its envelope. NULL when out of memory. */
static cJSON *item_of(const twin_change *c)
{
	char when[TWIN_TIMESTAMP_MAX];
	cJSON *it = cJSON_CreateObject();
	char *actor = cJSON_malloc(c->actor_len + 1), *body = cJSON_malloc(c->body_len + 1);
	int ok = it != NULL && actor != NULL && body != NULL;

	if (ok) {
		memcpy(actor, c->actor, c->actor_len);
		actor[c->actor_len] = '\0';
		memcpy(body, c->body, c->body_len);
		body[c->body_len] = '\0';
	}
	twin_timestamp_format(c->ticks, when);
	ok = ok && cJSON_AddNumberToObject(it, "sequenceNumber", (double)c->seq);
	ok = ok && cJSON_AddStringToObject(it, "opType", twin_op_name(c->op));
	ok = ok && cJSON_AddStringToObject(it, "deviceId", c->device_id);
	ok = ok && cJSON_AddStringToObject(it, "operationTimestamp", when);
	ok = ok && cJSON_AddRawToObject(it, "actor", actor);
	ok = ok && cJSON_AddRawToObject(it, "body", body);
	cJSON_free(actor);
	cJSON_free(body);
	if (!ok) {
		cJSON_Delete(it);
		return NULL;
	}
	return it;
}

twin_err twin_changes_read(twin_store *s, uint64_t from, size_t limit, const char *device_id,
                           twin_op op, cJSON **out, twin_error *err)
{
	twin_buf expanded = {0};
	char id[TWIN_DEVICE_ID_MAX + 1];
	unsigned char key[8];
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	uint64_t next = from, last = 0;
	size_t n = 0, scanned = 0;
	cJSON *res, *items;
	twin_err rc;
	int mrc;

	*out = NULL;
	if (limit < 1 || limit > TWIN_CHANGES_READ_MAX)
		return twin_error_set(err, TWIN_E_INVALID, "'limit' must be from 1 to %d.",
		                      TWIN_CHANGES_READ_MAX);
	res = cJSON_CreateObject();
	items = cJSON_AddArrayToObject(res, "items");
	if (items == NULL) {
		cJSON_Delete(res);
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	}
	rc = db_read_begin(s, err);
	if (rc != TWIN_OK) {
		cJSON_Delete(res);
		return rc;
	}
	mrc = mdb_cursor_open(db_txn(s), s->dbi[DB_CHANGES], &cur);
	if (mrc == 0 && (mrc = mdb_cursor_get(cur, &k, &v, MDB_LAST)) == 0)
		last = seq_of(&k);
	seq_key(from, key);
	k.mv_size = sizeof(key);
	k.mv_data = key;
	if (mrc == 0)
		mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	for (; mrc == 0 && n < limit && scanned < TWIN_CHANGES_SCAN_MAX;
	     mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		twin_change c;
		cJSON *it;
		int ok;

		scanned++;
		next = seq_of(&k) + 1;
		ok = decode(seq_of(&k), v.mv_data, v.mv_size, &c, id, &expanded);
		if (ok < 0) {
			mrc = ENOMEM;
			break;
		}
		if (ok == 0 || (device_id != NULL && strcmp(device_id, c.device_id) != 0) ||
		    (op != 0 && op != c.op))
			continue;
		if ((it = item_of(&c)) == NULL || !cJSON_AddItemToArray(items, it)) {
			cJSON_Delete(it);
			mrc = ENOMEM;
			break;
		}
		n++;
	}
	if (mrc == MDB_NOTFOUND) {
		mrc = 0;
		if (last >= next)
			next = last + 1; /* nothing at or after from: wait at the end */
	}
	if (cur != NULL)
		mdb_cursor_close(cur);
	cJSON_free(expanded.data);
	db_read_end(s);
	if (mrc == ENOMEM)
		rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	else if (mrc != 0)
		rc = lmdb_error(err, mrc);
	else if (!cJSON_AddNumberToObject(res, "nextSequence",
	                                  (double)(next > from ? next : from)) ||
	         !cJSON_AddNumberToObject(res, "lastSequence", (double)last))
		rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	if (rc != TWIN_OK) {
		cJSON_Delete(res);
		return rc;
	}
	*out = res;
	return TWIN_OK;
}

twin_err twin_changes_trim(twin_store *s, uint64_t max_count, int64_t max_age_ticks,
                           size_t max_delete, size_t *deleted, twin_error *err)
{
	int64_t oldest_allowed = max_age_ticks > 0 ? twin_store_now(s) - max_age_ticks : 0;
	MDB_cursor *cur = NULL;
	MDB_stat st;
	MDB_val k, v;
	uint64_t count, floor = 0;
	size_t n = 0;
	twin_err rc;
	int mrc;

	if (deleted != NULL)
		*deleted = 0;
	if (max_count == 0 && max_age_ticks <= 0)
		return TWIN_OK;
	rc = db_write_begin(s, err);
	if (rc != TWIN_OK)
		return rc;
	mrc = mdb_stat(s->wtxn, s->dbi[DB_CHANGES], &st);
	count = mrc == 0 ? st.ms_entries : 0;
	if (mrc == 0)
		mrc = mdb_cursor_open(s->wtxn, s->dbi[DB_CHANGES], &cur);
	/* Collect first: db_del may replay the batch into a new transaction,
	 * which no cursor survives. Keys are consecutive from the first. */
	for (int op = MDB_FIRST; mrc == 0 && n < max_delete; op = MDB_NEXT) {
		int64_t ticks;

		if ((mrc = mdb_cursor_get(cur, &k, &v, op)) != 0)
			break;
		if (v.mv_size < HDR_LEN)
			ticks = 0; /* malformed: old enough */
		else
			memcpy(&ticks, (char *)v.mv_data + 6, sizeof(ticks));
		if (!(max_count > 0 && count - n > max_count) && !(ticks < oldest_allowed))
			break;
		if (n == 0)
			floor = seq_of(&k);
		n++;
	}
	if (cur != NULL)
		mdb_cursor_close(cur);
	if (mrc != 0 && mrc != MDB_NOTFOUND)
		return lmdb_error(err, mrc);
	for (size_t i = 0; i < n && rc == TWIN_OK; i++) {
		unsigned char key[8];

		seq_key(floor + i, key);
		rc = db_del(s, DB_CHANGES, key, sizeof(key), err);
	}
	if (rc == TWIN_OK && n > 0) {
		floor += n;
		rc = db_put(s, DB_META, FLOOR_KEY, strlen(FLOOR_KEY), &floor, sizeof(floor), err);
	}
	if (rc == TWIN_OK && deleted != NULL)
		*deleted = n;
	return rc;
}
