/*
 * geokv-primary /metrics: the counters the daemon keeps, their Prometheus text (written with
 * proto/metrics.h), and a deliberately tiny plain-HTTP listener that serves it with the
 * /livez, /readyz and /healthz probes.
 *
 * The listener is for a Prometheus server on a private network, not for the internet: one
 * request per connection (answered with Connection: close), GET or HEAD only, the
 * request head capped at MREQ_MAX bytes, every connection cut MCONN_TIMEOUT_MS after accept
 * whatever it is doing, and at most MCONN_MAX at once (more are closed at accept). All I/O
 * is non-blocking on the loop thread, and rendering is a few hundred snprintf calls plus one
 * read transaction for the store's map figures, so a scrape cannot stall client traffic.
 *
 * Each /metrics connection renders into its own buffer: the text must live until its write
 * completes, and two scrapes may overlap. Scrapes are seconds apart, so that allocation is
 * not on any hot path.
 */
#include "core/prim_feed.h"
#include "core/primary_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MREQ_MAX          8192   /* request line + headers */
#define MCONN_MAX         32
#define MCONN_TIMEOUT_MS  5000   /* from accept to the last byte written */
#define MLINGER_MS        1000   /* after the response: drain what the peer still sends */

/* ---- counters ------------------------------------------------------------------------- */

/* Latency buckets, seconds (observed in microseconds): 50 us .. 10 s. */
static const double lat_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
				    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const uint64_t lat_bounds_us[] = {50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000,
					 50000, 100000, 250000, 500000, 1000000, 2500000,
					 5000000, 10000000};
/* Entries per commit group: 1 .. GROUP_MAX_ENTRIES (65536). */
static const double grp_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384,
				    65536};
static const uint64_t grp_bounds_n[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096,
					16384, 65536};
#define NB(a) ((int)(sizeof(a) / sizeof((a)[0])))

_Static_assert(NB(lat_bounds) == NB(lat_bounds_us), "latency bounds tables differ");
_Static_assert(NB(grp_bounds) == NB(grp_bounds_n), "group bounds tables differ");

void prim__stats_init(prim_stats_t *st)
{
	memset(st, 0, sizeof *st);
	proto_metrics_hist_init(&st->write_latency, lat_bounds, lat_bounds_us, NB(lat_bounds), 1e6);
	proto_metrics_hist_init(&st->fsync_latency, lat_bounds, lat_bounds_us, NB(lat_bounds), 1e6);
	proto_metrics_hist_init(&st->store_sync_latency, lat_bounds, lat_bounds_us, NB(lat_bounds),
				1e6);
	proto_metrics_hist_init(&st->group_entries, grp_bounds, grp_bounds_n, NB(grp_bounds), 1);
}

/* Opcode -> row of requests[][]; its label. Row 0 is "unknown" (never expected: unknown
 * ops are refused before they count as requests). */
static const struct {
	uint8_t op;
	const char *name;
} ops[PRIM_STAT_OPS] = {
	{0, "unknown"},
	{PROTO_OP_BUCKET_ADD, "bucket_add"}, {PROTO_OP_BUCKET_DEL, "bucket_del"},
	{PROTO_OP_PUT, "put"}, {PROTO_OP_CREATE, "create"}, {PROTO_OP_UPDATE, "update"},
	{PROTO_OP_DELETE, "delete"}, {PROTO_OP_PURGE, "purge"}, {PROTO_OP_BATCH, "batch"},
	{PROTO_OP_GET, "get"}, {PROTO_OP_KEYS, "keys"}, {PROTO_OP_HISTORY, "history"},
	{PROTO_OP_BUCKET_INFO, "bucket_info"}, {PROTO_OP_BUCKET_LIST, "bucket_list"},
	{PROTO_OP_STATUS, "status"}, {PROTO_OP_HASH, "hash"},
};

static int op_slot(uint8_t op)
{
	for (int i = 1; i < PRIM_STAT_OPS; i++)
		if (ops[i].op == op)
			return i;
	return 0;
}

/*
 * Status -> column: 0 ok, 1..14 KV_ENOTFOUND..KV_EBATCH, 15..26 PROTO_EBADMSG..
 * PROTO_ETLS, 28 anything else. Fixed columns keep counting to an array index.
 */
