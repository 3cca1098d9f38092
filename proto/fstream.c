/* Framed connection over libuv TCP with optional TLS: see proto/fstream.h. */
#include "proto/fstream.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/asn1.h>
#include <mbedtls/x509.h>

#define READ_CHUNK   65536
#define KEEP_OUT_CAP (4u << 20) /* an output buffer larger than this is freed once written */

static int buf_reserve(proto_fs_buf_t *b, size_t extra)
{
	size_t need = b->len + extra, cap = b->cap ? b->cap : 4096;

	if (need <= b->cap)
		return 0;
	while (cap < need)
		cap *= 2;
	uint8_t *p = realloc(b->p, cap);
	if (p == NULL)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static void buf_free(proto_fs_buf_t *b)
{
	free(b->p);
	*b = (proto_fs_buf_t){0};
}

static void buf_consume(proto_fs_buf_t *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

int proto_fs_init(uv_loop_t *loop, proto_fs_t *s)
{
	int rc;

	memset(s, 0, sizeof *s);
	if ((rc = uv_tcp_init(loop, &s->tcp)) != 0)
		return rc;
	s->tcp.data = s;
	s->handle_open = true;
	return 0;
}

/* ---- output --------------------------------------------------------------------------- */

static void flush(proto_fs_t *s);

static void write_cb(uv_write_t *req, int status)
{
	proto_fs_t *s = req->data;
	proto_fs_buf_t *done = &s->out[s->fill ^ 1];

	s->writing = false;
	if (s->closing)
		return;
	if (status < 0) {
		proto_fs_close(s, status);
		return;
	}
	s->bytes_out += done->len;
	done->len = 0;
	if (done->cap > KEEP_OUT_CAP)
		buf_free(done);
	flush(s);
	if (s->on_drain && !s->closing)
		s->on_drain(s, 0);
}

static void flush(proto_fs_t *s)
{
	proto_fs_buf_t *b = &s->out[s->fill];
	uv_buf_t ub;
	int rc;

	if (s->writing || s->closing || b->len == 0)
		return;
	ub = uv_buf_init((char *)b->p, (unsigned)b->len);
	s->wreq.data = s;
	if ((rc = uv_write(&s->wreq, (uv_stream_t *)&s->tcp, &ub, 1, write_cb)) != 0) {
		proto_fs_close(s, rc);
		return;
	}
	s->writing = true;
	s->fill ^= 1;
}

static int raw_append(proto_fs_t *s, const uint8_t *p, size_t len)
{
	proto_fs_buf_t *b = &s->out[s->fill];

	if (buf_reserve(b, len) != 0)
		return -ENOMEM;
	memcpy(b->p + b->len, p, len);
	b->len += len;
	return 0;
}

static int tls_send(void *ctx, const uint8_t *p, size_t len)
{
	return raw_append(ctx, p, len);
}

int proto_fs_send(proto_fs_t *s, const void *p, size_t len)
{
	int rc;

	if (s->closing)
		return PROTO_ECLOSED;
	if (s->tls != NULL)
		rc = proto_tls_write(s->tls, p, len) == 0 ? 0 : PROTO_ETLS;
	else
		rc = raw_append(s, p, len);
	if (rc != 0) {
		proto_fs_close(s, rc);
		return rc;
	}
	flush(s);
	return 0;
}

int proto_fs_send_frame(proto_fs_t *s, uint16_t type, uint64_t id, const void *payload,
			size_t len)
{
	uint8_t h[PROTO_HDR_LEN];
	int rc;

	if (len > UINT32_MAX)
		return PROTO_ETOOBIG;
	proto_hdr_encode(h, &(proto_hdr_t){.len = (uint32_t)len, .type = type, .id = id});
	if (s->tls == NULL) {
		/* One append for header and payload: no TLS record per part. */
		proto_fs_buf_t *b = &s->out[s->fill];
		if (s->closing)
			return PROTO_ECLOSED;
		if (buf_reserve(b, sizeof h + len) != 0) {
			proto_fs_close(s, -ENOMEM);
			return -ENOMEM;
		}
		memcpy(b->p + b->len, h, sizeof h);
		if (len)
			memcpy(b->p + b->len + sizeof h, payload, len);
		b->len += sizeof h + len;
		flush(s);
		return 0;
	}
	/* TLS: header and payload in one plaintext buffer, so small frames are one record. */
	proto_fs_buf_t tmp = {0};
	if (buf_reserve(&tmp, sizeof h + len) != 0)
		return -ENOMEM;
	memcpy(tmp.p, h, sizeof h);
	if (len)
		memcpy(tmp.p + sizeof h, payload, len);
	rc = proto_fs_send(s, tmp.p, sizeof h + len);
	buf_free(&tmp);
	return rc;
}

/* ---- input ---------------------------------------------------------------------------- */

static void parse_frames(proto_fs_t *s)
{
	size_t off = 0;

	while (!s->closing && !s->paused) {
		proto_hdr_t h;
		int rc = proto_hdr_decode(s->in.p + off, s->in.len - off, s->max_frame, &h);
		if (rc == PROTO_EAGAIN)
			break;
		if (rc < 0) {
			proto_fs_close(s, rc);
			return;
		}
		s->on_frame(s, &h, s->in.p + off + PROTO_HDR_LEN);
		off += PROTO_HDR_LEN + (size_t)h.len;
	}
	if (!s->closing)
		buf_consume(&s->in, off);
}

/* mbedTLS 2.28 matches the host only against DNS names; an IP address is checked here
 * against the certificate's IP SANs instead (as proto/client.c does). */
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
	for (const mbedtls_x509_sequence *q = crt ? &crt->subject_alt_names : NULL; q; q = q->next)
		if (q->buf.tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_IP_ADDRESS) &&
		    q->buf.len == n && memcmp(q->buf.p, ip, n) == 0)
			return true;
	return false;
}

