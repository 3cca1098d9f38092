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
#include "raft/raft.h"
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
	struct prim_prop *wprev, *wnext; /* the waiting list (proposed to raft, not answered) */
	struct prim_prop *hnext;   /* seq hash chain */
	prim_conn_t *conn;         /* holds a reference (prim__conn_ref) while set */
	uint64_t req_id;
	uint64_t seq;              /* this node's proposal number, carried in the entry */
	uint64_t index;            /* log index when proposed on the leader; 0 = forwarded */
	uint64_t deadline_ms;      /* forwarded or unanswered past this: PROTO_ETIMEDOUT */
	uint8_t op;                /* proto_opcode, to encode the response */
	uint64_t recv_ns;          /* uv_hrtime when proposed: write latency is measured from it */
	uint64_t cost;             /* its space estimate, held in prim_t.prop_bytes until answered */
	int err;                   /* set when the entry was dropped: the answer */
	size_t len;
	uint8_t data[];
} prim_prop_t;

typedef struct prim_queue {
	prim_prop_t *head, *tail;
	size_t n, bytes;
} prim_queue_t;

/* One job on the thread pool: persist what a Ready says (entries, hard state, fsync), plus
 * upkeep (log compaction). */
typedef struct prim_log_job {
	uv_work_t req;
	prim_t *p;
	kv_log_entry_t *ents;      /* views of the Ready's entries; reused array */
	size_t n_ents, ents_cap;
	bool has_hs;
	kv_log_hard_t hs;
	bool sync;
	uint64_t compact_to;       /* 0 = none */
	kv_log_conf_t compact_conf;
	int err;                   /* append result */
	int sync_err;
	uint64_t sync_ns;          /* duration of kv_log_sync; 0 = no sync ran */
	int compact_err;
} prim_log_job_t;

/* A read waiting for a ReadIndex answer and then for apply to reach it. */
typedef struct prim_read {
	struct prim_read *next;
	prim_conn_t *conn;         /* holds a reference */
	uint64_t req_id;
	size_t len;
	uint8_t data[];            /* the REQ payload, as received */
} prim_read_t;

/* Reads that share one ReadIndex round. */
typedef struct prim_rgroup {
	struct prim_rgroup *next;
	uint64_t ctx;              /* raft_read_index ctx; 0 = not asked yet */
	uint64_t index;            /* answer; 0 = not yet */
	uint64_t deadline_ms;
	int err;                   /* serve_reads: how it is answered once detached */
	prim_read_t *head, *tail;
} prim_rgroup_t;

typedef struct prim_pconn prim_pconn_t;

/* Another member of the group, as the transport (core/peer.c) sees it. */
typedef struct prim_peer {
	prim_t *p;
	raft_id_t id;
	char addr[256];            /* peer address, HOST:PORT (a name is resolved) */
	char client_addr[256];     /* its client address, learned from its hello */
	prim_pconn_t *out;         /* our connection to it (we send) */
	prim_pconn_t *in;          /* its connection to us (we receive) */
	uv_timer_t retry;
	uv_getaddrinfo_t gai;
	bool resolving;
	uint32_t backoff_ms;
	uint64_t heard_ms;         /* uv_now of the last message from it */
	uint64_t sent, dropped;
} prim_peer_t;

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
	PRIM_REJ_ROLE,             /* HELLO: unknown role */
	PRIM_REJ_MEMORY,           /* a read buffer would pass the budget (prim__read_budget) */
	PRIM_REJ_N
};

