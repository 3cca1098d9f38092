/*
 * Answers: /kv/<key>, /healthz, /readyz, /livez, /metrics and the error statuses.
 *
 * Hot path (GET /kv/<key>): one kv_get in the worker's read transaction (begun lazily, once
 * per batch of requests, ended by the connection code after the batch), the content type
 * from a one-entry cache keyed by (bucket, store revision), and the header block formatted
 * with memcpy and a hand-rolled integer printer straight into the output staging; no malloc
 * and no printf.
 *
 * /healthz and /readyz read the node-status page (core/nodestat.h), so they answer in
 * microseconds even when the disk is slow, which is what a GTM's short timeout needs; LMDB is
 * read only to confirm an empty store (the page says revision 0, or there is no page).
 */
#include "gateway/gw.h"

#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "proto/log.h"

static const char *status_line(int s)
{
	switch (s) {
	case 200: return "HTTP/1.1 200 OK\r\n";
	case 304: return "HTTP/1.1 304 Not Modified\r\n";
	case 400: return "HTTP/1.1 400 Bad Request\r\n";
	case 404: return "HTTP/1.1 404 Not Found\r\n";
	case 405: return "HTTP/1.1 405 Method Not Allowed\r\n";
	case 408: return "HTTP/1.1 408 Request Timeout\r\n";
	case 413: return "HTTP/1.1 413 Content Too Large\r\n";
	case 414: return "HTTP/1.1 414 URI Too Long\r\n";
	case 429: return "HTTP/1.1 429 Too Many Requests\r\n";
	case 431: return "HTTP/1.1 431 Request Header Fields Too Large\r\n";
	case 503: return "HTTP/1.1 503 Service Unavailable\r\n";
	case 504: return "HTTP/1.1 504 Gateway Timeout\r\n";
	default: return "HTTP/1.1 500 Internal Server Error\r\n";
	}
}

static void head(gw_ctx_t *x, gw_out_t *o, int status, bool close)
{
	gw_out_str(o, status_line(status));
	gw_out_str(o, x->date);
	if (close || x->stopping)
		gw_out_str(o, "Connection: close\r\n");
}

/* A small body with its own headers; `extra` (may be NULL) is more header lines. */
static void simple(gw_ctx_t *x, gw_out_t *o, int status, const char *ctype, const char *extra,
		   const char *body, size_t blen, bool with_body, bool close)
{
	head(x, o, status, close);
	gw_out_str(o, "Content-Type: ");
	gw_out_str(o, ctype);
	gw_out_str(o, "\r\nCache-Control: no-store\r\nContent-Length: ");
	gw_out_u64(o, blen);
	gw_out_str(o, "\r\n");
	if (extra != NULL)
		gw_out_str(o, extra);
	gw_out_str(o, "\r\n");
	if (with_body)
		gw_out_big(o, body, blen);
}

static void err_body(gw_ctx_t *x, gw_out_t *o, int status, const char *reason, bool with_body,
		     bool close)
{
	char body[128];
	int n = snprintf(body, sizeof body, "%s\n", reason ? reason : "error");

	simple(x, o, status, "text/plain; charset=utf-8", NULL, body,
	       n < 0 ? 0 : (size_t)n < sizeof body ? (size_t)n : sizeof body - 1, with_body, close);
}

void gw_respond_error(gw_ctx_t *x, gw_out_t *o, int status, const char *reason, bool close)
{
	err_body(x, o, status, reason, true, close);
}

void gw_ctx_end_read(gw_ctx_t *x)
{
	if (*x->rtxn_open) {
		kv_read_end(x->rtxn);
		*x->rtxn_open = false;
	}
}

static int begin_read(gw_ctx_t *x)
{
	int rc;

	if (*x->rtxn_open)
		return 0;
	if ((rc = kv_read_begin(x->store, x->rtxn)) != 0)
		return rc;
	*x->rtxn_open = true;
	return 0;
}

uint64_t gw_node_revision(gw_ctx_t *x)
{
	kv_nodestat_data_t d;

	if (x->ns != NULL && x->ns->page != NULL && kv_nodestat_read(x->ns, &d) == 0)
		return d.revision;
	if (x->store == NULL || begin_read(x) != 0)
		return 0;
	return kv_txn_revision(x->rtxn);
}

