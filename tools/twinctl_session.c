/*
 * twinctl_session.c - one MQTT v5 connection to the broker that sends
 * control API commands and waits for their responses.
 *
 * libmosquitto runs without its thread: every wait is a loop of
 * mosquitto_loop() calls until a callback has recorded what we wait for or
 * the --timeout passes, so the program is single-threaded and a broker that
 * never answers costs exactly --timeout seconds. Each wait is one of three
 * states (CONNACK, SUBACK, the response); callbacks only record, and the
 * waiting function decides what the record means.
 *
 * A request carries a response topic and correlation data (MQTT v5
 * properties) AND a correlationData member in the command JSON, unique per
 * request; a message on the response topic is our response if either
 * matches. The plugin sends responses only to the requesting client, so the
 * double match only guards against a broker that ignores the v5 properties
 * or a stray message. Back ends may always subscribe to the response topic
 * (README "Topics and isolation"), whichever authentication mode is used.
 *
 * `twinctl events --follow` also subscribes to the event stream: messages
 * on any topic but the response topic go to a hook the caller sets
 * (twinctl_session_on_message), from whichever wait is running, so events
 * that arrive while a getChanges request is in flight are not lost.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "twin/sas.h"
#include "twinctl.h"

#define CONTROL_TOPIC  "$CONTROL/twin/v1"
#define RESPONSE_TOPIC "$CONTROL/twin/v1/response"
#define KEEPALIVE      60
#define TOKEN_TTL      3600 /* s; the connection lives for one command line */
#define CORR_MAX       48

struct twinctl_session {
	struct mosquitto *mosq;
	const twinctl_conf *conf;
	char where[TWIN_HOST_MAX + 16]; /* "host:port", for messages */
	char run_id[33];                /* random hex, the prefix of every correlation */
	unsigned long seq;
	char corr[CORR_MAX]; /* the correlation of the request in flight */
	int connack;         /* CONNACK reason code; -1 until it arrives */
	int sub_mid;
	int suback;         /* SUBACK reason code; -1 until it arrives */
	int puback;         /* PUBACK reason code of the request in flight; -1 until then */
	int lost;           /* the broker closed the connection */
	cJSON *reply;       /* the matching response object, owned; NULL until then */
	char last_log[256]; /* libmosquitto's last error log line (TLS details) */
	twinctl_message_fn on_other; /* messages on other topics; NULL: dropped */
	void *on_other_arg;
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- callbacks: record only ---- */

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags,
                       const mosquitto_property *props)
{
	twinctl_session *s = obj;

	(void)mosq, (void)flags, (void)props;
	s->connack = rc;
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int count, const int *granted,
                         const mosquitto_property *props)
{
	twinctl_session *s = obj;

	(void)mosq, (void)props;
	if (mid == s->sub_mid)
		s->suback = count > 0 ? granted[0] : MQTT_RC_UNSPECIFIED;
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int reason,
                       const mosquitto_property *props)
{
	twinctl_session *s = obj;

	(void)mosq, (void)mid, (void)props;
	s->puback = reason;
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc,
                          const mosquitto_property *props)
{
	twinctl_session *s = obj;

	(void)mosq, (void)rc, (void)props;
	s->lost = 1;
}

static void on_log(struct mosquitto *mosq, void *obj, int level, const char *line)
{
	twinctl_session *s = obj;

	(void)mosq;
	if (level == MOSQ_LOG_ERR)
		snprintf(s->last_log, sizeof(s->last_log), "%s", line);
}

/* Non-zero if response r of a message answers the request in flight: its
 * correlationData is ours, or it has neither command nor correlationData
 * (a whole-request error) and the v5 correlation data was ours or absent. */
