/*
 * twinctl_device.c - `twinctl device create|show|update|delete|list`: device
 * identities through createDevice, getDevice, updateDevice, deleteDevice
 * and listDevices (README "The control API").
 *
 * Each subcommand parses its flags, builds one command and prints the
 * response's data. Two make more than one request on their connection:
 * `device update` with one key or thumbprint reads the identity first (see
 * twinctl_credentials.c), and `device list --all` follows the continuation
 * tokens and prints every page as one array.
 *
 * --show-connection-string adds a "connectionString" member to the printed
 * identity (twinctl_add_connection_string) rather than printing a second
 * document, so the output stays one JSON value.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twinctl.h"

enum {
	OPT_STATUS = 0x200,
	OPT_STATUS_REASON,
	OPT_AUTH_TYPE,
	OPT_PRIMARY_KEY,
	OPT_SECONDARY_KEY,
	OPT_PRIMARY_THUMB,
	OPT_SECONDARY_THUMB,
	OPT_REGENERATE,
	OPT_TAGS,
	OPT_DESIRED,
	OPT_ETAG,
	OPT_SHOW_CONNSTR,
	OPT_MAX_COUNT,
	OPT_CONTINUATION,
	OPT_ALL,
};

/* What the device subcommands' flags say; every string is argv's. */
typedef struct device_args {
	twinctl_conf *conf;
	twinctl_credentials cred;
	const char *status, *status_reason;
	const char *tags, *desired, *etag, *continuation;
	int show_connstr, all, max_count;
} device_args;

#define OPT(name, arg, val)                                                                        \
	{                                                                                          \
		name, arg, NULL, val                                                               \
	}
#define AUTH_OPTIONS                                                                               \
	OPT("auth-type", required_argument, OPT_AUTH_TYPE),                                        \
	        OPT("primary-key", required_argument, OPT_PRIMARY_KEY),                            \
	        OPT("secondary-key", required_argument, OPT_SECONDARY_KEY),                        \
	        OPT("primary-thumbprint", required_argument, OPT_PRIMARY_THUMB),                   \
	        OPT("secondary-thumbprint", required_argument, OPT_SECONDARY_THUMB)

#define AUTH_HELP                                                                                  \
	"  --auth-type TYPE          sas, selfSigned or certificateAuthority (default:\n"          \
	"                            sas, or selfSigned when a thumbprint is given)\n"             \
	"  --primary-key KEY, --secondary-key KEY\n"                                               \
	"                            sas: base64 keys of 16 to 64 bytes\n"                         \
	"  --primary-thumbprint HEX, --secondary-thumbprint HEX\n"                                 \
	"                            selfSigned: SHA-1 or SHA-256 thumbprints\n"

#define CONNECTION_HELP "\nConnection options (twinctl --help) may come anywhere.\n"

static int on_device_option(void *arg, int val, const char *value)
{
	device_args *a = arg;

	switch (val) {
	case OPT_STATUS:
		if (strcmp(value, "enabled") != 0 && strcmp(value, "disabled") != 0)
			return twinctl_usage_error(a->conf, "--status is enabled or disabled.");
		a->status = value;
		break;
	case OPT_STATUS_REASON:
		a->status_reason = value;
		break;
	case OPT_AUTH_TYPE:
		a->cred.auth_type = value;
		break;
	case OPT_PRIMARY_KEY:
		a->cred.primary_key = value;
		break;
	case OPT_SECONDARY_KEY:
		a->cred.secondary_key = value;
		break;
	case OPT_PRIMARY_THUMB:
		a->cred.primary_thumb = value;
		break;
	case OPT_SECONDARY_THUMB:
		a->cred.secondary_thumb = value;
		break;
	case OPT_REGENERATE:
		a->cred.regenerate = 1;
		break;
	case OPT_TAGS:
		a->tags = value;
		break;
	case OPT_DESIRED:
		a->desired = value;
		break;
	case OPT_ETAG:
		a->etag = value;
		break;
	case OPT_SHOW_CONNSTR:
		a->show_connstr = 1;
		break;
	case OPT_MAX_COUNT: {
		char *end;
		long n = strtol(value, &end, 10);

		if (end == value || *end != '\0' || n < 1 || n > 1000)
			return twinctl_usage_error(a->conf, "--max-count takes 1 to 1000.");
		a->max_count = (int)n;
		break;
	}
	case OPT_CONTINUATION:
		a->continuation = value;
		break;
	case OPT_ALL:
		a->all = 1;
		break;
	}
	return TWINCTL_EXIT_OK;
}

