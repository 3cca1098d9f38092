/*
 * geokv-primary peer transport: the connections that carry raft messages between the
 * members of the group.
 *
 * Shape: every member listens on its peer address ([cluster] peer_listen) and dials every
 * other member. A connection carries messages one way, from the dialer: so each pair of
 * members holds two connections, and "can I send to N" and "have I heard from N" are two
 * separate, simple facts. Raft tolerates loss, so the transport never retries a message: a
 * message for a member that is down, or whose output queue is over PEER_OUT_MAX, is dropped
 * and counted, and raft resends what matters (appends after a probe, heartbeats).
 *
 * Handshake: the dialer sends PEER_HELLO (protocol version, cluster id, its node id, the id it
 * expects to reach, its client address for leader hints, the cluster token when one is
 * configured); the acceptor checks all of it, answers with its own PEER_HELLO, or with an
 * ERROR and a close: a member of another cluster, an unknown node id, a wrong token, or a
 * misconfigured address (the acceptor is not the node the dialer wanted) never exchanges a
 * raft message.
 *
 * Ordering with the driver (core/primary.c): a raft message may be stepped only outside a
 * ready cycle. While one is open (the log job persists entries), inbound connections stop
 * reading and keep the frames they have; prim__peers_resume() steps them after
 * raft_advance. Frames are stepped straight out of the read buffer: no copy.
 *
 * Reconnects: exponential back-off from 50 ms to 2 s, with +-25% jitter so that members that
 * lost each other at the same moment do not reconnect in lock step.
 */
#include "core/primary_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/raftwire.h"

#define PEER_READ_CHUNK   (256u << 10)
#define PEER_OUT_MAX      (64u << 20)  /* queued bytes per peer before messages are dropped */
#define PEER_OUT_KEEP     (4u << 20)
#define PEER_BACKOFF_MIN  50
#define PEER_BACKOFF_MAX  2000
#define PEER_HELLO_MS     2000         /* a handshake must complete within this */

struct prim_pconn {
	uv_tcp_t tcp;
	prim_t *p;
	prim_peer_t *peer;         /* outbound: always; inbound: once its hello is checked */
	prim_pconn_t *next;        /* inbound list */
	bool outbound;
	bool up;                   /* handshake done */
	bool closing;
	bool reading;
	bool held;                 /* inbound: frames wait for the ready cycle to end */
	bool refused;              /* an ERROR is being written; close after it */
	bool writing;
	int fill;
	prim_buf_t in, out[2];
	uv_write_t wreq;
	uv_connect_t creq;
	uint64_t opened_ms;
	char name[96];
};

/* ---- small helpers -------------------------------------------------------------------- */

static prim_peer_t *peer_by_id(prim_t *p, raft_id_t id)
{
	for (uint32_t i = 0; i < p->npeers; i++)
		if (p->peers[i].id == id)
			return &p->peers[i];
	return NULL;
}

const char *prim__peer_client_addr(prim_t *p, raft_id_t id)
{
	if (id == (raft_id_t)p->cfg->node_id)
		return p->cfg->advertise;
	prim_peer_t *pe = peer_by_id(p, id);
	return pe ? pe->client_addr : "";
}

bool prim__peer_up(prim_t *p, raft_id_t id)
{
	prim_peer_t *pe = peer_by_id(p, id);
	return pe && pe->out && pe->out->up;
}

