/*
 * twinctl.h - the parts of twinctl (the control API's command line client,
 * DESIGN.md §6) that its files share.
 *
 *   twinctl.c              main: connection options, dispatch, help, output
 *   twinctl_session.c      one MQTT v5 connection that sends control API
 *                          commands and waits for their responses
 *   twinctl_device.c       device create|show|update|delete|list
 *   twinctl_credentials.c  their credential flags, device connection strings
 *   twinctl_twin.c         twin show|update|replace
 *   twinctl_query.c        query
 *   twinctl_events.c       events: the change log and the live event stream
 *   twinctl_job.c          job create|show|cancel|list, and the job behind
 *                          twin update --query
 *
 * Every function that can fail prints ONE line to stderr saying why, where
 * it failed, and returns the process exit code (TWINCTL_EXIT_*); callers
 * pass that code up unchanged. Nothing here keeps global state.
 */
#ifndef TWINCTL_H
#define TWINCTL_H

#include <signal.h>

#include <cjson/cJSON.h>
#include <mosquitto.h>

#include "twin/connstr.h"

/* Exit codes, documented in `twinctl --help`. */
#define TWINCTL_EXIT_OK     0
#define TWINCTL_EXIT_OUTPUT 1 /* stdout could not be written */
#define TWINCTL_EXIT_USAGE  2 /* bad command line, including malformed JSON */
#define TWINCTL_EXIT_CONN   3 /* connection, TLS or timeout */
#define TWINCTL_EXIT_AUTH   4 /* CONNACK not authorised, or API status 401 */
#define TWINCTL_EXIT_API    5 /* any other API error (4xx, 5xx) */

/* Not an exit code: --help was printed, exit with TWINCTL_EXIT_OK. */
#define TWINCTL_HELP_SHOWN (-1)

#define TWINCTL_DEFAULT_TIMEOUT 10 /* seconds */

/* What the command line says about the connection and the output. */
typedef struct twinctl_conf {
	const char *host;         /* -h; NULL: the connection string's HostName, else localhost */
	int port;                 /* -p; 0: 1883, or 8883 with TLS */
	const char *connstr_text; /* --connection-string or $TWIN_CONNECTION_STRING, or NULL */
	twin_connstr connstr;     /* parsed connstr_text; host_name "" without one */
	const char *cafile;       /* --cafile */
	const char *cert;         /* --cert */
	const char *key;          /* --key */
	int timeout;              /* --timeout seconds, for the connection and each response */
	const char *client_id;    /* -i; NULL: "twinctl/<pid>" */
	int compact;              /* -c: compact JSON even on a terminal */
	char command_name[32];    /* "device create", for usage messages */
} twinctl_conf;

/* The host twinctl connects to, and the hub host name device connection
 * strings carry (the connection string's HostName, else that host). */
const char *twinctl_host(const twinctl_conf *conf);
const char *twinctl_hub_host(const twinctl_conf *conf);

/* Non-zero when a TLS option was given. */
int twinctl_tls(const twinctl_conf *conf);

/* Print "twinctl: <command>: <message>" to stderr; returns TWINCTL_EXIT_USAGE. */
int twinctl_usage_error(const twinctl_conf *conf, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* A subcommand's option parser. Parses argv[0..argc) (argv[0] is the
 * subcommand word) with getopt_long over the connection options plus opts
 * (terminated by a zeroed entry; their val must be >= 0x200) and calls
 * on_option(arg, val, optarg) for each of opts. Positional arguments are
 * stored in pos[0..max_pos) and counted in *npos. Returns TWINCTL_EXIT_OK,
 * TWINCTL_EXIT_USAGE (message printed), or TWINCTL_HELP_SHOWN after
 * printing help to stdout for --help. */
struct option;
int twinctl_parse(twinctl_conf *conf, int argc, char **argv, const struct option *opts,
                  const char *help, int (*on_option)(void *arg, int val, const char *value),
                  void *arg, const char **pos, int max_pos, int *npos);

/* A whole decimal number in [min, max] for option name; otherwise a usage
 * error ("NAME takes a number from MIN to MAX."). */
int twinctl_number_arg(const twinctl_conf *conf, const char *name, const char *text, long long min,
                       long long max, long long *out);

/* Parse text as a JSON object for option name. On TWINCTL_EXIT_OK *out is
 * owned by the caller (cJSON_Delete); otherwise *out is NULL and a usage
 * error was printed. */
int twinctl_json_object_arg(const twinctl_conf *conf, const char *name, const char *text,
                            cJSON **out);

/* Print data on stdout: indented when stdout is a terminal and -c was not
 * given, else on one line. NULL (a 204) prints nothing. */
void twinctl_print(const twinctl_conf *conf, const cJSON *data);

/* One connection to the broker. */
typedef struct twinctl_session twinctl_session;

/* Connect as conf says (credentials from the connection string, if any),
 * subscribe to the response topic and wait for both. On TWINCTL_EXIT_OK *out
 * is the session (twinctl_session_close); otherwise *out is NULL. */
int twinctl_session_open(const twinctl_conf *conf, twinctl_session **out);

/* Send one command and wait for its response. cmd is the command object
 * ({"command":…, args…}); the session adds its correlationData. On a 200
 * *data is the response's data, owned by the caller; on a 204 it is NULL.
 * Any other status prints "twinctl: <status> <code>: <message>" and returns
 * TWINCTL_EXIT_AUTH (401) or TWINCTL_EXIT_API. */
int twinctl_session_call(twinctl_session *s, cJSON *cmd, cJSON **data);