#define PRIM_STAT_OPS      16  /* 0 = unknown, then the 15 opcodes (prim__op_slot) */
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
	uint64_t timeouts_frame;           /* a frame not complete by its deadline */
	uint64_t read_held;                /* bytes of read buffers charged to the budget (gauge) */
	uint64_t expired;                  /* TTL deletes applied */
	uint64_t space_refused;            /* writes refused KV_EFULL by the headroom check */
	uint64_t peer_bytes_in, peer_bytes_out, peer_dropped, peer_refused;
	uint64_t elections_won, leader_changes, reads_index, reads_stale, props_lost;
	uint64_t snapshots_sent, snapshots_installed;
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

	/* consensus */
	raft_t raft;
	raft_storage_t rst;
	kv_log_rtxn_t lrt;         /* raft storage reads; open across one drive cycle */
	raft_conf_t founders;      /* from [cluster] peers (or this node alone) */
	raft_ready_t rd;
	bool in_ready;             /* between raft_ready and raft_advance */
	bool driving;              /* drive() on the stack: do not re-enter */
	bool job_running;
	prim_log_job_t job;
	uint32_t missed_ticks;     /* ticks that fell inside a ready cycle */
	bool leader_lost;          /* the leader's connection closed: elect sooner */
	uv_timer_t tick_timer;
	uint64_t rng;
	raft_id_t last_leader;
	uint64_t leader_contact_ms;/* wall clock of the last sign of a live leader */
	bool repairing;            /* log or store was damaged: no votes, no campaign */
	bool corrupt_seen;         /* a record of state/ failed its checksum (logged once) */
	char corrupt_path[1100];   /* raft/state.corrupt: rebuild state/ at the next start */
	uint64_t repair_until;     /* ... until the log holds this index again */
	bool transferring;         /* SIGTERM on the leader: handing leadership over */
	uint64_t transfer_deadline;
	raft_id_t transfer_to;     /* asked for, not yet accepted by the core */
	char repair_path[1100];    /* raft/repair: repair_until, kept across restarts */
	uint64_t stop_deadline;    /* writes in flight at SIGTERM get until then */
	uv_timer_t stop_check;

	/* proposals */
	prim_queue_t pending;      /* received, not yet handed to raft */
	uint64_t prop_seq;
	prim_prop_t **ptab;        /* seq -> waiting proposal */
	size_t ptab_cap, nwaiting;
	prim_prop_t *whead, *wtail;/* waiting proposals, in proposal order */
	uint64_t last_time_ms;     /* entry times never go backwards */
	uint64_t apply_stalled_at; /* apply failed (store full): retry from the log; 0 = no */
	kv_entry_in_t *apply_in;   /* reused arrays for kv_apply */
	kv_result_t *apply_res;
	uint64_t *apply_seq;       /* per entry of an apply call: our proposal seq, or 0 */
	size_t apply_cap;
	uint64_t apply_target;     /* highest committed index raft handed out */
	uint64_t applied;          /* every committed entry through here processed (prim__applied) */
	uint64_t space_used, space_live; /* state/ file high-water and bytes holding data */
	uint64_t disk_free, disk_size; /* bytes free on state/'s file system, and its size */
	kv_log_space_t log_space;  /* raft/ log file: bytes used, file size, map size */
	uint64_t log_disk_free, log_disk_size; /* the same for raft/'s file system */
	bool log_same_fs;          /* raft/ and state/ share a file system (one free figure) */
	uint64_t prop_bytes;       /* space estimate of proposals made here and not answered */
	raft_conf_t conf_applied;  /* membership as of the store's applied index */
	struct { uint64_t index; raft_conf_t conf; } conf_hist[8]; /* recent changes */
	uint32_t n_conf_hist;

	/* linearizable reads */
	prim_rgroup_t *rg_head, *rg_tail; /* oldest first; the tail may still be open */
	uint64_t read_ctx;
	size_t nreads;

	/* snapshots (leader side: a file of state/ served in chunks) */
	int snap_fd;
	uint8_t *snap_map;
	size_t snap_size;
	uint64_t snap_applied;     /* applied index inside the file */
	uint64_t snap_meta_index;  /* log snapshot index it was made for */
	bool snap_building;
	uv_work_t snap_req;
	int snap_err;
	uint64_t snap_used_ms;     /* last chunk served: compaction waits while a send is on */
	uint64_t snap_file_applied;/* applied index of the mapped file */
	uint8_t *snap_next_map;    /* a newer file, mapped once the ready cycle ends */
	size_t snap_next_size;
	uint64_t snap_next_applied;
	int recv_fd;               /* follower: staged chunks */

	/* peers (core/peer.c) */
	prim_peer_t peers[RAFT_MAX_NODES];
	uint32_t npeers;
	char peer_listen[256];
	uv_tcp_t plistener;
	bool plistening;
	uv_timer_t psweep;
	prim_pconn_t *pin;         /* inbound peer connections */
	raft_entry_t *dec_ents;    /* decode array for raft messages */
	size_t dec_cap;

	/* store sync and compaction */
	uv_work_t sync_req;
	bool sync_running;
	uint64_t sync_target;      /* applied index when the running sync started */
	int sync_err;
	uint64_t sync_ns;          /* duration of the last kv_sync */
	uint64_t synced_applied;   /* store durable up to here: compaction bound */
	uint64_t compact_want;
	uv_timer_t sync_timer;
	uv_timer_t sweep_props;    /* times out forwarded proposals and unanswered reads */

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

