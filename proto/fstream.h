/*
 * proto_fs: one framed connection over libuv TCP, optionally inside TLS (proto/tls.h).
 *
 * What it is: the transport the leaf feed's two ends share (core/feed.c serves it, leaf/
 * follows it): connect or accept, the TLS handshake, frame splitting against a maximum,
 * bounded double-buffered output with a drain callback for back-pressure, and one close
 * path. A caller-allocated object in libuv's style: the caller embeds or allocates it, sets
 * the callbacks, and may free it only in on_close.
 *
 * What it is not: a session. HELLO, frame meanings and timeouts are the caller's; so is the
 * output policy: proto_fs_send always takes the bytes (memory grows with what is queued), and
 * callers that stream (the feed) check proto_fs_queued() against their own bound before
 * encoding more, resuming from on_drain.
 *
 * Frames: proto/proto.h's 16-byte header; a header announcing more than max_frame closes the
 * connection with PROTO_ETOOBIG before its payload is buffered, so the input buffer never
 * exceeds max_frame + one read.
 *
 * Threads: the loop thread only. Callbacks run from libuv callbacks; on_frame may send and
 * may close (then no further frame is delivered).
 *
 * Errors passed to on_close: 0 (closed by the caller with 0), PROTO_ECLOSED (peer closed),
 * PROTO_ETOOBIG / PROTO_EBADMSG (bad header), PROTO_ETLS (handshake or record failure),
 * negative libuv errors (UV_ECONNREFUSED, ...), or the caller's own code from proto_fs_close.
 */
#ifndef GEOKV_PROTO_FSTREAM_H
#define GEOKV_PROTO_FSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "proto/proto.h"
#include "proto/tls.h"

typedef struct proto_fs proto_fs_t;

/* A whole frame: payload is h->len bytes, valid during the call only. */
typedef void (*proto_fs_frame_cb)(proto_fs_t *s, const proto_hdr_t *h, const uint8_t *payload);
typedef void (*proto_fs_cb)(proto_fs_t *s, int status);

typedef struct proto_fs_buf {
	uint8_t *p;
	size_t len, cap;
} proto_fs_buf_t;

struct proto_fs {
	uv_tcp_t tcp;              /* tcp.data = the proto_fs_t */
	uv_connect_t creq;
	uv_write_t wreq;
	proto_tls_conn_t *tls;     /* NULL = plain */
	char host[256];            /* client: the name (or IP) the certificate must match */
	bool client, ready, writing, closing, handle_open, paused;
	proto_fs_buf_t in;         /* plaintext frames received, not yet delivered */
	proto_fs_buf_t cin;        /* ciphertext received, not yet consumed */
	proto_fs_buf_t out[2];     /* out[fill] takes new bytes; the other is being written */
	int fill;
	int close_err;
	uint32_t max_frame;        /* set before connect/accept; 0 = PROTO_DEFAULT_MAX_FRAME */
	uint64_t bytes_in, bytes_out;
	char peer[64];             /* "ip:port" for logs */

	proto_fs_frame_cb on_frame;
	proto_fs_cb on_ready;      /* transport up (TLS established); status 0 */
	proto_fs_cb on_drain;      /* optional: a write finished, proto_fs_queued() went down */
	proto_fs_cb on_close;      /* the handle is closed: the object may be freed here */
	void *data;                /* caller's */
};

/* Zero s, then uv_tcp_init. 0 or a libuv error. Callbacks are set by the caller after. */
int proto_fs_init(uv_loop_t *loop, proto_fs_t *s);

/* Accept a connection from `listener` (after proto_fs_init). tls may be NULL. on_ready runs
 * before this returns for plain TCP, after the handshake for TLS. Returns 0 or an error
 * (then call proto_fs_close). */
int proto_fs_accept(proto_fs_t *s, uv_stream_t *listener, proto_tls_conf_t *tls);

/* Connect to addr; with tls (a client configuration) the server certificate must chain to
 * its CA and name `host` (a DNS name, or an IP address matched against its IP SANs).
 * on_ready on success; on failure on_close with the error. 0 or an immediate error. */
int proto_fs_connect(proto_fs_t *s, const struct sockaddr *addr, proto_tls_conf_t *tls,
		     const char *host);

/* Queue bytes (copied). 0, PROTO_ECLOSED when closing, -ENOMEM, PROTO_ETLS. */
int proto_fs_send(proto_fs_t *s, const void *p, size_t len);
/* Queue one frame: header (type, id, flags 0) and payload. */
int proto_fs_send_frame(proto_fs_t *s, uint16_t type, uint64_t id, const void *payload,
			size_t len);

/* Bytes queued and not yet handed to the kernel (ciphertext with TLS). */
static inline size_t proto_fs_queued(const proto_fs_t *s) { return s->out[0].len + s->out[1].len; }

/* Stop delivering frames (and reading the socket) until proto_fs_resume; frames already
 * buffered wait too. For a receiver that must finish slow work first (a snapshot install). */
void proto_fs_pause(proto_fs_t *s);
void proto_fs_resume(proto_fs_t *s);

/* Close (idempotent): queued output is dropped; on_close(s, err) follows from the loop. */
void proto_fs_close(proto_fs_t *s, int err);

/* "HOST:PORT", "[v6]:PORT" into ss (numeric hosts only): 0 or -EINVAL. */
int proto_fs_parse_addr(const char *s, struct sockaddr_storage *ss, char *host, size_t hostcap);

#endif
