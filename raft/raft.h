/*
 * geokv raft: an I/O-free Raft consensus core (etcd-raft's "Ready" shape).
 *
 * What it is: the Raft state machine of one node. The driver feeds it logical ticks
 * (raft_tick), messages from peers (raft_step), proposals (raft_propose, raft_propose_conf),
 * read requests (raft_read_index) and leader transfers (raft_transfer_leader); it then asks
 * raft_ready() what to do and confirms with raft_advance() that it was done. Features:
 * randomized elections, pre-vote, check-quorum, batched and pipelined AppendEntries with a
 * per-follower inflight window, fast back-off by conflict term, snapshots sent in chunks,
 * leader transfer (TimeoutNow), single-server membership changes, ReadIndex, and proposal
 * forwarding. docs/raft.md explains the choices.
 *
 * What it is not: no sockets, files, clocks, threads, logging or randomness of its own.
 * Storage is read through raft_storage_t (the driver's), written by the driver from the
 * Ready. Messages are plain structs; their wire codec lives in proto/.
 *
 * Memory: raft_init allocates every buffer once (outbox, entry views, the arena that holds
 * unstable entries, read queue, inflight windows), sized by raft_config_t; nothing is
 * allocated afterwards. When a buffer is full the core behaves as if a message was lost
 * (Raft tolerates loss) or returns RAFT_EBUSY to a proposer, never grows.
 *
 * Driver loop (the order matters):
 *   raft_tick / raft_step / raft_propose / raft_read_index ...   (any number)
 *   if (raft_has_ready(r)) {
 *       raft_ready(r, &rd);
 *       1. if rd.snapshot_chunk: store its bytes at its offset (staging, offset 0 restarts);
 *          if rd.snapshot: install it (state machine from the staged bytes, log discarded,
 *          snapshot meta stored; the log continues at rd.snapshot->index + 1);
 *       2. append rd.entries (when rd.entries[0].index <= last stored index, delete the
 *          stored suffix from there first) and store rd.hs if rd.hs_changed; fsync when
 *          rd.must_sync. Persist BEFORE sending: a vote or an append ack must never reach a
 *          peer before what it promises is durable.
 *       3. send rd.msgs (any may be lost, duplicated or reordered);
 *       4. apply rd.committed in order; answer rd.reads once applied >= reads[i].index;
 *       5. raft_advance(r, &rd).
 *   }
 * Between raft_ready and raft_advance, call no other raft_* function on r except the
 * const accessors: the views in rd point into buffers that the next call may reuse.
 *
 * Threads: a raft_t is used by one thread at a time. No global state.
 *
 * Errors: 0 or a negative RAFT_E* code (band -30300..-30399); storage callbacks may
 * return their own negative codes (e.g. -errno), which are passed back unchanged.
 */
#ifndef GEOKV_RAFT_RAFT_H
#define GEOKV_RAFT_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	RAFT_ENOTLEADER = -30300, /* proposal/read/transfer on a node that is not the leader;
				   * raft_leader() names the leader when one is known */
	RAFT_EBUSY      = -30301, /* a bounded buffer is full, a leader transfer or a membership
				   * change is in progress: retry after the next raft_advance */
	RAFT_EINVAL     = -30302, /* bad argument or configuration */
	RAFT_ECOMPACTED = -30303, /* storage: the index is below the first index (compacted) */
	RAFT_EUNAVAIL   = -30304, /* storage: the index is past the last index */
	RAFT_ENOMEM     = -30305, /* raft_init could not allocate its buffers */
	RAFT_ECORRUPT   = -30306, /* storage contradicts the Raft invariants (e.g. commit > last) */
	RAFT_ETOOBIG    = -30307, /* proposal larger than the arena (max_unstable_bytes) */
	RAFT_ELAST      = -30308,
};

/* raft_propose on a follower that handed the proposal to the leader: no index is known. */
#define RAFT_FORWARDED 1

#define RAFT_MAX_NODES 16 /* voters in a configuration */

typedef uint32_t raft_id_t; /* node id; 0 = none */

