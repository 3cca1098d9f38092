/*
 * geokv client library.
 *
 * What it is: a client for the frame protocol of proto/proto.h, in two layers.
 *
 *   Async (kvc_client_t): runs on the caller's libuv loop. Connects to one of a list of
 *   servers with the HELLO handshake, pipelines requests on one connection keyed by request
 *   id, calls each request's callback exactly once with a status and a view of the response
 *   body. Reconnects and fails over along the server list, follows PROTO_ENOTLEADER leader
 *   hints, times requests out, and bounds the requests outstanding (backpressure:
 *   kvc_send() answers PROTO_EBUSY when max_inflight are outstanding).
 *
 *   Blocking (kvc_t): one call, one answer, on a private loop; for the CLI, tests and
 *   simple programs. Includes a pipelined batch loader (kvc_loader_*).
 *
 * What it is not: thread-safe. A kvc_client_t belongs to the thread running its loop; a
 * kvc_t to one thread at a time. TLS when kvc_opts_t.tls_ca is set.
 *
 * Retry rules (why a request is or is not resent):
 *   - a request not yet written to a socket is always kept for the next connection;
 *   - a read, or a write refused with PROTO_ENOTLEADER (not applied), is resent;
 *   - a write that was written to a connection that then closed has an unknown outcome: it
 *     fails with PROTO_ECLOSED, unless the caller marked it KVC_F_IDEMPOTENT (e.g. a loader's
 *     PUTs: doing them twice gives the same values, at new revisions).
 *
 * Memory: requests (kvc_req_t) are caller-allocated, like uv_write_t, and the bytes a
 * request's op points to (bucket, key, value, batch) must stay valid until its callback,
 * because a retry re-encodes them. Each connection owns a read buffer and two write buffers
 * that grow to the largest frame seen and are reused: nothing is allocated per request.
 *
 * Errors: 0, negative errno (libuv's, e.g. UV_ECONNREFUSED), PROTO_E* or KV_E* as the server
 * sent them; geokv_strerror() names each.
 */
#ifndef GEOKV_PROTO_CLIENT_H
#define GEOKV_PROTO_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "proto/proto.h"

#define KVC_DEFAULT_PORT 7400

typedef struct kvc_opts {
	const char *cluster;          /* cluster id sent in HELLO; NULL/"" = any */
	const char *token;            /* credentials sent in HELLO; NULL = none */
	uint32_t connect_timeout_ms;  /* per connection attempt incl. HELLO; 0 = 2000 */
	uint32_t request_timeout_ms;  /* from kvc_send to the answer; 0 = 10000 */
	uint32_t max_inflight;        /* requests outstanding (queued + sent); 0 = 1024 */
	uint32_t max_frame;           /* largest response accepted; 0 = PROTO_DEFAULT_MAX_FRAME */
	uint32_t max_redirects;       /* NOTLEADER hops per request; 0 = 5 */
	uint32_t connect_rounds;      /* full passes over the server list before queued requests
	                               * fail with the last connect error; 0 = 2 */
	/* TLS (TLS 1.2, mbedTLS via proto/tls.h): on when tls_ca is set. The server's certificate
	 * must chain to tls_ca and name the host as written in the server list (DNS name or IP
	 * address). tls_cert/tls_key: a client certificate, for servers that ask for one. */
	const char *tls_ca;           /* CA file (PEM); NULL = plain TCP */
	const char *tls_cert;         /* client certificate chain (PEM) or NULL */
	const char *tls_key;          /* its private key (PEM) */
	bool stale;                   /* reads served from the member's local copy (PROTO_F_STALE):
	                               * faster, any member, but may miss the latest writes */
} kvc_opts_t;

/* ---- async API ---------------------------------------------------------------------- */

typedef struct kvc_client kvc_client_t;
typedef struct kvc_req kvc_req_t;

