/*
 * twinctl.c - twinctl, the command line client of the control API on
 * $CONTROL/twin/v1 (DESIGN.md §6, README "The control API"), in the spirit
 * of `az iot hub device-identity|device-twin` and `mosquitto_ctrl`:
 *
 *   twinctl [connection options] device create|show|update|delete|list …
 *   twinctl [connection options] twin show|update|replace …
 *   twinctl [connection options] query "SELECT …"
 *   twinctl [connection options] events [--from N] [--follow] …
 *   twinctl [connection options] job create|show|cancel|list …
 *
 * This file holds what every command shares: the connection options (which
 * may also follow the command words), the dispatch to a command group, the
 * top-level help, and the output. The groups build one control API command
 * each (two for `device update` with partial credentials, a loop for
 * `device list --all`, `query` and `events`, a polling loop for `job create
 * --wait`) and hand it to twinctl_session.c.
 *
 * The process is short-lived and single-threaded; all state lives in one
 * twinctl_conf on main's stack.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mosquitto.h>

#include "twinctl.h"

/* Long-only connection options; subcommand options start at 0x200. */
enum { OPT_CONNSTR = 0x100, OPT_CAFILE, OPT_CERT, OPT_KEY, OPT_TIMEOUT, OPT_HELP };

#define CONN_OPTIONS_COUNT 10
static const struct option conn_options[CONN_OPTIONS_COUNT] = {
        {"host", required_argument, NULL, 'h'},
        {"port", required_argument, NULL, 'p'},
        {"id", required_argument, NULL, 'i'},
        {"compact", no_argument, NULL, 'c'},
        {"connection-string", required_argument, NULL, OPT_CONNSTR},
        {"cafile", required_argument, NULL, OPT_CAFILE},
        {"cert", required_argument, NULL, OPT_CERT},
        {"key", required_argument, NULL, OPT_KEY},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"help", no_argument, NULL, OPT_HELP},
};
#define SHORT_OPTIONS ":h:p:i:c"
#define MAX_OPTIONS   48

static const char top_help[] =
        "usage: twinctl [connection options] COMMAND SUBCOMMAND [options] [ARGS]\n"
        "\n"
        "The command line client of mosquitto-twin's control API ($CONTROL/twin/v1):\n"
        "device identities and twins, as `az iot hub device-identity` and\n"
        "`az iot hub device-twin` manage them on Azure IoT Hub.\n"
        "\n"
        "Commands:\n"
        "  device create|show|update|delete|list   identities (twinctl device --help)\n"
        "  twin show|update|replace                twins (twinctl twin --help)\n"
        "  query \"SELECT …\"                        fleet queries (twinctl query --help)\n"
        "  events [--from N] [--follow]            the change log and live change events\n"
        "                                          as JSON Lines (twinctl events --help)\n"
        "  job create|show|cancel|list             twin updates over a query, run by the\n"
        "                                          broker (twinctl job --help)\n"
        "\n"
        "Connection options (before or after the command):\n"
        "  -h, --host HOST          the broker; default: the HostName of the connection\n"
        "                           string, else localhost\n"
        "  -p, --port PORT          default 1883, or 8883 when a TLS option is given\n"
        "  --connection-string CS   a service connection string,\n"
        "                           HostName=H;SharedAccessKeyName=P;SharedAccessKey=K\n"
        "                           (default: $TWIN_CONNECTION_STRING): twinctl connects\n"
        "                           as policy P with a SAS token for H (sas mode).\n"
        "                           Without one it connects anonymously (open mode).\n"
        "  --cafile FILE            TLS: trust these CA certificates (default: the\n"
        "                           system's); the broker's name is verified\n"
        "  --cert FILE, --key FILE  TLS: a client certificate and its key\n"
        "  --timeout SECONDS        wait this long for the connection and for each\n"
        "                           response (default 10)\n"
        "  -i, --id CLIENT_ID       MQTT client id (default twinctl/<pid>, which is no\n"
        "                           deviceId: in open mode a client whose id is a valid\n"
        "                           deviceId is registered as that device)\n"
        "  -c, --compact            JSON on one line (the default unless stdout is a\n"
        "                           terminal)\n"
        "  --help                   this text; every command and subcommand has one\n"
        "\n"
        "twinctl speaks MQTT v5: each request carries a response topic and correlation\n"
        "data, and a correlationData member the response echoes.\n"
        "\n"
        "Output: the response's data as JSON on stdout (nothing for a delete); events\n"
        "prints one compact JSON object per line.\n"
        "Errors: one line on stderr, \"twinctl: STATUS CODE: MESSAGE\" for an API error.\n"
        "Exit status: 0 success; 1 stdout not writable; 2 usage (also malformed JSON\n"
        "arguments); 3 connection, TLS or timeout; 4 not authorised (CONNACK refused,\n"
        "or API status 401); 5 any other API error (also a job that failed or was\n"
        "cancelled, under --wait).\n";