/* "1=host:port,2=host:port": fills p->peers (others) and checks node_id is a member. */
int prim__peers_parse(prim_t *p)
{
	const char *s = p->cfg->peers;
	bool self = false;

	p->npeers = 0;
	p->founders.n = 0;
	if (s[0] == '\0') { /* a group of one */
		p->founders.n = 1;
		p->founders.ids[0] = (raft_id_t)p->cfg->node_id;
		return 0;
	}
	while (*s) {
		char *end;
		unsigned long id = strtoul(s, &end, 10);
		const char *comma;
		size_t n;

		if (end == s || *end != '=' || id == 0 || id > UINT32_MAX) {
			GK_ERROR("peer", "bad peers list", "at=\"%s\" hint=\"ID=HOST:PORT,...\"", s);
			return -EINVAL;
		}
		s = end + 1;
		comma = strchr(s, ',');
		n = comma ? (size_t)(comma - s) : strlen(s);
		if (n == 0 || n >= sizeof p->peers[0].addr || p->founders.n == RAFT_MAX_NODES) {
			GK_ERROR("peer", "bad peers list", "id=%lu", id);
			return -EINVAL;
		}
		for (uint32_t i = 0; i < p->founders.n; i++)
			if (p->founders.ids[i] == id) {
				GK_ERROR("peer", "node id listed twice in peers", "id=%lu", id);
				return -EINVAL;
			}
		p->founders.ids[p->founders.n++] = (raft_id_t)id;
		if (id == p->cfg->node_id) {
			self = true;
			if (p->cfg->peer_listen[0] == '\0')
				snprintf(p->peer_listen, sizeof p->peer_listen, "%.*s", (int)n, s);
		} else {
			prim_peer_t *pe = &p->peers[p->npeers++];
			memset(pe, 0, sizeof *pe);
			pe->id = (raft_id_t)id;
			memcpy(pe->addr, s, n);
			pe->addr[n] = '\0';
		}
		s += n;
		if (*s == ',')
			s++;
	}
	if (!self) {
		GK_ERROR("peer", "this node is not in the peers list", "node=%" PRIu64,
			 p->cfg->node_id);
		return -EINVAL;
	}
	if (p->cfg->peer_listen[0] != '\0')
		snprintf(p->peer_listen, sizeof p->peer_listen, "%s", p->cfg->peer_listen);
	return 0;
}

/* ---- connections ---------------------------------------------------------------------- */

static void schedule_connect(prim_peer_t *pe);
static void pconn_process(prim_pconn_t *c);

static void on_pconn_closed(uv_handle_t *h)
{
	prim_pconn_t *c = h->data;
	prim_t *p = c->p;

	prim__buf_free(&c->in);
	prim__buf_free(&c->out[0]);
	prim__buf_free(&c->out[1]);
	free(c);
	prim__maybe_finish(p);
}

static void pconn_close(prim_pconn_t *c, const char *why)
{
	prim_t *p = c->p;

	if (c->closing)
		return;
	c->closing = true;
	if (c->outbound) {
		prim_peer_t *pe = c->peer;
		if (pe->out == c) {
			pe->out = NULL;
			if (c->up)
				GK_INFO("peer", "connection to peer lost", "peer=%" PRIu32 " addr=%s why=%s",
					pe->id, pe->addr, why);
			schedule_connect(pe);
		}
	} else {
		prim_pconn_t **pp = &p->pin;
		while (*pp && *pp != c)
			pp = &(*pp)->next;
		if (*pp)
			*pp = c->next;
		if (c->up && c->peer) {
			if (c->peer->in == c)
				c->peer->in = NULL;
			GK_DEBUG("peer", "inbound peer connection closed", "peer=%" PRIu32 " why=%s",
				 c->peer->id, why);
			prim__peer_lost(p, c->peer->id);
		}
	}
	uv_close((uv_handle_t *)&c->tcp, on_pconn_closed);
}

static void pconn_flush(prim_pconn_t *c);

static void on_pconn_write(uv_write_t *req, int status)
{
	prim_pconn_t *c = req->data;
	prim_buf_t *done = &c->out[!c->fill];

	c->writing = false;
	done->len = 0;
	if (done->cap > PEER_OUT_KEEP)
		prim__buf_free(done);
	if (c->closing)
		return;
	if (status < 0 || c->refused) {
		pconn_close(c, status < 0 ? uv_err_name(status) : "refused");
		return;
	}
	pconn_flush(c);
}

