/*
 * Following a source: connect, HELLO, FEED_START from our position, then verify and apply
 * what comes; on a stall, a disconnect or anything that does not verify, drop the
 * connection and move to the next source after a jittered back-off.
 *
 * Verification before apply: a FEED_ENTRIES frame is checked whole first (the decoder:
 * consecutive indexes; here: the first index is our position + 1, and every entry's chain
 * hash recomputes), and only then applied, in one kv_apply (one LMDB transaction, which also
 * records the applied index). A frame that fails is never applied in part.
 *
 * Never silent: every state change is one log line, every failure a counter
 * (geokv_leaf_resyncs_total{reason}, _stalls_total, _source_switches_total), and the node
 * status page (read by the gateway's /healthz) loses FEED the moment the connection does and
 * goes stale by itself if this process stops publishing.
 */
#include "leaf/leaf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TICK_MS      50
#define HEALTHY_MS   5000   /* a connection that streamed this long resets the back-off */

static uint64_t now_ms(void) { return kv_nodestat_now_ms(); }

static uint64_t rnd(leaf_t *l)
{
	l->rng ^= l->rng << 13;
	l->rng ^= l->rng >> 7;
	l->rng ^= l->rng << 17;
	return l->rng;
}

/* ---- lag and status ------------------------------------------------------------------- */

uint64_t leaf_leader_now(const leaf_t *l)
{
	uint64_t now = now_ms();

	if (l->leader_time == 0)
		return 0;
	return l->leader_time + (now > l->leader_time_local ? now - l->leader_time_local : 0);
}

uint64_t leaf_lag_entries(const leaf_t *l)
{
	return l->commit > l->pos_index ? l->commit - l->pos_index : 0;
}

/* How long we have been behind, in the leader's clock: no entry we miss was proposed before
 * the last one we applied, nor committed before we learned that commit was ahead of us. */
uint64_t leaf_lag_ms(const leaf_t *l)
{
	uint64_t now = leaf_leader_now(l), since;

	if (leaf_lag_entries(l) == 0 || now == 0)
		return 0;
	since = l->behind_since > l->last_entry_time ? l->behind_since : l->last_entry_time;
	return now > since ? now - since : 0;
}

const char *leaf_health(const leaf_t *l)
{
	uint64_t now = now_ms();

	if (l->stopping)
		return "stopping";
	if (l->state == LS_SNAP || l->state == LS_INSTALL)
		return "installing snapshot";
	if (l->state != LS_STREAM)
		return "no feed";
	if (now - l->contact_ms > l->cfg->stall_ms)
		return "no recent contact";
	if (!l->caught_up_once && l->pos_index == 0)
		return "empty store";
	if (leaf_lag_entries(l) > l->cfg->max_lag_entries)
		return "lag entries over bound";
	if (leaf_lag_ms(l) > l->cfg->max_lag_ms)
		return "lag ms over bound";
	return NULL;
}

void leaf_publish(leaf_t *l)
{
	kv_nodestat_data_t *d = &l->ns.last;

	if (l->ns.page == NULL || l->store == NULL)
		return;
	d->applied = l->pos_index;
	d->commit = l->commit > l->pos_index ? l->commit : l->pos_index;
	if (l->pos_index >= l->commit && l->state == LS_STREAM && l->commit > 0)
		l->caught_up_once = true;
	d->flags = (l->state == LS_STREAM ? KV_NS_FEED : 0) |
		   (l->state == LS_SNAP || l->state == LS_INSTALL ? KV_NS_SNAPSHOT : 0) |
		   (l->stopping ? KV_NS_STOPPING : 0) | (l->caught_up_once ? KV_NS_CAUGHT_UP : 0);
	d->term = l->term;
	d->revision = kv_revision(l->store);
	d->contact_ms = l->contact_ms;
	d->leader_time_ms = leaf_leader_now(l);
	d->lag_entries = leaf_lag_entries(l);
	d->lag_ms = leaf_lag_ms(l);
	kv_nodestat_publish(&l->ns, d);
}

