/*
 * registry_list.c - paging through the registry (listDevices).
 *
 * The devices table is sorted by deviceId, so a page is one cursor walk from
 * the key after the previous page's last id. The continuation token is that
 * id, base64-encoded: opaque to clients (as IoT Hub's are), stateless for
 * the broker, and stable across restarts. Reading a page holds a read
 * transaction only for the walk itself.
 */
#include <string.h>

#include <openssl/evp.h>

#include "db.h"
#include "registry_record.h"
#include "twin/registry.h"

/* base64 of an id of up to TWIN_DEVICE_ID_MAX bytes, and its NUL. */
#define TOKEN_MAX (4 * ((TWIN_DEVICE_ID_MAX + 2) / 3) + 1)

static twin_err decode_token(const char *token, char *id, twin_error *err)
{
	unsigned char raw[TOKEN_MAX];
	size_t n = strlen(token);
	int len;

	if (n == 0 || n >= TOKEN_MAX || n % 4 != 0)
		goto bad;
	len = EVP_DecodeBlock(raw, (const unsigned char *)token, (int)n);
	if (len < 0)
		goto bad;
	len -= (token[n - 1] == '=') + (token[n - 2] == '=');
	if (len <= 0 || len > TWIN_DEVICE_ID_MAX)
		goto bad;
	memcpy(id, raw, (size_t)len);
	id[len] = '\0';
	if (!twin_device_id_valid(id))
		goto bad;
	return TWIN_OK;
bad:
	return twin_error_set(err, TWIN_E_INVALID, "Invalid continuationToken.");
}

static cJSON *make_page(void)
{
	cJSON *page = cJSON_CreateObject();

	if (page != NULL && cJSON_AddArrayToObject(page, "devices") == NULL) {
		cJSON_Delete(page);
		page = NULL;
	}
	return page;
}

/* Append the identities after `after` to page; *last is the last id added,
 * *more whether another follows. */
static twin_err walk(twin_store *s, const char *after, size_t max, cJSON *page, char *last,
                     int *more, twin_error *err)
{
	cJSON *devices = cJSON_GetObjectItemCaseSensitive(page, "devices");
	MDB_val k = {strlen(after), (void *)after}, v;
	MDB_cursor *cur;
	size_t n = 0;
	int mrc;

	if (mdb_cursor_open(db_txn(s), s->dbi[DB_DEVICES], &cur) != 0)
		return twin_error_set(err, TWIN_E_STORAGE, "Storage error: cursor.");
	mrc = after[0] ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
	               : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	if (mrc == 0 && after[0] && k.mv_size == strlen(after) &&
	    memcmp(k.mv_data, after, k.mv_size) == 0)
		mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	*more = 0;
	for (; mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		twin_identity id;
		cJSON *obj;

		if (n == max) {
			*more = 1;
			break;
		}
		if (registry_record_decode(&v, &id, err) != TWIN_OK) {
			mdb_cursor_close(cur);
			return TWIN_E_STORAGE;
		}
		obj = twin_identity_to_json(&id);
		if (obj == NULL || !cJSON_AddItemToArray(devices, obj)) {
			cJSON_Delete(obj);
			mdb_cursor_close(cur);
			return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
		}
		memcpy(last, id.device_id, strlen(id.device_id) + 1);
		n++;
	}
	mdb_cursor_close(cur);
	if (mrc != 0 && mrc != MDB_NOTFOUND)
		return twin_error_set(err, TWIN_E_STORAGE, "Storage error: %s", mdb_strerror(mrc));
	return TWIN_OK;
}

twin_err twin_device_list(twin_store *s, const char *continuation, size_t max, cJSON **page,
                          twin_error *err)
{
	char after[TWIN_DEVICE_ID_MAX + 1] = "", last[TWIN_DEVICE_ID_MAX + 1] = "";
	char token[TOKEN_MAX];
	int more = 0;
	twin_err rc = TWIN_OK;

	*page = NULL;
	if (max < 1 || max > TWIN_LIST_MAX)
		return twin_error_set(err, TWIN_E_INVALID, "maxCount must be 1 to %d.",
		                      TWIN_LIST_MAX);
	if (continuation != NULL && continuation[0] && decode_token(continuation, after, err))
		return TWIN_E_INVALID;
	*page = make_page();
	if (*page == NULL)
		return twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	rc = db_read_begin(s, err);
	if (rc == TWIN_OK) {
		rc = walk(s, after, max, *page, last, &more, err);
		db_read_end(s);
	}
	if (rc == TWIN_OK && more) {
		EVP_EncodeBlock((unsigned char *)token, (const unsigned char *)last,
		                (int)strlen(last));
		if (cJSON_AddStringToObject(*page, "continuationToken", token) == NULL)
			rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	} else if (rc == TWIN_OK && cJSON_AddNullToObject(*page, "continuationToken") == NULL) {
		rc = twin_error_set(err, TWIN_E_NOMEM, "Out of memory.");
	}
	if (rc != TWIN_OK) {
		cJSON_Delete(*page);
		*page = NULL;
	}
	return rc;
}
