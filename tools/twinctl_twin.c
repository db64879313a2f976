/*
 * twinctl_twin.c - `twinctl twin show|update|replace`: device twins through
 * getTwin, updateTwin and replaceTwin (README "The control API").
 *
 * update merges (a null in --desired or --tags removes that key); replace
 * sets tags and desired properties to exactly what is given, {} for a
 * section not given, and the device receives null for every desired key
 * that went away. Both print the resulting twin. JSON arguments are parsed
 * here first so a typo is a usage error, not a round trip.
 *
 * `update --query COND` updates every twin that matches instead of one: it
 * creates a scheduleUpdateTwin job and waits for it (twinctl_job.c), since
 * the broker, not this process, walks the fleet.
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "twinctl.h"

enum { OPT_DESIRED = 0x200, OPT_TAGS, OPT_ETAG, OPT_QUERY };

typedef struct twin_args {
	twinctl_conf *conf;
	const char *desired, *tags, *etag, *query; /* argv's */
} twin_args;

#define CONNECTION_HELP "\nConnection options (twinctl --help) may come anywhere.\n"

static int on_twin_option(void *arg, int val, const char *value)
{
	twin_args *a = arg;

	if (val == OPT_DESIRED)
		a->desired = value;
	else if (val == OPT_TAGS)
		a->tags = value;
	else if (val == OPT_ETAG)
		a->etag = value;
	else if (val == OPT_QUERY)
		a->query = value;
	return TWINCTL_EXIT_OK;
}

static const struct option write_options[] = {
        {"desired", required_argument, NULL, OPT_DESIRED},
        {"tags", required_argument, NULL, OPT_TAGS},
        {"etag", required_argument, NULL, OPT_ETAG},
        {0},
};

/* Parse a twin subcommand: exactly one DEVICE_ID. */
static int parse(twin_args *a, int argc, char **argv, const struct option *opts, const char *help,
                 const char **id)
{
	int n = 0,
	    rc = twinctl_parse(a->conf, argc, argv, opts, help, on_twin_option, a, id, 1, &n);

	if (rc == TWINCTL_EXIT_OK && n != 1)
		return twinctl_usage_error(a->conf, "DEVICE_ID is missing (see --help).");
	return rc;
}

/* A section given as JSON text, or {} when replacing and not given;
 * *out NULL means "leave it out". */
static int section(const twin_args *a, const char *name, const char *text, int replace, cJSON **out)
{
	*out = NULL;
	if (text != NULL)
		return twinctl_json_object_arg(a->conf, name, text, out);
	if (replace)
		*out = cJSON_CreateObject();
	return TWINCTL_EXIT_OK;
}

/* The command {"command":…,"deviceId":id,"twin":{"tags":…,"properties":
 * {"desired":…}},"etag":…} for update or replace. */
static int write_command(const twin_args *a, const char *name, const char *id, int replace,
                         cJSON **cmd)
{
	cJSON *tags = NULL, *desired = NULL, *twin;
	int rc = section(a, "--tags", a->tags, replace, &tags);

	*cmd = NULL;
	if (rc == TWINCTL_EXIT_OK)
		rc = section(a, "--desired", a->desired, replace, &desired);
	if (rc != TWINCTL_EXIT_OK) {
		cJSON_Delete(tags);
		return rc;
	}
	*cmd = cJSON_CreateObject();
	cJSON_AddStringToObject(*cmd, "command", name);
	cJSON_AddStringToObject(*cmd, "deviceId", id);
	twin = cJSON_AddObjectToObject(*cmd, "twin");
	if (tags != NULL)
		cJSON_AddItemToObject(twin, "tags", tags);
	if (desired != NULL)
		cJSON_AddItemToObject(cJSON_AddObjectToObject(twin, "properties"), "desired",
		                      desired);
	if (a->etag != NULL)
		cJSON_AddStringToObject(*cmd, "etag", a->etag);
	return TWINCTL_EXIT_OK;
}

static const char show_help[] = "usage: twinctl twin show DEVICE_ID\n"
                                "\n"
                                "Print a device twin (getTwin).\n" CONNECTION_HELP;

static int twin_show(twinctl_conf *conf, int argc, char **argv)
{
	static const struct option none[] = {{0}};
	twin_args a = {.conf = conf};
	const char *id = NULL;
	cJSON *cmd;
	int rc = parse(&a, argc, argv, none, show_help, &id);

	if (rc != TWINCTL_EXIT_OK)
		return rc;
	cmd = cJSON_CreateObject();
	cJSON_AddStringToObject(cmd, "command", "getTwin");
	cJSON_AddStringToObject(cmd, "deviceId", id);
	return twinctl_call_and_print(conf, cmd);
}