/* Hand pending proposals and reads to raft and run a ready cycle if none is open. */
void prim__kick(prim_t *p);
void prim__drive(prim_t *p);
/* A raft message from a peer (outside a ready cycle; peer.c guarantees it). */
void prim__step(prim_t *p, const raft_msg_t *m);
/* The inbound connection from `id` closed: if it is the leader, elect sooner. */
void prim__peer_lost(prim_t *p, raft_id_t id);
/* Defer a linearizable read (the REQ payload is copied): 0 or -ENOMEM. */
int prim__read_defer(prim_t *p, prim_conn_t *conn, uint64_t req_id, const uint8_t *pl,
		     size_t len);
/* The leader's client address when known ("" if not). */
const char *prim__leader_addr(prim_t *p);
/* Probes on the metrics listener (prim_metrics.c): NULL when healthy, else the reason. */
typedef enum { PRIM_PROBE_LIVE, PRIM_PROBE_READY, PRIM_PROBE_HEALTH } prim_probe_t;
const char *prim__probe(prim_t *p, prim_probe_t probe, uint64_t now_ms);
uint64_t prim__applied(const prim_t *p);
void prim__conn_read_done(prim_conn_t *c);
void prim__conn_read_ready(prim_conn_t *c, prim_read_t *rd);

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
/* Bytes all client read buffers grown past their first 64 KiB may hold together. */
uint64_t prim__read_budget(const prim_t *p);

void prim__conn_ref(prim_conn_t *c);
void prim__conn_unref(prim_conn_t *c);
void prim__conn_inflight_done(prim_conn_t *c);
/* Queue a RESP for a write (rev/count) or an ERROR, on a live connection (no-op if closed).
 * msg NULL = geokv_strerror(code); index/cause: KV_EBATCH's failing op and its own error. */
void prim__reply_write(prim_conn_t *c, uint64_t id, uint8_t op, const kv_result_t *r);
void prim__reply_error(prim_conn_t *c, uint64_t id, int code, const char *msg, uint32_t index,
		       int cause);
/* PROTO_ENOTLEADER with the leader's address as a hint. */
void prim__reply_notleader(prim_conn_t *c, uint64_t id);
/* Answer a read (its REQ payload) from the store now. */
void prim__serve_read(prim_conn_t *c, uint64_t id, const uint8_t *pl, size_t len);
bool prim__conn_open(const prim_conn_t *c);

/* ---- peer.c: the peer transport --------------------------------------------------- */

int  prim__peers_parse(prim_t *p);     /* [cluster] peers -> founders, peers[] */
int  prim__peers_start(prim_t *p);     /* listen, dial everyone (no-op for a group of one) */
void prim__peers_close(prim_t *p);
bool prim__peers_idle(const prim_t *p);/* every peer handle closed */
void prim__peer_send(prim_t *p, const raft_msg_t *m); /* queue, or drop when down/full */
void prim__peers_resume(prim_t *p);    /* step frames held during a ready cycle */
const char *prim__peer_client_addr(prim_t *p, raft_id_t id);
bool prim__peer_up(prim_t *p, raft_id_t id);

/* ---- prim_metrics.c: counters and the /metrics listener ------------------------------ */

void prim__stats_init(prim_stats_t *st);
/* Count one answered request: op is the opcode, status 0 or the code answered. */
void prim__stat_request(prim_t *p, uint8_t op, int status);
static inline void prim__stat_reject(prim_t *p, enum prim_reject r) { p->st.rejected[r]++; }

int  prim__metrics_listen(prim_t *p);  /* no-op when metrics-listen is empty */
void prim__metrics_close(prim_t *p);   /* close the listener and every /metrics connection */

#endif