static void pconn_flush(prim_pconn_t *c)
{
	prim_buf_t *b = &c->out[c->fill];
	uv_buf_t ub;

	if (c->writing || c->closing || b->len == 0)
		return;
	ub = uv_buf_init((char *)b->p, (unsigned)b->len);
	c->wreq.data = c;
	c->writing = true;
	c->fill = !c->fill;
	if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &ub, 1, on_pconn_write) != 0) {
		c->writing = false;
		b->len = 0;
		pconn_close(c, "write");
	}
}

/* Append one frame; the payload is written by enc into exactly `len` bytes. */
static int pconn_frame(prim_pconn_t *c, uint16_t type, size_t len,
		       int (*enc)(proto_wbuf_t *w, const void *arg), const void *arg)
{
	prim_buf_t *b = &c->out[c->fill];
	proto_wbuf_t w;
	size_t at;
	int rc;

	if (prim__buf_reserve(b, PROTO_HDR_LEN + len) != 0)
		return -ENOMEM;
	proto_wbuf_init(&w, b->p + b->len, PROTO_HDR_LEN + len);
	at = proto_frame_begin(&w);
	if ((rc = enc(&w, arg)) != 0 || (rc = proto_frame_finish(&w, at, type, 0)) != 0)
		return rc;
	b->len += proto_wbuf_len(&w);
	return 0;
}

static int enc_hello(proto_wbuf_t *w, const void *arg)
{
	return proto_peer_hello_encode(w, arg);
}

static int enc_raft(proto_wbuf_t *w, const void *arg)
{
	return proto_raft_msg_encode(w, arg);
}

static int enc_err(proto_wbuf_t *w, const void *arg)
{
	return proto_error_encode(w, arg);
}

static int send_hello(prim_pconn_t *c, raft_id_t to)
{
	prim_t *p = c->p;
	proto_peer_hello_t h = {
		.version = PROTO_VERSION,
		.cluster = {(const uint8_t *)p->cfg->cluster_id, (uint32_t)strlen(p->cfg->cluster_id)},
		.from = (uint32_t)p->cfg->node_id,
		.to = to,
		.client_addr = {(const uint8_t *)p->cfg->advertise, (uint32_t)strlen(p->cfg->advertise)},
		.token = {p->cfg->token, p->cfg->token_len},
	};
	size_t len = 2 + 1 + h.cluster.len + 8 + 1 + h.client_addr.len + 2 + h.token.len;
	int rc = pconn_frame(c, PROTO_T_PEER_HELLO, len, enc_hello, &h);

	if (rc == 0)
		pconn_flush(c);
	return rc;
}

static void refuse(prim_pconn_t *c, int code, const char *msg)
{
	proto_error_t e = {.code = code,
			   .message = {(const uint8_t *)msg, (uint32_t)strlen(msg)}};

	GK_WARN("peer", "refusing peer connection", "from=%s reason=\"%s\"", c->name, msg);
	c->p->st.peer_refused++;
	if (pconn_frame(c, PROTO_T_ERROR, 4 + 2 + e.message.len + 1 + 4 + 4, enc_err, &e) == 0)
		pconn_flush(c);
	/* Close once the ERROR is written (uv_close would cancel the queued write). */
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
	c->up = false;
	c->refused = true;
	if (!c->writing)
		pconn_close(c, "refused");
}

static bool token_eq(const prim_config_t *cfg, const proto_bytes_t *got)
{
	volatile uint8_t diff = got->len != cfg->token_len;

	for (uint32_t i = 0; i < cfg->token_len; i++)
		diff |= cfg->token[i] ^ (got->len ? got->p[i % got->len] : 0);
	return diff == 0;
}

