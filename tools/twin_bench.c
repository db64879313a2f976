/*
 * twin_bench.c - twin-bench, the load generator of mosquitto-twin: the
 * command line, the order of the runs, the report and the exit status.
 *
 *   twin-bench [-h HOST] [-p PORT] [--scenario LIST] [-k LIST] [--qos LIST]
 *              [--warmup S] [--duration S] [-n N] [--timeout S]
 *              [--connection-string CS] [--prefix STR] [--json FILE]
 *              [--rate R] [--broker-pid PID] [--echo-bytes B]
 *
 * For every k and QoS, echo runs first and then get and patch against the
 * same broker, so each twin row has its baseline from the same run; then
 * desired-fanout and connect-storm run once, with the largest k as their
 * connection batch (and connect-storm at the largest QoS); then job, with
 * the largest k (200 without -k) as its devices, at the largest QoS.
 * soak is not part of "all" and runs alone (twin_bench_soak.c).
 *
 * Open mode (no --connection-string): the client id is the device, devices
 * register on their first connect and the control API needs no
 * credentials. sas mode: the service connection string creates the bench
 * devices (createDevice, kept when they exist) and its policy signs the
 * back end's token; devices connect with SAS tokens made from their keys.
 *
 * Exit status: 0 when every operation succeeded, 1 when any failed (the
 * rows say where), 2 on a usage error.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "twin/registry.h"
#include "twin_bench.h"

#define FDS_PER_CLIENT 1  /* the socket */
#define FDS_SPARE      64 /* stdio, the JSON file, libc */

static int usage(FILE *f)
{
	fprintf(f,
	        "usage: twin-bench [-h HOST] [-p PORT] [--scenario LIST] [-k LIST] [--qos LIST]\n"
	        "                  [--warmup S] [--duration S] [-n N] [--timeout S]\n"
	        "                  [--connection-string CS] [--prefix STR] [--json FILE]\n"
	        "                  [--rate R] [--broker-pid PID] [--echo-bytes B]\n"
	        "  --scenario  echo,get,patch,desired-fanout,connect-storm,job or all (default);\n"
	        "              or soak alone (not in all)\n"
	        "  -k          clients of echo/get/patch (default 1,32,256); the largest is\n"
	        "              the connection batch of desired-fanout and connect-storm\n"
	        "              and the devices doing round trips during job (default 200)\n"
	        "  --qos       0, 1 or 0,1 (default 0,1)\n"
	        "  --warmup    seconds before measuring (default 2)\n"
	        "  --duration  seconds measured (default 10); job measures 2 s (or this,\n"
	        "              when shorter) before and after the job\n"
	        "  -n          devices of desired-fanout, connect-storm and soak, twins job\n"
	        "              updates (default 10000, 5000, 10000 and 10000)\n"
	        "  --timeout   seconds without progress, or a request without reply,\n"
	        "              that count as a failure (default 30)\n"
	        "  --connection-string  a service connection string: sas mode (devices\n"
	        "              are created and connect with SAS tokens); else open mode\n"
	        "  --prefix    device id prefix (default bench-)\n"
	        "  --json      also write the results as JSON into FILE\n"
	        "  --rate      soak: operations per second, all devices together (default 200)\n"
	        "  --echo-bytes  echo: payload bytes (16-4096, default 200), e.g. the size\n"
	        "              of a GET reply, to tell payload size from plugin cost\n"
	        "  --broker-pid  soak: sample this broker's RSS (/proc/PID/status) and check\n"
	        "              its open file limit; a soak of 10 min wants --warmup 120\n"
	        "              --duration 600 (the twins are seeded before the warm-up)\n"
	        "Exit status: 0 all operations succeeded, 1 some failed, 2 usage.\n");
	return f == stdout ? 0 : 2;
}

/* A comma-separated list of integers in [lo, hi]. 0 or -1. */
static int parse_list(const char *text, int *out, int *n, int lo, int hi)
{
	const char *p = text;
	char *end;
	long v;

	*n = 0;
	do {
		v = strtol(p, &end, 10);
		if (end == p || v < lo || v > hi || *n == BENCH_LIST_MAX ||
		    (*end != ',' && *end != '\0'))
			return -1;
		out[(*n)++] = (int)v;
		p = end + 1;
	} while (*end == ',');
	return 0;
}

