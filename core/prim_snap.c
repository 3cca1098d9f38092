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
 * runs on the loop, like HASH's full scan: the member answers nothing else meanwhile
 * (about a second per million keys of 100 bytes).
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
	int fd;
	uint64_t size;
	kv_snap_meta_t meta;
	uint64_t used_ms;
} snap_sess_t;

static snap_sess_t sess[PRIM_SNAP_SESSIONS];

static void sess_drop(snap_sess_t *s)
{
	if (s->id[0]) {
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

static int sess_new(prim_t *p, snap_sess_t **out)
{
	uint64_t now = uv_now(p->loop);
	snap_sess_t *s = NULL;
	char path[1200];
	uint8_t rnd[16];
	int rc;

	for (int i = 0; i < PRIM_SNAP_SESSIONS; i++) {
		if (sess[i].id[0] && now - sess[i].used_ms >= PRIM_SNAP_IDLE_MS)
			sess_drop(&sess[i]);
		if (!sess[i].id[0] && !s)
			s = &sess[i];
	}
	if (!s) { /* all busy: the one read longest ago goes */
		s = &sess[0];
		for (int i = 1; i < PRIM_SNAP_SESSIONS; i++)
			if (sess[i].used_ms < s->used_ms)
				s = &sess[i];
		sess_drop(s);
	}
	snprintf(path, sizeof path, "%s/snap-client.XXXXXX", p->cfg->data);
	if ((s->fd = mkstemp(path)) < 0)
		return -errno;
	unlink(path);
	if ((rc = kv_snapshot_write(p->store, write_all, &s->fd, &s->meta)) != 0) {
		close(s->fd);
		return rc;
	}
	off_t end = lseek(s->fd, 0, SEEK_END);
	if (end < 0 || getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
		close(s->fd);
		return -EIO;
	}
	for (int i = 0; i < 16; i++)
		snprintf(s->id + 2 * i, 3, "%02x", rnd[i]);
	s->size = (uint64_t)end;
	s->used_ms = now;
	GK_INFO("primary", "snapshot for a client written", "bytes=%" PRIu64 " applied=%" PRIu64
		" records=%" PRIu64, s->size, s->meta.applied, s->meta.records);
	*out = s;
	return 0;
}

int prim__snap_req(prim_t *p, prim_conn_t *c, uint64_t id, const proto_op_t *op)
{
	snap_sess_t *s = NULL;
	uint32_t want = op->limit ? op->limit : CHUNK_DEFAULT;
	int rc;

	if (op->after.len == 0) {
		if ((rc = sess_new(p, &s)) != 0)
			return rc > -4096 && rc < 0 ? PROTO_EINTERNAL : rc;
	} else {
		for (int i = 0; i < PRIM_SNAP_SESSIONS; i++)
			if (sess[i].id[0] && op->after.len == 32 &&
			    memcmp(sess[i].id, op->after.p, 32) == 0)
				s = &sess[i];
		if (!s)
			return KV_ENOTFOUND; /* expired or never was: start again */
	}
	if (op->rev > s->size)
		return PROTO_EBADMSG;
	if (want > CHUNK_MAX)
		want = CHUNK_MAX;
	size_t n = s->size - op->rev < want ? (size_t)(s->size - op->rev) : want;
	size_t cap = n + 128;
	uint8_t *buf = malloc(cap), *chunk = buf + 128;
	if (!buf)
		return PROTO_EINTERNAL;
	for (size_t got = 0; got < n;) {
		ssize_t r = pread(s->fd, chunk + got, n - got, (off_t)(op->rev + got));
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
	if (op->rev + n >= s->size)
		sess_drop(s); /* the last chunk: the client has it all */
	prim__stat_request(p, op->op, rc);
	return rc;
}

void prim__stream_close(prim_t *p)
{
	(void)p;
	prim__watch_drop_all();
	for (int i = 0; i < PRIM_SNAP_SESSIONS; i++)
		sess_drop(&sess[i]);
}