static int is_ours(const twinctl_session *s, const cJSON *r, int prop_match, int prop_present)
{
	const cJSON *corr = cJSON_GetObjectItemCaseSensitive(r, "correlationData");

	if (cJSON_IsString(corr))
		return strcmp(corr->valuestring, s->corr) == 0;
	if (corr == NULL && cJSON_GetObjectItemCaseSensitive(r, "command") == NULL)
		return prop_match || !prop_present;
	return prop_match;
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *m,
                       const mosquitto_property *props)
{
	twinctl_session *s = obj;
	void *cd = NULL;
	uint16_t cd_len = 0;
	int prop_present, prop_match;
	cJSON *body, *responses, *r;

	(void)mosq;
	if (strcmp(m->topic, RESPONSE_TOPIC) != 0) {
		if (s->on_other != NULL)
			s->on_other(s->on_other_arg, m, props);
		return;
	}
	if (s->reply != NULL || s->corr[0] == '\0')
		return;
	prop_present = mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &cd,
	                                              &cd_len, false) != NULL;
	prop_match = prop_present && cd_len == strlen(s->corr) && memcmp(cd, s->corr, cd_len) == 0;
	free(cd);
	body = cJSON_ParseWithLength(m->payload, (size_t)m->payloadlen);
	responses = cJSON_GetObjectItemCaseSensitive(body, "responses");
	r = cJSON_IsArray(responses) ? responses->child : NULL;
	if (cJSON_IsObject(r) && is_ours(s, r, prop_match, prop_present))
		s->reply = cJSON_DetachItemViaPointer(responses, r);
	cJSON_Delete(body);
}

/* ---- waiting ---- */

static int wait_connack(const twinctl_session *s)
{
	return s->connack >= 0;
}

static int wait_suback(const twinctl_session *s)
{
	return s->suback >= 0;
}

static int wait_reply(const twinctl_session *s)
{
	return s->reply != NULL || s->puback >= 0x80;
}

/* Run the network loop until done(s), for at most --timeout seconds.
 * TWINCTL_EXIT_OK, or TWINCTL_EXIT_CONN with the reason printed. */
static int pump(twinctl_session *s, int (*done)(const twinctl_session *), const char *what)
{
	long long deadline = now_ms() + s->conf->timeout * 1000LL, left;
	int rc;

	while (!done(s)) {
		left = deadline - now_ms();
		if (left <= 0) {
			fprintf(stderr, "twinctl: no %s from %s within %d s.\n", what, s->where,
			        s->conf->timeout);
			return TWINCTL_EXIT_CONN;
		}
		rc = mosquitto_loop(s->mosq, left > 1000 ? 1000 : (int)left, 1);
		if (done(s))
			break;
		if (rc != MOSQ_ERR_SUCCESS || s->lost) {
			fprintf(stderr, "twinctl: connection to %s lost while waiting for %s: %s\n",
			        s->where, what,
			        s->last_log[0] ? s->last_log
			                       : mosquitto_strerror(rc ? rc : MOSQ_ERR_CONN_LOST));
			return TWINCTL_EXIT_CONN;
		}
	}
	return TWINCTL_EXIT_OK;
}

/* ---- connecting ---- */

/* The blocking connect (TCP and TLS handshake) has no timeout of its own:
 * SIGALRM ends the process when --timeout passes. */
static void connect_timed_out(int sig)
{
	static const char msg[] = "twinctl: timed out connecting to the broker.\n";

	ssize_t n = write(STDERR_FILENO, msg, sizeof(msg) - 1);

	(void)sig, (void)n; /* nothing to do if stderr is gone */
	_exit(TWINCTL_EXIT_CONN);
}