static int parse_scenarios(const char *text, unsigned *out)
{
	char buf[256], *save = NULL, *tok;
	int s;

	if (strlen(text) >= sizeof(buf))
		return -1;
	strcpy(buf, text);
	*out = 0;
	for (tok = strtok_r(buf, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "all") == 0) {
			*out |= (1u << BENCH_NSCENARIOS) - 1;
			continue;
		}
		if (strcmp(tok, BENCH_SOAK_NAME) == 0) {
			*out |= 1u << BENCH_SOAK;
			continue;
		}
		for (s = 0; s < BENCH_NSCENARIOS; s++)
			if (strcmp(tok, bench_scenario_name((bench_scenario)s)) == 0)
				break;
		if (s == BENCH_NSCENARIOS)
			return -1;
		*out |= 1u << s;
	}
	/* The soak reports itself, and its memory figures mean little after
	 * other runs in the same broker. */
	if ((*out & (1u << BENCH_SOAK)) && *out != 1u << BENCH_SOAK)
		return -1;
	return *out ? 0 : -1;
}

static int parse_seconds(const char *text, double *out, double min)
{
	char *end;

	*out = strtod(text, &end);
	return end != text && *end == '\0' && *out >= min && *out <= 86400 ? 0 : -1;
}

/* The device id prefix: device ids and echo topics must stay valid. */
static int prefix_ok(const char *prefix)
{
	char id[TWIN_DEVICE_ID_MAX + 2];

	if (strpbrk(prefix, "+#/") != NULL || strlen(prefix) > TWIN_DEVICE_ID_MAX - 6)
		return 0;
	snprintf(id, sizeof(id), "%s99999", prefix);
	return twin_device_id_valid(id);
}

static int max_of(const int *v, int n)
{
	int m = v[0];

	for (int i = 1; i < n; i++)
		m = v[i] > m ? v[i] : m;
	return m;
}

/* A whole number in [lo, hi]. 0 or -1. */
static int parse_int(const char *text, int *out, long lo, long hi)
{
	char *end;
	long v = strtol(text, &end, 10);

	*out = (int)v;
	return end != text && *end == '\0' && v >= lo && v <= hi ? 0 : -1;
}

/* Apply option c with its argument: NULL, or what is wrong with it (a
 * constant, or msg[0..size) filled in). */
static const char *apply_option(int c, const char *arg, bench_conf *conf, char *msg, size_t size)
{
	twin_error err;

	switch (c) {
	case 'h':
		conf->host = arg;
		return NULL;
	case 'p':
		return parse_int(arg, &conf->port, 1, 65535) ? "-p takes a port" : NULL;
	case 'k':
		if (parse_list(arg, conf->k, &conf->nk, 1, BENCH_CLIENTS_MAX) != 0)
			return "-k takes client counts, e.g. 1,32,256";
		conf->k_job = max_of(conf->k, conf->nk);
		return NULL;
	case 'q':
		return parse_list(arg, conf->qos, &conf->nqos, 0, 1) ? "--qos takes 0, 1 or 0,1"
		                                                     : NULL;
	case 'n':
		if (parse_int(arg, &conf->n_fanout, 1, BENCH_CLIENTS_MAX) != 0)
			return "-n takes a device count";
		conf->n_storm = conf->n_job = conf->n_soak = conf->n_fanout;
		return NULL;
	case 's':
		return parse_scenarios(arg, &conf->scenarios)
		               ? "--scenario takes a list of echo, get, patch, desired-fanout, "
		                 "connect-storm, job, all; or soak alone"
		               : NULL;
	case 'r':
		return parse_seconds(arg, &conf->soak_rate, 0.1)
		               ? "--rate takes operations per second"
		               : NULL;
	case 'e':
		return parse_int(arg, &conf->echo_bytes, 16, BENCH_ECHO_BYTES_MAX)
		               ? "--echo-bytes takes 16 to 4096"
		               : NULL;
	case 'b':
		return parse_int(arg, &conf->broker_pid, 1, 0x7fffffff) ? "--broker-pid takes a pid"
		                                                        : NULL;
	case 'w':
		return parse_seconds(arg, &conf->warmup, 0) ? "--warmup takes seconds" : NULL;
	case 'd':
		return parse_seconds(arg, &conf->duration, 0.001) ? "--duration takes seconds"
		                                                  : NULL;
	case 't':
		return parse_seconds(arg, &conf->timeout, 0.1) ? "--timeout takes seconds" : NULL;
	case 'j':
		conf->json_path = arg;
		return NULL;
	case 'c':
		conf->sas = 1;
		if (twin_connstr_parse(arg, &conf->cs, &err) != TWIN_OK) {
			snprintf(msg, size, "--connection-string: %s", err.message);
			return msg;
		}
		return conf->cs.device_id[0] ? "--connection-string takes a service connection "
		                               "string (HostName=…;SharedAccessKeyName=…;"
		                               "SharedAccessKey=…)"
		                             : NULL;
	default: /* 'P' */
		conf->prefix = arg;
		return prefix_ok(arg) ? NULL
		                      : "--prefix must start valid device ids (no '+', '#' or '/')";
	}
}

