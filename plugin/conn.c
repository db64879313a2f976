/*
 * conn.c - connection tables: chained hashing on two keys.
 *
 * A table of a few thousand entries per broker, touched on every request:
 * chained buckets that double when full keep lookups O(1) without a
 * dependency (Mosquitto's uthash is not installed with its headers).
 */
#include <stdlib.h>
#include <string.h>

#include "conn.h"

static size_t hash_ptr(const void *p, size_t buckets)
{
	uint64_t x = (uint64_t)(uintptr_t)p;

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return (size_t)x & (buckets - 1);
}

static size_t hash_str(const char *s, size_t buckets)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return (size_t)h & (buckets - 1);
}

static int grow(plg_conns *t)
{
	size_t n = t->buckets ? t->buckets * 2 : 64;
	plg_conn **bc = calloc(n, sizeof(*bc)), **bd = calloc(n, sizeof(*bd));

	if (bc == NULL || bd == NULL) {
		free(bc);
		free(bd);
		return 0;
	}
	for (size_t i = 0; i < t->buckets; i++) {
		for (plg_conn *c = t->by_client[i], *next; c != NULL; c = next) {
			size_t h = hash_ptr(c->client, n);

			next = c->next_by_client;
			c->next_by_client = bc[h];
			bc[h] = c;
		}
		for (plg_conn *c = t->by_device[i], *next; c != NULL; c = next) {
			size_t h = hash_str(c->device_id, n);

			next = c->next_by_device;
			c->next_by_device = bd[h];
			bd[h] = c;
		}
	}
	free(t->by_client);
	free(t->by_device);
	t->by_client = bc;
	t->by_device = bd;
	t->buckets = n;
	return 1;
}

plg_conn *plg_conn_by_client(const plg_conns *t, const struct mosquitto *client)
{
	if (t->buckets == 0)
		return NULL;
	for (plg_conn *c = t->by_client[hash_ptr(client, t->buckets)]; c; c = c->next_by_client)
		if (c->client == client)
			return c;
	return NULL;
}

plg_conn *plg_conn_by_device(const plg_conns *t, const char *device_id)
{
	if (t->buckets == 0)
		return NULL;
	for (plg_conn *c = t->by_device[hash_str(device_id, t->buckets)]; c; c = c->next_by_device)
		if (strcmp(c->device_id, device_id) == 0)
			return c;
	return NULL;
}

int plg_conn_is_live(const plg_conns *t, const plg_conn *c)
{
	return c->kind == PLG_CONN_DEVICE && plg_conn_by_device(t, c->device_id) == c;
}

static void unlink_device(plg_conns *t, plg_conn *c)
{
	plg_conn **p = &t->by_device[hash_str(c->device_id, t->buckets)];

	for (; *p != NULL; p = &(*p)->next_by_device) {
		if (*p == c) {
			*p = c->next_by_device;
			c->next_by_device = NULL;
			return;
		}
	}
}

void plg_conn_promote(plg_conns *t, plg_conn *c)
{
	plg_conn *old = plg_conn_by_device(t, c->device_id);
	size_t h;

	if (old == c)
		return;
	if (old != NULL)
		unlink_device(t, old); /* takeover: the old one stays until its DISCONNECT */
	c->kind = PLG_CONN_DEVICE;
	h = hash_str(c->device_id, t->buckets);
	c->next_by_device = t->by_device[h];
	t->by_device[h] = c;
}

plg_conn *plg_conn_add(plg_conns *t, struct mosquitto *client, plg_conn_kind kind,
                       const char *device_id)
{
	plg_conn *c;
	size_t h;

	if ((t->count + 1 > t->buckets || t->buckets == 0) && !grow(t))
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->client = client;
	c->kind = kind;
	strncpy(c->device_id, device_id, sizeof(c->device_id) - 1);
	c->generation = ++t->next_generation;
	h = hash_ptr(client, t->buckets);
	c->next_by_client = t->by_client[h];
	t->by_client[h] = c;
	t->count++;
	if (kind == PLG_CONN_DEVICE)
		plg_conn_promote(t, c);
	return c;
}

void plg_conn_remove(plg_conns *t, plg_conn *c)
{
	plg_conn **p = &t->by_client[hash_ptr(c->client, t->buckets)];

	if (plg_conn_is_live(t, c))
		unlink_device(t, c);
	for (; *p != NULL; p = &(*p)->next_by_client) {
		if (*p == c) {
			*p = c->next_by_client;
			break;
		}
	}
	t->count--;
	free(c);
}

void plg_conns_each_live(plg_conns *t, void (*fn)(plg_conn *c, void *arg), void *arg)
{
	for (size_t i = 0; i < t->buckets; i++)
		for (plg_conn *c = t->by_device[i], *next; c != NULL; c = next) {
			next = c->next_by_device;
			fn(c, arg);
		}
}

void plg_conns_each(plg_conns *t, void (*fn)(plg_conn *c, void *arg), void *arg)
{
	for (size_t i = 0; i < t->buckets; i++)
		for (plg_conn *c = t->by_client[i]; c != NULL; c = c->next_by_client)
			fn(c, arg);
}

void plg_conns_free(plg_conns *t)
{
	for (size_t i = 0; i < t->buckets; i++)
		for (plg_conn *c = t->by_client[i], *next; c != NULL; c = next) {
			next = c->next_by_client;
			free(c);
		}
	free(t->by_client);
	free(t->by_device);
	memset(t, 0, sizeof(*t));
}
