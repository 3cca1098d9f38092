/*
 * Async client (proto/client.h): connections, pipelining, retries, timeouts.
 *
 * Shape: a client has at most one current connection (kvc_conn_t) plus older ones still
 * closing. Each connection is heap-allocated and freed in its last libuv callback, so a new
 * connection never shares a buffer that a cancelled write of an old one still owns.
 *
 * A request is in exactly one place while active:
 *   client->pending   not on any connection (no connection yet, reconnecting, switching)
 *   conn->inflight    encoded into the connection's write buffers; `sent` once handed to
 *                     uv_write (only then can the server have seen it)
 * and owns one slot in client->slots, which is how a response id finds it: the id is
 * (generation << 32 | slot), so a late answer to a timed-out request, whose slot has been
 * reused, does not match.
 *
 * One repeating timer (TICK_MS) checks deadlines and connect timeouts and retries
 * connections; it runs only while something is outstanding, so an idle client keeps no
 * timer alive.
 */
#include "proto/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/x509.h>

#include "proto/log.h"
#include "proto/tls.h"

#define TICK_MS 20
#define READ_CHUNK (64u << 10)

typedef struct kvc_buf {
	uint8_t *p;
	size_t len, cap;
} kvc_buf_t;

typedef struct kvc_list {
	kvc_req_t *head, *tail;
} kvc_list_t;

typedef struct kvc_server {
	char *host;
	char port[8];
	char *name; /* "host:port" as given, for hints and messages */
} kvc_server_t;

enum conn_state { C_RESOLVING, C_CONNECTING, C_TLS, C_HELLO, C_READY, C_CLOSING };

typedef struct kvc_conn {
	kvc_client_t *c;
	enum conn_state state;
	int refs;                 /* libuv callbacks still owed to us: gai, tcp close */
	bool tcp_open;
	bool writing;
	int wcur;                 /* index of the write buffer being filled */
	size_t server;
	uint64_t started;
	uv_getaddrinfo_t gai;
	uv_tcp_t tcp;
	uv_connect_t creq;
	uv_write_t wreq;
	kvc_buf_t rbuf;
	kvc_buf_t out[2];
	kvc_list_t inflight;
	uint32_t ninflight;
	/* TLS: frames are built in out[] and read from rbuf as without TLS; these carry the
	 * ciphertext between them and the socket. */
	proto_tls_conn_t *tls;    /* NULL = plain */
	kvc_buf_t cin;            /* ciphertext received, not yet consumed */
	kvc_buf_t cout[2];        /* ciphertext to write; cout[wcur] collects */
	bool tls_seen;            /* first byte from the server checked */
} kvc_conn_t;

struct kvc_client {
	uv_loop_t *loop;
	kvc_opts_t o;
	char *cluster, *token;
	kvc_server_t *servers;
	size_t nservers, capservers;
	size_t next_server;
	kvc_conn_t *conn;         /* current connection or NULL */
	int nconns;               /* allocated connections, incl. closing ones */
	uv_timer_t timer;
	bool timer_on;
	kvc_req_t **slots;
	uint32_t *freeslots;
	uint32_t nfree;
	uint64_t gen;
	kvc_list_t pending;
	uint32_t outstanding;
	uint32_t failed_connects; /* consecutive, across servers */
	int last_conn_err;
	uint64_t reconnect_at;    /* uv_now() before which no new connection is started */
	long switch_to;           /* server to move to once inflight drains; -1 none */
	bool closing;
	bool timer_closed;
	void (*close_cb)(void *);
	void *close_arg;
	proto_tls_conf_t *tls;    /* NULL = plain TCP */
	char errmsg[256];         /* kvc_client_errmsg */
};

static void conn_fail(kvc_conn_t *k, int err);
static void maybe_connect(kvc_client_t *c);
static void flush_pending(kvc_conn_t *k);

/* ---- small helpers ------------------------------------------------------------------- */

static void list_push(kvc_list_t *l, kvc_req_t *r)
{
	r->next = NULL;
	r->prev = l->tail;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
}

static void list_unlink(kvc_list_t *l, kvc_req_t *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		l->head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		l->tail = r->prev;
	r->next = r->prev = NULL;
}

/* Move all of `from` in front of `to`, keeping order (requeued requests go first). */
static void list_prepend_all(kvc_list_t *to, kvc_list_t *from)
{
	if (!from->head)
		return;
	if (to->head) {
		from->tail->next = to->head;
		to->head->prev = from->tail;
		to->head = from->head;
	} else {
		*to = *from;
	}
	from->head = from->tail = NULL;
}

