/*
 * twinctl_events.c - `twinctl events`: the change log (the getChanges
 * command) and the live event stream ($twin/events/{opType}/{deviceId},
 * PROTOCOL.md §9) as JSON Lines, one getChanges item per line:
 * {sequenceNumber, opType, deviceId, operationTimestamp, actor, body}.
 *
 * Without --follow the command pages through getChanges from --from up to
 * the newest entry the first page reports (its lastSequence) and exits: a
 * snapshot of the log that a busy broker cannot keep growing.
 *
 * With --follow the replay must meet the live stream with no gap and no
 * duplicate. The order that guarantees it: subscribe FIRST and wait for the
 * SUBACK, buffering whatever arrives; then replay up to the first page's
 * lastSequence. An entry newer than that was committed after the first
 * getChanges was read, so after the subscription was in place, so it is in
 * the buffer; an older one is in the replay. The buffer and then the live
 * events are printed, each only when its sequence number is above the last
 * one printed. The cost is memory: the buffer holds every event published
 * while the replay runs, however long that is.
 *
 * Live events are rebuilt into the item shape from their MQTT v5 user
 * properties and payload, so a consumer cannot tell the two sources apart;
 * the members of replayed items are put in the same order. Sequence numbers
 * are printed as integers, never in exponent form.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mqtt_protocol.h>

#include "twinctl.h"

enum { OPT_FROM = 0x200, OPT_FOLLOW, OPT_DEVICE, OPT_OP };

#define EVENTS_TOPIC  "$twin/events/"
#define DEVICE_ID_MAX 128                /* PROTOCOL.md §7 */
#define OP_TYPE_MAX   64                 /* longer than any opType */
#define SEQ_MAX       9007199254740991LL /* 2^53 - 1: exact as a JSON number */
#define POLL_MS       1000

typedef struct events_args {
	twinctl_conf *conf;
	long long from; /* --from; default 1 */
	int follow;
	const char *device, *op; /* argv's, or NULL */
} events_args;

/* A live event that arrived during the replay. */
typedef struct pending_event {
	uint64_t seq;
	cJSON *item;
} pending_event;

/* One run of the command; the message hook's state. */
typedef struct events_run {
	const events_args *a;
	uint64_t last; /* sequence number of the last line printed; --from - 1 at first */
	int live;      /* the replay is over: print live events as they come */
	int rc;        /* the hook's first failure, else TWINCTL_EXIT_OK */
	pending_event *buf;
	size_t n, cap;
} events_run;

/* Set by SIGINT and SIGTERM under --follow. A signal handler can only talk
 * through a global; nothing else in twinctl has one. */
static volatile sig_atomic_t stop_requested;

static const char events_help[] =
        "usage: twinctl events [--from N] [--follow] [--device DEVICE_ID] [--op OPTYPE]\n"
        "\n"
        "Print the change log (getChanges) as JSON Lines: one compact object per\n"
        "change, {\"sequenceNumber\",\"opType\",\"deviceId\",\"operationTimestamp\",\n"
        "\"actor\",\"body\"}, in sequence order. body is the event body of PROTOCOL.md\n"
        "§9. Without --follow, prints the changes from N up to the newest one at the\n"
        "start, then exits.\n"
        "\n"
        "  --from N            start at sequence number N (default 1, the oldest kept)\n"
        "  --follow            then keep printing changes as they are committed, until\n"
        "                      SIGINT or SIGTERM (exit 0): subscribes to $twin/events/…\n"
        "                      first, so no change is missed or printed twice\n"
        "  --device DEVICE_ID  only this device's changes\n"
        "  --op OPTYPE         only changes of this opType: updateTwin, replaceTwin,\n"
        "                      createDeviceIdentity, updateDeviceIdentity,\n"
        "                      deleteDeviceIdentity, deviceConnected, deviceDisconnected\n"
        "\n"
        "Needs a policy with serviceConnect. To resume later, pass the last printed\n"
        "sequenceNumber + 1 to --from. Each line is flushed as it is printed.\n"
        "\n"
        "Examples:\n"
        "  twinctl events --from 1200\n"
        "  twinctl events --follow --op updateTwin | jq -c .body\n"
        "\nConnection options (twinctl --help) may come anywhere.\n";

