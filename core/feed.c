/*
 * Leaf feed server: see core/feed.h.
 *
 * Per connection:   HELLO -> START -> (SNAP_WAIT -> SNAP_SEND ->) STREAM
 *   HELLO      waiting for HELLO (role LEAF, cluster id, token)
 *   START      HELLO_OK sent, waiting for FEED_START
 *   SNAP_WAIT  needs a snapshot; waiting for the build (one at a time per server)
 *   SNAP_SEND  sending the mapped snapshot file in FEED_SNAP_DATA chunks as output allows
 *   STREAM     sending committed entries from `next` on, as output allows
 *
 * Invariant: a connection holds no entry data. `next` and `hash` (the chain value of
 * next - 1) are all it needs to resume, so pump() can stop at any frame boundary when
 * proto_fs_queued() reaches max_out and pick up from the source on the next drain.
 */
#include "core/feed.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/nodestat.h"
#include "proto/feed.h"
#include "proto/fstream.h"
#include "proto/log.h"

#define FRAME_TARGET   (1u << 20)  /* entry bytes per FEED_ENTRIES frame, normally */
#define SNAP_CHUNK     (256u << 10)

enum { C_HELLO, C_START, C_SNAP_WAIT, C_SNAP_SEND, C_STREAM };

typedef struct kv_feed_conn {
	proto_fs_t fs;
	kv_feed_t *f;
	struct kv_feed_conn *prev, *next_conn;
	int state;
	uint64_t next;             /* next index owed */
	uint64_t hash;             /* chain value of next - 1 */
	uint64_t snap_off;
	bool snap_ref;             /* holds a use of the mapped snapshot */
	uint64_t opened_ms, rx_ms, tx_ms;
	int leaf;                  /* slot in f->leaves, -1 before START */
	uint8_t *enc;              /* reused encode buffer */
	size_t enc_cap;
	bool stalled;              /* output was full at the last pump */
	uint64_t verify_index;     /* the leaf is ahead of us: check its term here first */
	uint64_t verify_term;
} kv_feed_conn_t;

struct kv_feed {
	uv_loop_t *loop;
	kv_feed_opts_t o;
	kv_feed_src_t src;
	uv_tcp_t listener;
	uv_timer_t timer;
	int open_handles;
	bool closing;
	kv_feed_conn_t *conns;
	uint32_t nconns;
	kv_feed_stats_t st;
	kv_feed_leaf_t leaves[KV_FEED_MAX_LEAVES];
	uint32_t leaf_conns[KV_FEED_MAX_LEAVES]; /* open sessions per leaf (a reconnect may
						  * overlap the old session's close) */
	uint32_t nleaves;

	/* snapshot */
	bool snap_building;
	uv_work_t snap_req;
	uint8_t *snap_map;
	size_t snap_size;
	kv_snap_meta_t snap_meta;
	uint64_t snap_term;
	int snap_users;
	int snap_err;
	int snap_fd;
	atomic_bool snap_abort;
	pthread_mutex_t snap_mu;
	pthread_cond_t snap_cv;
	bool snap_running;         /* the worker is inside kv_snapshot_write (under snap_mu) */
	kv_store_t *snap_store;
};

static uint64_t now_ms(void) { return kv_nodestat_now_ms(); }

static void pump(kv_feed_conn_t *c);

/* ---- sending -------------------------------------------------------------------------- */

static int enc_reserve(kv_feed_conn_t *c, size_t need)
{
	if (need <= c->enc_cap)
		return 0;
	size_t cap = c->enc_cap ? c->enc_cap : 4096;
	while (cap < need)
		cap *= 2;
	uint8_t *p = realloc(c->enc, cap);
	if (p == NULL)
		return -ENOMEM;
	c->enc = p;
	c->enc_cap = cap;
	return 0;
}

static void send_error(kv_feed_conn_t *c, int code, const char *msg)
{
	uint8_t buf[512];
	proto_wbuf_t w;
	proto_error_t e = {.code = code,
			   .message = {(const uint8_t *)msg, (uint32_t)strlen(msg)}};

	proto_wbuf_init(&w, buf, sizeof buf);
	if (proto_error_encode(&w, &e) == 0)
		(void)proto_fs_send_frame(&c->fs, PROTO_T_ERROR, 0, buf, proto_wbuf_len(&w));
}

static bool out_full(kv_feed_conn_t *c)
{
	if (proto_fs_queued(&c->fs) < c->f->o.max_out)
		return false;
	if (!c->stalled) {
		c->stalled = true;
		c->f->st.stalls++;
	}
	return true;
}

