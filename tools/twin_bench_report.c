/*
 * twin_bench_report.c - the rows of a twin-bench run: the ratio to the
 * echo baseline, the table on stdout and the --json document.
 *
 * The ratio of a twin row is its ops/s divided by the ops/s of the echo row
 * with the same k and QoS from the same run (same broker, same machine
 * load): how much of the broker's bare relay rate the twin path keeps. A
 * row without such an echo row has no ratio (null in JSON).
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
		if (r[i].n > 0)
			printf("  n=%d total=%.3f s", r[i].n, r[i].total_s);
		putchar('\n');
	}
	fflush(stdout);
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