static int buf_reserve(kvc_buf_t *b, size_t extra)
{
	size_t need = b->len + extra, cap = b->cap ? b->cap : 4096;
	uint8_t *p;

	if (need <= b->cap)
		return 0;
	while (cap < need)
		cap *= 2;
	if ((p = realloc(b->p, cap)) == NULL)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

/* An upper bound of an op's encoding, to size the write buffer before encoding into it. */
static size_t op_bound(const proto_op_t *op)
{
	if (proto_op_is_batch(op->op))
		return 21 + (size_t)op->batch.len;
	return 64 + op->bucket.len + op->key.len + op->value.len + op->after.len +
	       op->cfg.content_type.len;
}

static bool op_known(unsigned op)
{
	return strcmp(proto_op_name(op), "?") != 0;
}

/* ---- server list ------------------------------------------------------------------- */

static int server_add(kvc_client_t *c, const char *s, size_t n)
{
	const char *host = s, *colon = NULL;
	size_t hlen = n;
	kvc_server_t *sv;

	if (n == 0)
		return -EINVAL;
	if (s[0] == '[') { /* [v6]:port */
		const char *rb = memchr(s, ']', n);
		if (!rb)
			return -EINVAL;
		host = s + 1;
		hlen = (size_t)(rb - s - 1);
		if ((size_t)(rb - s) + 1 < n) {
			if (rb[1] != ':')
				return -EINVAL;
			colon = rb + 1;
		}
	} else if ((colon = memchr(s, ':', n)) != NULL) {
		hlen = (size_t)(colon - s);
		if (memchr(colon + 1, ':', n - hlen - 1))
			return -EINVAL; /* bare IPv6 without brackets is ambiguous */
	}
	if (hlen == 0)
		return -EINVAL;
	if (c->nservers == c->capservers) {
		size_t cap = c->capservers ? c->capservers * 2 : 4;
		kvc_server_t *p = realloc(c->servers, cap * sizeof *p);
		if (!p)
			return -ENOMEM;
		c->servers = p;
		c->capservers = cap;
	}
	sv = &c->servers[c->nservers];
	memset(sv, 0, sizeof *sv);
	if (colon) {
		size_t plen = n - (size_t)(colon + 1 - s);
		char *end;
		char tmp[8];
		if (plen == 0 || plen >= sizeof tmp)
			return -EINVAL;
		memcpy(tmp, colon + 1, plen);
		tmp[plen] = 0;
		unsigned long port = strtoul(tmp, &end, 10);
		if (*end || port == 0 || port > 65535)
			return -EINVAL;
		memcpy(sv->port, tmp, plen + 1);
	} else {
		snprintf(sv->port, sizeof sv->port, "%d", KVC_DEFAULT_PORT);
	}
	sv->host = strndup(host, hlen);
	sv->name = strndup(s, n);
	if (!sv->host || !sv->name) {
		free(sv->host);
		free(sv->name);
		return -ENOMEM;
	}
	c->nservers++;
	return 0;
}

/* Index of the server named `name`, added to the list when new (a leader hint). */
static long server_find_or_add(kvc_client_t *c, const uint8_t *name, size_t n)
{
	for (size_t i = 0; i < c->nservers; i++)
		if (strlen(c->servers[i].name) == n && memcmp(c->servers[i].name, name, n) == 0)
			return (long)i;
	if (server_add(c, (const char *)name, n) != 0)
		return -1;
	return (long)c->nservers - 1;
}

/* ---- requests ------------------------------------------------------------------------ */

static void timer_kick(kvc_client_t *c);

/* Finish a request that is on no list any more. */
static void complete(kvc_client_t *c, kvc_req_t *r, int status, const kvc_resp_t *resp)
{
	kvc_resp_t none;

	if (!resp) {
		memset(&none, 0, sizeof none);
		/* A refusal before any request reached the server: say why, if we know. */
		if (c->errmsg[0] && (status == PROTO_ETLS || status == PROTO_EAUTH ||
				     status == PROTO_ECLUSTER || status == PROTO_EVERSION))
			none.err.message = (proto_bytes_t){(const uint8_t *)c->errmsg,
							   (uint32_t)strlen(c->errmsg)};
		resp = &none;
	}
	c->slots[r->slot] = NULL;
	c->freeslots[c->nfree++] = r->slot;
	c->outstanding--;
	r->active = false;
	none.op = r->op.op;
	r->cb(r, status, resp);
}

static void fail_list(kvc_client_t *c, kvc_list_t *l, int err)
{
	kvc_req_t *r;

	while ((r = l->head) != NULL) {
		list_unlink(l, r);
		complete(c, r, err, NULL);
	}
}

int kvc_send(kvc_client_t *c, kvc_req_t *req, const proto_op_t *op, unsigned flags, kvc_cb cb)
{
	uint32_t slot;

	if (c->closing)
		return PROTO_ECLOSED;
	if (!op_known(op->op))
		return PROTO_EBADTYPE;
	if (op_bound(op) + PROTO_HDR_LEN > (size_t)c->o.max_frame + 64)
		return PROTO_ETOOBIG;
	if (c->nfree == 0)
		return PROTO_EBUSY;
	slot = c->freeslots[--c->nfree];
	c->slots[slot] = req;
	c->gen++;
	req->id = (c->gen << 32) | slot;
	req->slot = slot;
	req->op = *op;
	req->cb = cb;
	req->client = c;
	req->flags = flags;
	req->redirects = 0;
	req->sent = false;
	req->active = true;
	uv_update_time(c->loop);
	req->deadline = uv_now(c->loop) + c->o.request_timeout_ms;
	list_push(&c->pending, req);
	c->outstanding++;
	timer_kick(c);
	if (c->conn && c->conn->state == C_READY)
		flush_pending(c->conn);
	else
		maybe_connect(c);
	return 0;
}

const char *kvc_client_errmsg(const kvc_client_t *c)
{
	return c->errmsg;
}

uint32_t kvc_client_inflight(const kvc_client_t *c)
{
	return c->outstanding;
}

const char *kvc_client_server(const kvc_client_t *c)
{
	if (!c->conn || c->conn->state != C_READY)
		return NULL;
	return c->servers[c->conn->server].name;
}

/* ---- connection: writing ------------------------------------------------------------- */

static void write_cb(uv_write_t *w, int status);

/* Hand the filled buffer to libuv if no write is in progress (at most one at a time: the
 * other buffer collects what callers send meanwhile, so a burst becomes one write). */
static void conn_write(kvc_conn_t *k)
{
	kvc_buf_t *b = &k->out[k->wcur];
	kvc_req_t *r;
	uv_buf_t ub;
	int rc;

	if (k->writing || k->state == C_CLOSING)
		return;
	if (k->tls != NULL) {
		/* Frames wait in out[] until the handshake is over (only HELLO can be there). */
		if (b->len > 0 && k->tls->established) {
			if (proto_tls_write(k->tls, b->p, b->len) != 0) {
				conn_fail(k, PROTO_ETLS);
				return;
			}
			b->len = 0;
			for (r = k->inflight.tail; r && !r->sent; r = r->prev)
				r->sent = true;
		}
		b = &k->cout[k->wcur];
	} else {
		if (b->len == 0)
			return;
		for (r = k->inflight.tail; r && !r->sent; r = r->prev)
			r->sent = true;
	}
	if (b->len == 0)
		return;
	ub = uv_buf_init((char *)b->p, (unsigned)b->len);
	k->wcur ^= 1;
	if (k->tls != NULL)
		k->cout[k->wcur].len = 0;
	else
		k->out[k->wcur].len = 0;
	rc = uv_write(&k->wreq, (uv_stream_t *)&k->tcp, &ub, 1, write_cb);
	if (rc) {
		conn_fail(k, rc);
		return;
	}
	k->writing = true;
}

static void write_cb(uv_write_t *w, int status)
{
	kvc_conn_t *k = w->data;

	k->writing = false;
	if (k->tls != NULL)
		k->cout[k->wcur ^ 1].len = 0;
	else
		k->out[k->wcur ^ 1].len = 0;
	if (status < 0) {
		conn_fail(k, status);
		return;
	}
	conn_write(k);
}

/* Append one frame to the buffer being filled. */
static int conn_frame(kvc_conn_t *k, uint16_t type, uint64_t id, const proto_op_t *op,
		      const proto_hello_t *hello)
{
	kvc_buf_t *b = &k->out[k->wcur];
	size_t bound = op ? op_bound(op) : 16 + 3 + 256 + 2 + PROTO_MAX_TOKEN;
	proto_wbuf_t w;
	size_t at;
	int rc;

	if ((rc = buf_reserve(b, PROTO_HDR_LEN + bound)) != 0)
		return rc;
	proto_wbuf_init(&w, b->p + b->len, b->cap - b->len);
	at = proto_frame_begin(&w);
	if (op)
		proto_op_encode(&w, op);
	else if (hello)
		proto_hello_encode(&w, hello);
	if ((rc = proto_frame_finish(&w, at, type, id)) != 0)
		return rc;
	if (op && k->c->o.stale && !proto_op_is_write(op->op) && op->op != PROTO_OP_STATUS &&
	    op->op != PROTO_OP_HASH && op->op != PROTO_OP_WATCH && op->op != PROTO_OP_SNAPSHOT)
		w.start[at + 6] |= PROTO_F_STALE;
	b->len += proto_wbuf_len(&w);
	return 0;
}

static void flush_pending(kvc_conn_t *k)
{
	kvc_client_t *c = k->c;
	kvc_req_t *r;
	int rc;

	if (k->state != C_READY || c->switch_to >= 0)
		return;
	while ((r = c->pending.head) != NULL) {
		list_unlink(&c->pending, r);
		if ((rc = conn_frame(k, PROTO_T_REQ, r->id, &r->op, NULL)) != 0) {
			complete(c, r, rc, NULL);
			if (c->conn != k || k->state != C_READY)
				return;
			continue;
		}
		r->sent = false;
		list_push(&k->inflight, r);
		k->ninflight++;
	}
	conn_write(k);
}

/* ---- connection: lifecycle ----------------------------------------------------------- */

/* Free what the client owns (not the struct): shared by close and by kvc_client_new's failure
 * path, so a field added later is released on both. NULL and zero counts are fine. */
static void client_release(kvc_client_t *c)
{
	for (size_t i = 0; i < c->nservers; i++) {
		free(c->servers[i].host);
		free(c->servers[i].name);
	}
	free(c->servers);
	free(c->slots);
	free(c->freeslots);
	free(c->cluster);
	free(c->token);
	if (c->tls != NULL) {
		proto_tls_conf_free(c->tls);
		free(c->tls);
	}
}

/* The client goes last: after its timer and every connection (incl. closing ones). */
static void client_free_maybe(kvc_client_t *c)
{
	void (*cb)(void *) = c->close_cb;
	void *arg = c->close_arg;

	if (!c->closing || c->nconns > 0 || !c->timer_closed)
		return;
	client_release(c);
	free(c);
	if (cb)
		cb(arg);
}

static void conn_free_maybe(kvc_conn_t *k)
{
	kvc_client_t *c = k->c;

	if (k->refs > 0)
		return;
	free(k->rbuf.p);
	free(k->out[0].p);
	free(k->out[1].p);
	if (k->tls != NULL) {
		proto_tls_conn_free(k->tls);
		free(k->tls);
	}
	free(k->cin.p);
	free(k->cout[0].p);
	free(k->cout[1].p);
	free(k);
	c->nconns--;
	client_free_maybe(c);
}

static void tcp_close_cb(uv_handle_t *h)
{
	kvc_conn_t *k = h->data;

	k->refs--;
	conn_free_maybe(k);
}

/*
 * Close k. Requests on it go back to pending when resending is safe (never sent, a read,
 * or idempotent), else fail with PROTO_ECLOSED. `connect_err`: k failed before it was
 * ready (counts towards the connect rounds); 0 for a connection that was up.
 */
static void conn_close(kvc_conn_t *k, int err, bool connect_failed)
{
	kvc_client_t *c = k->c;
	kvc_list_t requeue = {NULL, NULL}, failed = {NULL, NULL};
	kvc_req_t *r;
	bool was_ready = k->state == C_READY;

	if (k->state == C_CLOSING)
		return;
	if (k->state == C_RESOLVING)
		uv_cancel((uv_req_t *)&k->gai);
	k->state = C_CLOSING;
	if (c->conn == k)
		c->conn = NULL;
	if (k->tcp_open)
		uv_close((uv_handle_t *)&k->tcp, tcp_close_cb);
	while ((r = k->inflight.head) != NULL) {
		list_unlink(&k->inflight, r);
		if (!r->sent || !proto_op_is_write(r->op.op) || (r->flags & KVC_F_IDEMPOTENT))
			list_push(&requeue, r);
		else
			list_push(&failed, r);
	}
	k->ninflight = 0;
	list_prepend_all(&c->pending, &requeue);

	if (!c->closing) {
		uv_update_time(c->loop);
		uint64_t now = uv_now(c->loop);
		c->next_server = (k->server + 1) % c->nservers;
		if (connect_failed) {
			c->failed_connects++;
			c->last_conn_err = err;
			/* After each full pass over the list, back off: every server refused, so
			 * hammering them again at once only adds load during an outage. */
			if (c->failed_connects % c->nservers == 0)
				c->reconnect_at = now + 100u * (c->failed_connects / c->nservers);
		} else if (was_ready) {
			c->failed_connects = 0;
		}
	}
	GK_DEBUG("client", "connection closed", "server=%s err=%s",
		 c->servers[k->server].name, geokv_errname(err));

	/* Callbacks last: they may send (and so connect) again. */
	fail_list(c, &failed, PROTO_ECLOSED);
	if (!c->closing && connect_failed &&
	    c->failed_connects >= (uint32_t)c->nservers * c->o.connect_rounds) {
		c->failed_connects = 0;
		c->reconnect_at = 0;
		fail_list(c, &c->pending, err);
	}
	if (!c->closing)
		maybe_connect(c);
	conn_free_maybe(k);
}

static void conn_fail(kvc_conn_t *k, int err)
{
	conn_close(k, err, k->state != C_READY);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	kvc_conn_t *k = h->data;
	size_t want = READ_CHUNK;

	(void)suggested;
	if (k->tls != NULL) {
		if (k->cin.cap - k->cin.len < READ_CHUNK / 4 && buf_reserve(&k->cin, READ_CHUNK) != 0) {
			*buf = uv_buf_init(NULL, 0);
			return;
		}
		*buf = uv_buf_init((char *)k->cin.p + k->cin.len, (unsigned)(k->cin.cap - k->cin.len));
		return;
	}
	/* A frame whose header says it is bigger than what is free gets room for all of it,
	 * up to max_frame (checked by the header decoder before this can matter). */
	if (k->rbuf.len >= PROTO_HDR_LEN) {
		proto_hdr_t h2;
		if (proto_hdr_decode(k->rbuf.p, k->rbuf.len, k->c->o.max_frame, &h2) == PROTO_EAGAIN &&
		    PROTO_HDR_LEN + (size_t)h2.len > k->rbuf.len + want)
			want = PROTO_HDR_LEN + (size_t)h2.len - k->rbuf.len;
	}
	if (k->rbuf.cap - k->rbuf.len < want && buf_reserve(&k->rbuf, want) != 0) {
		*buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS to read_cb */
		return;
	}
	*buf = uv_buf_init((char *)k->rbuf.p + k->rbuf.len, (unsigned)(k->rbuf.cap - k->rbuf.len));
}

static void handle_error(kvc_conn_t *k, kvc_req_t *r, const uint8_t *p, uint32_t len)
{
	kvc_client_t *c = k->c;
	kvc_resp_t resp;
	int rc;

	memset(&resp, 0, sizeof resp);
	resp.op = r->op.op;
	if ((rc = proto_error_decode(p, len, &resp.err)) != 0) {
		complete(c, r, rc, NULL);
		return;
	}
	if (resp.err.code == PROTO_ENOTLEADER && r->redirects < c->o.max_redirects) {
		/* Not applied, so resending is safe. Move only once the connection has no
		 * requests left in flight: their answers are still coming on it. */
		long to = -1;
		r->redirects++;
		if (resp.err.leader.len)
			to = server_find_or_add(c, resp.err.leader.p, resp.err.leader.len);
		if (to < 0 || (size_t)to == k->server) {
			to = (long)((k->server + 1) % c->nservers);
			/* no leader known: give an election a moment */
			c->reconnect_at = uv_now(c->loop) + 50;
		}
		c->switch_to = to;
		list_push(&c->pending, r);
		return;
	}
	complete(c, r, resp.err.code, &resp);
}

/* Move to the server a NOTLEADER pointed at, once nothing is in flight here. */
static void maybe_switch(kvc_conn_t *k)
{
	kvc_client_t *c = k->c;

	if (c->switch_to < 0 || k->ninflight > 0 || k->state == C_CLOSING)
		return;
	size_t to = (size_t)c->switch_to;
	c->switch_to = -1;
	conn_close(k, PROTO_ENOTLEADER, false);
	c->next_server = to; /* conn_close moved it on by one */
	maybe_connect(c);
}

/* One frame. Returns false when k was closed meanwhile (stop parsing). */
static bool handle_frame(kvc_conn_t *k, const proto_hdr_t *h, const uint8_t *p)
{
	kvc_client_t *c = k->c;
	kvc_req_t *r;
	uint32_t slot;

	if (k->state == C_HELLO) {
		if (h->type == PROTO_T_HELLO_OK) {
			proto_hello_ok_t ok;
			if (proto_hello_ok_decode(p, h->len, &ok) != 0) {
				conn_fail(k, PROTO_EBADMSG);
				return false;
			}
			k->state = C_READY;
			c->errmsg[0] = '\0';
			c->failed_connects = 0;
			c->reconnect_at = 0;
			GK_DEBUG("client", "connected", "server=%s node=%llu",
				 c->servers[k->server].name, (unsigned long long)ok.node_id);
			flush_pending(k);
			return k->state == C_READY;
		}
		if (h->type == PROTO_T_ERROR) {
			proto_error_t e;
			int code = proto_error_decode(p, h->len, &e) == 0 ? e.code : PROTO_EBADMSG;
			if (code == PROTO_EVERSION || code == PROTO_EAUTH || code == PROTO_ECLUSTER ||
			    code == PROTO_ETLS) {
				/* Every server of a cluster would say the same: stop here. */
				if (code == PROTO_ETLS || e.message.len > 0)
					snprintf(c->errmsg, sizeof c->errmsg, "%.*s",
						 (int)e.message.len, (const char *)e.message.p);
				c->failed_connects = 0;
				fail_list(c, &c->pending, code);
				if (c->conn == k)
					conn_close(k, code, false);
				return false;
			}
			conn_fail(k, code);
			return false;
		}
		conn_fail(k, PROTO_EBADMSG);
		return false;
	}

	switch (h->type) {
	case PROTO_T_RESP:
	case PROTO_T_ERROR:
		if (h->id == 0 && h->type == PROTO_T_ERROR) {
			/* a session error (e.g. shutting down): the connection is done */
			proto_error_t e;
			conn_close(k, proto_error_decode(p, h->len, &e) == 0 ? e.code : PROTO_EBADMSG,
				   false);
			return false;
		}
		slot = (uint32_t)h->id;
		if (slot >= c->o.max_inflight || (r = c->slots[slot]) == NULL || r->id != h->id ||
		    !r->sent)
			return true; /* late answer to a request that timed out */
		list_unlink(&k->inflight, r);
		k->ninflight--;
		if (h->type == PROTO_T_ERROR) {
			handle_error(k, r, p, h->len);
		} else {
			kvc_resp_t resp;
			memset(&resp, 0, sizeof resp);
			resp.op = r->op.op;
			resp.body = p;
			resp.len = h->len;
			complete(c, r, 0, &resp);
		}
		if (k->state == C_CLOSING)
			return false;
		maybe_switch(k);
		return k->state != C_CLOSING;
	case PROTO_T_PING:
		if (conn_frame(k, PROTO_T_PONG, h->id, NULL, NULL) == 0)
			conn_write(k);
		return true;
	default:
		return true; /* PONG, and types from later versions */
	}
}

/* Handle every whole frame in rbuf; keep the partial one. */
static void process_frames(kvc_conn_t *k)
{
	size_t off = 0;
	proto_hdr_t h;
	int rc;

	while (k->state != C_CLOSING) {
		rc = proto_hdr_decode(k->rbuf.p + off, k->rbuf.len - off, k->c->o.max_frame, &h);
		if (rc == PROTO_EAGAIN)
			break;
		if (rc < 0) {
			conn_fail(k, rc == PROTO_ETOOBIG ? PROTO_ETOOBIG : PROTO_EBADMSG);
			return;
		}
		off += PROTO_HDR_LEN + h.len;
		if (!handle_frame(k, &h, k->rbuf.p + off - h.len))
			return;
	}
	if (k->state == C_CLOSING)
		return;
	/* Keep only the partial frame; usually nothing is left and this is free. */
	if (off) {
		memmove(k->rbuf.p, k->rbuf.p + off, k->rbuf.len - off);
		k->rbuf.len -= off;
	}
}

static int send_hello(kvc_conn_t *k);

/* A TLS failure is final for the queued requests, as a refused HELLO is: every server of the
 * list is checked against the same CA. */
static void tls_failed(kvc_conn_t *k, const char *why)
{
	kvc_client_t *c = k->c;

	snprintf(c->errmsg, sizeof c->errmsg, "TLS with %s failed: %s", c->servers[k->server].name,
		 why);
	GK_DEBUG("client", "TLS failed", "server=%s why=\"%s\"", c->servers[k->server].name, why);
	c->failed_connects = 0;
	fail_list(c, &c->pending, PROTO_ETLS);
	if (c->conn == k)
		conn_close(k, PROTO_ETLS, false);
}

/* mbedTLS 2.28 matches the host only against DNS names; an IP address in the server list
 * is checked here against the certificate's IP SANs instead. */
static bool peer_has_ip(const proto_tls_conn_t *t, const char *host)
{
	const mbedtls_x509_crt *crt = mbedtls_ssl_get_peer_cert(&t->ssl);
	unsigned char ip[16];
	size_t n;

	if (inet_pton(AF_INET, host, ip) == 1)
		n = 4;
	else if (inet_pton(AF_INET6, host, ip) == 1)
		n = 16;
	else
		return false;
	for (const mbedtls_x509_sequence *s = crt ? &crt->subject_alt_names : NULL; s; s = s->next)
		if (s->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_IP_ADDRESS) &&
		    s->buf.len == n && memcmp(s->buf.p, ip, n) == 0)
			return true;
	return false;
}

