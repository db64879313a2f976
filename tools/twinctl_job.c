/*
 * twinctl_job.c - `twinctl job create|show|cancel|list`: scheduled twin
 * updates (IoT Hub's scheduleUpdateTwin jobs) through createJob, getJob,
 * cancelJob and listJobs; and twinctl_job_run, which `twin update --query`
 * shares.
 *
 * A job applies one updateTwin patch to every twin its queryCondition
 * matches, on the broker, from its startTime on. --wait turns the
 * asynchronous job into a command that ends with it: getJob every 200 ms on
 * the one connection, each request with its own --timeout, so a job may run
 * for hours while a broker that stops answering is still noticed within
 * --timeout. Interrupting twinctl leaves the job running; `job cancel`
 * stops it.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "twinctl.h"

enum {
	OPT_QUERY = 0x200,
	OPT_DESIRED,
	OPT_TAGS,
	OPT_ETAG,
	OPT_START_TIME,
	OPT_MAX_TIME,
	OPT_WAIT,
};

#define POLL_MS   200
#define BAR_WIDTH 20

typedef struct job_args {
	twinctl_conf *conf;
	twinctl_job_spec spec;
} job_args;

#define CONNECTION_HELP "\nConnection options (twinctl --help) may come anywhere.\n"

static int on_job_option(void *arg, int val, const char *value)
{
	job_args *a = arg;
	twinctl_job_spec *j = &a->spec;

	switch (val) {
	case OPT_QUERY:
		j->query = value;
		break;
	case OPT_DESIRED:
		j->desired = value;
		break;
	case OPT_TAGS:
		j->tags = value;
		break;
	case OPT_ETAG:
		j->etag = value;
		break;
	case OPT_START_TIME:
		j->start_time = value;
		break;
	case OPT_MAX_TIME:
		return twinctl_number_arg(a->conf, "--max-time", value, 1, 2147483647LL,
		                          &j->max_time);
	case OPT_WAIT:
		j->wait = 1;
		break;
	}
	return TWINCTL_EXIT_OK;
}

/* Parse a job subcommand with exactly npos positional arguments (the
 * JOBID, or none), stored in *id. */
static int parse(job_args *a, int argc, char **argv, const struct option *opts, const char *help,
                 int npos, const char **id)
{
	int n = 0,
	    rc = twinctl_parse(a->conf, argc, argv, opts, help, on_job_option, a, id, npos, &n);

	if (rc == TWINCTL_EXIT_OK && n != npos)
		return twinctl_usage_error(a->conf, "JOBID is missing (see --help).");
	return rc;
}

static cJSON *command(const char *name, const char *job_id)
{
	cJSON *cmd = cJSON_CreateObject();

	cJSON_AddStringToObject(cmd, "command", name);
	if (job_id != NULL)
		cJSON_AddStringToObject(cmd, "jobId", job_id);
	return cmd;
}

/* ---- create ---- */

/* The createJob command for j: {"command":"createJob","jobId","type":
 * "scheduleUpdateTwin","queryCondition","updateTwin":{"etag"?,"tags"?,
 * "properties":{"desired"}?},"startTime"?,"maxExecutionTimeInSeconds"?}.
 * Usage errors for malformed JSON; on TWINCTL_EXIT_OK *cmd is the caller's. */
static int create_command(const twinctl_conf *conf, const twinctl_job_spec *j, cJSON **cmd)
{
	cJSON *tags = NULL, *desired = NULL, *update;
	int rc = TWINCTL_EXIT_OK;

	*cmd = NULL;
	if (j->tags != NULL)
		rc = twinctl_json_object_arg(conf, "--tags", j->tags, &tags);
	if (rc == TWINCTL_EXIT_OK && j->desired != NULL)
		rc = twinctl_json_object_arg(conf, "--desired", j->desired, &desired);
	if (rc != TWINCTL_EXIT_OK) {
		cJSON_Delete(tags);
		return rc;
	}
	*cmd = command("createJob", j->job_id);
	cJSON_AddStringToObject(*cmd, "type", "scheduleUpdateTwin");
	cJSON_AddStringToObject(*cmd, "queryCondition", j->query);
	update = cJSON_AddObjectToObject(*cmd, "updateTwin");
	if (j->etag != NULL)
		cJSON_AddStringToObject(update, "etag", j->etag);
	if (tags != NULL)
		cJSON_AddItemToObject(update, "tags", tags);
	if (desired != NULL)
		cJSON_AddItemToObject(cJSON_AddObjectToObject(update, "properties"), "desired",
		                      desired);
	if (j->start_time != NULL)
		cJSON_AddStringToObject(*cmd, "startTime", j->start_time);
	if (j->max_time > 0)
		cJSON_AddNumberToObject(*cmd, "maxExecutionTimeInSeconds", (double)j->max_time);
	return TWINCTL_EXIT_OK;
}

static const char *job_status(const cJSON *job)
{
	const cJSON *status = cJSON_GetObjectItemCaseSensitive(job, "status");

	return cJSON_IsString(status) ? status->valuestring : NULL;
}