static int on_events_option(void *arg, int val, const char *value)
{
	events_args *a = arg;

	switch (val) {
	case OPT_FROM:
		return twinctl_number_arg(a->conf, "--from", value, 1, SEQ_MAX, &a->from);
	case OPT_FOLLOW:
		a->follow = 1;
		return TWINCTL_EXIT_OK;
	case OPT_DEVICE:
		if (value[0] == '\0' || strlen(value) > DEVICE_ID_MAX)
			return twinctl_usage_error(a->conf,
			                           "--device takes a deviceId of 1 to %d "
			                           "characters.",
			                           DEVICE_ID_MAX);
		a->device = value;
		return TWINCTL_EXIT_OK;
	default:
		/* The broker knows the opTypes; here only what would break the topic. */
		if (value[0] == '\0' || strlen(value) > OP_TYPE_MAX ||
		    strpbrk(value, "/+#") != NULL)
			return twinctl_usage_error(a->conf, "--op takes an opType such as "
			                                    "updateTwin (see --help).");
		a->op = value;
		return TWINCTL_EXIT_OK;
	}
}

/* ---- printing ---- */

/* A JSON number that is a whole sequence number in [min, SEQ_MAX]. */
static int json_seq(const cJSON *v, uint64_t min, uint64_t *out)
{
	if (!cJSON_IsNumber(v) || v->valuedouble < (double)min ||
	    v->valuedouble > (double)SEQ_MAX || v->valuedouble != (double)(uint64_t)v->valuedouble)
		return 0;
	*out = (uint64_t)v->valuedouble;
	return 1;
}

/* {sequenceNumber, opType, deviceId, operationTimestamp, actor, body}: the
 * getChanges item. Takes over the values (NULL: null); the caller owns the
 * result. */
static cJSON *make_item(uint64_t seq, cJSON *op, cJSON *device, cJSON *ts, cJSON *actor,
                        cJSON *body)
{
	cJSON *item = cJSON_CreateObject();
	char num[24];

	snprintf(num, sizeof(num), "%" PRIu64, seq);
	cJSON_AddRawToObject(item, "sequenceNumber", num);
	cJSON_AddItemToObject(item, "opType", op != NULL ? op : cJSON_CreateNull());
	cJSON_AddItemToObject(item, "deviceId", device != NULL ? device : cJSON_CreateNull());
	cJSON_AddItemToObject(item, "operationTimestamp", ts != NULL ? ts : cJSON_CreateNull());
	cJSON_AddItemToObject(item, "actor", actor != NULL ? actor : cJSON_CreateNull());
	cJSON_AddItemToObject(item, "body", body != NULL ? body : cJSON_CreateNull());
	return item;
}

/* Print item as one line, flush, and make seq the last printed. */
static int print_line(events_run *r, uint64_t seq, const cJSON *item)
{
	char *text = cJSON_PrintUnformatted(item);

	if (text == NULL) {
		fprintf(stderr, "twinctl: out of memory printing an event.\n");
		return TWINCTL_EXIT_OUTPUT;
	}
	fputs(text, stdout);
	free(text);
	if (fputc('\n', stdout) == EOF || fflush(stdout) != 0) {
		fprintf(stderr, "twinctl: cannot write the output: %s\n", strerror(errno));
		return TWINCTL_EXIT_OUTPUT;
	}
	r->last = seq;
	return TWINCTL_EXIT_OK;
}

/* Print item unless seq was printed already (or precedes --from). */
static int emit(events_run *r, uint64_t seq, const cJSON *item)
{
	return seq > r->last ? print_line(r, seq, item) : TWINCTL_EXIT_OK;
}

/* ---- live events ---- */

/* The user properties a live event is rebuilt from; malloc'd, or NULL. */
typedef struct event_props {
	char *seq, *op, *device, *ts, *actor;
} event_props;

static void read_props(const mosquitto_property *props, event_props *p)
{
	char *name = NULL, *value = NULL;
	const mosquitto_property *it = mosquitto_property_read_string_pair(
	        props, MQTT_PROP_USER_PROPERTY, &name, &value, false);

	while (it != NULL) {
		char **slot = strcmp(name, "sequenceNumber") == 0       ? &p->seq
		              : strcmp(name, "opType") == 0             ? &p->op
		              : strcmp(name, "deviceId") == 0           ? &p->device
		              : strcmp(name, "operationTimestamp") == 0 ? &p->ts
		              : strcmp(name, "actor") == 0              ? &p->actor
		                                                        : NULL;

		if (slot != NULL && *slot == NULL)
			*slot = value;
		else
			free(value);
		free(name);
		it = mosquitto_property_read_string_pair(it, MQTT_PROP_USER_PROPERTY, &name, &value,
		                                         true);
	}
}