static bool host_is_ip(const char *host)
{
	unsigned char ip[16];

	return inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
}

static void tls_input(kvc_conn_t *k)
{
	proto_tls_conn_t *t = k->tls;
	kvc_server_t *sv = &k->c->servers[k->server];
	size_t used;
	int rc;

	if (!k->tls_seen) {
		if (k->cin.len < 2)
			return;
		k->tls_seen = true;
		/* A handshake record (0x16) or an alert (0x15), version 3.x; else not TLS (a
		 * plain geokv server answers our ClientHello with an ERROR frame). */
		if ((k->cin.p[0] != 0x16 && k->cin.p[0] != 0x15) || k->cin.p[1] != 0x03) {
			tls_failed(k, "the server does not speak TLS (a plain listener?)");
			return;
		}
	}
	proto_tls_feed(t, k->cin.p, k->cin.len);
	if (!t->established) {
		rc = proto_tls_handshake(t);
		conn_write(k); /* the handshake's records */
		if (k->state == C_CLOSING)
			return;
		if (rc != 0 && rc != PROTO_EAGAIN) {
			char why[200];
			uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
			if (t->tls_err == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED && flags != 0 &&
			    flags != (uint32_t)-1) {
				int n = mbedtls_x509_crt_verify_info(why, sizeof why, "", flags);
				while (n > 0 && (why[n - 1] == '\n' || why[n - 1] == ' '))
					why[--n] = '\0';
				for (char *p = why; *p; p++)
					if (*p == '\n')
						*p = ';';
			} else {
				snprintf(why, sizeof why, "%s", proto_tls_strerror(t->tls_err));
			}
			tls_failed(k, why);
			return;
		}
		if (t->established) {
			if (host_is_ip(sv->host) && !peer_has_ip(t, sv->host)) {
				tls_failed(k, "the server's certificate does not name this IP address");
				return;
			}
			if (send_hello(k) != 0)
				return;
		}
	}
	while (t->established && k->state != C_CLOSING) {
		long n;
		if (buf_reserve(&k->rbuf, 16384 + 64) != 0) {
			conn_fail(k, -ENOMEM);
			return;
		}
		n = proto_tls_read(t, k->rbuf.p + k->rbuf.len, k->rbuf.cap - k->rbuf.len);
		if (n > 0) {
			k->rbuf.len += (size_t)n;
			continue;
		}
		if (n == PROTO_EAGAIN)
			break;
		conn_fail(k, n == PROTO_ECLOSED ? PROTO_ECLOSED : PROTO_ETLS);
		return;
	}
	if (k->state == C_CLOSING)
		return;
	used = k->cin.len - proto_tls_unconsumed(t);
	if (used > 0) {
		memmove(k->cin.p, k->cin.p + used, k->cin.len - used);
		k->cin.len -= used;
	}
	process_frames(k);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	kvc_conn_t *k = s->data;

	(void)buf;
	if (nread < 0) {
		if (k->tls != NULL && k->state == C_TLS && nread == UV_EOF) {
			/* e.g. a server that wants a client certificate and closed on us */
			tls_failed(k, "the server closed the connection during the handshake (does "
				      "it want a client certificate?)");
			return;
		}
		/* Any other error mid-handshake (a reset: the member was killed) is the
		 * transport's, not TLS's: fail over to the next server like a refused connect. */
		conn_fail(k, nread == UV_EOF ? PROTO_ECLOSED : (int)nread);
		return;
	}
	if (k->tls != NULL) {
		k->cin.len += (size_t)nread;
		tls_input(k);
		return;
	}
	k->rbuf.len += (size_t)nread;
	process_frames(k);
}

