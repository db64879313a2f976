/*
 * twin_token.c - twin-token: MQTT credentials from an IoT Hub connection
 * string, for clients that cannot make SAS tokens themselves (mosquitto_pub,
 * mosquitto_sub, mosquitto_rr, twin-device-sim).
 *
 *   twin-token [--ttl SECONDS] [--username] CONNECTION_STRING
 *
 * Prints the password (a SAS token valid for --ttl seconds, default 3600)
 * or, with --username, the username the plugin expects with it:
 *   device string  HostName=h;DeviceId=d;SharedAccessKey=k
 *                  username h/d/?api-version=2021-04-12, token for h/devices/d
 *   service string HostName=h;SharedAccessKeyName=p;SharedAccessKey=k
 *                  username p, token for h signed by policy p
 * A device string with SharedAccessKeyName too is a gateway's: the token is
 * for h/devices/d, signed by the policy (PROTOCOL.md §1.2).
 * The connection string may also come from TWIN_CONNECTION_STRING.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "twin/connstr.h"
#include "twin/sas.h"

#define API_VERSION "2021-04-12"

static int usage(FILE *f)
{
	fprintf(f, "usage: twin-token [--ttl SECONDS] [--username] CONNECTION_STRING\n"
	           "  prints the SAS token (the MQTT password) for an IoT Hub device or\n"
	           "  service connection string; --username prints the MQTT username.\n"
	           "  CONNECTION_STRING defaults to $TWIN_CONNECTION_STRING.\n");
	return f == stdout ? 0 : 2;
}

static int fail(const char *what, const twin_error *err)
{
	fprintf(stderr, "twin-token: %s: %s\n", what, err->message);
	return 1;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {{"ttl", required_argument, NULL, 't'},
	                                         {"username", no_argument, NULL, 'u'},
	                                         {"help", no_argument, NULL, 'H'},
	                                         {NULL, 0, NULL, 0}};
	char resource[TWIN_SAS_TARGET_MAX], *token = NULL, *end;
	const char *text;
	long long ttl = 3600;
	int c, username = 0;
	twin_connstr cs;
	twin_error err;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 't':
			ttl = strtoll(optarg, &end, 10);
			if (*end != '\0' || ttl <= 0 || ttl > 10LL * 365 * 86400) {
				fprintf(stderr,
				        "twin-token: --ttl takes seconds, 1 to 10 years.\n");
				return 2;
			}
			break;
		case 'u':
			username = 1;
			break;
		case 'H':
			return usage(stdout);
		default:
			return usage(stderr);
		}
	}
	text = optind < argc ? argv[optind] : getenv("TWIN_CONNECTION_STRING");
	if (text == NULL || optind + 1 < argc)
		return usage(stderr);
	if (twin_connstr_parse(text, &cs, &err) != TWIN_OK)
		return fail("bad connection string", &err);
	if (cs.x509)
		return fprintf(stderr, "twin-token: an x509 device uses its certificate, "
		                       "not a token.\n"),
		       1;
	if (username) {
		if (cs.device_id[0])
			printf("%s/%s/?api-version=%s\n", cs.host_name, cs.device_id, API_VERSION);
		else
			printf("%s\n", cs.key_name);
		return 0;
	}
	if (cs.device_id[0] && twin_sas_target(resource, sizeof(resource), cs.host_name,
	                                       cs.device_id, cs.module_id, &err) != TWIN_OK)
		return fail("bad resource", &err);
	if (!cs.device_id[0])
		snprintf(resource, sizeof(resource), "%s", cs.host_name);
	if (twin_sas_make(resource, cs.key, cs.key_name, (int64_t)time(NULL) + ttl, &token, &err) !=
	    TWIN_OK)
		return fail("cannot make the token", &err);
	printf("%s\n", token);
	free(token);
	return 0;
}