/* Check a PEER_HELLO (either side). Returns the peer, or NULL after refusing/closing. */
static prim_peer_t *check_hello(prim_pconn_t *c, const uint8_t *pl, size_t len)
{
	prim_t *p = c->p;
	proto_peer_hello_t h;
	size_t clen = strlen(p->cfg->cluster_id);
	prim_peer_t *pe;
	char msg[160];

	if (proto_peer_hello_decode(pl, len, &h) != 0) {
		refuse(c, PROTO_EBADMSG, "malformed PEER_HELLO");
		return NULL;
	}
	if (h.version != PROTO_VERSION) {
		refuse(c, PROTO_EVERSION, "peer protocol version differs");
		return NULL;
	}
	if (h.cluster.len != clen || memcmp(h.cluster.p, p->cfg->cluster_id, clen) != 0) {
		snprintf(msg, sizeof msg, "peer is in cluster '%.*s', this node in '%.64s'",
			 (int)(h.cluster.len > 64 ? 64 : h.cluster.len), h.cluster.p,
			 p->cfg->cluster_id);
		refuse(c, PROTO_ECLUSTER, msg);
		return NULL;
	}
	if (p->cfg->token_len && !token_eq(p->cfg, &h.token)) {
		refuse(c, PROTO_EAUTH, "bad cluster token from peer");
		return NULL;
	}
	if (h.to != (uint32_t)p->cfg->node_id) {
		snprintf(msg, sizeof msg, "peer wanted node %" PRIu32 ", this is node %" PRIu64,
			 h.to, p->cfg->node_id);
		refuse(c, PROTO_EBADMSG, msg);
		return NULL;
	}
	if ((pe = peer_by_id(p, h.from)) == NULL || (c->outbound && pe != c->peer)) {
		snprintf(msg, sizeof msg, "node %" PRIu32 " is not a member here", h.from);
		refuse(c, PROTO_EBADMSG, msg);
		return NULL;
	}
	snprintf(pe->client_addr, sizeof pe->client_addr, "%.*s", (int)h.client_addr.len,
		 h.client_addr.p);
	return pe;
}

static void on_pconn_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	prim_pconn_t *c = h->data;
	prim_buf_t *b = &c->in;

	(void)suggested;
	if (b->cap - b->len < PEER_READ_CHUNK / 4 && prim__buf_reserve(b, PEER_READ_CHUNK) != 0) {
		*buf = uv_buf_init(NULL, 0);
		return;
	}
	*buf = uv_buf_init((char *)b->p + b->len, (unsigned)(b->cap - b->len));
}

static void on_pconn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	prim_pconn_t *c = s->data;

	(void)buf;
	if (nread < 0) {
		pconn_close(c, nread == UV_EOF ? "eof" : uv_err_name((int)nread));
		return;
	}
	c->in.len += (size_t)nread;
	c->p->st.peer_bytes_in += (uint64_t)nread;
	pconn_process(c);
}

static void pconn_start_reading(prim_pconn_t *c)
{
	if (c->reading || c->closing)
		return;
	if (uv_read_start((uv_stream_t *)&c->tcp, on_pconn_alloc, on_pconn_read) == 0)
		c->reading = true;
}

/*
 * Handle every complete frame in c->in. Outbound connections only ever receive the
 * acceptor's hello (or its ERROR). Inbound: hello first, then raft messages, stepped here
 * unless a ready cycle is open (then held until prim__peers_resume).
 */