static int tls_send_cb(void *ctx, const uint8_t *p, size_t len)
{
	kvc_conn_t *k = ctx;
	kvc_buf_t *b = &k->cout[k->wcur];

	if (buf_reserve(b, len) != 0)
		return -ENOMEM;
	memcpy(b->p + b->len, p, len);
	b->len += len;
	return 0;
}

static int send_hello(kvc_conn_t *k)
{
	kvc_client_t *c = k->c;
	proto_hello_t hello;
	int rc;

	memset(&hello, 0, sizeof hello);
	hello.version = PROTO_VERSION;
	hello.role = PROTO_ROLE_CLIENT;
	if (c->cluster)
		hello.cluster = (proto_bytes_t){(const uint8_t *)c->cluster, (uint32_t)strlen(c->cluster)};
	if (c->token)
		hello.token = (proto_bytes_t){(const uint8_t *)c->token, (uint32_t)strlen(c->token)};
	k->state = C_HELLO;
	if ((rc = conn_frame(k, PROTO_T_HELLO, 0, NULL, &hello)) != 0) {
		conn_fail(k, rc);
		return rc;
	}
	conn_write(k);
	return k->state == C_CLOSING ? PROTO_ECLOSED : 0;
}

static void connect_cb(uv_connect_t *cr, int status)
{
	kvc_conn_t *k = cr->data;
	kvc_client_t *c = k->c;
	int rc;

	if (k->state == C_CLOSING)
		return;
	if (status < 0) {
		conn_fail(k, status);
		return;
	}
	if ((rc = uv_read_start((uv_stream_t *)&k->tcp, alloc_cb, read_cb)) != 0) {
		conn_fail(k, rc);
		return;
	}
	if (c->tls == NULL) {
		send_hello(k);
		return;
	}
	k->state = C_TLS;
	if ((k->tls = calloc(1, sizeof *k->tls)) == NULL ||
	    proto_tls_conn_init(k->tls, c->tls, tls_send_cb, k) != 0) {
		conn_fail(k, -ENOMEM);
		return;
	}
	/* SNI and the name check; an IP address is checked after the handshake instead. */
	if (mbedtls_ssl_set_hostname(&k->tls->ssl, host_is_ip(c->servers[k->server].host)
							 ? NULL : c->servers[k->server].host) != 0) {
		conn_fail(k, -ENOMEM);
		return;
	}
	rc = proto_tls_handshake(k->tls); /* writes the ClientHello */
	conn_write(k);
	if (k->state != C_CLOSING && rc != PROTO_EAGAIN && rc != 0)
		tls_failed(k, proto_tls_strerror(k->tls->tls_err));
}

