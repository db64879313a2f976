/*
 * section_cache.c - parsed reported sections of recently patched twins.
 *
 * A reported PATCH used to parse the stored section and its $metadata (about
 * three times the data) before every merge, 15% of the broker's CPU under a
 * patch load. Devices that report keep reporting, so the section a PATCH
 * leaves behind is kept parsed, and the next PATCH of that twin takes it
 * instead of parsing the record again.
 *
 * Correctness rests on two rules. A PATCH takes its entry out (ownership
 * moves to it) and puts the result back only after the write went into the
 * batch, so a refused or failed PATCH leaves no entry. Every abort of a batch
 * empties the cache (db.c), because entries may hold writes that never
 * reach the disk; and any other write of a reported record forgets its
 * entry. Entries are therefore always what the open batch, or the database,
 * holds.
 *
 * A fixed number of entries with least-recently-used eviction bounds the
 * memory (a 1 KB section and its metadata parse into roughly 10 KB of cJSON
 * nodes). Lookup is a hash of the deviceId into a chained table.
 */
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "twin_records.h"

#define CACHE_ENTRIES 1024 /* also the bucket count: a power of two */

typedef struct entry {
	char id[TWIN_DEVICE_ID_MAX + 1];
	rec_section sec;
	struct entry *next_in_bucket;
	struct entry *newer, *older; /* LRU list */
} entry;

struct rec_cache {
	entry *buckets[CACHE_ENTRIES];
	entry *newest, *oldest;
	size_t count;
};

static size_t bucket_of(const char *id)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 1099511628211ULL;
	return (size_t)h & (CACHE_ENTRIES - 1);
}

static void lru_unlink(struct rec_cache *c, entry *e)
{
	if (e->newer)
		e->newer->older = e->older;
	else
		c->newest = e->older;
	if (e->older)
		e->older->newer = e->newer;
	else
		c->oldest = e->newer;
	e->newer = e->older = NULL;
}

/* Unlink e from its bucket and the LRU list, and free it and its section. */
static void drop(struct rec_cache *c, entry *e)
{
	entry **p = &c->buckets[bucket_of(e->id)];

	while (*p != e)
		p = &(*p)->next_in_bucket;
	*p = e->next_in_bucket;
	lru_unlink(c, e);
	rec_section_free(&e->sec);
	free(e);
	c->count--;
}

static entry *find(struct rec_cache *c, const char *id)
{
	for (entry *e = c->buckets[bucket_of(id)]; e != NULL; e = e->next_in_bucket)
		if (strcmp(e->id, id) == 0)
			return e;
	return NULL;
}

int rec_cache_take(twin_store *s, const char *device_id, rec_section *out)
{
	struct rec_cache *c = s->cache;
	entry *e = c ? find(c, device_id) : NULL;

	if (e == NULL)
		return 0;
	*out = e->sec;
	memset(&e->sec, 0, sizeof(e->sec));
	drop(c, e);
	return 1;
}

void rec_cache_put(twin_store *s, const char *device_id, rec_section *sec)
{
	struct rec_cache *c = s->cache;
	entry *e;

	if (c == NULL && (c = s->cache = calloc(1, sizeof(*c))) == NULL)
		goto no_room;
	if ((e = find(c, device_id)) != NULL)
		drop(c, e);
	if (c->count == CACHE_ENTRIES)
		drop(c, c->oldest);
	e = calloc(1, sizeof(*e));
	if (e == NULL)
		goto no_room;
	strcpy(e->id, device_id);
	e->sec = *sec;
	e->next_in_bucket = c->buckets[bucket_of(device_id)];
	c->buckets[bucket_of(device_id)] = e;
	e->older = c->newest;
	if (c->newest)
		c->newest->newer = e;
	c->newest = e;
	if (c->oldest == NULL)
		c->oldest = e;
	c->count++;
	memset(sec, 0, sizeof(*sec));
	return;
no_room: /* a cache is an optimisation: without room, just do without */
	rec_section_free(sec);
}

void rec_cache_forget(twin_store *s, const char *device_id)
{
	entry *e = s->cache ? find(s->cache, device_id) : NULL;

	if (e != NULL)
		drop(s->cache, e);
}

void rec_cache_clear(twin_store *s)
{
	struct rec_cache *c = s->cache;

	while (c != NULL && c->oldest != NULL)
		drop(c, c->oldest);
}

void rec_cache_free(twin_store *s)
{
	rec_cache_clear(s);
	free(s->cache);
	s->cache = NULL;
}
