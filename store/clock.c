/*
 * clock.c - time as the twin model shows it.
 *
 * Time is carried as 100 ns ticks since the Unix epoch (the resolution of
 * IoT Hub's 7-digit timestamps) and formatted only at the edges.
 */
#include <stdio.h>
#include <time.h>

#include "twin/doc.h"

void twin_timestamp_format(int64_t ticks, char out[TWIN_TIMESTAMP_MAX])
{
	struct tm tm;
	time_t secs;

	if (ticks <= 0) {
		snprintf(out, TWIN_TIMESTAMP_MAX, "0001-01-01T00:00:00Z");
		return;
	}
	secs = (time_t)(ticks / 10000000);
	gmtime_r(&secs, &tm);
	/* The modulos bound every field for the compiler's truncation check;
	 * a sane clock never reaches them. */
	snprintf(out, TWIN_TIMESTAMP_MAX, "%04u-%02u-%02uT%02u:%02u:%02u.%07uZ",
	         (unsigned)(tm.tm_year + 1900) % 10000u, (unsigned)(tm.tm_mon + 1) % 100u,
	         (unsigned)tm.tm_mday % 100u, (unsigned)tm.tm_hour % 100u,
	         (unsigned)tm.tm_min % 100u, (unsigned)tm.tm_sec % 100u,
	         (unsigned)(ticks % 10000000));
}
