/*
 * harness_broker_log.c - reading a broker's log (its stdout and stderr, all
 * runs appended to <dir>/broker.log): the whole log, waiting for a line of
 * the current run, and the sanitizer reports that fail a test at teardown.
 *
 * The log is re-read from disk on every look: it is small, and the broker
 * writes it from another process, so there is nothing to keep in sync.
 */
#define _GNU_SOURCE
#include "harness_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Text in the first line of a sanitizer report (ASan, LeakSanitizer, UBSan). */
#define SANITIZER_ASAN  "ERROR: AddressSanitizer"
#define SANITIZER_LSAN  "ERROR: LeakSanitizer"
#define SANITIZER_UBSAN ": runtime error: "

char *tbi_read_file_from(const char *path, long offset)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long size;
	size_t n;

	if (f == NULL)
		return strdup("");
	if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0)
		size = 0;
	if (offset > size)
		offset = size;
	buf = malloc((size_t)(size - offset) + 1);
	if (buf == NULL) {
		fclose(f);
		return NULL;
	}
	fseek(f, offset, SEEK_SET);
	n = fread(buf, 1, (size_t)(size - offset), f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

char *tb_broker_log(const tb_broker *b)
{
	char *log = tbi_read_file_from(b->log_path, 0);

	if (log == NULL)
		fail_msg("out of memory");
	return log;
}

bool tb_broker_wait_log(tb_broker *b, const char *needle, int timeout_ms)
{
	int64_t deadline = tbi_now_ms() + timeout_ms;

	for (;;) {
		char *log = tbi_read_file_from(b->log_path, b->log_offset);
		bool found = log != NULL && strstr(log, needle) != NULL;

		free(log);
		if (found)
			return true;
		if (tbi_now_ms() >= deadline)
			return false;
		tbi_sleep_ms(POLL_MS);
	}
}

char *tbi_sanitizer_reports(const tb_broker *b)
{
	char *log = tbi_read_file_from(b->log_path, 0), *line, *save = NULL, *out = NULL;
	size_t len = 0;

	for (line = log != NULL ? strtok_r(log, "\n", &save) : NULL; line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		size_t n = strlen(line);

		if (strstr(line, SANITIZER_ASAN) == NULL && strstr(line, SANITIZER_LSAN) == NULL &&
		    strstr(line, SANITIZER_UBSAN) == NULL)
			continue;
		out = realloc(out, len + n + 2);
		if (out == NULL)
			break;
		memcpy(out + len, line, n);
		len += n;
		out[len++] = '\n';
		out[len] = '\0';
	}
	free(log);
	return out;
}
