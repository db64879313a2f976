/*
 * notify.c - desired-property notifications (PROTOCOL.md §3, §5.3).
 *
 * Only the device's live connection is notified, and only while it holds
 * the desired subscription; nothing is queued for offline devices. What the
 * device was last handed (L, §3.1) moves only when the outbox hands a
 * notification or GET result to the broker (outbox.c), after the commit.
 */
#include "plugin.h"

void plg_desired_changed(plg_ctx *ctx, const char *device_id, twin_write_result *res)
{
	plg_conn *c = plg_conn_by_device(&ctx->conns, device_id);

	if (c == NULL || c->session.desired_qos < 0 || res->notification == NULL)
		return;
	plg_notify(ctx, c, res->desired_version, res->notification, res->notification_len);
	res->notification = NULL; /* taken by the outbox */
	res->notification_len = 0;
}

int64_t plg_seen(const plg_conn *c)
{
	/* Queued but not yet handed counts as seen: one catch-up per change,
	 * however many triggers fire before the next TICK. */
	return c->queued > c->session.notified_version ? c->queued : c->session.notified_version;
}

void plg_catchup(plg_ctx *ctx, plg_conn *c, int64_t since)
{
	int64_t version;
	twin_error err;
	size_t len;
	char *body;

	if (!ctx->opts.catchup)
		return;
	if (twin_desired_since(ctx->store, c->device_id, since, &body, &len, &version, &err) !=
	    TWIN_OK) {
		mosquitto_log_printf(MOSQ_LOG_ERR, PLG_LOG_PREFIX "catch-up for %s failed: %s",
		                     c->device_id, err.message);
		return;
	}
	if (body != NULL)
		plg_notify(ctx, c, version, body, len);
}
