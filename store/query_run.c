/*
 * query_run.c - running a fleet query: a read snapshot, a scan of the
 * twins table in deviceId order, pages and continuation tokens
 * (PROTOCOL.md §8.4).
 *
 * The twins table keeps the records of one twin adjacent and sorted by
 * deviceId (db.h), so one cursor walk visits every twin once, in result
 * order, without a lookup per twin. A page of plain rows ends after its
 * last row; the token then names that row's deviceId, and the next page
 * starts just after it, so twins that exist throughout are neither repeated
 * nor skipped whatever changes in between. Aggregates need the whole fleet,
 * so every page of an aggregate query scans it all and the token counts the
 * groups already returned (groups come in key order).
 *
 * A token is base64 of "1:<query hash>:<rows or groups returned>:<id>":
 * opaque to clients, and checked against the query it came from.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "query_run.h"
#include "twin/query.h"
#include <openssl/evp.h>

#define TOKEN_MAX 512

/* Aggregates, and GROUP BY alone (distinct values), take every twin. */
static int grouped(const twin_query *q)
{
	return q->aggregate || q->ngroup > 0;
}

static uint64_t query_hash(const twin_query *q)
{
	uint64_t h = 1469598103934665603ULL;

	for (const char *p = q->text; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ULL;
	return h;
}

static twin_err bad_token(twin_error *err)
{
	return twin_error_set(err, TWIN_E_INVALID,
	                      "The continuation token is not valid for this query.");
}

static twin_err parse_token(twin_query_run *r, const char *token, twin_error *err)
{
	unsigned char raw[TOKEN_MAX];
	size_t n = strlen(token);
	unsigned long long hash;
	long long before;
	int used = 0, len;

	if (n == 0)
		return TWIN_OK;
	if (n % 4 != 0 || n >= TOKEN_MAX)
		return bad_token(err);
	len = EVP_DecodeBlock(raw, (const unsigned char *)token, (int)n);
	if (len < 0)
		return bad_token(err);
	while (len > 0 && n > 0 && token[--n] == '=')
		len--; /* EVP_DecodeBlock counts the padding as zero bytes */
	raw[len] = '\0';
	if (sscanf((char *)raw, "1:%llx:%lld:%n", &hash, &before, &used) != 2 || used == 0 ||
	    hash != query_hash(r->q) || before < 0 ||
	    strlen((char *)raw + used) > TWIN_DEVICE_ID_MAX)
		return bad_token(err);
	r->before = before;
	strcpy(r->after, (char *)raw + used);
	return TWIN_OK;
}

static char *make_token(const twin_query_run *r, long long returned, const char *after)
{
	char raw[TOKEN_MAX / 2];
	char *out = malloc(TOKEN_MAX);
	int n = snprintf(raw, sizeof(raw), "1:%" PRIx64 ":%lld:%s", query_hash(r->q), returned,
	                 after);

	if (out != NULL)
		EVP_EncodeBlock((unsigned char *)out, (unsigned char *)raw, n);
	return out;
}

static twin_err lmdb_failed(twin_query_run *r, int rc, twin_error *err)
{
	r->failed = TWIN_E_STORAGE;
	return twin_error_set(err, TWIN_E_STORAGE, "Storage error: query: %s", mdb_strerror(rc));
}

twin_err twin_query_start(twin_store *s, const twin_query *q, const char *continuation,
                          size_t page_size, twin_query_run **out, twin_error *err)
{
	twin_query_run *r = calloc(1, sizeof(*r));
	twin_err rc;
	int mrc;

	*out = NULL;
	if (r == NULL)
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	r->s = s;
	r->q = q;
	r->devices = s->dbi[DB_DEVICES];
	r->page_size = page_size == 0                    ? TWIN_QUERY_PAGE_DEFAULT
	               : page_size > TWIN_QUERY_PAGE_MAX ? TWIN_QUERY_PAGE_MAX
	                                                 : page_size;
	atomic_init(&r->cancel, 0);
	rc = parse_token(r, continuation ? continuation : "", err);
	if (rc == TWIN_OK && (grouped(q) ? r->after[0] != '\0' : r->before > 0 && !r->after[0]))
		rc = bad_token(err);
	if (rc == TWIN_OK && grouped(q) && (r->groups = q_groups_new(q)) == NULL)
		rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	if (rc == TWIN_OK && !grouped(q) && (r->items = cJSON_CreateArray()) == NULL)
		rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	if (rc != TWIN_OK) {
		twin_query_end(r);
		return rc;
	}
	/* A forged token may count past TOP: then nothing is left. */
	r->limit = q->top < 0 ? -1 : q->top > r->before ? q->top - r->before : 0;
	mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &r->txn);
	if (mrc == 0) {
		s->readers++;
		mrc = mdb_cursor_open(r->txn, s->dbi[DB_TWINS], &r->cur);
	} else
		r->txn = NULL;
	if (mrc != 0) {
		rc = lmdb_failed(r, mrc, err);
		twin_query_end(r);
		return rc;
	}
	/* FROM devices.modules: the registry holds no module identities. */
	r->eof = q->modules || (r->limit == 0 && !grouped(q));
	*out = r;
	return TWIN_OK;
}

