/*
 * twin_bench_soak_report.c - what the soak observes and tells: the broker's
 * memory (read from /proc/PID/status while the run goes on, and its open
 * file limit checked before it starts), the text report on stdout and the
 * --json document.
 *
 * The memory marks are the RSS when the seeding is done, when the warm-up
 * ends and at the end, and the minimum and maximum of the measured period;
 * VmRSS is split into RssAnon (the broker's and the plugin's heap) and
 * RssFile (mostly LMDB's mapped pages, which follow the database's size).
 * Nothing here judges them: what counts as flat is the reader's call.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "twin_bench_soak.h"

#define RSS_EVERY_NS     (2 * SOAK_NS)
#define BROKER_FDS_SPARE 64 /* the broker's listener, database, log, … */

static double pct(long a, long b)
{
	return b > 0 ? 100.0 * (double)(a - b) / (double)b : 0;
}

/* ---- the broker's memory and file limit ---- */

int soak_read_mem(int pid, soak_mem *m)
{
	char path[64], line[256];
	int found = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL) {
		found += sscanf(line, "VmRSS: %ld", &m->rss_kb) == 1;
		found += sscanf(line, "RssAnon: %ld", &m->anon_kb) == 1;
		found += sscanf(line, "RssFile: %ld", &m->file_kb) == 1;
	}
	fclose(f);
	return found == 3 ? 0 : -1;
}

/* The soft open file limit of process pid; -1 unknown, 0 unlimited. */
static long soak_fd_limit(int pid)
{
	char path[64], line[256], soft[32];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/limits", pid);
	f = fopen(path, "r");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "Max open files %31s", soft) == 1)
			v = strcmp(soft, "unlimited") == 0 ? 0 : strtol(soft, NULL, 10);
	fclose(f);
	return v;
}

int soak_check_broker(soak_run *r)
{
	int pid = r->conf->broker_pid;
	soak_mem m;

	if (soak_read_mem(pid, &m) != 0) {
		fprintf(stderr, "twin-bench: soak: no memory figures in /proc/%d/status\n", pid);
		return -1;
	}
	r->broker_fds = soak_fd_limit(pid);
	if (r->broker_fds > 0 && r->broker_fds < r->n + BROKER_FDS_SPARE) {
		fprintf(stderr,
		        "twin-bench: soak: the broker (pid %d) may open %ld files, %d devices need "
		        "about %d: start it with a higher limit (ulimit -n, or LimitNOFILE= for "
		        "systemd)\n",
		        pid, r->broker_fds, r->n, r->n + BROKER_FDS_SPARE);
		return -1;
	}
	return 0;
}

void soak_sample(bench_pool *p, soak_run *r, uint64_t now)
{
	int warm = !r->have_warm && now >= r->t_measure;
	int end = !r->have_end && now >= r->t_end;
	soak_mem m = {.t_ns = now - r->t_traffic};

	if (r->conf->broker_pid == 0 || (now < r->next_rss && !warm && !end))
		return;
	r->next_rss = now + RSS_EVERY_NS;
	if (soak_read_mem(r->conf->broker_pid, &m) != 0) {
		bench_error(p, "the broker (pid %d) is gone", r->conf->broker_pid);
		r->aborted = 1;
		return;
	}
	if (r->nmem == r->capmem) {
		size_t cap = r->capmem ? r->capmem * 2 : 256;
		soak_mem *more = realloc(r->mem, cap * sizeof(*more));

		if (more == NULL)
			return; /* the series is informative; the marks below still count */
		r->mem = more;
		r->capmem = cap;
	}
	r->mem[r->nmem++] = m;
	if (warm) {
		r->m_warm = r->m_min = r->m_max = m;
		r->have_warm = 1;
	}
	if (r->have_warm && !r->have_end) {
		if (m.rss_kb < r->m_min.rss_kb)
			r->m_min = m;
		if (m.rss_kb > r->m_max.rss_kb)
			r->m_max = m;
	}
	if (end) {
		r->m_end = m;
		r->have_end = 1;
	}
}

/* ---- the report ---- */

long long soak_requests(const soak_run *r)
{
	long long n = 0;

	for (int i = 0; i < SOAK_NREQS; i++)
		n += r->sent[i][0] + r->sent[i][1];
	return n;
}