static bool host_is_ip(const char *host)
{
	unsigned char ip[16];

	return inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
}

static void tls_input(proto_fs_t *s)
{
	proto_tls_conn_t *t = s->tls;
	int rc;

	proto_tls_feed(t, s->cin.p, s->cin.len);
	if (!t->established) {
		rc = proto_tls_handshake(t);
		flush(s);
		if (s->closing)
			return;
		if (rc != 0 && rc != PROTO_EAGAIN) {
			proto_fs_close(s, PROTO_ETLS);
			return;
		}
		if (t->established) {
			if (s->client && host_is_ip(s->host) && !peer_has_ip(t, s->host)) {
				proto_fs_close(s, PROTO_ETLS);
				return;
			}
			s->ready = true;
			if (s->on_ready)
				s->on_ready(s, 0);
			if (s->closing)
				return;
		}
	}
	while (t->established && !s->closing) {
		long n;
		if (buf_reserve(&s->in, 16384 + 64) != 0) {
			proto_fs_close(s, -ENOMEM);
			return;
		}
		n = proto_tls_read(t, s->in.p + s->in.len, s->in.cap - s->in.len);
		if (n > 0) {
			s->in.len += (size_t)n;
			continue;
		}
		if (n == PROTO_EAGAIN)
			break;
		proto_fs_close(s, n == PROTO_ECLOSED ? PROTO_ECLOSED : PROTO_ETLS);
		return;
	}
	buf_consume(&s->cin, s->cin.len - proto_tls_unconsumed(t));
	flush(s); /* records mbedTLS may have written while reading */
	if (!s->closing)
		parse_frames(s);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	proto_fs_t *s = h->data;
	proto_fs_buf_t *b = s->tls != NULL ? &s->cin : &s->in;
	size_t want = READ_CHUNK;

	(void)suggested;
	if (s->tls == NULL && b->len >= PROTO_HDR_LEN) {
		/* A frame longer than what is free gets room for all of it (its header was
		 * checked against max_frame when it arrived). */
		proto_hdr_t hd;
		if (proto_hdr_decode(b->p, b->len, s->max_frame, &hd) == PROTO_EAGAIN &&
		    PROTO_HDR_LEN + (size_t)hd.len > b->len + want)
			want = PROTO_HDR_LEN + (size_t)hd.len - b->len;
	}
	if (b->cap - b->len < want / 4 || b->cap - b->len < 1024) {
		if (buf_reserve(b, want) != 0) {
			*buf = uv_buf_init(NULL, 0);
			return;
		}
	}
	*buf = uv_buf_init((char *)b->p + b->len, (unsigned)(b->cap - b->len));
}

static void read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	proto_fs_t *s = st->data;

	(void)buf;
	if (s->closing)
		return;
	if (nread < 0) {
		proto_fs_close(s, nread == UV_EOF ? PROTO_ECLOSED : (int)nread);
		return;
	}
	if (nread == 0)
		return;
	s->bytes_in += (uint64_t)nread;
	if (s->tls != NULL) {
		s->cin.len += (size_t)nread;
		tls_input(s);
	} else {
		s->in.len += (size_t)nread;
		parse_frames(s);
	}
}

static void note_peer(proto_fs_t *s)
{
	struct sockaddr_storage ss;
	int len = sizeof ss;
	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &len) != 0)
		return;
	if (ss.ss_family == AF_INET) {
		uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
		port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	snprintf(s->peer, sizeof s->peer, "%s:%d", ip, port);
}

static int start(proto_fs_t *s, proto_tls_conf_t *tls)
{
	int rc;

	if (s->max_frame == 0)
		s->max_frame = PROTO_DEFAULT_MAX_FRAME;
	uv_tcp_nodelay(&s->tcp, 1);
	note_peer(s);
	if (tls != NULL) {
		if ((s->tls = calloc(1, sizeof *s->tls)) == NULL)
			return -ENOMEM;
		if ((rc = proto_tls_conn_init(s->tls, tls, tls_send, s)) != 0)
			return rc;
		if (s->client && s->host[0] && !host_is_ip(s->host) &&
		    mbedtls_ssl_set_hostname(&s->tls->ssl, s->host) != 0)
			return -ENOMEM;
	}
	if ((rc = uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, read_cb)) != 0)
		return rc;
	if (tls != NULL) {
		if (s->client) {
			/* The ClientHello. */
			proto_tls_feed(s->tls, NULL, 0);
			rc = proto_tls_handshake(s->tls);
			flush(s);
			if (rc != 0 && rc != PROTO_EAGAIN)
				return PROTO_ETLS;
		}
		return 0;
	}
	s->ready = true;
	if (s->on_ready)
		s->on_ready(s, 0);
	return 0;
}

