/*
 * harness_twin.c - helpers that speak the device twin protocol over a
 * tb_client: a request and its reply, a barrier that proves nothing else is
 * on its way, and parsing of "$iothub/twin/res/{status}/?$rid=..." topics.
 */
#define _GNU_SOURCE
#include "harness_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

tb_msg *tb_twin_request(tb_client *c, const char *topic, const char *body, int qos, int timeout_ms)
{
	if (tb_client_publish(c, topic, body, -1, qos, false) < 0)
		return NULL;
	return tb_client_wait(c, "$iothub/twin/res/", timeout_ms);
}

void tb_twin_assert_quiet(tb_client *c)
{
	static unsigned seq;
	char topic[64], want[80], extra[2048] = "";
	size_t used = 0;
	tb_msg *m;
	bool replied = false;

	seq++;
	snprintf(topic, sizeof(topic), "$iothub/twin/GET/?$rid=quiet-%u", seq);
	snprintf(want, sizeof(want), "$iothub/twin/res/200/?$rid=quiet-%u", seq);
	if (tb_client_publish(c, topic, NULL, 0, 1, false) < 0)
		fail_msg("barrier GET %s was not acknowledged", topic);
	while ((m = tb_client_wait(c, "", TB_WAIT_MS)) != NULL) {
		bool done = strcmp(m->topic, want) == 0;

		if (!done && used < sizeof(extra) - 1)
			used += (size_t)snprintf(extra + used, sizeof(extra) - used,
			                         "\n  %s (%d bytes, qos %d%s): %.200s", m->topic,
			                         m->payloadlen, m->qos,
			                         m->retain ? ", retained" : "", m->payload);
		tb_msg_free(m);
		if (done) {
			replied = true;
			break;
		}
	}
	if (!replied)
		fail_msg("no reply to the barrier GET %s within %d ms%s%s", topic, TB_WAIT_MS,
		         used ? "; received instead:" : "", extra);
	if (used > 0)
		fail_msg("unexpected messages before the barrier reply:%s", extra);
	if (tb_client_queue_len(c) != 0)
		fail_msg("%d unexpected message(s) after the barrier reply",
		         tb_client_queue_len(c));
}

int tb_res_status(const char *topic)
{
	static const char prefix[] = "$iothub/twin/res/";
	const char *p;
	int status = 0;

	if (strncmp(topic, prefix, sizeof(prefix) - 1) != 0)
		return -1;
	p = topic + sizeof(prefix) - 1;
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9' && status < 100000; p++)
		status = status * 10 + (*p - '0');
	return *p == '/' ? status : -1;
}

char *tb_topic_param(const char *topic, const char *name)
{
	const char *q = strchr(topic, '?');
	size_t nlen = strlen(name);

	while (q != NULL) {
		const char *pair = q + 1, *end = pair + strcspn(pair, "&");
		const char *eq = memchr(pair, '=', (size_t)(end - pair));
		const char *nend = eq != NULL ? eq : end;

		if ((size_t)(nend - pair) == nlen && strncmp(pair, name, nlen) == 0)
			return eq != NULL ? strndup(eq + 1, (size_t)(end - eq - 1)) : strdup("");
		q = *end == '&' ? end : NULL;
	}
	return NULL;
}