const char *twinctl_host(const twinctl_conf *conf)
{
	if (conf->host != NULL)
		return conf->host;
	return conf->connstr.host_name[0] ? conf->connstr.host_name : "localhost";
}

const char *twinctl_hub_host(const twinctl_conf *conf)
{
	return conf->connstr.host_name[0] ? conf->connstr.host_name : twinctl_host(conf);
}

int twinctl_tls(const twinctl_conf *conf)
{
	return conf->cafile != NULL || conf->cert != NULL || conf->key != NULL;
}

int twinctl_usage_error(const twinctl_conf *conf, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "twinctl: ");
	if (conf->command_name[0])
		fprintf(stderr, "%s: ", conf->command_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return TWINCTL_EXIT_USAGE;
}

int twinctl_number_arg(const twinctl_conf *conf, const char *name, const char *text, long long min,
                       long long max, long long *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || v < min || v > max)
		return twinctl_usage_error(conf, "%s takes a number from %lld to %lld.", name, min,
		                           max);
	*out = v;
	return TWINCTL_EXIT_OK;
}

/* twinctl_number_arg for an int option. */
static int int_arg(const twinctl_conf *conf, const char *name, const char *text, int min, int max,
                   int *out)
{
	long long v;
	int rc = twinctl_number_arg(conf, name, text, min, max, &v);

	if (rc == TWINCTL_EXIT_OK)
		*out = (int)v;
	return rc;
}

/* Apply one connection option. */
static int conn_option(twinctl_conf *conf, int c, const char *arg)
{
	switch (c) {
	case 'h':
		conf->host = arg;
		return TWINCTL_EXIT_OK;
	case 'p':
		return int_arg(conf, "--port", arg, 1, 65535, &conf->port);
	case 'i':
		conf->client_id = arg;
		return TWINCTL_EXIT_OK;
	case 'c':
		conf->compact = 1;
		return TWINCTL_EXIT_OK;
	case OPT_CONNSTR:
		conf->connstr_text = arg;
		return TWINCTL_EXIT_OK;
	case OPT_CAFILE:
		conf->cafile = arg;
		return TWINCTL_EXIT_OK;
	case OPT_CERT:
		conf->cert = arg;
		return TWINCTL_EXIT_OK;
	case OPT_KEY:
		conf->key = arg;
		return TWINCTL_EXIT_OK;
	case OPT_TIMEOUT:
		return int_arg(conf, "--timeout", arg, 1, 3600, &conf->timeout);
	default:
		return twinctl_usage_error(conf, "unhandled option.");
	}
}

/* Check the connection options together, once they are all known. */
static int conn_finish(twinctl_conf *conf)
{
	twin_error err;

	if ((conf->cert == NULL) != (conf->key == NULL))
		return twinctl_usage_error(conf, "--cert and --key go together.");
	if (conf->connstr_text == NULL || conf->connstr_text[0] == '\0')
		return TWINCTL_EXIT_OK;
	if (twin_connstr_parse(conf->connstr_text, &conf->connstr, &err) != TWIN_OK)
		return twinctl_usage_error(conf, "bad connection string: %s", err.message);
	if (conf->connstr.device_id[0] || !conf->connstr.key_name[0])
		return twinctl_usage_error(conf, "the control API needs a service connection "
		                                 "string (HostName=…;SharedAccessKeyName=…;"
		                                 "SharedAccessKey=…), not a device's.");
	return TWINCTL_EXIT_OK;
}

