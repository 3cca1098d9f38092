/*
 * SNAPSHOT sessions (core/prim_stream.h): `geokv snapshot save` downloads the store's
 * snapshot stream (core/kv_snapshot.c: one read transaction, per-chunk checksums and a
 * trailer) in chunks by offset.
 *
 * The first request (empty session) writes the whole stream to a temporary file in the data
 * dir, unlinked at once (a crash leaves nothing behind), and answers with a session id, the
 * stream's size and meta and the first chunk; later requests name the session and an
 * offset. A file, not a held read transaction, because a client may read slowly: an LMDB
 * snapshot held for minutes would pin old pages and stall map growth (kv.h). Writing it
 * runs on the thread pool (its own read transaction, as the snapshots for followers do), so
 * the member keeps serving and, if it leads, heartbeating: a backup never costs an election.
 * The first answer goes out when the file is complete; the work holds a reference on the
 * connection until then.
 *
 * Sessions end when the last chunk is served, when PRIM_SNAP_IDLE_MS pass unread (checked at
 * the next request), or at shutdown; at most PRIM_SNAP_SESSIONS at once (the oldest goes).
 */
#include "core/prim_stream.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define CHUNK_DEFAULT (4u << 20)
#define CHUNK_MAX     (16u << 20)

typedef struct snap_sess {
	char id[33];               /* "" = free */
	bool building;             /* its file is being written on the thread pool */
	int fd;
	uint64_t size;
	kv_snap_meta_t meta;
	uint64_t used_ms;
} snap_sess_t;

static snap_sess_t sess[PRIM_SNAP_SESSIONS];

static void sess_drop(snap_sess_t *s)
{
	if (s->id[0] && !s->building) {
		close(s->fd);
		s->id[0] = 0;
	}
}