/* What a callback sees. Views are valid only during the callback. */
typedef struct kvc_resp {
	uint8_t op;                   /* the request's op */
	const uint8_t *body;          /* status 0: the RESP body (decode by op, proto.h) */
	uint32_t len;
	proto_error_t err;            /* status from a server ERROR: its message/leader/index */
} kvc_resp_t;

/*
 * Called exactly once per accepted kvc_send. status: 0 (resp->body is the RESP payload), a
 * server code (KV_E* / PROTO_E*, resp->err filled), or a local one: PROTO_ETIMEDOUT,
 * PROTO_ECLOSED (outcome unknown, or the client is closing), a connect error (negative
 * errno) when no server could be reached, PROTO_EBADMSG when the server broke the protocol.
 * The request may be reused or freed from inside the callback.
 */
typedef void (*kvc_cb)(kvc_req_t *req, int status, const kvc_resp_t *resp);

enum { KVC_F_IDEMPOTENT = 1 };    /* the write may be resent after a connection loss */

/* Caller-allocated; fields below `data` are private. */
struct kvc_req {
	void *data;                   /* for the caller */
	/* private */
	proto_op_t op;
	kvc_cb cb;
	kvc_client_t *client;
	kvc_req_t *next, *prev;
	uint64_t id;
	uint64_t deadline;            /* uv_now() ms */
	uint32_t redirects;
	uint32_t slot;
	unsigned flags;
	bool sent;
	bool active;
};

/*
 * Create a client on `loop` for `servers` ("host:port[,host:port...]", port defaults to
 * KVC_DEFAULT_PORT, IPv6 as "[::1]:7400"). Does not connect until the first request.
 * opts may be NULL (defaults); its strings are copied, TLS files are read here.
 * Returns 0, -EINVAL (empty or malformed server list), PROTO_ETLS (a TLS file cannot be read
 * or parsed, or tls_cert without tls_key; proto_tls_pem_load on the same files says why),
 * -ENOMEM.
 */
int kvc_client_new(uv_loop_t *loop, const char *servers, const kvc_opts_t *opts,
		   kvc_client_t **out);

/*
 * Queue `op` (any op, incl. a BATCH built with proto_batch_*: pass op->count and op->batch)
 * and call cb with the answer. The bytes op points to must stay valid until cb.
 * flags: 0 or KVC_F_IDEMPOTENT. Returns 0 (cb will be called), PROTO_EBUSY (max_inflight
 * outstanding: retry from a callback), PROTO_ETOOBIG (op larger than max_frame),
 * PROTO_ECLOSED (client closing), PROTO_EBADTYPE (unknown op). On error cb is not called.
 */
int kvc_send(kvc_client_t *c, kvc_req_t *req, const proto_op_t *op, unsigned flags, kvc_cb cb);

/* Requests outstanding (queued or sent). */
uint32_t kvc_client_inflight(const kvc_client_t *c);

/* The server the client is connected to ("host:port"), or NULL. Valid until the next loop run. */
const char *kvc_client_server(const kvc_client_t *c);

/*
 * Close: every outstanding request's cb is called with PROTO_ECLOSED (before this returns),
 * then the connection is closed; close_cb (may be NULL) runs once every handle is closed,
 * and the client is freed after it. Do not use c after calling this.
 */
void kvc_client_close(kvc_client_t *c, void (*close_cb)(void *arg), void *arg);

/*
 * TLS: with kvc_opts_t.tls_ca, each connection runs a TLS 1.2 handshake (proto/tls.h's
 * callback BIO between the uv_tcp_t and the frame reader/writer) before HELLO, verifying the
 * server's certificate against the CA and the host name from the server list. A failed
 * handshake or certificate check fails the queued requests with PROTO_ETLS at once (every
 * server of the list would be checked against the same CA); kvc_client_errmsg() says why.
 * A server that requires TLS answers a plain client PROTO_ETLS too.
 */

/* Why the last connection failed, when the client knows more than the code (a TLS
 * handshake error, a server's refusal of HELLO): "" otherwise. Valid until the next loop run. */
const char *kvc_client_errmsg(const kvc_client_t *c);

