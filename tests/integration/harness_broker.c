/*
 * harness_broker.c - brokers as child processes: start and readiness,
 * stop, restart, kill -9, and teardown, which fails the test on a bad exit
 * status or a sanitizer report in the log (harness_broker_log.c).
 *
 * The broker is started as tests/integration/conftest.py (the pytest
 * harness) starts it (harness_broker_setup.c writes its configuration and
 * environment); the differences are a readiness probe that proves the
 * broker's main loop runs (so one SIGTERM is enough to stop it, see
 * broker_probe) and that a crashed test process takes its brokers with it
 * (PR_SET_PDEATHSIG).
 */
#define _GNU_SOURCE
#include "harness_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DB_OPEN_LINE   "mosquitto-twin: database open at "
#define START_TIMEOUT  10000
#define STOP_TIMEOUT   10000
#define START_ATTEMPTS 3

/* Every broker not yet freed, for tb_cleanup_all(). */
static tb_broker *live_brokers;

/* A port of 127.0.0.1 free at the time of the call; the broker may still
 * lose it to another process before it binds (broker_run retries). */
static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;

	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	if (port <= 0)
		fail_msg("no free port on 127.0.0.1: %s", strerror(errno));
	return port;
}

/* Reap the broker if it has exited; true when it has (or never ran). */
static bool broker_reap(tb_broker *b)
{
	int st;
	pid_t r;

	if (b->pid <= 0)
		return true;
	do
		r = waitpid(b->pid, &st, WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r == 0)
		return false;
	b->status = r < 0 ? 255 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	b->pid = 0;
	return true;
}

static void broker_spawn(tb_broker *b)
{
	const char *mosq = tbi_env_or("MOSQUITTO", "/usr/sbin/mosquitto");
	char *argv[] = {(char *)mosq, "-c", b->conf_path, NULL};
	char **env = tbi_broker_env();
	pid_t parent = getpid();
	int logfd, nullfd;
	struct stat st;

	tbi_write_config(b);
	logfd = open(b->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	nullfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (logfd < 0 || nullfd < 0)
		fail_msg("cannot open %s: %s", b->log_path, strerror(errno));
	b->log_offset = fstat(logfd, &st) == 0 ? (long)st.st_size : 0;
	b->pid = fork();
	if (b->pid == 0) {
		/* Child of a threaded process: async-signal-safe calls only. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		dup2(nullfd, 0);
		dup2(logfd, 1);
		dup2(logfd, 2);
		/* No inherited client sockets: they would keep other brokers'
		 * connections open after the test closes them. */
		if (close_range(3, ~0u, 0) != 0)
			for (int fd = 3; fd < 1024; fd++)
				close(fd);
		if (chdir(b->dir) == 0)
			execve(mosq, argv, env);
		_exit(127);
	}
	close(logfd);
	close(nullfd);
	tbi_strv_free(env);
	if (b->pid < 0) {
		b->pid = 0;
		fail_msg("fork: %s", strerror(errno));
	}
}

/* Proves the broker's main loop runs: a PINGREQ before CONNECT is a protocol
 * error the loop answers by closing the connection. Only the loop reads
 * sockets, and it starts after the broker's SIGTERM handler is armed. */
static bool broker_probe(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	static const unsigned char pingreq[2] = {0xC0, 0x00};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok = false;

	if (fd < 0)
		return false;
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    send(fd, pingreq, sizeof(pingreq), MSG_NOSIGNAL) == (ssize_t)sizeof(pingreq)) {
		struct pollfd p = {.fd = fd, .events = POLLIN};

		if (poll(&p, 1, 200) == 1) {
			char c;

			ok = recv(fd, &c, 1, 0) >= 0 || errno == ECONNRESET;
		}
	}
	close(fd);
	return ok;
}

