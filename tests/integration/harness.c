/*
 * harness.c - the harness's entry: tb_cleanup_all(), which frees whatever a
 * failed test left behind, and the fail-on-error primitives the other
 * harness files share (harness_internal.h has the map of those files).
 *
 * Every broker and client the harness creates is registered in a list owned
 * by its own file (harness_broker.c, harness_client.c); tb_cleanup_all()
 * empties both, clients first, so no client thread still talks to a broker
 * that is being stopped.
 */
#define _GNU_SOURCE
#include "harness_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

char *tbi_xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		fail_msg("out of memory");
	return s;
}

char *tbi_xstrdup(const char *s)
{
	char *d = strdup(s);

	if (d == NULL)
		fail_msg("out of memory");
	return d;
}

int64_t tbi_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tbi_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

void tbi_deadline_ts(struct timespec *ts, int timeout_ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += timeout_ms / 1000;
	ts->tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (ts->tv_nsec >= 1000000000) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000;
	}
}

void tb_cleanup_all(void)
{
	char *problems;

	tbi_clients_free_all();
	problems = tbi_brokers_release_all();
	if (problems != NULL) {
		print_error("%s\n", problems);
		free(problems);
		fail_msg("broker teardown failed (see above)");
	}
}