/* Print a help text to stdout; returns TWINCTL_HELP_SHOWN. */
static int show_help(const char *help)
{
	fputs(help, stdout);
	return TWINCTL_HELP_SHOWN;
}

/* The option that getopt_long just refused, for the message. */
static const char *bad_option(char **argv, char *buf, size_t n)
{
	if (optopt != 0 && optopt < 0x100 && strncmp(argv[optind - 1], "--", 2) != 0) {
		snprintf(buf, n, "-%c", optopt);
		return buf;
	}
	return argv[optind - 1];
}

int twinctl_parse(twinctl_conf *conf, int argc, char **argv, const struct option *opts,
                  const char *help, int (*on_option)(void *arg, int val, const char *value),
                  void *arg, const char **pos, int max_pos, int *npos)
{
	struct option all[MAX_OPTIONS];
	char buf[8];
	size_t n = CONN_OPTIONS_COUNT;
	int c, rc = TWINCTL_EXIT_OK;

	memcpy(all, conn_options, sizeof(conn_options));
	for (size_t i = 0; opts != NULL && opts[i].name != NULL && n + 1 < MAX_OPTIONS; i++)
		all[n++] = opts[i];
	memset(&all[n], 0, sizeof(all[n]));
	*npos = 0;
	optind = 0; /* glibc: start a fresh scan */
	opterr = 0;
	/* A leading '-' returns positional arguments in order, as option 1. */
	while (rc == TWINCTL_EXIT_OK &&
	       (c = getopt_long(argc, argv, "-" SHORT_OPTIONS, all, NULL)) != -1) {
		if (c == 1 && *npos < max_pos)
			pos[(*npos)++] = optarg;
		else if (c == 1)
			rc = twinctl_usage_error(conf, "unexpected argument '%s'.", optarg);
		else if (c == ':')
			rc = twinctl_usage_error(conf, "%s needs a value.", argv[optind - 1]);
		else if (c == '?')
			rc = twinctl_usage_error(conf, "unknown option %s.",
			                         bad_option(argv, buf, sizeof(buf)));
		else if (c == OPT_HELP)
			return show_help(help);
		else if (c >= 0x200)
			rc = on_option(arg, c, optarg);
		else
			rc = conn_option(conf, c, optarg);
	}
	for (; rc == TWINCTL_EXIT_OK && optind < argc; optind++) { /* after "--" */
		if (*npos == max_pos)
			return twinctl_usage_error(conf, "unexpected argument '%s'.", argv[optind]);
		pos[(*npos)++] = argv[optind];
	}
	return rc == TWINCTL_EXIT_OK ? conn_finish(conf) : rc;
}

int twinctl_json_object_arg(const twinctl_conf *conf, const char *name, const char *text,
                            cJSON **out)
{
	const char *end = NULL;

	*out = cJSON_ParseWithOpts(text, &end, 1);
	if (*out == NULL)
		return twinctl_usage_error(conf, "%s is not valid JSON (near byte %ld).", name,
		                           end != NULL ? (long)(end - text) : 0L);
	if (!cJSON_IsObject(*out)) {
		cJSON_Delete(*out);
		*out = NULL;
		return twinctl_usage_error(conf, "%s must be a JSON object.", name);
	}
	return TWINCTL_EXIT_OK;
}

void twinctl_print(const twinctl_conf *conf, const cJSON *data)
{
	char *text;

	if (data == NULL)
		return;
	text = !conf->compact && isatty(STDOUT_FILENO) ? cJSON_Print(data)
	                                               : cJSON_PrintUnformatted(data);
	if (text == NULL) {
		fprintf(stderr, "twinctl: out of memory printing the response.\n");
		return;
	}
	puts(text);
	free(text);
}

int twinctl_call_once(const twinctl_conf *conf, cJSON *cmd, cJSON **data)
{
	twinctl_session *s = NULL;
	int rc = twinctl_session_open(conf, &s);

	*data = NULL;
	if (rc == TWINCTL_EXIT_OK)
		rc = twinctl_session_call(s, cmd, data);
	twinctl_session_close(s);
	cJSON_Delete(cmd);
	return rc;
}

