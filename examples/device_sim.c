/*
 * device_sim.c - twin-device-sim, a simulated device that uses its device twin
 * the way the device apps of the Azure IoT Hub tutorials do, over IoT Hub's
 * MQTT dialect (PROTOCOL.md §1.1, §2, §3, §11). Runs against mosquitto-twin
 * (tools/quickstart) or any broker speaking that dialect.
 *
 * What it does: connect (clean session 0 and MQTT 3.1.1, like the SDKs), read
 * the twin, apply three desired settings (telemetryInterval, threshold, and
 * firmwareVersion with a simulated download), report what it applied, follow
 * desired notifications, and send temperature telemetry. The twin protocol
 * itself (requests, $rid, $version reconciliation) is in twin_client.c; this
 * file is the application: options, the connection, settings, telemetry.
 *
 * Shape: one thread and one loop. run() alternates mosquitto_loop() (network
 * I/O and the callbacks) with a few timers (telemetry, download, reconnect,
 * GET retry), so nothing is shared between threads and nothing needs a lock.
 */
#include "twin_client.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KEEPALIVE_S        60
#define DEFAULT_INTERVAL_S 10.0
#define DEFAULT_THRESHOLD  30.0
#define VERSION_LEN        64
#define RECONNECT_MAX_S    60

enum link_state { LINK_DOWN, LINK_CONNECTING, LINK_UP };

struct options {
	const char *host, *device_id, *username, *password, *cafile, *certfile, *keyfile;
	const char *firmware;
	int port;
	double download_s, duration_s;
	bool once, quiet;
};

struct sim {
	struct options opt;
	struct mosquitto *mosq;
	struct twin_client twin;
	enum link_state link;
	bool ever_connected;
	int reconnect_delay_s;
	unsigned failures; /* failed connection attempts; the twin counts its own */
	/* Application state. */
	double interval_s, threshold, temperature;
	char fw_running[VERSION_LEN], fw_target[VERSION_LEN]; /* fw_target "": no download */
	uint64_t rng;
	unsigned telemetry_sent;
	int telemetry_mid; /* of the last telemetry PUBLISH until its PUBACK; 0: none */
	/* Timers, tc_now_ms() values; 0 = off. */
	int64_t t_telemetry, t_last_telemetry, t_download, t_reconnect, t_deadline;
};

/* Set by the SIGINT/SIGTERM handler: the one global, as a signal handler needs. */
static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* One line per event on stdout; --quiet keeps only the ERROR lines. A tc_log_fn. */
static void log_va(void *ctx, bool error, const char *fmt, va_list ap)
{
	const struct sim *s = ctx;
	struct timespec ts;
	struct tm tm;
	char stamp[16];
	if (s->opt.quiet && !error) {
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
	printf("%s.%03ld %s%s", stamp, ts.tv_nsec / 1000000, s->opt.device_id,
	       error ? " ERROR " : " ");
	vprintf(fmt, ap);
	putchar('\n');
}

static void log_line(const struct sim *s, bool error, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_va((void *)s, error, fmt, ap);
	va_end(ap);
}

/* ---- Applying desired settings ------------------------------------------ */

/* Desired number `name` within [min, max]; absent: fallback; invalid: current, logged. */
static double desired_number(const struct sim *s, const cJSON *desired, const char *name,
                             double min, double max, double fallback, double current)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(desired, name);
	char text[TC_LOG_JSON];
	if (!item) {
		return fallback;
	}
	if (!cJSON_IsNumber(item) || item->valuedouble < min || item->valuedouble > max) {
		log_line(s, true, "desired %s %s is not a number in [%g, %g]: ignored", name,
		         tc_json_text(item, text, sizeof text), min, max);
		return current;
	}
	return item->valuedouble;
}