enum raft_entry_type {
	RAFT_ENTRY_NORMAL = 0, /* application data */
	RAFT_ENTRY_CONF   = 1, /* membership change: data = raft_conf_change encoding (8 bytes) */
	RAFT_ENTRY_NOOP   = 2, /* empty entry a new leader appends to commit its term */
};

/* A log entry. `data` is a view; who owns it is said wherever an entry is handed out. */
typedef struct raft_entry {
	uint64_t index;
	uint64_t term;
	uint32_t type; /* enum raft_entry_type */
	uint32_t len;
	const void *data;
} raft_entry_t;

/* A configuration: the voting members, in no particular order. */
typedef struct raft_conf {
	uint32_t n;
	raft_id_t ids[RAFT_MAX_NODES];
} raft_conf_t;

enum raft_conf_op { RAFT_CONF_ADD = 1, RAFT_CONF_REMOVE = 2 };

/* What the last compaction folded into the state machine: index, term, configuration. */
typedef struct raft_snapshot_meta {
	uint64_t index;
	uint64_t term;
	raft_conf_t conf; /* membership as of `index` */
} raft_snapshot_meta_t;

/* Persisted with the entries. commit is persisted so a restart knows what is safe to apply. */
typedef struct raft_hard_state {
	uint64_t term;
	raft_id_t vote;
	uint64_t commit;
} raft_hard_state_t;

enum raft_msg_type {
	RAFT_MSG_APPEND = 1,     /* index=prev index, log_term=prev term, commit, entries */
	RAFT_MSG_APPEND_RESP,    /* ok: index=last matching index; REJECT: index=rejected prev
				  * index, hint=conflict index, log_term=term at hint */
	RAFT_MSG_HEARTBEAT,      /* commit (<= the follower's match), ctx=read sequence */
	RAFT_MSG_HEARTBEAT_RESP, /* ctx echoed */
	RAFT_MSG_VOTE,           /* index=last log index, log_term=last log term; TRANSFER */
	RAFT_MSG_VOTE_RESP,      /* REJECT; index=voter's commit, log_term=term there */
	RAFT_MSG_PREVOTE,        /* as VOTE, with term = the candidate's term + 1 */
	RAFT_MSG_PREVOTE_RESP,   /* as VOTE_RESP */
	RAFT_MSG_SNAPSHOT,       /* snap, offset, data/len (one chunk), LAST */
	RAFT_MSG_SNAPSHOT_RESP,  /* snap.index/term, offset = next byte wanted; LAST: installed,
				  * index = last index now matching; REJECT: restart at 0 */
	RAFT_MSG_TIMEOUT_NOW,    /* leader transfer: campaign now */
	RAFT_MSG_PROPOSE,        /* forwarded proposal: entries (one), term 0 */
	RAFT_MSG_READ_INDEX,     /* forwarded read: ctx, term 0 */
	RAFT_MSG_READ_INDEX_RESP,/* ctx, index = read index */
	RAFT_MSG_TYPE_MAX,
};

enum raft_msg_flags {
	RAFT_MSGF_REJECT   = 1 << 0,
	RAFT_MSGF_TRANSFER = 1 << 1, /* vote caused by a leader transfer: ignore leases */
	RAFT_MSGF_LAST     = 1 << 2, /* last chunk of a snapshot / snapshot installed */
};

/*
 * A message. Flat: fixed-width integers, one entry array and one byte view, so a codec
 * can encode it field by field. Which fields mean what per type: enum raft_msg_type.
 * Views (entries, their data, data) in a message from raft_ready are valid until
 * raft_advance; in a message passed to raft_step, only during the call.
 */
typedef struct raft_msg {
	uint32_t type; /* enum raft_msg_type */
	raft_id_t from;
	raft_id_t to;
	uint32_t flags; /* enum raft_msg_flags */
	uint64_t term;
	uint64_t index;
	uint64_t log_term;
	uint64_t commit;
	uint64_t hint;
	uint64_t ctx;
	uint64_t offset;
	raft_snapshot_meta_t snap;
	uint32_t n_entries;
	const raft_entry_t *entries;
	const void *data;
	size_t len;
} raft_msg_t;

