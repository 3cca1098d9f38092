/*
 * geokv-gateway internals, shared by the files of gateway/ (no other folder includes this).
 *
 * Shape: main.c reads the configuration, loads certificates and starts N worker threads
 * (worker.c), each with its own libuv loop and its own SO_REUSEPORT listener, read
 * transaction, node-status mapping and TLS configuration; the only things the threads share
 * are the read-only store handle (a generation, replaced when the node swaps state/: see
 * gw_storegen_t), session-ticket keys and cache (proto_tls_shared_t), and each
 * other's counters (read at /metrics). A connection (conn.c) lives on one worker: it feeds
 * bytes through TLS (proto/tls.h) into the HTTP parser (http.c), asks route.c what was asked
 * for and respond.c to answer it into the worker's output staging buffer (out.c). The
 * public-key steps of full TLS handshakes run on libuv's thread pool with the connection
 * pinned (conn.c); they use the worker's TLS configuration, which is read-only or locked.
 *
 * Pure parts with no I/O, used by the unit tests and the fuzz target: http.c, route.c,
 * out.c, and respond.c when given a NULL store.
 */
#ifndef GEOKV_GATEWAY_GW_H
#define GEOKV_GATEWAY_GW_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <llhttp.h>
#include <uv.h>

#include "core/kv.h"
#include "core/nodestat.h"
#include "proto/metrics.h"
#include "proto/tls.h"

/* ---- configuration (config.c) ---------------------------------------------------------- */

typedef struct gw_limits {
	uint32_t max_header_bytes;   /* request line + headers; over it: 431 */
	uint32_t max_uri;            /* request target bytes; over it: 414 */
	uint32_t max_headers;        /* header lines; over it: 431 */
	uint32_t max_body;           /* bytes of request body accepted (and ignored); over: 413 */
} gw_limits_t;

typedef struct gw_config {
	char *config_file;
	char *listen;                /* "HOST:PORT" */
	char *metrics_listen;        /* "HOST:PORT" of a plain-HTTP listener for /metrics; NULL = none */
	bool metrics_on_public;      /* also answer /metrics on the public listener (default false) */
	char *data;                  /* the node's state/ directory */
	char *bucket;                /* default bucket */
	bool plain;                  /* plain HTTP instead of TLS */
	char *cert, *key;
	char *ciphersuites, *curves, *alpn;
	bool tickets;
	uint32_t ticket_lifetime_s;
	int cache_size;
	int handshake_threads;       /* full-handshake pool; 0 = one per core, -1 = on the loop */
	uint32_t workers;            /* 0 = one per core */
	uint32_t max_conns;          /* whole process */
	uint32_t backlog;
	gw_limits_t lim;
	uint32_t max_req_rate;       /* requests per second per connection; 0 = unlimited */
	uint32_t handshake_timeout_ms, header_timeout_ms, idle_timeout_ms, write_timeout_ms;
	uint32_t min_rev_wait_ms;    /* default wait when ?min_rev has no wait_ms */
	uint32_t min_rev_max_wait_ms;
	uint32_t health_max_lag_ms, health_max_contact_age_ms;
	uint64_t health_max_lag_entries;
	bool health_require_node;    /* false: no nodestat file is fine (a static store) */
	uint32_t shutdown_grace_ms;
	char *log_level;
} gw_config_t;

void gw_config_defaults(gw_config_t *c);
/* Parse argv (and the -c file, read first so flags override it). 0, 1 for --help (printed),
 * or -EINVAL with a message logged. */
int gw_config_load(gw_config_t *c, int argc, char **argv);
void gw_config_free(gw_config_t *c);

/* ---- HTTP request parsing (http.c) ------------------------------------------------------ */

/* One parsed request. Pointers point into the gw_http_t buffer: valid until gw_http_done. */
typedef struct gw_req {
	uint8_t method;              /* llhttp_method_t */
	uint8_t http_minor;
	bool keep_alive;
	bool upgrade;
	const char *url;
	size_t url_len;
	const char *inm;             /* If-None-Match value or NULL */
	size_t inm_len;
	uint64_t t_start_ns;         /* when its first byte was parsed (CLOCK_MONOTONIC) */
} gw_req_t;

