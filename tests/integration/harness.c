/*
 * harness.c - brokers as child processes, libmosquitto clients, JSON checks.
 *
 * The broker half follows tests/integration/conftest.py (the pytest harness)
 * so both start mosquitto the same way; the differences are a readiness
 * probe that proves the broker's main loop runs (so one SIGTERM is enough to
 * stop it, see broker_probe) and that a crashed test process takes its
 * brokers with it (PR_SET_PDEATHSIG).
 *
 * Clients run libmosquitto's threaded loop. The loop thread only touches the
 * client's queue and acknowledgement table under the client's mutex and
 * signals its condition variable; every waiting call in the test thread is a
 * bounded wait on that variable. Acknowledgements are indexed by packet id:
 * a waiter looks up its id after the call that sent the packet returns, so
 * an acknowledgement that arrives first is simply found already there.
 */
#define _GNU_SOURCE
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <mosquitto.h>

extern char **environ;

#define DB_OPEN_LINE    "mosquitto-twin: database open at "
#define START_TIMEOUT   10000
#define STOP_TIMEOUT    10000
#define POLL_MS         10
#define START_ATTEMPTS  3
#define SANITIZER_ASAN  "ERROR: AddressSanitizer"
#define SANITIZER_LSAN  "ERROR: LeakSanitizer"
#define SANITIZER_UBSAN ": runtime error: "

/* ---- small utilities ------------------------------------------------------ */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* asprintf that fails the test instead of returning NULL. */
static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		fail_msg("out of memory");
	return s;
}

static char *xstrdup(const char *s)
{
	char *d = strdup(s);

	if (d == NULL)
		fail_msg("out of memory");
	return d;
}

/* The file's contents from offset on, malloc'd and NUL-terminated ("" when
 * the file is missing); NULL only when out of memory. */