static void free_props(event_props *p)
{
	free(p->seq);
	free(p->op);
	free(p->device);
	free(p->ts);
	free(p->actor);
}

/* A whole number >= 1 written in base 10 or 16 (digits only, leading
 * zeros allowed: the connection events write 64 hex digits). */
static int text_seq(const char *text, int base, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (text == NULL ||
	    strspn(text, base == 10 ? "0123456789" : "0123456789ABCDEFabcdef") != strlen(text))
		return 0;
	while (text[0] == '0' && text[1] != '\0')
		text++;
	errno = 0;
	v = strtoull(text, &end, base);
	if (errno != 0 || end == text || *end != '\0' || v < 1 || v > (unsigned long long)SEQ_MAX)
		return 0;
	*out = v;
	return 1;
}

/* A JSON string value of text, or NULL when text is NULL. */
static cJSON *string_or_null(const char *text)
{
	return text != NULL ? cJSON_CreateString(text) : NULL;
}

/* Undo the topic's escapes of '%', '+' and '#' in place. */
static void unescape_id(char *id)
{
	char *w = id;

	for (const char *p = id; *p != '\0'; p++) {
		if (p[0] == '%' && (strncmp(p, "%25", 3) == 0 || strncmp(p, "%2B", 3) == 0 ||
		                    strncmp(p, "%23", 3) == 0)) {
			*w++ = p[2] == '5' ? '%' : p[2] == 'B' ? '+' : '#';
			p += 2;
		} else {
			*w++ = *p;
		}
	}
	*w = '\0';
}

/* The item for a live event. The user properties say everything; should
 * one be missing, the sequence number comes from the body and the opType
 * and deviceId from the topic, and a missing timestamp or actor is null.
 * NULL (with a warning on stderr) for an event that cannot be placed. */
static cJSON *live_item(const struct mosquitto_message *m, const mosquitto_property *props,
                        uint64_t *seq)
{
	event_props p = {0};
	cJSON *body = cJSON_ParseWithLength(m->payload, (size_t)m->payloadlen), *item = NULL;
	const cJSON *bseq = cJSON_IsObject(body) ? body->child : NULL;
	char *topic = strdup(m->topic), *op = NULL, *dev = NULL;

	read_props(props, &p);
	if (topic != NULL && strncmp(topic, EVENTS_TOPIC, strlen(EVENTS_TOPIC)) == 0 &&
	    (dev = strchr(op = topic + strlen(EVENTS_TOPIC), '/')) != NULL) {
		*dev++ = '\0';
		unescape_id(dev);
	}
	if (bseq != NULL && strcmp(bseq->string, "sequenceNumber") != 0)
		bseq = NULL;
	if (!cJSON_IsObject(body))
		fprintf(stderr,
		        "twinctl: skipping an event on %s: its payload is no JSON object.\n",
		        m->topic);
	else if (!text_seq(p.seq, 10, seq) && !json_seq(bseq, 1, seq) &&
	         !(cJSON_IsString(bseq) && text_seq(bseq->valuestring, 16, seq)))
		fprintf(stderr, "twinctl: skipping an event on %s: it has no sequence number.\n",
		        m->topic);
	else
		item = make_item(*seq, string_or_null(p.op != NULL ? p.op : op),
		                 string_or_null(p.device != NULL ? p.device : dev),
		                 string_or_null(p.ts),
		                 p.actor != NULL ? cJSON_Parse(p.actor) : NULL, body);
	if (item == NULL)
		cJSON_Delete(body);
	free_props(&p);
	free(topic);
	return item;
}

/* Keep an event that arrived during the replay. */
static int buffer_event(events_run *r, uint64_t seq, cJSON *item)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 64;
		pending_event *buf = realloc(r->buf, cap * sizeof(*buf));

		if (buf == NULL) {
			fprintf(stderr, "twinctl: out of memory buffering live events.\n");
			cJSON_Delete(item);
			return TWINCTL_EXIT_OUTPUT;
		}
		r->buf = buf;
		r->cap = cap;
	}
	r->buf[r->n++] = (pending_event){seq, item};
	return TWINCTL_EXIT_OK;
}