enum gw_http_rc {
	GW_HTTP_MORE = 0,            /* need more bytes */
	GW_HTTP_REQ = 1,             /* *req holds a complete request */
	GW_HTTP_ERROR = 2,           /* answer h->err_status and close */
};

typedef struct gw_http {
	llhttp_t parser;
	llhttp_settings_t settings;
	const gw_limits_t *lim;
	char *buf;
	size_t cap, len;             /* buffer capacity; bytes received */
	size_t fed;                  /* bytes given to llhttp */
	size_t msg_start;            /* offset where the request being parsed begins */
	size_t url_off, url_len, inm_off, inm_len;
	char field[16];              /* current header name, lower-cased prefix */
	size_t field_len;
	bool in_inm, have_inm, headers_done, complete, in_message, url_done;
	uint32_t nheaders;
	uint64_t body;
	uint64_t t_start_ns;
	int err_status;              /* 400, 413, 414, 431 */
	const char *err_reason;
} gw_http_t;

/* Allocates the buffer (max_header_bytes + 4 KiB). 0 or -ENOMEM. */
int gw_http_init(gw_http_t *h, const gw_limits_t *lim);
void gw_http_reset(gw_http_t *h);        /* new connection: forget everything, keep buffer */
void gw_http_free(gw_http_t *h);
/* Where to put received bytes; compacts first. *avail may be 0 only while a request waits. */
char *gw_http_space(gw_http_t *h, size_t *avail);
void gw_http_commit(gw_http_t *h, size_t n);
/* Parse on: GW_HTTP_REQ (then call gw_http_done after answering), GW_HTTP_MORE, GW_HTTP_ERROR. */
int gw_http_next(gw_http_t *h, gw_req_t *req);
void gw_http_done(gw_http_t *h);
/* Bytes of an unfinished request are buffered (the header timer runs). */
static inline bool gw_http_partial(const gw_http_t *h) { return h->len > h->msg_start; }

uint64_t gw_now_ns(void);

/* ---- routing (route.c) ------------------------------------------------------------------ */

enum gw_route {
	GW_R_KV = 0, GW_R_HEALTHZ, GW_R_READYZ, GW_R_LIVEZ, GW_R_METRICS, GW_R_OTHER, GW_R_COUNT
};

typedef struct gw_target {
	enum gw_route route;
	char key[PROTO_MAX_KEY];
	size_t key_len;
	char bucket[PROTO_MAX_BUCKET];
	size_t bucket_len;           /* 0 = the default bucket */
	bool has_min_rev, has_wait;
	uint64_t min_rev, wait_ms;
	const char *err;             /* for 400: short reason */
} gw_target_t;

/* Decode %XX escapes (no '+' rule: this is a path). 0, -EINVAL (bad escape) or -E2BIG. */
int gw_pct_decode(const char *s, size_t n, char *out, size_t cap, size_t *outlen);
/* Split target into route, key, query. Returns 0, or 400 with t->err set. */
int gw_route_parse(const char *url, size_t len, gw_target_t *t);
/* Which routes a listener serves: the metrics listener (metrics_port) only /metrics; the
 * public listener everything but /metrics, and /metrics too when metrics_on_public. A route
 * not served here becomes GW_R_OTHER with *rc = 0 (a plain 404, as for an unknown path). */
void gw_route_restrict(gw_target_t *t, int *rc, bool metrics_port, bool metrics_on_public);
/* Does an If-None-Match value match the ETag "<rev>"? (weak comparison, "*" matches) */
bool gw_inm_match(const char *v, size_t n, uint64_t rev);

/* ---- output staging (out.c) ---------------------------------------------------------- */

/* Plaintext staging: small responses are gathered so that several pipelined answers share a
 * TLS record and a write(2). `flush` transmits (TLS-encrypts or writes) bytes now. */
typedef struct gw_out {
	char *p;
	size_t len, cap;
	int (*flush)(void *ctx, const void *p, size_t n);
	void *ctx;
	int err;                     /* first flush error: the connection is closed */
	uint64_t bytes;              /* plaintext bytes produced (for metrics) */
} gw_out_t;