#define KV_SLOTS    (KV_ENOTFOUND - KV_ELAST)           /* 14 */
#define PROTO_SLOTS (PROTO_EBADMSG - PROTO_ELAST)       /* 13 */
_Static_assert(1 + KV_SLOTS + PROTO_SLOTS + 1 == PRIM_STAT_STATUSES, "status columns");

static int status_slot(int status)
{
	if (status == 0)
		return 0;
	if (status <= KV_ENOTFOUND && status > KV_ELAST)
		return 1 + (KV_ENOTFOUND - status);
	if (status <= PROTO_EBADMSG && status > PROTO_ELAST)
		return 1 + KV_SLOTS + (PROTO_EBADMSG - status);
	return PRIM_STAT_STATUSES - 1;
}

static const char *status_name(int slot)
{
	if (slot == 0)
		return "ok";
	if (slot <= KV_SLOTS)
		return geokv_errname(KV_ENOTFOUND - (slot - 1));
	if (slot <= KV_SLOTS + PROTO_SLOTS)
		return geokv_errname(PROTO_EBADMSG - (slot - 1 - KV_SLOTS));
	return "other";
}

void prim__stat_request(prim_t *p, uint8_t op, int status)
{
	p->st.requests[op_slot(op)][status_slot(status)]++;
}

static const char *const reject_names[PRIM_REJ_N] = {
	[PRIM_REJ_TOO_BIG] = "frame_too_big",
	[PRIM_REJ_BAD_HEADER] = "bad_header",
	[PRIM_REJ_NO_HELLO] = "no_hello",
	[PRIM_REJ_BAD_HELLO] = "bad_hello",
	[PRIM_REJ_VERSION] = "version",
	[PRIM_REJ_CLUSTER] = "cluster",
	[PRIM_REJ_AUTH] = "auth",
	[PRIM_REJ_DUP_HELLO] = "duplicate_hello",
	[PRIM_REJ_UNKNOWN_TYPE] = "unknown_type",
	[PRIM_REJ_UNKNOWN_OP] = "unknown_op",
	[PRIM_REJ_FIELD_TOO_BIG] = "field_too_big",
	[PRIM_REJ_BAD_OP] = "bad_op",
	[PRIM_REJ_ROLE] = "role",
	[PRIM_REJ_MEMORY] = "memory",
};

/* ---- the text ------------------------------------------------------------------------- */

static void gauge(proto_metrics_buf_t *b, const char *name, const char *help, uint64_t v)
{
	proto_metrics_family(b, name, "gauge", help);
	proto_metrics_u64(b, name, NULL, v);
}

static void counter(proto_metrics_buf_t *b, const char *name, const char *help, uint64_t v)
{
	proto_metrics_family(b, name, "counter", help);
	proto_metrics_u64(b, name, NULL, v);
}

