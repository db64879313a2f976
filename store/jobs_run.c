/*
 * jobs_run.c - running bulk twin jobs in slices (twin/jobs.h).
 *
 * A slice runs inside the open batch and takes the twins' ordinary write
 * path (twin_update), so each update writes its change log entry and gives
 * its desired notification like any back-end update; the job record (its
 * position and counts, store/jobs.c) moves forward in the same
 * transaction, which is what makes a resumed job apply no device twice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "jobs_record.h"
#include "query_run.h"
#include "twin/changes.h"
#include "twin/jobs.h"
#include "twin/query.h"
#include "twin_records.h"

/* *yes = whether device_id's twin (in the batch) meets q's WHERE. A
 * half-written twin never matches; a record that cannot be read is an
 * error, not a miss (the job would skip the device). */
static twin_err matches(twin_store *s, const twin_query *q, const char *device_id, int *yes,
                        twin_error *err)
{
	static const char kinds[ROW_KINDS] = {
	        [ROW_V] = 'V', [ROW_T] = 'T', [ROW_D] = 'D', [ROW_R] = 'R'};
	q_row row = {.txn = db_txn(s), .devices = s->dbi[DB_DEVICES]};
	int m;

	*yes = 0;
	q_row_reset(&row, device_id, strlen(device_id));
	for (int k = 0; k < ROW_KINDS; k++) {
		twin_err rc = twin_record_get(s, device_id, kinds[k], &row.rec[k], err);

		if (rc != TWIN_OK && rc != TWIN_E_NOT_FOUND)
			return rc;
		row.have[k] = rc == TWIN_OK;
	}
	if (!row.have[ROW_V] || row.rec[ROW_V].mv_size != sizeof(row.version))
		return TWIN_OK;
	memcpy(&row.version, row.rec[ROW_V].mv_data, sizeof(row.version));
	m = q_eval_where(q->where, q_row_lookup, &row);
	if (m < 0)
		return job_nomem(err);
	*yes = m;
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
	return mrc == 0 ? TWIN_OK : job_storage(err, mrc);
}

/* Up to max device ids after `after`, in order, into ids; *n of them. */
static twin_err next_devices(twin_store *s, const char *after, size_t max,
                             char (*ids)[TWIN_DEVICE_ID_MAX + 1], size_t *n, twin_error *err)
{
	MDB_cursor *cur = NULL;
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
	if (cur != NULL)
		mdb_cursor_close(cur);
	return mrc == 0 || mrc == MDB_NOTFOUND ? TWIN_OK : job_storage(err, mrc);
}

/* Start a due job: running, its clock and the registry size. 0 when
 * memory ran out. */
static int start(twin_store *s, job_rec *r)
{
	MDB_stat st;

	if (mdb_stat(db_txn(s), s->dbi[DB_DEVICES], &st) != 0)
		st.ms_entries = 0; /* progress shows no total */
	return job_set_string(r->job, "status", "running") &&
	       job_set_number(r->root, "runStart", (double)twin_store_now(s)) &&
	       job_set_number(cJSON_GetObjectItemCaseSensitive(r->job, "progress"), "total",
	                      (double)st.ms_entries);
}

/* Apply the job's update to device_id. TWIN_OK also for a device that
 * failed (counted); other codes end the slice. */
static twin_err update_one(twin_store *s, job_rec *r, const char *device_id, twin_job_update_fn fn,
                           void *arg, twin_error *err)
{
	const cJSON *update = cJSON_GetObjectItemCaseSensitive(r->job, "updateTwin");
	const char *etag = job_spec_string(update, "etag");
	twin_write_result res = {0};
	twin_error derr;
	twin_err rc = twin_update(s, device_id, update, etag, &res, &derr);

	job_count(r, "deviceCount", 1);
	if (rc == TWIN_OK) {
		job_count(r, "succeededCount", 1);
		if (fn != NULL)
			fn(arg, device_id, &res);
	} else if (rc == TWIN_E_STORAGE || rc == TWIN_E_NOMEM) {
		*err = derr;
	} else {
		job_count(r, "failedCount", 1);
		rc = TWIN_OK;
	}
	twin_write_result_clear(&res);
	return rc;
}