#define GW_OUT_BIG 4096          /* values larger than this bypass staging */
void gw_out_put(gw_out_t *o, const void *p, size_t n);
void gw_out_str(gw_out_t *o, const char *s);
void gw_out_u64(gw_out_t *o, uint64_t v);
void gw_out_big(gw_out_t *o, const void *p, size_t n);
int  gw_out_flush(gw_out_t *o);

/* ---- statistics (stats.c) ------------------------------------------------------------------ */

enum gw_status_idx {
	GW_S200, GW_S304, GW_S400, GW_S404, GW_S405, GW_S408, GW_S413, GW_S414, GW_S429,
	GW_S431, GW_S500, GW_S503, GW_S504, GW_S_COUNT
};

typedef struct gw_stats {
	_Atomic uint64_t req[GW_R_COUNT][GW_S_COUNT];
	_Atomic uint64_t conns_open, conns_total, conns_refused;
	_Atomic uint64_t hs_full, hs_resumed, hs_failed, timeouts_handshake, timeouts_header,
		timeouts_idle, timeouts_write, rate_limited, protocol_errors;
	_Atomic uint64_t bytes_in, bytes_out;
	_Atomic uint64_t min_rev_waits;
	proto_metrics_hist_t latency;       /* microseconds */
} gw_stats_t;

int gw_status_idx(int status);
void gw_stats_init(gw_stats_t *s);
void gw_stats_request(gw_stats_t *s, enum gw_route r, int status, uint64_t t_start_ns);

/* ---- responding (respond.c) -------------------------------------------------------------- */

#define GW_WAIT (-1)              /* gw_respond: not answerable yet (?min_rev), retry later */

struct gw_worker;

/* Everything a response needs besides the request; a worker fills one for its thread. */
typedef struct gw_ctx {
	const gw_config_t *cfg;
	kv_store_t *store;           /* NULL: kv routes answer 503 (fuzz, or store missing) */
	kv_rtxn_t *rtxn;
	bool *rtxn_open;
	kv_nodestat_t *ns;
	gw_stats_t *stats;
	struct gw_worker *workers;   /* all workers' stats for /metrics; NULL ok */
	uint32_t nworkers;
	proto_metrics_buf_t *mbuf;
	const char *date;            /* "Date: ...\r\n" or "" */
	bool stopping;               /* add Connection: close */
	char ctype_bucket[PROTO_MAX_BUCKET]; /* cache of the last bucket's content type */
	size_t ctype_bucket_len;
	uint64_t ctype_rev;
	char ctype[PROTO_MAX_CTYPE + 1];
	bool ctype_valid;
} gw_ctx_t;

/*
 * Answer one request into o. Returns the HTTP status sent, or GW_WAIT when ?min_rev is ahead
 * of the node and the wait has not expired (*wait_until_ms says until when; the caller calls
 * again later with the same request). now_ms is the caller's monotonic ms; the first call
 * passes *wait_until_ms == 0. Sets *close when the connection must close after this answer.
 */
int gw_respond(gw_ctx_t *x, const gw_req_t *req, gw_target_t *t, int route_rc, gw_out_t *o,
	       uint64_t now_ms, uint64_t *wait_until_ms, bool *close);
/* Error answer (400/408/413/414/429/431/503) with a short text body. */
void gw_respond_error(gw_ctx_t *x, gw_out_t *o, int status, const char *reason, bool close);
/* The node's revision now: nodestat if open, else the store's (a read txn). */
uint64_t gw_node_revision(gw_ctx_t *x);
void gw_ctx_end_read(gw_ctx_t *x);

/* ---- workers (worker.c, conn.c) ------------------------------------------------------------ */

struct gw_conn;

/*
 * One opened state/ store. The node replaces state/ wholesale when it installs a snapshot
 * (a new directory renamed into place), so the main thread watches the identity of
 * state/data.mdb and, when it changes, opens the new store as the next generation and links
 * it from the current one (`next`, release-stored). A worker follows `next` at a request
 * boundary (one atomic load on the request path), ending its read txn first, and drops one
 * reference on every generation it leaves. refs starts at nworkers + 1 (the main thread's,
 * dropped when it links a successor); the last reference closes the store.
 */
typedef struct gw_storegen {
	kv_store_t *store;
	uint64_t dev, ino;           /* identity of the data.mdb it opened */
	_Atomic(struct gw_storegen *) next;
	_Atomic uint32_t refs;
} gw_storegen_t;

