/*
 * harness_pubsub.c - what a connected client sends and receives: SUBSCRIBE,
 * UNSUBSCRIBE and PUBLISH with their acknowledgements, and the queue of
 * received messages the test reads with tb_client_wait().
 *
 * The callbacks run in the client's loop thread and touch the acknowledgement
 * table and the queue only under the client's mutex (harness_client.c).
 * Acknowledgements are indexed by packet id: a waiter looks up its id after
 * the call that sent the packet returns, so an acknowledgement that arrives
 * first is simply found already there.
 */
#define _GNU_SOURCE
#include "harness_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>

static void ack(tb_client *c, int mid, int value)
{
	pthread_mutex_lock(&c->lock);
	if (c->acks[(uint16_t)mid] == ACK_IGNORE)
		c->acks[(uint16_t)mid] = 0;
	else
		c->acks[(uint16_t)mid] = (uint16_t)(ACK_DONE | (value & 0xFF));
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid, int reason,
                       const mosquitto_property *props)
{
	(void)mosq;
	(void)props;
	ack(obj, mid, reason);
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int count, const int *granted,
                         const mosquitto_property *props)
{
	(void)mosq;
	(void)props;
	ack(obj, mid, count > 0 ? granted[0] : 0x80);
}

static void on_unsubscribe(struct mosquitto *mosq, void *obj, int mid,
                           const mosquitto_property *props)
{
	(void)mosq;
	(void)props;
	ack(obj, mid, 0);
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *m,
                       const mosquitto_property *props)
{
	tb_client *c = obj;
	tb_msg *msg = calloc(1, sizeof(*msg));
	msg_node *n = calloc(1, sizeof(*n));

	(void)mosq;
	(void)props;
	if (msg == NULL || n == NULL || (msg->topic = strdup(m->topic)) == NULL ||
	    (msg->payload = malloc((size_t)m->payloadlen + 1)) == NULL) {
		tb_msg_free(msg);
		free(n);
		return; /* the test then times out waiting for it */
	}
	if (m->payloadlen > 0)
		memcpy(msg->payload, m->payload, (size_t)m->payloadlen);
	msg->payload[m->payloadlen] = '\0';
	msg->payloadlen = m->payloadlen;
	msg->qos = m->qos;
	msg->retain = m->retain;
	n->msg = msg;
	pthread_mutex_lock(&c->lock);
	if (c->tail != NULL)
		c->tail->next = n;
	else
		c->head = n;
	c->tail = n;
	c->queued++;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/* Wait for packet mid's acknowledgement; its value, or -1 when none came in
 * time or the connection closed first. */
static int wait_ack(tb_client *c, int mid, int timeout_ms)
{
	struct timespec ts;
	uint16_t *a = &c->acks[(uint16_t)mid];
	int v = -1;

	tbi_deadline_ts(&ts, timeout_ms);
	pthread_mutex_lock(&c->lock);
	while (!(*a & ACK_DONE) && !c->closed)
		if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT)
			break;
	if (*a & ACK_DONE) {
		v = *a & 0xFF;
		*a = 0;
	} else {
		*a = ACK_IGNORE;
	}
	pthread_mutex_unlock(&c->lock);
	return v;
}

void tbi_pubsub_callbacks_set(struct mosquitto *mosq)
{
	mosquitto_publish_v5_callback_set(mosq, on_publish);
	mosquitto_subscribe_v5_callback_set(mosq, on_subscribe);
	mosquitto_unsubscribe_v5_callback_set(mosq, on_unsubscribe);
	mosquitto_message_v5_callback_set(mosq, on_message);
}

int tb_client_subscribe(tb_client *c, const char *filter, int qos)
{
	int mid;

	if (mosquitto_subscribe(c->mosq, &mid, filter, qos) != MOSQ_ERR_SUCCESS)
		return -1;
	return wait_ack(c, mid, TB_WAIT_MS);
}

int tb_client_unsubscribe(tb_client *c, const char *filter)
{
	int mid;

	if (mosquitto_unsubscribe(c->mosq, &mid, filter) != MOSQ_ERR_SUCCESS)
		return -1;
	return wait_ack(c, mid, TB_WAIT_MS) < 0 ? -1 : 0;
}

static int publish(tb_client *c, const char *topic, const void *payload, int len, int qos,
                   bool retain, bool wait)
{
	int mid;

	if (len < 0)
		len = payload != NULL ? (int)strlen(payload) : 0;
	if (mosquitto_publish(c->mosq, &mid, topic, len, payload, qos, retain) != MOSQ_ERR_SUCCESS)
		return -1;
	if (!wait) {
		pthread_mutex_lock(&c->lock);
		c->acks[(uint16_t)mid] = c->acks[(uint16_t)mid] & ACK_DONE ? 0 : ACK_IGNORE;
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	return wait_ack(c, mid, TB_WAIT_MS);
}

int tb_client_publish(tb_client *c, const char *topic, const void *payload, int len, int qos,
                      bool retain)
{
	return publish(c, topic, payload, len, qos, retain, true);
}

int tb_client_publish_nowait(tb_client *c, const char *topic, const void *payload, int len, int qos,
                             bool retain)
{
	return publish(c, topic, payload, len, qos, retain, false);
}

tb_msg *tb_client_wait(tb_client *c, const char *topic_prefix, int timeout_ms)
{
	size_t plen = strlen(topic_prefix);
	struct timespec ts;
	tb_msg *found = NULL;

	tbi_deadline_ts(&ts, timeout_ms);
	pthread_mutex_lock(&c->lock);
	for (;;) {
		msg_node *prev = NULL;

		for (msg_node *n = c->head; n != NULL; prev = n, n = n->next) {
			if (strncmp(n->msg->topic, topic_prefix, plen) != 0)
				continue;
			if (prev != NULL)
				prev->next = n->next;
			else
				c->head = n->next;
			if (c->tail == n)
				c->tail = prev;
			c->queued--;
			found = n->msg;
			free(n);
			break;
		}
		if (found != NULL || pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&c->lock);
	return found;
}

void tb_msg_free(tb_msg *m)
{
	if (m == NULL)
		return;
	free(m->topic);
	free(m->payload);
	free(m);
}

int tb_client_queue_len(tb_client *c)
{
	int n;

	pthread_mutex_lock(&c->lock);
	n = c->queued;
	pthread_mutex_unlock(&c->lock);
	return n;
}
