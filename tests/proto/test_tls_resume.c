/*
 * proto/tls.c: resumption is detected through public mbedTLS API only (our wrappers of the
 * ticket and session-cache callbacks), and the offload hook (proto_tls_handshake_cheap)
 * stops before the public-key steps of a full handshake and never in a resumed one.
 *
 * A server and a client connection talk through two in-memory pipes; the client keeps its
 * session (mbedtls_ssl_get_session) and offers it on the next connection.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "proto/errors.h"
#include "proto/tls.h"

static const char cert_pem[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBgDCCASegAwIBAgIUehdBHT72TW9r1mYFfIsIVMUj7f4wCgYIKoZIzj0EAwIw\n"
	"FTETMBEGA1UEAwwKZ2Vva3YgdGVzdDAgFw0yNjEyMDMxMTQyMDVaGA8yMTI2MTEw\n"
	"OTExNDIwNVowFTETMBEGA1UEAwwKZ2Vva3YgdGVzdDBZMBMGByqGSM49AgEGCCqG\n"
	"SM49AwEHA0IABHGYDNNuBAwPiCY1GSJEuTFF67pJ2+lWabm3JxADyZtKNDXzu3dR\n"
	"+kQ89Yh11K7HfddlgNFMX/wMMmMMLmAjaRGjUzBRMB0GA1UdDgQWBBSGHAhzWSa1\n"
	"AZWUODeKIpd7dJb9dTAfBgNVHSMEGDAWgBSGHAhzWSa1AZWUODeKIpd7dJb9dTAP\n"
	"BgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIA58O0q0dbzV0pGRuJvA\n"
	"cp6+Aow5YR0VrFDFkTTfGh6LAiBA7rdfgk8NwTrnrk/MicXOHMXqkw1xqLL0R2Gv\n"
	"OqzEBA==\n"
	"-----END CERTIFICATE-----\n";
static const char key_pem[] =
	"-----BEGIN EC PRIVATE KEY-----\n"
	"MHcCAQEEIGBGNrsgvLaun6gmyNieGCX+q1mvV92by6yo3fhwftBfoAoGCCqGSM49\n"
	"AwEHoUQDQgAEcZgM024EDA+IJjUZIkS5MUXruknb6VZpubcnEAPJm0o0NfO7d1H6\n"
	"RDz1iHXUrsd912WA0Uxf/AwyYwwuYCNpEQ==\n"
	"-----END EC PRIVATE KEY-----\n";

typedef struct pipe_buf {
	uint8_t b[1 << 16];
	size_t len;
} pipe_buf_t;

static int to_pipe(void *ctx, const uint8_t *p, size_t n)
{
	pipe_buf_t *q = ctx;

	cr_assert(q->len + n <= sizeof q->b);
	memcpy(q->b + q->len, p, n);
	q->len += n;
	return 0;
}

/* One side's turn: feed its inbox, run the handshake (the cheap variant on the server, as
 * the gateway does, finishing a costly step right away and counting it), keep what is left. */
static int turn(proto_tls_conn_t *t, pipe_buf_t *in, bool cheap, int *costly)
{
	int rc;

	proto_tls_feed(t, in->b, in->len);
	rc = cheap ? proto_tls_handshake_cheap(t) : proto_tls_handshake(t);
	while (rc == PROTO_EBUSY) {
		(*costly)++;
		cr_assert(proto_tls_handshake_costly(t));
		rc = proto_tls_handshake(t);
	}
	size_t left = proto_tls_unconsumed(t);
	memmove(in->b, t->in, left);
	in->len = left;
	return rc;
}

typedef struct server {
	proto_tls_shared_t sh;
	proto_tls_conf_t conf;
} server_t;

static void server_init(server_t *s, bool tickets, int cache_size)
{
	proto_tls_opts_t o = {.server = true, .tickets = tickets, .cache_size = cache_size,
			      .alpn = "http/1.1"};
	proto_tls_pem_t pem = {.cert = (unsigned char *)cert_pem, .cert_len = sizeof cert_pem,
			       .key = (unsigned char *)key_pem, .key_len = sizeof key_pem};
	char err[256] = "";

	cr_assert_eq(proto_tls_shared_init(&s->sh, &o, err, sizeof err), 0, "%s", err);
	cr_assert_eq(proto_tls_conf_init(&s->conf, &o, &pem, &s->sh, err, sizeof err), 0, "%s", err);
}

static void server_free(server_t *s)
{
	proto_tls_conf_free(&s->conf);
	proto_tls_shared_free(&s->sh);
}

static proto_tls_conf_t client_conf;

