/*
 * twin/jobs.h - bulk twin jobs, IoT Hub's scheduleUpdateTwin model.
 *
 * A job applies one back-end update (tags and desired properties, with an
 * optional etag) to every twin matching a query condition. It runs in
 * slices (twin_jobs_step), each inside the store's open batch: the twins a
 * slice updates, their change log entries and the job's own progress (how
 * far it got, its counts) are committed together. So a job interrupted by
 * a crash resumes after the last committed slice and never applies a
 * device twice.
 *
 * Twins are visited in deviceId order, each once, and the condition is
 * evaluated when its turn comes (IoT Hub evaluates it when the job starts;
 * a twin whose fields change during the run is judged by its fields at its
 * turn). Devices created during the run are included if their id comes
 * after the job's position.
 *
 * Job object (the shape every call returns):
 *   {"jobId","type":"scheduleUpdateTwin","status","queryCondition",
 *    "updateTwin","createdTime","startTime","endTime"?,
 *    "maxExecutionTimeInSeconds","failureReason"?,
 *    "deviceJobStatistics":{"deviceCount","failedCount","succeededCount",
 *                           "runningCount","pendingCount"},
 *    "progress":{"scanned","total"}}
 * status: queued (waits for a slice), scheduled (startTime in the future),
 * running, completed, failed (failureReason says why), cancelled.
 * deviceCount counts the matching devices visited so far, each either
 * succeeded or failed (a failed device: etag mismatch, or an update too
 * large for its twin); progress counts twins visited out of the registry's
 * size when the job started.
 */
#ifndef TWIN_JOBS_H
#define TWIN_JOBS_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "twin/error.h"
#include "twin/store.h"
#include "twin/twin.h"

#define TWIN_JOB_ID_MAX                128
#define TWIN_JOB_MAX_EXECUTION_DEFAULT 3600 /* seconds */

/* Create a job from spec {jobId, type:"scheduleUpdateTwin", queryCondition,
 * updateTwin:{etag?, tags?, properties:{desired?}}, startTime?,
 * maxExecutionTimeInSeconds?}. queryCondition is a WHERE condition
 * ("tags.site = 'north'"), optionally with the WHERE keyword, or a whole
 * SELECT … FROM devices [WHERE …] query without aggregates, GROUP BY or
 * TOP. startTime is ISO 8601 UTC ("2026-11-24T10:00:00Z"); absent or past
 * means now. The job is recorded as made by the actor current at this call
 * (twin_store_set_actor). Joins the batch. *out (may be NULL) is the job
 * object, owned by the caller.
 * Errors: TWIN_E_INVALID naming the bad field (the condition's syntax error
 * included), TWIN_E_EXISTS, TWIN_E_STORAGE, TWIN_E_NOMEM. */
twin_err twin_job_create(twin_store *s, const cJSON *spec, cJSON **out, twin_error *err);

/* The job object of job_id. TWIN_E_NOT_FOUND when there is none. */
twin_err twin_job_get(twin_store *s, const char *job_id, cJSON **out, twin_error *err);

/* Cancel job_id if it has not finished (joins the batch); a finished job is
 * returned as it is. *out (may be NULL) is the job object afterwards. */
twin_err twin_job_cancel(twin_store *s, const char *job_id, cJSON **out, twin_error *err);

/* {"jobs":[job…]} in jobId order. */
twin_err twin_job_list(twin_store *s, cJSON **out, twin_error *err);

/* Called for each twin a slice updated, with the update's result (the
 * desired notification to deliver after the commit). */
typedef void (*twin_job_update_fn)(void *arg, const char *device_id, twin_write_result *res);

typedef enum twin_jobs_state {
	TWIN_JOBS_IDLE = 0, /* no job waits or runs */
	TWIN_JOBS_WAITING,  /* only jobs scheduled for later */
	TWIN_JOBS_BUSY,     /* a job has work now: step again soon */
} twin_jobs_state;

/* Run one slice of the first job that can run: at most max_twins twins
 * visited. Starts due jobs, finishes and fails them (maxExecutionTime
 * exceeded). Joins the batch; fn gets each update. *state says whether
 * more work waits. A storage error fails the batch (twin/store.h): the
 * slice, its updates and its progress are then lost together and retried. */
twin_err twin_jobs_step(twin_store *s, size_t max_twins, twin_job_update_fn fn, void *arg,
                        twin_jobs_state *state, twin_error *err);

#endif
