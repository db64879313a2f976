/*
 * twin_bench_report.c - the rows of a twin-bench run: the ratio to the
 * echo baseline, the table on stdout and the --json document.
 *
 * The ratio of a twin row is its ops/s divided by the ops/s of the echo row
 * with the same k and QoS from the same run (same broker, same machine
 * load): how much of the broker's bare relay rate the twin path keeps. A
 * row without such an echo row has no ratio (null in JSON).
 *
 * The job row's figures are the devices' round trips during the job; two
 * more lines of the table and its "job" member in JSON give the windows
 * before and after, the job's own figures and the notifications.
 */
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "twin_bench.h"

const char *bench_scenario_name(bench_scenario s)
{
	switch (s) {
	case BENCH_ECHO:
		return "echo";
	case BENCH_GET:
		return "get";
	case BENCH_PATCH:
		return "patch";
	case BENCH_FANOUT:
		return "desired-fanout";
	case BENCH_STORM:
		return "connect-storm";
	case BENCH_JOB:
		return "job";
	case BENCH_SOAK:
		return BENCH_SOAK_NAME;
	default:
		return "?";
	}
}

void bench_report_ratios(bench_result *r, int n)
{
	for (int i = 0; i < n; i++) {
		r[i].has_ratio = 0;
		if (r[i].scenario == BENCH_ECHO)
			continue;
		for (int j = 0; j < n; j++)
			if (r[j].scenario == BENCH_ECHO && r[j].k == r[i].k &&
			    r[j].qos == r[i].qos && r[j].ops_per_s > 0) {
				r[i].has_ratio = 1;
				r[i].ratio = r[i].ops_per_s / r[j].ops_per_s;
			}
	}
}

/* The notes of the job row: what the job did and what the devices got. */
static void job_notes(const bench_result *r)
{
	const bench_job_figures *j = &r->job;

	printf("  during the job: n=%d (of %lld scanned) %s in %.3f s (wall %.3f s), "
	       "%.0f twins/s, notified %d/%d%s",
	       r->n, j->scanned, j->status, j->job_s, r->total_s, j->twins_per_s, j->notified,
	       j->notify_expected, j->notify_wrong ? " MISMATCH" : "");
}

/* A window of the job row as a line of its own under it. */
static void window_line(const bench_result *r, int w, const char *what)
{
	const bench_window *win = &r->job.win[w];

	printf("  %-13s %5d %3d %9lld %10.1f %8u %8u %8u %6s %6s  %.3f s %s\n",
	       w == BENCH_WIN_BEFORE ? "before" : "after", r->k, r->qos, win->ops, win->ops_per_s,
	       win->p50_us, win->p99_us, win->max_us, "", "", win->seconds, what);
}

void bench_report_table(const bench_result *r, int n)
{
	char ratio[16];

	printf("%-15s %5s %3s %9s %10s %8s %8s %8s %6s %6s  %s\n", "scenario", "k", "qos", "ops",
	       "ops/s", "p50_us", "p99_us", "max_us", "ratio", "errors", "notes");
	for (int i = 0; i < n; i++) {
		if (r[i].has_ratio)
			snprintf(ratio, sizeof(ratio), "%.2f", r[i].ratio);
		else
			snprintf(ratio, sizeof(ratio), "-");
		printf("%-15s %5d %3d %9lld %10.1f %8u %8u %8u %6s %6lld",
		       bench_scenario_name(r[i].scenario), r[i].k, r[i].qos, r[i].ops,
		       r[i].ops_per_s, r[i].p50_us, r[i].p99_us, r[i].max_us, ratio, r[i].errors);
		if (r[i].has_job)
			job_notes(&r[i]);
		else if (r[i].n > 0)
			printf("  n=%d total=%.3f s", r[i].n, r[i].total_s);
		putchar('\n');
		if (r[i].has_job) {
			window_line(&r[i], BENCH_WIN_BEFORE, "before the job");
			window_line(&r[i], BENCH_WIN_AFTER, "after the job");
		}
	}
	fflush(stdout);
}

static cJSON *window_json(const bench_window *w)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddNumberToObject(o, "ops", (double)w->ops);
	cJSON_AddNumberToObject(o, "seconds", w->seconds);
	cJSON_AddNumberToObject(o, "ops_per_s", w->ops_per_s);
	cJSON_AddNumberToObject(o, "p50_us", w->p50_us);
	cJSON_AddNumberToObject(o, "p99_us", w->p99_us);
	cJSON_AddNumberToObject(o, "max_us", w->max_us);
	return o;
}

