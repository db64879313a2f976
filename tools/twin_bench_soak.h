/*
 * twin_bench_soak.h - the soak's state, shared by its two files and by no
 * one else: twin_bench_soak.c drives the run (setup, seeding, traffic) and
 * twin_bench_soak_report.c watches the broker's memory and reports.
 */
#ifndef TWIN_BENCH_SOAK_H
#define TWIN_BENCH_SOAK_H

#include "twin_bench.h"

#define SOAK_NS            1000000000ULL
#define SOAK_CONTROL_SLOTS 4096 /* updateTwin commands unanswered, at most */
#define SOAK_STATUS_MAX    600

enum soak_req { REQ_GET, REQ_PATCH, REQ_INDUCED, SOAK_NREQS };

/* Before the traffic (setup and seeding) and during it. */
enum soak_stage { SOAK_SEEDING, SOAK_TRAFFIC, SOAK_NSTAGES };

typedef struct soak_dev {
	uint16_t expect; /* status of the request in flight */
	uint8_t req;     /* enum soak_req of it */
	uint32_t notify; /* desired notifications expected */
} soak_dev;

typedef struct soak_slot {
	long corr; /* 0: free */
	uint64_t sent;
	int device;
} soak_slot;

typedef struct soak_reconnect {
	int device;
	uint64_t at;
} soak_reconnect;

typedef struct soak_mem {
	uint64_t t_ns; /* since the traffic started */
	long rss_kb, anon_kb, file_kb;
} soak_mem;

/* Desired updates of one stage, and the notifications they caused. */
typedef struct soak_desired {
	long long updates, updates_ok, notifications, expected;
} soak_desired;

typedef struct soak_run {
	const bench_conf *conf;
	int n;
	char token[40];
	uint64_t rng;
	soak_dev *dev;
	/* setup */
	int backend_ready, ready, setup_failed, started, aborted, stopped;
	uint64_t t_traffic, t_measure, t_end, t_drain_end, now;
	/* seeding: one reported PATCH and one desired update per device */
	int seeding, seed_patch, seed_update; /* next device of each */
	long long seed_patches, seed_patched; /* sent, answered 204 */
	uint64_t t_seed;
	double seed_s;
	/* traffic */
	long long ops_issued, ops_behind, skipped;
	long long sent[SOAK_NREQS][2]; /* by request kind and QoS, once the traffic started */
	long long replies[SOAK_STATUS_MAX + 1];
	long long connect_gets; /* of the GETs: the one after every reconnect */
	long long induced_400, inflight, stray;
	bench_samples samples; /* round trips of GET and PATCH, measured window */
	/* desired updates; desired[r->started] is the current stage's */
	bench_request batch;
	uint64_t batch_since;
	soak_slot slot[SOAK_CONTROL_SLOTS];
	long corr_next;
	long long control_out, notify_pending;
	soak_desired desired[SOAK_NSTAGES];
	/* reconnects: a ring of n */
	soak_reconnect *queue;
	int q_head, q_len;
	long long reconnects;
	/* unexpected, by kind (all also in the pool's errors) */
	long long wrong_status, missing_replies, control_errors, missing_control, missing_notify;
	/* the broker */
	long broker_fds;
	soak_mem *mem;
	size_t nmem, capmem;
	soak_mem m_connected, m_seeded, m_warm, m_end, m_min, m_max;
	int have_warm, have_end;
	uint64_t next_rss, next_scan, next_progress;
} soak_run;

/* ---- the broker's memory and the report (twin_bench_soak_report.c) ---- */

/* VmRSS, RssAnon and RssFile of process pid from /proc/PID/status into m
 * (m->t_ns untouched). 0, or -1 when the file or a figure is missing. */
int soak_read_mem(int pid, soak_mem *m);

/* Check the broker (conf->broker_pid) before connecting r->n devices to it:
 * its memory figures can be read and its open file limit suffices. Sets
 * r->broker_fds. 0, or -1 with the reason on stderr. */
int soak_check_broker(soak_run *r);

/* Sample the broker's memory when due (every few seconds), and at the end
 * of the warm-up and of the measured period; the series grows r->mem
 * (owned by r). A broker gone counts an error and aborts the run. */
void soak_sample(bench_pool *p, soak_run *r, uint64_t now);

/* Requests of the traffic (all kinds, both QoS). */
long long soak_requests(const soak_run *r);

/* The text report on stdout. */
void soak_print(const soak_run *r, const bench_result *row);

/* The --json document: the shape of the other scenarios' (one row), the
 * row with a "soak" member. 0, or -1 with the reason on stderr. */
int soak_write_json(const soak_run *r, const bench_result *row, const char *started);

#endif