/* ---- store ---------------------------------------------------------------------------- */

int leaf_open_store(leaf_t *l)
{
	kv_opts_t so = {.flags = KV_OPEN_NOSYNC, .map_size = l->cfg->map_size,
			.map_max = l->cfg->map_max};
	int rc;

	if ((rc = kv_open(&l->store, l->state_dir, &so)) != 0) {
		GK_ERROR("leaf", "cannot open store", "dir=%s err=\"%s\"", l->state_dir,
			 geokv_strerror(rc));
		return rc;
	}
	if ((rc = kv_nodestat_open_writer(&l->ns, l->state_dir, PROTO_ROLE_LEAF,
					  l->cfg->node_id)) != 0) {
		GK_ERROR("leaf", "cannot open node status file", "dir=%s err=\"%s\"", l->state_dir,
			 geokv_strerror(rc));
		kv_close(l->store);
		l->store = NULL;
		return rc;
	}
	return 0;
}

void leaf_close_store(leaf_t *l)
{
	kv_nodestat_close(&l->ns);
	if (l->store)
		kv_close(l->store);
	l->store = NULL;
}

/* ---- connection ----------------------------------------------------------------------- */

static void connect_next(leaf_t *l);
static void fs_closed_after_install(leaf_t *l);

static void on_retry(uv_timer_t *t) { connect_next(t->data); }

static void schedule_retry(leaf_t *l, bool healthy)
{
	uint32_t b;

	if (l->stopping)
		return;
	if (healthy || l->backoff_ms == 0)
		l->backoff_ms = l->cfg->backoff_min_ms;
	else if (l->backoff_ms < l->cfg->backoff_max_ms)
		l->backoff_ms = l->backoff_ms * 2 > l->cfg->backoff_max_ms ? l->cfg->backoff_max_ms :
									     l->backoff_ms * 2;
	/* Jitter: half fixed, half random, so leaves that lost the same source do not all
	 * reconnect in step; never a tight loop (backoff_min_ms >= 1). */
	b = l->backoff_ms / 2 + (uint32_t)(rnd(l) % (l->backoff_ms / 2 + 1));
	uv_timer_start(&l->retry, on_retry, b, 0);
}

static const char *state_name(int st)
{
	switch (st) {
	case LS_CONNECTING: return "handshake"; /* TCP connect and TLS */
	case LS_HELLO: return "hello";
	case LS_STREAM: return "stream";
	case LS_SNAP: return "snapshot";
	case LS_INSTALL: return "install";
	default: return "idle";
	}
}

static void fs_closed(proto_fs_t *s, int err)
{
	leaf_t *l = s->data;
	int was = l->state;
	bool healthy = l->streaming_since && now_ms() - l->streaming_since >= HEALTHY_MS;

	if (l->fs == s)
		l->fs = NULL;
	free(s);
	if (l->state == LS_INSTALL)
		return; /* the install finishes first (it owns snap_fd); it reconnects then */
	if (l->snap_fd >= 0) {
		close(l->snap_fd);
		l->snap_fd = -1;
	}
	l->state = LS_IDLE;
	l->streaming_since = 0;
	leaf_publish(l);
	if (l->stopping)
		return;
	if (err == PROTO_ETOOBIG || (err == PROTO_EBADMSG && !l->resyncing)) {
		/* The stream's framing broke (a header the decoder refused): as bad as a frame
		 * that failed its seal, and counted the same way. */
		l->st.resyncs++;
		l->st.resync_decode++;
	}
	l->resyncing = false;
	GK_WARN("leaf", "feed connection lost", "source=%s err=%s state=%s applied=%" PRIu64,
		l->src[l->cur].addr, geokv_errname(err), state_name(was), l->pos_index);
	l->src[l->cur].failures++;
	/* Move on: the next attempt goes to the next source in the list. */
	l->cur = (l->cur + 1) % l->nsrc;
	if (l->nsrc > 1)
		l->st.source_switches++;
	schedule_retry(l, healthy);
}