static void pconn_process(prim_pconn_t *c)
{
	prim_t *p = c->p;
	size_t off = 0;
	bool stepped = false;
	uint32_t maxf = p->cfg->max_frame + (1u << 20);

	while (!c->closing) {
		proto_hdr_t h;
		int rc = proto_hdr_decode(c->in.p + off, c->in.len - off, maxf, &h);
		const uint8_t *pl = c->in.p + off + PROTO_HDR_LEN;

		if (rc == PROTO_EAGAIN)
			break;
		if (rc < 0) {
			pconn_close(c, rc == PROTO_ETOOBIG ? "frame too big" : "bad frame header");
			return;
		}
		if (!c->up) {
			if (h.type == PROTO_T_ERROR) {
				proto_error_t e;
				if (proto_error_decode(pl, h.len, &e) == 0)
					GK_WARN("peer", "peer refused us", "peer=%s err=%s msg=\"%.*s\"",
						c->name, geokv_errname(e.code), (int)e.message.len,
						e.message.p);
				pconn_close(c, "refused by peer");
				return;
			}
			if (h.type != PROTO_T_PEER_HELLO) {
				refuse(c, PROTO_EBADMSG, "expected PEER_HELLO");
				return;
			}
			prim_peer_t *pe = check_hello(c, pl, h.len);
			if (pe == NULL)
				return;
			c->up = true;
			if (c->outbound) {
				pe->backoff_ms = 0;
				GK_INFO("peer", "connected to peer", "peer=%" PRIu32 " addr=%s", pe->id,
					pe->addr);
			} else {
				c->peer = pe;
				if (pe->in != NULL && pe->in != c)
					pconn_close(pe->in, "replaced by a new connection");
				pe->in = c;
				if (send_hello(c, pe->id) != 0) {
					pconn_close(c, "hello");
					return;
				}
			}
			off += PROTO_HDR_LEN + h.len;
			continue;
		}
		if (c->outbound || h.type != PROTO_T_RAFT) {
			pconn_close(c, "unexpected frame");
			return;
		}
		if (p->in_ready) {
			/* Hold the rest until the ready cycle ends; stop reading meanwhile. */
			c->held = true;
			break;
		}
		raft_msg_t m;
		rc = proto_raft_msg_decode(pl, h.len, &m, p->dec_ents, p->dec_cap, maxf);
		if (rc != 0 || m.from != c->peer->id || m.to != (raft_id_t)p->cfg->node_id) {
			GK_WARN("peer", "bad raft message, closing", "peer=%" PRIu32 " err=%s",
				c->peer->id, geokv_errname(rc ? rc : PROTO_EBADMSG));
			pconn_close(c, "bad message");
			return;
		}
		c->peer->heard_ms = uv_now(p->loop);
		prim__step(p, &m);
		stepped = true;
		off += PROTO_HDR_LEN + h.len;
	}
	if (c->closing)
		return;
	if (off > 0) {
		memmove(c->in.p, c->in.p + off, c->in.len - off);
		c->in.len -= off;
	}
	if (c->in.len == 0 && c->in.cap > PEER_OUT_KEEP)
		prim__buf_free(&c->in);
	if (c->held && c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	} else if (!c->held) {
		pconn_start_reading(c);
	}
	if (stepped)
		prim__drive(p);
}

void prim__peers_resume(prim_t *p)
{
	prim_pconn_t *c, *next;

	for (c = p->pin; c; c = next) {
		next = c->next;
		if (!c->held)
			continue;
		c->held = false;
		pconn_process(c);
		if (p->in_ready)
			return; /* the drive it triggered opened a new cycle: the rest wait again */
	}
}

/* ---- outbound ------------------------------------------------------------------------- */