static void gai_cb(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
	kvc_conn_t *k = g->data;
	int rc;

	k->refs--;
	if (k->state == C_CLOSING) {
		uv_freeaddrinfo(res);
		conn_free_maybe(k);
		return;
	}
	k->state = C_CONNECTING; /* the resolver request is done: nothing to cancel */
	if (status < 0) {
		conn_fail(k, status);
		return;
	}
	if ((rc = uv_tcp_init(k->c->loop, &k->tcp)) != 0) {
		uv_freeaddrinfo(res);
		conn_fail(k, rc);
		return;
	}
	k->tcp.data = k;
	k->tcp_open = true;
	k->refs++;
	uv_tcp_nodelay(&k->tcp, 1); /* small requests must not wait for Nagle */
	rc = uv_tcp_connect(&k->creq, &k->tcp, res->ai_addr, connect_cb);
	uv_freeaddrinfo(res);
	if (rc)
		conn_fail(k, rc);
}

static void maybe_connect(kvc_client_t *c)
{
	kvc_conn_t *k;
	struct addrinfo hints;
	int rc;

	if (c->closing || c->conn || !c->pending.head)
		return;
	if (uv_now(c->loop) < c->reconnect_at) {
		timer_kick(c);
		return; /* the tick will come back */
	}
	if ((k = calloc(1, sizeof *k)) == NULL) {
		fail_list(c, &c->pending, -ENOMEM);
		return;
	}
	k->c = c;
	k->server = c->next_server % c->nservers;
	k->state = C_RESOLVING;
	k->started = uv_now(c->loop);
	k->gai.data = k;
	k->creq.data = k;
	k->wreq.data = k;
	c->conn = k;
	c->nconns++;
	k->refs = 1;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = uv_getaddrinfo(c->loop, &k->gai, gai_cb, c->servers[k->server].host,
			    c->servers[k->server].port, &hints);
	if (rc) {
		k->refs = 0;
		k->state = C_CONNECTING; /* no resolver request to cancel */
		conn_close(k, rc, true);
	}
	timer_kick(c);
}

