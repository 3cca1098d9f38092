/*
 * mbedTLS 2.28 set-up and a callback BIO (proto/tls.h).
 *
 * Public mbedTLS headers only (a test compiles this file with mbedtls/ssl_internal.h made
 * unusable). Two things the offload logic needs have no public getter:
 *   - whether a handshake resumes a session: learnt from our own wrappers of the session
 *     ticket and session cache callbacks, which are public API (a ticket or cache entry that
 *     restores the session is exactly what makes mbedTLS resume);
 *   - the handshake's state, read in one place, hs_state(), see there.
 */
#include "proto/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/ecdsa.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h> /* MBEDTLS_ERR_NET_SEND_FAILED */
#include <mbedtls/version.h>

#include "proto/errors.h"

/* ---- names ------------------------------------------------------------------------- */

/* OpenSSL spellings people will copy from nginx configs, mapped to mbedTLS ids. */
static const struct { const char *name; int id; } suite_names[] = {
	{"ECDHE-ECDSA-AES128-GCM-SHA256", MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
	{"ECDHE-RSA-AES128-GCM-SHA256", MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
	{"ECDHE-ECDSA-AES256-GCM-SHA384", MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
	{"ECDHE-RSA-AES256-GCM-SHA384", MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384},
	{"ECDHE-ECDSA-CHACHA20-POLY1305", MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
	{"ECDHE-RSA-CHACHA20-POLY1305", MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256},
};

static const int default_suites[] = {
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	MBEDTLS_TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	MBEDTLS_TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	MBEDTLS_TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
};

static void set_err(char *err, size_t errlen, const char *what, int rc)
{
	char m[160];

	if (err == NULL || errlen == 0)
		return;
	if (rc < 0 && rc > -0x8000 && rc <= -0x80) {
		mbedtls_strerror(rc, m, sizeof m);
		snprintf(err, errlen, "%s: %s", what, m);
	} else if (rc < 0) {
		snprintf(err, errlen, "%s: %s", what, strerror(-rc));
	} else {
		snprintf(err, errlen, "%s", what);
	}
}

/* Split a comma list in place-free fashion: calls fn for each trimmed item. */
static int each_item(const char *list, int (*fn)(void *ctx, const char *item), void *ctx)
{
	char item[96];
	const char *p = list;

	while (*p != '\0') {
		size_t n = strcspn(p, ",");
		const char *s = p, *e = p + n;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if (e > s) {
			if ((size_t)(e - s) >= sizeof item)
				return -EINVAL;
			memcpy(item, s, (size_t)(e - s));
			item[e - s] = '\0';
			int rc = fn(ctx, item);
			if (rc != 0)
				return rc;
		}
		p += n;
		if (*p == ',')
			p++;
	}
	return 0;
}

struct list_ctx {
	proto_tls_conf_t *c;
	int n;
	const char *bad;
	char badbuf[96];
};

static int add_suite(void *ctx, const char *name)
{
	struct list_ctx *l = ctx;
	int id = 0;

	for (size_t i = 0; i < sizeof suite_names / sizeof suite_names[0]; i++)
		if (strcmp(suite_names[i].name, name) == 0)
			id = suite_names[i].id;
	if (id == 0)
		id = mbedtls_ssl_get_ciphersuite_id(name);
	if (id == 0 || l->n >= PROTO_TLS_MAX_SUITES) {
		snprintf(l->badbuf, sizeof l->badbuf, "%s", name);
		return -EINVAL;
	}
	l->c->suites[l->n++] = id;
	return 0;
}

static int add_curve(void *ctx, const char *name)
{
	struct list_ctx *l = ctx;
	const mbedtls_ecp_curve_info *ci = mbedtls_ecp_curve_info_from_name(name);

	if (ci == NULL || l->n >= PROTO_TLS_MAX_CURVES) {
		snprintf(l->badbuf, sizeof l->badbuf, "%s", name);
		return -EINVAL;
	}
	l->c->curves[l->n++] = ci->grp_id;
	return 0;
}

/* ---- files ------------------------------------------------------------------------- */

static int read_file(const char *path, unsigned char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *buf = NULL;
	long n;

	if (f == NULL)
		return -errno;
	if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || n > (16 << 20) ||
	    fseek(f, 0, SEEK_SET) != 0)
		goto fail;
	buf = malloc((size_t)n + 1);
	if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n)
		goto fail;
	buf[n] = '\0';
	fclose(f);
	*out = buf;
	*len = (size_t)n + 1;
	return 0;
fail:
	free(buf);
	fclose(f);
	return -EIO;
}

int proto_tls_pem_load(proto_tls_pem_t *pem, const char *cert_file, const char *key_file,
		       const char *ca_file, char *err, size_t errlen)
{
	mbedtls_x509_crt crt;
	mbedtls_pk_context pk;
	int rc;

	memset(pem, 0, sizeof *pem);
	if (cert_file != NULL && (rc = read_file(cert_file, &pem->cert, &pem->cert_len)) != 0) {
		set_err(err, errlen, "cert: cannot read", rc);
		goto fail;
	}
	if (key_file != NULL && (rc = read_file(key_file, &pem->key, &pem->key_len)) != 0) {
		set_err(err, errlen, "key: cannot read", rc);
		goto fail;
	}
	if (ca_file != NULL && (rc = read_file(ca_file, &pem->ca, &pem->ca_len)) != 0) {
		set_err(err, errlen, "ca: cannot read", rc);
		goto fail;
	}
	/* Parse once here so a reload with a broken file fails before any worker switches. */
	mbedtls_x509_crt_init(&crt);
	mbedtls_pk_init(&pk);
	rc = 0;
	if (pem->cert != NULL && (rc = mbedtls_x509_crt_parse(&crt, pem->cert, pem->cert_len)) != 0)
		set_err(err, errlen, "cert: cannot parse", rc);
	else if (pem->key != NULL &&
		 (rc = mbedtls_pk_parse_key(&pk, pem->key, pem->key_len, NULL, 0)) != 0)
		set_err(err, errlen, "key: cannot parse", rc);
	else if (pem->cert != NULL && pem->key != NULL &&
		 (rc = mbedtls_pk_check_pair(&crt.pk, &pk)) != 0)
		set_err(err, errlen, "key: does not match certificate", rc);
	mbedtls_x509_crt_free(&crt);
	mbedtls_pk_free(&pk);
	if (rc != 0) {
		rc = -EINVAL;
		goto fail;
	}
	return 0;
fail:
	proto_tls_pem_free(pem);
	return rc;
}

void proto_tls_pem_free(proto_tls_pem_t *pem)
{
	free(pem->cert);
	free(pem->key);
	free(pem->ca);
	memset(pem, 0, sizeof *pem);
}

/* ---- shared ------------------------------------------------------------------------ */

int proto_tls_shared_init(proto_tls_shared_t *sh, const proto_tls_opts_t *o, char *err,
			  size_t errlen)
{
	static const char pers[] = "geokv-tls-shared";
	int rc;

	memset(sh, 0, sizeof *sh);
	mbedtls_entropy_init(&sh->entropy);
	mbedtls_ctr_drbg_init(&sh->drbg);
	mbedtls_ssl_ticket_init(&sh->ticket);
	mbedtls_ssl_cache_init(&sh->cache);
	rc = mbedtls_ctr_drbg_seed(&sh->drbg, mbedtls_entropy_func, &sh->entropy,
				   (const unsigned char *)pers, sizeof pers - 1);
	if (rc != 0) {
		set_err(err, errlen, "tls: drbg seed", rc);
		return -EIO;
	}
	if (o->tickets) {
		rc = mbedtls_ssl_ticket_setup(&sh->ticket, mbedtls_ctr_drbg_random, &sh->drbg,
					      MBEDTLS_CIPHER_AES_256_GCM,
					      o->ticket_lifetime_s ? o->ticket_lifetime_s : 86400);
		if (rc != 0) {
			set_err(err, errlen, "tls: ticket setup", rc);
			return -EIO;
		}
		sh->tickets = true;
	}
	if (o->cache_size >= 0) {
		mbedtls_ssl_cache_set_max_entries(&sh->cache, o->cache_size ? o->cache_size : 10000);
		mbedtls_ssl_cache_set_timeout(&sh->cache,
					      (int)(o->cache_timeout_s ? o->cache_timeout_s : 86400));
		sh->cache_on = true;
	}
	return 0;
}

void proto_tls_shared_free(proto_tls_shared_t *sh)
{
	mbedtls_ssl_cache_free(&sh->cache);
	mbedtls_ssl_ticket_free(&sh->ticket);
	mbedtls_ctr_drbg_free(&sh->drbg);
	mbedtls_entropy_free(&sh->entropy);
}

/* ---- resumption, through the public callbacks ---------------------------------------- */

/* The connection whose handshake step runs on this thread (set around every step, on the
 * loop or on a pool thread); the ticket and cache callbacks run inside that step. */
static _Thread_local proto_tls_conn_t *hs_conn;

static int ticket_parse(void *p_ticket, mbedtls_ssl_session *session, unsigned char *buf,
			size_t len)
{
	int rc = mbedtls_ssl_ticket_parse(p_ticket, session, buf, len);

	if (rc == 0 && hs_conn != NULL)
		hs_conn->resumed = true; /* mbedTLS resumes a session whose ticket parses */
	return rc;
}

#if MBEDTLS_VERSION_MAJOR >= 3
static int cache_get(void *data, unsigned char const *id, size_t id_len,
		     mbedtls_ssl_session *session)
{
	int rc = mbedtls_ssl_cache_get(data, id, id_len, session);
#else
static int cache_get(void *data, mbedtls_ssl_session *session)
{
	int rc = mbedtls_ssl_cache_get(data, session);
#endif
	if (rc == 0 && hs_conn != NULL)
		hs_conn->resumed = true; /* ... and one found in the session-id cache */
	return rc;
}

/*
 * The handshake's state (enum mbedtls_ssl_states). mbedTLS has no getter: 2.28 declares the
 * field in the public mbedtls_ssl_context (ssl.h), 3.x keeps it as MBEDTLS_PRIVATE(state)
 * (and offers only mbedtls_ssl_is_handshake_over()). Deciding which step is costly enough
 * for the pool needs the state, so this is the one place that reads it: port it here.
 */
static int hs_state(const mbedtls_ssl_context *s)
{
#if MBEDTLS_VERSION_MAJOR >= 3
	return s->MBEDTLS_PRIVATE(state);
#else
	return s->state;
#endif
}

/* ---- per-thread conf ----------------------------------------------------------------- */

/*
 * Make an EC key sign in place. mbedTLS 2.28 parses an EC key as MBEDTLS_PK_ECKEY, whose
 * sign wrapper copies the key pair into a fresh ECDSA context for every signature, so the
 * comb table of the generator (MBEDTLS_ECP_FIXED_POINT_OPTIM) is rebuilt and thrown away
 * each time. As MBEDTLS_PK_ECDSA the key's own group keeps the table after the first
 * signature; one signature here builds it before any thread shares the key, so afterwards
 * signing only reads it (pool threads sign concurrently). Same deterministic ECDSA, same
 * blinding: nothing about the signature changes.
 */
static int ecdsa_in_place(mbedtls_pk_context *pk, mbedtls_ctr_drbg_context *drbg)
{
	static const unsigned char h[32];
	unsigned char sig[MBEDTLS_ECDSA_MAX_LEN];
	mbedtls_pk_context e;
	size_t n;
	int rc;

	if (mbedtls_pk_get_type(pk) != MBEDTLS_PK_ECKEY)
		return 0;
	mbedtls_pk_init(&e);
	if ((rc = mbedtls_pk_setup(&e, mbedtls_pk_info_from_type(MBEDTLS_PK_ECDSA))) != 0 ||
	    (rc = mbedtls_ecdsa_from_keypair(mbedtls_pk_ec(e), mbedtls_pk_ec(*pk))) != 0 ||
	    (rc = mbedtls_pk_sign(&e, MBEDTLS_MD_SHA256, h, sizeof h, sig, &n,
				  mbedtls_ctr_drbg_random, drbg)) != 0) {
		mbedtls_pk_free(&e);
		return rc;
	}
	mbedtls_pk_free(pk);
	*pk = e;
	return 0;
}

int proto_tls_conf_init(proto_tls_conf_t *c, const proto_tls_opts_t *o, const proto_tls_pem_t *pem,
			proto_tls_shared_t *sh, char *err, size_t errlen)
{
	static const char pers[] = "geokv-tls";
	struct list_ctx l = {.c = c};
	int rc;

	memset(c, 0, sizeof *c);
	mbedtls_ssl_config_init(&c->conf);
	mbedtls_entropy_init(&c->entropy);
	mbedtls_ctr_drbg_init(&c->drbg);
	mbedtls_x509_crt_init(&c->cert);
	mbedtls_x509_crt_init(&c->ca);
	mbedtls_pk_init(&c->key);
	c->server_name = o->server_name;
	c->server = o->server;

	rc = mbedtls_ctr_drbg_seed(&c->drbg, mbedtls_entropy_func, &c->entropy,
				   (const unsigned char *)pers, sizeof pers - 1);
	if (rc != 0) {
		set_err(err, errlen, "tls: drbg seed", rc);
		goto fail;
	}
	rc = mbedtls_ssl_config_defaults(&c->conf,
					 o->server ? MBEDTLS_SSL_IS_SERVER : MBEDTLS_SSL_IS_CLIENT,
					 MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
	if (rc != 0) {
		set_err(err, errlen, "tls: config defaults", rc);
		goto fail;
	}
	mbedtls_ssl_conf_rng(&c->conf, mbedtls_ctr_drbg_random, &c->drbg);
	mbedtls_ssl_conf_min_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_max_version(&c->conf, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
	mbedtls_ssl_conf_renegotiation(&c->conf, MBEDTLS_SSL_RENEGOTIATION_DISABLED);

	if (o->ciphersuites != NULL && o->ciphersuites[0] != '\0') {
		if (each_item(o->ciphersuites, add_suite, &l) != 0 || l.n == 0) {
			snprintf(err, errlen, "tls: unknown cipher suite %s", l.badbuf);
			rc = -EINVAL;
			goto fail;
		}
	} else {
		for (size_t i = 0; i < sizeof default_suites / sizeof default_suites[0]; i++)
			c->suites[l.n++] = default_suites[i];
	}
	c->suites[l.n] = 0;
	mbedtls_ssl_conf_ciphersuites(&c->conf, c->suites);

	l.n = 0;
	if (o->curves != NULL && o->curves[0] != '\0') {
		if (each_item(o->curves, add_curve, &l) != 0 || l.n == 0) {
			snprintf(err, errlen, "tls: unknown curve %s", l.badbuf);
			rc = -EINVAL;
			goto fail;
		}
	} else {
		c->curves[l.n++] = MBEDTLS_ECP_DP_SECP256R1;
		c->curves[l.n++] = MBEDTLS_ECP_DP_SECP384R1;
	}
	c->curves[l.n] = MBEDTLS_ECP_DP_NONE;
	mbedtls_ssl_conf_curves(&c->conf, c->curves);

	if (o->alpn != NULL && o->alpn[0] != '\0') {
		size_t n = strlen(o->alpn);
		int k = 0;
		char *p;
		if (n >= sizeof c->alpn_buf) {
			snprintf(err, errlen, "tls: alpn list too long");
			rc = -EINVAL;
			goto fail;
		}
		memcpy(c->alpn_buf, o->alpn, n + 1);
		for (p = strtok(c->alpn_buf, ","); p != NULL && k < PROTO_TLS_MAX_ALPN;
		     p = strtok(NULL, ","))
			c->alpn[k++] = p;
		c->alpn[k] = NULL;
		if ((rc = mbedtls_ssl_conf_alpn_protocols(&c->conf, c->alpn)) != 0) {
			set_err(err, errlen, "tls: alpn", rc);
			goto fail;
		}
	}

	if (pem->ca != NULL) {
		if ((rc = mbedtls_x509_crt_parse(&c->ca, pem->ca, pem->ca_len)) != 0) {
			set_err(err, errlen, "ca: cannot parse", rc);
			goto fail;
		}
		mbedtls_ssl_conf_ca_chain(&c->conf, &c->ca, NULL);
	}
	mbedtls_ssl_conf_authmode(&c->conf, o->verify_peer ? MBEDTLS_SSL_VERIFY_REQUIRED
							   : MBEDTLS_SSL_VERIFY_NONE);
	if (pem->cert != NULL && pem->key != NULL) {
		if ((rc = mbedtls_x509_crt_parse(&c->cert, pem->cert, pem->cert_len)) != 0) {
			set_err(err, errlen, "cert: cannot parse", rc);
			goto fail;
		}
		if ((rc = mbedtls_pk_parse_key(&c->key, pem->key, pem->key_len, NULL, 0)) != 0) {
			set_err(err, errlen, "key: cannot parse", rc);
			goto fail;
		}
		if ((rc = ecdsa_in_place(&c->key, &c->drbg)) != 0) {
			set_err(err, errlen, "key: ecdsa set-up", rc);
			goto fail;
		}
		if ((rc = mbedtls_ssl_conf_own_cert(&c->conf, &c->cert, &c->key)) != 0) {
			set_err(err, errlen, "tls: own cert", rc);
			goto fail;
		}
	} else if (o->server) {
		snprintf(err, errlen, "tls: a server needs a certificate and a key");
		rc = -EINVAL;
		goto fail;
	}
	if (o->server && sh != NULL) {
		if (sh->tickets)
			mbedtls_ssl_conf_session_tickets_cb(&c->conf, mbedtls_ssl_ticket_write,
							    ticket_parse, &sh->ticket);
		if (sh->cache_on)
			mbedtls_ssl_conf_session_cache(&c->conf, &sh->cache, cache_get,
						       mbedtls_ssl_cache_set);
	}
	return 0;
fail:
	proto_tls_conf_free(c);
	return rc < 0 && rc > -4096 ? rc : -EINVAL;
}

void proto_tls_conf_free(proto_tls_conf_t *c)
{
	mbedtls_ssl_config_free(&c->conf);
	mbedtls_x509_crt_free(&c->cert);
	mbedtls_x509_crt_free(&c->ca);
	mbedtls_pk_free(&c->key);
	mbedtls_ctr_drbg_free(&c->drbg);
	mbedtls_entropy_free(&c->entropy);
}

/* ---- per-connection ------------------------------------------------------------------ */

static int bio_send(void *ctx, const unsigned char *p, size_t len)
{
	proto_tls_conn_t *t = ctx;
	int rc = t->send(t->send_ctx, p, len);

	return rc == 0 ? (int)len : MBEDTLS_ERR_NET_SEND_FAILED;
}

static int bio_recv(void *ctx, unsigned char *p, size_t len)
{
	proto_tls_conn_t *t = ctx;
	size_t n = len < t->in_len ? len : t->in_len;

	if (n == 0)
		return MBEDTLS_ERR_SSL_WANT_READ;
	memcpy(p, t->in, n);
	t->in += n;
	t->in_len -= n;
	return (int)n;
}

int proto_tls_conn_init(proto_tls_conn_t *t, const proto_tls_conf_t *conf, proto_tls_send_fn send,
			void *ctx)
{
	int rc;

	if (t->ready && t->conf == conf) {
		/* Reuses the record buffers: no allocation for a pooled connection. */
		rc = mbedtls_ssl_session_reset(&t->ssl);
	} else {
		if (t->ready)
			mbedtls_ssl_free(&t->ssl);
		t->ready = false;
		mbedtls_ssl_init(&t->ssl);
		rc = mbedtls_ssl_setup(&t->ssl, &conf->conf);
		if (rc == 0 && conf->server_name != NULL)
			rc = mbedtls_ssl_set_hostname(&t->ssl, conf->server_name);
	}
	if (rc != 0) {
		mbedtls_ssl_free(&t->ssl);
		t->ready = false;
		return rc == MBEDTLS_ERR_SSL_ALLOC_FAILED ? -ENOMEM : -EINVAL;
	}
	t->ready = true;
	t->conf = conf;
	t->in = NULL;
	t->in_len = 0;
	t->send = send;
	t->send_ctx = ctx;
	t->tls_err = 0;
	t->established = t->resumed = false;
	mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
	return 0;
}

void proto_tls_conn_free(proto_tls_conn_t *t)
{
	if (t->ready)
		mbedtls_ssl_free(&t->ssl);
	t->ready = false;
	t->conf = NULL;
}

static int map_err(proto_tls_conn_t *t, int rc)
{
	if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
		return PROTO_EAGAIN;
	if (rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
		return PROTO_ECLOSED;
	t->tls_err = rc;
	return PROTO_EBADMSG;
}

bool proto_tls_handshake_costly(const proto_tls_conn_t *t)
{
	int st = hs_state(&t->ssl);

	/* A resumed handshake has no public-key step (and never reaches these states). */
	if (t->established || t->resumed || t->conf == NULL)
		return false;
	if (t->conf->server) {
		/* ServerKeyExchange: ECDHE key generation and the signature; ClientKeyExchange:
		 * the ECDHE shared secret. Reading the client's message only pays off once some
		 * of it is here (else the step just asks for input). */
		if (st == MBEDTLS_SSL_SERVER_KEY_EXCHANGE)
			return true;
		return st == MBEDTLS_SSL_CLIENT_KEY_EXCHANGE && t->in_len > 0;
	}
	/* Client: verifying the server's chain and signature, and its own ECDHE. */
	return st == MBEDTLS_SSL_SERVER_CERTIFICATE || st == MBEDTLS_SSL_SERVER_KEY_EXCHANGE ||
	       st == MBEDTLS_SSL_CLIENT_KEY_EXCHANGE;
}

static int handshake_run(proto_tls_conn_t *t, bool stop_costly)
{
	int rc = 0;

	if (t->established)
		return 0;
	while (hs_state(&t->ssl) != MBEDTLS_SSL_HANDSHAKE_OVER) {
		if (stop_costly && proto_tls_handshake_costly(t))
			return PROTO_EBUSY;
		hs_conn = t; /* for ticket_parse / cache_get, called inside the step */
		rc = mbedtls_ssl_handshake_step(&t->ssl);
		hs_conn = NULL;
		if (rc != 0)
			return map_err(t, rc);
	}
	t->established = true;
	return 0;
}

int proto_tls_handshake(proto_tls_conn_t *t) { return handshake_run(t, false); }

int proto_tls_handshake_cheap(proto_tls_conn_t *t) { return handshake_run(t, true); }

long proto_tls_read(proto_tls_conn_t *t, void *buf, size_t cap)
{
	int rc = mbedtls_ssl_read(&t->ssl, buf, cap);

	if (rc > 0)
		return rc;
	if (rc == 0)
		return PROTO_ECLOSED;
	return map_err(t, rc);
}

int proto_tls_write(proto_tls_conn_t *t, const void *p, size_t len)
{
	const unsigned char *s = p;

	while (len > 0) {
		int rc = mbedtls_ssl_write(&t->ssl, s, len);
		if (rc <= 0) {
			/* Our send callback never blocks, so WANT_WRITE here is a real failure. */
			t->tls_err = rc;
			return PROTO_EBADMSG;
		}
		s += rc;
		len -= (size_t)rc;
	}
	return 0;
}

void proto_tls_close_notify(proto_tls_conn_t *t)
{
	if (t->ready && t->established)
		(void)mbedtls_ssl_close_notify(&t->ssl);
}

const char *proto_tls_alpn(const proto_tls_conn_t *t)
{
	return mbedtls_ssl_get_alpn_protocol(&t->ssl);
}

const char *proto_tls_suite(const proto_tls_conn_t *t)
{
	return mbedtls_ssl_get_ciphersuite(&t->ssl);
}

const char *proto_tls_strerror(int mbedtls_err)
{
	static _Thread_local char buf[128];

	mbedtls_strerror(mbedtls_err, buf, sizeof buf);
	return buf;
}