static void render(prim_t *p, proto_metrics_buf_t *b)
{
	const prim_stats_t *st = &p->st;
	kv_stats_t ks;
	char l[128];
	int rc;

	proto_metrics_family(b, "geokv_primary_build_info", "gauge",
			     "Always 1; labels name the version and node.");
	snprintf(l, sizeof l, "version=\"%s\",node=\"%" PRIu64 "\"", PRIM_VERSION, p->cfg->node_id);
	proto_metrics_u64(b, "geokv_primary_build_info", l, 1);

	/* Requests: only the (op, status) pairs seen, plus ok for every op so the common
	 * series exist from the first scrape (rate() needs a zero to start from). */
	proto_metrics_family(b, "geokv_primary_requests_total", "counter",
			     "Requests answered, by op and status (ok or the error code's name).");
	for (int o = 1; o < PRIM_STAT_OPS; o++)
		for (int s = 0; s < PRIM_STAT_STATUSES; s++) {
			if (s != 0 && st->requests[o][s] == 0)
				continue;
			snprintf(l, sizeof l, "op=\"%s\",status=\"%s\"", ops[o].name, status_name(s));
			proto_metrics_u64(b, "geokv_primary_requests_total", l, st->requests[o][s]);
		}
	proto_metrics_family(b, "geokv_primary_write_duration_seconds", "histogram",
			     "From receipt of a write to its answer (durable and applied).");
	proto_metrics_hist_write(b, "geokv_primary_write_duration_seconds", NULL, &st->write_latency);
	proto_metrics_family(b, "geokv_primary_commit_group_entries", "histogram",
			     "Entries per log append (one fsync covers them all).");
	proto_metrics_hist_write(b, "geokv_primary_commit_group_entries", NULL, &st->group_entries);
	proto_metrics_family(b, "geokv_primary_log_fsync_duration_seconds", "histogram",
			     "fsync of the log (raft/) per commit group.");
	proto_metrics_hist_write(b, "geokv_primary_log_fsync_duration_seconds", NULL,
				 &st->fsync_latency);
	proto_metrics_family(b, "geokv_primary_store_sync_duration_seconds", "histogram",
			     "Periodic fsync of the store (state/).");
	proto_metrics_hist_write(b, "geokv_primary_store_sync_duration_seconds", NULL,
				 &st->store_sync_latency);

	gauge(b, "geokv_primary_log_first_index", "First index in the log (older ones compacted).",
	      kv_log_first_index(p->log));
	gauge(b, "geokv_primary_log_last_index", "Last index in the log.", kv_log_last_index(p->log));
	gauge(b, "geokv_primary_commit_index", "Highest log index known committed (on a majority).",
	      raft_commit(&p->raft));
	gauge(b, "geokv_primary_raft_term", "Current Raft term.", raft_term(&p->raft));
	gauge(b, "geokv_primary_raft_leader", "1 while this node is the Raft leader.",
	      raft_role(&p->raft) == RAFT_LEADER);
	gauge(b, "geokv_primary_raft_leader_id", "Node id of the known leader (0 = none).",
	      raft_leader(&p->raft));
	gauge(b, "geokv_primary_raft_members", "Voting members in the configuration.",
	      raft_conf(&p->raft)->n);
	gauge(b, "geokv_primary_repairing", "1 while a damaged log or store is repaired from peers.",
	      p->repairing);
	counter(b, "geokv_primary_corrupt_records_total",
		"Records of state/ that failed their checksum (refused; a group member rebuilds).",
		p->store ? kv_corrupt_count(p->store) : 0);
	gauge(b, "geokv_primary_apply_stalled", "1 while apply waits (store full or I/O error).",
	      p->apply_stalled_at != 0);
	gauge(b, "geokv_primary_proposals_waiting", "Writes proposed to raft, not yet answered.",
	      p->nwaiting);
	gauge(b, "geokv_primary_reads_waiting", "Linearizable reads waiting for ReadIndex/apply.",
	      p->nreads);
	counter(b, "geokv_primary_leader_changes_total", "Leader changes seen.", st->leader_changes);
	counter(b, "geokv_primary_elections_won_total", "Times this node became leader.",
		st->elections_won);
	counter(b, "geokv_primary_proposals_lost_total",
		"Writes answered ENOTLEADER (replaced) or ETIMEDOUT (lost in a leader change).",
		st->props_lost);
	counter(b, "geokv_primary_reads_linearizable_total", "ReadIndex rounds asked.",
		st->reads_index);
	counter(b, "geokv_primary_reads_stale_total", "Reads served from the local copy (stale).",
		st->reads_stale);
	counter(b, "geokv_primary_peer_received_bytes_total", "Bytes from peers.",
		st->peer_bytes_in);
	counter(b, "geokv_primary_peer_sent_bytes_total", "Bytes queued to peers.",
		st->peer_bytes_out);
	counter(b, "geokv_primary_peer_dropped_messages_total",
		"Raft messages dropped (peer down or its queue full; raft resends).", st->peer_dropped);
	counter(b, "geokv_primary_peer_refused_total",
		"Peer connections refused at the handshake (cluster, node, token).", st->peer_refused);
	counter(b, "geokv_primary_snapshots_sent_total", "Snapshot transfers started to followers.",
		st->snapshots_sent);
	counter(b, "geokv_primary_snapshots_installed_total", "Snapshots installed here.",
		st->snapshots_installed);
	gauge(b, "geokv_primary_applied_index", "Highest log index applied to the store.",
	      prim__applied(p));
	gauge(b, "geokv_primary_synced_applied_index",
	      "Applied index the store has durably synced (the compaction bound).",
	      p->synced_applied);
	gauge(b, "geokv_primary_revision", "Store revision.", kv_revision(p->store));
	gauge(b, "geokv_primary_pending_entries", "Writes proposed, waiting for the next log job.",
	      p->pending.n);
	counter(b, "geokv_primary_expired_keys_total", "Expiry deletes applied (max age).",
		st->expired);
	counter(b, "geokv_primary_space_refused_total",
		"Writes refused KV_EFULL to keep headroom for deletes (state/ near map-max or disk full).",
		st->space_refused);
	gauge(b, "geokv_primary_state_disk_free_bytes", "Bytes free on the file system of state/.",
	      p->disk_free == UINT64_MAX ? 0 : p->disk_free);

	if ((rc = kv_stats(p->store, &ks)) == 0) {
		gauge(b, "geokv_primary_store_map_size_bytes", "Current LMDB map size of state/.",
		      ks.map_size);
		gauge(b, "geokv_primary_store_map_used_bytes", "Bytes of state/ in use.", ks.map_used);
		gauge(b, "geokv_primary_store_map_max_bytes", "Configured cap on the state/ map.",
		      p->cfg->map_max);
		gauge(b, "geokv_primary_store_keys", "Live keys, all buckets.", ks.keys);
		gauge(b, "geokv_primary_store_buckets", "Buckets.", ks.buckets);
	} else {
		GK_WARN("metrics", "store stats failed", "err=%s", geokv_errname(rc));
	}

	gauge(b, "geokv_primary_connections_open", "Open client connections.", p->nconns);
	counter(b, "geokv_primary_connections_accepted_total", "Client connections accepted.",
		st->conns_accepted);
	counter(b, "geokv_primary_connections_refused_total",
		"Client connections closed at accept (max-conns, or stopping).", st->conns_refused);
	proto_metrics_family(b, "geokv_primary_connections_timed_out_total", "counter",
			     "Client connections closed by a timeout, by reason.");
	proto_metrics_u64(b, "geokv_primary_connections_timed_out_total", "reason=\"hello\"",
			  st->timeouts_hello);
	proto_metrics_u64(b, "geokv_primary_connections_timed_out_total", "reason=\"idle\"",
			  st->timeouts_idle);
	proto_metrics_u64(b, "geokv_primary_connections_timed_out_total", "reason=\"frame\"",
			  st->timeouts_frame);
	gauge(b, "geokv_primary_read_buffer_bytes",
	      "Bytes of client read buffers grown past 64 KiB (charged to the read budget).",
	      st->read_held);
	gauge(b, "geokv_primary_read_buffer_budget_bytes",
	      "Cap on those bytes; past it a connection gets PROTO_EBUSY and is closed.",
	      prim__read_budget(p));
	counter(b, "geokv_primary_received_bytes_total", "Bytes read from client connections.",
		st->bytes_in);
	counter(b, "geokv_primary_sent_bytes_total", "Bytes written to client connections.",
		st->bytes_out);
	proto_metrics_family(b, "geokv_primary_frames_rejected_total", "counter",
			     "Client frames refused with an error, by reason.");
	for (int r = 0; r < PRIM_REJ_N; r++) {
		snprintf(l, sizeof l, "reason=\"%s\"", reject_names[r]);
		proto_metrics_u64(b, "geokv_primary_frames_rejected_total", l, st->rejected[r]);
	}
	counter(b, "geokv_primary_metrics_scrapes_total", "GET /metrics served.",
		st->metrics_scrapes);
	prim__feed_metrics(p, b); /* geokv_primary_feed_*: leaves, their lag, re-syncs */
}

