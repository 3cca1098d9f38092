/*
 * geokv-primary: the log -> commit -> apply pipeline, start-up replay, store sync and log
 * compaction, TTL expiry, node status, signals. Connections live in core/server.c.
 *
 * The pipeline, and the invariants it keeps:
 *
 *   pending  --start_job-->  log job (thread pool: truncate?, append, fsync, compact?)
 *            --job_done-->   commit = last index of the group (durable, as a group of one)
 *            --apply_group-> one kv_apply for the whole group, then every client answered
 *
 *   - At most one log job runs; proposals that arrive meanwhile wait in `pending` and go
 *     together in the next job: one fsync covers all of them (group commit). The loop keeps
 *     reading and answering reads while the fsync runs.
 *   - A client is answered only after its entry is durable in the log AND applied, so a
 *     restart after kill -9 replays every acknowledged write (the store itself is not
 *     fsynced per write: KV_OPEN_NOSYNC).
 *   - Log indexes are assigned when a group leaves `pending`, so a failed append leaves no
 *     hole: next_index is re-read from the log.
 *   - The log is compacted only up to what a completed kv_sync covered (synced_applied),
 *     minus log_keep entries kept for followers that are a little behind.
 *
 * Where Raft plugs in (next wave): propose -> raft_propose; the log job persists what
 * raft_ready() says (entries + hard state, fsync when must_sync) and sends messages after;
 * `commit` comes from the Ready's commit index instead of the fsync; apply_group reads
 * committed entries from the log when they were not proposed here (followers).
 */
#include "core/primary_int.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define GROUP_MAX_ENTRIES 65536
#define REPLAY_CHUNK      4096
#define HEARTBEAT_MS      100
#define STOP_FLUSH_MS     5000 /* replies still unread by a peer after this are dropped */

/* ---- small helpers -------------------------------------------------------------------- */

int prim__buf_reserve(prim_buf_t *b, size_t extra)
{
	size_t need = b->len + extra, cap = b->cap ? b->cap : 4096;
	uint8_t *np;

	if (need <= b->cap)
		return 0;
	while (cap < need)
		cap *= 2;
	if ((np = realloc(b->p, cap)) == NULL)
		return -ENOMEM;
	b->p = np;
	b->cap = cap;
	return 0;
}

void prim__buf_free(prim_buf_t *b)
{
	free(b->p);
	*b = (prim_buf_t){0};
}

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void q_push(prim_queue_t *q, prim_prop_t *x)
{
	x->next = NULL;
	if (q->tail)
		q->tail->next = x;
	else
		q->head = x;
	q->tail = x;
	q->n++;
	q->bytes += x->len;
}

static prim_prop_t *q_pop(prim_queue_t *q)
{
	prim_prop_t *x = q->head;

	if (x == NULL)
		return NULL;
	q->head = x->next;
	if (q->head == NULL)
		q->tail = NULL;
	q->n--;
	q->bytes -= x->len;
	x->next = NULL;
	return x;
}

/* Put a whole queue in front of another (re-proposing entries after a dropped one). */
static void q_prepend(prim_queue_t *q, prim_queue_t *front)
{
	if (front->head == NULL)
		return;
	front->tail->next = q->head;
	if (q->tail == NULL)
		q->tail = front->tail;
	q->head = front->head;
	q->n += front->n;
	q->bytes += front->bytes;
	*front = (prim_queue_t){0};
}

/* Answer a proposal and free it. */
static void finish_prop(prim_t *p, prim_prop_t *x, const kv_result_t *r)
{
	if (x->conn != NULL) {
		prim__stat_request(p, x->op, r->status);
		proto_metrics_hist_observe(&p->st.write_latency, (uv_hrtime() - x->recv_ns) / 1000);
		if (r->status == 0) {
			prim__reply_write(x->conn, x->req_id, x->op, r);
		} else if (r->status == KV_EBATCH) {
			char msg[160];
			snprintf(msg, sizeof msg, "batch op %u failed: %s", r->failed_at,
				 geokv_strerror(r->failed_status));
			prim__reply_error(x->conn, x->req_id, KV_EBATCH, msg, r->failed_at,
					  r->failed_status);
		} else {
			prim__reply_error(x->conn, x->req_id, r->status, NULL, 0, 0);
		}
		prim__conn_inflight_done(x->conn);
		prim__conn_unref(x->conn);
	} else {
		/* A TTL delete: losing the race to a newer write is the normal case. */
		if (p->ttl_outstanding)
			p->ttl_outstanding--;
		if (r->status == 0)
			p->st.expired++;
		if (r->status != 0 && r->status != KV_EREVISION && r->status != KV_ENOTFOUND &&
		    r->status != KV_ENOBUCKET)
			GK_WARN("primary", "expiry delete failed", "err=%s", geokv_errname(r->status));
	}
	free(x);
}