/*
 * The storage the driver provides; reads only (the driver writes from the Ready).
 * An LMDB log (core/log.h) maps onto it directly; tests/raft/memstore.c is an in-memory one.
 * Views returned (entry data, snapshot chunks) must stay valid until the next raft_advance
 * (a driver on LMDB keeps one read transaction open across a ready cycle).
 */
typedef struct raft_storage {
	void *ctx;
	/* First index still held: snapshot index + 1. */
	uint64_t (*first_index)(void *ctx);
	/* Last index held (the snapshot index when no entries follow it). */
	uint64_t (*last_index)(void *ctx);
	/* Term at index, for first_index-1 (the snapshot's term; 0 for index 0) .. last_index.
	 * Errors: RAFT_ECOMPACTED, RAFT_EUNAVAIL, or the driver's own. */
	int (*term)(void *ctx, uint64_t index, uint64_t *term);
	/* Fill out[] with entries lo, lo+1, ... < hi, at most cap of them, stopping once their
	 * data exceeds max_bytes (always at least one). Returns the count, or RAFT_ECOMPACTED
	 * (lo < first_index) or the driver's error. */
	int (*entries)(void *ctx, uint64_t lo, uint64_t hi, size_t max_bytes, raft_entry_t *out,
		       size_t cap);
	void (*hard_state)(void *ctx, raft_hard_state_t *hs);
	void (*snapshot_meta)(void *ctx, raft_snapshot_meta_t *meta);
	/* Bytes of the current snapshot (the one snapshot_meta describes) from offset: at most
	 * max bytes in *data and *len, *last set on the final chunk. Called on a leader only.
	 * Errors: the driver's (the transfer is retried on the next heartbeat response). */
	int (*snapshot_chunk)(void *ctx, const raft_snapshot_meta_t *meta, uint64_t offset,
			      size_t max, const void **data, size_t *len, bool *last);
} raft_storage_t;

/* A confirmed ReadIndex: serve the read once the state machine has applied `index`. */
typedef struct raft_read_state {
	uint64_t ctx;
	uint64_t index;
} raft_read_state_t;

/* A snapshot chunk a follower received, for the driver to stage (see the driver loop). */
typedef struct raft_snapshot_chunk {
	raft_snapshot_meta_t meta;
	uint64_t offset;
	const void *data;
	size_t len;
	bool last;
} raft_snapshot_chunk_t;

typedef struct raft_ready {
	raft_hard_state_t hs;
	bool hs_changed;
	bool must_sync;                     /* term, vote, entries or snapshot changed: fsync */
	const raft_snapshot_chunk_t *snapshot_chunk; /* NULL if none */
	const raft_snapshot_meta_t *snapshot;  /* install before appending entries; NULL if none */
	const raft_entry_t *entries;        /* to append; views valid until advance */
	size_t n_entries;
	const raft_msg_t *msgs;             /* to send after persisting */
	size_t n_msgs;
	const raft_entry_t *committed;      /* to apply, in order */
	size_t n_committed;
	const raft_read_state_t *reads;
	size_t n_reads;
} raft_ready_t;

typedef struct raft_config {
	raft_id_t id;                 /* this node, != 0 */
	uint32_t election_tick;       /* election timeout in ticks (randomized in [t, 2t)); 10 */
	uint32_t heartbeat_tick;      /* leader heartbeat period in ticks; 1 */
	uint64_t seed;                /* seeds the PRNG of election timeouts */
	bool pre_vote;                /* ask before campaigning: a rejoining node cannot raise terms */
	bool check_quorum;            /* leader steps down without a live majority; followers
				       * ignore votes while their leader is alive (lease) */
	bool forward_proposals;       /* followers hand proposals/reads to the leader */
	uint64_t applied;             /* index the state machine already holds (restart) */
	size_t max_msg_bytes;         /* entry bytes per AppendEntries: batching; 1 MiB */
	uint32_t max_inflight;        /* AppendEntries in flight per follower; 64 */
	size_t max_unstable_bytes;    /* arena for entries not yet persisted; 8 MiB */
	uint32_t max_unstable_entries;/* 8192 */
	uint32_t max_msgs;            /* outbox per ready cycle; 1024 */
	uint32_t max_msg_entries;     /* entry views across the outbox per cycle; 16384 */
	uint32_t max_apply_entries;   /* committed entries per ready; 4096 */
	size_t max_apply_bytes;       /* committed bytes per ready; 8 MiB */
	size_t snapshot_chunk;        /* bytes per InstallSnapshot chunk; 1 MiB */
	uint32_t max_reads;           /* pending ReadIndex requests; 1024 */
} raft_config_t;