static void send_hb(kv_feed_conn_t *c)
{
	kv_feed_t *f = c->f;
	uint8_t buf[64];
	proto_wbuf_t w;
	proto_feed_hb_t hb;

	if (f->src.fresh != NULL && !f->src.fresh(f->src.ctx))
		return; /* stale ourselves: silence, so leaves below notice */
	f->src.beat(f->src.ctx, &hb.commit, &hb.leader_time_ms, &hb.term);
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_feed_hb_encode(&w, &hb);
	if (proto_fs_send_frame(&c->fs, PROTO_T_FEED_HB, 0, buf, proto_wbuf_len(&w)) == 0) {
		c->tx_ms = now_ms();
		f->st.heartbeats++;
	}
}

/* ---- leaves table --------------------------------------------------------------------- */

static int leaf_slot(kv_feed_t *f, uint64_t id, const proto_bytes_t *name)
{
	char nm[64];
	size_t n = name->len < sizeof nm - 1 ? name->len : sizeof nm - 1;
	int victim = -1;

	memcpy(nm, name->p, n);
	nm[n] = '\0';
	for (uint32_t i = 0; i < f->nleaves; i++)
		if (f->leaves[i].id == id && strcmp(f->leaves[i].name, nm) == 0)
			return (int)i;
	if (f->nleaves < KV_FEED_MAX_LEAVES) {
		victim = (int)f->nleaves++;
	} else {
		/* Forget the disconnected leaf heard from longest ago; all connected: refuse. */
		for (uint32_t i = 0; i < f->nleaves; i++)
			if (f->leaf_conns[i] == 0 &&
			    (victim < 0 || f->leaves[i].contact_ms < f->leaves[victim].contact_ms))
				victim = (int)i;
		if (victim < 0)
			return -1;
	}
	memset(&f->leaves[victim], 0, sizeof f->leaves[victim]);
	f->leaf_conns[victim] = 0;
	f->leaves[victim].id = id;
	snprintf(f->leaves[victim].name, sizeof f->leaves[victim].name, "%s", nm);
	return victim;
}

/* ---- snapshots ------------------------------------------------------------------------ */

static void snap_release(kv_feed_t *f)
{
	if (f->snap_map != NULL && f->snap_users == 0) {
		munmap(f->snap_map, f->snap_size);
		f->snap_map = NULL;
	}
}

