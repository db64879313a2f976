/*
 * jobs.c - bulk twin jobs (twin/jobs.h): records, life cycle and slices.
 *
 * Table "jobs": key = jobId; value = a 9-byte header (status, then the
 * ticks at which a scheduled job may start) and the record's JSON text:
 *   {"job":{the job object},"cursor":"<last deviceId visited>",
 *    "actor":{"type","name"},"runStart":<ticks>}
 * The header lets each slice find the job to run by reading one byte per
 * job instead of parsing every record. A slice parses and rewrites one
 * record; jobs are few and slices visit hundreds of twins, so that is noise.
 *
 * A slice runs inside the open batch and takes the twins' ordinary write
 * path (twin_update), so each update writes its change log entry and gives
 * its desired notification like any back-end update; the job record moves
 * forward in the same transaction (twin/jobs.h: no device twice).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "db.h"
#include "query_run.h"
#include "twin/changes.h"
#include "twin/doc.h"
#include "twin/jobs.h"
#include "twin/query.h"
#include "twin_records.h"

#define HDR 9

enum { ST_QUEUED = 'q', ST_SCHEDULED = 's', ST_RUNNING = 'r', ST_DONE = 'd' };

static twin_err nomem(twin_error *err)
{
	return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
}

static twin_err storage(twin_error *err, int rc)
{
	return twin_error_set(err, TWIN_E_STORAGE, "Storage error: jobs: %s", mdb_strerror(rc));
}

/* "YYYY-MM-DDTHH:MM:SS[.fraction]Z" (UTC, from 1970) as ticks; -1 when
 * malformed or out of range. */
static int64_t parse_time(const char *t)
{
	struct tm tm = {0}, back;
	int used = 0, digits = 0;
	int64_t frac = 0, scale = 1000000;
	time_t secs;

	if (sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
	           &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &used) != 6 ||
	    used != 19)
		return -1;
	t += used;
	if (*t == '.')
		for (t++; *t >= '0' && *t <= '9'; t++, scale /= 10, digits++)
			frac += scale > 0 ? (*t - '0') * scale : 0;
	if (strcmp(t, "Z") != 0 || (t[-1] == '.' && digits == 0) || tm.tm_year < 1970)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	back = tm;
	secs = timegm(&tm);
	/* timegm normalises (25:00 is tomorrow, Feb 30 is March): refuse that. */
	if (secs < 0 || tm.tm_year != back.tm_year || tm.tm_mon != back.tm_mon ||
	    tm.tm_mday != back.tm_mday || tm.tm_hour != back.tm_hour || tm.tm_min != back.tm_min ||
	    tm.tm_sec != back.tm_sec)
		return -1;
	return (int64_t)secs * 10000000 + frac;
}

/* A syntax error's position in the query built around a condition, moved
 * back into the condition the user wrote. */
static void error_in_condition(twin_error *err, size_t prefix)
{
	size_t pos;
	int used = 0;
	char rest[sizeof(err->message)];

	if (err == NULL || sscanf(err->message, "Syntax error at position %zu%n", &pos, &used) != 1)
		return;
	snprintf(rest, sizeof(rest), "%s", err->message + used);
	if (pos < prefix) /* about the words added around the condition */
		twin_error_set(err, err->err, "Invalid 'queryCondition'%.200s", rest);
	else
		twin_error_set(err, err->err,
		               "Syntax error in queryCondition at position %zu%.200s", pos - prefix,
		               rest);
}

/* The query a condition stands for ("…", "WHERE …" or "SELECT …"). */
static twin_err parse_condition(const char *cond, twin_query **q, twin_error *err)
{
	size_t n = strlen(cond), skip = strspn(cond, " \t\r\n");
	const char *prefix = strncasecmp(cond + skip, "SELECT", 6) == 0 ? ""
	                     : strncasecmp(cond + skip, "WHERE", 5) == 0
	                             ? "SELECT * FROM devices "
	                             : "SELECT * FROM devices WHERE ";
	char *text = malloc(n + 40);
	twin_err rc;

	if (text == NULL)
		return nomem(err);
	snprintf(text, n + 40, "%s%s", prefix, cond);
	rc = twin_query_parse(text, strlen(text), q, err);
	if (rc == TWIN_E_INVALID)
		error_in_condition(err, strlen(prefix));
	free(text);
	if (rc == TWIN_OK &&
	    ((*q)->aggregate || (*q)->ngroup > 0 || (*q)->top >= 0 || (*q)->modules)) {
		twin_query_free(*q);
		*q = NULL;
		rc = twin_error_set(err, TWIN_E_INVALID,
		                    "'queryCondition' must select devices: no aggregates, GROUP "
		                    "BY, TOP or devices.modules.");
	}
	return rc;
}

