/*
 * geokv-primary: the Raft driver. It feeds the I/O-free core in raft/ with ticks, peer
 * messages, proposals and read requests, and carries out what each Ready says: persist
 * (core/log.h, on the thread pool), send (core/peer.c), apply (core/kv.h), answer clients
 * (core/server.c). Connections live in server.c, the peer transport in peer.c.
 *
 * One ready cycle, and the invariants it keeps (raft/raft.h "Driver loop"):
 *
 *   drive:  raft_tick / raft_step (held frames) / raft_propose (pending) / raft_read_index
 *           raft_ready -> in_ready
 *           send the leader's APPEND, HEARTBEAT, SNAPSHOT, TIMEOUT_NOW and forwarded
 *             PROPOSE / READ_INDEX at once: none of them promises anything about this
 *             node's disk (Raft thesis 10.2.1: the leader writes its log in parallel)
 *           persist entries + hard state in ONE log transaction and fsync when must_sync:
 *             a job on the thread pool, so the loop keeps reading and serving reads
 *   finish: send every other message (votes, append acks) - only now is what they promise
 *             durable
 *           apply the committed entries in one kv_apply, answer their clients
 *           answer ReadIndex reads whose index is applied
 *           raft_advance, then drive again
 *
 *   - Group commit: while a job runs, no raft call is made (the core forbids it between
 *     ready and advance): proposals gather in `pending`, peer frames wait in their read
 *     buffers, ticks are counted. The next cycle takes all of them: one fsync covers every
 *     entry that arrived during the previous one.
 *   - Acknowledged = committed (a majority has it on disk) and applied here.
 *   - Each entry carries (origin node, proposal seq), so the member that received a write
 *     answers it when it applies it, whoever led: proposals on a follower are forwarded by
 *     the core to the leader. An entry of ours that the log replaced at the index we were
 *     given is answered PROTO_ENOTLEADER (not applied: safe to resend); one we never see
 *     within proposal_timeout_ms gets PROTO_ETIMEDOUT (outcome unknown).
 *   - Apply is deterministic; anything that makes it fail other than the entry itself
 *     (KV_EFULL, I/O) stalls apply, never skips: the entries stay in the log (compaction
 *     waits for the synced applied index) and are applied from it once possible.
 *   - The log is compacted only behind what a completed kv_sync of state/ covered, minus
 *     log_keep entries for followers a little behind; a follower further behind gets a
 *     snapshot: a file of state/ written from one read transaction, sent in chunks.
 */
#include "core/primary_int.h"
#include "core/prim_stream.h"
#include "core/prim_feed.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define HEARTBEAT_MS      100
#define REPAIR_UNKNOWN    UINT64_MAX /* repair_until when the damaged log's end is unknown */
#define STOP_FLUSH_MS     5000 /* replies still unread by a peer after this are dropped */
#define READ_WAIT_MS      1000 /* a ReadIndex round unanswered this long: ENOTLEADER */
#define APPLY_CHUNK       4096
#define ENV_MAGIC         0x81 /* first byte of an entry envelope (a bare entry starts 0x01) */
#define ENV_LEN           13   /* u8 magic, u32 origin, u64 seq */
#define SNAP_HOLD_MS      10000
#define DEC_ENTRIES       16384

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

/* The index every committed entry up to which has been processed: the store's applied
 * index moves only with entries that change it; NOOP and CONF entries move this one. */
uint64_t prim__applied(const prim_t *p)
{
	uint64_t s = kv_applied_index(p->store);

	return p->applied > s ? p->applied : s;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
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

static raft_id_t self_id(const prim_t *p) { return (raft_id_t)p->cfg->node_id; }

const char *prim__leader_addr(prim_t *p)
{
	raft_id_t l = raft_leader(&p->raft);
	return l ? prim__peer_client_addr(p, l) : "";
}

/* ---- waiting proposals: seq hash + list in proposal order ----------------------------- */

static int ptab_grow(prim_t *p)
{
	size_t cap = p->ptab_cap ? p->ptab_cap * 2 : 1024;
	prim_prop_t **t = calloc(cap, sizeof *t);

	if (t == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < p->ptab_cap; i++) {
		prim_prop_t *x = p->ptab[i], *nx;
		for (; x; x = nx) {
			nx = x->hnext;
			x->hnext = t[x->seq & (cap - 1)];
			t[x->seq & (cap - 1)] = x;
		}
	}
	free(p->ptab);
	p->ptab = t;
	p->ptab_cap = cap;
	return 0;
}

static int wait_add(prim_t *p, prim_prop_t *x)
{
	if (p->nwaiting >= p->ptab_cap && ptab_grow(p) != 0)
		return -ENOMEM;
	size_t b = x->seq & (p->ptab_cap - 1);
	x->hnext = p->ptab[b];
	p->ptab[b] = x;
	x->wnext = NULL;
	x->wprev = p->wtail;
	if (p->wtail)
		p->wtail->wnext = x;
	else
		p->whead = x;
	p->wtail = x;
	p->nwaiting++;
	return 0;
}

static void wait_del(prim_t *p, prim_prop_t *x)
{
	prim_prop_t **pp = &p->ptab[x->seq & (p->ptab_cap - 1)];

	while (*pp && *pp != x)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = x->hnext;
	if (x->wprev)
		x->wprev->wnext = x->wnext;
	else
		p->whead = x->wnext;
	if (x->wnext)
		x->wnext->wprev = x->wprev;
	else
		p->wtail = x->wprev;
	x->wprev = x->wnext = x->hnext = NULL;
	p->nwaiting--;
}

static prim_prop_t *wait_find(prim_t *p, uint64_t seq)
{
	if (p->ptab_cap == 0)
		return NULL;
	for (prim_prop_t *x = p->ptab[seq & (p->ptab_cap - 1)]; x; x = x->hnext)
		if (x->seq == seq)
			return x;
	return NULL;
}

/* ---- space admission -------------------------------------------------------------------
 * Committed entries are final: once in the log they must apply on every member. So a write
 * that could fill state/ or the log (raft/) is refused here, before it is proposed, while
 * a headroom is kept (1/32 of map-max and of the log's map, 64 KiB..64 MiB; 1/16 of each
 * file system, 256 KiB..64 MiB) that only writes which free space may use: deletes, purges and bucket removal always get through, even on a full disk (a
 * delete needs log space too: the headroom is what it uses). The estimate of what an entry
 * costs (its bytes twice, for the LMDB copy-on-write of its pages, plus a page) is summed
 * over every entry proposed here and not yet applied, and charged to both environments.
 * A member that accepts no write of its own can still fill its log with the leader's
 * entries; it then stops (log append failed) rather than acknowledge what it cannot keep. */
#define ENTRY_COST(len) (2 * (uint64_t)(len) + 4096)
#define PRIM_SMALL_WRITE 1800u /* fits a 4 KiB page beside others: no overflow pages */

/* Bytes free to us on DIR's file system; *size its size, *dev its device. */
static uint64_t dir_free(const char *dir, uint64_t *size, dev_t *dev)
{
	struct statvfs vfs;
	struct stat st;

	*dev = stat(dir, &st) == 0 ? st.st_dev : 0;
	if (statvfs(dir, &vfs) != 0) {
		*size = UINT64_MAX;
		return UINT64_MAX;
	}
	*size = (uint64_t)vfs.f_blocks * vfs.f_frsize;
	return (uint64_t)vfs.f_bavail * vfs.f_frsize;
}

static void space_refresh(prim_t *p)
{
	kv_stats_t ks;
	char logdir[1200];
	dev_t sdev, ldev;

	if (p->store && kv_stats(p->store, &ks) == 0) {
		p->space_used = ks.map_used;
		p->space_live = ks.map_live;
	}
	p->disk_free = dir_free(p->state_dir, &p->disk_size, &sdev);
	snprintf(logdir, sizeof logdir, "%s/raft", p->cfg->data);
	p->log_disk_free = dir_free(logdir, &p->log_disk_size, &ldev);
	p->log_same_fs = sdev != 0 && sdev == ldev;
	if (p->log == NULL || kv_log_space(p->log, &p->log_space) != 0)
		memset(&p->log_space, 0, sizeof p->log_space);
}

static uint64_t headroom(uint64_t cap)
{
	uint64_t head = cap / 32;
	return head < (64u << 10) ? 64u << 10 : head > (64u << 20) ? 64u << 20 : head;
}

/* On a file system: 1/16 of it (256 KiB..64 MiB). More than for a map: what LMDB really
 * takes (copied branch pages, free-list pages, pages a reader pins) is only estimated. */
static uint64_t disk_headroom(uint64_t size)
{
	uint64_t head = size / 16;
	return head < (256u << 10) ? 256u << 10 : head > (64u << 20) ? 64u << 20 : head;
}

static int space_admit(prim_t *p, uint8_t op, size_t len)
{
	uint64_t cap = p->cfg->map_max ? p->cfg->map_max : (uint64_t)1 << 40;
	uint64_t head = headroom(cap), need = ENTRY_COST(len) + p->prop_bytes;
	/* Free pages inside a file are reused before it grows, but only by what fits in one
	 * page: a value over half a page goes to overflow pages, which LMDB takes as one
	 * contiguous run, most often from the end of the file. So a big write is charged
	 * its full size against the disk. The log's free pages count at half: pages freed
	 * by compaction stay pinned while a read of the log (a follower's catch-up) holds
	 * them. A log entry is the whole op (a batch is one entry). */
	bool big = len > PRIM_SMALL_WRITE;
	uint64_t sfree = big ? 0 : p->space_used - p->space_live;
	uint64_t grow = need > sfree ? need - sfree : 0; /* what the file grows on disk */
	const kv_log_space_t *ls = &p->log_space;
	uint64_t lfree = big ? 0 : (ls->file - ls->used) / 2;
	uint64_t lgrow = need > lfree ? need - lfree : 0;

	if (op == PROTO_OP_DELETE || op == PROTO_OP_PURGE || op == PROTO_OP_BUCKET_DEL)
		return 0;
	if (p->space_live + need + head > cap ||
	    (grow && grow + disk_headroom(p->disk_size) > p->disk_free))
		goto full;
	if (ls->map != 0 && (ls->used + need + headroom(ls->map) > ls->map ||
			     (lgrow && lgrow + (p->log_same_fs ? grow : 0) +
				       disk_headroom(p->log_disk_size) > p->log_disk_free)))
		goto full;
	return 0;
full:
	p->st.space_refused++;
	return KV_EFULL;
}

/* Answer a proposal and free it (it is on no list any more). */
static void finish_prop(prim_t *p, prim_prop_t *x, const kv_result_t *r)
{
	p->prop_bytes -= x->cost;
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
		} else if (r->status == PROTO_ENOTLEADER) {
			prim__reply_notleader(x->conn, x->req_id);
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
		    r->status != KV_ENOBUCKET && r->status != PROTO_ENOTLEADER &&
		    r->status != PROTO_ETIMEDOUT && r->status != PROTO_ESHUTDOWN)
			GK_WARN("primary", "expiry delete failed", "err=%s", geokv_errname(r->status));
	}
	free(x);
}