static void fail_queue(prim_t *p, prim_queue_t *q, int err)
{
	prim_prop_t *x;
	kv_result_t r = {.status = err};

	while ((x = q_pop(q)) != NULL) {
		if (x->err)
			r.status = x->err;
		finish_prop(p, x, &r);
		r.status = err;
	}
}

static void publish_status(prim_t *p)
{
	kv_nodestat_data_t *d = &p->ns.last;
	uint64_t now = wall_ms();

	if (p->ns.page == NULL)
		return;
	d->flags = KV_NS_FEED | KV_NS_LEADER | KV_NS_CAUGHT_UP | (p->stopping ? KV_NS_STOPPING : 0);
	d->term = 1;
	d->commit = p->commit;
	d->applied = kv_applied_index(p->store);
	d->revision = kv_revision(p->store);
	/* A group of one is its own quorum: contact is now, for as long as the loop runs. */
	d->contact_ms = now;
	d->leader_time_ms = now;
	d->lag_entries = d->commit > d->applied ? d->commit - d->applied : 0;
	d->lag_ms = 0;
	kv_nodestat_publish(&p->ns, d);
}

/* ---- apply ---------------------------------------------------------------------------- */

static int ensure_apply_cap(prim_t *p, size_t n)
{
	if (n <= p->apply_cap)
		return 0;
	kv_entry_in_t *in = realloc(p->apply_in, n * sizeof *in);
	if (in == NULL)
		return -ENOMEM;
	p->apply_in = in;
	kv_result_t *res = realloc(p->apply_res, n * sizeof *res);
	if (res == NULL)
		return -ENOMEM;
	p->apply_res = res;
	p->apply_cap = n;
	return 0;
}

/*
 * Apply a committed group with one kv_apply and answer everyone. If the store refuses the
 * call as a whole (full, or an entry it cannot decode), retry entry by entry so the ones that
 * fit are applied and answered; the first refused entry and everything after it are removed
 * from the log by the next job (truncate_from): the refused one is answered with its error
 * once that is durable, the rest are proposed again with new indexes. As a group of one
 * nobody else has seen these entries, so dropping them is safe; with Raft, committed
 * entries are final and this becomes a stall-and-alarm instead (see docs/primary.md).
 */
static void apply_group(prim_t *p, prim_queue_t *g)
{
	prim_prop_t *x;
	size_t n = g->n, i = 0;
	int rc;

	if (n == 0)
		return;
	if (ensure_apply_cap(p, n) != 0) {
		GK_ERROR("primary", "out of memory applying a group", "entries=%zu", n);
		exit(1); /* committed but not applied: replay on restart is the safe path */
	}
	for (x = g->head; x; x = x->next, i++)
		p->apply_in[i] = (kv_entry_in_t){x->index, x->data, x->len};
	rc = kv_apply(p->store, p->apply_in, n, p->apply_res);
	if (rc == 0) {
		for (i = 0; (x = q_pop(g)) != NULL; i++)
			finish_prop(p, x, &p->apply_res[i]);
		publish_status(p);
		return;
	}
	if (n > 1)
		GK_WARN("primary", "group apply refused, retrying entry by entry",
			"entries=%zu err=%s", n, geokv_errname(rc));
	for (i = 0; (x = q_pop(g)) != NULL; i++) {
		rc = kv_apply(p->store, &p->apply_in[i], 1, &p->apply_res[i]);
		if (rc == 0) {
			finish_prop(p, x, &p->apply_res[i]);
			continue;
		}
		GK_ERROR("primary", "apply refused a committed entry, dropping it from the log",
			 "index=%" PRIu64 " err=%s", x->index, geokv_errname(rc));
		p->truncate_from = x->index;
		p->next_index = x->index;
		p->commit = x->index - 1;
		/* KV_ECORRUPT here means the store could not decode what the client sent. */
		x->err = rc == KV_EFULL ? KV_EFULL : rc == KV_ECORRUPT ? PROTO_EBADMSG : PROTO_EINTERNAL;
		q_push(&p->dropped, x);
		q_prepend(&p->pending, g);
		break;
	}
	publish_status(p);
}