/* ---- the HTTP listener ---------------------------------------------------------------- */

struct prim_mconn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	prim_t *p;
	prim_mconn_t *prev, *next;
	int open_handles;          /* freed when both tcp and timer are closed */
	bool answered;             /* response queued: reads are drained, then EOF closes */
	bool closing;
	size_t len;
	char req[MREQ_MAX];
	char head[256];
	char hbody[128];           /* a probe's JSON answer */
	proto_metrics_buf_t body;
	uv_write_t wreq;
	uv_shutdown_t sreq;
};

static void m_on_closed(uv_handle_t *h)
{
	prim_mconn_t *m = h->data;

	if (--m->open_handles > 0)
		return;
	proto_metrics_buf_free(&m->body);
	free(m);
}

static void m_close(prim_mconn_t *m)
{
	prim_t *p = m->p;

	if (m->closing)
		return;
	m->closing = true;
	if (m->prev)
		m->prev->next = m->next;
	else
		p->mconns = m->next;
	if (m->next)
		m->next->prev = m->prev;
	p->nmconns--;
	uv_close((uv_handle_t *)&m->tcp, m_on_closed);
	uv_close((uv_handle_t *)&m->timer, m_on_closed);
}

static void m_on_timer(uv_timer_t *t)
{
	prim_mconn_t *m = t->data;

	if (!m->answered)
		GK_DEBUG("metrics", "request timed out, closing", "received=%zu", m->len);
	m_close(m);
}

