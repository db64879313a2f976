/*
 * registry_record.c - identities as stored (registry_record.h).
 */
#include <stddef.h>
#include <string.h>

#include "registry_record.h"

/* The strings of an identity, in record order, with their capacities. */
#define FIELD(f)                                                                                   \
	{                                                                                          \
		offsetof(twin_identity, f), sizeof(((twin_identity *)0)->f)                        \
	}
static const struct {
	size_t offset, size;
} strings[] = {
        FIELD(device_id),
        FIELD(generation_id),
        FIELD(status_reason),
        FIELD(primary_key),
        FIELD(secondary_key),
        FIELD(primary_thumbprint),
        FIELD(secondary_thumbprint),
        FIELD(model_id),
};

/* The fixed part of a format 2 record. */
typedef struct record_head {
	uint32_t format;
	uint8_t enabled, auth_type, connected, pad;
	uint64_t etag_counter;
	int64_t status_updated, connection_state_updated, last_activity;
} record_head;

size_t registry_record_encode(const twin_identity *id, unsigned char *out)
{
	record_head h = {
	        .format = REGISTRY_FORMAT,
	        .enabled = id->enabled != 0,
	        .auth_type = (uint8_t)id->auth_type,
	        .connected = id->connected != 0,
	        .etag_counter = id->etag_counter,
	        .status_updated = id->status_updated,
	        .connection_state_updated = id->connection_state_updated,
	        .last_activity = id->last_activity,
	};
	size_t n = sizeof(h);

	memcpy(out, &h, sizeof(h));
	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		const char *s = (const char *)id + strings[i].offset;
		uint16_t len = (uint16_t)strnlen(s, strings[i].size - 1);

		memcpy(out + n, &len, sizeof(len));
		memcpy(out + n + sizeof(len), s, len);
		n += sizeof(len) + len;
	}
	return n;
}

static twin_err bad_record(twin_error *err)
{
	return twin_error_set(err, TWIN_E_STORAGE, "Storage error: bad identity record.");
}

static twin_err decode_v2(const unsigned char *p, size_t size, twin_identity *out, twin_error *err)
{
	record_head h;
	size_t n = sizeof(h);

	memcpy(&h, p, sizeof(h));
	if (h.auth_type > TWIN_AUTH_NONE)
		return bad_record(err);
	memset(out, 0, sizeof(*out));
	out->enabled = h.enabled;
	out->auth_type = (twin_auth_type)h.auth_type;
	out->connected = h.connected;
	out->etag_counter = h.etag_counter;
	out->status_updated = h.status_updated;
	out->connection_state_updated = h.connection_state_updated;
	out->last_activity = h.last_activity;
	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		uint16_t len;

		if (size - n < sizeof(len))
			return bad_record(err);
		memcpy(&len, p + n, sizeof(len));
		n += sizeof(len);
		if (len >= strings[i].size || size - n < len)
			return bad_record(err);
		memcpy((char *)out + strings[i].offset, p + n, len); /* NUL from the memset */
		n += len;
	}
	return n == size ? TWIN_OK : bad_record(err);
}

twin_err registry_record_decode(const MDB_val *v, twin_identity *out, twin_error *err)
{
	uint32_t format;

	if (v->mv_size < sizeof(record_head))
		return bad_record(err);
	memcpy(&format, v->mv_data, sizeof(format));
	if (format == REGISTRY_FORMAT)
		return decode_v2(v->mv_data, v->mv_size, out, err);
	if (format == REGISTRY_FORMAT_1 && v->mv_size == sizeof(identity_record_v1)) {
		identity_record_v1 rec;

		memcpy(&rec, v->mv_data, sizeof(rec));
		*out = rec.id;
		return TWIN_OK;
	}
	if (format == REGISTRY_FORMAT_1)
		return bad_record(err);
	return twin_error_set(err, TWIN_E_STORAGE, "Storage error: unknown identity format.");
}