/* ---- health ---------------------------------------------------------------------------- */

static const char *role_name(uint32_t r)
{
	return r == PROTO_ROLE_LEAF ? "leaf" : r == PROTO_ROLE_PRIMARY ? "primary" : "unknown";
}

/* "empty store" when the store itself (this worker's read transaction) is at revision 0,
 * "store unavailable" when it cannot be read, else NULL. */
static const char *store_empty(gw_ctx_t *x)
{
	if (x->store == NULL || begin_read(x) != 0)
		return "store unavailable";
	return kv_txn_revision(x->rtxn) == 0 ? "empty store" : NULL;
}

/*
 * Returns NULL when healthy, else the reason; fills d (zeroed when there is no node).
 *
 * A store that never received data is never healthy: a GTM would send users to a location
 * that answers 404 for every key. "Empty" is revision 0 (nothing was ever applied that
 * wrote data; applied index 0 implies it), checked against the store itself so that a
 * status page published before the node read its store cannot make a full store look
 * empty; the LMDB read happens only on that unhealthy path. "Not caught up" is a status page
 * without KV_NS_CAUGHT_UP: the node has not yet applied everything its feed/leader had
 * committed since it started (a restarted or brand-new node replaying), whatever the lag
 * bounds say.
 */
static const char *health_reason(gw_ctx_t *x, kv_nodestat_data_t *d, uint64_t *age, bool *have)
{
	const gw_config_t *c = x->cfg;
	uint64_t now = kv_nodestat_now_ms();
	const char *why;

	memset(d, 0, sizeof *d);
	*age = 0;
	*have = x->ns != NULL && x->ns->page != NULL && kv_nodestat_read(x->ns, d) == 0;
	if (x->store == NULL)
		return "store unavailable";
	if (!*have) {
		if (c->health_require_node)
			return "no node status";
		return store_empty(x);
	}
	*age = now > d->contact_ms ? now - d->contact_ms : 0;
	if (d->pid == 0 || (d->flags & KV_NS_STOPPING))
		return "node stopped";
	if (d->flags & KV_NS_SNAPSHOT)
		return "installing snapshot";
	if (!(d->flags & KV_NS_FEED))
		return d->role == PROTO_ROLE_PRIMARY ? "no leader" : "feed disconnected";
	if (*age > c->health_max_contact_age_ms)
		return "no recent contact";
	if (d->revision == 0 && (why = store_empty(x)) != NULL)
		return why;
	if (!(d->flags & KV_NS_CAUGHT_UP))
		return "not caught up";
	if (d->lag_entries > c->health_max_lag_entries)
		return "lag entries over bound";
	if (d->lag_ms > c->health_max_lag_ms)
		return "lag ms over bound";
	return NULL;
}

static int health(gw_ctx_t *x, gw_out_t *o, bool with_body, bool close)
{
	kv_nodestat_data_t d;
	uint64_t age;
	bool have;
	const char *why = health_reason(x, &d, &age, &have);
	char body[400];
	int n;

	if (have)
		n = snprintf(body, sizeof body,
			     "{\"status\":\"%s\"%s%s%s,\"role\":\"%s\",\"revision\":%" PRIu64
			     ",\"applied\":%" PRIu64 ",\"commit\":%" PRIu64 ",\"lag_entries\":%" PRIu64
			     ",\"lag_ms\":%" PRIu64 ",\"contact_age_ms\":%" PRIu64 "}\n",
			     why ? "fail" : "ok", why ? ",\"reason\":\"" : "", why ? why : "",
			     why ? "\"" : "", role_name(d.role), d.revision, d.applied, d.commit,
			     d.lag_entries, d.lag_ms, age);
	else
		n = snprintf(body, sizeof body, "{\"status\":\"%s\"%s%s%s,\"node\":\"none\"}\n",
			     why ? "fail" : "ok", why ? ",\"reason\":\"" : "", why ? why : "",
			     why ? "\"" : "");
	int status = why ? 503 : 200;
	simple(x, o, status, "application/json", NULL, body, (size_t)n, with_body, close);
	return status;
}

