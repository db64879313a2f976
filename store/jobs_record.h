/*
 * jobs_record.h - private to store/: job records, shared by store/jobs.c
 * (records and commands) and store/jobs_run.c (slices).
 */
#ifndef TWIN_STORE_JOBS_RECORD_H
#define TWIN_STORE_JOBS_RECORD_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "twin/jobs.h"
#include "twin/query.h"

/* Value header: status byte, then the start time (int64 ticks). */
#define HDR 9

enum { ST_QUEUED = 'q', ST_SCHEDULED = 's', ST_RUNNING = 'r', ST_DONE = 'd' };

typedef struct job_rec {
	char id[TWIN_JOB_ID_MAX + 1];
	cJSON *root; /* the record; job = its "job" member */
	cJSON *job;
} job_rec;

twin_err job_nomem(twin_error *err);
twin_err job_storage(twin_error *err, int mdb_rc);

/* The query a queryCondition stands for ("…", "WHERE …" or "SELECT …");
 * TWIN_E_INVALID with the position inside the condition. Caller frees *q. */
twin_err job_parse_condition(const char *cond, twin_query **q, twin_error *err);

/* Load (TWIN_E_NOT_FOUND, or TWIN_E_STORAGE for a record that is not
 * whole) and store (joins the batch; failing it when out of memory) the
 * record of a job; free what a load gave. */
twin_err job_rec_load(twin_store *s, const char *id, job_rec *r, twin_error *err);
twin_err job_rec_store(twin_store *s, job_rec *r, twin_error *err);
void job_rec_free(job_rec *r);

/* The job's status string, and its header byte (ST_*). */
const char *job_status(const job_rec *r);
char job_header_status(const char *status);

/* Member setters: 0 when memory ran out (the member is left as it was). */
int job_set_string(cJSON *obj, const char *name, const char *v);
int job_set_number(cJSON *obj, const char *name, double v);
/* Add n to deviceJobStatistics.name. */
void job_count(job_rec *r, const char *name, double n);
/* End the job with status (and failureReason when reason is not NULL).
 * 0 when memory ran out: the record is then half changed, not to be stored. */
int job_finish(twin_store *s, job_rec *r, const char *status, const char *reason);
/* The string member name of spec, or NULL. */
const char *job_spec_string(const cJSON *spec, const char *name);

#endif