/* ---- the log job ---------------------------------------------------------------------- */

static void job_work(uv_work_t *req)
{
	prim_log_job_t *j = req->data;
	kv_log_t *log = j->p->log;
	bool wrote = false;

	j->err = j->sync_err = j->compact_err = 0;
	if (j->truncate_from) {
		j->err = kv_log_truncate(log, j->truncate_from);
		wrote = j->err == 0;
	}
	if (j->err == 0 && j->group.n > 0) {
		j->err = kv_log_append(log, j->ents, j->group.n, &j->hs);
		wrote = wrote || j->err == 0;
	}
	j->sync_ns = 0;
	if (wrote) {
		uint64_t t0 = uv_hrtime();
		j->sync_err = kv_log_sync(log);
		j->sync_ns = uv_hrtime() - t0;
	}
	/* Compaction needs no fsync of its own: if it is lost, the next one redoes it. */
	if (j->compact_to)
		j->compact_err = kv_log_compact(log, j->compact_to);
}

static void kick(prim_t *p);

static void job_done(uv_work_t *req, int status)
{
	prim_log_job_t *j = req->data;
	prim_t *p = j->p;

	p->job_running = false;
	if (j->sync_err != 0) {
		/* After a failed fsync the kernel may have dropped the dirty pages: we cannot
		 * know what is durable, so we must not answer anyone. Restarting replays the
		 * log as it really is on disk. */
		GK_ERROR("primary", "log fsync failed, exiting without acknowledging",
			 "err=\"%s\"", geokv_strerror(j->sync_err));
		exit(1);
	}
	if (j->sync_ns)
		proto_metrics_hist_observe(&p->st.fsync_latency, j->sync_ns / 1000);
	if (j->compact_err != 0)
		GK_WARN("primary", "log compaction failed", "upto=%" PRIu64 " err=%s",
			j->compact_to, geokv_errname(j->compact_err));
	else if (j->compact_to)
		GK_DEBUG("primary", "log compacted", "upto=%" PRIu64, j->compact_to);
	if (j->truncate_from && j->err == 0)
		fail_queue(p, &j->dropped, PROTO_EINTERNAL); /* each carries its own err */
	if (j->err != 0) {
		int err = j->err == KV_EFULL ? KV_EFULL : PROTO_EINTERNAL;
		GK_ERROR("primary", "log append failed", "entries=%zu err=%s", j->group.n,
			 geokv_errname(j->err));
		fail_queue(p, &j->group, err);
		if (j->truncate_from) {
			/* The truncation itself failed: keep trying with the next job. */
			p->truncate_from = j->truncate_from;
			q_prepend(&p->dropped, &j->dropped);
		}
		p->next_index = kv_log_last_index(p->log) + 1;
	} else if (j->group.n > 0) {
		p->commit = j->group.tail->index;
		apply_group(p, &j->group);
	}
	(void)status;
	kick(p);
	prim__maybe_finish(p);
}

static int ensure_ents(prim_log_job_t *j, size_t n)
{
	if (n <= j->ents_cap)
		return 0;
	kv_log_entry_t *e = realloc(j->ents, n * sizeof *e);
	if (e == NULL)
		return -ENOMEM;
	j->ents = e;
	j->ents_cap = n;
	return 0;
}