static int ready(gw_ctx_t *x, gw_out_t *o, bool with_body, bool close)
{
	kv_nodestat_data_t d;
	const char *why = NULL;
	bool have = x->ns != NULL && x->ns->page != NULL && kv_nodestat_read(x->ns, &d) == 0;
	char body[200];
	int n;

	if (x->store == NULL)
		why = "store unavailable";
	else if (have && !(d.flags & KV_NS_CAUGHT_UP))
		why = "not caught up";
	else if (have && (d.flags & KV_NS_SNAPSHOT))
		why = "installing snapshot";
	else if (!have && x->cfg->health_require_node)
		why = "no node status";
	else if (gw_node_revision(x) == 0)
		why = "no data";
	n = snprintf(body, sizeof body, "{\"status\":\"%s\"%s%s%s}\n", why ? "fail" : "ok",
		     why ? ",\"reason\":\"" : "", why ? why : "", why ? "\"" : "");
	int status = why ? 503 : 200;
	simple(x, o, status, "application/json", NULL, body, (size_t)n, with_body, close);
	return status;
}

/* ---- metrics --------------------------------------------------------------------------- */

static const char *const route_names[GW_R_COUNT] = {"kv", "healthz", "readyz", "livez",
						    "metrics", "other"};
static const int status_codes[GW_S_COUNT] = {200, 304, 400, 404, 405, 408, 413, 414, 429,
					     431, 500, 503, 504};

static uint64_t sum_at(const gw_worker_t *ws, uint32_t nw, size_t off)
{
	uint64_t s = 0;

	for (uint32_t i = 0; i < nw; i++)
		s += proto_metrics_get((const _Atomic uint64_t *)((const char *)&ws[i].stats + off));
	return s;
}
#define SUM(field) sum_at(ws, nw, offsetof(gw_stats_t, field))

