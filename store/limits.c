/*
 * limits.c - IoT Hub's default validation limits (PROTOCOL.md §6).
 */
#include "twin/limits.h"

void twin_limits_default(twin_limits *l)
{
	l->key_max_bytes = TWIN_DEFAULT_KEY_MAX_BYTES;
	l->string_max_bytes = TWIN_DEFAULT_STRING_MAX_BYTES;
	l->int_min = TWIN_DEFAULT_INT_MIN;
	l->int_max = TWIN_DEFAULT_INT_MAX;
	l->max_depth = TWIN_DEFAULT_MAX_DEPTH;
	l->tags_max = TWIN_DEFAULT_TAGS_MAX;
	l->desired_max = TWIN_DEFAULT_DESIRED_MAX;
	l->reported_max = TWIN_DEFAULT_REPORTED_MAX;
}