static void fail_all_waiting(prim_t *p, int err)
{
	kv_result_t r = {.status = err};
	prim_prop_t *x;

	while ((x = p->whead) != NULL) {
		wait_del(p, x);
		finish_prop(p, x, &r);
	}
	while ((x = q_pop(&p->pending)) != NULL)
		finish_prop(p, x, &r);
}

/* ---- node status page ----------------------------------------------------------------- */

static void publish_status(prim_t *p)
{
	kv_nodestat_data_t *d = &p->ns.last;
	uint64_t now = wall_ms();
	bool leader = raft_role(&p->raft) == RAFT_LEADER;
	raft_id_t lead = raft_leader(&p->raft);

	if (p->ns.page == NULL)
		return;
	d->applied = prim__applied(p);
	d->commit = raft_commit(&p->raft);
	if (d->commit < d->applied)
		d->commit = d->applied;
	d->flags = (lead != 0 ? KV_NS_FEED : 0) | (leader ? KV_NS_LEADER : 0) |
		   (p->stopping ? KV_NS_STOPPING : 0) | (d->flags & KV_NS_CAUGHT_UP);
	if (lead != 0 && d->applied >= d->commit && !p->repairing)
		d->flags |= KV_NS_CAUGHT_UP;
	d->term = raft_term(&p->raft);
	d->revision = kv_revision(p->store);
	if (leader)
		p->leader_contact_ms = now;
	d->contact_ms = p->leader_contact_ms;
	d->leader_time_ms = p->leader_contact_ms;
	d->lag_entries = d->commit - d->applied;
	d->lag_ms = d->lag_entries == 0 || d->contact_ms == 0 ? 0 :
		    now > d->contact_ms ? now - d->contact_ms : 0;
	kv_nodestat_publish(&p->ns, d);
}

/* ---- raft storage over core/log.h ---------------------------------------------------- */

static int lrt_ensure(prim_t *p)
{
	if (p->lrt.active)
		return 0;
	return kv_log_read_begin(p->log, &p->lrt);
}

static int map_log_err(int rc)
{
	return rc == KV_ENOTFOUND ? RAFT_ECOMPACTED : rc == -ERANGE ? RAFT_EUNAVAIL : rc;
}

static uint64_t st_first(void *ctx) { return kv_log_first_index(((prim_t *)ctx)->log); }
static uint64_t st_last(void *ctx) { return kv_log_last_index(((prim_t *)ctx)->log); }

static int st_term(void *ctx, uint64_t index, uint64_t *term)
{
	prim_t *p = ctx;
	int rc;

	if (index == 0) {
		*term = 0;
		return 0;
	}
	if ((rc = lrt_ensure(p)) != 0)
		return rc;
	return map_log_err(kv_log_term(&p->lrt, index, term));
}

struct fill_ctx {
	raft_entry_t *out;
	size_t cap, n;
};

static int fill_cb(void *ctx, const kv_log_entry_t *e)
{
	struct fill_ctx *f = ctx;

	if (f->n == f->cap)
		return 1;
	f->out[f->n++] = (raft_entry_t){.index = e->index, .term = e->term, .type = e->type,
					.len = (uint32_t)e->len, .data = e->data};
	return 0;
}

static int st_entries(void *ctx, uint64_t lo, uint64_t hi, size_t max_bytes, raft_entry_t *out,
		      size_t cap)
{
	prim_t *p = ctx;
	struct fill_ctx f = {out, cap, 0};
	int rc;

	if ((rc = lrt_ensure(p)) != 0)
		return rc;
	rc = kv_log_entries(&p->lrt, lo, hi, max_bytes ? max_bytes : 1, fill_cb, &f, NULL);
	if (rc == 1)
		rc = 0;
	if (rc != 0 && f.n == 0)
		return map_log_err(rc);
	return (int)f.n;
}

static void st_hard(void *ctx, raft_hard_state_t *hs)
{
	kv_log_hard_t h;

	kv_log_hard(((prim_t *)ctx)->log, &h);
	*hs = (raft_hard_state_t){.term = h.term, .vote = (raft_id_t)h.vote, .commit = h.commit};
}

static void st_snap(void *ctx, raft_snapshot_meta_t *meta)
{
	kv_log_snap_t s;

	kv_log_snap(((prim_t *)ctx)->log, &s);
	memset(meta, 0, sizeof *meta);
	meta->index = s.index;
	meta->term = s.term;
	meta->conf.n = s.conf.n;
	for (uint32_t i = 0; i < s.conf.n; i++)
		meta->conf.ids[i] = s.conf.ids[i];
}

/* ---- snapshots: the leader's file of state/ ------------------------------------------- */

