/*
 * backend_sample.c - twin-backend-sample, the back-end service of IoT Hub's
 * "Get started with device twins" tutorial (AddTagsAndQuery, desired
 * properties, reading reported state) over mosquitto-twin's control API
 * (the top-level README.md, "The control API"):
 *
 *   1. tag the device: getTwin, then updateTwin with the etag just read;
 *   2. set a desired property, updateTwin with the etag of step 1's result;
 *   3. poll getTwin until the device reports the desired value, or time out.
 *
 * The desired property is telemetryInterval, which twin-device-sim
 * (device_sim.c) applies and reports back, so the two samples run against
 * each other; the tutorial's telemetryConfig.sendFrequency would work alike.
 *
 * A write carries the etag of the twin it was computed from, so a change made
 * by someone else in between is refused with 412 instead of being overwritten.
 * The sample then reads the twin again and retries once, as a service should.
 *
 * Credentials: without a connection string the sample connects anonymously
 * (open mode, the quick start). With a service connection string
 * (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…) it connects as that
 * shared access policy: the policy name is the username, and a SAS token made
 * with twin_sas_make (as tools/twin_token.c does) is the password (sas mode).
 *
 * Shape: one thread, one request at a time. request() publishes a command with
 * a fresh correlationData to $CONTROL/twin/v1 and runs mosquitto_loop() until
 * the response carrying that correlationData arrives on $CONTROL/twin/v1/response.
 * Only the requesting client gets its responses, so the sample needs no
 * filtering beyond that. The control API has no change feed yet, so step 3
 * polls once a second.
 */
#include <cjson/cJSON.h>
#include <mosquitto.h>

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "twin/connstr.h"
#include "twin/sas.h"

#define CONTROL_TOPIC  "$CONTROL/twin/v1"
#define RESPONSE_TOPIC "$CONTROL/twin/v1/response"
#define KEEPALIVE_S    60
#define REPLY_MS       10000 /* the plugin answers at once; silence means it is not there */
#define POLL_MS        1000
#define TOKEN_TTL_S    3600
#define LOG_JSON       1000 /* buffer for JSON shown in a log line */

/* Exit statuses (also in usage() and examples/README.md). */
enum { EXIT_DONE = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_NOT_REPORTED = 3 };

struct options {
	const char *host, *device_id, *connection_string;
	int port;
	double interval_s, timeout_s;
};

struct backend {
	struct options opt;
	struct mosquitto *mosq;
	bool connected;  /* CONNACK accepted */
	bool closed;     /* refused, lost or disconnected: nothing more will arrive */
	bool subscribed; /* SUBACK granted the response topic */
	int sub_mid;
	unsigned long last_id; /* correlationData of the last request, counting up */
	bool got_response;     /* the response to last_id arrived: it is in `response` */
	cJSON *response;       /* owned */
};

/* ---- Small helpers ---------------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* p, or exit with "out of memory": this is sample code. */
static void *must(void *p)
{
	if (!p) {
		fputs("out of memory\n", stderr);
		exit(EXIT_FAILED);
	}
	return p;
}

/* One line on stdout, "HH:MM:SS.mmm [ERROR ]text". */
static void say(bool error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(bool error, const char *fmt, ...)
{
	struct timespec ts;
	struct tm tm;
	char stamp[16];
	va_list ap;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
	printf("%s.%03ld %s", stamp, ts.tv_nsec / 1000000, error ? "ERROR " : "");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* Compact JSON of item in buf ("null" for NULL). */
static const char *json_text(const cJSON *item, char *buf, int len)
{
	if (!item) {
		snprintf(buf, (size_t)len, "null");
	} else if (!cJSON_PrintPreallocated((cJSON *)item, buf, len, false)) {
		snprintf(buf, (size_t)len, "(too long to show)");
	}
	return buf;
}

/* twin.properties.<section>, or NULL. */
static const cJSON *twin_section(const cJSON *twin, const char *section)
{
	const cJSON *props = cJSON_GetObjectItemCaseSensitive(twin, "properties");
	return cJSON_GetObjectItemCaseSensitive(props, section);
}

/* $version of twin.properties.<section>, or -1. */
static long section_version(const cJSON *twin, const char *section)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(twin_section(twin, section), "$version");
	return cJSON_IsNumber(v) ? (long)v->valuedouble : -1;
}

/* The twin's etag; "*" (any: an unconditional write) for a twin without one, which
 * the plugin never returns. */
static const char *twin_etag(const cJSON *twin)
{
	const char *etag = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(twin, "etag"));
	return etag ? etag : "*";
}