int twinctl_call_and_print(const twinctl_conf *conf, cJSON *cmd)
{
	cJSON *data = NULL;
	int rc = twinctl_call_once(conf, cmd, &data);

	if (rc == TWINCTL_EXIT_OK)
		twinctl_print(conf, data);
	cJSON_Delete(data);
	return rc;
}

int twinctl_dispatch(twinctl_conf *conf, const char *group, const char *help,
                     const twinctl_subcommand *subs, int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "twinctl: %s: a subcommand is missing (twinctl %s --help).\n",
		        group, group);
		return TWINCTL_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0)
		return show_help(help);
	for (size_t i = 0; subs[i].name != NULL; i++) {
		if (strcmp(subs[i].name, argv[1]) == 0) {
			snprintf(conf->command_name, sizeof(conf->command_name), "%s %s", group,
			         subs[i].name);
			return subs[i].run(conf, argc - 1, argv + 1);
		}
	}
	fprintf(stderr, "twinctl: %s: unknown subcommand '%s' (twinctl %s --help).\n", group,
	        argv[1], group);
	return TWINCTL_EXIT_USAGE;
}

/* Parse the connection options before the command word. TWINCTL_EXIT_OK
 * with *first the index of the command word, or the code main exits with
 * (TWINCTL_HELP_SHOWN after --help). */
static int parse_leading(twinctl_conf *conf, int argc, char **argv, int *first)
{
	char buf[8];
	int c, rc = TWINCTL_EXIT_OK;

	opterr = 0;
	/* '+': stop at the first non-option, the command word. */
	while (rc == TWINCTL_EXIT_OK &&
	       (c = getopt_long(argc, argv, "+" SHORT_OPTIONS, conn_options, NULL)) != -1) {
		if (c == ':')
			rc = twinctl_usage_error(conf, "%s needs a value.", argv[optind - 1]);
		else if (c == '?')
			rc = twinctl_usage_error(conf, "unknown option %s.",
			                         bad_option(argv, buf, sizeof(buf)));
		else if (c == OPT_HELP)
			rc = show_help(top_help);
		else
			rc = conn_option(conf, c, optarg);
	}
	*first = optind;
	return rc;
}

int main(int argc, char **argv)
{
	twinctl_conf conf = {.timeout = TWINCTL_DEFAULT_TIMEOUT};
	const char *group;
	int first, rc;

	conf.connstr_text = getenv("TWIN_CONNECTION_STRING");
	rc = parse_leading(&conf, argc, argv, &first);
	if (rc == TWINCTL_EXIT_OK && first >= argc)
		rc = twinctl_usage_error(&conf, "a command is missing (twinctl --help).");
	if (rc != TWINCTL_EXIT_OK)
		goto out;
	group = argv[first];
	mosquitto_lib_init();
	if (strcmp(group, "device") == 0)
		rc = twinctl_device_main(&conf, argc - first, argv + first);
	else if (strcmp(group, "twin") == 0)
		rc = twinctl_twin_main(&conf, argc - first, argv + first);
	else if (strcmp(group, "query") == 0)
		rc = twinctl_query_main(&conf, argc - first, argv + first);
	else if (strcmp(group, "events") == 0)
		rc = twinctl_events_main(&conf, argc - first, argv + first);
	else if (strcmp(group, "job") == 0)
		rc = twinctl_job_main(&conf, argc - first, argv + first);
	else
		rc = twinctl_usage_error(&conf, "unknown command '%s' (twinctl --help).", group);
	mosquitto_lib_cleanup();
out:
	if (rc == TWINCTL_HELP_SHOWN)
		rc = TWINCTL_EXIT_OK;
	if (fflush(stdout) != 0 && rc == TWINCTL_EXIT_OK) {
		fprintf(stderr, "twinctl: cannot write the output: %s\n", strerror(errno));
		rc = TWINCTL_EXIT_OUTPUT;
	}
	return rc;
}
