/*
 * harness_broker_setup.c - what a broker process starts with: its private
 * temporary directory, the mosquitto.conf written into it, and its
 * environment, which under TWIN_SANITIZE preloads the ASan and UBSan
 * runtimes the plugin was built against (the mosquitto binary is not
 * instrumented, so the runtimes must be in the process before the plugin).
 *
 * The configuration and environment follow tests/integration/conftest.py
 * (the pytest harness) so that both start mosquitto the same way.
 * harness_broker.c runs the process.
 */
#define _GNU_SOURCE
#include "harness_internal.h"

#include <errno.h>
#include <ftw.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

/* ---- temporary directories ------------------------------------------------ */

static bool keep_tmp(void)
{
	const char *k = getenv("TWIN_KEEP_TMP");

	return k != NULL && k[0] != '\0';
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void rm_tree(const char *path)
{
	nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

char *tb_tmpdir_new(const char *name)
{
	const char *base = getenv("TWIN_TEST_TMPDIR");
	char *path;

	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	mkdir(base, 0700);
	path = tbi_xasprintf("%s/%s.XXXXXX", base, name);
	if (mkdtemp(path) == NULL) {
		int e = errno;

		free(path);
		fail_msg("mkdtemp under %s: %s", base, strerror(e));
	}
	return path;
}

void tb_tmpdir_free(char *path)
{
	if (path == NULL)
		return;
	if (!keep_tmp())
		rm_tree(path);
	free(path);
}

/* ---- environment ---------------------------------------------------------- */

const char *tbi_env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);

	return v != NULL && v[0] != '\0' ? v : fallback;
}

static const char *plugin_path(void)
{
	const char *p = getenv("TWIN_PLUGIN");

	if (p == NULL || p[0] == '\0')
		fail_msg("TWIN_PLUGIN is not set (path of mosquitto_twin.so)");
	return p;
}

static bool sanitize_on(void)
{
	const char *s = tbi_env_or("TWIN_SANITIZE", "OFF");

	return strcasecmp(s, "ON") == 0 || strcmp(s, "1") == 0 || strcasecmp(s, "TRUE") == 0 ||
	       strcasecmp(s, "YES") == 0;
}

/* A command's standard output, malloc'd; "" when it could not run. */
static char *capture(const char *cmd)
{
	FILE *p = popen(cmd, "r");
	size_t len = 0, cap = 4096;
	char *out = malloc(cap);

	if (out == NULL)
		fail_msg("out of memory");
	if (p != NULL) {
		size_t n;

		while ((n = fread(out + len, 1, cap - len - 1, p)) > 0) {
			len += n;
			if (cap - len < 2 && (out = realloc(out, cap *= 2)) == NULL)
				fail_msg("out of memory");
		}
		pclose(p);
	}
	out[len] = '\0';
	return out;
}

/* One sanitizer runtime for LD_PRELOAD: the one the plugin links (ldd), else
 * gcc's; as conftest.py's sanitizer_env(). malloc'd. */
static char *sanitizer_lib(const char *lib)
{
	char *cmd = tbi_xasprintf("ldd '%s' 2>/dev/null", plugin_path());
	char *out = capture(cmd), *line, *save = NULL, *found = NULL;

	free(cmd);
	for (line = strtok_r(out, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *name = line + strspn(line, " \t"), *arrow = strstr(line, " => ");

		if (strncmp(name, lib, strlen(lib)) == 0 && name[strlen(lib)] == '.' &&
		    arrow != NULL && arrow[4] == '/') {
			found = tbi_xstrdup(arrow + 4);
			found[strcspn(found, " \t")] = '\0';
			break;
		}
	}
	free(out);
	if (found != NULL)
		return found;
	cmd = tbi_xasprintf("gcc -print-file-name=%s.so 2>/dev/null", lib);
	found = capture(cmd);
	free(cmd);
	found[strcspn(found, "\n")] = '\0';
	if (found[0] != '/') {
		free(found);
		fail_msg("TWIN_SANITIZE is ON but %s.so was not found", lib);
	}
	return found;
}

/* The broker's environment: ours, plus the sanitizer runtimes when
 * TWIN_SANITIZE is ON. A NULL-terminated array of malloc'd strings. */
char **tbi_broker_env(void)
{
	size_t n = 0, k = 0;
	char **env;
	bool san = sanitize_on();

	while (environ[n] != NULL)
		n++;
	env = calloc(n + 4, sizeof(*env));
	if (env == NULL)
		fail_msg("out of memory");
	for (size_t i = 0; i < n; i++) {
		if (san && (strncmp(environ[i], "LD_PRELOAD=", 11) == 0 ||
		            strncmp(environ[i], "ASAN_OPTIONS=", 13) == 0 ||
		            strncmp(environ[i], "UBSAN_OPTIONS=", 14) == 0))
			continue;
		env[k++] = tbi_xstrdup(environ[i]);
	}
	if (san) {
		char *asan = sanitizer_lib("libasan"), *ubsan = sanitizer_lib("libubsan");

		/* ASan must come first. */
		env[k++] = tbi_xasprintf("LD_PRELOAD=%s %s", asan, ubsan);
		env[k++] = tbi_xstrdup("ASAN_OPTIONS=detect_leaks=0:halt_on_error=1");
		env[k++] = tbi_xstrdup("UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1");
		free(asan);
		free(ubsan);
	}
	return env;
}

void tbi_strv_free(char **v)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

/* ---- mosquitto.conf ------------------------------------------------------- */

/* Append "prefix line\n" for every non-empty line of lines. */
static void write_lines(FILE *f, const char *prefix, const char *lines)
{
	while (lines != NULL && *lines != '\0') {
		size_t n = strcspn(lines, "\n");

		if (n > 0)
			fprintf(f, "%s%.*s\n", prefix, (int)n, lines);
		lines += n + (lines[n] == '\n');
	}
}

void tbi_write_config(tb_broker *b)
{
	struct passwd *pw = getpwuid(geteuid());
	FILE *f = fopen(b->conf_path, "w");

	if (f == NULL)
		fail_msg("cannot write %s: %s", b->conf_path, strerror(errno));
	fprintf(f, "# generated by tests/integration/harness_broker_setup.c\n");
	/* Mosquitto started as root drops to this user before plugin init. */
	fprintf(f, "user %s\n", pw != NULL ? pw->pw_name : "root");
	fprintf(f, "listener %d 127.0.0.1\n", b->port);
	/* IoT Hub's dialect stops at QoS 1: SUBSCRIBE QoS 2 is granted 1 and a
	 * QoS 2 PUBLISH closes the connection (PROTOCOL.md §2.2). A 2.0 plugin
	 * cannot change a granted QoS, so the listener must; as conftest.py and
	 * mosquitto.conf.sample. */
	fprintf(f, "max_qos 1\n");
	fprintf(f, "allow_anonymous true\nset_tcp_nodelay true\n");
	fprintf(f, "log_dest stderr\nlog_type all\n");
	if (b->persistence)
		fprintf(f, "persistence true\npersistence_location %s/\n", b->dir);
	else
		fprintf(f, "persistence false\n");
	/* Open mode unless the test's options say otherwise (a later line wins). */
	fprintf(f, "plugin %s\nplugin_opt_db_path %s\nplugin_opt_auth open\n", plugin_path(),
	        b->db_path);
	write_lines(f, "plugin_opt_", b->plugin_opts);
	write_lines(f, "", b->config);
	if (fclose(f) != 0)
		fail_msg("cannot write %s", b->conf_path);
}