/* ---- Connection ------------------------------------------------------------- */

static void on_connect(struct mosquitto *mosq, void *obj, int rc)
{
	struct backend *b = obj;
	(void)mosq;
	if (rc != 0) {
		say(true, "connection refused: %s", mosquitto_connack_string(rc));
		b->closed = true;
		return;
	}
	b->connected = true;
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
	struct backend *b = obj;
	(void)mosq;
	if (b->connected && !b->closed && rc != 0) {
		say(true, "connection lost: %s", mosquitto_strerror(rc));
	}
	b->closed = true;
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int count, const int *qos)
{
	struct backend *b = obj;
	(void)mosq;
	if (mid != b->sub_mid) {
		return;
	}
	if (count != 1 || qos[0] > 1) { /* 0x80: refused, responses would never arrive */
		say(true, "subscription to %s refused", RESPONSE_TOPIC);
		b->closed = true;
		return;
	}
	b->subscribed = true;
}

/* Keeps the response whose correlationData is that of the request in flight. */
static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *msg)
{
	struct backend *b = obj;
	char id[24];
	const cJSON *r;
	(void)mosq;
	if (strcmp(msg->topic, RESPONSE_TOPIC) != 0) {
		return;
	}
	snprintf(id, sizeof id, "%lu", b->last_id);
	cJSON *body = cJSON_ParseWithLength(msg->payload, (size_t)msg->payloadlen);
	cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(body, "responses"))
	{
		const char *corr = cJSON_GetStringValue(
		        cJSON_GetObjectItemCaseSensitive(r, "correlationData"));
		if (!b->got_response && corr && strcmp(corr, id) == 0) {
			b->response = must(cJSON_Duplicate(r, true));
			b->got_response = true;
		}
	}
	cJSON_Delete(body);
}

/* Runs the network loop until *done, the connection closes, or deadline; returns *done. */
static bool wait_for(struct backend *b, const bool *done, int64_t deadline)
{
	for (int64_t now = now_ms(); !*done && !b->closed && now < deadline; now = now_ms()) {
		int64_t wait = deadline - now < 100 ? deadline - now : 100;
		int rc = mosquitto_loop(b->mosq, (int)wait, 1);
		if (rc != MOSQ_ERR_SUCCESS && !b->closed) {
			on_disconnect(b->mosq, b, rc); /* lost without the library's callback */
		}
	}
	return *done;
}

/* Username and SAS token from the service connection string; false (said) if unusable. */
static bool set_credentials(struct backend *b)
{
	twin_connstr cs;
	twin_error err;
	char *token = NULL;
	if (twin_connstr_parse(b->opt.connection_string, &cs, &err) != TWIN_OK) {
		say(true, "bad connection string: %s", err.message);
		return false;
	}
	if (cs.device_id[0]) {
		say(true, "that is a device connection string; a back end needs a service one "
		          "(HostName=…;SharedAccessKeyName=…;SharedAccessKey=…)");
		return false;
	}
	if (twin_sas_make(cs.host_name, cs.key, cs.key_name, (int64_t)time(NULL) + TOKEN_TTL_S,
	                  &token, &err) != TWIN_OK) {
		say(true, "cannot make the SAS token: %s", err.message);
		return false;
	}
	int rc = mosquitto_username_pw_set(b->mosq, cs.key_name, token);
	free(token);
	if (rc != MOSQ_ERR_SUCCESS) {
		say(true, "mosquitto_username_pw_set: %s", mosquitto_strerror(rc));
		return false;
	}
	say(false, "sas mode: policy %s of hub %s, token valid %d s", cs.key_name, cs.host_name,
	    TOKEN_TTL_S);
	return true;
}