static void drop(leaf_t *l, int err)
{
	if (l->fs != NULL)
		proto_fs_close(l->fs, err);
}

static void resync(leaf_t *l, uint64_t *reason, const char *why, uint64_t at)
{
	l->st.resyncs++;
	(*reason)++;
	l->resyncing = true;
	GK_WARN("leaf", "feed refused, reconnecting from our position", "source=%s why=\"%s\" at=%"
		PRIu64 " applied=%" PRIu64, l->src[l->cur].addr, why, at, l->pos_index);
	drop(l, PROTO_EBADMSG);
}

static void send_hello(leaf_t *l)
{
	uint8_t buf[4400];
	proto_wbuf_t w;
	proto_hello_t h = {.version = PROTO_VERSION, .role = PROTO_ROLE_LEAF,
			   .cluster = {(const uint8_t *)l->cfg->cluster_id,
				       (uint32_t)strlen(l->cfg->cluster_id)},
			   .token = {l->cfg->token, l->cfg->token_len}};

	proto_wbuf_init(&w, buf, sizeof buf);
	if (proto_hello_encode(&w, &h) != 0) {
		drop(l, PROTO_EINTERNAL);
		return;
	}
	proto_fs_send_frame(l->fs, PROTO_T_HELLO, 0, buf, proto_wbuf_len(&w));
	l->state = LS_HELLO;
}

static void send_start(leaf_t *l)
{
	uint8_t buf[512];
	proto_wbuf_t w;
	proto_feed_start_t m = {.from_index = l->pos_index, .from_term = l->pos_term,
				.from_hash = l->pos_hash, .leaf_id = l->cfg->node_id,
				.name = {(const uint8_t *)l->cfg->name, (uint32_t)strlen(l->cfg->name)}};

	proto_wbuf_init(&w, buf, sizeof buf);
	proto_feed_start_encode(&w, &m);
	proto_fs_send_frame(l->fs, PROTO_T_FEED_START, 0, buf, proto_wbuf_len(&w));
}

static void send_ack(leaf_t *l)
{
	uint8_t buf[64];
	proto_wbuf_t w;
	proto_feed_ack_t a = {.applied = l->pos_index, .revision = kv_revision(l->store),
			      .lag_ms = leaf_lag_ms(l), .commit = l->commit};

	proto_wbuf_init(&w, buf, sizeof buf);
	proto_feed_ack_encode(&w, &a);
	proto_fs_send_frame(l->fs, PROTO_T_FEED_ACK, 0, buf, proto_wbuf_len(&w));
	l->last_ack_ms = now_ms();
}

static void note_commit(leaf_t *l, uint64_t commit, uint64_t leader_time)
{
	uint64_t now = now_ms();

	if (leader_time != 0) {
		l->leader_time = leader_time;
		l->leader_time_local = now;
	}
	if (commit > l->commit) {
		if (l->commit <= l->pos_index)
			l->behind_since = leader_time ? leader_time : leaf_leader_now(l);
		l->commit = commit;
	}
}

/* ---- entries -------------------------------------------------------------------------- */

static int ensure_in(leaf_t *l, size_t n)
{
	if (n <= l->in_cap)
		return 0;
	kv_entry_in_t *in = realloc(l->in, n * sizeof *in);
	if (in == NULL)
		return -ENOMEM;
	l->in = in;
	kv_result_t *res = realloc(l->res, n * sizeof *res);
	if (res == NULL)
		return -ENOMEM;
	l->res = res;
	l->in_cap = n;
	return 0;
}

static uint64_t entry_time(const uint8_t *d, size_t len)
{
	uint64_t t = 0;

	if (len < 9)
		return 0;
	for (int i = 0; i < 8; i++)
		t |= (uint64_t)d[1 + i] << (8 * i);
	return t;
}