int proto_fs_accept(proto_fs_t *s, uv_stream_t *listener, proto_tls_conf_t *tls)
{
	int rc;

	if ((rc = uv_accept(listener, (uv_stream_t *)&s->tcp)) != 0)
		return rc;
	return start(s, tls);
}

static void connect_cb(uv_connect_t *req, int status)
{
	proto_fs_t *s = req->data;
	proto_tls_conf_t *tls = s->tls ? (proto_tls_conf_t *)s->tls->conf : NULL;
	int rc;

	if (s->closing)
		return;
	if (status < 0) {
		proto_fs_close(s, status);
		return;
	}
	free(s->tls); /* only a carrier of the conf until here */
	s->tls = NULL;
	if ((rc = start(s, tls)) != 0)
		proto_fs_close(s, rc);
}

int proto_fs_connect(proto_fs_t *s, const struct sockaddr *addr, proto_tls_conf_t *tls,
		     const char *host)
{
	int rc;

	s->client = true;
	snprintf(s->host, sizeof s->host, "%s", host ? host : "");
	if (tls != NULL) {
		/* Remember the conf until the TCP connection is up. */
		if ((s->tls = calloc(1, sizeof *s->tls)) == NULL)
			return -ENOMEM;
		s->tls->conf = tls;
	}
	s->creq.data = s;
	if ((rc = uv_tcp_connect(&s->creq, &s->tcp, addr, connect_cb)) != 0) {
		free(s->tls);
		s->tls = NULL;
	}
	return rc;
}

void proto_fs_pause(proto_fs_t *s)
{
	if (s->paused || s->closing)
		return;
	s->paused = true;
	uv_read_stop((uv_stream_t *)&s->tcp);
}

void proto_fs_resume(proto_fs_t *s)
{
	if (!s->paused || s->closing)
		return;
	s->paused = false;
	if (uv_read_start((uv_stream_t *)&s->tcp, alloc_cb, read_cb) != 0) {
		proto_fs_close(s, PROTO_ECLOSED);
		return;
	}
	parse_frames(s); /* what arrived before the pause */
}

/* ---- close ---------------------------------------------------------------------------- */

static void close_cb(uv_handle_t *h)
{
	proto_fs_t *s = h->data;

	buf_free(&s->in);
	buf_free(&s->cin);
	buf_free(&s->out[0]);
	buf_free(&s->out[1]);
	if (s->tls != NULL) {
		if (s->tls->ready)
			proto_tls_conn_free(s->tls);
		free(s->tls);
		s->tls = NULL;
	}
	s->handle_open = false;
	if (s->on_close)
		s->on_close(s, s->close_err);
}

void proto_fs_close(proto_fs_t *s, int err)
{
	if (s->closing)
		return;
	s->closing = true;
	s->close_err = err;
	uv_close((uv_handle_t *)&s->tcp, close_cb);
}

/* ---- addresses ------------------------------------------------------------------------ */

int proto_fs_parse_addr(const char *str, struct sockaddr_storage *ss, char *host, size_t hostcap)
{
	char h[256];
	const char *colon, *hs = str;
	size_t hl;
	long port;
	char *end;

	if (str[0] == '[') {
		const char *rb = strchr(str, ']');
		if (rb == NULL || rb[1] != ':')
			return -EINVAL;
		hs = str + 1;
		hl = (size_t)(rb - hs);
		colon = rb + 1;
	} else {
		if ((colon = strrchr(str, ':')) == NULL)
			return -EINVAL;
		hl = (size_t)(colon - str);
	}
	if (hl == 0 || hl >= sizeof h)
		return -EINVAL;
	memcpy(h, hs, hl);
	h[hl] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (*end != '\0' || port <= 0 || port > 65535)
		return -EINVAL;
	memset(ss, 0, sizeof *ss);
	if (uv_ip4_addr(h, (int)port, (struct sockaddr_in *)ss) != 0 &&
	    uv_ip6_addr(h, (int)port, (struct sockaddr_in6 *)ss) != 0) {
		/* A name: resolved once, here (blocking; start-up only). */
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
		if (getaddrinfo(h, NULL, &hints, &res) != 0 || res == NULL)
			return -EINVAL;
		memcpy(ss, res->ai_addr, res->ai_addrlen);
		if (ss->ss_family == AF_INET)
			((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
		else
			((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
		freeaddrinfo(res);
	}
	if (host != NULL)
		snprintf(host, hostcap, "%s", h);
	return 0;
}