/* The job row's "job" member: {status, wall_s, job_s, twins_per_s,
 * succeeded, failed, scanned, windows:{before, during, after}, notifications:
 * {received, expected, devices_wrong}}. */
static cJSON *job_json(const bench_result *r)
{
	static const char *names[BENCH_NWINDOWS] = {"before", "during", "after"};
	const bench_job_figures *j = &r->job;
	cJSON *o = cJSON_CreateObject(), *windows, *notes;

	cJSON_AddStringToObject(o, "status", j->status);
	cJSON_AddNumberToObject(o, "wall_s", r->total_s);
	cJSON_AddNumberToObject(o, "job_s", j->job_s);
	cJSON_AddNumberToObject(o, "twins_per_s", j->twins_per_s);
	cJSON_AddNumberToObject(o, "succeeded", (double)j->succeeded);
	cJSON_AddNumberToObject(o, "failed", (double)j->failed);
	cJSON_AddNumberToObject(o, "scanned", (double)j->scanned);
	windows = cJSON_AddObjectToObject(o, "windows");
	for (int w = 0; w < BENCH_NWINDOWS; w++)
		cJSON_AddItemToObject(windows, names[w], window_json(&j->win[w]));
	notes = cJSON_AddObjectToObject(o, "notifications");
	cJSON_AddNumberToObject(notes, "received", j->notified);
	cJSON_AddNumberToObject(notes, "expected", j->notify_expected);
	cJSON_AddNumberToObject(notes, "devices_wrong", j->notify_wrong);
	return o;
}

static cJSON *row_json(const bench_result *r)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "scenario", bench_scenario_name(r->scenario));
	cJSON_AddNumberToObject(o, "k", r->k);
	cJSON_AddNumberToObject(o, "qos", r->qos);
	cJSON_AddNumberToObject(o, "ops", (double)r->ops);
	cJSON_AddNumberToObject(o, "seconds", r->seconds);
	cJSON_AddNumberToObject(o, "ops_per_s", r->ops_per_s);
	cJSON_AddNumberToObject(o, "p50_us", r->p50_us);
	cJSON_AddNumberToObject(o, "p99_us", r->p99_us);
	cJSON_AddNumberToObject(o, "max_us", r->max_us);
	if (r->has_ratio)
		cJSON_AddNumberToObject(o, "ratio_to_echo", r->ratio);
	else
		cJSON_AddNullToObject(o, "ratio_to_echo");
	cJSON_AddNumberToObject(o, "errors", (double)r->errors);
	if (r->n > 0) {
		cJSON_AddNumberToObject(o, "n", r->n);
		cJSON_AddNumberToObject(o, "total_s", r->total_s);
	}
	if (r->has_job)
		cJSON_AddItemToObject(o, "job", job_json(r));
	if (r->figures != NULL)
		cJSON_AddItemToObject(o, bench_scenario_name(r->scenario),
		                      cJSON_Duplicate(r->figures, 1));
	return o;
}

int bench_report_json(const char *path, const bench_conf *conf, const char *started,
                      const bench_result *r, int n)
{
	cJSON *doc = cJSON_CreateObject(), *runs;
	char *text;
	FILE *f;
	int rc = 0;

	cJSON_AddStringToObject(doc, "host", conf->host);
	cJSON_AddNumberToObject(doc, "port", conf->port);
	cJSON_AddStringToObject(doc, "started", started);
	cJSON_AddStringToObject(doc, "mode", conf->sas ? "sas" : "open");
	cJSON_AddNumberToObject(doc, "warmup_s", conf->warmup);
	cJSON_AddNumberToObject(doc, "duration_s", conf->duration);
	cJSON_AddNumberToObject(doc, "echo_bytes", conf->echo_bytes);
	runs = cJSON_AddArrayToObject(doc, "runs");
	for (int i = 0; i < n; i++)
		cJSON_AddItemToArray(runs, row_json(&r[i]));
	text = cJSON_Print(doc);
	cJSON_Delete(doc);
	if (text == NULL) {
		fprintf(stderr, "twin-bench: out of memory for the JSON report\n");
		return -1;
	}
	f = fopen(path, "w");
	if (f == NULL || fputs(text, f) < 0 || fputc('\n', f) == EOF) {
		perror(path);
		rc = -1;
	}
	if (f != NULL && fclose(f) != 0 && rc == 0) {
		perror(path);
		rc = -1;
	}
	free(text);
	return rc;
}