/* Parse a subcommand that takes exactly one DEVICE_ID. */
static int parse_with_id(device_args *a, int argc, char **argv, const struct option *opts,
                         const char *help, const char **id)
{
	int n = 0,
	    rc = twinctl_parse(a->conf, argc, argv, opts, help, on_device_option, a, id, 1, &n);

	if (rc == TWINCTL_EXIT_OK && n != 1)
		return twinctl_usage_error(a->conf, "DEVICE_ID is missing (see --help).");
	return rc;
}

/* The identity object for createDevice or updateDevice; NULL if empty. */
static cJSON *identity_spec(const device_args *a, const cJSON *current_auth)
{
	cJSON *spec = cJSON_CreateObject(),
	      *auth = twinctl_credentials_json(&a->cred, current_auth);

	if (a->status != NULL)
		cJSON_AddStringToObject(spec, "status", a->status);
	if (a->status_reason != NULL)
		cJSON_AddStringToObject(spec, "statusReason", a->status_reason);
	if (auth != NULL)
		cJSON_AddItemToObject(spec, "authentication", auth);
	if (spec->child == NULL) {
		cJSON_Delete(spec);
		return NULL;
	}
	return spec;
}

/* A command object {"command":name,"deviceId":id}. */
static cJSON *command(const char *name, const char *id)
{
	cJSON *cmd = cJSON_CreateObject();

	cJSON_AddStringToObject(cmd, "command", name);
	if (id != NULL)
		cJSON_AddStringToObject(cmd, "deviceId", id);
	return cmd;
}

/* Run cmd on its own connection and print the identity it returns. */
static int run_and_print(const device_args *a, cJSON *cmd)
{
	cJSON *data = NULL;
	int rc = twinctl_call_once(a->conf, cmd, &data);

	if (rc == TWINCTL_EXIT_OK && a->show_connstr && data != NULL)
		twinctl_add_connection_string(a->conf, data);
	if (rc == TWINCTL_EXIT_OK)
		twinctl_print(a->conf, data);
	cJSON_Delete(data);
	return rc;
}

/* ---- create ---- */

static const char create_help[] =
        "usage: twinctl device create DEVICE_ID [options]\n"
        "\n"
        "Create a device identity (createDevice) and print it, with its keys.\n"
        "\n"
        "  --status enabled|disabled (default enabled)\n"
        "  --status-reason TEXT\n" AUTH_HELP
        "                            (a key not given is generated)\n"
        "  --tags JSON               the new twin's tags (a JSON object)\n"
        "  --desired JSON            the new twin's desired properties (a JSON object)\n"
        "  --show-connection-string  add \"connectionString\" to the printed identity:\n"
        "                            HostName=HUB;DeviceId=ID;SharedAccessKey=PRIMARYKEY\n"
        "                            (X.509: HostName=HUB;DeviceId=ID;x509=true), HUB\n"
        "                            being the connection string's HostName, else the\n"
        "                            broker host\n" CONNECTION_HELP;