static void metrics_text(gw_ctx_t *x, proto_metrics_buf_t *b)
{
	gw_worker_t *ws = x->workers;
	uint32_t nw = x->workers ? x->nworkers : 0;
	char l[128];
	static _Thread_local proto_metrics_hist_t lat;
	kv_nodestat_data_t d;
	bool have = x->ns != NULL && x->ns->page != NULL && kv_nodestat_read(x->ns, &d) == 0;

	proto_metrics_buf_reset(b);
	proto_metrics_family(b, "geokv_gateway_requests_total", "counter",
			     "HTTP requests answered, by route and status.");
	for (int r = 0; r < GW_R_COUNT; r++)
		for (int s = 0; s < GW_S_COUNT; s++) {
			uint64_t v = SUM(req[r][s]);
			if (v == 0 && !(s == GW_S200))
				continue;
			snprintf(l, sizeof l, "route=\"%s\",status=\"%d\"", route_names[r],
				 status_codes[s]);
			proto_metrics_u64(b, "geokv_gateway_requests_total", l, v);
		}
	proto_metrics_family(b, "geokv_gateway_request_duration_seconds", "histogram",
			     "Time from a request's first byte to its answer being produced.");
	if (nw > 0) {
		proto_metrics_hist_init(&lat, ws[0].stats.latency.bounds,
					ws[0].stats.latency.bounds_units, ws[0].stats.latency.n,
					ws[0].stats.latency.scale);
		for (uint32_t i = 0; i < nw; i++)
			proto_metrics_hist_add(&lat, &ws[i].stats.latency);
		proto_metrics_hist_write(b, "geokv_gateway_request_duration_seconds", NULL, &lat);
	}
	proto_metrics_family(b, "geokv_gateway_connections_open", "gauge", "Open client connections.");
	proto_metrics_u64(b, "geokv_gateway_connections_open", NULL, SUM(conns_open));
	proto_metrics_family(b, "geokv_gateway_connections_total", "counter", "Accepted connections.");
	proto_metrics_u64(b, "geokv_gateway_connections_total", NULL, SUM(conns_total));
	proto_metrics_family(b, "geokv_gateway_connections_refused_total", "counter",
			     "Connections closed at accept because the connection cap was reached.");
	proto_metrics_u64(b, "geokv_gateway_connections_refused_total", NULL, SUM(conns_refused));
	proto_metrics_family(b, "geokv_gateway_tls_handshakes_total", "counter",
			     "Completed TLS handshakes by kind, and failed ones.");
	proto_metrics_u64(b, "geokv_gateway_tls_handshakes_total", "kind=\"full\"", SUM(hs_full));
	proto_metrics_u64(b, "geokv_gateway_tls_handshakes_total", "kind=\"resumed\"", SUM(hs_resumed));
	proto_metrics_u64(b, "geokv_gateway_tls_handshakes_total", "kind=\"failed\"", SUM(hs_failed));
	proto_metrics_family(b, "geokv_gateway_timeouts_total", "counter",
			     "Connections closed by a timeout, by phase.");
	proto_metrics_u64(b, "geokv_gateway_timeouts_total", "phase=\"handshake\"", SUM(timeouts_handshake));
	proto_metrics_u64(b, "geokv_gateway_timeouts_total", "phase=\"header\"", SUM(timeouts_header));
	proto_metrics_u64(b, "geokv_gateway_timeouts_total", "phase=\"idle\"", SUM(timeouts_idle));
	proto_metrics_u64(b, "geokv_gateway_timeouts_total", "phase=\"write\"", SUM(timeouts_write));
	proto_metrics_family(b, "geokv_gateway_rate_limited_total", "counter",
			     "Connections closed for exceeding the per-connection request rate.");
	proto_metrics_u64(b, "geokv_gateway_rate_limited_total", NULL, SUM(rate_limited));
	proto_metrics_family(b, "geokv_gateway_protocol_errors_total", "counter",
			     "Connections closed for malformed HTTP or TLS.");
	proto_metrics_u64(b, "geokv_gateway_protocol_errors_total", NULL, SUM(protocol_errors));
	proto_metrics_family(b, "geokv_gateway_min_rev_waits_total", "counter",
			     "Requests that waited for ?min_rev.");
	proto_metrics_u64(b, "geokv_gateway_min_rev_waits_total", NULL, SUM(min_rev_waits));
	proto_metrics_family(b, "geokv_gateway_received_bytes_total", "counter",
			     "Bytes received from clients (on the wire, TLS included).");
	proto_metrics_u64(b, "geokv_gateway_received_bytes_total", NULL, SUM(bytes_in));
	proto_metrics_family(b, "geokv_gateway_sent_bytes_total", "counter",
			     "Bytes of HTTP answers produced (before TLS).");
	proto_metrics_u64(b, "geokv_gateway_sent_bytes_total", NULL, SUM(bytes_out));
	proto_metrics_family(b, "geokv_gateway_workers", "gauge", "Worker threads.");
	proto_metrics_u64(b, "geokv_gateway_workers", NULL, nw);
	proto_metrics_family(b, "geokv_gateway_corrupt_records_total", "counter",
			     "Records refused because they failed their checksum (answered 503).");
	proto_metrics_u64(b, "geokv_gateway_corrupt_records_total", NULL,
			  x->store != NULL ? kv_corrupt_count(x->store) : 0);

	proto_metrics_family(b, "geokv_node_revision", "gauge", "Store revision applied by the node.");
	proto_metrics_u64(b, "geokv_node_revision", NULL, gw_node_revision(x));
	proto_metrics_family(b, "geokv_node_status_present", "gauge",
			     "1 when the node's status page is readable.");
	proto_metrics_u64(b, "geokv_node_status_present", NULL, have ? 1 : 0);
	if (have) {
		uint64_t now = kv_nodestat_now_ms();
		proto_metrics_family(b, "geokv_node_applied_index", "gauge", "Log index applied by the node.");
		proto_metrics_u64(b, "geokv_node_applied_index", NULL, d.applied);
		proto_metrics_family(b, "geokv_node_commit_index", "gauge", "Group commit index known to the node.");
		proto_metrics_u64(b, "geokv_node_commit_index", NULL, d.commit);
		proto_metrics_family(b, "geokv_node_lag_entries", "gauge", "Entries committed but not yet applied.");
		proto_metrics_u64(b, "geokv_node_lag_entries", NULL, d.lag_entries);
		proto_metrics_family(b, "geokv_node_lag_seconds", "gauge", "Node's lag behind the leader.");
		proto_metrics_f64(b, "geokv_node_lag_seconds", NULL, (double)d.lag_ms / 1000.0);
		proto_metrics_family(b, "geokv_node_contact_age_seconds", "gauge",
				     "Time since the node last heard from its feed or leader.");
		proto_metrics_f64(b, "geokv_node_contact_age_seconds", NULL,
				  now > d.contact_ms ? (double)(now - d.contact_ms) / 1000.0 : 0.0);
		proto_metrics_family(b, "geokv_node_feed_connected", "gauge",
				     "1 when the node is connected to its feed or knows a leader.");
		proto_metrics_u64(b, "geokv_node_feed_connected", NULL, (d.flags & KV_NS_FEED) ? 1 : 0);
	}
	{
		kv_nodestat_data_t hd;
		uint64_t age;
		bool h;
		proto_metrics_family(b, "geokv_gateway_healthy", "gauge", "1 when /healthz answers 200.");
		proto_metrics_u64(b, "geokv_gateway_healthy", NULL, health_reason(x, &hd, &age, &h) ? 0 : 1);
	}
}