/* The policy's username and SAS token from the connection string. */
static int set_credentials(twinctl_session *s)
{
	const twin_connstr *cs = &s->conf->connstr;
	char *token = NULL;
	twin_error err;
	int rc;

	if (!cs->host_name[0])
		return TWINCTL_EXIT_OK; /* anonymous: open mode */
	if (twin_sas_make(cs->host_name, cs->key, cs->key_name, (int64_t)time(NULL) + TOKEN_TTL,
	                  &token, &err) != TWIN_OK) {
		fprintf(stderr, "twinctl: cannot make a SAS token: %s\n", err.message);
		return TWINCTL_EXIT_USAGE;
	}
	rc = mosquitto_username_pw_set(s->mosq, cs->key_name, token);
	free(token);
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "twinctl: %s\n", mosquitto_strerror(rc));
		return TWINCTL_EXIT_USAGE;
	}
	return TWINCTL_EXIT_OK;
}

static int set_tls(twinctl_session *s)
{
	const twinctl_conf *c = s->conf;
	int rc = MOSQ_ERR_SUCCESS;

	if (!twinctl_tls(c))
		return TWINCTL_EXIT_OK;
	if (c->cafile == NULL)
		rc = mosquitto_int_option(s->mosq, MOSQ_OPT_TLS_USE_OS_CERTS, 1);
	if (rc == MOSQ_ERR_SUCCESS)
		rc = mosquitto_tls_set(s->mosq, c->cafile, NULL, c->cert, c->key, NULL);
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "twinctl: TLS settings refused: %s%s%s\n", mosquitto_strerror(rc),
		        s->last_log[0] ? ": " : "", s->last_log);
		return rc == MOSQ_ERR_INVAL ? TWINCTL_EXIT_USAGE : TWINCTL_EXIT_CONN;
	}
	return TWINCTL_EXIT_OK;
}

/* A fresh libmosquitto client with callbacks, credentials and TLS. */
static int create_client(twinctl_session *s)
{
	char id[32];
	const char *client_id = s->conf->client_id;
	unsigned char rnd[16];
	int rc;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		fprintf(stderr, "twinctl: no random bytes: %s\n", strerror(errno));
		return TWINCTL_EXIT_CONN;
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(s->run_id + 2 * i, 3, "%02x", rnd[i]);
	if (client_id == NULL) {
		snprintf(id, sizeof(id), "twinctl/%ld", (long)getpid());
		client_id = id;
	}
	s->mosq = mosquitto_new(client_id, true, s);
	if (s->mosq == NULL) {
		fprintf(stderr, "twinctl: cannot create the MQTT client: %s\n", strerror(errno));
		return TWINCTL_EXIT_CONN;
	}
	mosquitto_int_option(s->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
	/* Requests follow responses: without it each waits out a delayed ACK. */
	mosquitto_int_option(s->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_connect_v5_callback_set(s->mosq, on_connect);
	mosquitto_subscribe_v5_callback_set(s->mosq, on_subscribe);
	mosquitto_publish_v5_callback_set(s->mosq, on_publish);
	mosquitto_message_v5_callback_set(s->mosq, on_message);
	mosquitto_disconnect_v5_callback_set(s->mosq, on_disconnect);
	mosquitto_log_callback_set(s->mosq, on_log);
	rc = set_credentials(s);
	return rc == TWINCTL_EXIT_OK ? set_tls(s) : rc;
}

/* TCP (and TLS) connect, then CONNACK. */
static int connect_broker(twinctl_session *s)
{
	const twinctl_conf *c = s->conf;
	int port = c->port ? c->port : twinctl_tls(c) ? 8883 : 1883;
	int rc;

	snprintf(s->where, sizeof(s->where), "%s:%d", twinctl_host(c), port);
	signal(SIGALRM, connect_timed_out);
	alarm((unsigned)c->timeout);
	rc = mosquitto_connect(s->mosq, twinctl_host(c), port, KEEPALIVE);
	alarm(0);
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "twinctl: cannot connect to %s: %s%s%s\n", s->where,
		        rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc),
		        s->last_log[0] ? ": " : "", s->last_log);
		return TWINCTL_EXIT_CONN;
	}
	rc = pump(s, wait_connack, "CONNACK");
	if (rc != TWINCTL_EXIT_OK || s->connack == 0)
		return rc;
	fprintf(stderr, "twinctl: %s refused the connection: %s.\n", s->where,
	        mosquitto_reason_string(s->connack));
	return s->connack == MQTT_RC_NOT_AUTHORIZED ||
	                       s->connack == MQTT_RC_BAD_USERNAME_OR_PASSWORD ||
	                       s->connack == MQTT_RC_BAD_AUTHENTICATION_METHOD
	               ? TWINCTL_EXIT_AUTH
	               : TWINCTL_EXIT_CONN;
}