/* Fill cfg with the defaults above (pre_vote, check_quorum, forward_proposals on); the
 * caller then sets id and seed. */
void raft_config_default(raft_config_t *cfg);

enum raft_role { RAFT_FOLLOWER = 0, RAFT_PRECANDIDATE, RAFT_CANDIDATE, RAFT_LEADER };

/* ---- internals: caller-allocated, but touch fields only through functions ------------- */

typedef struct raft__progress {
	raft_id_t id;
	uint8_t state;        /* RAFT__PR_PROBE / REPLICATE / SNAPSHOT */
	uint8_t vote;         /* 0 none, 1 granted, 2 rejected (elections) */
	bool probe_sent;      /* PROBE: one append outstanding, wait for its answer */
	bool recent_active;   /* heard from since the last check-quorum round */
	uint64_t match, next;
	uint64_t read_ack;    /* highest read sequence acknowledged in this term */
	uint64_t snap_index;  /* SNAPSHOT: the snapshot being sent */
	uint64_t snap_offset; /* SNAPSHOT: next byte to send */
	uint64_t *infl;       /* ring of last indexes of appends in flight (max_inflight) */
	uint32_t infl_start, infl_count;
} raft__progress_t;

typedef struct raft__log {
	raft_storage_t *st;
	uint64_t st_last;      /* last index persisted (driver-confirmed) */
	raft_entry_t *u;       /* unstable entries: u[0].index == u_offset */
	uint32_t n_u, cap_u;
	uint64_t u_offset;
	uint8_t *arena;        /* copies of unstable entry data and received chunks */
	size_t arena_used, arena_cap;
	bool has_snap;         /* a received snapshot the driver has not installed yet */
	raft_snapshot_meta_t snap;
} raft__log_t;

typedef struct raft__read {
	uint64_t ctx, index, seq;
	raft_id_t from; /* 0 = local */
} raft__read_t;

typedef struct raft raft_t;
struct raft {
	raft_config_t cfg;
	raft_id_t id;
	uint8_t role;
	uint64_t term;
	raft_id_t vote;
	raft_id_t lead;
	uint64_t commit;
	uint64_t applied;               /* last index handed out in a Ready */
	raft_hard_state_t prev_hs;      /* as last handed to the driver */
	uint32_t election_elapsed, heartbeat_elapsed, randomized_timeout;
	uint64_t rng;
	raft_conf_t conf;               /* as of `applied` */
	uint64_t pending_conf_index;    /* a leader proposes no change until applied reaches it */
	raft_id_t transferee;
	bool append_pending;            /* proposals appended since the last flush */
	bool read_bcast;                /* a read needs a heartbeat round */
	int (*step_fn)(raft_t *r, const raft_msg_t *m);
	void (*tick_fn)(raft_t *r);
	raft__progress_t prs[RAFT_MAX_NODES];
	uint32_t n_prs;
	uint64_t *infl_buf;
	raft__log_t log;
	raft_msg_t *msgs;
	uint32_t n_msgs;
	raft_entry_t *ents_pool;
	uint32_t n_ents_pool;
	raft_entry_t *committed;
	raft__read_t *reads;            /* leader's pending reads, FIFO */
	uint32_t n_reads;
	uint64_t read_seq;
	raft_read_state_t *read_out;
	uint32_t n_read_out;
	bool has_chunk;
	raft_snapshot_chunk_t chunk;
	bool recv_active;               /* snapshot reception in progress */
	raft_snapshot_meta_t recv_meta;
	uint64_t recv_offset;
	bool in_ready;
	uint64_t dropped;               /* messages dropped because the outbox was full */
};

/* ---- the API ------------------------------------------------------------------------- */