static int metrics(gw_ctx_t *x, gw_out_t *o, bool with_body, bool close)
{
	proto_metrics_buf_t *b = x->mbuf;

	metrics_text(x, b);
	if (b->err != 0) {
		gw_respond_error(x, o, 500, "out of memory", close);
		return 500;
	}
	simple(x, o, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, b->p, b->len,
	       with_body, close);
	return 200;
}

/* ---- /kv/<key> --------------------------------------------------------------------------- */

static const char *content_type(gw_ctx_t *x, const char *bucket, size_t blen)
{
	proto_bucket_info_t info;
	uint64_t rev = kv_txn_revision(x->rtxn);

	if (x->ctype_valid && x->ctype_rev == rev && x->ctype_bucket_len == blen &&
	    memcmp(x->ctype_bucket, bucket, blen) == 0)
		return x->ctype;
	x->ctype_valid = false;
	if (kv_bucket_info(x->rtxn, bucket, blen, &info) != 0)
		return "application/octet-stream";
	size_t n = info.cfg.content_type.len;
	if (n == 0 || n > PROTO_MAX_CTYPE) {
		strcpy(x->ctype, "application/octet-stream");
	} else {
		memcpy(x->ctype, info.cfg.content_type.p, n);
		x->ctype[n] = '\0';
		/* A content type with CR/LF would split our header: never send it. */
		if (strpbrk(x->ctype, "\r\n") != NULL)
			strcpy(x->ctype, "application/octet-stream");
	}
	memcpy(x->ctype_bucket, bucket, blen);
	x->ctype_bucket_len = blen;
	x->ctype_rev = rev;
	x->ctype_valid = true;
	return x->ctype;
}

static void rev_headers(gw_out_t *o, uint64_t rev)
{
	gw_out_str(o, "ETag: \"");
	gw_out_u64(o, rev);
	gw_out_str(o, "\"\r\nX-Geokv-Revision: ");
	gw_out_u64(o, rev);
	gw_out_str(o, "\r\nCache-Control: no-store\r\n");
}

static int behind(gw_ctx_t *x, gw_out_t *o, int status, const gw_target_t *t, uint64_t have,
		  bool with_body, bool close)
{
	char body[160], extra[80];
	int n = snprintf(body, sizeof body,
			 "{\"error\":\"revision not reached\",\"min_rev\":%" PRIu64
			 ",\"revision\":%" PRIu64 "}\n", t->min_rev, have);

	snprintf(extra, sizeof extra, "X-Geokv-Revision: %" PRIu64 "\r\nRetry-After: 1\r\n", have);
	simple(x, o, status, "application/json", extra, body, (size_t)n, with_body, close);
	return status;
}

