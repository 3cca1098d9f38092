/*
 * geokv-primary internals shared by core/primary.c (pipeline) and core/server.c (client
 * connections). Not a public API: prim__ names, loop thread only unless stated.
 */
#ifndef GEOKV_CORE_PRIMARY_INT_H
#define GEOKV_CORE_PRIMARY_INT_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "core/kv.h"
#include "core/log.h"
#include "core/nodestat.h"
#include "core/primary.h"
#include "proto/metrics.h"
#include "proto/tls.h"
#include "proto/proto.h"

typedef struct prim prim_t;
typedef struct prim_conn prim_conn_t;

/* A growable byte buffer, kept and reused for the life of its owner. */
typedef struct prim_buf {
	uint8_t *p;
	size_t len, cap;
} prim_buf_t;

int  prim__buf_reserve(prim_buf_t *b, size_t extra); /* 0 or -ENOMEM */
void prim__buf_free(prim_buf_t *b);

/*
 * One proposed write: the encoded log entry (proto_entry_t: leader time + the op bytes as
 * the client sent them) and who to answer. conn == NULL for the daemon's own proposals
 * (TTL deletes). The entry bytes follow the struct (one allocation per write).
 */
typedef struct prim_prop {
	struct prim_prop *next;
	prim_conn_t *conn;         /* holds a reference (prim__conn_ref) while set */
	uint64_t req_id;
	uint64_t index;            /* log index, assigned when its group goes to the log */
	uint8_t op;                /* proto_opcode, to encode the response */
	uint64_t recv_ns;          /* uv_hrtime when proposed: write latency is measured from it */
	int err;                   /* set when the entry was dropped: the answer */
	size_t len;
	uint8_t data[];
} prim_prop_t;

typedef struct prim_queue {
	prim_prop_t *head, *tail;
	size_t n, bytes;
} prim_queue_t;

/* One job on the thread pool: append a group to the log and fsync it, plus upkeep. */
typedef struct prim_log_job {
	uv_work_t req;
	prim_t *p;
	prim_queue_t group;        /* entries to append (indexes assigned) */
	prim_queue_t dropped;      /* proposals whose entries truncate_from removes: answered
				    * with their error once the truncation is durable */
	kv_log_entry_t *ents;      /* views of group's data; reused array */
	size_t ents_cap;
	uint64_t truncate_from;    /* 0 = none */
	uint64_t compact_to;       /* 0 = none */
	kv_log_hard_t hs;
	int err;                   /* append/truncate result */
	int sync_err;
	uint64_t sync_ns;          /* duration of kv_log_sync; 0 = no sync ran */
	int compact_err;
} prim_log_job_t;

/* Why a frame was refused (geokv_primary_frames_rejected_total{reason}). */
enum prim_reject {
	PRIM_REJ_TOO_BIG,          /* frame over max-frame */
	PRIM_REJ_BAD_HEADER,       /* undecodable frame header (flags, garbage) */
	PRIM_REJ_NO_HELLO,         /* first frame was not HELLO */
	PRIM_REJ_BAD_HELLO,        /* undecodable HELLO */
	PRIM_REJ_VERSION,          /* HELLO: protocol version */
	PRIM_REJ_CLUSTER,          /* HELLO: cluster id */
	PRIM_REJ_AUTH,             /* HELLO: token */
	PRIM_REJ_DUP_HELLO,        /* HELLO on an open session */
	PRIM_REJ_UNKNOWN_TYPE,     /* frame type */
	PRIM_REJ_UNKNOWN_OP,       /* REQ with an unknown op */
	PRIM_REJ_FIELD_TOO_BIG,    /* REQ with a field over its protocol maximum */
	PRIM_REJ_BAD_OP,           /* undecodable REQ (or BATCH inner op) */
	PRIM_REJ_N
};

#define PRIM_STAT_OPS      15  /* 0 = unknown, then the 14 opcodes (prim__op_slot) */
#define PRIM_STAT_STATUSES 29  /* 0 = ok, KV_E*, PROTO_E*, last = other (prim__status_slot) */

/*
 * Counters behind /metrics. Updated and read on the loop thread only (the scrape is served
 * there too), so they are plain integers; the histograms use proto_metrics' single-writer
 * observe. Durations in microseconds.
 */
typedef struct prim_stats {
	uint64_t requests[PRIM_STAT_OPS][PRIM_STAT_STATUSES];
	uint64_t rejected[PRIM_REJ_N];
	uint64_t bytes_in, bytes_out;
	uint64_t conns_accepted, conns_refused;
	uint64_t timeouts_hello, timeouts_idle;
	uint64_t expired;                  /* TTL deletes applied */
	uint64_t metrics_scrapes;
	proto_metrics_hist_t write_latency; /* receipt of a write to its answer */
	proto_metrics_hist_t group_entries; /* entries per log job (one fsync) */
	proto_metrics_hist_t fsync_latency; /* kv_log_sync of one group */
	proto_metrics_hist_t store_sync_latency; /* kv_sync of state/ */
} prim_stats_t;

typedef struct prim_mconn prim_mconn_t;

struct prim {
	const prim_config_t *cfg;
	uv_loop_t *loop;
	kv_store_t *store;
	kv_log_t *log;
	kv_rtxn_t rtxn;            /* reused for every read request */
	kv_nodestat_t ns;
	char state_dir[1100];