/*
 * Start a node from what `st` holds (hard state, snapshot meta incl. configuration, log).
 * A new cluster's founders start with snapshot meta {index 0, term 0, conf = founders}; a
 * node that will be added later starts with an empty conf (it never campaigns until a
 * leader's log makes it a member). `st` must outlive r.
 * Errors: RAFT_EINVAL (id 0, bad sizes, cfg->applied out of range), RAFT_ENOMEM,
 * RAFT_ECORRUPT (commit past last), or the storage's error.
 */
int raft_init(raft_t *r, const raft_config_t *cfg, raft_storage_t *st);
void raft_close(raft_t *r);

/* Advance the logical clock by one tick: elections, heartbeats, check-quorum. */
void raft_tick(raft_t *r);

/*
 * Feed a message from a peer (m->to must be this node). Views in m are read during the call
 * only (entry data is copied into the arena when kept).
 * Returns 0; RAFT_ECORRUPT if the message would truncate a committed entry (a peer is
 * broken); RAFT_EBUSY if called between raft_ready and raft_advance.
 */
int raft_step(raft_t *r, const raft_msg_t *m);

/*
 * Propose application data. On the leader: appended (index raft_last_index(r)), 0.
 * On a follower that knows the leader (and forward_proposals): handed over, RAFT_FORWARDED
 * (it may still be lost; the client retries on timeout). Else RAFT_ENOTLEADER.
 * RAFT_EBUSY: arena/outbox full or a leader transfer is in progress. RAFT_ETOOBIG.
 */
int raft_propose(raft_t *r, const void *data, size_t len);

/*
 * Propose adding or removing one voter (leader only). One change at a time: RAFT_EBUSY
 * until the previous one is applied (and until this leader's first entry is committed).
 * RAFT_EINVAL: adding a member, removing a non-member, the last member, or past
 * RAFT_MAX_NODES. A change takes effect on each node when it is applied.
 */
int raft_propose_conf(raft_t *r, int op, raft_id_t id);

/*
 * Ask for a linearizable read point. The answer comes in a later Ready's reads with the
 * same ctx (leader: after a heartbeat round confirms leadership; follower: forwarded and
 * answered by the leader). RAFT_ENOTLEADER when no leader is known; RAFT_EBUSY when full.
 * No answer may come at all (lost, leader changed): retry on timeout.
 */
int raft_read_index(raft_t *r, uint64_t ctx);

/* Hand leadership to `to` (leader only): proposals get RAFT_EBUSY until it succeeds or an
 * election timeout passes. RAFT_EINVAL when `to` is not another voter. */
int raft_transfer_leader(raft_t *r, raft_id_t to);

bool raft_has_ready(const raft_t *r);
void raft_ready(raft_t *r, raft_ready_t *rd);
void raft_advance(raft_t *r, const raft_ready_t *rd);

/* Accessors (cheap, any time). */
raft_id_t raft_leader(const raft_t *r);
int raft_role(const raft_t *r);
uint64_t raft_term(const raft_t *r);
uint64_t raft_commit(const raft_t *r);
uint64_t raft_applied(const raft_t *r);
uint64_t raft_last_index(const raft_t *r);
/* Membership as of the last applied entry: what a snapshot taken at raft_applied() holds. */
const raft_conf_t *raft_conf(const raft_t *r);
bool raft_conf_has(const raft_conf_t *c, raft_id_t id);
/* Leader only: the highest index known replicated on voter `id` (its match index).
 * 0, RAFT_ENOTLEADER, or RAFT_EINVAL when id is not a voter. */
int raft_peer_match(const raft_t *r, raft_id_t id, uint64_t *match);

/* Membership-change entry codec (8 bytes: op u32 LE, id u32 LE), and applying one to a
 * configuration, for drivers that track membership at their own applied index.
 * raft_conf_apply returns 0, or RAFT_EINVAL (left unchanged) for an invalid change. */
void raft_conf_change_encode(uint8_t out[8], int op, raft_id_t id);
int raft_conf_change_decode(const raft_entry_t *e, int *op, raft_id_t *id);
int raft_conf_apply(raft_conf_t *c, const raft_entry_t *e);

/* Static text for a RAFT_E* code; never NULL. */
const char *raft_strerror(int err);
/* Static name of a message type, for logs and tests. */
const char *raft_msg_type_name(uint32_t type);

#endif