/* The session's hook for messages on the event topics. */
static void on_event(void *arg, const struct mosquitto_message *m, const mosquitto_property *props)
{
	events_run *r = arg;
	uint64_t seq = 0;
	cJSON *item;

	if (r->rc != TWINCTL_EXIT_OK || (item = live_item(m, props, &seq)) == NULL)
		return;
	if (!r->live) {
		r->rc = buffer_event(r, seq, item);
		return;
	}
	r->rc = emit(r, seq, item);
	cJSON_Delete(item);
}

static void free_buffer(events_run *r)
{
	for (size_t i = 0; i < r->n; i++)
		cJSON_Delete(r->buf[i].item);
	free(r->buf);
	r->buf = NULL;
	r->n = r->cap = 0;
}

/* Print the buffered events (in arrival order, which is commit order)
 * that the replay did not print, and free them. */
static int drain_buffer(events_run *r)
{
	int rc = TWINCTL_EXIT_OK;

	for (size_t i = 0; i < r->n && rc == TWINCTL_EXIT_OK; i++)
		rc = emit(r, r->buf[i].seq, r->buf[i].item);
	free_buffer(r);
	return rc;
}

/* $twin/events/# without filters, $twin/events/{--op}/# with --op only,
 * else $twin/events/{--op or +}/{--device, escaped}. out has room for the
 * longest (--op and --device lengths are checked). */
static void events_topic(const events_args *a, char *out, size_t n)
{
	size_t len;

	if (a->op == NULL && a->device == NULL) {
		snprintf(out, n, EVENTS_TOPIC "#");
		return;
	}
	len = (size_t)snprintf(out, n, EVENTS_TOPIC "%s/", a->op != NULL ? a->op : "+");
	if (a->device == NULL) {
		snprintf(out + len, n - len, "#");
		return;
	}
	for (const char *p = a->device; *p != '\0'; p++) {
		if (*p == '%' || *p == '+' || *p == '#')
			len += (size_t)snprintf(out + len, n - len, "%%%s",
			                        *p == '%'   ? "25"
			                        : *p == '+' ? "2B"
			                                    : "23");
		else
			out[len++] = *p;
	}
	out[len] = '\0';
}

/* Subscribe to the events --device and --op select. */
static int subscribe_events(twinctl_session *s, const events_args *a)
{
	char topic[sizeof(EVENTS_TOPIC) + OP_TYPE_MAX + 1 + 3 * DEVICE_ID_MAX + 1];
	int reason, rc;

	events_topic(a, topic, sizeof(topic));
	rc = twinctl_session_subscribe(s, topic, &reason);
	if (rc != TWINCTL_EXIT_OK || reason < 0x80)
		return rc;
	fprintf(stderr,
	        "twinctl: %s refused the subscription to %s: %s (events need a policy "
	        "with serviceConnect).\n",
	        twinctl_session_where(s), topic, mosquitto_reason_string(reason));
	return TWINCTL_EXIT_AUTH;
}

/* ---- replay ---- */

static cJSON *changes_command(const events_args *a, uint64_t from)
{
	cJSON *cmd = cJSON_CreateObject();
	char num[24];

	snprintf(num, sizeof(num), "%" PRIu64, from);
	cJSON_AddStringToObject(cmd, "command", "getChanges");
	cJSON_AddRawToObject(cmd, "fromSequence", num);
	if (a->device != NULL)
		cJSON_AddStringToObject(cmd, "deviceId", a->device);
	if (a->op != NULL)
		cJSON_AddStringToObject(cmd, "opType", a->op);
	return cmd;
}

static int malformed(const char *what)
{
	fprintf(stderr, "twinctl: malformed getChanges response: %s.\n", what);
	return TWINCTL_EXIT_API;
}

/* A getChanges item in the printed member order, detached from it. */
static cJSON *replay_item(cJSON *it, uint64_t seq)
{
	cJSON *item = make_item(seq, cJSON_DetachItemFromObjectCaseSensitive(it, "opType"),
	                        cJSON_DetachItemFromObjectCaseSensitive(it, "deviceId"),
	                        cJSON_DetachItemFromObjectCaseSensitive(it, "operationTimestamp"),
	                        cJSON_DetachItemFromObjectCaseSensitive(it, "actor"),
	                        cJSON_DetachItemFromObjectCaseSensitive(it, "body"));
	cJSON *rest;

	cJSON_DeleteItemFromObjectCaseSensitive(it, "sequenceNumber");
	while ((rest = it->child) != NULL) /* members this version does not know: keep */
		cJSON_AddItemToObject(item, rest->string, cJSON_DetachItemViaPointer(it, rest));
	return item;
}