static void client_init(void)
{
	proto_tls_opts_t o = {.server = false};
	proto_tls_pem_t pem = {0};
	char err[256] = "";

	cr_assert_eq(proto_tls_conf_init(&client_conf, &o, &pem, NULL, err, sizeof err), 0, "%s", err);
}

typedef struct result {
	bool resumed;
	int costly;          /* server steps proto_tls_handshake_cheap stopped before */
} result_t;

/* A whole handshake; `offer` (may be NULL) is the session the client offers, `keep` (may be
 * NULL) receives the client's session afterwards. */
static result_t handshake(server_t *s, const mbedtls_ssl_session *offer, mbedtls_ssl_session *keep)
{
	static pipe_buf_t to_srv, to_cli;
	proto_tls_conn_t srv = {0}, cli = {0};
	result_t r = {0};
	int client_costly = 0, i;

	to_srv.len = to_cli.len = 0;
	cr_assert_eq(proto_tls_conn_init(&srv, &s->conf, to_pipe, &to_cli), 0);
	cr_assert_eq(proto_tls_conn_init(&cli, &client_conf, to_pipe, &to_srv), 0);
	if (offer != NULL)
		cr_assert_eq(mbedtls_ssl_set_session(&cli.ssl, offer), 0);
	for (i = 0; i < 50 && !(srv.established && cli.established); i++) {
		int rc = turn(&cli, &to_cli, false, &client_costly);
		cr_assert(rc == 0 || rc == PROTO_EAGAIN, "client: %d %s", rc,
			  proto_tls_strerror(cli.tls_err));
		rc = turn(&srv, &to_srv, true, &r.costly);
		cr_assert(rc == 0 || rc == PROTO_EAGAIN, "server: %d %s", rc,
			  proto_tls_strerror(srv.tls_err));
	}
	cr_assert(srv.established && cli.established, "handshake did not finish");
	r.resumed = srv.resumed;
	cr_assert(!cli.resumed); /* documented: client side never says resumed */
	if (keep != NULL) {
		mbedtls_ssl_session_init(keep);
		cr_assert_eq(mbedtls_ssl_get_session(&cli.ssl, keep), 0);
	}
	proto_tls_conn_free(&srv);
	proto_tls_conn_free(&cli);
	return r;
}

Test(tls_resume, full_then_resumed_by_ticket)
{
	server_t s;
	mbedtls_ssl_session sess;
	result_t a, b;

	client_init();
	server_init(&s, true, -1); /* tickets only */
	a = handshake(&s, NULL, &sess);
	cr_assert(!a.resumed);
	cr_assert_geq(a.costly, 1, "the full handshake never stopped before a public-key step");
	b = handshake(&s, &sess, NULL);
	cr_assert(b.resumed, "ticket resumption not detected");
	cr_assert_eq(b.costly, 0, "a resumed handshake was offered to the pool");
	mbedtls_ssl_session_free(&sess);
	server_free(&s);
	proto_tls_conf_free(&client_conf);
}

Test(tls_resume, resumed_by_session_id_cache_without_tickets)
{
	server_t s;
	mbedtls_ssl_session sess;
	result_t a, b;

	client_init();
	server_init(&s, false, 100);
	a = handshake(&s, NULL, &sess);
	cr_assert(!a.resumed);
	b = handshake(&s, &sess, NULL);
	cr_assert(b.resumed, "session-id resumption not detected");
	cr_assert_eq(b.costly, 0);
	mbedtls_ssl_session_free(&sess);
	server_free(&s);
	proto_tls_conf_free(&client_conf);
}

Test(tls_resume, a_session_the_server_does_not_know_is_a_full_handshake)
{
	server_t s1, s2;
	mbedtls_ssl_session sess;
	result_t b;

	client_init();
	server_init(&s1, true, 100);
	server_init(&s2, true, 100); /* other ticket keys, empty cache */
	(void)handshake(&s1, NULL, &sess);
	b = handshake(&s2, &sess, NULL);
	cr_assert(!b.resumed);
	cr_assert_geq(b.costly, 1);
	mbedtls_ssl_session_free(&sess);
	server_free(&s1);
	server_free(&s2);
	proto_tls_conf_free(&client_conf);
}

Test(tls_resume, no_tickets_no_cache_never_resumes)
{
	server_t s;
	mbedtls_ssl_session sess;
	result_t b;

	client_init();
	server_init(&s, false, -1);
	(void)handshake(&s, NULL, &sess);
	b = handshake(&s, &sess, NULL);
	cr_assert(!b.resumed);
	cr_assert_geq(b.costly, 1);
	mbedtls_ssl_session_free(&sess);
	server_free(&s);
	proto_tls_conf_free(&client_conf);
}