static void m_on_shutdown(uv_shutdown_t *req, int status)
{
	(void)req;
	(void)status; /* the timer or the peer's EOF closes the connection */
}

static void m_on_write(uv_write_t *req, int status)
{
	prim_mconn_t *m = req->data;

	if (m->closing)
		return;
	if (status < 0 || uv_shutdown(&m->sreq, (uv_stream_t *)&m->tcp, m_on_shutdown) != 0) {
		m_close(m);
		return;
	}
	/* Closing with unread request bytes would send RST, which can destroy the response
	 * before the peer reads it: keep draining until its EOF, for a short while. */
	uv_timer_start(&m->timer, m_on_timer, MLINGER_MS, 0);
}

/* Queue the response: m->head, then body (which must outlive the write: m->body.p or a
 * string literal). */
static void m_respond(prim_mconn_t *m, int code, const char *reason, const char *ctype,
		      const char *body, size_t blen, const char *extra, bool head_only)
{
	uv_buf_t bufs[2];
	unsigned n = 1;

	m->answered = true;
	snprintf(m->head, sizeof m->head,
		 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
		 "Connection: close\r\n\r\n", code, reason, ctype, blen, extra ? extra : "");
	bufs[0] = uv_buf_init(m->head, (unsigned)strlen(m->head));
	if (!head_only && blen > 0)
		bufs[n++] = uv_buf_init((char *)body, (unsigned)blen);
	m->wreq.data = m;
	if (uv_write(&m->wreq, (uv_stream_t *)&m->tcp, bufs, n, m_on_write) != 0)
		m_close(m);
}

/* An error answer; msg is a string literal ending in "\n". */
static void m_error(prim_mconn_t *m, int code, const char *reason, const char *msg,
		    const char *extra, bool head_only)
{
	m_respond(m, code, reason, "text/plain; charset=utf-8", msg, strlen(msg), extra, head_only);
}

/* ---- probes --------------------------------------------------------------------------- */

/*
 * The three probes, from least to most demanding, each answered with one short JSON object
 * ({"status":"ok"} or {"status":"unavailable","reason":"..."}):
 *   /livez   the event loop answers (always 200: a restart would not help a member that is
 *            catching up or shutting down);
 *   /readyz  the member can serve clients: not stopping, not repairing damaged data, a leader
 *            is known, and it has applied everything committed at least once since start;
 *   /healthz ready, and fresh: apply is not stalled (store full or I/O error), a follower has
 *            heard from the leader within two maximum election timeouts, and it is no more
 *            than PRIM_HEALTH_MAX_LAG committed entries behind.
 */
#define PRIM_HEALTH_MAX_LAG 10000u