static void apply_interval(struct sim *s, const cJSON *desired)
{
	double interval = desired_number(s, desired, "telemetryInterval", 0.1, 86400,
	                                 DEFAULT_INTERVAL_S, s->interval_s);
	if (interval == s->interval_s) {
		return;
	}
	log_line(s, false, "telemetryInterval %g s -> %g s", s->interval_s, interval);
	s->interval_s = interval;
	if (s->t_telemetry) { /* the next message one new interval after the last one */
		int64_t next = s->t_last_telemetry + (int64_t)(interval * 1000);
		s->t_telemetry = next > tc_now_ms() ? next : tc_now_ms();
	}
}

static void apply_threshold(struct sim *s, const cJSON *desired)
{
	double threshold =
	        desired_number(s, desired, "threshold", -1e9, 1e9, DEFAULT_THRESHOLD, s->threshold);
	if (threshold != s->threshold) {
		log_line(s, false, "threshold %g -> %g", s->threshold, threshold);
		s->threshold = threshold;
	}
}

/* Starts, restarts or cancels the simulated download; adds its status to report. */
static void apply_firmware(struct sim *s, const cJSON *desired, cJSON *report)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(desired, "firmwareVersion");
	const char *want = cJSON_GetStringValue(item);
	char text[TC_LOG_JSON];
	if (item && (!want || !*want || strlen(want) >= VERSION_LEN)) {
		log_line(s, true, "desired firmwareVersion %s is not a short string: ignored",
		         tc_json_text(item, text, sizeof text));
		return;
	}
	bool running = want && strcmp(want, s->fw_running) == 0;
	if (!want || strcmp(want, s->fw_target) == 0 || (running && !s->fw_target[0])) {
		return; /* nothing asked, already downloading it, or already running it */
	}
	cJSON *status = tc_must(cJSON_AddObjectToObject(report, "firmware"));
	if (running) { /* asked back to the running version during a download */
		log_line(s, false, "firmware: download of %s cancelled, staying on %s",
		         s->fw_target, want);
		s->fw_target[0] = '\0';
		s->t_download = 0;
		cJSON_AddStringToObject(status, "status", "current");
		cJSON_AddStringToObject(status, "version", want);
		cJSON_AddNullToObject(status, "target"); /* reported patches merge: clear it */
		return;
	}
	snprintf(s->fw_target, sizeof s->fw_target, "%s", want);
	s->t_download = tc_now_ms() + (int64_t)(s->opt.download_s * 1000);
	log_line(s, false, "firmware: downloading %s (running %s)", want, s->fw_running);
	cJSON_AddStringToObject(status, "status", "downloading");
	cJSON_AddStringToObject(status, "target", want);
}

static void firmware_finish(struct sim *s)
{
	cJSON *report = tc_must(cJSON_CreateObject());
	cJSON *status = tc_must(cJSON_AddObjectToObject(report, "firmware"));
	log_line(s, false, "firmware: %s -> %s, update completed", s->fw_running, s->fw_target);
	snprintf(s->fw_running, sizeof s->fw_running, "%s", s->fw_target);
	s->fw_target[0] = '\0';
	s->t_download = 0;
	cJSON_AddStringToObject(status, "status", "completed");
	cJSON_AddStringToObject(status, "version", s->fw_running);
	cJSON_AddStringToObject(report, "firmwareVersion", s->fw_running);
	tc_report(&s->twin, report);
}

/* Whether a patch (NULL: a whole GET result) sets or removes desired member `name`. */
static bool touches(const cJSON *patch, const char *name)
{
	return !patch || cJSON_GetObjectItemCaseSensitive(patch, name);
}

/*
 * tc_desired_fn: applies the settings a GET result or notification touches (so
 * a bad value is complained about once, not on every later patch), then
 * reports what the device now runs, as the tutorials' devices do.
 */