void soak_print(const soak_run *r, const bench_result *row)
{
	const bench_conf *conf = r->conf;
	const soak_desired *seed = &r->desired[SOAK_SEEDING], *d = &r->desired[SOAK_TRAFFIC];

	printf("soak: %d devices, %g s warm-up + %g s measured, %g operations/s\n", r->n,
	       conf->warmup, conf->duration, conf->soak_rate);
	printf("  seeding        %.1f s, not counted below: %lld reported PATCHes (%lld answered "
	       "204), %lld desired updates (%lld answered 200), %lld notifications\n",
	       r->seed_s, r->seed_patches, r->seed_patched, seed->updates, seed->updates_ok,
	       seed->notifications);
	printf("  requests       %lld: GET %lld+%lld, PATCH %lld+%lld, induced %lld+%lld "
	       "(QoS 0+1); %lld of the GETs after a reconnect\n",
	       soak_requests(r), r->sent[REQ_GET][0], r->sent[REQ_GET][1], r->sent[REQ_PATCH][0],
	       r->sent[REQ_PATCH][1], r->sent[REQ_INDUCED][0], r->sent[REQ_INDUCED][1],
	       r->connect_gets);
	printf("  replies       ");
	for (int s = 0; s <= SOAK_STATUS_MAX; s++)
		if (r->replies[s] > 0)
			printf(" %d: %lld", s, r->replies[s]);
	printf("\n  round trips    p50 %u us, p99 %u us, max %u us (GET and PATCH, measured)\n",
	       row->p50_us, row->p99_us, row->max_us);
	printf("  induced        %lld sent, %lld answered 400\n",
	       r->sent[REQ_INDUCED][0] + r->sent[REQ_INDUCED][1], r->induced_400);
	printf("  desired        %lld updates, %lld answered 200; %lld notifications "
	       "(%lld expected, %lld catch-up or crossed a reconnect)\n",
	       d->updates, d->updates_ok, d->notifications, d->expected,
	       d->notifications - d->expected);
	printf("  reconnects     %lld\n", r->reconnects);
	printf("  unexpected     %lld: wrong status %lld, missing replies %lld, control errors "
	       "%lld, missing control responses %lld, missing notifications %lld, other %lld\n",
	       row->errors, r->wrong_status, r->missing_replies, r->control_errors,
	       r->missing_control, r->missing_notify,
	       row->errors - r->wrong_status - r->missing_replies - r->control_errors -
	               r->missing_control - r->missing_notify);
	if (r->ops_behind > 0 || r->skipped > 0)
		printf("  not issued     %lld (loop behind), %lld (no idle device or control "
		       "window full)\n",
		       r->ops_behind, r->skipped);
	if (!r->have_warm || !r->have_end) {
		printf("  broker RSS     not sampled%s\n",
		       conf->broker_pid ? "" : " (no --broker-pid)");
		return;
	}
	printf("  broker RSS     seeded %.1f MB (anon %.1f, file-backed %.1f MB)\n",
	       r->m_seeded.rss_kb / 1024.0, r->m_seeded.anon_kb / 1024.0,
	       r->m_seeded.file_kb / 1024.0);
	printf("  broker RSS     after warm-up %.1f MB, end %.1f MB, min %.1f MB, max %.1f MB: "
	       "growth %+.2f %%\n",
	       r->m_warm.rss_kb / 1024.0, r->m_end.rss_kb / 1024.0, r->m_min.rss_kb / 1024.0,
	       r->m_max.rss_kb / 1024.0, pct(r->m_end.rss_kb, r->m_warm.rss_kb));
	printf("  of it anon     after warm-up %.1f MB, end %.1f MB: growth %+.2f %% "
	       "(file-backed %.1f, then %.1f MB)\n",
	       r->m_warm.anon_kb / 1024.0, r->m_end.anon_kb / 1024.0,
	       pct(r->m_end.anon_kb, r->m_warm.anon_kb), r->m_warm.file_kb / 1024.0,
	       r->m_end.file_kb / 1024.0);
}

static cJSON *soak_rss_json(const soak_run *r)
{
	cJSON *o = cJSON_CreateObject(), *series;

	cJSON_AddNumberToObject(o, "pid", r->conf->broker_pid);
	cJSON_AddNumberToObject(o, "fd_limit", (double)r->broker_fds);
	cJSON_AddNumberToObject(o, "connected_kb", (double)r->m_connected.rss_kb);
	cJSON_AddNumberToObject(o, "seeded_kb", (double)r->m_seeded.rss_kb);
	cJSON_AddNumberToObject(o, "anon_seeded_kb", (double)r->m_seeded.anon_kb);
	cJSON_AddNumberToObject(o, "file_seeded_kb", (double)r->m_seeded.file_kb);
	cJSON_AddNumberToObject(o, "after_warmup_kb", (double)r->m_warm.rss_kb);
	cJSON_AddNumberToObject(o, "end_kb", (double)r->m_end.rss_kb);
	cJSON_AddNumberToObject(o, "min_kb", (double)r->m_min.rss_kb);
	cJSON_AddNumberToObject(o, "max_kb", (double)r->m_max.rss_kb);
	cJSON_AddNumberToObject(o, "growth_pct", pct(r->m_end.rss_kb, r->m_warm.rss_kb));
	cJSON_AddNumberToObject(o, "anon_after_warmup_kb", (double)r->m_warm.anon_kb);
	cJSON_AddNumberToObject(o, "anon_end_kb", (double)r->m_end.anon_kb);
	cJSON_AddNumberToObject(o, "anon_growth_pct", pct(r->m_end.anon_kb, r->m_warm.anon_kb));
	cJSON_AddNumberToObject(o, "file_after_warmup_kb", (double)r->m_warm.file_kb);
	cJSON_AddNumberToObject(o, "file_end_kb", (double)r->m_end.file_kb);
	cJSON_AddNumberToObject(o, "file_growth_pct", pct(r->m_end.file_kb, r->m_warm.file_kb));
	/* [seconds since the traffic started, VmRSS kB, RssAnon kB, RssFile kB] */
	series = cJSON_AddArrayToObject(o, "samples");
	for (size_t i = 0; i < r->nmem; i++) {
		double v[4] = {(double)r->mem[i].t_ns / 1e9, (double)r->mem[i].rss_kb,
		               (double)r->mem[i].anon_kb, (double)r->mem[i].file_kb};

		cJSON_AddItemToArray(series, cJSON_CreateDoubleArray(v, 4));
	}
	return o;
}