static void on_connected(uv_connect_t *req, int status)
{
	prim_pconn_t *c = req->data;
	prim_peer_t *pe = c->peer;

	if (c->closing)
		return;
	if (status < 0) {
		if (pe->backoff_ms >= PEER_BACKOFF_MAX / 2)
			GK_DEBUG("peer", "cannot connect to peer", "peer=%" PRIu32 " addr=%s err=%s",
				 pe->id, pe->addr, uv_err_name(status));
		pconn_close(c, uv_err_name(status));
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	if (send_hello(c, pe->id) != 0) {
		pconn_close(c, "hello");
		return;
	}
	pconn_start_reading(c);
}

static void on_getaddr(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	prim_peer_t *pe = req->data;
	prim_t *p = pe->p;
	prim_pconn_t *c;

	pe->resolving = false;
	if (p->stopping || p->closed) {
		uv_freeaddrinfo(res);
		prim__maybe_finish(p);
		return;
	}
	if (status < 0 || res == NULL) {
		GK_WARN("peer", "cannot resolve peer address", "peer=%" PRIu32 " addr=%s err=%s",
			pe->id, pe->addr, uv_err_name(status));
		uv_freeaddrinfo(res);
		schedule_connect(pe);
		return;
	}
	if ((c = calloc(1, sizeof *c)) == NULL) {
		uv_freeaddrinfo(res);
		schedule_connect(pe);
		return;
	}
	c->p = p;
	c->peer = pe;
	c->outbound = true;
	c->opened_ms = uv_now(p->loop);
	snprintf(c->name, sizeof c->name, "%" PRIu32 "@%.40s", pe->id, pe->addr);
	uv_tcp_init(p->loop, &c->tcp);
	c->tcp.data = c;
	c->creq.data = c;
	pe->out = c;
	if (uv_tcp_connect(&c->creq, &c->tcp, res->ai_addr, on_connected) != 0)
		pconn_close(c, "connect");
	uv_freeaddrinfo(res);
}

static void start_connect(prim_peer_t *pe)
{
	prim_t *p = pe->p;
	char host[256];
	const char *colon;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};

	if (p->stopping || p->closed || pe->out || pe->resolving)
		return;
	if (pe->addr[0] == '[') {
		const char *rb = strchr(pe->addr, ']');
		if (rb == NULL || rb[1] != ':')
			goto bad;
		snprintf(host, sizeof host, "%.*s", (int)(rb - pe->addr - 1), pe->addr + 1);
		colon = rb + 1;
	} else {
		if ((colon = strrchr(pe->addr, ':')) == NULL)
			goto bad;
		snprintf(host, sizeof host, "%.*s", (int)(colon - pe->addr), pe->addr);
	}
	pe->gai.data = pe;
	pe->resolving = true;
	if (uv_getaddrinfo(p->loop, &pe->gai, on_getaddr, host, colon + 1, &hints) != 0) {
		pe->resolving = false;
		schedule_connect(pe);
	}
	return;
bad:
	GK_ERROR("peer", "bad peer address", "peer=%" PRIu32 " addr=%s", pe->id, pe->addr);
}

static void on_retry(uv_timer_t *t)
{
	start_connect(t->data);
}

static void schedule_connect(prim_peer_t *pe)
{
	prim_t *p = pe->p;
	uint32_t ms;

	if (p->stopping || p->closed)
		return;
	pe->backoff_ms = pe->backoff_ms ? pe->backoff_ms * 2 : PEER_BACKOFF_MIN;
	if (pe->backoff_ms > PEER_BACKOFF_MAX)
		pe->backoff_ms = PEER_BACKOFF_MAX;
	/* +-25% jitter */
	p->rng = p->rng * 6364136223846793005ULL + 1442695040888963407ULL;
	ms = pe->backoff_ms * 3 / 4 + (uint32_t)((p->rng >> 33) % (pe->backoff_ms / 2 + 1));
	uv_timer_start(&pe->retry, on_retry, ms, 0);
}

/* ---- sending -------------------------------------------------------------------------- */

void prim__peer_send(prim_t *p, const raft_msg_t *m)
{
	prim_peer_t *pe = peer_by_id(p, m->to);
	prim_pconn_t *c;
	size_t len;

	if (pe == NULL) {
		p->st.peer_dropped++;
		return;
	}
	c = pe->out;
	len = proto_raft_msg_size(m);
	if (c == NULL || !c->up || c->closing ||
	    c->out[0].len + c->out[1].len + len > PEER_OUT_MAX) {
		pe->dropped++;
		p->st.peer_dropped++;
		return;
	}
	if (pconn_frame(c, PROTO_T_RAFT, len, enc_raft, m) != 0) {
		pe->dropped++;
		p->st.peer_dropped++;
		return;
	}
	pe->sent++;
	p->st.peer_bytes_out += PROTO_HDR_LEN + len;
	pconn_flush(c);
}

/* ---- listener ------------------------------------------------------------------------- */

