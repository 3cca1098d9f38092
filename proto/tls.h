/*
 * TLS set-up shared by every geokv daemon (and later the client): mbedTLS 2.28, TLS 1.2.
 *
 * What it is: three layers, split by who may share them.
 *   proto_tls_pem_t     certificate, key and CA files read into memory and checked once
 *                       (a reload reads files on one thread, workers parse the bytes).
 *   proto_tls_shared_t  state every thread shares: session-ticket keys and the session cache,
 *                       so a client resumes on whichever worker SO_REUSEPORT hands it to, and
 *                       tickets survive a certificate reload. Thread-safe (mbedTLS mutexes).
 *   proto_tls_conf_t    one per event loop: mbedtls_ssl_config with its own DRBG and its own
 *                       parsed certificate and key. Handshake steps of its connections may
 *                       also run on pool threads (proto_tls_handshake_cheap), so everything
 *                       it holds is either read-only once built or locked: the DRBG takes
 *                       its mutex (Debian's mbedTLS has MBEDTLS_THREADING_PTHREAD), and the
 *                       key is only read while signing.
 *   proto_tls_conn_t    one per connection, with a callback BIO: the caller feeds received
 *                       ciphertext with proto_tls_feed() and receives ciphertext to transmit
 *                       through its send callback, so it fits any event loop (libuv here).
 *
 * What it is not: sockets, timeouts, or HTTP. No threads are started here.
 *
 * Defaults (chosen for mbedTLS's speed on x86-64, see docs/gateway.md): TLS 1.2 only;
 * ECDHE-ECDSA/RSA with AES-128/256-GCM and ChaCha20-Poly1305; curves secp256r1 then
 * secp384r1 (mbedTLS honours the client's curve order, and its X25519 is slower than its
 * P-256, so X25519 is offered only when configured); no renegotiation; session tickets
 * (AES-256-GCM keys rotated every lifetime) and a session-id cache.
 *
 * Errors: 0, negative errno, PROTO_EAGAIN (need more bytes / cannot write yet), PROTO_ECLOSED
 * (peer sent close_notify), PROTO_EBADMSG (any TLS failure: the mbedTLS code is kept in
 * conn->tls_err / the err text, because mbedTLS's own codes overlap geokv's error bands).
 */
#ifndef GEOKV_PROTO_TLS_H
#define GEOKV_PROTO_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/ssl_cache.h>
#include <mbedtls/ssl_ticket.h>
#include <mbedtls/x509_crt.h>

#define PROTO_TLS_MAX_SUITES 16
#define PROTO_TLS_MAX_CURVES 8
#define PROTO_TLS_MAX_ALPN   4

typedef struct proto_tls_opts {
	bool server;
	const char *ciphersuites;     /* "ECDHE-ECDSA-AES128-GCM-SHA256,..." (OpenSSL or IANA
				       * names, comma separated); NULL = defaults above */
	const char *curves;           /* "secp256r1,x25519,..."; NULL = secp256r1,secp384r1 */
	const char *alpn;             /* "http/1.1" (comma separated); NULL = none */
	bool verify_peer;             /* server: require a client certificate signed by the CA;
				       * client: verify the server (needs a CA) */
	const char *server_name;      /* client: SNI and name to verify */
	bool tickets;                 /* server: issue session tickets (default true in the
				       * daemons' configs) */
	uint32_t ticket_lifetime_s;   /* 0 = 86400 */
	int cache_size;               /* server session-id cache entries; 0 = 10000, <0 = off */
	uint32_t cache_timeout_s;     /* 0 = 86400 */
} proto_tls_opts_t;

/* ---- files ------------------------------------------------------------------------- */

typedef struct proto_tls_pem {
	unsigned char *cert, *key, *ca; /* NUL-terminated file contents (mbedTLS wants the NUL) */
	size_t cert_len, key_len, ca_len; /* including the NUL; 0 when absent */
} proto_tls_pem_t;

/*
 * Read cert/key/ca (any may be NULL) and check that they parse and that the key matches the
 * certificate. On error fills err (e.g. "key: does not match certificate") and returns it.
 * Free with proto_tls_pem_free (safe on a zeroed struct).
 */
int proto_tls_pem_load(proto_tls_pem_t *pem, const char *cert_file, const char *key_file,
		       const char *ca_file, char *err, size_t errlen);
void proto_tls_pem_free(proto_tls_pem_t *pem);

/* ---- shared: tickets and cache ------------------------------------------------------- */

typedef struct proto_tls_shared {
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;   /* used only under the ticket context's mutex */
	mbedtls_ssl_ticket_context ticket;
	mbedtls_ssl_cache_context cache;
	bool tickets, cache_on;
} proto_tls_shared_t;

int proto_tls_shared_init(proto_tls_shared_t *sh, const proto_tls_opts_t *o, char *err,
			  size_t errlen);
void proto_tls_shared_free(proto_tls_shared_t *sh);