/* 1 if device_id's twin (in the batch) meets q's WHERE, 0 if not, -1 when
 * out of memory. A half-written twin never matches. */
static int matches(twin_store *s, const twin_query *q, const char *device_id)
{
	static const char kinds[ROW_KINDS] = {
	        [ROW_V] = 'V', [ROW_T] = 'T', [ROW_D] = 'D', [ROW_R] = 'R'};
	q_row row = {.txn = db_txn(s), .devices = s->dbi[DB_DEVICES]};

	q_row_reset(&row, device_id, strlen(device_id));
	for (int k = 0; k < ROW_KINDS; k++)
		row.have[k] = twin_record_get(s, device_id, kinds[k], &row.rec[k], NULL) == TWIN_OK;
	if (!row.have[ROW_V] || row.rec[ROW_V].mv_size != sizeof(row.version))
		return 0;
	memcpy(&row.version, row.rec[ROW_V].mv_data, sizeof(row.version));
	return q_eval_where(q->where, q_row_lookup, &row);
}

/* ---- records ---- */

typedef struct job_rec {
	char id[TWIN_JOB_ID_MAX + 1];
	cJSON *root; /* the record; job = its "job" member */
	cJSON *job;
} job_rec;

static void rec_free(job_rec *r)
{
	cJSON_Delete(r->root);
	r->root = r->job = NULL;
}

/* Every member a record needs (twin/jobs.h), with its type. */
static int rec_whole(const job_rec *r)
{
	static const char *strings[] = {"jobId",          "type",        "status",
	                                "queryCondition", "createdTime", "startTime"};
	static const char *stats[] = {"deviceCount", "failedCount", "succeededCount",
	                              "runningCount", "pendingCount"};
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(r->job, "deviceJobStatistics");
	const cJSON *pr = cJSON_GetObjectItemCaseSensitive(r->job, "progress");

	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
		if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r->job, strings[i])))
			return 0;
	for (size_t i = 0; i < sizeof(stats) / sizeof(stats[0]); i++)
		if (!cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(st, stats[i])))
			return 0;
	return cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r->job, "updateTwin")) &&
	       cJSON_IsNumber(
	               cJSON_GetObjectItemCaseSensitive(r->job, "maxExecutionTimeInSeconds")) &&
	       cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(pr, "scanned")) &&
	       cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(pr, "total")) &&
	       cJSON_IsString(cJSON_GetObjectItemCaseSensitive(r->root, "cursor")) &&
	       cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(r->root, "actor")) &&
	       cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(r->root, "runStart"));
}

static twin_err rec_load(twin_store *s, const char *id, job_rec *r, twin_error *err)
{
	MDB_val v;
	twin_err rc;

	memset(r, 0, sizeof(*r));
	if (strlen(id) > TWIN_JOB_ID_MAX)
		return twin_error_set(err, TWIN_E_NOT_FOUND, "Job '%.128s' not found.", id);
	rc = db_read_begin(s, err);
	if (rc != TWIN_OK)
		return rc;
	rc = db_get(s, DB_JOBS, id, strlen(id), &v, err);
	if (rc == TWIN_E_NOT_FOUND)
		twin_error_set(err, rc, "Job '%s' not found.", id);
	if (rc == TWIN_OK) {
		r->root = v.mv_size > HDR
		                  ? cJSON_ParseWithLength((char *)v.mv_data + HDR, v.mv_size - HDR)
		                  : NULL;
		r->job = cJSON_GetObjectItemCaseSensitive(r->root, "job");
		if (r->job == NULL || !rec_whole(r))
			rc = twin_error_set(err, TWIN_E_STORAGE,
			                    "Storage error: job '%s' is corrupt.", id);
	}
	db_read_end(s);
	if (rc == TWIN_OK)
		strcpy(r->id, id);
	else
		rec_free(r);
	return rc;
}

static const char *job_status(const job_rec *r)
{
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(r->job, "status");

	return cJSON_IsString(st) ? st->valuestring : "failed";
}

