/*
 * The leaf's plain-HTTP listener: GET /metrics (Prometheus text), /healthz (200 while fed and
 * within the lag bounds, else 503 with the reason), /readyz (200 once caught up at least once
 * and not installing a snapshot), /livez (200 while the loop runs). One request per
 * connection (Connection: close); requests are capped at 8 KiB and 5 s, so a client can make
 * the leaf hold at most 64 such connections of 8 KiB each.
 */
#include "leaf/leaf.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQ_MAX     8192
#define MAX_HTTP    64
#define HTTP_TIMEOUT_MS 5000

typedef struct hconn {
	uv_tcp_t tcp;
	uv_write_t wreq;
	uv_timer_t timer;
	leaf_t *l;
	char req[REQ_MAX];
	size_t len;
	char *resp;
	int closing;
} hconn_t;

static int nhttp;

static void hc_closed(uv_handle_t *h)
{
	hconn_t *c = h->data;

	if (++c->closing == 3) {
		free(c->resp);
		free(c);
		nhttp--;
	}
}

static void hc_close(hconn_t *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	uv_close((uv_handle_t *)&c->timer, hc_closed);
	uv_close((uv_handle_t *)&c->tcp, hc_closed);
}

static void wrote(uv_write_t *w, int status)
{
	(void)status;
	hc_close(w->data);
}

static void metrics(leaf_t *l, proto_metrics_buf_t *b)
{
	const leaf_stats_t *s = &l->st;
	uint64_t now = kv_nodestat_now_ms();
	const char *why = leaf_health(l);
	char lab[128];

#define G(name, help, v) do { proto_metrics_family(b, "geokv_leaf_" name, "gauge", help); \
	proto_metrics_u64(b, "geokv_leaf_" name, NULL, (v)); } while (0)
#define C(name, help, v) do { proto_metrics_family(b, "geokv_leaf_" name, "counter", help); \
	proto_metrics_u64(b, "geokv_leaf_" name, NULL, (v)); } while (0)
	G("applied_index", "Last log index applied to state/.", l->pos_index);
	G("commit_index", "The group's commit index as the source last said.", l->commit);
	G("revision", "Store revision.", l->store ? kv_revision(l->store) : 0);
	G("lag_entries", "Entries committed by the group and not yet applied here.",
	  leaf_lag_entries(l));
	proto_metrics_family(b, "geokv_leaf_lag_seconds", "gauge",
			     "How long this leaf has been behind, in the leader's clock.");
	proto_metrics_f64(b, "geokv_leaf_lag_seconds", NULL, (double)leaf_lag_ms(l) / 1000.0);
	proto_metrics_family(b, "geokv_leaf_last_contact_seconds", "gauge",
			     "Seconds since the last frame from the source.");
	proto_metrics_f64(b, "geokv_leaf_last_contact_seconds", NULL,
			  l->contact_ms && now > l->contact_ms ? (double)(now - l->contact_ms) / 1000.0 : 0.0);
	G("feed_connected", "1 while streaming from a source.", l->state == LS_STREAM);
	G("healthy", "1 while /healthz answers 200.", why == NULL);
	proto_metrics_family(b, "geokv_leaf_source", "gauge", "The source followed now (1).");
	proto_metrics_label(lab, sizeof lab, l->src[l->cur].addr);
	{
		char full[200];
		snprintf(full, sizeof full, "source=\"%s\"", lab);
		proto_metrics_u64(b, "geokv_leaf_source", full, l->fs ? 1 : 0);
	}
	C("entries_applied_total", "Entries received and applied (NOOP/CONF included).",
	  s->entries_applied);
	C("frames_total", "FEED_ENTRIES frames applied.", s->frames);
	C("bytes_in_total", "Feed bytes received.", s->bytes_in);
	C("heartbeats_total", "Heartbeats received.", s->heartbeats);
	proto_metrics_family(b, "geokv_leaf_resyncs_total", "counter",
			     "Streams refused and restarted from our position, by reason.");
	proto_metrics_u64(b, "geokv_leaf_resyncs_total", "reason=\"gap\"", s->resync_gap);
	proto_metrics_u64(b, "geokv_leaf_resyncs_total", "reason=\"hash\"", s->resync_hash);
	proto_metrics_u64(b, "geokv_leaf_resyncs_total", "reason=\"decode\"", s->resync_decode);
	C("snapshots_installed_total", "Snapshots installed.", s->snapshots_installed);
	C("stalls_total", "Sources dropped for silence.", s->stalls);
	C("source_switches_total", "Moves to another source.", s->source_switches);
	C("connects_total", "Feed sessions opened.", s->connects);
	C("apply_errors_total", "kv_apply failures (the stream is restarted).", s->apply_errors);
#undef G
#undef C
	proto_metrics_family(b, "geokv_leaf_apply_seconds", "histogram", "One kv_apply call.");
	proto_metrics_hist_write(b, "geokv_leaf_apply_seconds", NULL, &s->apply_latency);
	kv_feed_metrics(l->feed, b, "geokv_leaf");
}