/* Creates the client, connects and subscribes to the responses; false (said) on failure. */
static bool connect_backend(struct backend *b)
{
	char client_id[64];
	snprintf(client_id, sizeof client_id, "twin-backend-sample-%ld", (long)getpid());
	b->mosq = must(mosquitto_new(client_id, true, b));
	mosquitto_int_option(b->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
	/* Requests follow responses: without it each waits out a delayed ACK. */
	mosquitto_int_option(b->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_connect_callback_set(b->mosq, on_connect);
	mosquitto_disconnect_callback_set(b->mosq, on_disconnect);
	mosquitto_subscribe_callback_set(b->mosq, on_subscribe);
	mosquitto_message_callback_set(b->mosq, on_message);
	if (b->opt.connection_string) {
		if (!set_credentials(b)) {
			return false;
		}
	} else {
		say(false, "open mode: connecting anonymously (no connection string given)");
	}
	int rc = mosquitto_connect(b->mosq, b->opt.host, b->opt.port, KEEPALIVE_S);
	if (rc != MOSQ_ERR_SUCCESS) {
		say(true, "cannot connect to %s:%d: %s", b->opt.host, b->opt.port,
		    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
		return false;
	}
	if (!wait_for(b, &b->connected, now_ms() + REPLY_MS)) {
		if (!b->closed) {
			say(true, "no CONNACK from %s:%d within %d s", b->opt.host, b->opt.port,
			    REPLY_MS / 1000);
		}
		return false;
	}
	say(false, "connected to %s:%d as %s", b->opt.host, b->opt.port, client_id);
	rc = mosquitto_subscribe(b->mosq, &b->sub_mid, RESPONSE_TOPIC, 1);
	if (rc != MOSQ_ERR_SUCCESS || !wait_for(b, &b->subscribed, now_ms() + REPLY_MS)) {
		if (!b->closed) {
			say(true, "subscribing to %s failed", RESPONSE_TOPIC);
		}
		return false;
	}
	say(false, "subscribed to %s", RESPONSE_TOPIC);
	return true;
}

/* ---- Control API requests ---------------------------------------------------- */

/* {"command":name,"deviceId":device_id}; the caller owns it. */
static cJSON *new_command(const char *name, const char *device_id)
{
	cJSON *cmd = must(cJSON_CreateObject());
	must(cJSON_AddStringToObject(cmd, "command", name));
	must(cJSON_AddStringToObject(cmd, "deviceId", device_id));
	return cmd;
}

/*
 * Sends cmd (taken over) as a request of one command and waits for its
 * response. Returns its "data" on a 2xx status (caller owns; an empty object
 * for 204), else NULL. *status is the response's status, 0 when none came.
 * A failed response is shown as "<- STATUS (CODE) MESSAGE", as an ERROR line
 * unless its status is `expected`, one the caller handles (0: none).
 */
static cJSON *request(struct backend *b, cJSON *cmd, int expected, int *status)
{
	char id[24];
	snprintf(id, sizeof id, "%lu", ++b->last_id);
	must(cJSON_AddStringToObject(cmd, "correlationData", id));
	cJSON *body = must(cJSON_CreateObject());
	cJSON_AddItemToArray(must(cJSON_AddArrayToObject(body, "commands")), cmd);
	char *text = must(cJSON_PrintUnformatted(body));
	cJSON_Delete(body);
	b->got_response = false;
	*status = 0;
	int rc = mosquitto_publish(b->mosq, NULL, CONTROL_TOPIC, (int)strlen(text), text, 1, false);
	free(text);
	if (rc != MOSQ_ERR_SUCCESS) {
		say(true, "publish to %s failed: %s", CONTROL_TOPIC, mosquitto_strerror(rc));
		return NULL;
	}
	if (!wait_for(b, &b->got_response, now_ms() + REPLY_MS)) {
		if (!b->closed) {
			say(true, "no response within %d s: is the mosquitto-twin plugin loaded?",
			    REPLY_MS / 1000);
		}
		return NULL;
	}
	cJSON *response = b->response;
	b->response = NULL;
	const cJSON *st = cJSON_GetObjectItemCaseSensitive(response, "status");
	*status = cJSON_IsNumber(st) ? (int)st->valuedouble : 0;
	cJSON *data = NULL;
	if (*status >= 200 && *status < 300) {
		data = cJSON_DetachItemFromObjectCaseSensitive(response, "data");
		data = data ? data : must(cJSON_CreateObject());
	} else {
		const cJSON *error = cJSON_GetObjectItemCaseSensitive(response, "error");
		say(*status != expected, "<- %d (%g) %s", *status,
		    cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(error, "code")),
		    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(error, "message")));
	}
	cJSON_Delete(response);
	return data;
}

/* "<- 200 etag …, tags …, desired $version …, reported $version …". */
static void show_twin(const cJSON *twin)
{
	char tags[LOG_JSON];
	say(false, "<- 200 etag %s, tags %s, desired $version %ld, reported $version %ld",
	    twin_etag(twin),
	    json_text(cJSON_GetObjectItemCaseSensitive(twin, "tags"), tags, sizeof tags),
	    section_version(twin, "desired"), section_version(twin, "reported"));
}

/* getTwin; the twin (caller owns) or NULL. show: print the request and a summary. */
static cJSON *get_twin(struct backend *b, bool show, int expected, int *status)
{
	if (show) {
		say(false, "-> getTwin %s", b->opt.device_id);
	}
	cJSON *twin = request(b, new_command("getTwin", b->opt.device_id), expected, status);
	if (twin && show) {
		show_twin(twin);
	}
	return twin;
}

/* getTwin, registering the device first if it does not exist yet (404). */
static cJSON *read_or_create_twin(struct backend *b)
{
	int status;
	cJSON *twin = get_twin(b, true, 404, &status);
	if (twin || status != 404) {
		return twin;
	}
	say(false, "-> createDevice %s (not registered yet)", b->opt.device_id);
	cJSON *device = request(b, new_command("createDevice", b->opt.device_id), 409, &status);
	if (!device && status != 409) {
		return NULL;
	}
	if (device) { /* else 409: registered meanwhile (open mode: its first connect) */
		say(false, "<- 200 device %s created", b->opt.device_id);
		cJSON_Delete(device);
	}
	return get_twin(b, true, 0, &status);
}

/*
 * updateTwin with patch (borrowed) and the etag of *twin. On success *twin is
 * replaced by the updated twin. On 412 (someone changed the twin since *twin
 * was read) the twin is read again and the update retried once.
 */
static bool update_twin(struct backend *b, cJSON **twin, const cJSON *patch)
{
	char text[LOG_JSON];
	int status;
	for (int attempt = 1;; attempt++) {
		cJSON *cmd = new_command("updateTwin", b->opt.device_id);
		cJSON_AddItemToObject(cmd, "twin", must(cJSON_Duplicate(patch, true)));
		must(cJSON_AddStringToObject(cmd, "etag", twin_etag(*twin)));
		say(false, "-> updateTwin %s %s with etag %s", b->opt.device_id,
		    json_text(patch, text, sizeof text), twin_etag(*twin));
		cJSON *updated = request(b, cmd, attempt == 1 ? 412 : 0, &status);
		if (!updated && status == 412 && attempt == 1) {
			say(false, "the twin changed since it was read: read it again and retry");
			updated = get_twin(b, true, 0, &status);
			if (!updated) {
				return false;
			}
			cJSON_Delete(*twin);
			*twin = updated;
			continue;
		}
		if (updated) {
			cJSON_Delete(*twin);
			*twin = updated;
			show_twin(*twin);
		}
		return updated != NULL;
	}
}

/* ---- The three steps ---------------------------------------------------------- */

/* Step 1: tags, as the tutorial's AddTagsAndQuery. */
static bool add_tags(struct backend *b, cJSON **twin)
{
	cJSON *patch = must(cJSON_Parse("{\"tags\":{\"location\":"
	                                "{\"region\":\"US\",\"plant\":\"Redmond43\"}}}"));
	bool ok = update_twin(b, twin, patch);
	cJSON_Delete(patch);
	return ok;
}

/* Step 2: desired telemetryInterval; the device gets it as a desired patch. */
static bool set_desired(struct backend *b, cJSON **twin)
{
	cJSON *patch = must(cJSON_Parse("{\"properties\":{\"desired\":{}}}"));
	cJSON *desired = cJSON_GetObjectItemCaseSensitive(
	        cJSON_GetObjectItemCaseSensitive(patch, "properties"), "desired");
	must(cJSON_AddNumberToObject(desired, "telemetryInterval", b->opt.interval_s));
	bool ok = update_twin(b, twin, patch);
	cJSON_Delete(patch);
	return ok;
}

/*
 * Step 3: read the reported properties until the device has applied the
 * desired value, printing them (without $metadata) whenever their $version
 * changes. EXIT_DONE, EXIT_NOT_REPORTED at the timeout, or EXIT_FAILED.
 */
static int await_reported(struct backend *b)
{
	char text[LOG_JSON];
	int64_t deadline = now_ms() + (int64_t)(b->opt.timeout_s * 1000);
	long shown = -1;
	int status;
	bool never = false;
	say(false,
	    "-> getTwin %s every %d s for up to %g s, until reported telemetryInterval is %g",
	    b->opt.device_id, POLL_MS / 1000, b->opt.timeout_s, b->opt.interval_s);
	for (;;) {
		cJSON *twin = get_twin(b, false, 0, &status);
		if (!twin) {
			return EXIT_FAILED;
		}
		cJSON *reported = cJSON_Duplicate(twin_section(twin, "reported"), true);
		cJSON_DeleteItemFromObjectCaseSensitive(reported, "$metadata");
		long version = section_version(twin, "reported");
		const cJSON *interval =
		        cJSON_GetObjectItemCaseSensitive(reported, "telemetryInterval");
		bool matches =
		        cJSON_IsNumber(interval) && interval->valuedouble == b->opt.interval_s;
		cJSON_Delete(twin);
		if (version != shown) {
			say(false, "<- reported %s", json_text(reported, text, sizeof text));
			shown = version;
		}
		cJSON_Delete(reported);
		if (matches) {
			say(false, "the device reports telemetryInterval %g: desired state reached",
			    b->opt.interval_s);
			return EXIT_DONE;
		}
		if (now_ms() >= deadline) {
			say(true, "the device has not reported telemetryInterval %g within %g s",
			    b->opt.interval_s, b->opt.timeout_s);
			return EXIT_NOT_REPORTED;
		}
		int64_t next = now_ms() + POLL_MS;
		if (wait_for(b, &never, next < deadline ? next : deadline) || b->closed) {
			return EXIT_FAILED; /* the connection closed, said by on_disconnect */
		}
	}
}

/* ---- Options and main ------------------------------------------------------------ */

static void usage(FILE *out)
{
	fputs("usage: twin-backend-sample -i DEVICE_ID [-h HOST] [-p PORT] [-c CONNECTION_STRING]\n"
	      "         [--interval S] [--timeout S]\n"
	      "The back end of IoT Hub's device twin tutorial over the mosquitto-twin control\n"
	      "API: tag the device, set its desired telemetryInterval, and wait until\n"
	      "the device reports it.\n"
	      "  -h HOST               broker host (127.0.0.1)\n"
	      "  -p PORT               broker port (1883)\n"
	      "  -i DEVICE_ID          the device (created if not registered yet)\n"
	      "  -c CONNECTION_STRING  service connection string for sas mode\n"
	      "                        (HostName=…;SharedAccessKeyName=…;SharedAccessKey=…);\n"
	      "                        default $TWIN_CONNECTION_STRING; none: anonymous\n"
	      "  --interval S          desired telemetryInterval, seconds, 0 < S <= 86400 (5)\n"
	      "  --timeout S           seconds to wait for the reported value, at most 86400\n"
	      "                        (30; 0: read it once)\n"
	      "Exit status: 0 the device reported the desired value; 1 a connection or request\n"
	      "failed; 2 bad usage; 3 the device did not report it within --timeout.\n",
	      out);
}

static bool parse_options(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
	        {"interval", required_argument, NULL, 'I'},
	        {"timeout", required_argument, NULL, 't'},
	        {"help", no_argument, NULL, 'H'},
	        {NULL, 0, NULL, 0},
	};
	char *end = "";
	long port = 1883;
	bool ok = true;
	int c;
	*o = (struct options){.host = "127.0.0.1", .interval_s = 5, .timeout_s = 30};
	o->connection_string = getenv("TWIN_CONNECTION_STRING");
	while (ok && (c = getopt_long(argc, argv, "h:p:i:c:", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			o->host = optarg;
			break;
		case 'p':
			port = strtol(optarg, &end, 10);
			ok = *optarg && !*end;
			break;
		case 'i':
			o->device_id = optarg;
			break;
		case 'c':
			o->connection_string = optarg;
			break;
		case 'I':
			o->interval_s = strtod(optarg, &end);
			ok = *optarg && !*end && o->interval_s > 0 && o->interval_s <= 86400;
			break;
		case 't':
			o->timeout_s = strtod(optarg, &end);
			ok = *optarg && !*end && o->timeout_s >= 0 && o->timeout_s <= 86400;
			break;
		case 'H':
			usage(stdout);
			exit(EXIT_DONE);
		default:
			ok = false;
		}
	}
	o->port = (int)port;
	if (o->connection_string && !*o->connection_string) {
		o->connection_string = NULL;
	}
	return ok && optind == argc && o->device_id && *o->device_id && port >= 1 && port <= 65535;
}

static int run(struct backend *b)
{
	cJSON *twin = NULL;
	int status = EXIT_FAILED;
	if (!connect_backend(b)) {
		goto out;
	}
	say(false, "step 1: tag device %s", b->opt.device_id);
	if (!(twin = read_or_create_twin(b)) || !add_tags(b, &twin)) {
		goto out;
	}
	say(false, "step 2: set desired telemetryInterval %g", b->opt.interval_s);
	if (!set_desired(b, &twin)) {
		goto out;
	}
	say(false, "step 3: read the reported state");
	status = await_reported(b);
out:
	cJSON_Delete(twin);
	if (b->connected && !b->closed) {
		mosquitto_disconnect(b->mosq);
		bool never = false;
		wait_for(b, &never, now_ms() + 1000); /* until the DISCONNECT is out */
	}
	return status;
}

int main(int argc, char **argv)
{
	struct backend b = {0};
	if (!parse_options(argc, argv, &b.opt)) {
		usage(stderr);
		return EXIT_USAGE;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	mosquitto_lib_init();
	int status = run(&b);
	say(false, "%s (exit status %d)", status == EXIT_DONE ? "done" : "stopped", status);
	cJSON_Delete(b.response);
	mosquitto_destroy(b.mosq);
	mosquitto_lib_cleanup();
	return status;
}