/* Start a log job if none runs and there is work: the group is everything pending now. */
static void kick(prim_t *p)
{
	prim_log_job_t *j = &p->job;
	prim_prop_t *x;

	if (p->job_running || p->closed)
		return;
	if (p->pending.n == 0 && p->truncate_from == 0 &&
	    (p->compact_want < kv_log_first_index(p->log)))
		return;
	j->p = p;
	j->req.data = j;
	j->group = (prim_queue_t){0};
	j->truncate_from = p->truncate_from;
	j->dropped = p->dropped;
	p->truncate_from = 0;
	p->dropped = (prim_queue_t){0};
	j->compact_to = p->compact_want >= kv_log_first_index(p->log) ? p->compact_want : 0;
	/* Take at least one entry, then as many as fit the group's byte budget. */
	while (p->pending.head && j->group.n < GROUP_MAX_ENTRIES &&
	       (j->group.n == 0 || j->group.bytes + p->pending.head->len <= p->cfg->group_max_bytes)) {
		x = q_pop(&p->pending);
		x->index = p->next_index++;
		q_push(&j->group, x);
	}
	if (ensure_ents(j, j->group.n) != 0) {
		GK_ERROR("primary", "out of memory building a group", "entries=%zu", j->group.n);
		p->next_index -= j->group.n;
		q_prepend(&p->pending, &j->group);
		return;
	}
	size_t i = 0;
	for (x = j->group.head; x; x = x->next, i++)
		j->ents[i] = (kv_log_entry_t){.index = x->index, .term = 1, .type = KV_LOG_NORMAL,
					      .data = x->data, .len = x->len};
	/* As a group of one, an entry is committed once durable: the hard state's commit
	 * written with the group becomes true at the same fsync. */
	j->hs = (kv_log_hard_t){.term = 1, .vote = p->cfg->node_id,
				.commit = j->group.n ? j->group.tail->index : p->commit};
	if (j->group.n)
		proto_metrics_hist_observe(&p->st.group_entries, j->group.n);
	p->job_running = true;
	int rc = uv_queue_work(p->loop, &j->req, job_work, job_done);
	if (rc != 0) {
		GK_ERROR("primary", "cannot queue log job", "err=\"%s\"", uv_strerror(rc));
		exit(1);
	}
}

void prim__kick(prim_t *p) { kick(p); }

int prim__propose(prim_t *p, prim_conn_t *conn, uint64_t req_id, uint8_t op,
		  const uint8_t *opbytes, size_t len)
{
	prim_prop_t *x;
	proto_wbuf_t w;
	uint64_t now = wall_ms();

	if (p->stopping)
		return PROTO_ESHUTDOWN;
	if ((x = malloc(sizeof *x + 9 + len)) == NULL)
		return -ENOMEM;
	/* Entry times never go backwards, even if the wall clock does: TTL decisions taken
	 * from them stay monotonic. */
	if (now < p->last_time_ms)
		now = p->last_time_ms;
	p->last_time_ms = now;
	proto_wbuf_init(&w, x->data, 9 + len);
	if (proto_entry_encode_raw(&w, now, opbytes, len) != 0) {
		free(x);
		return PROTO_EINTERNAL;
	}
	x->len = proto_wbuf_len(&w);
	x->conn = conn;
	x->req_id = req_id;
	x->op = op;
	x->err = 0;
	x->index = 0;
	x->recv_ns = uv_hrtime();
	if (conn)
		prim__conn_ref(conn);
	q_push(&p->pending, x);
	return 0;
}

void prim__status(prim_t *p, proto_status_t *st)
{
	memset(st, 0, sizeof *st);
	st->node_id = p->cfg->node_id;
	st->role = PROTO_ROLE_PRIMARY;
	st->is_leader = true;
	st->term = 1;
	st->revision = kv_revision(p->store);
	st->applied = kv_applied_index(p->store);
	st->commit = p->commit;
	st->first_index = kv_log_first_index(p->log);
	st->last_index = kv_log_last_index(p->log);
	st->leader = (proto_bytes_t){(const uint8_t *)p->cfg->advertise,
				     (uint32_t)strlen(p->cfg->advertise)};
	st->version = (proto_bytes_t){(const uint8_t *)PRIM_VERSION, sizeof PRIM_VERSION - 1};
}

/* ---- store sync and compaction ------------------------------------------------------- */

/*
 * kv_sync runs on the thread pool so a large fsync of state/ never stalls the loop. That is
 * sound because it only flushes the environment (LMDB's mdb_env_sync may run beside a write
 * transaction); what it covers is at least the applied index read before it started.
 */
static void sync_work(uv_work_t *req)
{
	prim_t *p = req->data;
	uint64_t t0 = uv_hrtime();

	p->sync_err = kv_sync(p->store);
	p->sync_ns = uv_hrtime() - t0;
}

static void sync_done(uv_work_t *req, int status)
{
	prim_t *p = req->data;

	p->sync_running = false;
	(void)status;
	proto_metrics_hist_observe(&p->st.store_sync_latency, p->sync_ns / 1000);
	if (p->sync_err != 0) {
		GK_WARN("primary", "store sync failed", "err=\"%s\"", geokv_strerror(p->sync_err));
	} else {
		p->synced_applied = p->sync_target;
		if (p->synced_applied > p->cfg->log_keep)
			p->compact_want = p->synced_applied - p->cfg->log_keep;
		kick(p);
	}
	prim__maybe_finish(p);
}