static void on_entries(leaf_t *l, const uint8_t *pl, size_t len)
{
	proto_feed_entries_reader_t r, r2;
	proto_feed_entry_t e;
	uint64_t h = l->pos_hash, idx = l->pos_index, applied = kv_applied_index(l->store);
	uint64_t last_time = 0, last_term = 0, t0;
	size_t k = 0;
	int rc;

	if ((rc = proto_feed_entries_init(&r, pl, len)) != 0) {
		resync(l, &l->st.resync_decode, "undecodable FEED_ENTRIES", l->pos_index + 1);
		return;
	}
	if (ensure_in(l, r.count) != 0) {
		drop(l, -ENOMEM);
		return;
	}
	r2 = r;
	/* Pass 1: verify everything. */
	while (proto_feed_entries_next(&r, &e) == 1) {
		if (e.index != idx + 1) {
			resync(l, &l->st.resync_gap, e.index <= idx ? "duplicate entry" : "gap in entries",
			       e.index);
			return;
		}
		h = proto_feed_hash(h, e.index, e.term, e.type, e.data.p, e.data.len);
		if (h != e.hash) {
			resync(l, &l->st.resync_hash, "chain hash mismatch", e.index);
			return;
		}
		idx = e.index;
		last_term = e.term;
		if (e.type == PROTO_FEED_NORMAL && e.data.len > 0 && e.index > applied) {
			l->in[k++] = (kv_entry_in_t){e.index, e.data.p, e.data.len};
			last_time = entry_time(e.data.p, e.data.len);
		}
	}
	/* Pass 2: apply, in one transaction that also records the applied index. */
	t0 = uv_hrtime();
	if (k > 0 && (rc = kv_apply(l->store, l->in, k, l->res)) != 0) {
		l->st.apply_errors++;
		GK_ERROR("leaf", "apply failed, reconnecting", "index=%" PRIu64 " err=%s hint=\"%s\"",
			 l->in[0].index, geokv_errname(rc),
			 rc == KV_EFULL ? "raise map-max or free disk space" : "see previous errors");
		drop(l, rc);
		return;
	}
	proto_metrics_hist_observe(&l->st.apply_latency, (uv_hrtime() - t0) / 1000);
	/* Copies for leaves below, only when this leaf serves any (a malloc per entry). */
	while (l->feed != NULL && proto_feed_entries_next(&r2, &e) == 1)
		(void)leaf_ring_push(&l->ring, e.index, e.term, e.type, e.data.p, e.data.len);
	l->st.entries_applied += r.count;
	l->st.frames++;
	l->pos_index = idx;
	l->pos_hash = h;
	l->pos_term = last_term;
	if (last_time)
		l->last_entry_time = last_time;
	note_commit(l, r.commit, r.leader_time_ms);
	leaf_publish(l);
	kv_feed_notify(l->feed);
	if (now_ms() - l->last_ack_ms >= l->cfg->ack_ms)
		send_ack(l);
}

/* ---- snapshots ------------------------------------------------------------------------ */

static int rm_rf(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[1400];

	if (d == NULL)
		return errno == ENOENT ? 0 : -errno;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (unlink(path) != 0 && errno == EISDIR)
			rm_rf(path);
	}
	closedir(d);
	return rmdir(dir) == 0 ? 0 : -errno;
}

