/*
 * twin/error.h - the one error vocabulary of mosquitto-twin.
 *
 * Every store function that can fail returns a twin_err and, when the caller
 * passes a twin_error, a human-readable message. The mapping from twin_err to
 * the IoT Hub status and six-digit errorCode (PROTOCOL.md §2.4, §7) lives in
 * store/error.c and nowhere else, so a device reply and a control API reply
 * for the same failure always agree.
 */
#ifndef TWIN_ERROR_H
#define TWIN_ERROR_H

#include <stddef.h>
#include <stdint.h>

typedef enum twin_err {
	TWIN_OK = 0,
	TWIN_E_INVALID,      /* 400 400004 ArgumentInvalid: bad JSON, key, value, depth, id ... */
	TWIN_E_UNAUTHORIZED, /* 401 401002 IotHubUnauthorizedAccess: a right is missing */
	TWIN_E_SECTION_SIZE, /* 403 403100: a section would exceed its size limit */
	TWIN_E_NOT_FOUND,    /* 404 404001 DeviceNotFound */
	TWIN_E_NO_OPERATION, /* 404 404 (generic NotFound): unknown operation topic */
	TWIN_E_EXISTS,       /* 409 409001 DeviceAlreadyExists */
	TWIN_E_TOO_LARGE,    /* 413 413002 MessageTooLarge: a control request over its limit */
	TWIN_E_PRECONDITION, /* 412 412001 PreconditionFailed: etag mismatch */
	TWIN_E_NOMEM,        /* 500 500001: allocation failed */
	TWIN_E_STORAGE,      /* 500 500001 ServerError: LMDB or disk failure */
	TWIN_E_UNAVAILABLE,  /* 503 503001 ServiceUnavailable: store closed */
	TWIN_E_THROTTLED,    /* 429 429001 ThrottlingException: a configured rate limit */
} twin_err;

#define TWIN_ERROR_MESSAGE_MAX 256

/* An error with its message. Callers may pass NULL wherever a twin_error * is
 * asked for when they only need the code. */
typedef struct twin_error {
	twin_err err;
	char message[TWIN_ERROR_MESSAGE_MAX];
} twin_error;

/* HTTP-style status for err: 200 for TWIN_OK, 400, 401, 403, 404, 409, 412, 413, 429, 500,
 * 503. */
int twin_err_status(twin_err err);

/* IoT Hub errorCode for err (status * 1000 + detail), 0 for TWIN_OK. */
int twin_err_code(twin_err err);

/* Record err and a printf-style message in e (if e is not NULL). Returns err,
 * so failure paths read `return twin_error_set(e, TWIN_E_INVALID, "...")`. */
twin_err twin_error_set(twin_error *e, twin_err err, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Render the PROTOCOL.md §2.4 error body
 * {"errorCode":…,"trackingId":"<32 hex>","message":"…","timestampUtc":"…"}
 * for e at time now (100 ns ticks since the Unix epoch). Returns a string
 * allocated with malloc that the caller frees, or NULL when out of memory. */
char *twin_error_body(const twin_error *e, int64_t now);

#endif
