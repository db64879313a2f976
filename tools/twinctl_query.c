/*
 * twinctl_query.c - `twinctl query "SELECT …"`: fleet queries (PROTOCOL.md
 * §8) through the control API's query command.
 *
 * Every page is fetched on one connection, following continuation tokens,
 * and the items are printed as one JSON array, as `az iot hub query` does.
 * --top stops asking for pages once that many items arrived; the query's
 * own TOP caps the result on the broker.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "twinctl.h"

enum { OPT_TOP = 0x200, OPT_PAGE_SIZE };

typedef struct query_args {
	twinctl_conf *conf;
	long top;       /* --top; -1: all */
	long page_size; /* --page-size; 0: the broker's default */
} query_args;

static const char query_help[] =
        "usage: twinctl query [--top N] [--page-size N] \"SELECT … FROM devices …\"\n"
        "\n"
        "Run a query in IoT Hub's query language over every twin (the query\n"
        "command). Pages are followed to the end and printed as one JSON array.\n"
        "A query sees every change committed before it, with no delay.\n"
        "\n"
        "  --top N         print at most N items and stop asking for more\n"
        "  --page-size N   items per page, 1 to 1000 (default 100)\n"
        "\n"
        "Examples:\n"
        "  twinctl query \"SELECT * FROM devices WHERE tags.site = 'north'\"\n"
        "  twinctl query \"SELECT properties.reported.fw AS fw, COUNT() AS n FROM devices\n"
        "                 GROUP BY properties.reported.fw\"\n"
        "\nConnection options (twinctl --help) may come anywhere.\n";

static int number(const twinctl_conf *conf, const char *name, const char *text, long min, long max,
                  long *out)
{
	char *end;
	long v = strtol(text, &end, 10);

	if (*text == '\0' || *end != '\0' || v < min || v > max)
		return twinctl_usage_error(conf, "%s must be a whole number from %ld to %ld.", name,
		                           min, max);
	*out = v;
	return TWINCTL_EXIT_OK;
}

static int on_query_option(void *arg, int val, const char *value)
{
	query_args *a = arg;

	if (val == OPT_TOP)
		return number(a->conf, "--top", value, 0, 1000000000L, &a->top);
	return number(a->conf, "--page-size", value, 1, 1000, &a->page_size);
}

static cJSON *page_command(const query_args *a, const char *text, const char *token)
{
	cJSON *cmd = cJSON_CreateObject();

	cJSON_AddStringToObject(cmd, "command", "query");
	cJSON_AddStringToObject(cmd, "query", text);
	if (a->page_size > 0)
		cJSON_AddNumberToObject(cmd, "pageSize", (double)a->page_size);
	if (token != NULL)
		cJSON_AddStringToObject(cmd, "continuationToken", token);
	return cmd;
}

/* Move the page's items to all (up to --top); *token becomes the next
 * page's token (malloc'd) or NULL when there is none or --top is reached. */
static int take_page(const query_args *a, cJSON *page, cJSON *all, char **token)
{
	cJSON *items = cJSON_GetObjectItemCaseSensitive(page, "items"), *it;
	const cJSON *next = cJSON_GetObjectItemCaseSensitive(page, "continuationToken");

	free(*token);
	*token = NULL;
	if (!cJSON_IsArray(items)) {
		fprintf(stderr, "twinctl: malformed query response: no items array.\n");
		return TWINCTL_EXIT_API;
	}
	while ((a->top < 0 || cJSON_GetArraySize(all) < a->top) &&
	       (it = cJSON_DetachItemFromArray(items, 0)) != NULL)
		cJSON_AddItemToArray(all, it);
	if (a->top >= 0 && cJSON_GetArraySize(all) >= a->top)
		return TWINCTL_EXIT_OK;
	if (cJSON_IsString(next) && (*token = strdup(next->valuestring)) == NULL) {
		fprintf(stderr, "twinctl: out of memory.\n");
		return TWINCTL_EXIT_API;
	}
	return TWINCTL_EXIT_OK;
}

int twinctl_query_main(twinctl_conf *conf, int argc, char **argv)
{
	static const struct option opts[] = {
	        {"top", required_argument, NULL, OPT_TOP},
	        {"page-size", required_argument, NULL, OPT_PAGE_SIZE},
	        {0},
	};
	query_args a = {.conf = conf, .top = -1};
	const char *text = NULL;
	twinctl_session *s = NULL;
	cJSON *all = NULL;
	char *token = NULL;
	int n = 0, rc;

	snprintf(conf->command_name, sizeof(conf->command_name), "query");
	rc = twinctl_parse(conf, argc, argv, opts, query_help, on_query_option, &a, &text, 1, &n);
	if (rc == TWINCTL_EXIT_OK && n != 1)
		rc = twinctl_usage_error(conf, "the query text is missing (see --help).");
	if (rc != TWINCTL_EXIT_OK)
		return rc;
	all = cJSON_CreateArray();
	rc = twinctl_session_open(conf, &s);
	while (rc == TWINCTL_EXIT_OK && (a.top < 0 || cJSON_GetArraySize(all) < a.top)) {
		cJSON *cmd = page_command(&a, text, token), *page = NULL;

		rc = twinctl_session_call(s, cmd, &page);
		if (rc == TWINCTL_EXIT_OK)
			rc = take_page(&a, page, all, &token);
		cJSON_Delete(cmd);
		cJSON_Delete(page);
		if (token == NULL)
			break;
	}
	if (rc == TWINCTL_EXIT_OK)
		twinctl_print(conf, all);
	twinctl_session_close(s);
	cJSON_Delete(all);
	free(token);
	return rc;
}