/* ---- timer ------------------------------------------------------------------------- */

static void expire_list(kvc_client_t *c, kvc_list_t *l, kvc_conn_t *k, uint64_t now)
{
	kvc_req_t *r, *next;

	for (r = l->head; r; r = next) {
		next = r->next;
		if (now < r->deadline)
			continue;
		list_unlink(l, r);
		if (k)
			k->ninflight--;
		/* A request that never reached a server failed for the connection's reason. */
		int err = (!k && !c->conn && c->last_conn_err) ? c->last_conn_err : PROTO_ETIMEDOUT;
		complete(c, r, err, NULL);
		/* The callback may have sent more (next stays valid: sends append at the tail
		 * of pending), or closed the client or, through a failed write, k itself: then
		 * the lists were moved and `next` may be on another one. The next tick resumes. */
		if (c->closing || (k && (c->conn != k || k->state == C_CLOSING)))
			return;
	}
}

static void tick_cb(uv_timer_t *t)
{
	kvc_client_t *c = t->data;
	kvc_conn_t *k = c->conn;
	uint64_t now = uv_now(c->loop);

	if (k && k->state < C_READY && now - k->started >= c->o.connect_timeout_ms)
		conn_fail(k, UV_ETIMEDOUT);
	k = c->conn;
	if (k && k->state != C_CLOSING)
		expire_list(c, &k->inflight, k, now);
	if (!c->closing)
		expire_list(c, &c->pending, NULL, now);
	if (c->closing)
		return;
	if (c->conn && c->conn->state != C_CLOSING)
		maybe_switch(c->conn);
	maybe_connect(c);
	if (c->outstanding == 0 && (!c->conn || c->conn->state == C_READY)) {
		uv_timer_stop(&c->timer);
		c->timer_on = false;
	}
}