void gw_storegen_release(gw_storegen_t *g);

typedef struct gw_tlsgen {   /* a worker's TLS configuration of one certificate generation */
	proto_tls_conf_t conf;
	unsigned gen;
	int refs;                    /* connections using it + 1 while current */
} gw_tlsgen_t;

typedef struct gw_worker {
	uint32_t id;
	struct gw_main *m;
	uv_loop_t loop;
	uv_thread_t thread;
	uv_tcp_t listener;
	uv_tcp_t mlistener;          /* worker 0 only, with gateway.metrics_listen: plain /metrics */
	bool has_mlistener;
	uv_timer_t tick;             /* 100 ms: timeouts, date, nodestat reopen */
	uv_timer_t wait_timer;       /* 1 ms while a ?min_rev request waits */
	uv_async_t wake;             /* reload / stop from the main thread */
	uv_idle_t resume;            /* runs connections that yielded after a request burst */
	gw_stats_t stats;
	gw_ctx_t ctx;
	gw_storegen_t *sg;           /* the store generation this worker reads */
	kv_rtxn_t rtxn;
	bool rtxn_open;
	kv_nodestat_t ns;
	uint64_t ns_check_ms;
	proto_metrics_buf_t mbuf;
	gw_tlsgen_t *tls;            /* current */
	unsigned seen_gen;
	char date[64];
	time_t date_sec;
	char *rbuf;                  /* shared ciphertext read buffer */
	size_t rbuf_cap;
	gw_out_t out;                /* staging, shared by this worker's connections */
	struct gw_conn *conns;       /* all open connections (doubly linked) */
	struct gw_conn *waiters;     /* connections waiting on ?min_rev (singly linked) */
	struct gw_conn *yielded;     /* connections with requests left after a burst */
	struct gw_conn *pool;        /* closed connections kept for reuse */
	uint32_t nconns, npool, max_conns;
	uint32_t nmconns;            /* of nconns, those on the metrics listener */
	bool stopping, stopped;
	uint64_t stop_deadline_ms;
	int start_rc;
} gw_worker_t;

typedef struct gw_main {
	gw_config_t cfg;
	gw_storegen_t *first;        /* the generation opened at start (workers begin there) */
	gw_storegen_t *cur;          /* newest generation; main thread only */
	uint64_t bad_dev, bad_ino;   /* a replacement that failed to open (logged once) */
	proto_tls_opts_t tls_opts;
	proto_tls_shared_t tls_shared;
	uv_mutex_t pem_lock;
	proto_tls_pem_t pem;         /* current certificate files, under pem_lock */
	_Atomic unsigned pem_gen;
	_Atomic bool stop;
	gw_worker_t *workers;
	uint32_t nworkers;
	char host[256];
	int port;
	char mhost[256];             /* gateway.metrics_listen, parsed; mport 0 = none */
	int mport;
	uint32_t test_hs_delay_ms;   /* GEOKV_GW_TEST_HS_DELAY_MS: tests make pool steps slow */
} gw_main_t;

int gw_worker_start(gw_worker_t *w);     /* spawns the thread; waits until it listens */
void gw_worker_join(gw_worker_t *w);
void gw_worker_wake(gw_worker_t *w);     /* thread-safe: check reload / stop */
/* At a request boundary: switch to the newest store generation if there is one. */
void gw__worker_store_sync(gw_worker_t *w);

/* Connections on the metrics listener, per process (it lives on worker 0); more wait. */
#define GW_METRICS_MAX_CONNS 64

/* conn.c, called by worker.c; `metrics`: accepted on the metrics listener (plain HTTP, only
 * /metrics) instead of the public one */
void gw__conn_accept(gw_worker_t *w, bool metrics);
void gw__conn_tick(gw_worker_t *w, uint64_t now_ms);
void gw__conn_wait_tick(gw_worker_t *w, uint64_t now_ms);
void gw__conn_stop_all(gw_worker_t *w, bool force);
void gw__conn_pool_free(gw_worker_t *w);
void gw__worker_tls_release(gw_worker_t *w, gw_tlsgen_t *g);
void gw__worker_wait_cb(uv_timer_t *t);
void gw__conn_resume_cb(uv_idle_t *h);

#endif