static const char update_help[] =
        "usage: twinctl twin update DEVICE_ID [--desired JSON] [--tags JSON] [--etag ETAG]\n"
        "       twinctl twin update --query COND [--desired JSON] [--tags JSON] [--etag ETAG]\n"
        "\n"
        "Merge a patch into a device twin (updateTwin) and print the twin. A null\n"
        "value removes its key. The device is notified of desired changes.\n"
        "\n"
        "  --desired JSON   patch of the desired properties (a JSON object)\n"
        "  --tags JSON      patch of the tags (a JSON object)\n"
        "  --etag ETAG      write only if the twin's etag is still ETAG (\"*\": any)\n"
        "  --query COND     instead of one DEVICE_ID, every twin that matches COND, a\n"
        "                   WHERE condition such as \"tags.site = 'north'\": creates a\n"
        "                   job twinctl-<unix seconds>-<pid> and waits for it exactly\n"
        "                   as `twinctl job create --wait` does (see its --help)\n"
        "At least one of --desired and --tags is needed.\n" CONNECTION_HELP;

/* --query: the patch as a job over the fleet, waited for. */
static int update_fleet(const twin_args *a)
{
	char job_id[64];
	twinctl_job_spec spec = {
	        .job_id = job_id,
	        .query = a->query,
	        .desired = a->desired,
	        .tags = a->tags,
	        .etag = a->etag,
	        .wait = 1,
	};

	snprintf(job_id, sizeof(job_id), "twinctl-%lld-%ld", (long long)time(NULL), (long)getpid());
	return twinctl_job_run(a->conf, &spec);
}

static int twin_update(twinctl_conf *conf, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"desired", required_argument, NULL, OPT_DESIRED},
	        {"tags", required_argument, NULL, OPT_TAGS},
	        {"etag", required_argument, NULL, OPT_ETAG},
	        {"query", required_argument, NULL, OPT_QUERY},
	        {0},
	};
	twin_args a = {.conf = conf};
	const char *id = NULL;
	cJSON *cmd = NULL;
	int n = 0,
	    rc = twinctl_parse(conf, argc, argv, opts, update_help, on_twin_option, &a, &id, 1, &n);

	if (rc == TWINCTL_EXIT_OK && a.query != NULL && n != 0)
		rc = twinctl_usage_error(conf, "give DEVICE_ID or --query, not both.");
	else if (rc == TWINCTL_EXIT_OK && a.query == NULL && n != 1)
		rc = twinctl_usage_error(conf, "DEVICE_ID or --query is missing (see --help).");
	if (rc == TWINCTL_EXIT_OK && a.desired == NULL && a.tags == NULL)
		rc = twinctl_usage_error(conf, "give --desired, --tags or both.");
	if (rc == TWINCTL_EXIT_OK && a.query != NULL)
		return update_fleet(&a);
	if (rc == TWINCTL_EXIT_OK)
		rc = write_command(&a, "updateTwin", id, 0, &cmd);
	return rc == TWINCTL_EXIT_OK ? twinctl_call_and_print(conf, cmd) : rc;
}

static const char replace_help[] =
        "usage: twinctl twin replace DEVICE_ID [options]\n"
        "\n"
        "Replace the tags and desired properties of a device twin (replaceTwin) and\n"
        "print the twin. A section not given becomes {}. The device receives the\n"
        "new desired properties, with null for every key that went away.\n"
        "\n"
        "  --desired JSON   the new desired properties (a JSON object; default {})\n"
        "  --tags JSON      the new tags (a JSON object; default {})\n"
        "  --etag ETAG      write only if the twin's etag is still ETAG (\"*\": "
        "any)\n" CONNECTION_HELP;

static int twin_replace(twinctl_conf *conf, int argc, char **argv)
{
	twin_args a = {.conf = conf};
	const char *id = NULL;
	cJSON *cmd = NULL;
	int rc = parse(&a, argc, argv, write_options, replace_help, &id);

	if (rc == TWINCTL_EXIT_OK)
		rc = write_command(&a, "replaceTwin", id, 1, &cmd);
	return rc == TWINCTL_EXIT_OK ? twinctl_call_and_print(conf, cmd) : rc;
}

static const char twin_help[] =
        "usage: twinctl [connection options] twin SUBCOMMAND DEVICE_ID [options]\n"
        "       twinctl [connection options] twin update --query COND [options]\n"
        "\n"
        "Device twins:\n"
        "  show DEVICE_ID      print the twin (getTwin)\n"
        "  update DEVICE_ID    merge desired properties and tags (updateTwin)\n"
        "  update --query COND the same for every twin that matches, as a job\n"
        "  replace DEVICE_ID   replace desired properties and tags (replaceTwin)\n"
        "\n"
        "twinctl twin SUBCOMMAND --help describes each one.\n";

int twinctl_twin_main(twinctl_conf *conf, int argc, char **argv)
{
	static const twinctl_subcommand subs[] = {
	        {"show", twin_show},
	        {"update", twin_update},
	        {"replace", twin_replace},
	        {NULL, NULL},
	};
	return twinctl_dispatch(conf, "twin", twin_help, subs, argc, argv);
}