/* Print a page's items up to *bound (set from the first page's
 * lastSequence when first) and advance *next to its nextSequence. */
static int take_page(events_run *r, cJSON *page, int first, uint64_t *bound, uint64_t *next)
{
	cJSON *items = cJSON_GetObjectItemCaseSensitive(page, "items"), *it;
	uint64_t from = *next, last, seq;
	int rc = TWINCTL_EXIT_OK;

	if (!cJSON_IsArray(items))
		return malformed("no items array");
	if (!json_seq(cJSON_GetObjectItemCaseSensitive(page, "nextSequence"), 1, next) ||
	    !json_seq(cJSON_GetObjectItemCaseSensitive(page, "lastSequence"), 0, &last))
		return malformed("no nextSequence or lastSequence");
	if (first)
		*bound = last;
	cJSON_ArrayForEach(it, items)
	{
		cJSON *item;

		if (!json_seq(cJSON_GetObjectItemCaseSensitive(it, "sequenceNumber"), 1, &seq))
			return malformed("an item without a sequenceNumber");
		if (seq > *bound || rc != TWINCTL_EXIT_OK)
			continue;
		item = replay_item(it, seq);
		rc = emit(r, seq, item);
		cJSON_Delete(item);
	}
	if (rc == TWINCTL_EXIT_OK && *next <= *bound && *next <= from)
		return malformed("nextSequence does not advance");
	return rc;
}

/* Page through getChanges from r->last + 1 up to the first page's
 * lastSequence, printing each item; stops early on a stop signal. */
static int replay(twinctl_session *s, events_run *r)
{
	uint64_t next = r->last + 1, bound = 0;
	int rc = TWINCTL_EXIT_OK;

	for (int first = 1; rc == TWINCTL_EXIT_OK && !stop_requested; first = 0) {
		cJSON *cmd = changes_command(r->a, next), *page = NULL;

		rc = twinctl_session_call(s, cmd, &page);
		if (rc == TWINCTL_EXIT_OK)
			rc = r->rc;
		if (rc == TWINCTL_EXIT_OK)
			rc = take_page(r, page, first, &bound, &next);
		cJSON_Delete(cmd);
		cJSON_Delete(page);
		if (next > bound)
			break; /* caught up */
	}
	return rc;
}

/* ---- the command ---- */

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* SIGINT and SIGTERM end --follow cleanly. SA_RESTART keeps a write to
 * stdout going; the network wait (select) is interrupted regardless. */
static void catch_stop_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* --follow after the replay: the buffered events, then live ones until a
 * stop signal or the connection drops. */
static int follow(twinctl_session *s, events_run *r)
{
	int rc = drain_buffer(r);

	r->live = 1;
	while (rc == TWINCTL_EXIT_OK && !stop_requested) {
		rc = twinctl_session_poll(s, POLL_MS, &stop_requested);
		if (rc == TWINCTL_EXIT_OK)
			rc = r->rc;
	}
	return rc;
}

int twinctl_events_main(twinctl_conf *conf, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"from", required_argument, NULL, OPT_FROM},
	        {"follow", no_argument, NULL, OPT_FOLLOW},
	        {"device", required_argument, NULL, OPT_DEVICE},
	        {"op", required_argument, NULL, OPT_OP},
	        {0},
	};
	events_args a = {.conf = conf, .from = 1};
	events_run r = {.a = &a};
	twinctl_session *s = NULL;
	int n = 0, rc;

	snprintf(conf->command_name, sizeof(conf->command_name), "events");
	rc = twinctl_parse(conf, argc, argv, opts, events_help, on_events_option, &a, NULL, 0, &n);
	if (rc != TWINCTL_EXIT_OK)
		return rc;
	r.last = (uint64_t)a.from - 1;
	if (a.follow)
		catch_stop_signals();
	rc = twinctl_session_open(conf, &s);
	if (rc == TWINCTL_EXIT_OK && a.follow) {
		twinctl_session_on_message(s, on_event, &r);
		rc = subscribe_events(s, &a);
	}
	if (rc == TWINCTL_EXIT_OK)
		rc = replay(s, &r);
	if (rc == TWINCTL_EXIT_OK && a.follow)
		rc = follow(s, &r);
	twinctl_session_close(s);
	free_buffer(&r);
	return rc;
}