int twinctl_session_subscribe(twinctl_session *s, const char *topic, int *reason)
{
	int rc;

	s->suback = -1;
	rc = mosquitto_subscribe_v5(s->mosq, &s->sub_mid, topic, 1, 0, NULL);
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "twinctl: cannot subscribe to %s: %s\n", topic,
		        mosquitto_strerror(rc));
		return TWINCTL_EXIT_CONN;
	}
	rc = pump(s, wait_suback, "SUBACK");
	*reason = s->suback;
	return rc;
}

const char *twinctl_session_where(const twinctl_session *s)
{
	return s->where;
}

static int subscribe_responses(twinctl_session *s)
{
	int reason, rc = twinctl_session_subscribe(s, RESPONSE_TOPIC, &reason);

	if (rc != TWINCTL_EXIT_OK || reason < 0x80)
		return rc;
	fprintf(stderr, "twinctl: %s refused the subscription to %s: %s.\n", s->where,
	        RESPONSE_TOPIC, mosquitto_reason_string(reason));
	return reason == MQTT_RC_NOT_AUTHORIZED ? TWINCTL_EXIT_AUTH : TWINCTL_EXIT_CONN;
}

int twinctl_session_open(const twinctl_conf *conf, twinctl_session **out)
{
	twinctl_session *s = calloc(1, sizeof(*s));
	int rc;

	*out = NULL;
	if (s == NULL) {
		fprintf(stderr, "twinctl: out of memory.\n");
		return TWINCTL_EXIT_CONN;
	}
	s->conf = conf;
	s->connack = s->suback = s->puback = -1;
	rc = create_client(s);
	if (rc == TWINCTL_EXIT_OK)
		rc = connect_broker(s);
	if (rc == TWINCTL_EXIT_OK)
		rc = subscribe_responses(s);
	if (rc != TWINCTL_EXIT_OK) {
		twinctl_session_close(s);
		return rc;
	}
	*out = s;
	return TWINCTL_EXIT_OK;
}

/* ---- requests ---- */

/* Publish {"commands":[cmd]} with a fresh correlation. */
static int send_request(twinctl_session *s, cJSON *cmd)
{
	mosquitto_property *props = NULL;
	cJSON *req = cJSON_CreateObject(), *cmds = cJSON_AddArrayToObject(req, "commands");
	char *text = NULL;
	int rc = MOSQ_ERR_NOMEM;

	snprintf(s->corr, sizeof(s->corr), "%s.%lu", s->run_id, ++s->seq);
	cJSON_DeleteItemFromObjectCaseSensitive(cmd, "correlationData");
	if (cmds == NULL || cJSON_AddStringToObject(cmd, "correlationData", s->corr) == NULL ||
	    !cJSON_AddItemReferenceToArray(cmds, cmd) ||
	    (text = cJSON_PrintUnformatted(req)) == NULL)
		goto out;
	rc = mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, RESPONSE_TOPIC);
	if (rc == MOSQ_ERR_SUCCESS)
		rc = mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, s->corr,
		                                   (uint16_t)strlen(s->corr));
	if (rc == MOSQ_ERR_SUCCESS)
		rc = mosquitto_publish_v5(s->mosq, NULL, CONTROL_TOPIC, (int)strlen(text), text, 1,
		                          false, props);