static cJSON *soak_desired_json(const soak_desired *d)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddNumberToObject(o, "updates", (double)d->updates);
	cJSON_AddNumberToObject(o, "updates_ok", (double)d->updates_ok);
	cJSON_AddNumberToObject(o, "notifications", (double)d->notifications);
	cJSON_AddNumberToObject(o, "notifications_expected", (double)d->expected);
	return o;
}

static cJSON *soak_figures_json(const soak_run *r, const bench_result *row)
{
	cJSON *o = cJSON_CreateObject(), *req, *rep, *seed, *unx;
	char status[8];

	cJSON_AddNumberToObject(o, "rate", r->conf->soak_rate);
	seed = cJSON_AddObjectToObject(o, "seeding");
	cJSON_AddNumberToObject(seed, "seconds", r->seed_s);
	cJSON_AddNumberToObject(seed, "patches", (double)r->seed_patches);
	cJSON_AddNumberToObject(seed, "patches_answered_204", (double)r->seed_patched);
	cJSON_AddItemToObject(seed, "desired", soak_desired_json(&r->desired[SOAK_SEEDING]));
	req = cJSON_AddObjectToObject(o, "requests");
	cJSON_AddNumberToObject(req, "get_qos0", (double)r->sent[REQ_GET][0]);
	cJSON_AddNumberToObject(req, "get_qos1", (double)r->sent[REQ_GET][1]);
	cJSON_AddNumberToObject(req, "get_after_reconnect", (double)r->connect_gets);
	cJSON_AddNumberToObject(req, "patch_qos0", (double)r->sent[REQ_PATCH][0]);
	cJSON_AddNumberToObject(req, "patch_qos1", (double)r->sent[REQ_PATCH][1]);
	cJSON_AddNumberToObject(req, "induced",
	                        (double)(r->sent[REQ_INDUCED][0] + r->sent[REQ_INDUCED][1]));
	cJSON_AddNumberToObject(req, "total", (double)soak_requests(r));
	rep = cJSON_AddObjectToObject(o, "replies");
	for (int s = 0; s <= SOAK_STATUS_MAX; s++)
		if (r->replies[s] > 0) {
			snprintf(status, sizeof(status), "%d", s);
			cJSON_AddNumberToObject(rep, status, (double)r->replies[s]);
		}
	cJSON_AddNumberToObject(o, "induced_answered_400", (double)r->induced_400);
	cJSON_AddItemToObject(o, "desired", soak_desired_json(&r->desired[SOAK_TRAFFIC]));
	cJSON_AddNumberToObject(o, "reconnects", (double)r->reconnects);
	unx = cJSON_AddObjectToObject(o, "unexpected");
	cJSON_AddNumberToObject(unx, "total", (double)row->errors);
	cJSON_AddNumberToObject(unx, "wrong_status", (double)r->wrong_status);
	cJSON_AddNumberToObject(unx, "missing_replies", (double)r->missing_replies);
	cJSON_AddNumberToObject(unx, "control_errors", (double)r->control_errors);
	cJSON_AddNumberToObject(unx, "missing_control_responses", (double)r->missing_control);
	cJSON_AddNumberToObject(unx, "missing_notifications", (double)r->missing_notify);
	cJSON_AddNumberToObject(o, "ops_behind", (double)r->ops_behind);
	cJSON_AddNumberToObject(o, "ops_skipped", (double)r->skipped);
	if (r->have_warm && r->have_end)
		cJSON_AddItemToObject(o, "rss", soak_rss_json(r));
	else
		cJSON_AddNullToObject(o, "rss");
	return o;
}

int soak_write_json(const soak_run *r, const bench_result *row, const char *started)
{
	bench_result with = *row;
	int rc;

	with.figures = soak_figures_json(r, row);
	rc = bench_report_json(r->conf->json_path, r->conf, started, &with, 1);
	cJSON_Delete(with.figures);
	return rc;
}