const char *prim__probe(prim_t *p, prim_probe_t probe, uint64_t now_ms)
{
	const kv_nodestat_data_t *d = &p->ns.last;
	uint64_t applied = prim__applied(p), commit = raft_commit(&p->raft);
	uint64_t contact_max = 4ull * p->cfg->election_ticks * p->cfg->tick_ms;

	if (probe == PRIM_PROBE_LIVE)
		return NULL;
	if (p->stopping)
		return "shutting down";
	if (p->repairing)
		return "repairing damaged data from the other members";
	if (raft_leader(&p->raft) == 0)
		return "no leader known";
	if (p->ns.page != NULL && !(d->flags & KV_NS_CAUGHT_UP))
		return "not caught up since start";
	if (probe == PRIM_PROBE_READY)
		return NULL;
	if (p->apply_stalled_at != 0)
		return "apply stalled (store full or I/O error)";
	if (p->store != NULL && kv_corrupt_count(p->store) != 0)
		return "records failed their checksum";
	if (raft_role(&p->raft) != RAFT_LEADER && now_ms > p->leader_contact_ms + contact_max)
		return "no contact with the leader";
	if (commit > applied + PRIM_HEALTH_MAX_LAG)
		return "lagging behind the commit index";
	return NULL;
}

static void m_health(prim_mconn_t *m, prim_probe_t probe, bool head)
{
	struct timespec ts;
	const char *why;
	int n;

	clock_gettime(CLOCK_REALTIME, &ts);
	why = prim__probe(m->p, probe, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
	n = why == NULL ? snprintf(m->hbody, sizeof m->hbody, "{\"status\":\"ok\"}\n")
			: snprintf(m->hbody, sizeof m->hbody,
				   "{\"status\":\"unavailable\",\"reason\":\"%s\"}\n", why);
	if (why == NULL)
		m_respond(m, 200, "OK", "application/json", m->hbody, (size_t)n,
			  "Cache-Control: no-store\r\n", head);
	else
		m_respond(m, 503, "Service Unavailable", "application/json", m->hbody, (size_t)n,
			  "Cache-Control: no-store\r\n", head);
}

/*
 * Answer one request head (m->req[0..len), complete). Only the request line matters: the
 * method, and a target of /metrics (a query string is ignored, as Prometheus may add one).
 */
static void m_handle(prim_mconn_t *m)
{
	char *line_end = memchr(m->req, '\n', m->len), *sp1, *sp2;
	size_t tlen;
	bool head;

	if (line_end == NULL || (sp1 = memchr(m->req, ' ', (size_t)(line_end - m->req))) == NULL ||
	    (sp2 = memchr(sp1 + 1, ' ', (size_t)(line_end - sp1 - 1))) == NULL ||
	    strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
		m_error(m, 400, "Bad Request", "bad request line\n", NULL, false);
		return;
	}
	head = sp1 - m->req == 4 && memcmp(m->req, "HEAD", 4) == 0;
	if (!head && !(sp1 - m->req == 3 && memcmp(m->req, "GET", 3) == 0)) {
		m_error(m, 405, "Method Not Allowed", "only GET and HEAD\n", "Allow: GET, HEAD\r\n",
			false);
		return;
	}
	tlen = (size_t)(sp2 - sp1 - 1);
	if (memchr(sp1 + 1, '?', tlen))
		tlen = (size_t)((char *)memchr(sp1 + 1, '?', tlen) - sp1 - 1);
	for (int k = 0; k < 3; k++) {
		static const char *const paths[3] = {"/livez", "/readyz", "/healthz"};
		if (tlen == strlen(paths[k]) && memcmp(sp1 + 1, paths[k], tlen) == 0) {
			m_health(m, (prim_probe_t)k, head);
			return;
		}
	}
	if (tlen != 8 || memcmp(sp1 + 1, "/metrics", 8) != 0) {
		m_error(m, 404, "Not Found", "only /metrics, /healthz, /readyz and /livez are served here\n",
			NULL, head);
		return;
	}
	proto_metrics_buf_reset(&m->body);
	render(m->p, &m->body);
	if (m->body.err != 0) {
		GK_WARN("metrics", "cannot render metrics", "err=%s", geokv_errname(m->body.err));
		m_error(m, 500, "Internal Server Error", "out of memory\n", NULL, head);
		return;
	}
	m->p->st.metrics_scrapes++;
	m_respond(m, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", m->body.p, m->body.len,
		  NULL, head);
}

static void m_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	prim_mconn_t *m = h->data;

	(void)suggested;
	/* After the answer, reads only drain: reuse the whole buffer. */
	if (m->answered)
		*buf = uv_buf_init(m->req, sizeof m->req);
	else
		*buf = uv_buf_init(m->req + m->len, (unsigned)(sizeof m->req - m->len));
}