out:
	mosquitto_property_free_all(&props);
	free(text);
	cJSON_Delete(req); /* cmd was added by reference: still the caller's */
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "twinctl: cannot send the request: %s\n", mosquitto_strerror(rc));
		return TWINCTL_EXIT_CONN;
	}
	return TWINCTL_EXIT_OK;
}

/* The exit code for a response r; prints its error. On 200 *data is
 * detached from r. */
static int read_reply(cJSON *r, cJSON **data)
{
	const cJSON *status = cJSON_GetObjectItemCaseSensitive(r, "status");
	const cJSON *error = cJSON_GetObjectItemCaseSensitive(r, "error");
	const cJSON *code = cJSON_GetObjectItemCaseSensitive(error, "code");
	const cJSON *message = cJSON_GetObjectItemCaseSensitive(error, "message");
	int st = cJSON_IsNumber(status) ? status->valueint : 0;

	if (st == 204)
		return TWINCTL_EXIT_OK;
	if (st == 200) {
		*data = cJSON_DetachItemFromObjectCaseSensitive(r, "data");
		return TWINCTL_EXIT_OK;
	}
	if (st == 0) {
		fprintf(stderr, "twinctl: malformed response: no status.\n");
		return TWINCTL_EXIT_API;
	}
	fprintf(stderr, "twinctl: %d %.0f: %s\n", st,
	        cJSON_IsNumber(code) ? code->valuedouble : 0.0,
	        cJSON_IsString(message) ? message->valuestring : "(no message)");
	return st == 401 ? TWINCTL_EXIT_AUTH : TWINCTL_EXIT_API;
}

int twinctl_session_call(twinctl_session *s, cJSON *cmd, cJSON **data)
{
	int rc;

	*data = NULL;
	cJSON_Delete(s->reply);
	s->reply = NULL;
	s->puback = -1;
	rc = send_request(s, cmd);
	if (rc == TWINCTL_EXIT_OK)
		rc = pump(s, wait_reply, "response");
	if (rc == TWINCTL_EXIT_OK && s->reply == NULL) {
		fprintf(stderr, "twinctl: %s refused the request: %s.\n", s->where,
		        mosquitto_reason_string(s->puback));
		rc = s->puback == MQTT_RC_NOT_AUTHORIZED ? TWINCTL_EXIT_AUTH : TWINCTL_EXIT_CONN;
	}
	if (rc == TWINCTL_EXIT_OK)
		rc = read_reply(s->reply, data);
	s->corr[0] = '\0';
	return rc;
}

void twinctl_session_on_message(twinctl_session *s, twinctl_message_fn fn, void *arg)
{
	s->on_other = fn;
	s->on_other_arg = arg;
}

int twinctl_session_poll(twinctl_session *s, int ms, const volatile sig_atomic_t *stop)
{
	long long deadline = now_ms() + ms, left;
	int rc;

	while ((stop == NULL || !*stop) && (left = deadline - now_ms()) > 0) {
		/* A signal ends the wait early: select() returns EINTR, which
		 * mosquitto_loop reports as success. */
		rc = mosquitto_loop(s->mosq, (int)left, 1);
		if (rc != MOSQ_ERR_SUCCESS || s->lost) {
			fprintf(stderr, "twinctl: connection to %s lost: %s\n", s->where,
			        s->last_log[0] ? s->last_log
			                       : mosquitto_strerror(rc ? rc : MOSQ_ERR_CONN_LOST));
			return TWINCTL_EXIT_CONN;
		}
	}
	return TWINCTL_EXIT_OK;
}

void twinctl_session_close(twinctl_session *s)
{
	if (s == NULL)
		return;
	if (s->mosq != NULL) {
		if (s->connack == 0 && !s->lost)
			mosquitto_disconnect_v5(s->mosq, MQTT_RC_NORMAL_DISCONNECTION, NULL);
		mosquitto_destroy(s->mosq);
	}
	cJSON_Delete(s->reply);
	free(s);
}