	/* pipeline */
	prim_queue_t pending;      /* proposed, not yet handed to the log */
	prim_log_job_t job;
	bool job_running;
	uint64_t next_index;       /* index for the next proposal handed to the log */
	uint64_t commit;           /* highest durable (committed) index */
	uint64_t last_time_ms;     /* entry times never go backwards */
	uint64_t truncate_from;    /* requested for the next job (apply refused an entry) */
	prim_queue_t dropped;      /* answered after that truncation is durable */
	kv_entry_in_t *apply_in;   /* reused arrays for kv_apply */
	kv_result_t *apply_res;
	size_t apply_cap;

	/* store sync and compaction */
	uv_work_t sync_req;
	bool sync_running;
	uint64_t sync_target;      /* applied index when the running sync started */
	int sync_err;
	uint64_t sync_ns;          /* duration of the last kv_sync */
	uint64_t synced_applied;   /* store durable up to here: compaction bound */
	uint64_t compact_want;
	uv_timer_t sync_timer;

	/* TTL */
	uv_timer_t ttl_timer;
	uv_timer_t hb_timer;       /* nodestat heartbeat */
	uv_timer_t stop_timer;     /* bounds how long shutdown waits for slow readers */
	uint32_t ttl_outstanding;  /* TTL deletes proposed, not yet applied */

	/* network */
	proto_tls_conf_t *tls;     /* client listener TLS (loop thread only); NULL = plain */
	proto_tls_shared_t *tls_shared; /* session tickets and cache for resumption */
	uv_tcp_t listener;
	uv_timer_t sweep_timer;    /* closes connections past hello-timeout / idle-timeout */
	bool sweeping;             /* sweep_timer initialised (a timeout is configured) */
	uv_signal_t sig_term, sig_int;
	uint32_t nconns;
	prim_conn_t *conns;        /* doubly linked list of open connections */
	bool stopping;
	bool closed;
	int exit_code;

	/* metrics (core/prim_metrics.c) */
	prim_stats_t st;
	uv_tcp_t mlistener;        /* plain-HTTP /metrics listener, when metrics-listen is set */
	bool mlistening;
	prim_mconn_t *mconns;      /* open /metrics connections */
	uint32_t nmconns;
	prim_buf_t scratch;        /* encode buffer for internal proposals */
};

/* ---- primary.c: pipeline ---------------------------------------------------------- */

/*
 * Propose a write op (its encoded bytes, as received). The entry is stamped with the leader's
 * time and queued; the answer goes to conn/req_id once applied (or an error).
 * Returns 0 or an error to answer now (PROTO_ESHUTDOWN, -ENOMEM).
 */
int prim__propose(prim_t *p, prim_conn_t *conn, uint64_t req_id, uint8_t op,
		  const uint8_t *opbytes, size_t len);

/* Hand pending proposals to the log if it is idle (after a burst of proposals). */
void prim__kick(prim_t *p);

/* Fill a STATUS response. */
void prim__status(prim_t *p, proto_status_t *st);

/* Called when a connection closes, to let shutdown proceed when the last one is gone. */
void prim__maybe_finish(prim_t *p);

/* ---- server.c: connections ---------------------------------------------------------- */

int  prim__listen(prim_t *p);          /* bind + listen on cfg->listen */
int  prim__tls_init(prim_t *p);        /* [tls] set-up (no-op without a cert); 0 or -EINVAL */
void prim__tls_free(prim_t *p);
/* "HOST:PORT", "[v6]:PORT", ":PORT" or "*:PORT" (any IPv4) into ss: 0 or -EINVAL. */
int  prim__parse_addr(const char *s, struct sockaddr_storage *ss);
void prim__stop_accepting(prim_t *p);  /* close the listener, stop reading every conn */
void prim__close_all(prim_t *p);       /* close every connection (after their writes) */
void prim__close_all_now(prim_t *p);   /* close every connection, dropping queued output */
void prim__stop_sweep(prim_t *p);      /* close the timeout sweep timer (at the very end) */

void prim__conn_ref(prim_conn_t *c);
void prim__conn_unref(prim_conn_t *c);
void prim__conn_inflight_done(prim_conn_t *c);
/* Queue a RESP for a write (rev/count) or an ERROR, on a live connection (no-op if closed).
 * msg NULL = geokv_strerror(code); index/cause: KV_EBATCH's failing op and its own error. */
void prim__reply_write(prim_conn_t *c, uint64_t id, uint8_t op, const kv_result_t *r);
void prim__reply_error(prim_conn_t *c, uint64_t id, int code, const char *msg, uint32_t index,
		       int cause);

/* ---- prim_metrics.c: counters and the /metrics listener ------------------------------ */

void prim__stats_init(prim_stats_t *st);
/* Count one answered request: op is the opcode, status 0 or the code answered. */
void prim__stat_request(prim_t *p, uint8_t op, int status);
static inline void prim__stat_reject(prim_t *p, enum prim_reject r) { p->st.rejected[r]++; }

int  prim__metrics_listen(prim_t *p);  /* no-op when metrics-listen is empty */
void prim__metrics_close(prim_t *p);   /* close the listener and every /metrics connection */

#endif