static void on_peer_connection(uv_stream_t *server, int status)
{
	prim_t *p = server->data;
	prim_pconn_t *c;
	struct sockaddr_storage ss;
	int namelen = sizeof ss;

	if (status < 0)
		return;
	if ((c = calloc(1, sizeof *c)) == NULL)
		return;
	c->p = p;
	c->opened_ms = uv_now(p->loop);
	uv_tcp_init(p->loop, &c->tcp);
	c->tcp.data = c;
	c->next = p->pin;
	p->pin = c;
	if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || p->stopping) {
		pconn_close(c, "accept");
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &namelen) == 0 &&
	    ss.ss_family == AF_INET) {
		char ip[48];
		uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
		snprintf(c->name, sizeof c->name, "%s:%u", ip,
			 ntohs(((struct sockaddr_in *)&ss)->sin_port));
	}
	pconn_start_reading(c);
}

/* Close handshakes that never completed (a port scanner, a stuck dialer). */
static void on_peer_sweep(uv_timer_t *t)
{
	prim_t *p = t->data;
	uint64_t now = uv_now(p->loop);
	prim_pconn_t *c, *next;

	for (c = p->pin; c; c = next) {
		next = c->next;
		if (!c->up && now - c->opened_ms > PEER_HELLO_MS)
			pconn_close(c, "hello timeout");
	}
	for (uint32_t i = 0; i < p->npeers; i++) {
		c = p->peers[i].out;
		if (c && !c->up && now - c->opened_ms > PEER_HELLO_MS)
			pconn_close(c, "hello timeout");
	}
}

int prim__peers_start(prim_t *p)
{
	struct sockaddr_storage ss;
	int rc;

	if (p->npeers == 0)
		return 0;
	if (prim__parse_addr(p->peer_listen, &ss) != 0) {
		GK_ERROR("peer", "bad peer listen address", "peer_listen=%s hint=\"IP:PORT\"",
			 p->peer_listen);
		return -EINVAL;
	}
	uv_tcp_init(p->loop, &p->plistener);
	p->plistener.data = p;
	if ((rc = uv_tcp_bind(&p->plistener, (struct sockaddr *)&ss, 0)) != 0 ||
	    (rc = uv_listen((uv_stream_t *)&p->plistener, 128, on_peer_connection)) != 0) {
		GK_ERROR("peer", "cannot listen for peers", "peer_listen=%s err=\"%s\"",
			 p->peer_listen, uv_strerror(rc));
		uv_close((uv_handle_t *)&p->plistener, NULL);
		return rc;
	}
	p->plistening = true;
	uv_timer_init(p->loop, &p->psweep);
	p->psweep.data = p;
	uv_timer_start(&p->psweep, on_peer_sweep, 500, 500);
	for (uint32_t i = 0; i < p->npeers; i++) {
		prim_peer_t *pe = &p->peers[i];
		pe->p = p;
		uv_timer_init(p->loop, &pe->retry);
		pe->retry.data = pe;
		start_connect(pe);
	}
	return 0;
}

static void on_close_noop(uv_handle_t *h) { (void)h; }

void prim__peers_close(prim_t *p)
{
	if (!p->plistening)
		return;
	p->plistening = false;
	uv_close((uv_handle_t *)&p->plistener, on_close_noop);
	uv_close((uv_handle_t *)&p->psweep, on_close_noop);
	while (p->pin)
		pconn_close(p->pin, "stopping");
	for (uint32_t i = 0; i < p->npeers; i++) {
		prim_peer_t *pe = &p->peers[i];
		uv_close((uv_handle_t *)&pe->retry, on_close_noop);
		if (pe->out)
			pconn_close(pe->out, "stopping");
	}
}

bool prim__peers_idle(const prim_t *p)
{
	if (p->pin != NULL)
		return false;
	for (uint32_t i = 0; i < p->npeers; i++)
		if (p->peers[i].out != NULL || p->peers[i].resolving)
			return false;
	return true;
}