static void on_sync_timer(uv_timer_t *t)
{
	prim_t *p = t->data;
	uint64_t applied = kv_applied_index(p->store);

	if (p->sync_running || p->stopping || applied <= p->synced_applied)
		return;
	p->sync_target = applied;
	p->sync_running = true;
	p->sync_req.data = p;
	if (uv_queue_work(p->loop, &p->sync_req, sync_work, sync_done) != 0)
		p->sync_running = false;
}

/* ---- TTL ------------------------------------------------------------------------------ */

static void expired_cb(void *ctx, const proto_bytes_t *bucket, const proto_bytes_t *key,
		       uint64_t rev)
{
	prim_t *p = ctx;
	proto_op_t op = {.op = PROTO_OP_DELETE, .bucket = *bucket, .key = *key, .rev = rev};
	proto_wbuf_t w;

	if (prim__buf_reserve(&p->scratch, PROTO_MAX_BUCKET + PROTO_MAX_KEY + 32) != 0)
		return;
	proto_wbuf_init(&w, p->scratch.p, p->scratch.cap);
	/* rev = the record's revision: a write that lands in between wins over the expiry. */
	if (proto_op_encode(&w, &op) == 0 &&
	    prim__propose(p, NULL, 0, PROTO_OP_DELETE, p->scratch.p, proto_wbuf_len(&w)) == 0)
		p->ttl_outstanding++;
}

static void on_ttl_timer(uv_timer_t *t)
{
	prim_t *p = t->data;
	int n;

	/* One scan at a time: the previous scan's deletes must apply first, or the same keys
	 * would be proposed again. */
	if (p->stopping || p->ttl_outstanding > 0)
		return;
	n = kv_expired(p->store, p->last_time_ms > wall_ms() ? p->last_time_ms : wall_ms(),
		       p->cfg->ttl_batch, expired_cb, p);
	if (n < 0)
		GK_WARN("primary", "expiry scan failed", "err=%s", geokv_errname(n));
	else if (n > 0)
		GK_DEBUG("primary", "expiring keys", "n=%d", n);
	kick(p);
}

static void on_hb_timer(uv_timer_t *t) { publish_status(t->data); }

/* ---- start, stop ---------------------------------------------------------------------- */

static void on_close_noop(uv_handle_t *h) { (void)h; }

static void on_stop_timer(uv_timer_t *t)
{
	prim_t *p = t->data;

	if (p->conns != NULL)
		GK_WARN("primary", "peers not reading their replies, closing", "conns=%" PRIu32,
			p->nconns);
	prim__close_all_now(p);
}

void prim__maybe_finish(prim_t *p)
{
	int rc;

	if (!p->stopping || p->closed || p->job_running || p->sync_running || p->pending.n ||
	    p->truncate_from || p->dropped.n)
		return;
	p->closed = true;
	/* Everything acknowledged is in the log already; syncing the store too makes the next
	 * start replay nothing. */
	if ((rc = kv_sync(p->store)) != 0)
		GK_WARN("primary", "store sync at stop failed", "err=\"%s\"", geokv_strerror(rc));
	publish_status(p);
	uv_close((uv_handle_t *)&p->sync_timer, on_close_noop);
	uv_close((uv_handle_t *)&p->ttl_timer, on_close_noop);
	uv_close((uv_handle_t *)&p->hb_timer, on_close_noop);
	uv_close((uv_handle_t *)&p->sig_term, on_close_noop);
	uv_close((uv_handle_t *)&p->sig_int, on_close_noop);
	prim__stop_sweep(p);
	prim__metrics_close(p);
	prim__close_all(p);
	/* A peer that stopped reading would keep its connection (and us) open forever. */
	uv_timer_start(&p->stop_timer, on_stop_timer, STOP_FLUSH_MS, 0);
	uv_unref((uv_handle_t *)&p->stop_timer);
}

static void on_signal(uv_signal_t *s, int signum)
{
	prim_t *p = s->data;

	if (p->stopping) {
		GK_WARN("primary", "second signal, exiting now", "signal=%d", signum);
		exit(1); /* acknowledged writes are in the log; replay covers the rest */
	}
	GK_INFO("primary", "stopping", "signal=%s pending=%zu",
		signum == SIGTERM ? "TERM" : "INT", p->pending.n);
	p->stopping = true;
	prim__stop_accepting(p);
	prim__maybe_finish(p);
}