static int64_t start_ticks(const job_rec *r)
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(r->job, "startTime");

	int64_t at = cJSON_IsString(t) ? parse_time(t->valuestring) : 0;

	return at > 0 ? at : 0;
}

static char header_status(const char *status)
{
	return strcmp(status, "queued") == 0      ? ST_QUEUED
	       : strcmp(status, "scheduled") == 0 ? ST_SCHEDULED
	       : strcmp(status, "running") == 0   ? ST_RUNNING
	                                          : ST_DONE;
}

static twin_err rec_store(twin_store *s, job_rec *r, twin_error *err)
{
	twin_buf b = {0};
	unsigned char hdr[HDR];
	int64_t start = start_ticks(r);
	twin_err rc;

	hdr[0] = (unsigned char)header_status(job_status(r));
	memcpy(hdr + 1, &start, sizeof(start));
	if (!twin_buf_put(&b, hdr, HDR) || !twin_json_print_append(&b, r->root)) {
		cJSON_free(b.data);
		db_fail_batch(s);
		return nomem(err);
	}
	rc = db_put(s, DB_JOBS, r->id, strlen(r->id), b.data, b.len, err);
	cJSON_free(b.data);
	return rc;
}

static void set_number(cJSON *obj, const char *name, double v)
{
	cJSON *n = cJSON_GetObjectItemCaseSensitive(obj, name);

	if (n != NULL)
		cJSON_SetNumberValue(n, v);
	else
		cJSON_AddNumberToObject(obj, name, v);
}

/* Set member name of obj to item (taken; freed if it cannot be added). */
static void set_item(cJSON *obj, const char *name, cJSON *item)
{
	if (item == NULL)
		return;
	if (cJSON_GetObjectItemCaseSensitive(obj, name) != NULL
	            ? !cJSON_ReplaceItemInObjectCaseSensitive(obj, name, item)
	            : !cJSON_AddItemToObject(obj, name, item))
		cJSON_Delete(item);
}

static void set_string(cJSON *obj, const char *name, const char *v)
{
	set_item(obj, name, cJSON_CreateString(v));
}

static void set_time(cJSON *obj, const char *name, int64_t ticks)
{
	char when[TWIN_TIMESTAMP_MAX];

	twin_timestamp_format(ticks, when);
	set_string(obj, name, when);
}

/* Count n more of name in the job's deviceJobStatistics. */
static void count(job_rec *r, const char *name, double n)
{
	cJSON *stats = cJSON_GetObjectItemCaseSensitive(r->job, "deviceJobStatistics");
	cJSON *c = cJSON_GetObjectItemCaseSensitive(stats, name);

	if (cJSON_IsNumber(c))
		cJSON_SetNumberValue(c, c->valuedouble + n);
}

static void finish(twin_store *s, job_rec *r, const char *status, const char *reason)
{
	set_string(r->job, "status", status);
	set_time(r->job, "endTime", twin_store_now(s));
	if (reason != NULL)
		set_string(r->job, "failureReason", reason);
}

/* ---- commands ---- */

static twin_err check_update(twin_store *s, const cJSON *u, twin_error *err)
{
	const cJSON *etag = cJSON_GetObjectItemCaseSensitive(u, "etag");
	const cJSON *tags = cJSON_GetObjectItemCaseSensitive(u, "tags");
	const cJSON *props = cJSON_GetObjectItemCaseSensitive(u, "properties");
	const cJSON *desired = cJSON_GetObjectItemCaseSensitive(props, "desired");
	const cJSON *reported = cJSON_GetObjectItemCaseSensitive(props, "reported");

	if (!cJSON_IsObject(u))
		return twin_error_set(err, TWIN_E_INVALID, "'updateTwin' must be an object.");
	if (etag != NULL && !cJSON_IsString(etag))
		return twin_error_set(err, TWIN_E_INVALID, "'updateTwin.etag' must be a string.");
	if ((tags != NULL && !cJSON_IsObject(tags)) || (props != NULL && !cJSON_IsObject(props)) ||
	    (desired != NULL && !cJSON_IsObject(desired)))
		return twin_error_set(err, TWIN_E_INVALID,
		                      "'updateTwin' tags and properties.desired must be objects.");
	if (reported != NULL)
		return twin_error_set(err, TWIN_E_INVALID,
		                      "properties.reported cannot be written by the back end.");
	if ((tags == NULL || tags->child == NULL) && (desired == NULL || desired->child == NULL))
		return twin_error_set(err, TWIN_E_INVALID,
		                      "'updateTwin' must set tags or desired properties.");
	if (tags != NULL && twin_doc_validate(tags, 1, &s->limits, err) != TWIN_OK)
		return TWIN_E_INVALID;
	if (desired != NULL && twin_doc_validate(desired, 1, &s->limits, err) != TWIN_OK)
		return TWIN_E_INVALID;
	return TWIN_OK;
}