/* 0, -1 after --help, or the exit status of a usage error. */
static int parse_args(int argc, char **argv, bench_conf *conf)
{
	static const struct option longopts[] = {
	        {"scenario", required_argument, NULL, 's'},
	        {"qos", required_argument, NULL, 'q'},
	        {"warmup", required_argument, NULL, 'w'},
	        {"duration", required_argument, NULL, 'd'},
	        {"timeout", required_argument, NULL, 't'},
	        {"json", required_argument, NULL, 'j'},
	        {"connection-string", required_argument, NULL, 'c'},
	        {"prefix", required_argument, NULL, 'P'},
	        {"rate", required_argument, NULL, 'r'},
	        {"broker-pid", required_argument, NULL, 'b'},
	        {"echo-bytes", required_argument, NULL, 'e'},
	        {"help", no_argument, NULL, 'H'},
	        {NULL, 0, NULL, 0},
	};
	char msg[TWIN_ERROR_MESSAGE_MAX + 32];
	const char *wrong;
	int c;

	while ((c = getopt_long(argc, argv, "h:p:k:n:", longopts, NULL)) != -1) {
		if (c == 'H')
			return usage(stdout) == 0 ? -1 : 2;
		if (c == '?' || c == ':')
			return usage(stderr);
		wrong = apply_option(c, optarg, conf, msg, sizeof(msg));
		if (wrong != NULL) {
			fprintf(stderr, "twin-bench: %s\n", wrong);
			return 2;
		}
	}
	if (optind < argc)
		return usage(stderr);
	return 0;
}

/* Raise the open file limit for this many clients (one socket each, see
 * new_mosq in twin_bench_clients.c): to the hard limit, or beyond it when
 * the process may (CAP_SYS_RESOURCE). 0, or -1 with the reason on stderr. */
static int raise_fd_limit(int clients)
{
	rlim_t need = (rlim_t)clients * FDS_PER_CLIENT + FDS_SPARE;
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return 0;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
		struct rlimit more = {need, need};

		if (setrlimit(RLIMIT_NOFILE, &more) == 0)
			return 0;
	}
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
		fprintf(stderr,
		        "twin-bench: %d clients need %llu open files, the limit is %llu "
		        "(raise the hard limit: ulimit -Hn)\n",
		        clients, (unsigned long long)need, (unsigned long long)rl.rlim_cur);
		return -1;
	}
	return 0;
}

/* Devices the selected scenarios use: numbers 0..result-1. */
static int devices_needed(const bench_conf *conf)
{
	int n = 0;

	if (conf->scenarios & ((1u << BENCH_ECHO) | (1u << BENCH_GET) | (1u << BENCH_PATCH)))
		n = max_of(conf->k, conf->nk);
	if ((conf->scenarios & (1u << BENCH_FANOUT)) && conf->n_fanout > n)
		n = conf->n_fanout;
	if ((conf->scenarios & (1u << BENCH_STORM)) && conf->n_storm > n)
		n = conf->n_storm;
	if ((conf->scenarios & (1u << BENCH_JOB)) && conf->n_job > n)
		n = conf->n_job;
	if ((conf->scenarios & (1u << BENCH_SOAK)) && conf->n_soak > n)
		n = conf->n_soak;
	return n;
}

/* Report a finished run on stderr (a long run shows its progress); a run
 * that could not even start becomes a row with one error. */