static void on_desired(void *ctx, const cJSON *desired, const cJSON *patch, long version)
{
	struct sim *s = ctx;
	cJSON *report = tc_must(cJSON_CreateObject());
	(void)version;
	if (touches(patch, "telemetryInterval")) {
		apply_interval(s, desired);
	}
	if (touches(patch, "threshold")) {
		apply_threshold(s, desired);
	}
	if (touches(patch, "firmwareVersion")) {
		apply_firmware(s, desired, report);
	}
	cJSON_AddNumberToObject(report, "telemetryInterval", s->interval_s);
	cJSON_AddNumberToObject(report, "threshold", s->threshold);
	cJSON_AddStringToObject(report, "firmwareVersion", s->fw_running);
	tc_report(&s->twin, report);
	if (!patch && !s->t_telemetry) {
		s->t_telemetry = tc_now_ms(); /* telemetry starts once the settings are known */
	}
}

/* ---- Telemetry ------------------------------------------------------------ */

static double rand_unit(uint64_t *state) /* xorshift64*, in [0, 1) */
{
	*state ^= *state >> 12;
	*state ^= *state << 25;
	*state ^= *state >> 27;
	return (double)((*state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* The project's timestamp form: UTC, 7 fractional digits, `Z` (PROTOCOL.md conventions). */
static void utc_timestamp(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + n, len - n, ".%07ldZ", ts.tv_nsec / 100);
}

/* `devices/{deviceId}/messages/events/` at QoS 1 (PROTOCOL.md §11); random-walk temperature. */
static void send_telemetry(struct sim *s)
{
	char topic[300], ts[40];
	s->temperature = round((s->temperature + rand_unit(&s->rng) - 0.5) * 100) / 100;
	bool alert = s->temperature > s->threshold;
	utc_timestamp(ts, sizeof ts);
	cJSON *msg = tc_must(cJSON_CreateObject());
	cJSON_AddNumberToObject(msg, "temperature", s->temperature);
	cJSON_AddBoolToObject(msg, "temperatureAlert", alert);
	cJSON_AddStringToObject(msg, "ts", ts);
	char *body = tc_must(cJSON_PrintUnformatted(msg));
	snprintf(topic, sizeof topic, "devices/%s/messages/events/", s->opt.device_id);
	int rc = mosquitto_publish(s->mosq, &s->telemetry_mid, topic, (int)strlen(body), body, 1,
	                           false);
	if (rc == MOSQ_ERR_SUCCESS) {
		s->telemetry_sent++;
		log_line(s, false, "-> telemetry %s%s", body, alert ? "  ABOVE THRESHOLD" : "");
	} else {
		s->telemetry_mid = 0;
		log_line(s, true, "telemetry not sent: %s", mosquitto_strerror(rc));
	}
	free(body);
	cJSON_Delete(msg);
}

/* ---- Connection ------------------------------------------------------------ */

static void schedule_reconnect(struct sim *s)
{
	s->t_reconnect = tc_now_ms() + s->reconnect_delay_s * 1000;
	s->reconnect_delay_s *= 2;
	if (s->reconnect_delay_s > RECONNECT_MAX_S) {
		s->reconnect_delay_s = RECONNECT_MAX_S;
	}
}

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags)
{
	struct sim *s = obj;
	(void)mosq;
	if (rc != 0) { /* the library closes the socket; on_disconnect counts it */
		log_line(s, true, "connection refused: %s", mosquitto_connack_string(rc));
		return;
	}
	s->link = LINK_UP;
	s->reconnect_delay_s = 1;
	log_line(s, false, "connected to %s:%d (session present: %s)", s->opt.host, s->opt.port,
	         (flags & 1) ? "yes" : "no");
	tc_on_connect(&s->twin);
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int count, const int *qos)
{
	struct sim *s = obj;
	(void)mosq;
	tc_on_subscribe(&s->twin, mid, count, qos);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
	struct sim *s = obj;
	(void)mosq;
	bool was_up = s->link == LINK_UP; /* else the connect attempt failed */
	if (s->link == LINK_DOWN) {
		return;
	}
	s->link = LINK_DOWN;
	s->telemetry_mid = 0;
	tc_on_disconnect(&s->twin);
	if (rc == 0) {
		log_line(s, false, "disconnected");
		return;
	}
	if (was_up) {
		log_line(s, true, "connection lost%s%s", rc == MOSQ_ERR_CONN_LOST ? "" : ": ",
		         rc == MOSQ_ERR_CONN_LOST ? "" : mosquitto_strerror(rc));
	} else {
		if (rc != MOSQ_ERR_CONN_REFUSED) { /* a refusal was logged by on_connect */
			log_line(s, true, "connection failed: %s", mosquitto_strerror(rc));
		}
		s->failures++;
		if (s->opt.once) {
			return; /* a bounded run stops */
		}
	}
	log_line(s, false, "retry in %d s", s->reconnect_delay_s);
	schedule_reconnect(s);
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid)
{
	struct sim *s = obj;
	(void)mosq;
	if (mid == s->telemetry_mid) {
		s->telemetry_mid = 0;
	}
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg)
{
	struct sim *s = obj;
	(void)mosq;
	if (!tc_on_message(&s->twin, msg)) {
		log_line(s, false, "message on unexpected topic %s: ignored", msg->topic);
	}
}

static void try_connect(struct sim *s)
{
	int rc = s->ever_connected
	                 ? mosquitto_reconnect(s->mosq)
	                 : mosquitto_connect(s->mosq, s->opt.host, s->opt.port, KEEPALIVE_S);
	s->t_reconnect = 0;
	if (rc == MOSQ_ERR_SUCCESS) {
		s->ever_connected = true;
		s->link = LINK_CONNECTING;
		return;
	}
	log_line(s, true, "cannot connect to %s:%d: %s", s->opt.host, s->opt.port,
	         rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
	if (s->opt.once) {
		s->failures++; /* a bounded run stops instead of retrying */
		return;
	}
	log_line(s, false, "retry in %d s", s->reconnect_delay_s);
	schedule_reconnect(s);
}

/* ---- Main loop ------------------------------------------------------------- */

static bool finished(const struct sim *s, int64_t now)
{
	if (stop_requested || (s->t_deadline && now >= s->t_deadline)) {
		return true;
	}
	if (!s->opt.once) {
		return false;
	}
	if (s->failures || s->twin.failures) {
		return true;
	}
	return s->telemetry_sent > 0 && !s->telemetry_mid && !s->fw_target[0] && tc_idle(&s->twin);
}

static void run_timers(struct sim *s, int64_t now)
{
	if (s->link == LINK_DOWN && s->t_reconnect && now >= s->t_reconnect) {
		try_connect(s);
	}
	if (s->t_download && now >= s->t_download) {
		firmware_finish(s);
	}
	tc_run_timers(&s->twin, now);
	if (s->t_telemetry && now >= s->t_telemetry) {
		if (s->twin.ready) {
			send_telemetry(s);
		} else {
			log_line(s, false, "offline: telemetry skipped");
		}
		s->t_last_telemetry = now;
		s->t_telemetry = now + (int64_t)(s->interval_s * 1000);
	}
}

/* Milliseconds until the next timer, at most 500 (so signals are seen soon). */
static int wait_ms(const struct sim *s)
{
	int64_t now = tc_now_ms(), wait = 500;
	int64_t timers[] = {s->t_telemetry, s->t_download, s->twin.t_get_retry, s->t_reconnect,
	                    s->t_deadline};
	for (size_t i = 0; i < sizeof timers / sizeof timers[0]; i++) {
		if (timers[i] && timers[i] - now < wait) {
			wait = timers[i] - now;
		}
	}
	return wait > 0 ? (int)wait : 0;
}

static void run(struct sim *s)
{
	for (int64_t now = tc_now_ms(); !finished(s, now); now = tc_now_ms()) {
		run_timers(s, now);
		if (s->link == LINK_DOWN) {
			usleep((useconds_t)wait_ms(s) * 1000);
			continue;
		}
		int rc = mosquitto_loop(s->mosq, wait_ms(s), 1);
		if (rc != MOSQ_ERR_SUCCESS && s->link != LINK_DOWN) {
			on_disconnect(s->mosq, s, rc); /* lost without the library's callback */
		}
	}
	if (s->link == LINK_DOWN) {
		return;
	}
	mosquitto_disconnect(s->mosq); /* the session stays on the broker (clean session 0) */
	for (int64_t end = tc_now_ms() + 1000; s->link != LINK_DOWN && tc_now_ms() < end;) {
		if (mosquitto_loop(s->mosq, 100, 1) != MOSQ_ERR_SUCCESS) {
			break;
		}
	}
}

/* ---- Options and setup ------------------------------------------------------- */

static void usage(FILE *out)
{
	fputs("usage: twin-device-sim -i DEVICE_ID [-h HOST] [-p PORT] [-u USER] [-P PASSWORD]\n"
	      "         [--tls CAFILE [--cert FILE --key FILE]] [--firmware VERSION]\n"
	      "         [--download-seconds S] [--once | --duration S] [--quiet]\n"
	      "A simulated IoT Hub device: reads its twin, applies the desired telemetryInterval,\n"
	      "threshold and firmwareVersion, reports them, and sends temperature telemetry.\n"
	      "  -h HOST              broker host (127.0.0.1)\n"
	      "  -p PORT              broker port (1883, or 8883 with --tls)\n"
	      "  -i DEVICE_ID         device id, also the MQTT client id (required)\n"
	      "  -u USER              MQTT username (-P alone: HOST/DEVICE_ID/?api-version=..)\n"
	      "  -P PASSWORD          MQTT password, e.g. a SAS token\n"
	      "  --tls CAFILE         TLS, verifying the broker against CAFILE\n"
	      "  --cert/--key FILE    TLS client certificate and key (X.509 devices)\n"
	      "  --firmware VERSION   firmware version the device starts with (1.0.0)\n"
	      "  --download-seconds S simulated firmware download time (2)\n"
	      "  --once               stop once the twin is applied and reported, any firmware\n"
	      "                       update done and one telemetry message acknowledged\n"
	      "  --duration S         stop after S seconds\n"
	      "  --quiet              log errors only\n"
	      "Exit status: 0; 1 when a connection was refused or a twin request failed\n"
	      "(with --once: at the first such failure); 2 on bad usage.\n",
	      out);
}

/* A whole-string decimal number, e.g. "2" or "0.5". */
static bool number_arg(const char *text, double *out)
{
	char *end;
	*out = strtod(text, &end);
	return end != text && *end == '\0';
}

static bool parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
	        {"tls", required_argument, NULL, 't'},
	        {"cert", required_argument, NULL, 'c'},
	        {"key", required_argument, NULL, 'k'},
	        {"firmware", required_argument, NULL, 'f'},
	        {"download-seconds", required_argument, NULL, 'D'},
	        {"duration", required_argument, NULL, 'd'},
	        {"once", no_argument, NULL, 'o'},
	        {"quiet", no_argument, NULL, 'q'},
	        {"help", no_argument, NULL, 'H'},
	        {NULL, 0, NULL, 0},
	};
	double port = 0;
	bool ok = true;
	int c;
	*o = (struct options){.host = "127.0.0.1", .firmware = "1.0.0", .download_s = 2};
	while (ok && (c = getopt_long(argc, argv, "h:p:i:u:P:", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			o->host = optarg;
			break;
		case 'p':
			ok = number_arg(optarg, &port);
			break;
		case 'i':
			o->device_id = optarg;
			break;
		case 'u':
			o->username = optarg;
			break;
		case 'P':
			o->password = optarg;
			break;
		case 't':
			o->cafile = optarg;
			break;
		case 'c':
			o->certfile = optarg;
			break;
		case 'k':
			o->keyfile = optarg;
			break;
		case 'f':
			o->firmware = optarg;
			break;
		case 'D':
			ok = number_arg(optarg, &o->download_s);
			break;
		case 'd':
			ok = number_arg(optarg, &o->duration_s);
			break;
		case 'o':
			o->once = true;
			break;
		case 'q':
			o->quiet = true;
			break;
		case 'H':
			usage(stdout);
			exit(0);
		default:
			ok = false;
		}
	}
	if (port == 0) {
		port = o->cafile ? 8883 : 1883;
	}
	o->port = port >= 1 && port <= 65535 ? (int)port : 0;
	return ok && optind == argc && o->device_id && *o->device_id && o->port == port &&
	       o->download_s >= 0 && o->duration_s >= 0 && strlen(o->firmware) < VERSION_LEN &&
	       !o->certfile == !o->keyfile && (o->cafile || !o->certfile);
}

/* Creates the client and applies the options; false (logged) on failure. */
static bool setup_client(struct sim *s)
{
	const struct options *o = &s->opt;
	char username[512];
	int rc = MOSQ_ERR_SUCCESS;
	s->mosq = mosquitto_new(o->device_id, false, s); /* clean session 0, as the SDKs */
	if (!s->mosq) {
		log_line(s, true, "mosquitto_new: %s", strerror(errno));
		return false;
	}
	mosquitto_int_option(s->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
	mosquitto_int_option(s->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_connect_with_flags_callback_set(s->mosq, on_connect);
	mosquitto_subscribe_callback_set(s->mosq, on_subscribe);
	mosquitto_disconnect_callback_set(s->mosq, on_disconnect);
	mosquitto_publish_callback_set(s->mosq, on_publish);
	mosquitto_message_callback_set(s->mosq, on_message);
	if (o->password && !o->username) { /* IoT Hub's username form, PROTOCOL.md §1.1 */
		snprintf(username, sizeof username, "%s/%s/?api-version=2021-04-12", o->host,
		         o->device_id);
	}
	if (o->username || o->password) {
		rc = mosquitto_username_pw_set(s->mosq, o->username ? o->username : username,
		                               o->password);
	}
	if (rc == MOSQ_ERR_SUCCESS && o->cafile) {
		rc = mosquitto_tls_set(s->mosq, o->cafile, NULL, o->certfile, o->keyfile, NULL);
	}
	if (rc != MOSQ_ERR_SUCCESS) {
		log_line(s, true, "client setup: %s", mosquitto_strerror(rc));
	}
	return rc == MOSQ_ERR_SUCCESS;
}

int main(int argc, char **argv)
{
	struct sim s = {.reconnect_delay_s = 1};
	struct sigaction sa = {.sa_handler = on_signal};
	if (!parse_options(argc, argv, &s.opt)) {
		usage(stderr);
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	s.interval_s = DEFAULT_INTERVAL_S;
	s.threshold = DEFAULT_THRESHOLD;
	snprintf(s.fw_running, sizeof s.fw_running, "%s", s.opt.firmware);
	s.rng = (((uint64_t)time(NULL) * 2654435761u) ^ ((uint64_t)getpid() << 20)) | 1;
	s.temperature = 20 + round(rand_unit(&s.rng) * 500) / 100;
	if (s.opt.duration_s > 0) {
		s.t_deadline = tc_now_ms() + (int64_t)(s.opt.duration_s * 1000);
	}

	mosquitto_lib_init();
	bool ok = setup_client(&s);
	tc_init(&s.twin, s.mosq, &s, log_va, on_desired);
	if (ok) {
		log_line(&s, false, "starting: firmware %s, telemetryInterval %g s, threshold %g",
		         s.fw_running, s.interval_s, s.threshold);
		try_connect(&s);
		run(&s);
	}
	unsigned failures = s.failures + s.twin.failures + !ok;
	log_line(&s, false, "stopped: telemetry messages sent %u, failures %u", s.telemetry_sent,
	         failures);
	tc_free(&s.twin);
	mosquitto_destroy(s.mosq);
	mosquitto_lib_cleanup();
	return failures ? 1 : 0;
}
