/*
 * jobs.c - bulk twin jobs on the broker thread (twin/jobs.h, DESIGN.md §4).
 *
 * Jobs run in slices from TICK, inside the batch TICK then commits, so each
 * device update is committed, then notified (outbox), then published as an
 * event, like any back-end update. Two limits keep devices served while a
 * job updates 100k twins:
 *   - a slice lasts about PLG_JOB_SLICE_NS (checked every PLG_JOB_STEP
 *     twins, ~30 µs each);
 *   - after a slice of d ns, the next starts no sooner than 3d ns later, so
 *     a job takes at most a quarter of the broker thread however busy it
 *     is (at half, 200 busy devices saw their p50 latency double).
 * An idle broker loops only every 100 ms (epoll_wait's timeout), so while a
 * job has work the query worker wakes the broker every 2 ms (query.c).
 */
#include <time.h>

#include "control.h"
#include "twin/jobs.h"

#define PLG_JOB_SLICE_NS (1000 * 1000)
#define PLG_JOB_STEP     16 /* twins per store call, between clock reads */
#define PLG_JOB_SHARE    4  /* a job gets at most 1/PLG_JOB_SHARE of the thread */

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void on_update(void *arg, const char *device_id, twin_write_result *res)
{
	plg_desired_changed(arg, device_id, res);
}

void plg_jobs_tick(plg_ctx *ctx)
{
	int64_t t0 = mono_ns(), t;
	twin_jobs_state state = TWIN_JOBS_IDLE;
	twin_error err;

	if (t0 < ctx->jobs_next)
		return;
	do {
		if (twin_jobs_step(ctx->store, PLG_JOB_STEP, on_update, ctx, &state, &err) !=
		    TWIN_OK) {
			mosquitto_log_printf(MOSQ_LOG_ERR, PLG_LOG_PREFIX "job slice failed: %s",
			                     err.message);
			break; /* the batch failed; the slice is retried after it */
		}
		t = mono_ns();
	} while (state == TWIN_JOBS_BUSY && t - t0 < PLG_JOB_SLICE_NS);
	t = mono_ns();
	ctx->jobs_next = state == TWIN_JOBS_BUSY ? t + (PLG_JOB_SHARE - 1) * (t - t0) : 0;
	plg_queries_pace(ctx, state == TWIN_JOBS_BUSY);
}

static twin_err job_id_arg(const cJSON *cmd, const char **id, twin_error *err)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(cmd, "jobId");

	if (!cJSON_IsString(v))
		return twin_error_set(err, TWIN_E_INVALID, "'jobId' is missing or not a string.");
	*id = v->valuestring;
	return TWIN_OK;
}

/* createJob: the command object is the job spec (twin/jobs.h). */
twin_err plg_create_job_command(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err)
{
	twin_err rc = twin_job_create(ctx->store, cmd, data, err);

	if (rc == TWIN_OK)
		ctx->jobs_next = 0; /* start it at this TICK */
	return rc;
}

twin_err plg_get_job_command(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err)
{
	const char *id = NULL;
	twin_err rc = job_id_arg(cmd, &id, err);

	return rc == TWIN_OK ? twin_job_get(ctx->store, id, data, err) : rc;
}

twin_err plg_cancel_job_command(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err)
{
	const char *id = NULL;
	twin_err rc = job_id_arg(cmd, &id, err);

	return rc == TWIN_OK ? twin_job_cancel(ctx->store, id, data, err) : rc;
}

twin_err plg_list_jobs_command(plg_ctx *ctx, const cJSON *cmd, cJSON **data, twin_error *err)
{
	(void)cmd;
	return twin_job_list(ctx->store, data, err);
}