/* ---- blocking API ------------------------------------------------------------------- */

typedef struct kvc kvc_t;

/*
 * Open a blocking client (own private loop; connects lazily on the first call).
 * Returns 0 and *out, -EINVAL for a malformed server list, -ENOMEM.
 */
int kvc_open(kvc_t **out, const char *servers, const kvc_opts_t *opts);
void kvc_close(kvc_t *k);

/*
 * The last server ERROR's message ("" when none, or when the last error was local), and for
 * KV_EBATCH the index of the failing op in its batch. Valid until the next call on k.
 */
const char *kvc_errmsg(const kvc_t *k);
uint32_t kvc_err_index(const kvc_t *k);

/*
 * Writes. bucket and key are NUL-terminated; they and the value are checked by the server
 * (KV_EBADBUCKET, KV_EBADKEY, KV_ETOOBIG, KV_ENOBUCKET). *rev (may be NULL) receives the
 * revision of the write.
 *   create: KV_EEXIST when the key has a live value.
 *   update: KV_EREVISION unless the key's last revision is expect_rev.
 *   delete/purge: expect_rev 0 = any; KV_EREVISION otherwise on mismatch.
 */
int kvc_put(kvc_t *k, const char *bucket, const char *key, const void *val, size_t len,
	    uint64_t *rev);
int kvc_create(kvc_t *k, const char *bucket, const char *key, const void *val, size_t len,
	       uint64_t *rev);
int kvc_update(kvc_t *k, const char *bucket, const char *key, const void *val, size_t len,
	       uint64_t expect_rev, uint64_t *rev);
int kvc_delete(kvc_t *k, const char *bucket, const char *key, uint64_t expect_rev,
	       uint64_t *rev);
int kvc_purge(kvc_t *k, const char *bucket, const char *key, uint64_t expect_rev,
	      uint64_t *rev);

/*
 * The key's latest value (rev 0) or its value at `rev`. KV_ENOTFOUND when absent/deleted.
 * rec's views are valid until the next call on k.
 */
int kvc_get(kvc_t *k, const char *bucket, const char *key, uint64_t rev, proto_rec_t *rec);

/*
 * Lists page through the server's answers (limit per page, 0 = server default) and call fn
 * for each item until done or fn returns non-zero (then that value is returned). Item views
 * are valid during fn only.
 */
typedef int (*kvc_key_fn)(void *ctx, const proto_bytes_t *key);
typedef int (*kvc_rec_fn)(void *ctx, const proto_rec_t *rec);
typedef int (*kvc_bucket_fn)(void *ctx, const proto_bucket_info_t *info);
int kvc_keys(kvc_t *k, const char *bucket, const char *prefix, kvc_key_fn fn, void *ctx);
int kvc_history(kvc_t *k, const char *bucket, const char *key, kvc_rec_fn fn, void *ctx);
int kvc_bucket_list(kvc_t *k, kvc_bucket_fn fn, void *ctx);

/* Buckets. cfg NULL = defaults. KV_EBUCKETEXISTS, KV_EBADCONFIG, KV_ENOBUCKET. */
int kvc_bucket_add(kvc_t *k, const char *bucket, const proto_bucket_cfg_t *cfg, uint64_t *rev);
int kvc_bucket_info(kvc_t *k, const char *bucket, proto_bucket_info_t *info); /* views until next call */
int kvc_bucket_del(kvc_t *k, const char *bucket, uint64_t *rev);

int kvc_status(kvc_t *k, proto_status_t *st); /* views until next call */
/* The member's content checksum: a full scan of its store (like etcdctl endpoint hashkv). */
int kvc_hash(kvc_t *k, proto_hash_t *h);

/* Any op, answered raw: *body (valid until the next call on k) is the RESP payload. */
int kvc_call(kvc_t *k, const proto_op_t *op, const uint8_t **body, uint32_t *len);

/* ---- pipelined loader --------------------------------------------------------------- */