static int write_all(void *ctx, const void *p, size_t len)
{
	int fd = *(int *)ctx;
	const uint8_t *b = p;

	while (len) {
		ssize_t n = write(fd, b, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The first request's job: write the stream on the thread pool, then answer it. */
typedef struct snap_job {
	uv_work_t w;
	prim_t *p;
	prim_conn_t *c;            /* referenced until done */
	uint64_t id;
	uint32_t limit;
	snap_sess_t *s;
	int rc;
} snap_job_t;

static int serve_chunk(prim_t *p, prim_conn_t *c, uint64_t id, snap_sess_t *s, uint64_t off,
		       uint32_t limit);

static void job_work(uv_work_t *w)
{
	snap_job_t *j = w->data;

	j->rc = kv_snapshot_write(j->p->store, write_all, &j->s->fd, &j->s->meta);
}

static void job_done(uv_work_t *w, int status)
{
	snap_job_t *j = w->data;
	snap_sess_t *s = j->s;
	uint8_t rnd[16];
	off_t end = -1;
	int rc = status ? status : j->rc;

	s->building = false;
	if (rc == 0 && ((end = lseek(s->fd, 0, SEEK_END)) < 0 ||
			getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd))
		rc = -EIO;
	if (rc == 0) {
		for (int i = 0; i < 16; i++)
			snprintf(s->id + 2 * i, 3, "%02x", rnd[i]);
		s->size = (uint64_t)end;
		s->used_ms = uv_now(j->p->loop);
		GK_INFO("primary", "snapshot for a client written", "bytes=%" PRIu64 " applied=%"
			PRIu64 " records=%" PRIu64, s->size, s->meta.applied, s->meta.records);
		if (!prim__conn_open(j->c))
			sess_drop(s);
		else if ((rc = serve_chunk(j->p, j->c, j->id, s, 0, j->limit)) != 0)
			prim__reply_error(j->c, j->id, rc, NULL, 0, 0);
	} else {
		close(s->fd);
		s->id[0] = 0;
		GK_WARN("primary", "cannot write a snapshot for a client", "err=%s",
			geokv_errname(rc));
		if (prim__conn_open(j->c))
			prim__reply_error(j->c, j->id, rc > -4096 && rc < 0 ? PROTO_EINTERNAL : rc,
					  NULL, 0, 0);
	}
	prim__conn_unref(j->c);
	free(j);
}

/* A free session slot (dropping idle ones, else the one read longest ago), its file open. */
static int sess_new(prim_t *p, snap_sess_t **out)
{
	uint64_t now = uv_now(p->loop);
	snap_sess_t *s = NULL;
	char path[1200];

	for (int i = 0; i < PRIM_SNAP_SESSIONS; i++) {
		if (sess[i].id[0] && !sess[i].building && now - sess[i].used_ms >= PRIM_SNAP_IDLE_MS)
			sess_drop(&sess[i]);
		if (!sess[i].id[0] && !sess[i].building && !s)
			s = &sess[i];
	}
	for (int i = 0; !s && i < PRIM_SNAP_SESSIONS; i++)
		if (!sess[i].building && (!s || sess[i].used_ms < s->used_ms))
			s = &sess[i];
	if (!s)
		return PROTO_EBUSY; /* every slot is being written */
	sess_drop(s);
	snprintf(path, sizeof path, "%s/snap-client.XXXXXX", p->cfg->data);
	if ((s->fd = mkstemp(path)) < 0)
		return -errno;
	unlink(path);
	*out = s;
	return 0;
}

int prim__snap_req(prim_t *p, prim_conn_t *c, uint64_t id, const proto_op_t *op)
{
	snap_sess_t *s = NULL;
	int rc;

	if (op->after.len == 0) {
		snap_job_t *j = calloc(1, sizeof *j);
		if (!j)
			return PROTO_EINTERNAL;
		if ((rc = sess_new(p, &s)) != 0) {
			free(j);
			return rc > -4096 && rc < 0 ? PROTO_EINTERNAL : rc;
		}
		s->building = true;
		s->id[0] = 0;
		*j = (snap_job_t){.p = p, .c = c, .id = id, .limit = op->limit, .s = s};
		j->w.data = j;
		prim__conn_ref(c);
		if (uv_queue_work(p->loop, &j->w, job_work, job_done) != 0) {
			prim__conn_unref(c);
			s->building = false;
			close(s->fd);
			free(j);
			return PROTO_EINTERNAL;
		}
		prim__stat_request(p, op->op, 0);
		return 0;
	} else {
		for (int i = 0; i < PRIM_SNAP_SESSIONS; i++)
			if (sess[i].id[0] && op->after.len == 32 &&
			    memcmp(sess[i].id, op->after.p, 32) == 0)
				s = &sess[i];
		if (!s)
			return KV_ENOTFOUND; /* expired or never was: start again */
	}
	rc = serve_chunk(p, c, id, s, op->rev, op->limit);
	prim__stat_request(p, op->op, rc);
	return rc;
}

/* Answer with the chunk of session s at off (at most limit bytes; 0 = CHUNK_DEFAULT). */
static int serve_chunk(prim_t *p, prim_conn_t *c, uint64_t id, snap_sess_t *s, uint64_t off,
		       uint32_t limit)
{
	uint32_t want = limit ? limit : CHUNK_DEFAULT;
	int rc;

	if (off > s->size)
		return PROTO_EBADMSG;
	if (want > CHUNK_MAX)
		want = CHUNK_MAX;
	size_t n = s->size - off < want ? (size_t)(s->size - off) : want;
	size_t cap = n + 128;
	uint8_t *buf = malloc(cap), *chunk = buf + 128;
	if (!buf)
		return PROTO_EINTERNAL;
	for (size_t got = 0; got < n;) {
		ssize_t r = pread(s->fd, chunk + got, n - got, (off_t)(off + got));
		if (r <= 0) {
			free(buf);
			sess_drop(s);
			return PROTO_EINTERNAL;
		}
		got += (size_t)r;
	}
	/* the answer's head goes in front of the chunk: one buffer, one copy into the frame */
	proto_snap_resp_t resp = {
		.session = {(const uint8_t *)s->id, 32}, .size = s->size,
		.applied = s->meta.applied, .revision = s->meta.revision, .records = s->meta.records,
		.chunk = {chunk, (uint32_t)n},
	};
	uint8_t *out = malloc(cap + 64);
	proto_wbuf_t w;
	if (!out) {
		free(buf);
		return PROTO_EINTERNAL;
	}
	proto_wbuf_init(&w, out, cap + 64);
	rc = proto_snap_resp_encode(&w, &resp);
	free(buf);
	if (rc == 0)
		rc = prim__reply_body(c, id, out, proto_wbuf_len(&w));
	free(out);
	s->used_ms = uv_now(p->loop);
	if (off + n >= s->size)
		sess_drop(s); /* the last chunk: the client has it all */
	return rc;
}

void prim__stream_close(prim_t *p)
{
	(void)p;
	prim__watch_drop_all();
	for (int i = 0; i < PRIM_SNAP_SESSIONS; i++)
		sess_drop(&sess[i]);
}