/* ---- per-thread configuration -------------------------------------------------------- */

typedef struct proto_tls_conf {
	mbedtls_ssl_config conf;
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_x509_crt cert, ca;
	mbedtls_pk_context key;
	int suites[PROTO_TLS_MAX_SUITES + 1];
	mbedtls_ecp_group_id curves[PROTO_TLS_MAX_CURVES + 1];
	char alpn_buf[64];
	const char *alpn[PROTO_TLS_MAX_ALPN + 1];
	const char *server_name;
	bool server;                      /* o->server */
	int refs;                         /* caller's reference count (connections using it) */
} proto_tls_conf_t;

/*
 * Build a thread's configuration from parsed options and PEM bytes; `sh` may be NULL (no
 * tickets/cache, e.g. a client). `o` and `pem` are not kept after return, except
 * o->server_name (kept as a pointer).
 * Errors: -EINVAL with err filled (unknown suite or curve, bad certificate...).
 */
int proto_tls_conf_init(proto_tls_conf_t *c, const proto_tls_opts_t *o, const proto_tls_pem_t *pem,
			proto_tls_shared_t *sh, char *err, size_t errlen);
void proto_tls_conf_free(proto_tls_conf_t *c);

/* ---- per-connection ------------------------------------------------------------------ */

/*
 * Called with ciphertext to transmit. Must take all `len` bytes (write them or buffer them);
 * return 0, or a negative errno to fail the TLS operation in progress.
 */
typedef int (*proto_tls_send_fn)(void *ctx, const uint8_t *p, size_t len);

typedef struct proto_tls_conn {
	mbedtls_ssl_context ssl;
	const proto_tls_conf_t *conf;
	const uint8_t *in;                /* fed ciphertext not yet consumed by mbedTLS */
	size_t in_len;
	proto_tls_send_fn send;
	void *send_ctx;
	int tls_err;                      /* last mbedTLS error code, for logs */
	bool established;
	bool resumed;                     /* server: the handshake resumed a session (ticket or
					   * session-id cache); known once established. Client:
					   * always false (the client library does not resume) */
	bool ready;                       /* mbedtls_ssl_setup done */
} proto_tls_conn_t;

/* Set up (allocates mbedTLS's record buffers, ~33 KiB) or, if already set up with the same
 * conf, reset for a new connection without allocating. 0 or -ENOMEM / -EINVAL. */
int proto_tls_conn_init(proto_tls_conn_t *t, const proto_tls_conf_t *conf, proto_tls_send_fn send,
			void *ctx);
void proto_tls_conn_free(proto_tls_conn_t *t);

/* Offer received ciphertext. The bytes must stay valid until consumed: after the next
 * handshake/read call, proto_tls_unconsumed() says how many are left (the caller keeps them). */
static inline void proto_tls_feed(proto_tls_conn_t *t, const uint8_t *p, size_t len)
{
	t->in = p;
	t->in_len = len;
}
static inline size_t proto_tls_unconsumed(const proto_tls_conn_t *t) { return t->in_len; }

/* Advance the handshake: 0 when established (then `resumed` is known), PROTO_EAGAIN when more
 * input is needed, PROTO_EBADMSG on failure. */
int proto_tls_handshake(proto_tls_conn_t *t);

/* Like proto_tls_handshake, but stops before a step that does public-key crypto (see
 * proto_tls_handshake_costly) and returns PROTO_EBUSY: the caller may run the rest with
 * proto_tls_handshake on another thread (nothing else may touch `t` meanwhile; the send
 * callback is then called on that thread). Resumed handshakes never stop. */
int proto_tls_handshake_cheap(proto_tls_conn_t *t);

/* Is the next handshake step a costly one (ECDHE, signing, or a client's verification)?
 * Server side: writing ServerKeyExchange, or ClientKeyExchange with some of it received. */
bool proto_tls_handshake_costly(const proto_tls_conn_t *t);

/* Decrypt up to cap bytes: >0 bytes, PROTO_EAGAIN (need input), PROTO_ECLOSED, PROTO_EBADMSG.
 * Call again while it returns >0: a record may hold more than cap. */
long proto_tls_read(proto_tls_conn_t *t, void *buf, size_t cap);

/* Encrypt and send all of p (in records of up to 16 KiB, through the send callback).
 * 0 or PROTO_EBADMSG / the send callback's error. */
int proto_tls_write(proto_tls_conn_t *t, const void *p, size_t len);

/* Send close_notify (best effort). */
void proto_tls_close_notify(proto_tls_conn_t *t);

/* Negotiated ALPN protocol or NULL; cipher suite name. */
const char *proto_tls_alpn(const proto_tls_conn_t *t);
const char *proto_tls_suite(const proto_tls_conn_t *t);

/* Text for the last mbedTLS error on this connection (static buffer per thread). */
const char *proto_tls_strerror(int mbedtls_err);

#endif