static void on_snap(leaf_t *l, const uint8_t *pl, size_t len)
{
	char path[1200];

	if (proto_feed_snap_decode(pl, len, &l->snap) != 0) {
		resync(l, &l->st.resync_decode, "undecodable FEED_SNAP", 0);
		return;
	}
	/* The disk a source can make us fill is bounded: a logical dump of a store that fits
	 * in map_max is smaller than map_max. */
	if (l->cfg->map_max != 0 && l->snap.size > l->cfg->map_max) {
		resync(l, &l->st.resync_decode, "snapshot larger than map_max", l->snap.index);
		return;
	}
	snprintf(path, sizeof path, "%s/snap.recv", l->cfg->data);
	if (l->snap_fd >= 0)
		close(l->snap_fd);
	if ((l->snap_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
		GK_ERROR("leaf", "cannot create the snapshot file", "path=%s err=\"%s\"", path,
			 strerror(errno));
		drop(l, -errno);
		return;
	}
	l->snap_got = 0;
	l->state = LS_SNAP;
	GK_INFO("leaf", "receiving a snapshot", "source=%s index=%" PRIu64 " bytes=%" PRIu64,
		l->src[l->cur].addr, l->snap.index, l->snap.size);
	leaf_publish(l);
}

struct fd_reader {
	int fd;
};

static long fd_read(void *ctx, void *p, size_t cap)
{
	struct fd_reader *r = ctx;

	for (;;) {
		ssize_t n = read(r->fd, p, cap);
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 ? -errno : (long)n;
	}
}

static void install_work(uv_work_t *req)
{
	leaf_t *l = req->data;
	char nw[1200];
	kv_opts_t so = {.map_size = l->cfg->map_size, .map_max = l->cfg->map_max};
	struct fd_reader rd = {l->snap_fd};

	snprintf(nw, sizeof nw, "%s.new", l->state_dir);
	rm_rf(nw);
	if (lseek(l->snap_fd, 0, SEEK_SET) != 0) {
		l->install_err = -errno;
		return;
	}
	l->install_err = kv_snapshot_install(nw, &so, fd_read, &rd, &l->install_meta);
	if (l->install_err != 0)
		rm_rf(nw);
}

static void install_done(uv_work_t *req, int status)
{
	leaf_t *l = req->data;
	char nw[1200], old[1200], path[1200];
	int rc = l->install_err;

	(void)status;
	close(l->snap_fd);
	l->snap_fd = -1;
	snprintf(path, sizeof path, "%s/snap.recv", l->cfg->data);
	unlink(path);
	snprintf(nw, sizeof nw, "%s.new", l->state_dir);
	snprintf(old, sizeof old, "%s.old", l->state_dir);
	if (rc == 0 && l->install_meta.applied != l->snap.index)
		rc = KV_ECORRUPT;
	if (rc != 0) {
		GK_ERROR("leaf", "snapshot install failed", "err=%s", geokv_errname(rc));
		l->st.resyncs++;
		l->st.resync_decode++;
		rm_rf(nw);
		l->state = LS_HELLO;
		drop(l, rc);
		if (l->fs == NULL)
			fs_closed_after_install(l);
		return;
	}
	/* Swap: a crash between the renames leaves state.new, which the next start finishes. */
	kv_feed_store_closing(l->feed);
	leaf_close_store(l);
	rm_rf(old);
	if (rename(l->state_dir, old) != 0 || rename(nw, l->state_dir) != 0 ||
	    leaf_open_store(l) != 0) {
		GK_ERROR("leaf", "cannot switch to the installed store", "err=\"%s\"", strerror(errno));
		exit(1);
	}
	rm_rf(old);
	leaf_ring_clear(&l->ring);
	l->pos_index = l->snap.index;
	l->pos_term = l->snap.term;
	l->pos_hash = l->snap.hash;
	l->st.snapshots_installed++;
	GK_INFO("leaf", "installed snapshot", "index=%" PRIu64 " revision=%" PRIu64
		" records=%" PRIu64, l->install_meta.applied, l->install_meta.revision,
		l->install_meta.records);
	if (l->fs == NULL) {
		fs_closed_after_install(l);
		return;
	}
	l->state = LS_STREAM;
	l->contact_ms = now_ms();
	leaf_publish(l);
	proto_fs_resume(l->fs);
}

/* The connection closed while a snapshot was being installed: reconnect now. */
static void fs_closed_after_install(leaf_t *l)
{
	l->state = LS_IDLE;
	l->streaming_since = 0;
	leaf_publish(l);
	if (!l->stopping)
		schedule_retry(l, false);
}

static void on_snap_data(leaf_t *l, const uint8_t *pl, size_t len)
{
	proto_feed_snap_data_t d;
	const uint8_t *p;
	size_t n;

	if (proto_feed_snap_data_decode(pl, len, &d) != 0 || d.offset != l->snap_got ||
	    l->snap_got + d.data.len > l->snap.size) {
		resync(l, &l->st.resync_decode, "bad snapshot chunk", d.offset);
		return;
	}
	for (p = d.data.p, n = d.data.len; n > 0;) {
		ssize_t w = write(l->snap_fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			GK_ERROR("leaf", "cannot write the snapshot file", "err=\"%s\"", strerror(errno));
			drop(l, -errno);
			return;
		}
		p += w;
		n -= (size_t)w;
	}
	l->snap_got += d.data.len;
	if (l->snap_got < l->snap.size)
		return;
	/* Whole: install it on the pool; the stream waits (entries after the snapshot stay in
	 * the socket until the new store is in place). */
	l->state = LS_INSTALL;
	proto_fs_pause(l->fs);
	l->install_req.data = l;
	if (uv_queue_work(l->loop, &l->install_req, install_work, install_done) != 0) {
		l->install_err = -ENOMEM;
		install_done(&l->install_req, 0);
	}
}

static void on_frame(proto_fs_t *s, const proto_hdr_t *h, const uint8_t *pl)
{
	leaf_t *l = s->data;

	if (s != l->fs)
		return;
	l->contact_ms = now_ms();
	l->st.bytes_in += PROTO_HDR_LEN + h->len;
	if (h->flags != 0 || h->id != 0) {
		resync(l, &l->st.resync_decode, "frame header with flags or id set", h->type);
		return;
	}
	if (h->type == PROTO_T_ERROR) {
		proto_error_t e;
		if (proto_error_decode(pl, h->len, &e) == 0)
			GK_WARN("leaf", "source refused us", "source=%s code=%s message=\"%.*s\"",
				l->src[l->cur].addr, geokv_errname(e.code), (int)e.message.len,
				(const char *)e.message.p);
		drop(l, PROTO_ECLOSED);
		return;
	}
	switch (l->state) {
	case LS_HELLO:
		if (h->type != PROTO_T_HELLO_OK) {
			drop(l, PROTO_EBADMSG);
			return;
		}
		send_start(l);
		l->state = LS_STREAM;
		l->streaming_since = now_ms();
		l->src[l->cur].connects++;
		l->st.connects++;
		GK_INFO("leaf", "following", "source=%s from=%" PRIu64, l->src[l->cur].addr,
			l->pos_index);
		leaf_publish(l);
		return;
	case LS_STREAM:
	case LS_SNAP:
		break;
	default:
		drop(l, PROTO_EBADMSG);
		return;
	}
	switch (h->type) {
	case PROTO_T_FEED_ENTRIES:
		if (l->state != LS_STREAM) {
			resync(l, &l->st.resync_decode, "entries during a snapshot", 0);
			return;
		}
		on_entries(l, pl, h->len);
		return;
	case PROTO_T_FEED_HB: {
		proto_feed_hb_t hb;
		if (proto_feed_hb_decode(pl, h->len, &hb) != 0) {
			resync(l, &l->st.resync_decode, "undecodable FEED_HB", 0);
			return;
		}
		l->st.heartbeats++;
		l->term = hb.term;
		note_commit(l, hb.commit, hb.leader_time_ms);
		if (l->state == LS_STREAM && now_ms() - l->last_ack_ms >= l->cfg->ack_ms)
			send_ack(l);
		leaf_publish(l);
		return;
	}
	case PROTO_T_FEED_SNAP:
		on_snap(l, pl, h->len);
		return;
	case PROTO_T_FEED_SNAP_DATA:
		if (l->state != LS_SNAP) {
			resync(l, &l->st.resync_decode, "snapshot data without FEED_SNAP", 0);
			return;
		}
		on_snap_data(l, pl, h->len);
		return;
	case PROTO_T_PONG:
		return;
	default:
		resync(l, &l->st.resync_decode, "unexpected frame type", h->type);
	}
}

static void on_ready(proto_fs_t *s, int status)
{
	leaf_t *l = s->data;

	(void)status;
	if (s == l->fs)
		send_hello(l);
}

static void connect_next(leaf_t *l)
{
	leaf_source_t *src = &l->src[l->cur];
	proto_fs_t *s;
	int rc;

	if (l->stopping || l->fs != NULL || l->state == LS_INSTALL)
		return;
	if ((s = calloc(1, sizeof *s)) == NULL || proto_fs_init(l->loop, s) != 0) {
		free(s);
		schedule_retry(l, false);
		return;
	}
	s->data = l;
	s->max_frame = l->cfg->max_frame;
	s->on_frame = on_frame;
	s->on_ready = on_ready;
	s->on_close = fs_closed;
	l->fs = s;
	l->state = LS_CONNECTING;
	l->conn_started_ms = l->contact_ms = now_ms();
	if ((rc = proto_fs_connect(s, (struct sockaddr *)&src->ss, l->tls_client, src->host)) != 0) {
		l->st.connect_failures++;
		proto_fs_close(s, rc);
	}
}

/* Stall watch, acks, publishing. */
static void on_tick(uv_timer_t *t)
{
	leaf_t *l = t->data;
	uint64_t now = now_ms();

	if (l->fs != NULL && !l->fs->closing) {
		uint64_t quiet = now - l->contact_ms;
		if ((l->state == LS_STREAM || l->state == LS_SNAP || l->state == LS_CONNECTING ||
		     l->state == LS_HELLO) && quiet > l->cfg->stall_ms) {
			l->st.stalls++;
			GK_WARN("leaf", "feed stalled, switching source", "source=%s quiet_ms=%" PRIu64
				" state=%d applied=%" PRIu64, l->src[l->cur].addr, quiet, l->state,
				l->pos_index);
			drop(l, PROTO_ETIMEDOUT);
		} else if ((l->state == LS_STREAM || l->state == LS_SNAP || l->state == LS_INSTALL) &&
			   now - l->last_ack_ms >= l->cfg->ack_ms) {
			/* also while a snapshot arrives or installs: the source cuts silent leaves */
			send_ack(l);
		}
	}
	leaf_publish(l);
}

static void sync_work(uv_work_t *req)
{
	leaf_t *l = req->data;

	(void)kv_sync(l->store);
}

static void sync_done(uv_work_t *req, int status)
{
	leaf_t *l = req->data;

	(void)status;
	l->sync_running = false;
}

static void on_sync(uv_timer_t *t)
{
	leaf_t *l = t->data;

	if (l->sync_running || l->state == LS_INSTALL || l->store == NULL)
		return;
	l->sync_running = true;
	l->sync_req.data = l;
	if (uv_queue_work(l->loop, &l->sync_req, sync_work, sync_done) != 0)
		l->sync_running = false;
}

int leaf_follow_start(leaf_t *l)
{
	l->snap_fd = -1;
	l->pos_index = kv_applied_index(l->store);
	l->pos_term = 0; /* unknown after a restart: the source cannot check it */
	l->pos_hash = PROTO_FEED_SNAP_SEED(l->pos_index);
	l->rng = (uint64_t)uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ l->cfg->node_id;
	if (l->rng == 0)
		l->rng = 1;
	l->cur = 0; /* the list is the order of preference, as in the client library */
	uv_timer_init(l->loop, &l->retry);
	uv_timer_init(l->loop, &l->tick);
	uv_timer_init(l->loop, &l->sync_timer);
	l->retry.data = l->tick.data = l->sync_timer.data = l;
	uv_timer_start(&l->tick, on_tick, TICK_MS, TICK_MS);
	uv_timer_start(&l->sync_timer, on_sync, l->cfg->sync_interval_ms, l->cfg->sync_interval_ms);
	connect_next(l);
	return 0;
}

static void noop_close(uv_handle_t *h) { (void)h; }

void leaf_follow_stop(leaf_t *l)
{
	l->stopping = true;
	drop(l, PROTO_ESHUTDOWN);
	uv_close((uv_handle_t *)&l->retry, noop_close);
	uv_close((uv_handle_t *)&l->tick, noop_close);
	uv_close((uv_handle_t *)&l->sync_timer, noop_close);
	leaf_publish(l);
}