static void m_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	prim_mconn_t *m = s->data;
	size_t from;

	(void)buf;
	if (nread < 0) {
		m_close(m);
		return;
	}
	if (m->answered || nread == 0)
		return;
	/* Look for the end of the head only in the new bytes (and the 3 before them), so a
	 * peer sending a byte at a time costs O(total), not O(total^2). */
	from = m->len > 3 ? m->len - 3 : 0;
	m->len += (size_t)nread;
	for (size_t i = from; i + 1 < m->len; i++) {
		if ((m->req[i] == '\n' && m->req[i + 1] == '\n') ||
		    (i + 3 < m->len && memcmp(m->req + i, "\r\n\r\n", 4) == 0)) {
			m_handle(m);
			return;
		}
	}
	if (m->len == sizeof m->req)
		m_error(m, 431, "Request Header Fields Too Large", "request head too large\n", NULL,
			false);
}

static void m_on_connection(uv_stream_t *server, int status)
{
	prim_t *p = server->data;
	prim_mconn_t *m;

	if (status < 0) {
		GK_WARN("metrics", "accept failed", "err=%s", uv_err_name(status));
		return;
	}
	if ((m = calloc(1, sizeof *m)) == NULL)
		return;
	m->p = p;
	m->open_handles = 2;
	uv_tcp_init(p->loop, &m->tcp);
	uv_timer_init(p->loop, &m->timer);
	m->tcp.data = m->timer.data = m;
	proto_metrics_buf_init(&m->body);
	m->next = p->mconns;
	if (p->mconns)
		p->mconns->prev = m;
	p->mconns = m;
	p->nmconns++;
	if (uv_accept(server, (uv_stream_t *)&m->tcp) != 0) {
		m_close(m);
		return;
	}
	if (p->nmconns > MCONN_MAX) {
		GK_WARN("metrics", "too many /metrics connections, refusing", "max=%d", MCONN_MAX);
		m_close(m);
		return;
	}
	uv_timer_start(&m->timer, m_on_timer, MCONN_TIMEOUT_MS, 0);
	if (uv_read_start((uv_stream_t *)&m->tcp, m_on_alloc, m_on_read) != 0)
		m_close(m);
}

int prim__metrics_listen(prim_t *p)
{
	struct sockaddr_storage ss;
	int rc;

	if (p->cfg->metrics_listen[0] == '\0')
		return 0;
	if (prim__parse_addr(p->cfg->metrics_listen, &ss) != 0) {
		GK_ERROR("metrics", "bad metrics-listen address", "listen=%s hint=\"HOST:PORT\"",
			 p->cfg->metrics_listen);
		return -EINVAL;
	}
	uv_tcp_init(p->loop, &p->mlistener);
	p->mlistener.data = p;
	if ((rc = uv_tcp_bind(&p->mlistener, (struct sockaddr *)&ss, 0)) != 0 ||
	    (rc = uv_listen((uv_stream_t *)&p->mlistener, 64, m_on_connection)) != 0) {
		GK_ERROR("metrics", "cannot listen", "listen=%s err=\"%s\"", p->cfg->metrics_listen,
			 uv_strerror(rc));
		uv_close((uv_handle_t *)&p->mlistener, NULL);
		uv_run(p->loop, UV_RUN_NOWAIT);
		return rc;
	}
	p->mlistening = true;
	GK_INFO("metrics", "serving /metrics", "listen=%s", p->cfg->metrics_listen);
	return 0;
}

void prim__metrics_close(prim_t *p)
{
	if (p->mlistening) {
		p->mlistening = false;
		uv_close((uv_handle_t *)&p->mlistener, NULL);
	}
	while (p->mconns)
		m_close(p->mconns);
}