/* The initial twin {"tags":…,"properties":{"desired":…}} from the flags. */
static int initial_twin(const device_args *a, cJSON **twin)
{
	cJSON *tags = NULL, *desired = NULL;
	int rc = TWINCTL_EXIT_OK;

	*twin = NULL;
	if (a->tags != NULL)
		rc = twinctl_json_object_arg(a->conf, "--tags", a->tags, &tags);
	if (rc == TWINCTL_EXIT_OK && a->desired != NULL)
		rc = twinctl_json_object_arg(a->conf, "--desired", a->desired, &desired);
	if (rc == TWINCTL_EXIT_OK && (tags != NULL || desired != NULL)) {
		*twin = cJSON_CreateObject();
		if (tags != NULL)
			cJSON_AddItemToObject(*twin, "tags", tags);
		if (desired != NULL)
			cJSON_AddItemToObject(cJSON_AddObjectToObject(*twin, "properties"),
			                      "desired", desired);
		return rc;
	}
	cJSON_Delete(tags);
	cJSON_Delete(desired);
	return rc;
}

static int device_create(twinctl_conf *conf, int argc, char **argv)
{
	static const struct option opts[] = {
	        OPT("status", required_argument, OPT_STATUS),
	        OPT("status-reason", required_argument, OPT_STATUS_REASON),
	        AUTH_OPTIONS,
	        OPT("tags", required_argument, OPT_TAGS),
	        OPT("desired", required_argument, OPT_DESIRED),
	        OPT("show-connection-string", no_argument, OPT_SHOW_CONNSTR),
	        {0},
	};
	device_args a = {.conf = conf};
	const char *id = NULL;
	cJSON *cmd, *spec, *twin = NULL;
	int rc = parse_with_id(&a, argc, argv, opts, create_help, &id);

	if (rc == TWINCTL_EXIT_OK)
		rc = twinctl_credentials_check(conf, &a.cred);
	if (rc == TWINCTL_EXIT_OK)
		rc = initial_twin(&a, &twin);
	if (rc != TWINCTL_EXIT_OK)
		return rc;
	cmd = command("createDevice", id);
	spec = identity_spec(&a, NULL);
	if (spec != NULL)
		cJSON_AddItemToObject(cmd, "device", spec);
	if (twin != NULL)
		cJSON_AddItemToObject(cmd, "twin", twin);
	return run_and_print(&a, cmd);
}

/* ---- show, delete ---- */

static const char show_help[] = "usage: twinctl device show DEVICE_ID [--show-connection-string]\n"
                                "\n"
                                "Print a device identity (getDevice).\n"
                                "\n"
                                "  --show-connection-string  add \"connectionString\" (see device "
                                "create --help)\n" CONNECTION_HELP;

static int device_show(twinctl_conf *conf, int argc, char **argv)
{
	static const struct option opts[] = {
	        OPT("show-connection-string", no_argument, OPT_SHOW_CONNSTR),
	        {0},
	};
	device_args a = {.conf = conf};
	const char *id = NULL;
	int rc = parse_with_id(&a, argc, argv, opts, show_help, &id);

	return rc == TWINCTL_EXIT_OK ? run_and_print(&a, command("getDevice", id)) : rc;
}

static const char delete_help[] =
        "usage: twinctl device delete DEVICE_ID [--etag ETAG]\n"
        "\n"
        "Delete a device identity and its twin (deleteDevice); a connected device\n"
        "is disconnected. Prints nothing.\n"
        "\n"
        "  --etag ETAG   delete only if the identity's etag is still ETAG (\"*\": "
        "any)\n" CONNECTION_HELP;

static int device_delete(twinctl_conf *conf, int argc, char **argv)
{
	static const struct option opts[] = {OPT("etag", required_argument, OPT_ETAG), {0}};
	device_args a = {.conf = conf};
	const char *id = NULL;
	cJSON *cmd;
	int rc = parse_with_id(&a, argc, argv, opts, delete_help, &id);

	if (rc != TWINCTL_EXIT_OK)
		return rc;
	cmd = command("deleteDevice", id);
	if (a.etag != NULL)
		cJSON_AddStringToObject(cmd, "etag", a.etag);
	return run_and_print(&a, cmd);
}

/* ---- update ---- */