/* Read the records of the next twin into row. 1 when a twin was read, 0
 * at the end, <0 an LMDB error. */
static int read_twin(twin_query_run *r, q_row *row)
{
	MDB_cursor_op op = MDB_GET_CURRENT;
	char seek[TWIN_DEVICE_ID_MAX + 2];
	MDB_val k, v;
	int rc;

	if (!r->cur_valid) {
		op = r->started ? MDB_NEXT : MDB_FIRST;
		if (!r->started && r->after[0] != '\0') {
			/* Just past every record of the last returned twin. */
			k.mv_size = (size_t)snprintf(seek, sizeof(seek), "%s\x01", r->after);
			k.mv_data = seek;
			op = MDB_SET_RANGE;
		}
		r->started = 1;
	}
	rc = mdb_cursor_get(r->cur, &k, &v, op);
	for (int first = 1;;) {
		const char *key = k.mv_data, *nul;
		size_t idlen;

		if (rc == MDB_NOTFOUND) {
			r->cur_valid = 0;
			return first ? 0 : 1;
		}
		if (rc != 0)
			return -rc;
		nul = memchr(key, '\0', k.mv_size);
		idlen = nul ? (size_t)(nul - key) : 0;
		if (nul == NULL || idlen > TWIN_DEVICE_ID_MAX || k.mv_size != idlen + 2) {
			rc = mdb_cursor_get(r->cur, &k, &v, MDB_NEXT); /* not a twin record */
			continue;                                      /* without starting a row */
		}
		if (first) {
			q_row_reset(row, key, idlen);
			first = 0;
		} else if (strlen(row->id) != idlen || memcmp(row->id, key, idlen) != 0) {
			r->cur_valid = 1; /* the first record of the next twin */
			return 1;
		}
		switch (key[idlen + 1]) {
		case 'V':
			row->rec[ROW_V] = v, row->have[ROW_V] = 1;
			break;
		case 'T':
			row->rec[ROW_T] = v, row->have[ROW_T] = 1;
			break;
		case 'D':
			row->rec[ROW_D] = v, row->have[ROW_D] = 1;
			break;
		case 'R':
			row->rec[ROW_R] = v, row->have[ROW_R] = 1;
			break;
		default:
			break;
		}
		rc = mdb_cursor_get(r->cur, &k, &v, MDB_NEXT);
	}
}