static int snap_write_cb(void *ctx, const void *buf, size_t len)
{
	kv_feed_t *f = ctx;
	const uint8_t *b = buf;

	if (atomic_load(&f->snap_abort))
		return -ECANCELED;
	while (len > 0) {
		ssize_t n = write(f->snap_fd, b, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

static void snap_work(uv_work_t *req)
{
	kv_feed_t *f = req->data;

	pthread_mutex_lock(&f->snap_mu);
	if (atomic_load(&f->snap_abort) || f->snap_store == NULL) {
		f->snap_err = -ECANCELED;
	} else {
		f->snap_running = true;
		pthread_mutex_unlock(&f->snap_mu);
		f->snap_err = kv_snapshot_write(f->snap_store, snap_write_cb, f, &f->snap_meta);
		pthread_mutex_lock(&f->snap_mu);
		f->snap_running = false;
		pthread_cond_broadcast(&f->snap_cv);
	}
	pthread_mutex_unlock(&f->snap_mu);
}

static void snap_serve_waiting(kv_feed_t *f);
static void on_handle_closed(uv_handle_t *h);

static void snap_done(uv_work_t *req, int status)
{
	kv_feed_t *f = req->data;
	struct stat st;
	void *map = MAP_FAILED;

	(void)status;
	f->snap_building = false;
	atomic_store(&f->snap_abort, false);
	if (f->closing) {
		/* kv_feed_close counted this job as an open handle. */
		close(f->snap_fd);
		f->snap_fd = -1;
		on_handle_closed((uv_handle_t *)&f->timer);
		return;
	}
	if (f->snap_err == 0 && fstat(f->snap_fd, &st) == 0 && st.st_size > 0)
		map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, f->snap_fd, 0);
	close(f->snap_fd);
	f->snap_fd = -1;
	if (map == MAP_FAILED) {
		GK_WARN("feed", "cannot build a snapshot for leaves", "err=\"%s\"",
			geokv_strerror(f->snap_err ? f->snap_err : -errno));
		if (!f->closing)
			uv_timer_again(&f->timer); /* waiting leaves retry from the timer */
		return;
	}
	f->snap_map = map;
	f->snap_size = (size_t)st.st_size;
	f->snap_term = 0;
	if (f->src.term(f->src.ctx, f->snap_meta.applied, &f->snap_term) != 0)
		f->snap_term = 0;
	f->st.snapshots_built++;
	GK_INFO("feed", "snapshot ready for leaves", "applied=%" PRIu64 " bytes=%zu records=%" PRIu64,
		f->snap_meta.applied, f->snap_size, f->snap_meta.records);
	snap_serve_waiting(f);
}

/* A mapped snapshot is still good if the entries after it are servable. */
static bool snap_fresh(kv_feed_t *f)
{
	return f->snap_map != NULL && f->snap_meta.applied + 1 >= f->src.first(f->src.ctx);
}

static void snap_build(kv_feed_t *f)
{
	char path[1200];

	if (f->snap_building || f->closing)
		return;
	if (f->snap_users > 0)
		return; /* the current file is being sent: one at a time */
	snap_release(f);
	snprintf(path, sizeof path, "%s/feed-snap.tmp", f->o.snap_dir);
	if ((f->snap_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
		GK_WARN("feed", "cannot create the snapshot file", "path=%s err=\"%s\"", path,
			strerror(errno));
		return;
	}
	unlink(path); /* the descriptor and then the mapping keep it */
	f->snap_store = f->src.store(f->src.ctx);
	f->snap_req.data = f;
	f->snap_err = 0;
	if (uv_queue_work(f->loop, &f->snap_req, snap_work, snap_done) != 0) {
		close(f->snap_fd);
		f->snap_fd = -1;
		return;
	}
	f->snap_building = true;
	GK_INFO("feed", "building a snapshot for leaves", "first=%" PRIu64,
		f->src.first(f->src.ctx));
}

static void snap_begin(kv_feed_conn_t *c)
{
	kv_feed_t *f = c->f;
	uint8_t buf[64];
	proto_wbuf_t w;
	proto_feed_snap_t m = {.index = f->snap_meta.applied, .term = f->snap_term,
			       .hash = PROTO_FEED_SNAP_SEED(f->snap_meta.applied),
			       .size = f->snap_size};

	proto_wbuf_init(&w, buf, sizeof buf);
	proto_feed_snap_encode(&w, &m);
	if (proto_fs_send_frame(&c->fs, PROTO_T_FEED_SNAP, 0, buf, proto_wbuf_len(&w)) != 0)
		return;
	c->state = C_SNAP_SEND;
	c->snap_off = 0;
	c->snap_ref = true;
	f->snap_users++;
	f->st.snapshots_sent++;
	if (c->leaf >= 0)
		f->leaves[c->leaf].snapshots++;
	GK_INFO("feed", "sending a snapshot to a leaf", "peer=%s applied=%" PRIu64 " bytes=%zu",
		c->fs.peer, m.index, f->snap_size);
	pump(c);
}

static void snap_serve_waiting(kv_feed_t *f)
{
	bool want = false;

	for (kv_feed_conn_t *c = f->conns; c; c = c->next_conn) {
		if (c->state != C_SNAP_WAIT)
			continue;
		if (snap_fresh(f))
			snap_begin(c);
		else
			want = true;
	}
	if (want)
		snap_build(f);
}

static void need_snapshot(kv_feed_conn_t *c)
{
	c->state = C_SNAP_WAIT;
	snap_serve_waiting(c->f);
}

static void snap_unref(kv_feed_conn_t *c)
{
	if (!c->snap_ref)
		return;
	c->snap_ref = false;
	c->f->snap_users--;
}

void kv_feed_store_closing(kv_feed_t *f)
{
	if (f == NULL)
		return;
	pthread_mutex_lock(&f->snap_mu);
	if (f->snap_building) {
		atomic_store(&f->snap_abort, true);
		while (f->snap_running)
			pthread_cond_wait(&f->snap_cv, &f->snap_mu);
		f->snap_store = NULL; /* a build not started yet cancels itself */
	}
	pthread_mutex_unlock(&f->snap_mu);
}

/* ---- streaming ------------------------------------------------------------------------ */

struct fill {
	kv_feed_conn_t *c;
	proto_wbuf_t w;
	proto_feed_entries_writer_t b;
	uint64_t hash;
	uint64_t commit, time;
	int err;
};

static void fill_begin(struct fill *x)
{
	proto_wbuf_init(&x->w, x->c->enc, x->c->enc_cap);
	proto_feed_entries_begin(&x->b, &x->w, x->commit, x->time);
}

static int fill_cb(void *cbctx, uint64_t index, uint64_t term, uint8_t type, const uint8_t *data,
		   size_t len)
{
	struct fill *x = cbctx;
	proto_feed_entry_t e = {.index = index, .term = term, .type = type,
				.data = {data, (uint32_t)len}};
	int rc;

	if (type != PROTO_FEED_NORMAL)
		e.data.len = 0;
	e.hash = proto_feed_hash(x->hash, index, term, type, e.data.p, e.data.len);
	rc = proto_feed_entries_add(&x->b, &e);
	if (rc == PROTO_ETOOBIG && x->b.count == 0) {
		/* One entry bigger than the buffer: grow it (nothing of the frame is lost). */
		if (enc_reserve(x->c, 64 + PROTO_FEED_ENTRY_FIXED + (size_t)len) != 0) {
			x->err = -ENOMEM;
			return 1;
		}
		fill_begin(x);
		rc = proto_feed_entries_add(&x->b, &e);
	}
	if (rc != 0) {
		if (rc != PROTO_ETOOBIG)
			x->err = rc;
		return 1;
	}
	x->hash = e.hash;
	return 0;
}

static void stream_pump(kv_feed_conn_t *c)
{
	kv_feed_t *f = c->f;

	while (!c->fs.closing && !out_full(c)) {
		uint64_t served = f->src.served(f->src.ctx), term;
		struct fill x = {.c = c, .hash = c->hash};
		int rc;

		if (c->next > served)
			break;
		if (c->verify_index != 0) {
			/* The leaf was ahead when it connected; now we hold its last entry. */
			if (c->verify_term != 0 && f->src.term(f->src.ctx, c->verify_index, &term) == 0 &&
			    term != 0 && term != c->verify_term) {
				f->st.resyncs++;
				if (c->leaf >= 0)
					f->leaves[c->leaf].resyncs++;
				GK_WARN("feed", "leaf diverged from this source's log, re-syncing it",
					"peer=%s index=%" PRIu64 " leaf_term=%" PRIu64 " term=%" PRIu64,
					c->fs.peer, c->verify_index, c->verify_term, term);
				c->verify_index = 0;
				need_snapshot(c);
				return;
			}
			c->verify_index = 0;
		}
		f->src.beat(f->src.ctx, &x.commit, &x.time, &term);
		if (x.commit < served)
			x.commit = served;
		if (enc_reserve(c, FRAME_TARGET + 4096) != 0) {
			proto_fs_close(&c->fs, -ENOMEM);
			return;
		}
		fill_begin(&x);
		rc = f->src.entries(f->src.ctx, c->next, served + 1, FRAME_TARGET, fill_cb, &x);
		if (rc == KV_ENOTFOUND) {
			GK_INFO("feed", "leaf is behind the log, sending a snapshot", "peer=%s next=%"
				PRIu64 " first=%" PRIu64, c->fs.peer, c->next, f->src.first(f->src.ctx));
			need_snapshot(c);
			return;
		}
		if (rc != 0 || x.err != 0) {
			GK_WARN("feed", "cannot read entries for a leaf, closing", "peer=%s next=%" PRIu64
				" err=\"%s\"", c->fs.peer, c->next, geokv_strerror(rc ? rc : x.err));
			proto_fs_close(&c->fs, rc ? rc : x.err);
			return;
		}
		if (x.b.count == 0)
			break;
		proto_feed_entries_finish(&x.b);
		if (proto_fs_send_frame(&c->fs, PROTO_T_FEED_ENTRIES, 0, c->enc,
					proto_wbuf_len(&x.w)) != 0)
			return;
		c->next = x.b.last_index + 1;
		c->hash = x.hash;
		c->tx_ms = now_ms();
		f->st.entries_sent += x.b.count;
		f->st.frames_sent++;
		f->st.bytes_sent += proto_wbuf_len(&x.w);
		if (c->leaf >= 0) {
			f->leaves[c->leaf].entries_sent += x.b.count;
			f->leaves[c->leaf].sent_index = x.b.last_index;
		}
	}
	/* Keep a large buffer only while it is in use: a leaf that caught up costs 4 KiB. */
	if (c->enc_cap > FRAME_TARGET + 4096 && proto_fs_queued(&c->fs) == 0) {
		free(c->enc);
		c->enc = NULL;
		c->enc_cap = 0;
	}
}

static void snap_pump(kv_feed_conn_t *c)
{
	kv_feed_t *f = c->f;

	while (!c->fs.closing && !out_full(c) && c->snap_off < f->snap_size) {
		size_t n = f->snap_size - c->snap_off < SNAP_CHUNK ? f->snap_size - c->snap_off :
								      SNAP_CHUNK;
		proto_wbuf_t w;
		proto_feed_snap_data_t d = {.offset = c->snap_off,
					    .data = {f->snap_map + c->snap_off, (uint32_t)n}};

		if (enc_reserve(c, SNAP_CHUNK + 64) != 0) {
			proto_fs_close(&c->fs, -ENOMEM);
			return;
		}
		proto_wbuf_init(&w, c->enc, c->enc_cap);
		proto_feed_snap_data_encode(&w, &d);
		if (proto_fs_send_frame(&c->fs, PROTO_T_FEED_SNAP_DATA, 0, c->enc,
					proto_wbuf_len(&w)) != 0)
			return;
		c->snap_off += n;
		c->tx_ms = now_ms();
	}
	if (c->snap_off >= f->snap_size && !c->fs.closing) {
		c->next = f->snap_meta.applied + 1;
		c->hash = PROTO_FEED_SNAP_SEED(f->snap_meta.applied);
		c->state = C_STREAM;
		snap_unref(c);
		snap_serve_waiting(f); /* others may wait for a newer build */
		stream_pump(c);
	}
}

static void pump(kv_feed_conn_t *c)
{
	if (c->fs.closing)
		return;
	if (!out_full(c))
		c->stalled = false;
	if (c->state == C_STREAM)
		stream_pump(c);
	else if (c->state == C_SNAP_SEND)
		snap_pump(c);
}

void kv_feed_notify(kv_feed_t *f)
{
	if (f == NULL || f->closing)
		return;
	for (kv_feed_conn_t *c = f->conns; c; c = c->next_conn)
		if (c->state == C_STREAM && !c->stalled)
			stream_pump(c);
}

/* ---- session -------------------------------------------------------------------------- */

static void on_hello(kv_feed_conn_t *c, const uint8_t *pl, size_t len)
{
	kv_feed_t *f = c->f;
	proto_hello_t h;
	proto_hello_ok_t ok = {0};
	uint8_t buf[600];
	proto_wbuf_t w;
	size_t cl = strlen(f->o.cluster_id);
	int rc = proto_hello_decode(pl, len, &h);

	if (rc != 0 || h.role != PROTO_ROLE_LEAF) {
		f->st.hello_refused++;
		GK_WARN("feed", "bad HELLO from a leaf, closing", "peer=%s role=%u", c->fs.peer,
			rc == 0 ? h.role : 0);
		send_error(c, PROTO_EBADMSG, "the feed listener expects HELLO with role leaf (3)");
		proto_fs_close(&c->fs, PROTO_EBADMSG);
		return;
	}
	if (h.version != PROTO_VERSION) {
		f->st.hello_refused++;
		send_error(c, PROTO_EVERSION, "protocol version not supported");
		proto_fs_close(&c->fs, PROTO_EVERSION);
		return;
	}
	if (h.cluster.len > 0 && (h.cluster.len != cl || memcmp(h.cluster.p, f->o.cluster_id, cl))) {
		f->st.hello_refused++;
		GK_WARN("feed", "leaf of another cluster, closing", "peer=%s cluster=%.*s", c->fs.peer,
			(int)h.cluster.len, (const char *)h.cluster.p);
		send_error(c, PROTO_ECLUSTER, "cluster id does not match");
		proto_fs_close(&c->fs, PROTO_ECLUSTER);
		return;
	}
	if (f->o.token_len > 0 &&
	    (h.token.len != f->o.token_len || memcmp(h.token.p, f->o.token, f->o.token_len))) {
		f->st.hello_refused++;
		GK_WARN("feed", "leaf with a bad token, closing", "peer=%s", c->fs.peer);
		send_error(c, PROTO_EAUTH, "bad credentials");
		proto_fs_close(&c->fs, PROTO_EAUTH);
		return;
	}
	ok.version = PROTO_VERSION;
	ok.node_id = f->o.node_id;
	ok.revision = kv_revision(f->src.store(f->src.ctx));
	ok.cluster = (proto_bytes_t){(const uint8_t *)f->o.cluster_id, (uint32_t)cl};
	proto_wbuf_init(&w, buf, sizeof buf);
	if (proto_hello_ok_encode(&w, &ok) != 0) {
		proto_fs_close(&c->fs, PROTO_EINTERNAL);
		return;
	}
	proto_fs_send_frame(&c->fs, PROTO_T_HELLO_OK, 0, buf, proto_wbuf_len(&w));
	c->state = C_START;
}

static void on_start(kv_feed_conn_t *c, const uint8_t *pl, size_t len)
{
	kv_feed_t *f = c->f;
	proto_feed_start_t m;
	uint64_t first = f->src.first(f->src.ctx), served = f->src.served(f->src.ctx), term = 0;

	if (proto_feed_start_decode(pl, len, &m) != 0) {
		send_error(c, PROTO_EBADMSG, "bad FEED_START");
		proto_fs_close(&c->fs, PROTO_EBADMSG);
		return;
	}
	c->leaf = leaf_slot(f, m.leaf_id, &m.name);
	if (c->leaf < 0) {
		send_error(c, PROTO_EBUSY, "too many leaves");
		proto_fs_close(&c->fs, PROTO_EBUSY);
		return;
	}
	kv_feed_leaf_t *lf = &f->leaves[c->leaf];
	f->leaf_conns[c->leaf]++;
	lf->connected = true;
	lf->applied = m.from_index;
	lf->contact_ms = now_ms();
	snprintf(lf->peer, sizeof lf->peer, "%s", c->fs.peer);
	GK_INFO("feed", "leaf connected", "peer=%s leaf=%" PRIu64 " name=%s from=%" PRIu64
		" first=%" PRIu64 " served=%" PRIu64, c->fs.peer, m.leaf_id, lf->name, m.from_index,
		first, served);
	if (m.from_index > served) {
		/* Ahead of us (a member that applies a little later than the leader did): wait
		 * until we hold its last entry, check that entry's term, then go on from there. */
		c->verify_index = m.from_index;
		c->verify_term = m.from_term;
		c->next = m.from_index + 1;
		c->hash = m.from_hash;
		c->state = C_STREAM;
		send_hb(c);
		return;
	}
	if (m.from_index + 1 < first) {
		need_snapshot(c);
		return;
	}
	if (m.from_term != 0 && f->src.term(f->src.ctx, m.from_index, &term) == 0 && term != 0 &&
	    term != m.from_term) {
		f->st.resyncs++;
		lf->resyncs++;
		GK_WARN("feed", "leaf diverged from this source's log, re-syncing it", "peer=%s index=%"
			PRIu64 " leaf_term=%" PRIu64 " term=%" PRIu64, c->fs.peer, m.from_index,
			m.from_term, term);
		need_snapshot(c);
		return;
	}
	c->next = m.from_index + 1;
	c->hash = m.from_hash;
	c->state = C_STREAM;
	send_hb(c); /* the leaf learns commit and the leader's time at once */
	stream_pump(c);
}

static void on_ack(kv_feed_conn_t *c, const uint8_t *pl, size_t len)
{
	proto_feed_ack_t a;

	if (proto_feed_ack_decode(pl, len, &a) != 0) {
		proto_fs_close(&c->fs, PROTO_EBADMSG);
		return;
	}
	if (c->leaf >= 0) {
		kv_feed_leaf_t *lf = &c->f->leaves[c->leaf];
		lf->applied = a.applied;
		lf->revision = a.revision;
		lf->lag_ms = a.lag_ms;
		lf->commit = a.commit;
	}
}

static void on_frame(proto_fs_t *s, const proto_hdr_t *h, const uint8_t *pl)
{
	kv_feed_conn_t *c = s->data;

	c->rx_ms = now_ms();
	if (c->leaf >= 0)
		c->f->leaves[c->leaf].contact_ms = c->rx_ms;
	if (h->flags != 0) {
		proto_fs_close(s, PROTO_EBADMSG);
		return;
	}
	switch (c->state) {
	case C_HELLO:
		if (h->type != PROTO_T_HELLO) {
			send_error(c, PROTO_EBADMSG, "HELLO first");
			proto_fs_close(s, PROTO_EBADMSG);
			return;
		}
		on_hello(c, pl, h->len);
		return;
	case C_START:
		if (h->type != PROTO_T_FEED_START) {
			send_error(c, PROTO_EBADMSG, "FEED_START expected");
			proto_fs_close(s, PROTO_EBADMSG);
			return;
		}
		on_start(c, pl, h->len);
		return;
	default:
		if (h->type == PROTO_T_FEED_ACK)
			on_ack(c, pl, h->len);
		else if (h->type == PROTO_T_PING)
			proto_fs_send_frame(s, PROTO_T_PONG, h->id, NULL, 0);
		else
			proto_fs_close(s, PROTO_EBADTYPE);
	}
}

static void on_drain(proto_fs_t *s, int status)
{
	(void)status;
	pump(s->data);
}

static void on_conn_close(proto_fs_t *s, int err)
{
	kv_feed_conn_t *c = s->data;
	kv_feed_t *f = c->f;

	if (err == PROTO_ETLS)
		GK_WARN("feed", "TLS handshake failed, closing", "peer=%s", c->fs.peer);
	if (c->leaf >= 0) {
		f->leaves[c->leaf].connected = --f->leaf_conns[c->leaf] > 0;
		GK_INFO("feed", "leaf disconnected", "peer=%s leaf=%" PRIu64 " err=%s", c->fs.peer,
			f->leaves[c->leaf].id, geokv_errname(err));
	}
	snap_unref(c);
	if (c->prev)
		c->prev->next_conn = c->next_conn;
	else
		f->conns = c->next_conn;
	if (c->next_conn)
		c->next_conn->prev = c->prev;
	f->nconns--;
	free(c->enc);
	free(c);
	if (f->closing) {
		if (--f->open_handles == 0) {
			pthread_mutex_destroy(&f->snap_mu);
			pthread_cond_destroy(&f->snap_cv);
			free(f);
		}
	} else {
		snap_release(f);
	}
}

static void on_ready(proto_fs_t *s, int status)
{
	(void)s;
	(void)status;
}

static void on_accept(uv_stream_t *l, int status)
{
	kv_feed_t *f = l->data;
	kv_feed_conn_t *c;

	if (status < 0 || f->closing)
		return;
	if ((c = calloc(1, sizeof *c)) == NULL || proto_fs_init(f->loop, &c->fs) != 0) {
		free(c);
		return;
	}
	c->f = f;
	c->leaf = -1;
	c->state = C_HELLO;
	c->opened_ms = c->rx_ms = c->tx_ms = now_ms();
	c->fs.data = c;
	c->fs.max_frame = f->o.max_frame;
	c->fs.on_frame = on_frame;
	c->fs.on_drain = on_drain;
	c->fs.on_close = on_conn_close;
	c->fs.on_ready = on_ready;
	c->next_conn = f->conns;
	if (f->conns)
		f->conns->prev = c;
	f->conns = c;
	f->nconns++;
	f->st.conns_accepted++;
	if (proto_fs_accept(&c->fs, l, f->o.tls) != 0) {
		proto_fs_close(&c->fs, PROTO_ECLOSED);
		return;
	}
	if (f->nconns > f->o.max_conns) {
		f->st.conns_refused++;
		proto_fs_close(&c->fs, PROTO_EBUSY);
	}
}

/* Heartbeats, idle cuts, retries of a failed snapshot build. */
static void on_timer(uv_timer_t *t)
{
	kv_feed_t *f = t->data;
	uint64_t now = now_ms();
	bool waiting = false;

	for (kv_feed_conn_t *c = f->conns, *nx; c; c = nx) {
		nx = c->next_conn;
		if (c->fs.closing)
			continue;
		if (now - c->rx_ms > f->o.idle_ms) {
			GK_WARN("feed", "leaf silent, closing", "peer=%s silent_ms=%" PRIu64, c->fs.peer,
				now - c->rx_ms);
			proto_fs_close(&c->fs, PROTO_ETIMEDOUT);
			continue;
		}
		if (c->state == C_SNAP_WAIT)
			waiting = true;
		if (c->state != C_STREAM && c->state != C_SNAP_SEND && c->state != C_SNAP_WAIT)
			continue;
		pump(c);
		/* A leaf waiting for a snapshot build hears heartbeats too, so it does not take
		 * the wait for a stall. */
		if ((c->state == C_STREAM || c->state == C_SNAP_WAIT) && !c->fs.closing &&
		    now - c->tx_ms >= f->o.hb_ms && proto_fs_queued(&c->fs) < f->o.max_out)
			send_hb(c);
	}
	if (waiting && !f->snap_building)
		snap_serve_waiting(f);
}

/* ---- life cycle ----------------------------------------------------------------------- */

int kv_feed_start(kv_feed_t **out, uv_loop_t *loop, const kv_feed_opts_t *o,
		  const kv_feed_src_t *src)
{
	struct sockaddr_storage ss;
	kv_feed_t *f;
	int rc;

	if (proto_fs_parse_addr(o->listen, &ss, NULL, 0) != 0)
		return -EINVAL;
	if ((f = calloc(1, sizeof *f)) == NULL)
		return -ENOMEM;
	f->loop = loop;
	f->o = *o;
	f->src = *src;
	f->snap_fd = -1;
	if (f->o.hb_ms == 0)
		f->o.hb_ms = 100;
	if (f->o.max_out == 0)
		f->o.max_out = 4u << 20;
	if (f->o.max_conns == 0)
		f->o.max_conns = 256;
	if (f->o.idle_ms == 0)
		f->o.idle_ms = 10000;
	if (f->o.max_frame == 0)
		f->o.max_frame = 64u << 10;
	pthread_mutex_init(&f->snap_mu, NULL);
	pthread_cond_init(&f->snap_cv, NULL);
	uv_tcp_init(loop, &f->listener);
	f->listener.data = f;
	if ((rc = uv_tcp_bind(&f->listener, (struct sockaddr *)&ss, 0)) != 0 ||
	    (rc = uv_listen((uv_stream_t *)&f->listener, 128, on_accept)) != 0) {
		GK_ERROR("feed", "cannot listen", "listen=%s err=\"%s\"", o->listen, uv_strerror(rc));
		f->closing = true;
		f->open_handles = 1;
		uv_close((uv_handle_t *)&f->listener, NULL);
		uv_run(loop, UV_RUN_NOWAIT);
		pthread_mutex_destroy(&f->snap_mu);
		pthread_cond_destroy(&f->snap_cv);
		free(f);
		return rc;
	}
	uv_timer_init(loop, &f->timer);
	f->timer.data = f;
	uv_timer_start(&f->timer, on_timer, f->o.hb_ms, f->o.hb_ms);
	GK_INFO("feed", "serving leaves", "listen=%s tls=%s", o->listen, o->tls ? "on" : "off");
	*out = f;
	return 0;
}

static void on_handle_closed(uv_handle_t *h)
{
	kv_feed_t *f = h->data;

	if (--f->open_handles == 0) {
		pthread_mutex_destroy(&f->snap_mu);
		pthread_cond_destroy(&f->snap_cv);
		free(f);
	}
}

void kv_feed_close(kv_feed_t *f)
{
	if (f == NULL || f->closing)
		return;
	f->closing = true;
	kv_feed_store_closing(f);
	f->open_handles = 2 + (int)f->nconns + (f->snap_building ? 1 : 0);
	for (kv_feed_conn_t *c = f->conns; c; c = c->next_conn)
		proto_fs_close(&c->fs, PROTO_ESHUTDOWN);
	if (f->snap_map)
		munmap(f->snap_map, f->snap_size);
	f->snap_map = NULL;
	uv_close((uv_handle_t *)&f->listener, on_handle_closed);
	uv_close((uv_handle_t *)&f->timer, on_handle_closed);
}

/* ---- status and metrics --------------------------------------------------------------- */

size_t kv_feed_leaves(const kv_feed_t *f, kv_feed_leaf_t *out, size_t cap)
{
	size_t n = 0;

	if (f == NULL)
		return 0;
	for (int pass = 0; pass < 2; pass++)
		for (uint32_t i = 0; i < f->nleaves && n < cap; i++)
			if (f->leaves[i].connected == (pass == 0))
				out[n++] = f->leaves[i];
	return n;
}

const kv_feed_stats_t *kv_feed_stats(const kv_feed_t *f) { return &f->st; }
uint32_t kv_feed_connected(const kv_feed_t *f)
{
	uint32_t n = 0;

	for (uint32_t i = 0; f && i < f->nleaves; i++)
		n += f->leaves[i].connected;
	return n;
}

static void family(proto_metrics_buf_t *b, const char *prefix, const char *name,
		   const char *type, const char *help, char *full, size_t cap)
{
	snprintf(full, cap, "%s_feed_%s", prefix, name);
	proto_metrics_family(b, full, type, help);
}

void kv_feed_metrics(const kv_feed_t *f, proto_metrics_buf_t *b, const char *prefix)
{
	char n[128], lab[200], esc[100];
	uint64_t now = now_ms();
	const kv_feed_stats_t *s;

	if (f == NULL)
		return;
	s = &f->st;
#define CNT(name, help, v)                                                   \
	do {                                                                 \
		family(b, prefix, name, "counter", help, n, sizeof n);       \
		proto_metrics_u64(b, n, NULL, (v));                          \
	} while (0)
	family(b, prefix, "leaves_connected", "gauge", "Leaves streaming from this node.", n, sizeof n);
	proto_metrics_u64(b, n, NULL, kv_feed_connected(f));
	CNT("entries_sent_total", "Log entries sent to leaves.", s->entries_sent);
	CNT("bytes_sent_total", "FEED_ENTRIES payload bytes sent to leaves.", s->bytes_sent);
	CNT("heartbeats_total", "Heartbeats sent to leaves.", s->heartbeats);
	CNT("snapshots_built_total", "Snapshots of state/ built for leaves.", s->snapshots_built);
	CNT("snapshots_sent_total", "Snapshots sent to leaves.", s->snapshots_sent);
	CNT("resyncs_total", "Leaves re-synced because their history disagreed with ours.", s->resyncs);
	CNT("stalls_total", "Times a leaf's queued output reached the per-leaf bound.", s->stalls);
	CNT("hello_refused_total", "Feed handshakes refused.", s->hello_refused);
#undef CNT
	static const struct { const char *name, *type, *help; } per[] = {
		{"leaf_applied", "gauge", "Applied index a leaf last reported."},
		{"leaf_lag_entries", "gauge", "Entries a leaf is behind this node's commit index."},
		{"leaf_lag_seconds", "gauge", "Lag a leaf last reported, in the leader's clock."},
		{"leaf_last_contact_seconds", "gauge", "Seconds since a leaf's last frame."},
		{"leaf_connected", "gauge", "1 while the leaf is connected."},
	};
	uint64_t commit = 0, lt, term;
	f->src.beat(f->src.ctx, &commit, &lt, &term);
	for (size_t k = 0; k < sizeof per / sizeof per[0]; k++) {
		family(b, prefix, per[k].name, per[k].type, per[k].help, n, sizeof n);
		for (uint32_t i = 0; i < f->nleaves; i++) {
			const kv_feed_leaf_t *l = &f->leaves[i];
			snprintf(lab, sizeof lab, "leaf=\"%" PRIu64 "\",name=\"%s\"", l->id,
				 proto_metrics_label(esc, sizeof esc, l->name));
			switch (k) {
			case 0: proto_metrics_u64(b, n, lab, l->applied); break;
			case 1: proto_metrics_u64(b, n, lab, commit > l->applied ? commit - l->applied : 0); break;
			case 2: proto_metrics_f64(b, n, lab, (double)l->lag_ms / 1000.0); break;
			case 3: proto_metrics_f64(b, n, lab, now > l->contact_ms ?
						  (double)(now - l->contact_ms) / 1000.0 : 0.0); break;
			default: proto_metrics_u64(b, n, lab, l->connected ? 1 : 0); break;
			}
		}
	}
}