static int job_ended(const char *status)
{
	return strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
	       strcmp(status, "cancelled") == 0;
}

/* obj's member name as a count, 0 when it is not a number. */
static double count(const cJSON *obj, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);

	return cJSON_IsNumber(v) && v->valuedouble > 0 ? v->valuedouble : 0;
}

/* Redraw the progress line on stderr ("\r", padded over the last one):
 * [#####.....]  50%  500/1000 twins  480 succeeded  2 failed  running.
 * *width is the longest line drawn so far. */
static void draw_progress(const cJSON *job, const char *status, int *width)
{
	static const char fill[] = "####################";
	const cJSON *progress = cJSON_GetObjectItemCaseSensitive(job, "progress");
	const cJSON *stats = cJSON_GetObjectItemCaseSensitive(job, "deviceJobStatistics");
	double scanned = count(progress, "scanned"), total = count(progress, "total");
	int pct = total > 0                          ? (int)(scanned * 100 / total)
	          : strcmp(status, "completed") == 0 ? 100
	                                             : 0;
	char line[192];
	int len;

	if (pct > 100)
		pct = 100;
	len = snprintf(line, sizeof(line),
	               "[%.*s%*s] %3d%%  %.0f/%.0f twins  %.0f succeeded  %.0f failed  %.40s",
	               pct * BAR_WIDTH / 100, fill, BAR_WIDTH - pct * BAR_WIDTH / 100, "", pct,
	               scanned, total, count(stats, "succeededCount"), count(stats, "failedCount"),
	               status);
	if (len > *width)
		*width = len;
	fprintf(stderr, "\r%-*s", *width, line);
	fflush(stderr);
}

/* Poll getJob until the job ends; *job is the latest job object (the
 * caller's, replaced on every poll). */
static int wait_for_job(twinctl_session *s, const char *job_id, cJSON **job)
{
	int bar = isatty(STDERR_FILENO), width = 0, rc = TWINCTL_EXIT_OK;
	const char *status;

	while (rc == TWINCTL_EXIT_OK) {
		cJSON *cmd, *next = NULL;

		if ((status = job_status(*job)) == NULL) {
			fprintf(stderr, "twinctl: malformed job: no status.\n");
			rc = TWINCTL_EXIT_API;
			break;
		}
		if (bar)
			draw_progress(*job, status, &width);
		if (job_ended(status))
			break;
		rc = twinctl_session_poll(s, POLL_MS, NULL);
		if (rc != TWINCTL_EXIT_OK)
			break;
		cmd = command("getJob", job_id);
		rc = twinctl_session_call(s, cmd, &next);
		cJSON_Delete(cmd);
		if (rc == TWINCTL_EXIT_OK) {
			cJSON_Delete(*job);
			*job = next;
		}
	}
	if (bar && width > 0)
		fputc('\n', stderr);
	return rc;
}

/* The exit code for an ended job; a line on stderr unless it completed. */
static int job_outcome(const cJSON *job, const char *job_id)
{
	const char *status = job_status(job);
	const cJSON *reason = cJSON_GetObjectItemCaseSensitive(job, "failureReason");

	if (strcmp(status, "completed") == 0)
		return TWINCTL_EXIT_OK;
	if (cJSON_IsString(reason) && reason->valuestring[0])
		fprintf(stderr, "twinctl: job %s %s: %s\n", job_id, status, reason->valuestring);
	else
		fprintf(stderr, "twinctl: job %s %s (no failureReason).\n", job_id, status);
	return TWINCTL_EXIT_API;
}

int twinctl_job_run(const twinctl_conf *conf, const twinctl_job_spec *spec)
{
	twinctl_session *s = NULL;
	cJSON *cmd = NULL, *job = NULL;
	int rc = TWINCTL_EXIT_OK;

	if (spec->job_id == NULL || spec->job_id[0] == '\0')
		return twinctl_usage_error(conf, "JOBID is missing (see --help).");
	if (spec->query == NULL || spec->query[0] == '\0')
		return twinctl_usage_error(conf, "--query COND is missing (see --help).");
	if (spec->desired == NULL && spec->tags == NULL)
		return twinctl_usage_error(conf, "give --desired, --tags or both.");
	rc = create_command(conf, spec, &cmd);
	if (rc == TWINCTL_EXIT_OK)
		rc = twinctl_session_open(conf, &s);
	if (rc == TWINCTL_EXIT_OK)
		rc = twinctl_session_call(s, cmd, &job);
	if (rc == TWINCTL_EXIT_OK && spec->wait)
		rc = wait_for_job(s, spec->job_id, &job);
	if (rc == TWINCTL_EXIT_OK)
		twinctl_print(conf, job);
	if (rc == TWINCTL_EXIT_OK && spec->wait)
		rc = job_outcome(job, spec->job_id);
	twinctl_session_close(s);
	cJSON_Delete(cmd);
	cJSON_Delete(job);
	return rc;
}