static char *read_file_from(const char *path, long offset)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long size;
	size_t n;

	if (f == NULL)
		return strdup("");
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0)
		size = 0;
	if (offset > size)
		offset = size;
	buf = malloc((size_t)(size - offset) + 1);
	if (buf == NULL) {
		fclose(f);
		return NULL;
	}
	fseek(f, offset, SEEK_SET);
	n = fread(buf, 1, (size_t)(size - offset), f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* A command's standard output, malloc'd; "" when it could not run. */
static char *capture(const char *cmd)
{
	FILE *p = popen(cmd, "r");
	size_t len = 0, cap = 4096;
	char *out = malloc(cap);

	if (out == NULL)
		fail_msg("out of memory");
	if (p != NULL) {
		size_t n;

		while ((n = fread(out + len, 1, cap - len - 1, p)) > 0) {
			len += n;
			if (cap - len < 2 && (out = realloc(out, cap *= 2)) == NULL)
				fail_msg("out of memory");
		}
		pclose(p);
	}
	out[len] = '\0';
	return out;
}

static bool keep_tmp(void)
{
	const char *k = getenv("TWIN_KEEP_TMP");

	return k != NULL && k[0] != '\0';
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_tree(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

char *tb_tmpdir_new(const char *name)
{
	const char *base = getenv("TWIN_TEST_TMPDIR");
	char *path;

	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	mkdir(base, 0700);
	path = xasprintf("%s/%s.XXXXXX", base, name);
	if (mkdtemp(path) == NULL) {
		int e = errno;

		free(path);
		fail_msg("mkdtemp under %s: %s", base, strerror(e));
	}
	return path;
}

void tb_tmpdir_free(char *path)
{
	if (path == NULL)
		return;
	if (!keep_tmp())
		rm_tree(path);
	free(path);
}

/* ---- broker --------------------------------------------------------------- */

struct tb_broker {
	pid_t pid;  /* > 0 while the process has not been reaped */
	int status; /* last exit status (tb_broker_stop's encoding), -1 before */
	int port;
	bool own_dir; /* created by the harness: removed at free */
	char *dir, *db_path, *conf_path, *log_path;
	char *config, *plugin_opts;
	bool persistence;
	bool exit_expected; /* stopped, killed or awaited by the test */
	long log_offset;    /* start of the current run in broker.log */
	struct tb_broker *next;
};

static tb_broker *live_brokers;

static const char *env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);

	return v != NULL && v[0] != '\0' ? v : fallback;
}

static const char *plugin_path(void)
{
	const char *p = getenv("TWIN_PLUGIN");

	if (p == NULL || p[0] == '\0')
		fail_msg("TWIN_PLUGIN is not set (path of mosquitto_twin.so)");
	return p;
}

static bool sanitize_on(void)
{
	const char *s = env_or("TWIN_SANITIZE", "OFF");

	return strcasecmp(s, "ON") == 0 || strcmp(s, "1") == 0 || strcasecmp(s, "TRUE") == 0 ||
	       strcasecmp(s, "YES") == 0;
}

/* One sanitizer runtime for LD_PRELOAD: the one the plugin links (ldd), else
 * gcc's; as conftest.py's sanitizer_env(). malloc'd. */
static char *sanitizer_lib(const char *lib)
{
	char *cmd = xasprintf("ldd '%s' 2>/dev/null", plugin_path());
	char *out = capture(cmd), *line, *save = NULL, *found = NULL;

	free(cmd);
	for (line = strtok_r(out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *name = line + strspn(line, " \t"), *arrow = strstr(line, " => ");

		if (strncmp(name, lib, strlen(lib)) == 0 && name[strlen(lib)] == '.' &&
		    arrow != NULL && arrow[4] == '/') {
			found = xstrdup(arrow + 4);
			found[strcspn(found, " \t")] = '\0';
			break;
		}
	}
	free(out);
	if (found != NULL)
		return found;
	cmd = xasprintf("gcc -print-file-name=%s.so 2>/dev/null", lib);
	found = capture(cmd);
	free(cmd);
	found[strcspn(found, "\n")] = '\0';
	if (found[0] != '/') {
		free(found);
		fail_msg("TWIN_SANITIZE is ON but %s.so was not found", lib);
	}
	return found;
}

/* The broker's environment: ours, plus the sanitizer runtimes when
 * TWIN_SANITIZE is ON. A NULL-terminated array of malloc'd strings. */
static char **broker_env(void)
{
	size_t n = 0, k = 0;
	char **env;
	bool san = sanitize_on();

	while (environ[n] != NULL)
		n++;
	env = calloc(n + 4, sizeof(*env));
	if (env == NULL)
		fail_msg("out of memory");
	for (size_t i = 0; i < n; i++) {
		if (san && (strncmp(environ[i], "LD_PRELOAD=", 11) == 0 ||
		            strncmp(environ[i], "ASAN_OPTIONS=", 13) == 0 ||
		            strncmp(environ[i], "UBSAN_OPTIONS=", 14) == 0))
			continue;
		env[k++] = xstrdup(environ[i]);
	}
	if (san) {
		char *asan = sanitizer_lib("libasan"), *ubsan = sanitizer_lib("libubsan");

		/* ASan must come first. */
		env[k++] = xasprintf("LD_PRELOAD=%s %s", asan, ubsan);
		env[k++] = xstrdup("ASAN_OPTIONS=detect_leaks=0:halt_on_error=1");
		env[k++] = xstrdup("UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1");
		free(asan);
		free(ubsan);
	}
	return env;
}

static void strv_free(char **v)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

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

/* Append "prefix line\n" for every non-empty line of lines. */
static void write_lines(FILE *f, const char *prefix, const char *lines)
{
	while (lines != NULL && *lines != '\0') {
		size_t n = strcspn(lines, "\n");

		if (n > 0)
			fprintf(f, "%s%.*s\n", prefix, (int)n, lines);
		lines += n + (lines[n] == '\n');
	}
}

static void write_config(tb_broker *b)
{
	struct passwd *pw = getpwuid(geteuid());
	FILE *f = fopen(b->conf_path, "w");

	if (f == NULL)
		fail_msg("cannot write %s: %s", b->conf_path, strerror(errno));
	fprintf(f, "# generated by tests/integration/harness.c\n");
	/* Mosquitto started as root drops to this user before plugin init. */
	fprintf(f, "user %s\n", pw != NULL ? pw->pw_name : "root");
	fprintf(f, "listener %d 127.0.0.1\n", b->port);
	/* IoT Hub's dialect stops at QoS 1: SUBSCRIBE QoS 2 is granted 1 and a
	 * QoS 2 PUBLISH closes the connection (PROTOCOL.md §2.2). A 2.0 plugin
	 * cannot change a granted QoS, so the listener must; as conftest.py and
	 * mosquitto.conf.sample. */
	fprintf(f, "max_qos 1\n");
	fprintf(f, "allow_anonymous true\nset_tcp_nodelay true\n");
	fprintf(f, "log_dest stderr\nlog_type all\n");
	if (b->persistence)
		fprintf(f, "persistence true\npersistence_location %s/\n", b->dir);
	else
		fprintf(f, "persistence false\n");
	fprintf(f, "plugin %s\nplugin_opt_db_path %s\n", plugin_path(), b->db_path);
	write_lines(f, "plugin_opt_", b->plugin_opts);
	write_lines(f, "", b->config);
	if (fclose(f) != 0)
		fail_msg("cannot write %s", b->conf_path);
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
	const char *mosq = env_or("MOSQUITTO", "/usr/sbin/mosquitto");
	char *argv[] = {(char *)mosq, "-c", b->conf_path, NULL};
	char **env = broker_env();
	pid_t parent = getpid();
	int logfd, nullfd;
	struct stat st;

	write_config(b);
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
	strv_free(env);
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
	int64_t deadline = now_ms() + START_TIMEOUT;

	while (now_ms() < deadline) {
		char *log;
		bool lines;

		if (broker_reap(b))
			return false;
		log = read_file_from(b->log_path, b->log_offset);
		lines = log != NULL && strstr(log, DB_OPEN_LINE) != NULL &&
		        strstr(log, "mosquitto version ") != NULL &&
		        strstr(log, " running") != NULL;
		free(log);
		if (lines && broker_probe(b->port))
			return true;
		sleep_ms(POLL_MS);
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
		log = read_file_from(b->log_path, b->log_offset);
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
				sleep_ms(200);
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
	b->config = o->config != NULL ? xstrdup(o->config) : NULL;
	b->plugin_opts = o->plugin_opts != NULL ? xstrdup(o->plugin_opts) : NULL;
	if (o->dir != NULL) {
		b->dir = xstrdup(o->dir);
		mkdir(b->dir, 0700);
	} else {
		b->dir = tb_tmpdir_new("twin-broker");
		b->own_dir = true;
	}
	b->db_path = xasprintf("%s/db", b->dir);
	b->conf_path = xasprintf("%s/mosquitto.conf", b->dir);
	b->log_path = xasprintf("%s/broker.log", b->dir);
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
			sleep_ms(1);
	}
}

int tb_broker_stop(tb_broker *b)
{
	int64_t deadline = now_ms() + STOP_TIMEOUT, next_term = now_ms();

	b->exit_expected = true;
	while (!broker_reap(b)) {
		int64_t t = now_ms();

		if (t >= deadline) {
			char *log = read_file_from(b->log_path, b->log_offset);

			broker_kill(b);
			print_error("broker log (%s):\n%s\n", b->log_path, log != NULL ? log : "");
			free(log);
			fail_msg("broker ignored SIGTERM for %d ms", STOP_TIMEOUT);
		}
		if (t >= next_term) {
			kill(b->pid, SIGTERM);
			next_term = t + 1000;
		}
		sleep_ms(POLL_MS);
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
	int64_t deadline = now_ms() + timeout_ms;

	while (!broker_reap(b)) {
		if (now_ms() >= deadline)
			return -1;
		sleep_ms(POLL_MS);
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

char *tb_broker_log(const tb_broker *b)
{
	char *log = read_file_from(b->log_path, 0);

	if (log == NULL)
		fail_msg("out of memory");
	return log;
}

bool tb_broker_wait_log(tb_broker *b, const char *needle, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;

	for (;;) {
		char *log = read_file_from(b->log_path, b->log_offset);
		bool found = log != NULL && strstr(log, needle) != NULL;

		free(log);
		if (found)
			return true;
		if (now_ms() >= deadline)
			return false;
		sleep_ms(POLL_MS);
	}
}

/* Sanitizer report lines of the whole log, malloc'd; NULL when none. */
static char *sanitizer_reports(const tb_broker *b)
{
	char *log = read_file_from(b->log_path, 0), *line, *save = NULL, *out = NULL;
	size_t len = 0;

	for (line = log != NULL ? strtok_r(log, "\n", &save) : NULL; line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		size_t n = strlen(line);

		if (strstr(line, SANITIZER_ASAN) == NULL && strstr(line, SANITIZER_LSAN) == NULL &&
		    strstr(line, SANITIZER_UBSAN) == NULL)
			continue;
		out = realloc(out, len + n + 2);
		if (out == NULL)
			break;
		memcpy(out + len, line, n);
		len += n;
		out[len++] = '\n';
		out[len] = '\0';
	}
	free(log);
	return out;
}

/* Stop, remove, free. Returns a malloc'd description of what went wrong
 * (non-zero exit status on SIGTERM, sanitizer reports), NULL if nothing. */
static char *broker_release(tb_broker *b)
{
	char *problem = NULL, *reports;
	const char *what = "exited badly on SIGTERM";
	int st = 0;

	if (b->pid > 0) {
		int64_t deadline = now_ms() + STOP_TIMEOUT, next_term = now_ms();

		while (!broker_reap(b) && now_ms() < deadline) {
			if (now_ms() >= next_term) {
				kill(b->pid, SIGTERM);
				next_term = now_ms() + 1000;
			}
			sleep_ms(POLL_MS);
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
	reports = sanitizer_reports(b);
	if (st != 0 || reports != NULL) {
		char *log = read_file_from(b->log_path, b->log_offset);

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
	if (b->own_dir && !keep_tmp())
		rm_tree(b->dir);
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

/* ---- client --------------------------------------------------------------- */

/* Acknowledgement table entries, indexed by packet id. */
#define ACK_DONE   0x1000 /* | the granted QoS or reason code */
#define ACK_IGNORE 0x2000 /* nobody waits: drop the acknowledgement */

typedef struct msg_node {
	tb_msg *msg;
	struct msg_node *next;
} msg_node;

struct tb_client {
	struct mosquitto *mosq;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool loop_running;
	/* Under lock: */
	bool connack_seen;
	int connack_rc;
	bool session_present;
	bool closed;           /* the socket closed (on_disconnect) */
	bool we_disconnect;    /* ... because we asked to */
	bool closed_by_broker; /* ... without us asking */
	msg_node *head, *tail;
	int queued;
	uint16_t acks[65536];
	struct tb_client *next;
};

static tb_client *live_clients;
static pthread_once_t lib_once = PTHREAD_ONCE_INIT;

static void lib_cleanup(void)
{
	mosquitto_lib_cleanup();
}

static void lib_init(void)
{
	mosquitto_lib_init();
	atexit(lib_cleanup);
}

static void deadline_ts(struct timespec *ts, int timeout_ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += timeout_ms / 1000;
	ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
	tb_client *c = obj;

	(void)mosq;
	(void)props;
	pthread_mutex_lock(&c->lock);
	c->connack_seen = true;
	c->connack_rc = rc;
	c->session_present = (flags & 1) != 0;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc,
                          const mosquitto_property *props)
{
	tb_client *c = obj;
	bool ours;

	(void)rc;
	(void)props;
	pthread_mutex_lock(&c->lock);
	ours = c->we_disconnect;
	c->closed = true;
	c->closed_by_broker = !ours;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	/* Marks the client disconnected, so the loop thread ends instead of
	 * reconnecting: a test sees exactly the connection it opened. */
	if (!ours)
		mosquitto_disconnect(mosq);
}

static void ack(tb_client *c, int mid, int value)
{
	pthread_mutex_lock(&c->lock);
	if (c->acks[(uint16_t)mid] == ACK_IGNORE)
		c->acks[(uint16_t)mid] = 0;
	else
		c->acks[(uint16_t)mid] = (uint16_t)(ACK_DONE | (value & 0xFF));
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int reason,
                       const mosquitto_property *props)
{
	(void)mosq;
	(void)props;
	ack(obj, mid, reason);
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int count, const int *granted,
                         const mosquitto_property *props)
{
	(void)mosq;
	(void)props;
	ack(obj, mid, count > 0 ? granted[0] : 0x80);
}

static void on_unsubscribe(struct mosquitto *mosq, void *obj, int mid,
                           const mosquitto_property *props)
{
	(void)mosq;
	(void)props;
	ack(obj, mid, 0);
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *m,
                       const mosquitto_property *props)
{
	tb_client *c = obj;
	tb_msg *msg = calloc(1, sizeof(*msg));
	msg_node *n = calloc(1, sizeof(*n));

	(void)mosq;
	(void)props;
	if (msg == NULL || n == NULL || (msg->topic = strdup(m->topic)) == NULL ||
	    (msg->payload = malloc((size_t)m->payloadlen + 1)) == NULL) {
		tb_msg_free(msg);
		free(n);
		return; /* the test then times out waiting for it */
	}
	if (m->payloadlen > 0)
		memcpy(msg->payload, m->payload, (size_t)m->payloadlen);
	msg->payload[m->payloadlen] = '\0';
	msg->payloadlen = m->payloadlen;
	msg->qos = m->qos;
	msg->retain = m->retain;
	n->msg = msg;
	pthread_mutex_lock(&c->lock);
	if (c->tail != NULL)
		c->tail->next = n;
	else
		c->head = n;
	c->tail = n;
	c->queued++;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/* Wait for packet mid's acknowledgement; its value, or -1 when none came in
 * time or the connection closed first. */
static int wait_ack(tb_client *c, int mid, int timeout_ms)
{
	struct timespec ts;
	uint16_t *a = &c->acks[(uint16_t)mid];
	int v = -1;

	deadline_ts(&ts, timeout_ms);
	pthread_mutex_lock(&c->lock);
	while (!(*a & ACK_DONE) && !c->closed)
		if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT)
			break;
	if (*a & ACK_DONE) {
		v = *a & 0xFF;
		*a = 0;
	} else {
		*a = ACK_IGNORE;
	}
	pthread_mutex_unlock(&c->lock);
	return v;
}

static void client_destroy(tb_client *c)
{
	while (c->head != NULL) {
		msg_node *n = c->head;

		c->head = n->next;
		tb_msg_free(n->msg);
		free(n);
	}
	if (c->mosq != NULL)
		mosquitto_destroy(c->mosq);
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static tb_client *client_new(const char *client_id, const tb_client_opts *o)
{
	tb_client *c = calloc(1, sizeof(*c));
	pthread_condattr_t ca;
	bool clean = !o->persistent_session || client_id == NULL || client_id[0] == '\0';
	int version = o->protocol == TB_MQTT_5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311;

	if (c == NULL)
		fail_msg("out of memory");
	pthread_mutex_init(&c->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->cond, &ca);
	pthread_condattr_destroy(&ca);
	c->mosq = mosquitto_new(client_id != NULL && client_id[0] != '\0' ? client_id : NULL, clean,
	                        c);
	if (c->mosq == NULL) {
		client_destroy(c);
		fail_msg("mosquitto_new(%s) failed", client_id != NULL ? client_id : "");
	}
	mosquitto_int_option(c->mosq, MOSQ_OPT_PROTOCOL_VERSION, version);
	if ((o->username != NULL &&
	     mosquitto_username_pw_set(c->mosq, o->username, o->password) != MOSQ_ERR_SUCCESS) ||
	    (o->will_topic != NULL &&
	     mosquitto_will_set(c->mosq, o->will_topic,
	                        o->will_payload != NULL ? (int)strlen(o->will_payload) : 0,
	                        o->will_payload, o->will_qos,
	                        o->will_retain) != MOSQ_ERR_SUCCESS)) {
		client_destroy(c);
		fail_msg("invalid client options for %s", client_id != NULL ? client_id : "");
	}
	/* Never reconnect on our own (on_disconnect also prevents it). */
	mosquitto_reconnect_delay_set(c->mosq, 3600, 3600, false);
	mosquitto_connect_v5_callback_set(c->mosq, on_connect);
	mosquitto_disconnect_v5_callback_set(c->mosq, on_disconnect);
	mosquitto_publish_v5_callback_set(c->mosq, on_publish);
	mosquitto_subscribe_v5_callback_set(c->mosq, on_subscribe);
	mosquitto_unsubscribe_v5_callback_set(c->mosq, on_unsubscribe);
	mosquitto_message_v5_callback_set(c->mosq, on_message);
	return c;
}

int tb_client_try_connect(tb_broker *b, const char *client_id, const tb_client_opts *o,
                          tb_client **out)
{
	tb_client_opts none = {0};
	struct timespec ts;
	tb_client *c;
	int rc;

	*out = NULL;
	pthread_once(&lib_once, lib_init);
	c = client_new(client_id, o != NULL ? o : &none);
	if (mosquitto_connect(c->mosq, "127.0.0.1", b->port,
	                      o != NULL && o->keepalive > 0 ? o->keepalive : 60) !=
	            MOSQ_ERR_SUCCESS ||
	    mosquitto_loop_start(c->mosq) != MOSQ_ERR_SUCCESS) {
		client_destroy(c);
		return TB_CONNACK_NONE;
	}
	c->loop_running = true;
	c->next = live_clients;
	live_clients = c;
	deadline_ts(&ts, TB_WAIT_MS);
	pthread_mutex_lock(&c->lock);
	while (!c->connack_seen && !c->closed)
		if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT)
			break;
	rc = c->connack_seen ? c->connack_rc : TB_CONNACK_NONE;
	if (rc == 0 && c->closed)
		rc = TB_CONNACK_NONE;
	pthread_mutex_unlock(&c->lock);
	if (rc != 0) {
		tb_client_free(c);
		return rc;
	}
	*out = c;
	return 0;
}

tb_client *tb_client_connect(tb_broker *b, const char *client_id, const tb_client_opts *o)
{
	tb_client *c;

	tb_client_try_connect(b, client_id, o, &c);
	return c;
}

bool tb_client_session_present(const tb_client *c)
{
	return c->session_present;
}

int tb_client_subscribe(tb_client *c, const char *filter, int qos)
{
	int mid;

	if (mosquitto_subscribe(c->mosq, &mid, filter, qos) != MOSQ_ERR_SUCCESS)
		return -1;
	return wait_ack(c, mid, TB_WAIT_MS);
}

int tb_client_unsubscribe(tb_client *c, const char *filter)
{
	int mid;

	if (mosquitto_unsubscribe(c->mosq, &mid, filter) != MOSQ_ERR_SUCCESS)
		return -1;
	return wait_ack(c, mid, TB_WAIT_MS) < 0 ? -1 : 0;
}

static int publish(tb_client *c, const char *topic, const void *payload, int len, int qos,
                   bool retain, bool wait)
{
	int mid;

	if (len < 0)
		len = payload != NULL ? (int)strlen(payload) : 0;
	if (mosquitto_publish(c->mosq, &mid, topic, len, payload, qos, retain) != MOSQ_ERR_SUCCESS)
		return -1;
	if (!wait) {
		pthread_mutex_lock(&c->lock);
		c->acks[(uint16_t)mid] = c->acks[(uint16_t)mid] & ACK_DONE ? 0 : ACK_IGNORE;
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	return wait_ack(c, mid, TB_WAIT_MS);
}

int tb_client_publish(tb_client *c, const char *topic, const void *payload, int len, int qos,
                      bool retain)
{
	return publish(c, topic, payload, len, qos, retain, true);
}

int tb_client_publish_nowait(tb_client *c, const char *topic, const void *payload, int len, int qos,
                             bool retain)
{
	return publish(c, topic, payload, len, qos, retain, false);
}

tb_msg *tb_client_wait(tb_client *c, const char *topic_prefix, int timeout_ms)
{
	size_t plen = strlen(topic_prefix);
	struct timespec ts;
	tb_msg *found = NULL;

	deadline_ts(&ts, timeout_ms);
	pthread_mutex_lock(&c->lock);
	for (;;) {
		msg_node *prev = NULL;

		for (msg_node *n = c->head; n != NULL; prev = n, n = n->next) {
			if (strncmp(n->msg->topic, topic_prefix, plen) != 0)
				continue;
			if (prev != NULL)
				prev->next = n->next;
			else
				c->head = n->next;
			if (c->tail == n)
				c->tail = prev;
			c->queued--;
			found = n->msg;
			free(n);
			break;
		}
		if (found != NULL || pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&c->lock);
	return found;
}

void tb_msg_free(tb_msg *m)
{
	if (m == NULL)
		return;
	free(m->topic);
	free(m->payload);
	free(m);
}

int tb_client_queue_len(tb_client *c)
{
	int n;

	pthread_mutex_lock(&c->lock);
	n = c->queued;
	pthread_mutex_unlock(&c->lock);
	return n;
}

bool tb_client_disconnected(tb_client *c, int timeout_ms)
{
	struct timespec ts;
	bool closed;

	deadline_ts(&ts, timeout_ms);
	pthread_mutex_lock(&c->lock);
	while (!c->closed)
		if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT)
			break;
	closed = c->closed_by_broker;
	pthread_mutex_unlock(&c->lock);
	return closed;
}

void tb_client_disconnect(tb_client *c)
{
	struct timespec ts;
	bool closed;

	if (!c->loop_running)
		return;
	pthread_mutex_lock(&c->lock);
	c->we_disconnect = true;
	pthread_mutex_unlock(&c->lock);
	mosquitto_disconnect(c->mosq);
	deadline_ts(&ts, TB_WAIT_MS);
	pthread_mutex_lock(&c->lock);
	while (!c->closed)
		if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT)
			break;
	closed = c->closed;
	pthread_mutex_unlock(&c->lock);
	/* The loop thread ends once the client is disconnected; if the socket
	 * never closed, cancel it (it then sits in select(), a cancellation
	 * point, not in one of our callbacks). */
	mosquitto_loop_stop(c->mosq, !closed);
	c->loop_running = false;
}

void tb_client_free(tb_client *c)
{
	if (c == NULL)
		return;
	tb_client_disconnect(c);
	for (tb_client **p = &live_clients; *p != NULL; p = &(*p)->next)
		if (*p == c) {
			*p = c->next;
			break;
		}
	client_destroy(c);
}

void tb_cleanup_all(void)
{
	char *problems = NULL;

	while (live_clients != NULL)
		tb_client_free(live_clients);
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
	if (problems != NULL) {
		print_error("%s\n", problems);
		free(problems);
		fail_msg("broker teardown failed (see above)");
	}
}

/* ---- twin protocol helpers ------------------------------------------------ */

tb_msg *tb_twin_request(tb_client *c, const char *topic, const char *body, int qos, int timeout_ms)
{
	if (tb_client_publish(c, topic, body, -1, qos, false) < 0)
		return NULL;
	return tb_client_wait(c, "$iothub/twin/res/", timeout_ms);
}

void tb_twin_assert_quiet(tb_client *c)
{
	static unsigned seq;
	char topic[64], want[80], extra[2048] = "";
	size_t used = 0;
	tb_msg *m;
	bool replied = false;

	seq++;
	snprintf(topic, sizeof(topic), "$iothub/twin/GET/?$rid=quiet-%u", seq);
	snprintf(want, sizeof(want), "$iothub/twin/res/200/?$rid=quiet-%u", seq);
	if (tb_client_publish(c, topic, NULL, 0, 1, false) < 0)
		fail_msg("barrier GET %s was not acknowledged", topic);
	while ((m = tb_client_wait(c, "", TB_WAIT_MS)) != NULL) {
		bool done = strcmp(m->topic, want) == 0;

		if (!done && used < sizeof(extra) - 1)
			used += (size_t)snprintf(extra + used, sizeof(extra) - used,
			                         "\n  %s (%d bytes, qos %d%s): %.200s", m->topic,
			                         m->payloadlen, m->qos,
			                         m->retain ? ", retained" : "", m->payload);
		tb_msg_free(m);
		if (done) {
			replied = true;
			break;
		}
	}
	if (!replied)
		fail_msg("no reply to the barrier GET %s within %d ms%s%s", topic, TB_WAIT_MS,
		         used ? "; received instead:" : "", extra);
	if (used > 0)
		fail_msg("unexpected messages before the barrier reply:%s", extra);
	if (tb_client_queue_len(c) != 0)
		fail_msg("%d unexpected message(s) after the barrier reply",
		         tb_client_queue_len(c));
}

int tb_res_status(const char *topic)
{
	static const char prefix[] = "$iothub/twin/res/";
	const char *p;
	int status = 0;

	if (strncmp(topic, prefix, sizeof(prefix) - 1) != 0)
		return -1;
	p = topic + sizeof(prefix) - 1;
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9' && status < 100000; p++)
		status = status * 10 + (*p - '0');
	return *p == '/' ? status : -1;
}

char *tb_topic_param(const char *topic, const char *name)
{
	const char *q = strchr(topic, '?');
	size_t nlen = strlen(name);

	while (q != NULL) {
		const char *pair = q + 1, *end = pair + strcspn(pair, "&");
		const char *eq = memchr(pair, '=', (size_t)(end - pair));
		const char *nend = eq != NULL ? eq : end;

		if ((size_t)(nend - pair) == nlen && strncmp(pair, name, nlen) == 0)
			return eq != NULL ? strndup(eq + 1, (size_t)(end - eq - 1)) : strdup("");
		q = *end == '&' ? end : NULL;
	}
	return NULL;
}

/* ---- JSON ----------------------------------------------------------------- */

static bool utf8_valid(const unsigned char *s)
{
	while (*s != '\0') {
		unsigned c = *s++;
		unsigned cp, need;

		if (c < 0x80)
			continue;
		if (c >= 0xC2 && c <= 0xDF)
			need = 1, cp = c & 0x1F;
		else if (c >= 0xE0 && c <= 0xEF)
			need = 2, cp = c & 0x0F;
		else if (c >= 0xF0 && c <= 0xF4)
			need = 3, cp = c & 0x07;
		else
			return false;
		for (unsigned i = 0; i < need; i++, s++) {
			if ((*s & 0xC0) != 0x80)
				return false;
			cp = (cp << 6) | (*s & 0x3F);
		}
		if ((need == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
		    (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
			return false;
	}
	return true;
}

static cJSON *parse_strict(const char *s)
{
	return s != NULL ? cJSON_ParseWithOpts(s, NULL, true) : NULL;
}

bool tb_json_valid(const char *s)
{
	cJSON *j;

	if (s == NULL || !utf8_valid((const unsigned char *)s))
		return false;
	j = parse_strict(s);
	cJSON_Delete(j);
	return j != NULL;
}

static bool json_equal(const cJSON *a, const cJSON *b, bool ordered)
{
	int type = a->type & 0xFF;

	if (type != (b->type & 0xFF))
		return false;
	switch (type) {
	case cJSON_Number:
		return a->valuedouble == b->valuedouble;
	case cJSON_String:
		return strcmp(a->valuestring, b->valuestring) == 0;
	case cJSON_Array:
	case cJSON_Object:
		if (cJSON_GetArraySize(a) != cJSON_GetArraySize(b))
			return false;
		if (type == cJSON_Array || ordered) {
			const cJSON *y = b->child;

			for (const cJSON *x = a->child; x != NULL; x = x->next, y = y->next)
				if ((type == cJSON_Object && strcmp(x->string, y->string) != 0) ||
				    !json_equal(x, y, ordered))
					return false;
			return true;
		}
		for (const cJSON *x = a->child; x != NULL; x = x->next) {
			const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, x->string);

			if (y == NULL || !json_equal(x, y, ordered))
				return false;
		}
		for (const cJSON *y = b->child; y != NULL; y = y->next)
			if (cJSON_GetObjectItemCaseSensitive(a, y->string) == NULL)
				return false;
		return true;
	default: /* true, false, null */
		return true;
	}
}

static void assert_json(const char *got, const char *want, bool ordered)
{
	cJSON *g = parse_strict(got), *w = parse_strict(want);
	bool eq = g != NULL && w != NULL && json_equal(g, w, ordered);

	cJSON_Delete(g);
	cJSON_Delete(w);
	if (w == NULL)
		fail_msg("bad expected JSON in the test: %s", want);
	if (!eq)
		fail_msg("JSON differs%s:\n  got:  %s\n  want: %s", ordered ? " (ordered)" : "",
		         got != NULL ? got : "(null)", want);
}

void tb_assert_json_eq(const char *got, const char *want)
{
	assert_json(got, want, false);
}

void tb_assert_json_eq_ordered(const char *got, const char *want)
{
	assert_json(got, want, true);
}

void tb_assert_str_exact(const char *got, const char *want)
{
	if (got == NULL || strcmp(got, want) != 0)
		fail_msg("strings differ:\n  got:  %s\n  want: %s", got != NULL ? got : "(null)",
		         want);
}

long long tb_json_int(const char *json, const char *path)
{
	cJSON *root = parse_strict(json);
	const cJSON *v = root;
	char *copy = xstrdup(path), *seg, *save = NULL;
	double d = 0;
	bool ok;

	for (seg = strtok_r(copy, ".", &save); seg != NULL && v != NULL;
	     seg = strtok_r(NULL, ".", &save))
		v = cJSON_IsObject(v) ? cJSON_GetObjectItemCaseSensitive(v, seg) : NULL;
	ok = v != NULL && cJSON_IsNumber(v);
	if (ok) {
		d = v->valuedouble;
		ok = d == (double)(long long)d;
	}
	free(copy);
	cJSON_Delete(root);
	if (!ok)
		fail_msg("no integer at %s in %s", path, json != NULL ? json : "(null)");
	return (long long)d;
}

bool tb_timestamp_valid(const char *ts)
{
	static const char pattern[] = "dddd-dd-ddTdd:dd:dd.dddddddZ";
	int mon, day, hour, min, sec;

	if (ts == NULL || strlen(ts) != sizeof(pattern) - 1)
		return false;
	for (size_t i = 0; pattern[i] != '\0'; i++)
		if (pattern[i] == 'd' ? ts[i] < '0' || ts[i] > '9' : ts[i] != pattern[i])
			return false;
	if (sscanf(ts + 5, "%2d-%2dT%2d:%2d:%2d", &mon, &day, &hour, &min, &sec) != 5)
		return false;
	return mon >= 1 && mon <= 12 && day >= 1 && day <= 31 && hour < 24 && min < 60 && sec < 61;
}

double tb_timestamp_age(const char *ts)
{
	struct tm tm = {0};
	struct timespec now;

	if (!tb_timestamp_valid(ts) || strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm) == NULL)
		fail_msg("bad timestamp '%s'", ts != NULL ? ts : "(null)");
	clock_gettime(CLOCK_REALTIME, &now);
	return (double)now.tv_sec + now.tv_nsec / 1e9 - ((double)timegm(&tm) + atof(ts + 19));
}

static bool copy_string(const cJSON *v, char *out, size_t size)
{
	if (!cJSON_IsString(v) || strlen(v->valuestring) >= size)
		return false;
	strcpy(out, v->valuestring);
	return true;
}

bool tb_error_body_parse(const char *body, tb_error_body *out)
{
	cJSON *j = parse_strict(body);
	const cJSON *code = cJSON_GetObjectItemCaseSensitive(j, "errorCode");
	const char *why = NULL;

	memset(out, 0, sizeof(*out));
	if (j == NULL || !cJSON_IsObject(j) || !tb_json_valid(body))
		why = "not a JSON object";
	else if (cJSON_GetArraySize(j) != 4)
		why = "not exactly the members errorCode, trackingId, message, timestampUtc";
	else if (!cJSON_IsNumber(code) || code->valuedouble != (double)(long long)code->valuedouble)
		why = "errorCode is not an integer";
	else if (!copy_string(cJSON_GetObjectItemCaseSensitive(j, "trackingId"), out->tracking_id,
	                      sizeof(out->tracking_id)) ||
	         strlen(out->tracking_id) != 32 ||
	         strspn(out->tracking_id, "0123456789abcdef") != 32)
		why = "trackingId is not 32 lower-case hex digits";
	else if (!copy_string(cJSON_GetObjectItemCaseSensitive(j, "message"), out->message,
	                      sizeof(out->message)) ||
	         out->message[0] == '\0')
		why = "message is not a non-empty string";
	else if (!copy_string(cJSON_GetObjectItemCaseSensitive(j, "timestampUtc"),
	                      out->timestamp_utc, sizeof(out->timestamp_utc)) ||
	         !tb_timestamp_valid(out->timestamp_utc))
		why = "timestampUtc is not YYYY-MM-DDTHH:MM:SS.fffffffZ";
	else
		out->error_code = (long long)code->valuedouble;
	cJSON_Delete(j);
	if (why != NULL)
		print_error("bad error body (%s): %s\n", why, body != NULL ? body : "(null)");
	return why == NULL;
}

void tb_assert_error_reply(const tb_msg *m, const char *want_topic, long long want_code,
                           const char *want_message, tb_error_body *out)
{
	tb_error_body e;

	if (m == NULL)
		fail_msg("no reply (wanted %s)", want_topic);
	tb_assert_str_exact(m->topic, want_topic);
	if (!tb_error_body_parse(m->payload, &e))
		fail_msg("reply on %s has no valid error body", m->topic);
	if (e.error_code != want_code)
		fail_msg("errorCode %lld, want %lld, in %s", e.error_code, want_code, m->payload);
	if (want_message != NULL)
		tb_assert_str_exact(e.message, want_message);
	if (out != NULL)
		*out = e;
}