static const char *spec_string(const cJSON *spec, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(spec, name);

	return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A new record for a valid spec. */
static twin_err rec_new(twin_store *s, const cJSON *spec, job_rec *r, twin_error *err)
{
	const char *id = spec_string(spec, "jobId"), *type = spec_string(spec, "type");
	const char *cond = spec_string(spec, "queryCondition"),
	           *start = spec_string(spec, "startTime");
	const cJSON *max = cJSON_GetObjectItemCaseSensitive(spec, "maxExecutionTimeInSeconds");
	const cJSON *update = cJSON_GetObjectItemCaseSensitive(spec, "updateTwin");
	int64_t now = twin_store_now(s), at = start ? parse_time(start) : 0;
	const cJSON *start_item = cJSON_GetObjectItemCaseSensitive(spec, "startTime");
	double max_s = TWIN_JOB_MAX_EXECUTION_DEFAULT;
	twin_query *q = NULL;
	cJSON *stats, *progress;
	twin_err rc;

	memset(r, 0, sizeof(*r));
	if (id == NULL || !twin_device_id_valid(id))
		return twin_error_set(
		        err, TWIN_E_INVALID,
		        "'jobId' must be 1 to 128 letters, digits or - : . + %% _ # * "
		        "? ! ( ) , = @ ; $ '.");
	if (type == NULL || strcmp(type, "scheduleUpdateTwin") != 0)
		return twin_error_set(err, TWIN_E_INVALID,
		                      "'type' must be \"scheduleUpdateTwin\" (the only job type).");
	if (cond == NULL)
		return twin_error_set(err, TWIN_E_INVALID, "'queryCondition' is missing.");
	if ((start_item != NULL && start == NULL) || at < 0)
		return twin_error_set(err, TWIN_E_INVALID,
		                      "'startTime' must be an ISO 8601 UTC time such as "
		                      "2026-11-24T10:00:00Z.");
	if (max != NULL) {
		max_s = cJSON_IsNumber(max) ? max->valuedouble : 0;
		if (max_s != (double)(long long)max_s || max_s < 1 || max_s > 2147483647)
			return twin_error_set(
			        err, TWIN_E_INVALID,
			        "'maxExecutionTimeInSeconds' must be an integer from 1 "
			        "to 2147483647.");
	}
	rc = check_update(s, update, err);
	if (rc == TWIN_OK)
		rc = parse_condition(cond, &q, err);
	twin_query_free(q);
	if (rc != TWIN_OK)
		return rc;
	r->root = cJSON_CreateObject();
	r->job = cJSON_AddObjectToObject(r->root, "job");
	if (r->job == NULL) {
		rec_free(r);
		return nomem(err);
	}
	strcpy(r->id, id);
	set_string(r->job, "jobId", id);
	set_string(r->job, "type", type);
	set_string(r->job, "status", at > now ? "scheduled" : "queued");
	set_string(r->job, "queryCondition", cond);
	set_item(r->job, "updateTwin", cJSON_Duplicate(update, 1));
	set_time(r->job, "createdTime", now);
	set_time(r->job, "startTime", at > now ? at : now);
	set_number(r->job, "maxExecutionTimeInSeconds", max_s);
	stats = cJSON_AddObjectToObject(r->job, "deviceJobStatistics");
	progress = cJSON_AddObjectToObject(r->job, "progress");
	for (int i = 0; i < 5; i++)
		set_number(stats,
		           (const char *[]){"deviceCount", "failedCount", "succeededCount",
		                            "runningCount", "pendingCount"}[i],
		           0);
	set_number(progress, "scanned", 0);
	set_number(progress, "total", 0);
	set_string(r->root, "cursor", "");
	set_item(r->root, "actor", cJSON_Parse(s->chg.actor));
	set_number(r->root, "runStart", 0);
	/* The setters above cannot report memory running out: check the
	 * record is whole instead. */
	if (!rec_whole(r)) {
		rec_free(r);
		return nomem(err);
	}
	return TWIN_OK;
}

static twin_err job_out(job_rec *r, cJSON **out, twin_error *err)
{
	if (out == NULL)
		return TWIN_OK;
	*out = cJSON_Duplicate(r->job, 1);
	return *out ? TWIN_OK : nomem(err);
}

twin_err twin_job_create(twin_store *s, const cJSON *spec, cJSON **out, twin_error *err)
{
	job_rec r;
	MDB_val v;
	twin_err rc;

	if (out != NULL)
		*out = NULL;
	if (!cJSON_IsObject(spec))
		return twin_error_set(err, TWIN_E_INVALID, "The job must be a JSON object.");
	rc = rec_new(s, spec, &r, err);
	if (rc == TWIN_OK)
		rc = db_write_begin(s, err);
	if (rc == TWIN_OK && db_get(s, DB_JOBS, r.id, strlen(r.id), &v, NULL) == TWIN_OK)
		rc = twin_error_set(err, TWIN_E_EXISTS, "Job '%s' already exists.", r.id);
	if (rc == TWIN_OK)
		rc = rec_store(s, &r, err);
	if (rc == TWIN_OK) {
		s->jobs_hint = 1;
		rc = job_out(&r, out, err);
	}
	rec_free(&r);
	return rc;
}

twin_err twin_job_get(twin_store *s, const char *job_id, cJSON **out, twin_error *err)
{
	job_rec r;
	twin_err rc = rec_load(s, job_id, &r, err);

	*out = NULL;
	if (rc == TWIN_OK)
		rc = job_out(&r, out, err);
	rec_free(&r);
	return rc;
}

twin_err twin_job_cancel(twin_store *s, const char *job_id, cJSON **out, twin_error *err)
{
	job_rec r;
	twin_err rc = db_write_begin(s, err);

	if (out != NULL)
		*out = NULL;
	if (rc == TWIN_OK)
		rc = rec_load(s, job_id, &r, err);
	if (rc != TWIN_OK)
		return rc;
	if (header_status(job_status(&r)) != ST_DONE) {
		finish(s, &r, "cancelled", NULL);
		rc = rec_store(s, &r, err);
	}
	if (rc == TWIN_OK)
		rc = job_out(&r, out, err);
	rec_free(&r);
	return rc;
}

twin_err twin_job_list(twin_store *s, cJSON **out, twin_error *err)
{
	cJSON *res = cJSON_CreateObject(), *jobs = cJSON_AddArrayToObject(res, "jobs");
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	twin_err rc;
	int mrc;

	*out = NULL;
	if (jobs == NULL) {
		cJSON_Delete(res);
		return nomem(err);
	}
	rc = db_read_begin(s, err);
	if (rc != TWIN_OK) {
		cJSON_Delete(res);
		return rc;
	}
	mrc = mdb_cursor_open(db_txn(s), s->dbi[DB_JOBS], &cur);
	for (int op = MDB_FIRST; mrc == 0; op = MDB_NEXT) {
		cJSON *root, *job;

		if ((mrc = mdb_cursor_get(cur, &k, &v, op)) != 0)
			break;
		root = v.mv_size > HDR
		               ? cJSON_ParseWithLength((char *)v.mv_data + HDR, v.mv_size - HDR)
		               : NULL;
		job = cJSON_DetachItemFromObjectCaseSensitive(root, "job");
		cJSON_Delete(root);
		if (job != NULL && !cJSON_AddItemToArray(jobs, job)) {
			cJSON_Delete(job);
			mrc = ENOMEM;
		}
	}
	if (cur != NULL)
		mdb_cursor_close(cur);
	db_read_end(s);
	if (mrc != MDB_NOTFOUND) {
		cJSON_Delete(res);
		return mrc == ENOMEM ? nomem(err) : storage(err, mrc);
	}
	*out = res;
	return TWIN_OK;
}

/* ---- slices ---- */

/* The id of the job to run now into id, or "" if none; *waiting is set
 * when a job is scheduled for later. */
static twin_err pick(twin_store *s, char id[TWIN_JOB_ID_MAX + 1], int *waiting, twin_error *err)
{
	int64_t now = twin_store_now(s);
	MDB_cursor *cur = NULL;
	MDB_val k, v;
	int mrc;

	id[0] = '\0';
	*waiting = 0;
	mrc = mdb_cursor_open(db_txn(s), s->dbi[DB_JOBS], &cur);
	for (int op = MDB_FIRST; mrc == 0; op = MDB_NEXT) {
		const unsigned char *p;
		int64_t at;

		if ((mrc = mdb_cursor_get(cur, &k, &v, op)) != 0)
			break;
		if (v.mv_size < HDR || k.mv_size > TWIN_JOB_ID_MAX)
			continue;
		p = v.mv_data;
		memcpy(&at, p + 1, sizeof(at));
		if (p[0] == ST_SCHEDULED && at > now) {
			*waiting = 1;
			continue;
		}
		if (p[0] == ST_DONE)
			continue;
		/* A running job goes first, so jobs finish one by one. */
		if (id[0] == '\0' || p[0] == ST_RUNNING)
			snprintf(id, TWIN_JOB_ID_MAX + 1, "%.*s", (int)k.mv_size,
			         (char *)k.mv_data);
		if (p[0] == ST_RUNNING)
			break;
	}
	if (mrc == MDB_NOTFOUND)
		mrc = 0;
	if (cur != NULL)
		mdb_cursor_close(cur);
	return mrc == 0 ? TWIN_OK : storage(err, mrc);
}

/* Up to max device ids after `after`, in order, into ids; *n of them. */
static twin_err next_devices(twin_store *s, const char *after, size_t max,
                             char (*ids)[TWIN_DEVICE_ID_MAX + 1], size_t *n, twin_error *err)
{
	MDB_cursor *cur;
	MDB_val k = {strlen(after), (void *)after}, v;
	int mrc = mdb_cursor_open(db_txn(s), s->dbi[DB_DEVICES], &cur);
	int op = after[0] ? MDB_SET_RANGE : MDB_FIRST;

	*n = 0;
	while (mrc == 0 && *n < max) {
		if ((mrc = mdb_cursor_get(cur, &k, &v, op)) != 0)
			break;
		op = MDB_NEXT;
		if (k.mv_size > TWIN_DEVICE_ID_MAX ||
		    (k.mv_size == strlen(after) && memcmp(k.mv_data, after, k.mv_size) == 0))
			continue;
		memcpy(ids[*n], k.mv_data, k.mv_size);
		ids[(*n)++][k.mv_size] = '\0';
	}
	mdb_cursor_close(cur);
	return mrc == 0 || mrc == MDB_NOTFOUND ? TWIN_OK : storage(err, mrc);
}

/* Start a due job: running, its clock and the registry size. */
static void start(twin_store *s, job_rec *r)
{
	MDB_stat st;

	set_string(r->job, "status", "running");
	set_number(r->root, "runStart", (double)twin_store_now(s));
	if (mdb_stat(db_txn(s), s->dbi[DB_DEVICES], &st) == 0)
		set_number(cJSON_GetObjectItemCaseSensitive(r->job, "progress"), "total",
		           (double)st.ms_entries);
}

/* Apply the job's update to device_id. TWIN_OK also for a device that
 * failed (counted); other codes end the slice. */
static twin_err update_one(twin_store *s, job_rec *r, const char *device_id, twin_job_update_fn fn,
                           void *arg, twin_error *err)
{
	const cJSON *update = cJSON_GetObjectItemCaseSensitive(r->job, "updateTwin");
	const char *etag = spec_string(update, "etag");
	twin_write_result res = {0};
	twin_error derr;
	twin_err rc = twin_update(s, device_id, update, etag, &res, &derr);

	count(r, "deviceCount", 1);
	if (rc == TWIN_OK) {
		count(r, "succeededCount", 1);
		if (fn != NULL)
			fn(arg, device_id, &res);
	} else if (rc == TWIN_E_STORAGE || rc == TWIN_E_NOMEM) {
		*err = derr;
	} else {
		count(r, "failedCount", 1);
		rc = TWIN_OK;
	}
	twin_write_result_clear(&res);
	return rc;
}

static twin_err run_slice(twin_store *s, job_rec *r, size_t max_twins, twin_job_update_fn fn,
                          void *arg, twin_error *err)
{
	char(*ids)[TWIN_DEVICE_ID_MAX + 1] = malloc(max_twins * sizeof(*ids));
	const cJSON *cursor = cJSON_GetObjectItemCaseSensitive(r->root, "cursor");
	const cJSON *actor = cJSON_GetObjectItemCaseSensitive(r->root, "actor");
	cJSON *progress = cJSON_GetObjectItemCaseSensitive(r->job, "progress");
	char caller[sizeof(s->chg.actor)];
	twin_query *q = NULL;
	size_t n = 0;
	twin_err rc =
	        ids ? parse_condition(spec_string(r->job, "queryCondition"), &q, err) : nomem(err);

	if (rc == TWIN_OK)
		rc = next_devices(s, cJSON_IsString(cursor) ? cursor->valuestring : "", max_twins,
		                  ids, &n, err);
	memcpy(caller, s->chg.actor, sizeof(caller));
	twin_store_set_actor(s, spec_string(actor, "type"), spec_string(actor, "name"), r->id);
	for (size_t i = 0; i < n && rc == TWIN_OK; i++) {
		int m = matches(s, q, ids[i]);

		if (m < 0)
			rc = nomem(err);
		else if (m)
			rc = update_one(s, r, ids[i], fn, arg, err);
	}
	memcpy(s->chg.actor, caller, sizeof(caller)); /* the caller's again */
	if (rc == TWIN_OK && n > 0) {
		const cJSON *moved;

		set_string(r->root, "cursor", ids[n - 1]);
		moved = cJSON_GetObjectItemCaseSensitive(r->root, "cursor");
		if (!cJSON_IsString(moved) || strcmp(moved->valuestring, ids[n - 1]) != 0) {
			/* The slice's updates are in the batch: without the new
			 * position they would be applied again. Drop them all. */
			db_fail_batch(s);
			rc = nomem(err);
		}
	}
	if (rc == TWIN_OK && n > 0) {
		set_number(progress, "scanned",
		           cJSON_GetObjectItemCaseSensitive(progress, "scanned")->valuedouble +
		                   (double)n);
	}
	if (rc == TWIN_OK && n < max_twins)
		finish(s, r, "completed", NULL);
	twin_query_free(q);
	free(ids);
	return rc;
}

twin_err twin_jobs_step(twin_store *s, size_t max_twins, twin_job_update_fn fn, void *arg,
                        twin_jobs_state *state, twin_error *err)
{
	char id[TWIN_JOB_ID_MAX + 1];
	int waiting = 0;
	job_rec r;
	twin_err rc;

	*state = TWIN_JOBS_IDLE;
	if (!s->jobs_hint)
		return TWIN_OK;
	rc = db_write_begin(s, err);
	if (rc == TWIN_OK)
		rc = pick(s, id, &waiting, err);
	if (rc != TWIN_OK)
		return rc;
	if (id[0] == '\0') {
		s->jobs_hint = waiting; /* TICK checks scheduled jobs again */
		*state = waiting ? TWIN_JOBS_WAITING : TWIN_JOBS_IDLE;
		return TWIN_OK;
	}
	rc = rec_load(s, id, &r, err);
	if (rc != TWIN_OK)
		return rc;
	if (header_status(job_status(&r)) != ST_RUNNING)
		start(s, &r);
	{
		const cJSON *max =
		        cJSON_GetObjectItemCaseSensitive(r.job, "maxExecutionTimeInSeconds");
		const cJSON *t0 = cJSON_GetObjectItemCaseSensitive(r.root, "runStart");

		if (cJSON_IsNumber(max) && cJSON_IsNumber(t0) &&
		    twin_store_now(s) - (int64_t)t0->valuedouble >
		            (int64_t)max->valuedouble * 10000000)
			finish(s, &r, "failed",
			       "The job ran longer than its maxExecutionTimeInSeconds.");
		else
			rc = run_slice(s, &r,
			               max_twins < 1      ? 1
			               : max_twins > 4096 ? 4096
			                                  : max_twins,
			               fn, arg, err);
	}
	if (rc == TWIN_OK)
		rc = rec_store(s, &r, err);
	if (rc == TWIN_OK && header_status(job_status(&r)) == ST_DONE) {
		/* Finished: is there another job? */
		rc = pick(s, id, &waiting, err);
		*state = id[0] ? TWIN_JOBS_BUSY : waiting ? TWIN_JOBS_WAITING : TWIN_JOBS_IDLE;
	} else
		*state = TWIN_JOBS_BUSY;
	rec_free(&r);
	return rc;
}