static int snap_write_cb(void *ctx, const void *buf, size_t len)
{
	int fd = *(int *)ctx;
	const uint8_t *b = buf;

	while (len > 0) {
		ssize_t n = write(fd, b, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

static void snap_build_work(uv_work_t *req)
{
	prim_t *p = req->data;
	char path[1200];
	kv_snap_meta_t meta;
	int fd;

	snprintf(path, sizeof path, "%s/raft/snap.out.tmp", p->cfg->data);
	if ((fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
		p->snap_err = -errno;
		return;
	}
	p->snap_err = kv_snapshot_write(p->store, snap_write_cb, &fd, &meta);
	if (p->snap_err == 0) {
		p->snap_applied = meta.applied;
		p->snap_fd = fd; /* handed to the loop */
	} else {
		close(fd);
	}
}

static void snap_build_done(uv_work_t *req, int status)
{
	prim_t *p = req->data;
	char tmp[1200], path[1200];
	struct stat stt;
	void *map;

	(void)status;
	p->snap_building = false;
	if (p->snap_err != 0) {
		GK_WARN("primary", "cannot write a snapshot for a follower", "err=\"%s\"",
			geokv_strerror(p->snap_err));
		prim__maybe_finish(p);
		return;
	}
	snprintf(tmp, sizeof tmp, "%s/raft/snap.out.tmp", p->cfg->data);
	snprintf(path, sizeof path, "%s/raft/snap.out", p->cfg->data);
	if (fstat(p->snap_fd, &stt) != 0 || rename(tmp, path) != 0 ||
	    (map = mmap(NULL, (size_t)stt.st_size, PROT_READ, MAP_SHARED, p->snap_fd, 0)) ==
		    MAP_FAILED) {
		GK_WARN("primary", "cannot map the snapshot file", "err=\"%s\"", strerror(errno));
		close(p->snap_fd);
		p->snap_fd = -1;
		prim__maybe_finish(p);
		return;
	}
	close(p->snap_fd);
	p->snap_fd = -1;
	/* Views of the old map may sit in an open ready cycle's messages: keep the newest
	 * pending until the cycle ends (swap_snapshot). */
	if (p->snap_next_map)
		munmap(p->snap_next_map, p->snap_next_size);
	p->snap_next_map = map;
	p->snap_next_size = (size_t)stt.st_size;
	p->snap_next_applied = p->snap_applied;
	GK_INFO("primary", "snapshot ready for followers", "applied=%" PRIu64 " bytes=%zu",
		p->snap_applied, p->snap_next_size);
	prim__drive(p);
	prim__maybe_finish(p);
}

static void swap_snapshot(prim_t *p)
{
	if (p->snap_next_map == NULL || p->in_ready)
		return;
	if (p->snap_map)
		munmap(p->snap_map, p->snap_size);
	p->snap_map = p->snap_next_map;
	p->snap_size = p->snap_next_size;
	p->snap_file_applied = p->snap_next_applied;
	p->snap_next_map = NULL;
}

static int st_chunk(void *ctx, const raft_snapshot_meta_t *meta, uint64_t offset, size_t max,
		    const void **data, size_t *len, bool *last)
{
	prim_t *p = ctx;

	/* Any copy of state/ at or past the snapshot index will do: the follower's log
	 * continues at meta->index + 1 and it skips what the copy already holds. */
	if (p->snap_map == NULL || p->snap_file_applied < meta->index) {
		if (!p->snap_building && !p->stopping) {
			p->snap_building = true;
			p->snap_req.data = p;
			if (uv_queue_work(p->loop, &p->snap_req, snap_build_work, snap_build_done))
				p->snap_building = false;
			else
				GK_INFO("primary", "writing a snapshot for a follower",
					"log_first=%" PRIu64, meta->index + 1);
		}
		return -EAGAIN;
	}
	if (offset > p->snap_size)
		return -EINVAL;
	*data = p->snap_map + offset;
	*len = p->snap_size - offset < max ? p->snap_size - offset : max;
	*last = offset + *len == p->snap_size;
	p->snap_used_ms = uv_now(p->loop);
	if (offset == 0)
		p->st.snapshots_sent++;
	return 0;
}

/* ---- follower: staging and installing a snapshot -------------------------------------- */

static int stage_chunk(prim_t *p, const raft_snapshot_chunk_t *ch)
{
	char path[1200];
	const uint8_t *b = ch->data;
	size_t len = ch->len;
	off_t off = (off_t)ch->offset;

	if (p->recv_fd < 0) {
		snprintf(path, sizeof path, "%s/raft/snap.recv", p->cfg->data);
		if ((p->recv_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0)
			return -errno;
	}
	if (ch->offset == 0 && ftruncate(p->recv_fd, 0) != 0)
		return -errno;
	while (len > 0) {
		ssize_t n = pwrite(p->recv_fd, b, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		b += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

struct recv_read {
	int fd;
	off_t off;
};

static long recv_read_cb(void *ctx, void *buf, size_t cap)
{
	struct recv_read *r = ctx;
	ssize_t n;

	do
		n = pread(r->fd, buf, cap, r->off);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	r->off += n;
	return (long)n;
}

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

static int open_store(prim_t *p)
{
	const prim_config_t *c = p->cfg;
	kv_opts_t so = {.flags = KV_OPEN_NOSYNC, .map_size = c->map_size, .map_max = c->map_max};
	int rc;

	if ((rc = kv_open(&p->store, p->state_dir, &so)) != 0) {
		GK_ERROR("primary", "cannot open store", "dir=%s err=\"%s\"", p->state_dir,
			 geokv_strerror(rc));
		return rc;
	}
	if ((rc = kv_nodestat_open_writer(&p->ns, p->state_dir, PROTO_ROLE_PRIMARY,
					  c->node_id)) != 0) {
		GK_ERROR("primary", "cannot open node status file", "dir=%s err=\"%s\"",
			 p->state_dir, geokv_strerror(rc));
		return rc;
	}
	return 0;
}

static void close_store(prim_t *p)
{
	kv_read_close(&p->rtxn);
	kv_nodestat_close(&p->ns);
	if (p->store)
		kv_close(p->store);
	p->store = NULL;
}

/*
 * Finish (or discard) a state/ replacement: `state.new` with a COMPLETE marker replaces
 * `state`; without the marker it is an install that did not finish. Run at start and right
 * after an install.
 */
static int finish_swap(prim_t *p)
{
	char nw[1200], old[1200], mark[1300];

	snprintf(nw, sizeof nw, "%s.new", p->state_dir);
	snprintf(old, sizeof old, "%s.old", p->state_dir);
	snprintf(mark, sizeof mark, "%s/COMPLETE", nw);
	if (access(mark, F_OK) != 0) {
		rm_rf(nw);
		return 0;
	}
	rm_rf(old);
	if ((rename(p->state_dir, old) != 0 && errno != ENOENT) || rename(nw, p->state_dir) != 0)
		return -errno;
	snprintf(mark, sizeof mark, "%s/COMPLETE", p->state_dir);
	unlink(mark);
	rm_rf(old);
	return 0;
}

static int write_marker(const char *dir)
{
	char path[1300];
	int fd;

	snprintf(path, sizeof path, "%s/COMPLETE", dir);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		return -errno;
	int rc = fsync(fd) == 0 ? 0 : -errno;
	close(fd);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	return rc;
}

/*
 * Install a received snapshot (synchronously: a follower this far behind is not needed for
 * the quorum). Order: the new store is built and durable beside the old one, the log is
 * reset to continue after the snapshot index, then the directories are swapped; a crash at
 * any point leaves either the old store (and the next start discards state.new) or the
 * new one (finish_swap completes it), and a store behind the log is repaired at start.
 */
static int install_snapshot(prim_t *p, const raft_snapshot_meta_t *meta)
{
	char nw[1200];
	kv_opts_t so = {.flags = 0, .map_size = p->cfg->map_size, .map_max = p->cfg->map_max};
	struct recv_read rr = {p->recv_fd, 0};
	kv_snap_meta_t sm;
	kv_log_snap_t ls = {.index = meta->index, .term = meta->term};
	uint64_t t0 = uv_hrtime();
	int rc;

	if (p->recv_fd < 0)
		return -EINVAL;
	snprintf(nw, sizeof nw, "%s.new", p->state_dir);
	rm_rf(nw);
	p->ns.last.flags |= KV_NS_SNAPSHOT;
	publish_status(p);
	if ((rc = kv_snapshot_install(nw, &so, recv_read_cb, &rr, &sm)) != 0) {
		GK_ERROR("primary", "snapshot install failed", "err=%s", geokv_errname(rc));
		rm_rf(nw);
		return rc;
	}
	if (sm.applied < meta->index) {
		GK_ERROR("primary", "snapshot is older than its meta", "applied=%" PRIu64
			 " meta_index=%" PRIu64, sm.applied, meta->index);
		rm_rf(nw);
		return KV_ECORRUPT;
	}
	if ((rc = write_marker(nw)) != 0)
		return rc;
	ls.conf.n = meta->conf.n;
	for (uint32_t i = 0; i < meta->conf.n; i++)
		ls.conf.ids[i] = meta->conf.ids[i];
	if (p->lrt.active)
		kv_log_read_end(&p->lrt);
	if ((rc = kv_log_reset(p->log, &ls)) != 0 || (rc = kv_log_sync(p->log)) != 0)
		return rc;
	prim__feed_store_closing(p);
	close_store(p);
	if ((rc = finish_swap(p)) != 0 || (rc = open_store(p)) != 0) {
		GK_ERROR("primary", "cannot switch to the installed store", "err=\"%s\"",
			 geokv_strerror(rc));
		exit(1); /* the next start finishes the swap */
	}
	p->conf_applied = meta->conf;
	p->n_conf_hist = 0;
	p->synced_applied = sm.applied;
	p->apply_stalled_at = 0;
	p->st.snapshots_installed++;
	GK_INFO("primary", "installed snapshot", "index=%" PRIu64 " applied=%" PRIu64
		" revision=%" PRIu64 " records=%" PRIu64 " ms=%" PRIu64, meta->index, sm.applied,
		sm.revision, sm.records, (uv_hrtime() - t0) / 1000000);
	return 0;
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
	uint64_t *seq = realloc(p->apply_seq, n * sizeof *seq);
	if (seq == NULL)
		return -ENOMEM;
	p->apply_seq = seq;
	p->apply_cap = n;
	return 0;
}

static void conf_note(prim_t *p, const raft_entry_t *e)
{
	if (raft_conf_apply(&p->conf_applied, e) != 0)
		return;
	if (p->n_conf_hist == sizeof p->conf_hist / sizeof p->conf_hist[0]) {
		memmove(&p->conf_hist[0], &p->conf_hist[1],
			sizeof p->conf_hist[0] * (p->n_conf_hist - 1));
		p->n_conf_hist--;
	}
	p->conf_hist[p->n_conf_hist].index = e->index;
	p->conf_hist[p->n_conf_hist].conf = p->conf_applied;
	p->n_conf_hist++;
}

/* Our proposals the log replaced: any waiting with an index at or below `upto` that was
 * not answered by its own entry. */
static void drop_replaced(prim_t *p, uint64_t upto)
{
	kv_result_t r = {.status = PROTO_ENOTLEADER};
	prim_prop_t *x;

	while ((x = p->whead) != NULL && x->index != 0 && x->index <= upto) {
		wait_del(p, x);
		p->st.props_lost++;
		finish_prop(p, x, &r);
	}
}

/*
 * Apply committed entries (index order) past the store's applied index, in kv_apply calls
 * of up to APPLY_CHUNK. Returns 0, or the error that stalled apply (apply_stalled_at set).
 */
static int apply_entries(prim_t *p, const raft_entry_t *ents, size_t n)
{
	size_t i = 0;

	if (ensure_apply_cap(p, APPLY_CHUNK) != 0)
		return -ENOMEM;
	while (i < n) {
		size_t k = 0, first = i;
		uint64_t applied = kv_applied_index(p->store);
		int rc;

		for (; i < n && k < APPLY_CHUNK; i++) {
			const raft_entry_t *e = &ents[i];
			const uint8_t *d = e->data;
			size_t len = e->len;
			uint64_t seq = 0;

			if (e->index <= applied)
				continue; /* already in state/ (a snapshot, or a replay) */
			if (e->type == RAFT_ENTRY_CONF) {
				conf_note(p, e);
				continue;
			}
			if (e->type != RAFT_ENTRY_NORMAL || len == 0)
				continue;
			if (d[0] == ENV_MAGIC && len > ENV_LEN) {
				if ((raft_id_t)get_le(d + 1, 4) == self_id(p))
					seq = get_le(d + 5, 8);
				d += ENV_LEN;
				len -= ENV_LEN;
			}
			p->apply_in[k] = (kv_entry_in_t){e->index, d, len};
			p->apply_seq[k] = seq;
			k++;
		}
		if (k == 0) {
			if (i > first && ents[i - 1].index > p->applied)
				p->applied = ents[i - 1].index;
			continue;
		}
		rc = kv_apply(p->store, p->apply_in, k, p->apply_res);
		if (rc == KV_ECORRUPT && k > 1) {
			/* One entry the store cannot decode (it passed the server's checks, so this
			 * should not happen): find it by applying one at a time. */
			i = first;
			for (size_t j = 0; j < k; j++) {
				rc = kv_apply(p->store, &p->apply_in[j], 1, &p->apply_res[j]);
				if (rc == KV_ECORRUPT) {
					p->apply_res[j] = (kv_result_t){.status = PROTO_EBADMSG};
					rc = 0;
				}
				if (rc != 0) {
					k = j;
					break;
				}
			}
		} else if (rc == KV_ECORRUPT) {
			GK_ERROR("primary", "committed entry cannot be decoded, skipped",
				 "index=%" PRIu64, p->apply_in[0].index);
			p->apply_res[0] = (kv_result_t){.status = PROTO_EBADMSG};
			rc = 0;
		}
		for (size_t j = 0; j < k; j++) {
			prim_prop_t *x;
			if (p->apply_seq[j] && (x = wait_find(p, p->apply_seq[j])) != NULL) {
				wait_del(p, x);
				finish_prop(p, x, &p->apply_res[j]);
			}
		}
		prim__watch_kick(p); /* watchers hear of a write as soon as it is applied */
		if (k > 0)
			drop_replaced(p, p->apply_in[k - 1].index);
		if (rc != 0) {
			uint64_t at = kv_applied_index(p->store) + 1;
			if (p->apply_stalled_at == 0)
				GK_ERROR("primary", "apply stalled, entries wait in the log",
					 "index=%" PRIu64 " err=%s hint=\"%s\"", at, geokv_errname(rc),
					 rc == KV_EFULL ? "raise map-max or free disk space" :
					 "see previous errors");
			p->apply_stalled_at = at;
			return rc;
		}
		if (ents[i - 1].index > p->applied)
			p->applied = ents[i - 1].index; /* NOOP and CONF entries included */
	}
	if (p->apply_stalled_at) {
		GK_INFO("primary", "apply resumed", "applied=%" PRIu64, kv_applied_index(p->store));
		p->apply_stalled_at = 0;
	}
	return 0;
}

struct log_apply_ctx {
	raft_entry_t *ents;
	size_t n, cap;
};

static int log_apply_cb(void *ctx, const kv_log_entry_t *e)
{
	struct log_apply_ctx *a = ctx;

	if (a->n == a->cap)
		return 1;
	a->ents[a->n++] = (raft_entry_t){.index = e->index, .term = e->term, .type = e->type,
					 .len = (uint32_t)e->len, .data = e->data};
	return 0;
}

/* Apply from the log up to `upto` (start-up replay, or after a stall). Returns 0 or error;
 * a KV_ECORRUPT from the log stops at the damaged entry (*bad_at set to its index). */
static int apply_from_log(prim_t *p, uint64_t upto, uint64_t *bad_at)
{
	kv_log_rtxn_t t = {0};
	raft_entry_t *ents = p->dec_ents;
	size_t cap = p->dec_cap < APPLY_CHUNK ? p->dec_cap : APPLY_CHUNK;
	uint64_t cur = kv_applied_index(p->store) + 1; /* NOOP/CONF do not move the store */
	int rc = 0;

	if (cur < kv_log_first_index(p->log))
		cur = kv_log_first_index(p->log);
	if (upto > kv_log_last_index(p->log))
		upto = kv_log_last_index(p->log);
	while (cur <= upto) {
		struct log_apply_ctx a = {ents, 0, cap};
		uint64_t next = cur;

		if ((rc = kv_log_read_begin(p->log, &t)) != 0)
			break;
		rc = kv_log_entries(&t, cur, upto + 1, (size_t)64 << 20, log_apply_cb, &a, &next);
		if (rc == 1)
			rc = 0;
		if (a.n > 0) {
			int arc = apply_entries(p, ents, a.n);
			if (arc != 0) {
				kv_log_read_end(&t);
				rc = arc;
				break;
			}
		}
		kv_log_read_end(&t);
		if (rc != 0) {
			if (rc == KV_ECORRUPT && bad_at)
				*bad_at = next;
			break;
		}
		if (next <= cur)
			break;
		cur = next;
	}
	kv_log_read_close(&t);
	return rc;
}

/* ---- reads ---------------------------------------------------------------------------- */

int prim__read_defer(prim_t *p, prim_conn_t *conn, uint64_t req_id, const uint8_t *pl,
		     size_t len)
{
	prim_read_t *rd = malloc(sizeof *rd + len);
	prim_rgroup_t *g = p->rg_tail;

	if (rd == NULL)
		return -ENOMEM;
	if (g == NULL || g->ctx != 0) {
		if ((g = calloc(1, sizeof *g)) == NULL) {
			free(rd);
			return -ENOMEM;
		}
		if (p->rg_tail)
			p->rg_tail->next = g;
		else
			p->rg_head = g;
		p->rg_tail = g;
	}
	rd->next = NULL;
	rd->conn = conn;
	rd->req_id = req_id;
	rd->len = len;
	memcpy(rd->data, pl, len);
	prim__conn_ref(conn);
	if (g->tail)
		g->tail->next = rd;
	else
		g->head = rd;
	g->tail = rd;
	p->nreads++;
	return 0;
}

/* Answer (serve, or refuse with `err`) every read of a group, and free it. */
static void rgroup_finish(prim_t *p, prim_rgroup_t *g, int err)
{
	prim_read_t *rd, *nx;

	for (rd = g->head; rd; rd = nx) {
		nx = rd->next;
		p->nreads--;
		if (err == 0 && prim__conn_open(rd->conn)) {
			prim__conn_read_ready(rd->conn, rd); /* served as its output has room */
			continue;
		}
		if (prim__conn_open(rd->conn)) {
			if (err == PROTO_ENOTLEADER)
				prim__reply_notleader(rd->conn, rd->req_id);
			else
				prim__reply_error(rd->conn, rd->req_id, err, NULL, 0, 0);
		}
		prim__conn_read_done(rd->conn);
		prim__conn_unref(rd->conn);
		free(rd);
	}
	free(g);
}

static void rgroup_unlink(prim_t *p, prim_rgroup_t *g, prim_rgroup_t *prev)
{
	if (prev)
		prev->next = g->next;
	else
		p->rg_head = g->next;
	if (p->rg_tail == g)
		p->rg_tail = prev;
}

/*
 * Serve the groups whose read index is applied; refuse the ones past their deadline. Answering
 * a read can resume a connection's input and so drive Raft again, which re-enters here: the
 * groups to answer are detached first (pure list work), then answered from that private list,
 * so a nested call never sees, or frees, a group this one still walks.
 */
static void serve_reads(prim_t *p, bool sweep)
{
	uint64_t applied = prim__applied(p), now = uv_now(p->loop);
	prim_rgroup_t *g, *prev = NULL, *nx, *done = NULL, **tail = &done;

	for (g = p->rg_head; g; g = nx) {
		nx = g->next;
		if (g->index != 0 && g->index <= applied)
			g->err = 0;
		else if (sweep && g->ctx != 0 && now > g->deadline_ms)
			g->err = g->index ? PROTO_ETIMEDOUT : PROTO_ENOTLEADER;
		else {
			prev = g;
			continue;
		}
		rgroup_unlink(p, g, prev);
		g->next = NULL;
		*tail = g;
		tail = &g->next;
	}
	for (g = done; g; g = nx) {
		nx = g->next;
		rgroup_finish(p, g, g->err);
	}
}

static void ask_read_index(prim_t *p)
{
	prim_rgroup_t *g = p->rg_tail;
	int rc;

	if (g == NULL || g->ctx != 0)
		return;
	rc = raft_read_index(&p->raft, p->read_ctx + 1);
	if (rc == 0) {
		g->ctx = ++p->read_ctx;
		g->deadline_ms = uv_now(p->loop) + READ_WAIT_MS;
		p->st.reads_index++;
	} else if (rc == RAFT_ENOTLEADER) {
		prim_rgroup_t *prev = NULL;
		for (prim_rgroup_t *q = p->rg_head; q && q != g; q = q->next)
			prev = q;
		rgroup_unlink(p, g, prev);
		rgroup_finish(p, g, PROTO_ENOTLEADER);
	}
	/* RAFT_EBUSY: ask again in the next cycle. */
}

static void note_read_states(prim_t *p, const raft_read_state_t *rs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		for (prim_rgroup_t *g = p->rg_head; g; g = g->next)
			if (g->ctx == rs[i].ctx) {
				g->index = rs[i].index ? rs[i].index : 1;
				/* applied may lag the read index: give apply its time too */
				g->deadline_ms = uv_now(p->loop) + p->cfg->prop_timeout_ms;
				break;
			}
}

/* ---- the ready cycle ------------------------------------------------------------------ */

static bool send_early(const prim_t *p, const raft_msg_t *m)
{
	switch (m->type) {
	case RAFT_MSG_APPEND:
	case RAFT_MSG_HEARTBEAT:
	case RAFT_MSG_SNAPSHOT:
	case RAFT_MSG_TIMEOUT_NOW:
		return raft_role(&p->raft) == RAFT_LEADER;
	case RAFT_MSG_PROPOSE:
	case RAFT_MSG_READ_INDEX:
		return true;
	default:
		return false;
	}
}

static void send_msgs(prim_t *p, bool early)
{
	for (size_t i = 0; i < p->rd.n_msgs; i++) {
		const raft_msg_t *m = &p->rd.msgs[i];
		if (send_early(p, m) == early)
			prim__peer_send(p, m);
	}
}

static void job_work(uv_work_t *req)
{
	prim_log_job_t *j = req->data;
	kv_log_t *log = j->p->log;

	j->err = j->sync_err = j->compact_err = 0;
	j->sync_ns = 0;
	if (j->n_ents > 0 || j->has_hs)
		j->err = kv_log_append(log, j->ents, j->n_ents, j->has_hs ? &j->hs : NULL);
	if (j->err == 0 && j->sync) {
		uint64_t t0 = uv_hrtime();
		j->sync_err = kv_log_sync(log);
		j->sync_ns = uv_hrtime() - t0;
	}
	/* Compaction needs no fsync of its own: if it is lost, the next one redoes it. */
	if (j->compact_to)
		j->compact_err = kv_log_compact_conf(log, j->compact_to, &j->compact_conf);
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

/* The conf as of index `at` (for the snapshot meta of a compaction). */
static void conf_at(const prim_t *p, uint64_t at, kv_log_conf_t *out)
{
	const raft_conf_t *c = &p->conf_applied;
	kv_log_snap_t s;

	for (uint32_t i = p->n_conf_hist; i > 0; i--) {
		if (p->conf_hist[i - 1].index <= at) {
			c = &p->conf_hist[i - 1].conf;
			goto found;
		}
	}
	if (p->n_conf_hist > 0) {
		/* older than every recorded change: the snapshot's */
		kv_log_snap(p->log, &s);
		*out = s.conf;
		return;
	}
found:
	out->n = c->n;
	for (uint32_t i = 0; i < c->n; i++)
		out->ids[i] = c->ids[i];
}

static void finish_ready(prim_t *p);

/*
 * Start again from what is on disk, in this same process: re-execute the command line
 * (same pid, so a supervisor or a test sees no exit; stderr and the log go on). As a
 * restart after kill -9, it loses nothing acknowledged: every answer waited for the
 * log's fsync. For states the running process cannot continue from but a start can: a
 * log append that failed (Raft counts on what it handed out being stored), a store to
 * rebuild. Falls back to exit(1) for the supervisor. pause_ms keeps a cause that
 * persists (a full disk) from turning into a busy loop.
 */
static void restart_in_place(prim_t *p, unsigned pause_ms)
{
	struct timespec ts = {pause_ms / 1000, (long)(pause_ms % 1000) * 1000000L};

	fflush(NULL);
	if (p->cfg->argv != NULL) {
		if (pause_ms)
			nanosleep(&ts, NULL);
		execv("/proc/self/exe", p->cfg->argv);
		GK_ERROR("primary", "cannot re-execute, exiting for the supervisor to restart",
			 "err=\"%s\"", strerror(errno));
	}
	exit(1);
}

static void job_done(uv_work_t *req, int status)
{
	prim_log_job_t *j = req->data;
	prim_t *p = j->p;

	(void)status;
	p->job_running = false;
	if (j->err != 0 || j->sync_err != 0) {
		/* Raft assumes what it handed out is durable after advance: without that we
		 * must not go on, nor answer anyone. A restart reads the log as it is on disk.
		 * A full disk or log map (admission estimates LMDB's needs; a follower takes
		 * whatever its leader sends) is survivable: restart in place, where admission
		 * sees the disk as it now is. A failed fsync is not: exit. */
		bool full = j->err == KV_EFULL || j->err == -ENOSPC || j->err == -EDQUOT;
		if (j->err == -EIO) {
			/* LMDB reports a short write (the disk filled during it) as EIO */
			char logdir[1200];
			uint64_t size;
			dev_t dev;
			snprintf(logdir, sizeof logdir, "%s/raft", p->cfg->data);
			full = dir_free(logdir, &size, &dev) < disk_headroom(size);
		}
		GK_ERROR("primary", j->err == 0 ? "log fsync failed, exiting without acknowledging" :
			 full ? "log append failed: disk or log map full, restarting in place" :
			 "log append failed, exiting",
			 "entries=%zu err=\"%s\"%s", j->n_ents,
			 geokv_strerror(j->err ? j->err : j->sync_err),
			 full ? " hint=\"free space on the log's disk or raise log-map-size\"" : "");
		if (full && j->sync_err == 0)
			restart_in_place(p, 1000);
		exit(1);
	}
	if (j->sync_ns)
		proto_metrics_hist_observe(&p->st.fsync_latency, j->sync_ns / 1000);
	if (j->n_ents)
		proto_metrics_hist_observe(&p->st.group_entries, j->n_ents);
	if (j->compact_err != 0)
		GK_WARN("primary", "log compaction failed", "upto=%" PRIu64 " err=%s",
			j->compact_to, geokv_errname(j->compact_err));
	else if (j->compact_to)
		GK_DEBUG("primary", "log compacted", "upto=%" PRIu64, j->compact_to);
	finish_ready(p);
}

/* Persist synchronously (snapshot cycles; and the rare case a job cannot be queued). */
static void persist_now(prim_t *p)
{
	job_work(&p->job.req);
	p->job_running = true;
	job_done(&p->job.req, 0);
}

static void on_role_change(prim_t *p)
{
	raft_id_t lead = raft_leader(&p->raft);

	if (lead == p->last_leader)
		return;
	p->st.leader_changes++;
	if (lead == self_id(p)) {
		p->st.elections_won++;
		GK_INFO("raft", "became leader", "term=%" PRIu64 " node=%" PRIu32,
			raft_term(&p->raft), lead);
	} else if (lead != 0) {
		GK_INFO("raft", "following leader", "term=%" PRIu64 " leader=%" PRIu32,
			raft_term(&p->raft), lead);
	} else {
		GK_INFO("raft", "no leader", "term=%" PRIu64, raft_term(&p->raft));
	}
	p->last_leader = lead;
	publish_status(p);
}

static void start_ready(prim_t *p)
{
	prim_log_job_t *j = &p->job;
	const raft_ready_t *rd = &p->rd;
	uint64_t first = kv_log_first_index(p->log);

	raft_ready(&p->raft, &p->rd);
	p->in_ready = true;
	send_msgs(p, true);
	j->p = p;
	j->req.data = j;
	j->n_ents = 0;
	j->has_hs = rd->hs_changed;
	j->hs = (kv_log_hard_t){.term = rd->hs.term, .vote = rd->hs.vote, .commit = rd->hs.commit};
	j->sync = rd->must_sync;
	j->compact_to = 0;
	if (p->compact_want >= first && p->compact_want <= kv_log_last_index(p->log)) {
		uint64_t to = p->compact_want;
		if (uv_now(p->loop) - p->snap_used_ms < SNAP_HOLD_MS && p->snap_map &&
		    to > p->snap_file_applied)
			to = p->snap_file_applied; /* a follower is fetching that file */
		if (to >= first) {
			j->compact_to = to;
			conf_at(p, to, &j->compact_conf);
		}
	}
	if (rd->n_entries) {
		if (ensure_ents(j, rd->n_entries) != 0) {
			GK_ERROR("primary", "out of memory persisting entries", "n=%zu", rd->n_entries);
			exit(1);
		}
		for (size_t i = 0; i < rd->n_entries; i++) {
			const raft_entry_t *e = &rd->entries[i];
			j->ents[i] = (kv_log_entry_t){.index = e->index, .term = e->term,
						      .type = (uint8_t)e->type, .data = e->data,
						      .len = e->len};
		}
		j->n_ents = rd->n_entries;
	}
	if (rd->snapshot_chunk || rd->snapshot) {
		int rc = 0;
		if (rd->snapshot_chunk && (rc = stage_chunk(p, rd->snapshot_chunk)) != 0)
			GK_ERROR("primary", "cannot stage snapshot chunk", "err=\"%s\"",
				 geokv_strerror(rc));
		if (rc == 0 && rd->snapshot && (rc = install_snapshot(p, rd->snapshot)) != 0)
			exit(1); /* raft believes it installed; restart repairs from the leader */
		j->compact_to = 0;
		persist_now(p);
		return;
	}
	if (j->n_ents == 0 && !j->has_hs && !j->sync && j->compact_to == 0) {
		finish_ready(p);
		return;
	}
	p->job_running = true;
	if (uv_queue_work(p->loop, &j->req, job_work, job_done) != 0) {
		p->job_running = false;
		persist_now(p);
	}
}

static void finish_ready(prim_t *p)
{
	const raft_ready_t *rd = &p->rd;

	send_msgs(p, false);
	if (rd->n_committed) {
		if (p->apply_stalled_at == 0)
			(void)apply_entries(p, rd->committed, rd->n_committed);
		space_refresh(p);
		p->apply_target = rd->committed[rd->n_committed - 1].index;
	}
	note_read_states(p, rd->reads, rd->n_reads);
	/* The read transaction behind this cycle's views predates the job's commit: end it
	 * (nothing reads those views any more) so that advance, which looks up the terms of
	 * what was just persisted, sees the log as it is now. */
	if (p->lrt.active)
		kv_log_read_end(&p->lrt);
	raft_advance(&p->raft, &p->rd);
	p->in_ready = false;
	if (p->lrt.active)
		kv_log_read_end(&p->lrt);
	serve_reads(p, false);
	on_role_change(p);
	if (rd->n_committed) {
		publish_status(p);
		prim__feed_notify(p);
	}
	swap_snapshot(p);
	prim__peers_resume(p);
	prim__drive(p);
	prim__maybe_finish(p);
}

void prim__step(prim_t *p, const raft_msg_t *m)
{
	int rc;

	if (p->repairing && (m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE))
		return; /* a damaged log must not help elect anyone */
	if (m->from == raft_leader(&p->raft) || m->type == RAFT_MSG_APPEND ||
	    m->type == RAFT_MSG_HEARTBEAT || m->type == RAFT_MSG_SNAPSHOT)
		p->leader_contact_ms = wall_ms();
	if ((rc = raft_step(&p->raft, m)) != 0 && rc != RAFT_EBUSY)
		GK_WARN("raft", "message refused", "from=%" PRIu32 " type=%s err=%s", m->from,
			raft_msg_type_name(m->type), raft_strerror(rc));
}

void prim__peer_lost(prim_t *p, raft_id_t id)
{
	/* The leader's process died (its kernel closed our connection): no need to wait a
	 * whole election timeout to notice. Timing only: safety never depends on it. */
	if (id == raft_leader(&p->raft) && raft_role(&p->raft) == RAFT_FOLLOWER && !p->stopping) {
		p->leader_lost = true;
		prim__drive(p);
	}
}

/* Hand pending proposals to raft; stops at the first EBUSY. */
static void propose_pending(prim_t *p)
{
	prim_prop_t *x;

	while ((x = p->pending.head) != NULL) {
		int rc;

		if (p->transferring) {
			rc = RAFT_EBUSY;
			break;
		}
		rc = raft_propose(&p->raft, x->data, x->len);
		if (rc == RAFT_EBUSY)
			break;
		q_pop(&p->pending);
		if (rc == 0 || rc == RAFT_FORWARDED) {
			x->index = rc == 0 ? raft_last_index(&p->raft) : 0;
			x->deadline_ms = uv_now(p->loop) + p->cfg->prop_timeout_ms;
			if (wait_add(p, x) == 0)
				continue;
			rc = -ENOMEM;
		}
		kv_result_t r = {.status = rc == RAFT_ENOTLEADER ? PROTO_ENOTLEADER :
					   rc == RAFT_ETOOBIG ? PROTO_ETOOBIG : PROTO_EINTERNAL};
		finish_prop(p, x, &r);
	}
}

void prim__drive(prim_t *p)
{
	if (p->in_ready || p->driving || p->closed)
		return;
	p->driving = true;
	for (int rounds = 0; rounds < 64 && !p->in_ready; rounds++) {
		if (p->leader_lost) {
			p->leader_lost = false;
			for (uint32_t i = 0; i < p->cfg->election_ticks; i++)
				raft_tick(&p->raft);
		}
		while (p->missed_ticks > 0) {
			p->missed_ticks--;
			raft_tick(&p->raft);
		}
		if (p->transfer_to) {
			int rc = raft_transfer_leader(&p->raft, p->transfer_to);
			if (rc != RAFT_EBUSY)
				p->transfer_to = 0;
		}
		propose_pending(p);
		ask_read_index(p);
		if (!raft_has_ready(&p->raft)) {
			if (p->lrt.active)
				kv_log_read_end(&p->lrt);
			break;
		}
		p->driving = false;
		start_ready(p); /* may finish synchronously, and drive again from there */
		p->driving = true;
	}
	p->driving = false;
}

void prim__kick(prim_t *p) { prim__drive(p); }

static bool in_group(const prim_t *p);

/*
 * A record of state/ failed its checksum (kv_corrupt_count): the store refuses it, so no
 * client ever reads it, but this member's copy is no longer the group's. A member of a
 * group rebuilds state/ from its log or the leader's snapshot: it records why in
 * raft/state.corrupt and re-executes itself (the same pid, like a restart by its
 * supervisor; what it acknowledged is in the synced log, as after kill -9). Start-up sets
 * the damaged store aside and starts a fresh one, which is applied from the log or, past
 * a compaction, from the leader's snapshot, voting again only once it is caught up. A
 * group of one has nobody to repair from: it goes on refusing those records (and says so
 * in /healthz, the log and geokv_primary_corrupt_records_total).
 */
static void check_corruption(prim_t *p)
{
	uint64_t n = p->store ? kv_corrupt_count(p->store) : 0;
	FILE *f;

	if (n == 0 || p->corrupt_seen)
		return;
	p->corrupt_seen = true;
	if (!in_group(p) || p->cfg->argv == NULL) {
		GK_ERROR("primary", "records of state/ failed their checksum, refusing them",
			 "corrupt=%" PRIu64 " hint=\"no peers to repair from: restore this node's "
			 "data dir from a backup\"", n);
		return;
	}
	GK_ERROR("primary", "records of state/ failed their checksum, restarting to rebuild "
		 "the store from the group", "corrupt=%" PRIu64, n);
	if ((f = fopen(p->corrupt_path, "w")) == NULL) {
		GK_ERROR("primary", "cannot record the repair, exiting", "path=%s err=\"%s\"",
			 p->corrupt_path, strerror(errno));
		exit(1);
	}
	fprintf(f, "corrupt=%" PRIu64 "\n", n);
	fflush(f);
	(void)fsync(fileno(f));
	fclose(f);
	restart_in_place(p, 0);
}

static void on_tick(uv_timer_t *t)
{
	prim_t *p = t->data;

	check_corruption(p);
	if (p->repairing && raft_role(&p->raft) != RAFT_LEADER) {
		/* No campaigns while repairing; the log catching up ends it. */
		if (p->repair_until == REPAIR_UNKNOWN ?
			    raft_leader(&p->raft) != 0 && raft_commit(&p->raft) > 0 &&
			    prim__applied(p) >= raft_commit(&p->raft) &&
			    kv_log_last_index(p->log) >= raft_commit(&p->raft) :
			    kv_log_last_index(p->log) >= p->repair_until &&
			    raft_commit(&p->raft) >= p->repair_until) {
			GK_INFO("primary", "repair complete, voting again", "last=%" PRIu64,
				kv_log_last_index(p->log));
			p->repairing = false;
			unlink(p->repair_path);
		}
		prim__drive(p);
		return;
	}
	p->missed_ticks++;
	prim__drive(p);
}

/* ---- proposals -------------------------------------------------------------------------- */

int prim__propose(prim_t *p, prim_conn_t *conn, uint64_t req_id, uint8_t op,
		  const uint8_t *opbytes, size_t len)
{
	prim_prop_t *x;
	proto_wbuf_t w;
	uint64_t now = wall_ms();

	int rc;

	if (p->stopping)
		return PROTO_ESHUTDOWN;
	if ((rc = space_admit(p, op, len)) != 0)
		return rc;
	if ((x = malloc(sizeof *x + ENV_LEN + 9 + len)) == NULL)
		return -ENOMEM;
	memset(x, 0, sizeof *x);
	x->cost = ENTRY_COST(len);
	p->prop_bytes += x->cost;
	/* Entry times never go backwards, even if the wall clock does: TTL decisions taken
	 * from them stay monotonic on this proposer. */
	if (now < p->last_time_ms)
		now = p->last_time_ms;
	p->last_time_ms = now;
	x->seq = ++p->prop_seq;
	x->data[0] = ENV_MAGIC;
	put_le(x->data + 1, self_id(p), 4);
	put_le(x->data + 5, x->seq, 8);
	proto_wbuf_init(&w, x->data + ENV_LEN, 9 + len);
	if (proto_entry_encode_raw(&w, now, opbytes, len) != 0) {
		free(x);
		return PROTO_EINTERNAL;
	}
	x->len = ENV_LEN + proto_wbuf_len(&w);
	x->conn = conn;
	x->req_id = req_id;
	x->op = op;
	x->recv_ns = uv_hrtime();
	if (conn)
		prim__conn_ref(conn);
	q_push(&p->pending, x);
	return 0;
}

/* Time out proposals and reads that got no answer (a leader change lost them). */
static void on_sweep_props(uv_timer_t *t)
{
	prim_t *p = t->data;
	uint64_t now = uv_now(p->loop);
	kv_result_t r = {.status = PROTO_ETIMEDOUT};
	prim_prop_t *x, *nx;

	for (x = p->whead; x; x = nx) {
		nx = x->wnext;
		if (x->deadline_ms > now)
			continue;
		wait_del(p, x);
		p->st.props_lost++;
		finish_prop(p, x, &r);
	}
	serve_reads(p, true);
	if (p->apply_stalled_at && !p->in_ready) {
		uint64_t bad = 0;
		if (apply_from_log(p, p->apply_target, &bad) == 0)
			publish_status(p);
		serve_reads(p, false);
	}
	prim__maybe_finish(p);
}

void prim__status(prim_t *p, proto_status_t *st)
{
	const char *lead = prim__leader_addr(p);

	memset(st, 0, sizeof *st);
	st->node_id = p->cfg->node_id;
	st->role = PROTO_ROLE_PRIMARY;
	st->is_leader = raft_role(&p->raft) == RAFT_LEADER;
	st->term = raft_term(&p->raft);
	st->revision = kv_revision(p->store);
	st->applied = prim__applied(p);
	st->commit = raft_commit(&p->raft);
	st->first_index = kv_log_first_index(p->log);
	st->last_index = kv_log_last_index(p->log);
	st->leader = (proto_bytes_t){(const uint8_t *)lead, (uint32_t)strlen(lead)};
	st->version = (proto_bytes_t){(const uint8_t *)PRIM_VERSION, sizeof PRIM_VERSION - 1};
	const raft_conf_t *cf = raft_conf(&p->raft);
	for (uint32_t i = 0; i < cf->n && st->nmembers < PROTO_MAX_MEMBERS; i++) {
		proto_member_t *m = &st->members[st->nmembers++];
		const char *a = prim__peer_client_addr(p, cf->ids[i]);
		m->id = cf->ids[i];
		m->addr = (proto_bytes_t){(const uint8_t *)a, (uint32_t)strlen(a)};
		if (m->id == (raft_id_t)p->cfg->node_id)
			m->flags |= PROTO_MEMBER_SELF | PROTO_MEMBER_UP;
		else if (prim__peer_up(p, m->id))
			m->flags |= PROTO_MEMBER_UP;
		if (st->is_leader && raft_peer_match(&p->raft, m->id, &m->match) == 0)
			m->flags |= PROTO_MEMBER_MATCH;
	}
	prim__feed_status(p, st);
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

	/* Only the leader decides expiry (followers apply its deletes). One scan at a time:
	 * the previous scan's deletes must apply first, or the same keys would be proposed
	 * again. */
	if (p->stopping || p->ttl_outstanding > 0 || raft_role(&p->raft) != RAFT_LEADER)
		return;
	n = kv_expired(p->store, p->last_time_ms > wall_ms() ? p->last_time_ms : wall_ms(),
		       p->cfg->ttl_batch, expired_cb, p);
	if (n < 0)
		GK_WARN("primary", "expiry scan failed", "err=%s", geokv_errname(n));
	else if (n > 0)
		GK_DEBUG("primary", "expiring keys", "n=%d", n);
	prim__drive(p);
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

	if (!p->stopping || p->closed)
		return;
	if (p->transferring) {
		if (raft_role(&p->raft) == RAFT_LEADER && uv_now(p->loop) < p->transfer_deadline)
			return;
		if (raft_role(&p->raft) != RAFT_LEADER)
			GK_INFO("primary", "leadership handed over", "leader=%" PRIu32,
				raft_leader(&p->raft));
		p->transferring = false;
	}
	/* Writes in flight get their commit until the deadline; then an honest "unknown". */
	if ((p->whead || p->pending.n) && uv_now(p->loop) < p->stop_deadline)
		return;
	fail_all_waiting(p, PROTO_ESHUTDOWN);
	while (p->rg_head) {
		prim_rgroup_t *g = p->rg_head;
		rgroup_unlink(p, g, NULL);
		rgroup_finish(p, g, PROTO_ESHUTDOWN);
	}
	if (p->job_running || p->sync_running || p->snap_building || p->in_ready)
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
	uv_close((uv_handle_t *)&p->tick_timer, on_close_noop);
	uv_close((uv_handle_t *)&p->sweep_props, on_close_noop);
	uv_close((uv_handle_t *)&p->sig_term, on_close_noop);
	uv_close((uv_handle_t *)&p->sig_int, on_close_noop);
	prim__peers_close(p);
	prim__stop_sweep(p);
	prim__metrics_close(p);
	prim__feed_close(p);
	prim__close_all(p);
	/* A peer that stopped reading would keep its connection (and us) open forever. */
	uv_timer_start(&p->stop_timer, on_stop_timer, STOP_FLUSH_MS, 0);
	uv_unref((uv_handle_t *)&p->stop_timer);
}

static void on_stop_check(uv_timer_t *t)
{
	prim_t *p = t->data;

	prim__maybe_finish(p);
	if (p->closed)
		uv_timer_stop(&p->stop_check);
}

/* The follower most caught up that we can reach; 0 if none. */
static raft_id_t transfer_target(prim_t *p)
{
	raft_id_t best = 0;
	uint64_t best_match = 0;

	for (uint32_t i = 0; i < p->npeers; i++) {
		raft_id_t id = p->peers[i].id;
		uint64_t match = 0;
		if (!raft_conf_has(raft_conf(&p->raft), id) || !prim__peer_up(p, id))
			continue;
		(void)raft_peer_match(&p->raft, id, &match);
		if (best == 0 || match > best_match) {
			best = id;
			best_match = match;
		}
	}
	return best;
}

static void on_signal(uv_signal_t *s, int signum)
{
	prim_t *p = s->data;

	if (p->stopping) {
		GK_WARN("primary", "second signal, exiting now", "signal=%d", signum);
		exit(1); /* acknowledged writes are in the log; replay covers the rest */
	}
	GK_INFO("primary", "stopping", "signal=%s pending=%zu waiting=%zu",
		signum == SIGTERM ? "TERM" : "INT", p->pending.n, p->nwaiting);
	p->stopping = true;
	p->stop_deadline = uv_now(p->loop) + 2000;
	if (raft_role(&p->raft) == RAFT_LEADER) {
		raft_id_t to = transfer_target(p);
		if (to != 0) {
			/* A planned stop costs no election timeout: hand over first. */
			GK_INFO("primary", "handing leadership over", "to=%" PRIu32, to);
			p->transferring = true;
			p->transfer_deadline = uv_now(p->loop) +
					       (uint64_t)p->cfg->tick_ms * p->cfg->election_ticks * 2;
			p->transfer_to = to;
			prim__drive(p);
		}
	}
	prim__stop_accepting(p);
	uv_timer_start(&p->stop_check, on_stop_check, 20, 20);
	prim__maybe_finish(p);
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

static bool conf_empty(const kv_log_conf_t *c) { return c->n == 0; }

static bool in_group(const prim_t *p) { return !(p->founders.n <= 1 && p->npeers == 0); }

/* raft/repair holds repair_until, so a restart mid-repair still stays out of elections. */
static void write_repair_mark(prim_t *p)
{
	FILE *f;

	if ((f = fopen(p->repair_path, "w")) != NULL) {
		fprintf(f, "%" PRIu64 "\n", p->repair_until);
		fflush(f);
		(void)fsync(fileno(f));
		fclose(f);
	}
}

static int rm_rf(const char *dir);

/* Move a damaged directory to DIR.damaged (replacing an older one), for the operator. */
static void set_aside(const char *dir)
{
	char bad[1200];

	snprintf(bad, sizeof bad, "%s.damaged", dir);
	rm_rf(bad);
	if (rename(dir, bad) != 0)
		rm_rf(dir);
}

/*
 * A log that cannot be opened or read back into Raft (a cut file, a flipped bit in LMDB's
 * own pages): what it held, entries, term and vote, is unknown. Start an empty one and stay
 * out of elections until a leader has brought it up to the group's commit index
 * (REPAIR_UNKNOWN), so a vote of ours can never count twice in a term or elect a leader
 * without entries we had acknowledged. The old one is kept as raft.damaged.
 */
static int replace_damaged_log(prim_t *p, const char *why)
{
	const prim_config_t *c = p->cfg;
	kv_log_opts_t lo = {.map_size = c->log_map_size};
	char logdir[1100];
	int rc;

	snprintf(logdir, sizeof logdir, "%s/raft", c->data);
	GK_ERROR("primary", "damaged log, repairing from the other members", "dir=%s why=\"%s\"",
		 logdir, why);
	if (p->lrt.l)
		kv_log_read_close(&p->lrt);
	if (p->log) {
		kv_log_close(p->log);
		p->log = NULL;
	}
	set_aside(logdir);
	if ((rc = kv_log_open(&p->log, logdir, &lo)) != 0)
		return rc;
	/* the founders' configuration until the leader's snapshot or entries say otherwise */
	kv_log_conf_t conf = {.n = p->founders.n};
	for (uint32_t i = 0; i < p->founders.n; i++)
		conf.ids[i] = p->founders.ids[i];
	if ((rc = kv_log_set_conf(p->log, &conf)) != 0 || (rc = kv_log_sync(p->log)) != 0)
		return rc;
	p->repair_until = REPAIR_UNKNOWN;
	p->repairing = true;
	write_repair_mark(p);
	return 0;
}

/*
 * Discard state/ and the log's entries, keeping term and vote, so the leader sends this
 * member everything again (a snapshot when its log is compacted). Only for a member of a
 * group: a group of one has nobody to repair from. While the log is below what it held
 * before (repair_until), the member neither votes nor campaigns: a vote from a member
 * that lost entries it acknowledged could elect a leader without them.
 */
static int repair_from_peers(prim_t *p, const char *why, uint64_t keep_upto)
{
	kv_log_snap_t snap;
	kv_log_hard_t hs;
	uint64_t old_last = kv_log_last_index(p->log);
	int rc;

	if (!in_group(p)) {
		GK_ERROR("primary", "store or log damaged, and no peers to repair from",
			 "err=KV_ECORRUPT why=\"%s\" hint=\"restore this node's data dir\"", why);
		return KV_ECORRUPT;
	}
	GK_ERROR("primary", "damaged data, repairing from the other members", "why=\"%s\" "
		 "log_last=%" PRIu64 " keep_upto=%" PRIu64, why, old_last, keep_upto);
	kv_log_snap(p->log, &snap);
	kv_log_hard(p->log, &hs);
	if (keep_upto == 0) {
		close_store(p);
		set_aside(p->state_dir);
		if ((rc = mkdir_p(p->state_dir)) != 0 || (rc = open_store(p)) != 0)
			return rc;
		kv_log_snap_t empty = {.index = 0, .term = 0, .conf = snap.conf};
		if ((rc = kv_log_reset(p->log, &empty)) != 0)
			return rc;
		hs.commit = 0;
	} else {
		if ((rc = kv_log_truncate(p->log, keep_upto + 1)) != 0)
			return rc;
		if (hs.commit > keep_upto)
			hs.commit = keep_upto;
	}
	if ((rc = kv_log_set_hard(p->log, &hs)) != 0 || (rc = kv_log_sync(p->log)) != 0)
		return rc;
	if (old_last > p->repair_until)
		p->repair_until = old_last;
	p->repairing = true;
	write_repair_mark(p);
	return 0;
}

static int open_storage(prim_t *p)
{
	const prim_config_t *c = p->cfg;
	char logdir[1100];
	kv_log_opts_t lo = {.map_size = c->log_map_size};
	kv_log_snap_t snap;
	kv_log_hard_t hs;
	uint64_t applied;
	FILE *f;
	int rc;

	if ((rc = mkdir_p(c->data)) != 0) {
		GK_ERROR("primary", "cannot create data dir", "dir=%s err=\"%s\"", c->data,
			 geokv_strerror(rc));
		return rc;
	}
	snprintf(logdir, sizeof logdir, "%s/raft", c->data);
	snprintf(p->state_dir, sizeof p->state_dir, "%s/state", c->data);
	snprintf(p->repair_path, sizeof p->repair_path, "%s/raft/repair", c->data);
	snprintf(p->corrupt_path, sizeof p->corrupt_path, "%s/raft/state.corrupt", c->data);
	if ((rc = finish_swap(p)) != 0) {
		GK_ERROR("primary", "cannot finish a snapshot install", "err=\"%s\"",
			 geokv_strerror(rc));
		return rc;
	}
	bool corrupt = access(p->corrupt_path, F_OK) == 0;
	if ((rc = mkdir_p(p->state_dir)) == 0 && ((rc = open_store(p)) == KV_ECORRUPT || corrupt) &&
	    in_group(p)) {
		/* A store that cannot be opened (a cut file), or whose records failed their
		 * checksums while running: start it afresh; the log replays into it, or, past
		 * a compaction, the leader sends a snapshot. */
		GK_ERROR("primary", "damaged store, rebuilding it", "dir=%s why=\"%s\"",
			 p->state_dir, rc == KV_ECORRUPT ? "it cannot be opened" :
			 "records failed their checksum");
		close_store(p);
		set_aside(p->state_dir);
		if ((rc = mkdir_p(p->state_dir)) == 0)
			rc = open_store(p);
	}
	if (rc == 0 && corrupt)
		unlink(p->corrupt_path);
	if (rc != 0)
		return rc;
	rc = kv_log_open(&p->log, logdir, &lo);
	if (rc == KV_ECORRUPT && in_group(p))
		rc = replace_damaged_log(p, "the log cannot be opened");
	if (rc != 0) {
		GK_ERROR("primary", "cannot open log", "dir=%s err=\"%s\"", logdir,
			 geokv_strerror(rc));
		return rc;
	}
	if ((f = fopen(p->repair_path, "r")) != NULL) {
		if (fscanf(f, "%" SCNu64, &p->repair_until) == 1)
			p->repairing = true;
		fclose(f);
	}
	/* The founders' configuration, for a new log (or one from a single-node version). */
	kv_log_snap(p->log, &snap);
	if (conf_empty(&snap.conf)) {
		kv_log_conf_t conf = {.n = p->founders.n};
		for (uint32_t i = 0; i < p->founders.n; i++)
			conf.ids[i] = p->founders.ids[i];
		if ((rc = kv_log_set_conf(p->log, &conf)) != 0 || (rc = kv_log_sync(p->log)) != 0) {
			GK_ERROR("primary", "cannot record the founding members", "err=%s",
				 geokv_errname(rc));
			return rc;
		}
		kv_log_snap(p->log, &snap);
	}
	applied = kv_applied_index(p->store);
	/* The log never compacts past what state/ synced; if it did, state/ was lost or
	 * replaced by an older copy, or a crash came between a snapshot install's log reset
	 * and its directory swap. */
	if (applied < snap.index) {
		char why[160];
		snprintf(why, sizeof why, "store applied %" PRIu64 " is behind the log's first "
			 "index %" PRIu64, applied, snap.index + 1);
		if ((rc = repair_from_peers(p, why, 0)) != 0)
			return rc;
	} else if (applied > kv_log_last_index(p->log)) {
		char why[160];
		snprintf(why, sizeof why, "store applied %" PRIu64 " is ahead of the log's last "
			 "index %" PRIu64, applied, kv_log_last_index(p->log));
		if ((rc = repair_from_peers(p, why, 0)) != 0)
			return rc;
	}
	/* Replay what is committed; then check the uncommitted tail too: a damaged entry
	 * anywhere is repaired from the leader (the log keeps what precedes it). */
	kv_log_hard(p->log, &hs);
	uint64_t bad = 0, upto = hs.commit < kv_log_last_index(p->log) ? hs.commit :
			       kv_log_last_index(p->log);
	rc = apply_from_log(p, upto, &bad);
	if (rc == KV_EFULL) {
		/* A full store: start anyway, with apply stalled (entries wait in the log and
		 * apply resumes when space allows, as at run time), so the member still serves
		 * reads, votes and keeps its log, and deletes can make room. */
		GK_WARN("primary", "replay stopped: the store is full, apply waits for space",
			"applied=%" PRIu64 " commit=%" PRIu64, kv_applied_index(p->store), upto);
		rc = 1; /* skip the tail check below; not an error */
	} else if (rc != 0 && rc != KV_ECORRUPT) {
		GK_ERROR("primary", "replay failed", "err=%s hint=\"%s\"", geokv_errname(rc),
			 "see previous errors");
		return rc;
	}
	if (rc == 0) {
		kv_log_rtxn_t t = {0};
		struct log_apply_ctx a = {p->dec_ents, 0, p->dec_cap};
		uint64_t at = upto + 1, next = at, last = kv_log_last_index(p->log);
		while (rc == 0 && at <= last) {
			a.n = 0;
			if ((rc = kv_log_read_begin(p->log, &t)) != 0)
				break;
			rc = kv_log_entries(&t, at, last + 1, (size_t)64 << 20, log_apply_cb, &a,
					    &next);
			kv_log_read_end(&t);
			if (rc == 1)
				rc = 0;
			if (rc == KV_ECORRUPT)
				bad = next;
			if (a.n == 0)
				break;
			at = next;
		}
		kv_log_read_close(&t);
	}
	if (bad != 0) {
		char why[120];
		snprintf(why, sizeof why, "log entry %" PRIu64 " failed its check", bad);
		if ((rc = repair_from_peers(p, why, bad - 1)) != 0)
			return rc;
		/* the store may hold entries past the kept log (it never does past commit,
		 * and commit <= bad - 1 now only if the damage was below it) */
		if (kv_applied_index(p->store) > kv_log_last_index(p->log) &&
		    (rc = repair_from_peers(p, "store ahead of the repaired log", 0)) != 0)
			return rc;
	} else if (rc != 0 && rc != 1) {
		return rc;
	}
	if (kv_applied_index(p->store) > 0)
		GK_INFO("primary", "replayed log", "applied=%" PRIu64 " revision=%" PRIu64,
			kv_applied_index(p->store), kv_revision(p->store));
	return 0;
}

static int raft_start(prim_t *p)
{
	raft_config_t rc;
	kv_log_hard_t hs;
	kv_log_snap_t snap;
	uint64_t applied = kv_applied_index(p->store), commit;
	int err;

	raft_config_default(&rc);
	rc.id = self_id(p);
	rc.election_tick = p->cfg->election_ticks;
	rc.heartbeat_tick = 1;
	rc.seed = p->rng;
	kv_log_hard(p->log, &hs);
	kv_log_snap(p->log, &snap);
	commit = hs.commit > snap.index ? hs.commit : snap.index;
	if (commit > kv_log_last_index(p->log))
		commit = kv_log_last_index(p->log);
	rc.applied = applied < commit ? applied : commit;
	if (rc.applied < snap.index)
		rc.applied = snap.index;
	rc.max_msg_entries = DEC_ENTRIES;
	p->rst = (raft_storage_t){.ctx = p, .first_index = st_first, .last_index = st_last,
				  .term = st_term, .entries = st_entries, .hard_state = st_hard,
				  .snapshot_meta = st_snap, .snapshot_chunk = st_chunk};
	if ((err = raft_init(&p->raft, &rc, &p->rst)) != 0) {
		GK_ERROR("raft", "cannot start", "err=%s", raft_strerror(err));
		if (p->lrt.active)
			kv_log_read_end(&p->lrt);
		return err;
	}
	if (p->lrt.active)
		kv_log_read_end(&p->lrt);
	p->conf_applied = *raft_conf(&p->raft);
	p->apply_target = rc.applied;
	space_refresh(p);
	/* A group of one needs no election timeout to find out it is the leader. */
	if (p->founders.n == 1 && p->npeers == 0 && raft_conf_has(raft_conf(&p->raft), rc.id))
		p->missed_ticks = 2 * rc.election_tick;
	return 0;
}

int prim_run(const prim_config_t *cfg)
{
	prim_t *p;
	struct timespec ts;
	int rc;

	signal(SIGPIPE, SIG_IGN);
	geokv_log_set_level(cfg->log_level);
	if ((p = calloc(1, sizeof *p)) == NULL)
		return -ENOMEM;
	p->cfg = cfg;
	p->loop = uv_default_loop();
	p->snap_fd = p->recv_fd = -1;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	p->rng = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32) ^ cfg->node_id;
	prim__stats_init(&p->st);
	p->dec_cap = DEC_ENTRIES;
	if ((p->dec_ents = calloc(p->dec_cap, sizeof *p->dec_ents)) == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	if ((rc = prim__peers_parse(p)) != 0 || (rc = open_storage(p)) != 0)
		goto out;
	if ((rc = raft_start(p)) != 0 && in_group(p)) {
		/* the log opened but Raft cannot read it back: treat it as lost */
		if ((rc = replace_damaged_log(p, "raft cannot start from it")) == 0 &&
		    (rc = repair_from_peers(p, "its log was replaced", 0)) == 0)
			rc = raft_start(p);
	}
	if (rc != 0)
		goto out;
	p->synced_applied = 0;
	publish_status(p);
	if ((rc = prim__tls_init(p)) != 0 || (rc = prim__feed_start(p)) != 0)
		goto out;
	if ((rc = prim__metrics_listen(p)) != 0) {
		prim__feed_close(p);
		uv_run(p->loop, UV_RUN_NOWAIT);
		goto out;
	}
	if ((rc = prim__peers_start(p)) != 0) {
		prim__metrics_close(p);
		prim__feed_close(p);
		uv_run(p->loop, UV_RUN_NOWAIT);
		goto out;
	}
	if ((rc = prim__listen(p)) != 0) {
		prim__peers_close(p);
		prim__metrics_close(p);
		prim__feed_close(p);
		uv_run(p->loop, UV_RUN_NOWAIT);
		goto out;
	}
	uv_timer_init(p->loop, &p->sync_timer);
	uv_timer_init(p->loop, &p->ttl_timer);
	uv_timer_init(p->loop, &p->hb_timer);
	uv_timer_init(p->loop, &p->stop_timer);
	uv_timer_init(p->loop, &p->stop_check);
	uv_timer_init(p->loop, &p->tick_timer);
	uv_timer_init(p->loop, &p->sweep_props);
	p->sync_timer.data = p->ttl_timer.data = p->hb_timer.data = p->stop_timer.data = p;
	p->tick_timer.data = p->sweep_props.data = p->stop_check.data = p;
	uv_timer_start(&p->sync_timer, on_sync_timer, cfg->sync_interval_ms, cfg->sync_interval_ms);
	if (cfg->ttl_interval_ms)
		uv_timer_start(&p->ttl_timer, on_ttl_timer, cfg->ttl_interval_ms,
			       cfg->ttl_interval_ms);
	uv_timer_start(&p->hb_timer, on_hb_timer, HEARTBEAT_MS, HEARTBEAT_MS);
	uv_timer_start(&p->tick_timer, on_tick, cfg->tick_ms, cfg->tick_ms);
	uv_timer_start(&p->sweep_props, on_sweep_props, 100, 100);
	uv_signal_init(p->loop, &p->sig_term);
	uv_signal_init(p->loop, &p->sig_int);
	p->sig_term.data = p->sig_int.data = p;
	uv_signal_start(&p->sig_term, on_signal, SIGTERM);
	uv_signal_start(&p->sig_int, on_signal, SIGINT);
	GK_INFO("primary", "serving", "listen=%s tls=%s node=%" PRIu64 " cluster=%s data=%s members=%"
		PRIu32 " peer_listen=%s applied=%" PRIu64 " revision=%" PRIu64 " log_first=%" PRIu64
		" log_last=%" PRIu64 "%s",
		cfg->listen, p->tls ? (cfg->tls_client_ca[0] ? "client-cert" : "on") : "off",
		cfg->node_id, cfg->cluster_id, cfg->data, raft_conf(&p->raft)->n,
		p->npeers ? p->peer_listen : "-", kv_applied_index(p->store),
		kv_revision(p->store), kv_log_first_index(p->log), kv_log_last_index(p->log),
		p->repairing ? " repairing=1" : "");
	prim__drive(p);
	uv_run(p->loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&p->stop_timer, on_close_noop);
	uv_close((uv_handle_t *)&p->stop_check, on_close_noop);
	uv_run(p->loop, UV_RUN_NOWAIT);
	GK_INFO("primary", "stopped", "applied=%" PRIu64 " revision=%" PRIu64 " term=%" PRIu64,
		kv_applied_index(p->store), kv_revision(p->store), raft_term(&p->raft));
	rc = p->exit_code;
out:
	raft_close(&p->raft); /* idempotent, and safe on the zeroed struct of a failed start */
	if (p->lrt.l)
		kv_log_read_close(&p->lrt);
	close_store(p);
	if (p->log)
		kv_log_close(p->log);
	uv_loop_close(p->loop);
	prim__tls_free(p);
	free(p->apply_in);
	free(p->apply_res);
	free(p->apply_seq);
	free(p->job.ents);
	free(p->ptab);
	free(p->dec_ents);
	if (p->snap_map)
		munmap(p->snap_map, p->snap_size);
	if (p->snap_next_map)
		munmap(p->snap_next_map, p->snap_next_size);
	if (p->recv_fd >= 0)
		close(p->recv_fd);
	prim__buf_free(&p->scratch);
	free(p);
	return rc;
}