/* Wait until the current run serves; false when it exited or timed out. */
static bool broker_wait_ready(tb_broker *b)
{
	int64_t deadline = tbi_now_ms() + START_TIMEOUT;

	while (tbi_now_ms() < deadline) {
		char *log;
		bool lines;

		if (broker_reap(b))
			return false;
		log = tbi_read_file_from(b->log_path, b->log_offset);
		lines = log != NULL && strstr(log, DB_OPEN_LINE) != NULL &&
		        strstr(log, "mosquitto version ") != NULL &&
		        strstr(log, " running") != NULL;
		free(log);
		if (lines && broker_probe(b->port))
			return true;
		tbi_sleep_ms(POLL_MS);
	}
	return false;
}

/* Start the current configuration and wait; on failure print the log, kill
 * the broker and fail. A lost race for the port is retried: with a new port
 * for a new broker, with the same one for a restart. */
static void broker_run(tb_broker *b, bool wait, bool fixed_port)
{
	for (int attempt = 1;; attempt++) {
		char *log;
		bool in_use;

		broker_spawn(b);
		b->exit_expected = !wait;
		if (!wait || broker_wait_ready(b))
			return;
		log = tbi_read_file_from(b->log_path, b->log_offset);
		in_use = log != NULL && strstr(log, "Address already in use") != NULL;
		if (b->pid > 0) {
			kill(b->pid, SIGKILL);
			waitpid(b->pid, NULL, 0);
			b->pid = 0;
			b->status = 128 + SIGKILL;
		}
		if (in_use && attempt < START_ATTEMPTS) {
			free(log);
			if (!fixed_port)
				b->port = free_port();
			else
				tbi_sleep_ms(200);
			continue;
		}
		print_error("broker log (%s):\n%s\n", b->log_path, log != NULL ? log : "");
		free(log);
		fail_msg("broker did not become ready on port %d within %d ms", b->port,
		         START_TIMEOUT);
	}
}

tb_broker *tb_broker_start(const tb_broker_opts *o)
{
	tb_broker_opts none = {0};
	tb_broker *b = calloc(1, sizeof(*b));

	if (o == NULL)
		o = &none;
	if (b == NULL)
		fail_msg("out of memory");
	b->status = -1;
	b->persistence = !o->no_persistence;
	b->config = o->config != NULL ? tbi_xstrdup(o->config) : NULL;
	b->plugin_opts = o->plugin_opts != NULL ? tbi_xstrdup(o->plugin_opts) : NULL;
	if (o->dir != NULL) {
		b->dir = tbi_xstrdup(o->dir);
		mkdir(b->dir, 0700);
	} else {
		b->dir = tb_tmpdir_new("twin-broker");
		b->own_dir = true;
	}
	b->db_path = tbi_xasprintf("%s/db", b->dir);
	b->conf_path = tbi_xasprintf("%s/mosquitto.conf", b->dir);
	b->log_path = tbi_xasprintf("%s/broker.log", b->dir);
	b->port = free_port();
	b->next = live_brokers;
	live_brokers = b;
	broker_run(b, !o->no_wait, false);
	return b;
}

static void broker_kill(tb_broker *b)
{
	if (b->pid > 0) {
		kill(b->pid, SIGKILL);
		while (!broker_reap(b))
			tbi_sleep_ms(1);
	}
}

int tb_broker_stop(tb_broker *b)
{
	int64_t deadline = tbi_now_ms() + STOP_TIMEOUT, next_term = tbi_now_ms();

	b->exit_expected = true;
	while (!broker_reap(b)) {
		int64_t t = tbi_now_ms();

		if (t >= deadline) {
			char *log = tbi_read_file_from(b->log_path, b->log_offset);

			broker_kill(b);
			print_error("broker log (%s):\n%s\n", b->log_path, log != NULL ? log : "");
			free(log);
			fail_msg("broker ignored SIGTERM for %d ms", STOP_TIMEOUT);
		}
		if (t >= next_term) {
			kill(b->pid, SIGTERM);
			next_term = t + 1000;
		}
		tbi_sleep_ms(POLL_MS);
	}
	return b->status;
}