/* Subscribe to topic (QoS 1) and wait for the SUBACK, at most --timeout.
 * TWINCTL_EXIT_OK when the SUBACK arrived, with *reason its reason code (a
 * refusal, >= 0x80, is for the caller to report); otherwise
 * TWINCTL_EXIT_CONN with the reason printed. */
int twinctl_session_subscribe(twinctl_session *s, const char *topic, int *reason);

/* "host:port", for messages; owned by s. */
const char *twinctl_session_where(const twinctl_session *s);

/* Called for every message on a topic other than the response topic, from
 * inside whichever session function is waiting (twinctl_session_call,
 * _subscribe, _poll). m and props belong to libmosquitto and are valid only
 * during the call. */
typedef void (*twinctl_message_fn)(void *arg, const struct mosquitto_message *m,
                                   const mosquitto_property *props);

/* Set the hook for other topics (NULL fn: drop them, the default). */
void twinctl_session_on_message(twinctl_session *s, twinctl_message_fn fn, void *arg);

/* Run the network loop (keep-alive, incoming messages) for ms milliseconds,
 * or until *stop is non-zero when stop is not NULL: a signal ends the wait
 * at once, so a handler that sets *stop is seen without delay.
 * TWINCTL_EXIT_OK, or TWINCTL_EXIT_CONN (printed) if the connection is lost. */
int twinctl_session_poll(twinctl_session *s, int ms, const volatile sig_atomic_t *stop);

/* Disconnect and free s; NULL is a no-op. */
void twinctl_session_close(twinctl_session *s);

/* Open a session, run one command, close it: the common case. cmd is
 * consumed (deleted) whatever happens; *data as for twinctl_session_call. */
int twinctl_call_once(const twinctl_conf *conf, cJSON *cmd, cJSON **data);

/* twinctl_call_once, then print the response's data (twinctl_print). */
int twinctl_call_and_print(const twinctl_conf *conf, cJSON *cmd);

/* The credential flags of device create|update (twinctl_credentials.c);
 * the strings are argv's. */
typedef struct twinctl_credentials {
	const char *auth_type; /* --auth-type; NULL: implied by the other flags */
	const char *primary_key, *secondary_key;
	const char *primary_thumb, *secondary_thumb;
	int regenerate; /* --regenerate-keys */
} twinctl_credentials;

/* The authentication type the flags ask for; NULL when they say nothing. */
const char *twinctl_credentials_type(const twinctl_credentials *c);

/* Non-zero when a key or thumbprint is given: an update must then read the
 * identity's current authentication to keep the one not given. */
int twinctl_credentials_partial(const twinctl_credentials *c);

/* TWINCTL_EXIT_OK, or a usage error for flags that contradict each other. */
int twinctl_credentials_check(const twinctl_conf *conf, const twinctl_credentials *c);

/* The identity's "authentication" member for the flags, built on current
 * (the identity's member before an update; NULL for a create): a key or
 * thumbprint not given keeps current's when the type stays, else is left
 * out (the broker generates missing keys). NULL when the flags say nothing.
 * The caller owns the result (cJSON_Delete). */
cJSON *twinctl_credentials_json(const twinctl_credentials *c, const cJSON *current);

/* Add "connectionString" to an identity object: HostName=HUB;DeviceId=ID;
 * SharedAccessKey=PRIMARYKEY for sas, HostName=HUB;DeviceId=ID;x509=true for
 * X.509, null otherwise; HUB is twinctl_hub_host(conf). */
void twinctl_add_connection_string(const twinctl_conf *conf, cJSON *identity);

/* A scheduleUpdateTwin job (twinctl_job.c), as `job create` and `twin
 * update --query` describe it; the strings are argv's. */
typedef struct twinctl_job_spec {
	const char *job_id;
	const char *query;      /* queryCondition: the WHERE condition of a query */
	const char *desired;    /* --desired: JSON object text, or NULL */
	const char *tags;       /* --tags: JSON object text, or NULL */
	const char *etag;       /* updateTwin's etag, or NULL */
	const char *start_time; /* ISO 8601, or NULL: now */
	long long max_time;     /* maxExecutionTimeInSeconds; 0: the broker's default */
	int wait;               /* poll until the job ends, exit by its status */
} twinctl_job_spec;

/* Check spec (usage errors come before any connection), create the job
 * (createJob) and print it. With spec->wait, poll getJob every 200 ms on
 * the same connection until the job is completed, failed or cancelled
 * (drawing a progress line on stderr when it is a terminal) and print the
 * final job instead: TWINCTL_EXIT_OK when completed, TWINCTL_EXIT_API with
 * a line on stderr when failed or cancelled. */
int twinctl_job_run(const twinctl_conf *conf, const twinctl_job_spec *spec);

/* The command groups: argv[0] is the command word ("device", "twin", …).
 * An exit code, or TWINCTL_HELP_SHOWN. */
int twinctl_device_main(twinctl_conf *conf, int argc, char **argv);
int twinctl_query_main(twinctl_conf *conf, int argc, char **argv);
int twinctl_twin_main(twinctl_conf *conf, int argc, char **argv);
int twinctl_events_main(twinctl_conf *conf, int argc, char **argv);
int twinctl_job_main(twinctl_conf *conf, int argc, char **argv);

/* A group's subcommand table and its dispatcher. */
typedef struct twinctl_subcommand {
	const char *name;
	int (*run)(twinctl_conf *conf, int argc, char **argv);
} twinctl_subcommand;

/* Run the subcommand argv[1] of group with argc - 1, argv + 1; an exit
 * code, or TWINCTL_HELP_SHOWN. */
int twinctl_dispatch(twinctl_conf *conf, const char *group, const char *help,
                     const twinctl_subcommand *subs, int argc, char **argv);

#endif