static void timer_kick(kvc_client_t *c)
{
	if (c->timer_on || c->closing)
		return;
	uv_timer_start(&c->timer, tick_cb, TICK_MS, TICK_MS);
	c->timer_on = true;
}

/* ---- create / close ------------------------------------------------------------------ */

int kvc_client_new(uv_loop_t *loop, const char *servers, const kvc_opts_t *opts,
		   kvc_client_t **out)
{
	kvc_client_t *c;
	const char *s, *e;
	int rc = -ENOMEM;

	if (!servers || !*servers)
		return -EINVAL;
	if ((c = calloc(1, sizeof *c)) == NULL)
		return -ENOMEM;
	c->loop = loop;
	if (opts)
		c->o = *opts;
	if (!c->o.connect_timeout_ms)
		c->o.connect_timeout_ms = 2000;
	if (!c->o.request_timeout_ms)
		c->o.request_timeout_ms = 10000;
	if (!c->o.max_inflight)
		c->o.max_inflight = 1024;
	if (!c->o.max_frame)
		c->o.max_frame = PROTO_DEFAULT_MAX_FRAME;
	if (!c->o.max_redirects)
		c->o.max_redirects = 5;
	if (!c->o.connect_rounds)
		c->o.connect_rounds = 2;
	c->o.cluster = c->o.token = NULL;
	c->switch_to = -1;
	if (opts && opts->cluster && *opts->cluster && !(c->cluster = strdup(opts->cluster)))
		goto fail;
	if (opts && opts->token && !(c->token = strdup(opts->token)))
		goto fail;
	c->slots = calloc(c->o.max_inflight, sizeof *c->slots);
	c->freeslots = malloc(c->o.max_inflight * sizeof *c->freeslots);
	if (!c->slots || !c->freeslots)
		goto fail;
	/* pop order 0, 1, 2...: easier to read in a packet capture */
	for (uint32_t i = 0; i < c->o.max_inflight; i++)
		c->freeslots[i] = c->o.max_inflight - 1 - i;
	c->nfree = c->o.max_inflight;
	for (s = servers; *s; s = *e ? e + 1 : e) {
		e = strchr(s, ',');
		if (!e)
			e = s + strlen(s);
		if ((rc = server_add(c, s, (size_t)(e - s))) != 0)
			goto fail;
	}
	if (c->nservers == 0) {
		rc = -EINVAL;
		goto fail;
	}
	if (opts && (opts->tls_ca || opts->tls_cert || opts->tls_key)) {
		proto_tls_opts_t to = {.server = false, .verify_peer = true};
		proto_tls_pem_t pem;
		char err[200];
		if (!opts->tls_ca || !opts->tls_cert != !opts->tls_key ||
		    proto_tls_pem_load(&pem, opts->tls_cert, opts->tls_key, opts->tls_ca, err,
				       sizeof err) != 0) {
			rc = PROTO_ETLS;
			goto fail;
		}
		if ((c->tls = calloc(1, sizeof *c->tls)) == NULL) {
			proto_tls_pem_free(&pem);
			rc = -ENOMEM;
			goto fail;
		}
		rc = proto_tls_conf_init(c->tls, &to, &pem, NULL, err, sizeof err);
		proto_tls_pem_free(&pem);
		if (rc != 0) {
			free(c->tls);
			c->tls = NULL;
			rc = rc == -ENOMEM ? rc : PROTO_ETLS;
			goto fail;
		}
	}
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	*out = c;
	return 0;
fail:
	client_release(c);
	free(c);
	return rc;
}

static void timer_close_cb(uv_handle_t *h)
{
	kvc_client_t *c = h->data;

	c->timer_closed = true;
	client_free_maybe(c);
}

void kvc_client_close(kvc_client_t *c, void (*close_cb)(void *), void *arg)
{
	kvc_conn_t *k = c->conn;

	c->closing = true;
	c->close_cb = close_cb;
	c->close_arg = arg;
	if (k) {
		kvc_list_t l = k->inflight;
		k->inflight.head = k->inflight.tail = NULL;
		k->ninflight = 0;
		conn_close(k, PROTO_ECLOSED, false);
		fail_list(c, &l, PROTO_ECLOSED);
	}
	fail_list(c, &c->pending, PROTO_ECLOSED);
	uv_timer_stop(&c->timer);
	uv_close((uv_handle_t *)&c->timer, timer_close_cb);
}