static double job_number(const cJSON *obj, const char *name)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(obj, name);

	return cJSON_IsNumber(n) ? n->valuedouble : 0;
}

static twin_err run_slice(twin_store *s, job_rec *r, size_t max_twins, twin_job_update_fn fn,
                          void *arg, twin_error *err)
{
	char(*ids)[TWIN_DEVICE_ID_MAX + 1] = malloc(max_twins * sizeof(*ids));
	const cJSON *cursor = cJSON_GetObjectItemCaseSensitive(r->root, "cursor");
	const cJSON *actor = cJSON_GetObjectItemCaseSensitive(r->root, "actor");
	cJSON *progress = cJSON_GetObjectItemCaseSensitive(r->job, "progress");
	char caller[sizeof(s->chg.actor)];
	size_t written = s->wlog.len; /* the batch's writes before the slice */
	twin_query *q = NULL;
	size_t n = 0;
	twin_err rc = ids ? job_parse_condition(job_spec_string(r->job, "queryCondition"), &q, err)
	                  : job_nomem(err);

	if (rc == TWIN_OK)
		rc = next_devices(s, cJSON_IsString(cursor) ? cursor->valuestring : "", max_twins,
		                  ids, &n, err);
	memcpy(caller, s->chg.actor, sizeof(caller));
	twin_store_set_actor(s, job_spec_string(actor, "type"), job_spec_string(actor, "name"),
	                     r->id);
	for (size_t i = 0; i < n && rc == TWIN_OK; i++) {
		int m;

		rc = matches(s, q, ids[i], &m, err);
		if (rc == TWIN_OK && m)
			rc = update_one(s, r, ids[i], fn, arg, err);
	}
	memcpy(s->chg.actor, caller, sizeof(caller)); /* the caller's again */
	if (rc == TWIN_OK && n > 0 &&
	    (!job_set_string(r->root, "cursor", ids[n - 1]) ||
	     !job_set_number(progress, "scanned", job_number(progress, "scanned") + (double)n)))
		rc = job_nomem(err);
	if (rc == TWIN_OK && n < max_twins && !job_finish(s, r, "completed", NULL))
		rc = job_nomem(err);
	if (rc != TWIN_OK && s->wlog.len != written)
		/* Some of the slice's updates are in the batch: without the
		 * job's new position they would be applied again. Drop them
		 * all, with the batch (the slice is retried). */
		db_fail_batch(s);
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
	rc = job_rec_load(s, id, &r, err);
	if (rc != TWIN_OK)
		return rc;
	if (job_header_status(job_status(&r)) != ST_RUNNING && !start(s, &r)) {
		job_rec_free(&r);
		return job_nomem(err);
	}
	{
		const cJSON *max =
		        cJSON_GetObjectItemCaseSensitive(r.job, "maxExecutionTimeInSeconds");
		const cJSON *t0 = cJSON_GetObjectItemCaseSensitive(r.root, "runStart");

		if (cJSON_IsNumber(max) && cJSON_IsNumber(t0) &&
		    twin_store_now(s) - (int64_t)t0->valuedouble >
		            (int64_t)max->valuedouble * 10000000)
			rc = job_finish(s, &r, "failed",
			                "The job ran longer than its maxExecutionTimeInSeconds.")
			             ? TWIN_OK
			             : job_nomem(err);
		else
			rc = run_slice(s, &r,
			               max_twins < 1      ? 1
			               : max_twins > 4096 ? 4096
			                                  : max_twins,
			               fn, arg, err);
	}
	if (rc == TWIN_OK)
		rc = job_rec_store(s, &r, err);
	if (rc == TWIN_OK && job_header_status(job_status(&r)) == ST_DONE) {
		/* Finished: is there another job? The slice is in the batch
		 * whatever the answer, so a failure to look only means: look
		 * again at the next step. */
		twin_error ignored;

		if (pick(s, id, &waiting, &ignored) != TWIN_OK)
			*state = TWIN_JOBS_BUSY;
		else
			*state = id[0]     ? TWIN_JOBS_BUSY
			         : waiting ? TWIN_JOBS_WAITING
			                   : TWIN_JOBS_IDLE;
	} else
		*state = TWIN_JOBS_BUSY;
	job_rec_free(&r);
	return rc;
}