struct replay_ctx {
	prim_t *p;
	size_t n;
};

static int replay_cb(void *ctx, const kv_log_entry_t *e)
{
	struct replay_ctx *r = ctx;

	if (r->n == REPLAY_CHUNK)
		return 1; /* chunk full: apply it, resume at this entry */
	if (e->type == KV_LOG_NORMAL)
		r->p->apply_in[r->n++] = (kv_entry_in_t){e->index, e->data, e->len};
	return 0;
}

/*
 * Apply every log entry past the store's applied index. As a group of one, every entry in
 * the log is committed: it was appended and fsynced before anyone was answered, and an
 * entry that made it to the log without its fsync returning was never acknowledged, so
 * applying it is as correct as dropping it (the client saw a timeout either way).
 */
static int replay(prim_t *p)
{
	kv_log_rtxn_t t = {0};
	uint64_t lo = kv_applied_index(p->store) + 1, last = kv_log_last_index(p->log), next;
	uint64_t start = lo;
	int rc = 0;

	if (ensure_apply_cap(p, REPLAY_CHUNK) != 0)
		return -ENOMEM;
	while (lo <= last) {
		struct replay_ctx r = {p, 0};

		if ((rc = kv_log_read_begin(p->log, &t)) != 0)
			break;
		rc = kv_log_entries(&t, lo, last + 1, (size_t)64 << 20, replay_cb, &r, &next);
		if (rc == 1)
			rc = 0;
		if (rc == 0 && r.n > 0)
			rc = kv_apply(p->store, p->apply_in, r.n, p->apply_res);
		kv_log_read_end(&t);
		if (rc != 0) {
			GK_ERROR("primary", "replay failed", "index=%" PRIu64 " err=%s hint=\"%s\"",
				 lo, geokv_errname(rc),
				 rc == KV_EFULL ? "raise map-max" :
				 rc == KV_ECORRUPT ? "the log or store is damaged; restore this node"
						   : "see previous errors");
			break;
		}
		lo = next;
	}
	kv_log_read_close(&t);
	if (rc == 0 && last >= start)
		GK_INFO("primary", "replayed log", "from=%" PRIu64 " to=%" PRIu64 " revision=%" PRIu64,
			start, last, kv_revision(p->store));
	return rc;
}