/*
 * Puts many keys into one bucket fast: ops are packed into batches of batch_ops (or
 * batch_bytes), and up to `window` batches are in flight at once. Each batch is atomic
 * and acknowledged only once durable on the server; kvc_loader_put blocks (running k's
 * loop) while the window is full.
 *
 * Exactly once: each batch is an SBATCH numbered in a session of its own (a random 64-bit
 * client id, batches 1, 2, 3, ...), which the group applies at most once (core/kv_apply.c
 * "sessions"). So a batch whose outcome is unknown (a lost connection, a leader killed, a
 * timeout while the group elects) is resent, every 200 ms for up to retry_ms, without ever
 * being applied twice; a duplicate is answered as done (rev 0). With a key repeated in the
 * input, the later value wins unless a failover reordered batches in flight together.
 *
 * The first error stops the loader: later kvc_loader_put calls return it at once, and
 * stats.failed_tag names the op that failed (the `tag` given to kvc_loader_put, e.g. a
 * line number) when the server said which one (KV_EBATCH), else the first op of the batch.
 */
typedef struct kvc_loader kvc_loader_t;

typedef struct kvc_load_opts {
	uint32_t batch_ops;           /* ops per batch; 0 = 1000 */
	uint32_t batch_bytes;         /* encoded bytes per batch; 0 = 4 MiB */
	uint32_t window;              /* batches in flight; 0 = 4 */
	uint32_t retry_ms;            /* resend a batch whose outcome is unknown (lost connection,
	                               * timeout, no leader) for this long; 0 = 30000 */
	/* Resuming a session (geokv load --resume): the same client id, the same ops in the
	 * same order and the same batch_ops/batch_bytes give the same batches with the same
	 * numbers; batches whose every tag is <= skip_through are numbered but not sent (known
	 * acknowledged), the rest are sent and the group drops those it had applied. */
	uint64_t client;              /* session id; 0 = a random one */
	uint64_t skip_through;        /* tags (line numbers) known acknowledged; 0 = none */
} kvc_load_opts_t;

typedef struct kvc_load_stats {
	uint64_t acked;               /* ops acknowledged (durable) */
	uint64_t batches;             /* batches acknowledged */
	uint64_t last_rev;            /* highest revision acknowledged */
	int err;                      /* first error, 0 if none */
	uint64_t failed_tag;          /* tag of the op that failed (see above) */
	int failed_status;            /* that op's own error for KV_EBATCH, else err */
	/* With tags that increase (line numbers): every op tagged <= acked_through is
	 * acknowledged (a checkpoint may say so), and first_unacked is the lowest tag of an op
	 * that failed or was never sent (0 = none so far). Batches are answered in any order, so
	 * ops after first_unacked may be acknowledged too; none before it is missing. */
	uint64_t acked_through;
	uint64_t first_unacked;
	uint64_t retries;             /* batches resent after an unknown outcome */
} kvc_load_stats_t;

/* The session id (the client id of its SBATCHes): what a checkpoint records. */
uint64_t kvc_loader_client(const kvc_loader_t *l);

/* bucket is copied. Returns 0, -ENOMEM, KV_EBADBUCKET (name breaks the rules). */
int kvc_loader_new(kvc_t *k, const char *bucket, const kvc_load_opts_t *o, kvc_loader_t **out);
/*
 * Add one PUT (key and value are copied). Returns 0, the loader's first error, KV_EBADKEY or
 * KV_ETOOBIG (refused locally, loader not stopped: the caller decides).
 */
int kvc_loader_put(kvc_loader_t *l, const void *key, size_t klen, const void *val, size_t vlen,
		   uint64_t tag);
/* Send what is left, wait for every batch, fill *st (may be NULL), free l. Returns st->err. */
int kvc_loader_finish(kvc_loader_t *l, kvc_load_stats_t *st);
/* Current counters (acked so far), e.g. for progress output. */
void kvc_loader_stats(const kvc_loader_t *l, kvc_load_stats_t *st);

#endif