static int kv(gw_ctx_t *x, const gw_req_t *req, const gw_target_t *t, gw_out_t *o,
	      uint64_t now_ms, uint64_t *wait_until, bool close)
{
	const gw_config_t *c = x->cfg;
	const char *bucket = t->bucket_len ? t->bucket : c->bucket;
	size_t blen = t->bucket_len ? t->bucket_len : strlen(c->bucket);
	bool with_body = req->method != HTTP_HEAD;
	proto_rec_t rec;
	int rc;

	if (x->store == NULL || begin_read(x) != 0) {
		err_body(x, o, 503, "store unavailable", with_body, close);
		return 503;
	}
	if (t->has_min_rev) {
		uint64_t have = kv_txn_revision(x->rtxn);
		if (have < t->min_rev) {
			uint64_t wait = t->has_wait ? t->wait_ms : c->min_rev_wait_ms;
			if (wait > c->min_rev_max_wait_ms)
				wait = c->min_rev_max_wait_ms;
			if (*wait_until == 0 && wait > 0) {
				*wait_until = now_ms + wait;
				return GW_WAIT;
			}
			if (*wait_until != 0 && now_ms < *wait_until)
				return GW_WAIT;
			return behind(x, o, wait > 0 ? 504 : 503, t, have, with_body, close);
		}
	}
	rc = kv_get(x->rtxn, bucket, blen, t->key, t->key_len, 0, &rec);
	if (rc == KV_ENOTFOUND || rc == KV_ENOBUCKET) {
		err_body(x, o, 404, rc == KV_ENOBUCKET ? "no such bucket" : "not found", with_body, close);
		return 404;
	}
	if (rc == KV_EBADKEY || rc == KV_EBADBUCKET) {
		err_body(x, o, 400, rc == KV_EBADKEY ? "invalid key" : "invalid bucket", with_body, close);
		return 400;
	}
	if (rc == KV_ECORRUPT) {
		/* the store logged it; never serve it: another location has a sound copy */
		err_body(x, o, 503, "record failed its checksum", with_body, close);
		return 503;
	}
	if (rc != 0) {
		GK_DEBUG("gateway", "lookup failed", "err=%s", geokv_errname(rc));
		err_body(x, o, 500, "lookup failed", with_body, close);
		return 500;
	}
	if (req->inm != NULL && gw_inm_match(req->inm, req->inm_len, rec.rev)) {
		head(x, o, 304, close);
		rev_headers(o, rec.rev);
		gw_out_str(o, "\r\n");
		return 304;
	}
	head(x, o, 200, close);
	gw_out_str(o, "Content-Type: ");
	gw_out_str(o, content_type(x, bucket, blen));
	gw_out_str(o, "\r\nContent-Length: ");
	gw_out_u64(o, rec.value.len);
	gw_out_str(o, "\r\n");
	rev_headers(o, rec.rev);
	gw_out_str(o, "\r\n");
	if (with_body)
		gw_out_big(o, rec.value.p, rec.value.len);
	return 200;
}

int gw_respond(gw_ctx_t *x, const gw_req_t *req, gw_target_t *t, int route_rc, gw_out_t *o,
	       uint64_t now_ms, uint64_t *wait_until_ms, bool *close)
{
	bool with_body = req->method != HTTP_HEAD;

	*close = !req->keep_alive || x->stopping;
	if (req->method != HTTP_GET && req->method != HTTP_HEAD) {
		simple(x, o, 405, "text/plain; charset=utf-8", "Allow: GET, HEAD\r\n",
		       "method not allowed\n", 19, true, *close);
		return 405;
	}
	if (route_rc != 0) {
		err_body(x, o, route_rc, t->err, with_body, *close);
		return route_rc;
	}
	switch (t->route) {
	case GW_R_KV:
		return kv(x, req, t, o, now_ms, wait_until_ms, *close);
	case GW_R_HEALTHZ:
		return health(x, o, with_body, *close);
	case GW_R_READYZ:
		return ready(x, o, with_body, *close);
	case GW_R_LIVEZ:
		simple(x, o, 200, "application/json", NULL, "{\"status\":\"ok\"}\n", 16, with_body,
		       *close);
		return 200;
	case GW_R_METRICS:
		return metrics(x, o, with_body, *close);
	default:
		err_body(x, o, 404, "not found", with_body, *close);
		return 404;
	}
}