static const char create_help[] =
        "usage: twinctl job create JOBID --query COND [--desired JSON] [--tags JSON]\n"
        "                          [--etag ETAG] [--start-time ISO8601] [--max-time SECONDS]\n"
        "                          [--wait]\n"
        "\n"
        "Schedule an update of every twin that matches a query condition (createJob,\n"
        "type scheduleUpdateTwin) and print the job. The patch merges as in `twin\n"
        "update`: a null value removes its key.\n"
        "\n"
        "  --query COND          the twins to update: a WHERE condition of the query\n"
        "                        language, e.g. \"tags.site = 'north'\"\n"
        "  --desired JSON        patch of the desired properties (a JSON object)\n"
        "  --tags JSON           patch of the tags (a JSON object)\n"
        "  --etag ETAG           the patch's etag (\"*\": any)\n"
        "  --start-time ISO8601  start then, e.g. 2026-11-24T10:00:00Z (default: now)\n"
        "  --max-time SECONDS    fail the job if it runs longer (maxExecutionTimeInSeconds)\n"
        "  --wait                poll the job every 200 ms until it is completed, failed\n"
        "                        or cancelled, with a progress line on stderr when it is\n"
        "                        a terminal; print the final job and exit 0 if it\n"
        "                        completed, 5 if it failed or was cancelled. Interrupting\n"
        "                        twinctl leaves the job running (twinctl job cancel).\n"
        "At least one of --desired and --tags is needed.\n"
        "\n"
        "Example:\n"
        "  twinctl job create fw-2 --query \"tags.site = 'north'\" \\\n"
        "          --desired '{\"fw\":\"2.0\"}' --wait\n" CONNECTION_HELP;

static int job_create(twinctl_conf *conf, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"query", required_argument, NULL, OPT_QUERY},
	        {"desired", required_argument, NULL, OPT_DESIRED},
	        {"tags", required_argument, NULL, OPT_TAGS},
	        {"etag", required_argument, NULL, OPT_ETAG},
	        {"start-time", required_argument, NULL, OPT_START_TIME},
	        {"max-time", required_argument, NULL, OPT_MAX_TIME},
	        {"wait", no_argument, NULL, OPT_WAIT},
	        {0},
	};
	job_args a = {.conf = conf};
	int rc = parse(&a, argc, argv, opts, create_help, 1, &a.spec.job_id);

	return rc == TWINCTL_EXIT_OK ? twinctl_job_run(conf, &a.spec) : rc;
}

/* ---- show, cancel, list ---- */

static const char show_help[] =
        "usage: twinctl job show JOBID\n"
        "\n"
        "Print a job (getJob): its status, device statistics and progress.\n" CONNECTION_HELP;

static const char cancel_help[] = "usage: twinctl job cancel JOBID\n"
                                  "\n"
                                  "Cancel a job that has not ended (cancelJob) and print it.\n"
                                  "Twins it updated already keep the update.\n" CONNECTION_HELP;

static const char list_help[] =
        "usage: twinctl job list\n"
        "\n"
        "List the jobs the broker knows (listJobs) as {\"jobs\":[…]}.\n" CONNECTION_HELP;

/* show and cancel: one JOBID, one command. */
static int job_by_id(twinctl_conf *conf, int argc, char **argv, const char *name, const char *help)
{
	static const struct option none[] = {{0}};
	job_args a = {.conf = conf};
	const char *id = NULL;
	int rc = parse(&a, argc, argv, none, help, 1, &id);

	return rc == TWINCTL_EXIT_OK ? twinctl_call_and_print(conf, command(name, id)) : rc;
}

static int job_show(twinctl_conf *conf, int argc, char **argv)
{
	return job_by_id(conf, argc, argv, "getJob", show_help);
}

static int job_cancel(twinctl_conf *conf, int argc, char **argv)
{
	return job_by_id(conf, argc, argv, "cancelJob", cancel_help);
}

static int job_list(twinctl_conf *conf, int argc, char **argv)
{
	static const struct option none[] = {{0}};
	job_args a = {.conf = conf};
	int rc = parse(&a, argc, argv, none, list_help, 0, NULL);

	return rc == TWINCTL_EXIT_OK ? twinctl_call_and_print(conf, command("listJobs", NULL)) : rc;
}

/* ---- the group ---- */

static const char job_help[] =
        "usage: twinctl [connection options] job SUBCOMMAND [options]\n"
        "\n"
        "Jobs: one twin update applied by the broker to every twin a query condition\n"
        "matches (IoT Hub's scheduleUpdateTwin jobs). They need serviceConnect.\n"
        "  create JOBID --query COND …   schedule one (createJob); --wait follows it\n"
        "  show JOBID                    print one (getJob)\n"
        "  cancel JOBID                  cancel one (cancelJob)\n"
        "  list                          list them (listJobs)\n"
        "\n"
        "twinctl job SUBCOMMAND --help describes each one. `twinctl twin update --query`\n"
        "creates a job and waits for it.\n";

int twinctl_job_main(twinctl_conf *conf, int argc, char **argv)
{
	static const twinctl_subcommand subs[] = {
	        {"create", job_create}, {"show", job_show}, {"cancel", job_cancel},
	        {"list", job_list},     {NULL, NULL},
	};
	return twinctl_dispatch(conf, "job", job_help, subs, argc, argv);
}