static int mkdir_p(const char *dir)
{
	char buf[1100];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof buf)
		return -ENAMETOOLONG;
	memcpy(buf, dir, n + 1);
	for (char *s = buf + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return -errno;
		*s = '/';
	}
	if (mkdir(buf, 0755) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

static int open_storage(prim_t *p)
{
	const prim_config_t *c = p->cfg;
	char logdir[1100];
	kv_opts_t so = {.flags = KV_OPEN_NOSYNC, .map_size = c->map_size, .map_max = c->map_max};
	kv_log_opts_t lo = {.map_size = c->log_map_size};
	kv_log_snap_t snap;
	uint64_t applied;
	int rc;

	if ((rc = mkdir_p(c->data)) != 0) {
		GK_ERROR("primary", "cannot create data dir", "dir=%s err=\"%s\"", c->data,
			 geokv_strerror(rc));
		return rc;
	}
	snprintf(logdir, sizeof logdir, "%s/raft", c->data);
	snprintf(p->state_dir, sizeof p->state_dir, "%s/state", c->data);
	if ((rc = mkdir_p(p->state_dir)) != 0 || (rc = kv_open(&p->store, p->state_dir, &so)) != 0) {
		GK_ERROR("primary", "cannot open store", "dir=%s err=\"%s\"", p->state_dir,
			 geokv_strerror(rc));
		return rc;
	}
	if ((rc = kv_log_open(&p->log, logdir, &lo)) != 0) {
		GK_ERROR("primary", "cannot open log", "dir=%s err=\"%s\"", logdir,
			 geokv_strerror(rc));
		return rc;
	}
	applied = kv_applied_index(p->store);
	kv_log_snap(p->log, &snap);
	/* The log never compacts past what state/ synced; if it did, state/ was lost or
	 * replaced by an older copy and replay cannot rebuild it. */
	if (applied < snap.index) {
		GK_ERROR("primary", "store is behind the compacted log, cannot replay",
			 "applied=%" PRIu64 " log_first=%" PRIu64 " hint=\"restore state/ or "
			 "start with an empty data dir\"", applied, snap.index + 1);
		return KV_ECORRUPT;
	}
	if (applied > kv_log_last_index(p->log)) {
		GK_ERROR("primary", "store is ahead of the log", "applied=%" PRIu64
			 " log_last=%" PRIu64 " hint=\"raft/ was lost or replaced\"", applied,
			 kv_log_last_index(p->log));
		return KV_ECORRUPT;
	}
	return 0;
}

int prim_run(const prim_config_t *cfg)
{
	prim_t *p;
	int rc;

	signal(SIGPIPE, SIG_IGN);
	geokv_log_set_level(cfg->log_level);
	if ((p = calloc(1, sizeof *p)) == NULL)
		return -ENOMEM;
	p->cfg = cfg;
	p->loop = uv_default_loop();
	prim__stats_init(&p->st);
	if ((rc = open_storage(p)) != 0 || (rc = replay(p)) != 0)
		goto out;
	p->commit = kv_log_last_index(p->log);
	p->next_index = p->commit + 1;
	p->synced_applied = 0;
	if ((rc = kv_nodestat_open_writer(&p->ns, p->state_dir, PROTO_ROLE_PRIMARY,
					  cfg->node_id)) != 0) {
		GK_ERROR("primary", "cannot open node status file", "dir=%s err=\"%s\"",
			 p->state_dir, geokv_strerror(rc));
		goto out;
	}
	publish_status(p);
	if ((rc = prim__tls_init(p)) != 0)
		goto out;
	if ((rc = prim__metrics_listen(p)) != 0)
		goto out;
	if ((rc = prim__listen(p)) != 0) {
		prim__metrics_close(p);
		uv_run(p->loop, UV_RUN_NOWAIT);
		goto out;
	}
	uv_timer_init(p->loop, &p->sync_timer);
	uv_timer_init(p->loop, &p->ttl_timer);
	uv_timer_init(p->loop, &p->hb_timer);
	uv_timer_init(p->loop, &p->stop_timer);
	p->sync_timer.data = p->ttl_timer.data = p->hb_timer.data = p->stop_timer.data = p;
	uv_timer_start(&p->sync_timer, on_sync_timer, cfg->sync_interval_ms, cfg->sync_interval_ms);
	if (cfg->ttl_interval_ms)
		uv_timer_start(&p->ttl_timer, on_ttl_timer, cfg->ttl_interval_ms,
			       cfg->ttl_interval_ms);
	uv_timer_start(&p->hb_timer, on_hb_timer, HEARTBEAT_MS, HEARTBEAT_MS);
	uv_signal_init(p->loop, &p->sig_term);
	uv_signal_init(p->loop, &p->sig_int);
	p->sig_term.data = p->sig_int.data = p;
	uv_signal_start(&p->sig_term, on_signal, SIGTERM);
	uv_signal_start(&p->sig_int, on_signal, SIGINT);
	GK_INFO("primary", "serving", "listen=%s tls=%s node=%" PRIu64 " cluster=%s data=%s applied=%"
		PRIu64 " revision=%" PRIu64 " log_first=%" PRIu64 " log_last=%" PRIu64,
		cfg->listen, p->tls ? (cfg->tls_client_ca[0] ? "client-cert" : "on") : "off", cfg->node_id, cfg->cluster_id, cfg->data, kv_applied_index(p->store),
		kv_revision(p->store), kv_log_first_index(p->log), kv_log_last_index(p->log));
	uv_run(p->loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&p->stop_timer, on_close_noop);
	uv_run(p->loop, UV_RUN_NOWAIT);
	GK_INFO("primary", "stopped", "applied=%" PRIu64 " revision=%" PRIu64,
		kv_applied_index(p->store), kv_revision(p->store));
	rc = p->exit_code;
out:
	kv_read_close(&p->rtxn);
	kv_nodestat_close(&p->ns);
	if (p->store)
		kv_close(p->store);
	if (p->log)
		kv_log_close(p->log);
	uv_loop_close(p->loop);
	prim__tls_free(p);
	free(p->apply_in);
	free(p->apply_res);
	free(p->job.ents);
	prim__buf_free(&p->scratch);
	free(p);
	return rc;
}