static const char update_help[] =
        "usage: twinctl device update DEVICE_ID [options]\n"
        "\n"
        "Change a device identity (updateDevice) and print it. Disabling it or\n"
        "changing its credentials closes its connection.\n"
        "\n"
        "  --status enabled|disabled\n"
        "  --status-reason TEXT\n"
        "  --regenerate-keys         new primary and secondary keys (sas)\n" AUTH_HELP
        "                            (a key or thumbprint not given is kept unless\n"
        "                            the type changes)\n"
        "  --etag ETAG               update only if the identity's etag is still ETAG\n"
        "  --show-connection-string  add \"connectionString\" (see device create "
        "--help)\n" CONNECTION_HELP;

/* Read identity id (getDevice) on s, for its current authentication. On
 * TWINCTL_EXIT_OK *identity is owned by the caller. */
static int current_identity(twinctl_session *s, const char *id, cJSON **identity)
{
	cJSON *cmd = command("getDevice", id);
	int rc = twinctl_session_call(s, cmd, identity);

	cJSON_Delete(cmd);
	return rc;
}

static int device_update(twinctl_conf *conf, int argc, char **argv)
{
	static const struct option opts[] = {
	        OPT("status", required_argument, OPT_STATUS),
	        OPT("status-reason", required_argument, OPT_STATUS_REASON),
	        OPT("regenerate-keys", no_argument, OPT_REGENERATE),
	        AUTH_OPTIONS,
	        OPT("etag", required_argument, OPT_ETAG),
	        OPT("show-connection-string", no_argument, OPT_SHOW_CONNSTR),
	        {0},
	};
	device_args a = {.conf = conf};
	twinctl_session *s = NULL;
	const char *id = NULL;
	cJSON *current = NULL, *spec = NULL, *cmd = NULL, *data = NULL;
	int rc = parse_with_id(&a, argc, argv, opts, update_help, &id);

	if (rc == TWINCTL_EXIT_OK)
		rc = twinctl_credentials_check(conf, &a.cred);
	if (rc == TWINCTL_EXIT_OK && a.status == NULL && a.status_reason == NULL &&
	    twinctl_credentials_type(&a.cred) == NULL)
		rc = twinctl_usage_error(conf, "nothing to update (see --help).");
	if (rc == TWINCTL_EXIT_OK)
		rc = twinctl_session_open(conf, &s);
	if (rc == TWINCTL_EXIT_OK && twinctl_credentials_partial(&a.cred))
		rc = current_identity(s, id, &current);
	if (rc != TWINCTL_EXIT_OK)
		goto out;
	spec = identity_spec(&a, cJSON_GetObjectItemCaseSensitive(current, "authentication"));
	cmd = command("updateDevice", id);
	cJSON_AddItemToObject(cmd, "device", spec);
	if (a.etag != NULL)
		cJSON_AddStringToObject(cmd, "etag", a.etag);
	rc = twinctl_session_call(s, cmd, &data);
	if (rc == TWINCTL_EXIT_OK && a.show_connstr && data != NULL)
		twinctl_add_connection_string(conf, data);
	if (rc == TWINCTL_EXIT_OK)
		twinctl_print(conf, data);
out:
	twinctl_session_close(s);
	cJSON_Delete(current);
	cJSON_Delete(cmd);
	cJSON_Delete(data);
	return rc;
}

/* ---- list ---- */

static const char list_help[] =
        "usage: twinctl device list [--max-count N] [--continuation-token TOKEN] [--all]\n"
        "\n"
        "List device identities in deviceId order (listDevices). Prints one page,\n"
        "{\"devices\":[…],\"continuationToken\":TOKEN or null}; pass TOKEN back with\n"
        "--continuation-token for the next page.\n"
        "\n"
        "  --max-count N               identities per page, 1 to 1000 (default 100)\n"
        "  --continuation-token TOKEN  start where an earlier page ended\n"
        "  --all                       follow the continuation tokens and print every\n"
        "                              identity as one JSON array\n" CONNECTION_HELP;