static void finish(bench_result *r, int rc, bench_scenario s, int k, int qos)
{
	if (rc != 0)
		*r = (bench_result){.scenario = s, .k = k, .qos = qos, .errors = 1};
	fprintf(stderr, "twin-bench: %s k=%d qos=%d: %lld ops, %.1f/s, p50 %u us, p99 %u us%s\n",
	        bench_scenario_name(r->scenario), r->k, r->qos, r->ops, r->ops_per_s, r->p50_us,
	        r->p99_us, r->errors ? " (ERRORS)" : "");
}

/* Every selected run, in report order, into r (room for all). */
static int run_all(const bench_conf *conf, bench_result *r)
{
	int n = 0, rc, kmax = max_of(conf->k, conf->nk), qmax = max_of(conf->qos, conf->nqos);

	for (int i = 0; i < conf->nk; i++)
		for (int j = 0; j < conf->nqos; j++)
			for (int s = BENCH_ECHO; s <= BENCH_PATCH; s++) {
				if (!(conf->scenarios & (1u << s)))
					continue;
				rc = bench_run_closed_loop(conf, (bench_scenario)s, conf->k[i],
				                           conf->qos[j], &r[n]);
				finish(&r[n++], rc, (bench_scenario)s, conf->k[i], conf->qos[j]);
			}
	if (conf->scenarios & (1u << BENCH_FANOUT)) {
		rc = bench_run_fanout(conf, kmax, &r[n]);
		finish(&r[n++], rc, BENCH_FANOUT, kmax, 1);
	}
	if (conf->scenarios & (1u << BENCH_STORM)) {
		rc = bench_run_storm(conf, kmax, qmax, &r[n]);
		finish(&r[n++], rc, BENCH_STORM, kmax, qmax);
	}
	if (conf->scenarios & (1u << BENCH_JOB)) {
		rc = bench_run_job(conf, conf->k_job, qmax, &r[n]);
		finish(&r[n++], rc, BENCH_JOB, conf->k_job, qmax);
	}
	return n;
}

int main(int argc, char **argv)
{
	bench_conf conf = {
	        .host = "127.0.0.1",
	        .port = 1883,
	        .scenarios = (1u << BENCH_NSCENARIOS) - 1,
	        .k = {1, 32, 256},
	        .nk = 3,
	        .qos = {0, 1},
	        .nqos = 2,
	        .warmup = 2,
	        .duration = 10,
	        .timeout = 30,
	        .n_fanout = 10000,
	        .n_storm = 5000,
	        .n_job = 10000,
	        .n_soak = 10000,
	        .k_job = 200,
	        .soak_rate = 200,
	        .echo_bytes = 200,
	        .prefix = "bench-",
	};
	bench_result *results;
	long long errors = 0;
	char started[32];
	time_t t = time(NULL);
	int rc, n, runs;

	rc = parse_args(argc, argv, &conf);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	n = devices_needed(&conf);
	if (raise_fd_limit(n + 1) != 0)
		return 1;
	strftime(started, sizeof(started), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
	runs = conf.nk * conf.nqos * 3 + 3;
	results = calloc((size_t)runs, sizeof(*results));
	if (results == NULL)
		return 1;
	/* libmosquitto writes with send() without MSG_NOSIGNAL: a broker that
	 * closes a connection must give EPIPE, not end the run. */
	signal(SIGPIPE, SIG_IGN);
	mosquitto_lib_init();
	if (conf.sas && bench_devices_prepare(&conf, n) != 0) {
		rc = 1;
		goto out;
	}
	if (conf.scenarios == 1u << BENCH_SOAK) {
		rc = bench_run_soak(&conf, started);
		goto out;
	}
	runs = run_all(&conf, results);
	bench_report_ratios(results, runs);
	bench_report_table(results, runs);
	for (int i = 0; i < runs; i++)
		errors += results[i].errors;
	if (conf.json_path != NULL &&
	    bench_report_json(conf.json_path, &conf, started, results, runs) != 0)
		rc = 1;
	if (errors > 0) {
		fprintf(stderr, "twin-bench: %lld operations failed\n", errors);
		rc = 1;
	}
out:
	mosquitto_lib_cleanup();
	free(conf.keys);
	free(results);
	return rc;
}