void tb_broker_kill9(tb_broker *b)
{
	b->exit_expected = true;
	broker_kill(b);
}

void tb_broker_restart(tb_broker *b)
{
	if (b->pid > 0) {
		int st = tb_broker_stop(b);

		if (st != 0)
			fail_msg("broker exited with status %d on SIGTERM", st);
	}
	broker_run(b, true, true);
}

int tb_broker_wait_exit(tb_broker *b, int timeout_ms)
{
	int64_t deadline = tbi_now_ms() + timeout_ms;

	while (!broker_reap(b)) {
		if (tbi_now_ms() >= deadline)
			return -1;
		tbi_sleep_ms(POLL_MS);
	}
	b->exit_expected = true;
	return b->status;
}

bool tb_broker_running(tb_broker *b)
{
	return !broker_reap(b);
}

int tb_broker_port(const tb_broker *b)
{
	return b->port;
}

const char *tb_broker_dir(const tb_broker *b)
{
	return b->dir;
}

const char *tb_broker_db_path(const tb_broker *b)
{
	return b->db_path;
}

/* Stop, remove, free. Returns a malloc'd description of what went wrong
 * (non-zero exit status on SIGTERM, sanitizer reports), NULL if nothing. */
static char *broker_release(tb_broker *b)
{
	char *problem = NULL, *reports;
	const char *what = "exited badly on SIGTERM";
	int st = 0;

	if (b->pid > 0) {
		int64_t deadline = tbi_now_ms() + STOP_TIMEOUT, next_term = tbi_now_ms();

		while (!broker_reap(b) && tbi_now_ms() < deadline) {
			if (tbi_now_ms() >= next_term) {
				kill(b->pid, SIGTERM);
				next_term = tbi_now_ms() + 1000;
			}
			tbi_sleep_ms(POLL_MS);
		}
		if (b->pid > 0) {
			broker_kill(b);
			st = -1;
			what = "ignored SIGTERM";
		} else {
			st = b->status;
		}
	} else if (!b->exit_expected) {
		st = b->status; /* it exited on its own: a crash or a refusal */
		what = "exited on its own";
	}
	reports = tbi_sanitizer_reports(b);
	if (st != 0 || reports != NULL) {
		char *log = tbi_read_file_from(b->log_path, b->log_offset);

		if (asprintf(&problem,
		             "broker on port %d %s (status %d)\n%s--- log of its last run:\n%s",
		             b->port, what, st, reports != NULL ? reports : "",
		             log != NULL ? log : "") < 0)
			problem = NULL;
		free(log);
	}
	free(reports);
	for (tb_broker **p = &live_brokers; *p != NULL; p = &(*p)->next)
		if (*p == b) {
			*p = b->next;
			break;
		}
	if (b->own_dir)
		tb_tmpdir_free(b->dir); /* removed unless TWIN_KEEP_TMP */
	else
		free(b->dir);
	free(b->db_path);
	free(b->conf_path);
	free(b->log_path);
	free(b->config);
	free(b->plugin_opts);
	free(b);
	return problem;
}

void tb_broker_free(tb_broker *b)
{
	char *problem;

	if (b == NULL)
		return;
	problem = broker_release(b);
	if (problem != NULL) {
		print_error("%s\n", problem);
		free(problem);
		fail_msg("broker teardown failed (see above)");
	}
}

char *tbi_brokers_release_all(void)
{
	char *problems = NULL;

	while (live_brokers != NULL) {
		char *p = broker_release(live_brokers);

		if (p == NULL)
			continue;
		if (problems == NULL) {
			problems = p;
		} else {
			char *joined;

			if (asprintf(&joined, "%s\n%s", problems, p) >= 0) {
				free(problems);
				problems = joined;
			}
			free(p);
		}
	}
	return problems;
}