static cJSON *list_command(const device_args *a, const char *token)
{
	cJSON *cmd = command("listDevices", NULL);

	if (a->max_count > 0)
		cJSON_AddNumberToObject(cmd, "maxCount", a->max_count);
	if (token != NULL)
		cJSON_AddStringToObject(cmd, "continuationToken", token);
	return cmd;
}

/* Move page's devices to the end of all; *token becomes the page's
 * continuation token (malloc'd) or NULL on the last page. */
static int take_page(cJSON *page, cJSON *all, char **token)
{
	cJSON *devices = cJSON_GetObjectItemCaseSensitive(page, "devices"), *d;
	const cJSON *next = cJSON_GetObjectItemCaseSensitive(page, "continuationToken");

	free(*token);
	*token = NULL;
	if (!cJSON_IsArray(devices)) {
		fprintf(stderr, "twinctl: malformed listDevices response: no devices array.\n");
		return TWINCTL_EXIT_API;
	}
	while ((d = cJSON_DetachItemFromArray(devices, 0)) != NULL)
		cJSON_AddItemToArray(all, d);
	if (cJSON_IsString(next) && (*token = strdup(next->valuestring)) == NULL) {
		fprintf(stderr, "twinctl: out of memory.\n");
		return TWINCTL_EXIT_API;
	}
	return TWINCTL_EXIT_OK;
}

/* --all: every page on one connection, printed as one array. */
static int list_all(const device_args *a)
{
	twinctl_session *s = NULL;
	cJSON *all = cJSON_CreateArray();
	const char *from = a->continuation;
	char *token = NULL;
	int rc = twinctl_session_open(a->conf, &s);

	while (rc == TWINCTL_EXIT_OK) {
		cJSON *cmd = list_command(a, from), *page = NULL;

		rc = twinctl_session_call(s, cmd, &page);
		if (rc == TWINCTL_EXIT_OK)
			rc = take_page(page, all, &token);
		cJSON_Delete(cmd);
		cJSON_Delete(page);
		if (token == NULL)
			break;
		from = token;
	}
	if (rc == TWINCTL_EXIT_OK)
		twinctl_print(a->conf, all);
	twinctl_session_close(s);
	cJSON_Delete(all);
	free(token);
	return rc;
}

static int device_list(twinctl_conf *conf, int argc, char **argv)
{
	static const struct option opts[] = {
	        OPT("max-count", required_argument, OPT_MAX_COUNT),
	        OPT("continuation-token", required_argument, OPT_CONTINUATION),
	        OPT("all", no_argument, OPT_ALL),
	        {0},
	};
	device_args a = {.conf = conf};
	int n = 0, rc = twinctl_parse(conf, argc, argv, opts, list_help, on_device_option, &a, NULL,
	                              0, &n);

	if (rc != TWINCTL_EXIT_OK)
		return rc;
	return a.all ? list_all(&a) : run_and_print(&a, list_command(&a, a.continuation));
}

/* ---- the group ---- */

static const char device_help[] =
        "usage: twinctl [connection options] device SUBCOMMAND [options]\n"
        "\n"
        "Device identities (IoT Hub's registry):\n"
        "  create DEVICE_ID   create one (createDevice)\n"
        "  show DEVICE_ID     print one (getDevice)\n"
        "  update DEVICE_ID   change status or credentials (updateDevice)\n"
        "  delete DEVICE_ID   delete one with its twin (deleteDevice)\n"
        "  list               list them, a page at a time (listDevices)\n"
        "\n"
        "twinctl device SUBCOMMAND --help describes each one.\n";

int twinctl_device_main(twinctl_conf *conf, int argc, char **argv)
{
	static const twinctl_subcommand subs[] = {
	        {"create", device_create}, {"show", device_show}, {"update", device_update},
	        {"delete", device_delete}, {"list", device_list}, {NULL, NULL},
	};
	return twinctl_dispatch(conf, "device", device_help, subs, argc, argv);
}