/* Take a twin that passed WHERE into the page. 0, or a twin_err. */
static twin_err take_row(twin_query_run *r, q_row *row, twin_error *err)
{
	cJSON *item;
	int bad;

	if (r->groups != NULL)
		return q_groups_add(r->groups, row) == 0
		               ? TWIN_OK
		               : twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	if (r->limit >= 0 && (long long)r->nitems >= r->limit) {
		r->eof = 1; /* TOP reached: no further page */
		return TWIN_OK;
	}
	if (r->nitems == r->page_size) {
		r->more = 1; /* a row beyond this page: the token resumes here */
		r->eof = 1;
		return TWIN_OK;
	}
	item = q_row_output(row, r->q, &bad);
	if (item == NULL && bad)
		return TWIN_OK; /* a twin half-written by a crashed writer never is */
	if (item == NULL || !cJSON_AddItemToArray(r->items, item)) {
		cJSON_Delete(item);
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	}
	r->nitems++;
	strcpy(r->last, row->id);
	return TWIN_OK;
}

twin_err twin_query_step(twin_query_run *r, size_t max_twins, int *done, twin_error *err)
{
	q_row row = {.txn = r->txn, .devices = r->devices};
	twin_err rc = TWIN_OK;

	*done = 0;
	if (r->failed != TWIN_OK)
		return twin_error_set(err, r->failed, "Storage error: the query failed.");
	for (size_t i = 0; i < max_twins && !r->eof && rc == TWIN_OK; i++) {
		int got, keep;

		if (atomic_load(&r->cancel)) {
			r->failed = TWIN_E_STORAGE;
			return twin_error_set(err, TWIN_E_STORAGE,
			                      "The query was interrupted; retry it.");
		}
		got = read_twin(r, &row);
		if (got < 0)
			return lmdb_failed(r, -got, err);
		if (got == 0) {
			r->eof = 1;
			break;
		}
		if (!row.have[ROW_V] || row.rec[ROW_V].mv_size != sizeof(row.version))
			continue; /* not a whole twin */
		memcpy(&row.version, row.rec[ROW_V].mv_data, sizeof(row.version));
		r->scanned++;
		keep = q_eval_where(r->q->where, q_row_lookup, &row);
		if (keep < 0)
			rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
		else if (keep)
			rc = take_row(r, &row, err);
	}
	if (rc != TWIN_OK) {
		r->failed = rc;
		return rc;
	}
	*done = r->done = r->eof;
	return TWIN_OK;
}

void twin_query_cancel(twin_query_run *r)
{
	atomic_store(&r->cancel, 1);
}

twin_err twin_query_page(twin_query_run *r, cJSON **items, char **continuation, twin_error *err)
{
	size_t total = 0, max = r->page_size;
	long long next = -1;

	*items = NULL;
	*continuation = NULL;
	if (!r->done)
		return twin_error_set(err, TWIN_E_STORAGE, "Storage error: the query is not done.");
	if (r->groups != NULL) {
		if (r->limit >= 0 && (long long)max > r->limit)
			max = (size_t)(r->limit > 0 ? r->limit : 0);
		*items = q_groups_output(r->groups, (size_t)r->before, max, &total);
		if (*items != NULL && (size_t)r->before + max < total &&
		    (r->limit < 0 || (long long)max < r->limit))
			next = r->before + (long long)max;
	} else {
		*items = r->items; /* a run gives its page once */
		r->items = NULL;
		if (r->more && (r->limit < 0 || (long long)r->nitems < r->limit))
			next = r->before + (long long)r->nitems;
	}
	if (*items == NULL)
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	if (next >= 0 && (*continuation = make_token(r, next, r->groups ? "" : r->last)) == NULL) {
		cJSON_Delete(*items);
		*items = NULL;
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	}
	return TWIN_OK;
}

size_t twin_query_scanned(const twin_query_run *r)
{
	return r->scanned;
}

void twin_query_end(twin_query_run *r)
{
	if (r == NULL)
		return;
	if (r->cur != NULL)
		mdb_cursor_close(r->cur);
	if (r->txn != NULL) {
		mdb_txn_abort(r->txn);
		r->s->readers--;
	}
	cJSON_Delete(r->items);
	q_groups_free(r->groups);
	free(r);
}

int twin_store_readers(const twin_store *s)
{
	return s->readers;
}