static void respond(hconn_t *c)
{
	leaf_t *l = c->l;
	char path[256] = "", body[512];
	int code = 200;
	const char *ctype = "application/json";
	proto_metrics_buf_t mb;
	const char *text = body;
	size_t tlen;

	proto_metrics_buf_init(&mb);
	if (sscanf(c->req, "GET %255s", path) != 1) {
		code = 405;
		snprintf(body, sizeof body, "{\"error\":\"GET only\"}\n");
	} else if (strcmp(path, "/metrics") == 0) {
		metrics(l, &mb);
		ctype = "text/plain; version=0.0.4";
		text = mb.err ? "" : mb.p;
		if (mb.err)
			code = 500;
	} else if (strcmp(path, "/healthz") == 0) {
		const char *why = leaf_health(l);
		code = why ? 503 : 200;
		snprintf(body, sizeof body, "{\"status\":\"%s\",\"reason\":\"%s\",\"applied\":%" PRIu64
			 ",\"commit\":%" PRIu64 ",\"lag_entries\":%" PRIu64 ",\"lag_ms\":%" PRIu64
			 ",\"source\":\"%s\"}\n", why ? "unhealthy" : "ok", why ? why : "fed",
			 l->pos_index, l->commit, leaf_lag_entries(l), leaf_lag_ms(l),
			 l->fs ? l->src[l->cur].addr : "");
	} else if (strcmp(path, "/readyz") == 0) {
		bool ready = l->caught_up_once && l->state != LS_INSTALL && l->state != LS_SNAP;
		code = ready ? 200 : 503;
		snprintf(body, sizeof body, "{\"status\":\"%s\"}\n", ready ? "ready" : "not ready");
	} else if (strcmp(path, "/livez") == 0) {
		snprintf(body, sizeof body, "{\"status\":\"live\"}\n");
	} else {
		code = 404;
		snprintf(body, sizeof body, "{\"error\":\"not found\"}\n");
	}
	tlen = strlen(text);
	size_t cap = tlen + 256;
	if ((c->resp = malloc(cap)) == NULL) {
		proto_metrics_buf_free(&mb);
		hc_close(c);
		return;
	}
	int n = snprintf(c->resp, cap, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
			 "Connection: close\r\n\r\n", code,
			 code == 200 ? "OK" : code == 503 ? "Service Unavailable" :
			 code == 404 ? "Not Found" : code == 405 ? "Method Not Allowed" : "Error",
			 ctype, tlen);
	memcpy(c->resp + n, text, tlen);
	proto_metrics_buf_free(&mb);
	uv_buf_t ub = uv_buf_init(c->resp, (unsigned)(n + (int)tlen));
	c->wreq.data = c;
	uv_read_stop((uv_stream_t *)&c->tcp);
	if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &ub, 1, wrote) != 0)
		hc_close(c);
}

static void hc_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
	hconn_t *c = h->data;

	(void)sz;
	*buf = uv_buf_init(c->req + c->len, (unsigned)(REQ_MAX - 1 - c->len));
}

static void hc_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
	hconn_t *c = st->data;

	(void)buf;
	if (n < 0) {
		hc_close(c);
		return;
	}
	c->len += (size_t)n;
	c->req[c->len] = '\0';
	if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n"))
		respond(c);
	else if (c->len >= REQ_MAX - 1)
		hc_close(c);
}

static void hc_timeout(uv_timer_t *t) { hc_close(t->data); }

static void on_conn(uv_stream_t *srv, int status)
{
	leaf_t *l = srv->data;
	hconn_t *c;

	if (status < 0 || (c = calloc(1, sizeof *c)) == NULL)
		return;
	c->l = l;
	uv_tcp_init(l->loop, &c->tcp);
	uv_timer_init(l->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	nhttp++;
	if (uv_accept(srv, (uv_stream_t *)&c->tcp) != 0 || nhttp > MAX_HTTP) {
		hc_close(c);
		return;
	}
	uv_timer_start(&c->timer, hc_timeout, HTTP_TIMEOUT_MS, 0);
	uv_read_start((uv_stream_t *)&c->tcp, hc_alloc, hc_read);
}

int leaf_http_start(leaf_t *l)
{
	struct sockaddr_storage ss;
	int rc;

	if (l->cfg->metrics_listen[0] == '\0')
		return 0;
	if (proto_fs_parse_addr(l->cfg->metrics_listen, &ss, NULL, 0) != 0)
		return -EINVAL;
	uv_tcp_init(l->loop, &l->http);
	l->http.data = l;
	if ((rc = uv_tcp_bind(&l->http, (struct sockaddr *)&ss, 0)) != 0 ||
	    (rc = uv_listen((uv_stream_t *)&l->http, 64, on_conn)) != 0) {
		GK_ERROR("leaf", "cannot listen for metrics", "listen=%s err=\"%s\"",
			 l->cfg->metrics_listen, uv_strerror(rc));
		uv_close((uv_handle_t *)&l->http, NULL);
		return rc;
	}
	l->http_on = true;
	return 0;
}

void leaf_http_stop(leaf_t *l)
{
	if (l->http_on)
		uv_close((uv_handle_t *)&l->http, NULL);
	l->http_on = false;
}
