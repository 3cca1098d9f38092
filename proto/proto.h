/*
 * geokv wire format: frames and message codecs.
 *
 * What it is: pure functions that encode into caller buffers and decode from caller bytes.
 * No I/O, no allocation, no global state; safe from any thread. Every decoder checks every
 * length against the bytes it has and against a maximum, and answers bad input with
 * PROTO_EBADMSG / PROTO_ETOOBIG (never a crash, hang or unbounded allocation). Decoded byte
 * strings (proto_bytes_t) are views into the input buffer: valid while that buffer is.
 *
 * What it is not: the connection logic (proto/client.h, the daemons) or the store (core/kv.h).
 *
 * Encoding: little-endian fixed-width integers; a byte string is a length (u8, u16 or u32 as
 * stated per field) followed by the bytes. All numbers here are part of the protocol: append,
 * never renumber.
 *
 * A frame is a 16-byte header followed by `len` payload bytes:
 *
 *   u32 len      payload length (not counting the header), <= the receiver's max_frame
 *   u16 type     PROTO_T_*
 *   u16 flags    PROTO_F_* bits (receivers reject unknown bits); 0 but on a REQ:
 *                PROTO_F_STALE  a read served from the receiver's local copy, without the
 *                               ReadIndex round that makes reads linearizable
 *   u64 id       request id chosen by the requester, echoed in the response; many requests
 *                may be in flight on one connection (pipelining); responses to requests
 *                carry their id and may arrive in any order
 *
 * A connection opens with HELLO (client -> server) answered by HELLO_OK or ERROR, before any
 * other frame. The same op encoding (proto_op_t) is used for a client request and inside a
 * log entry (proto_entry_t), so the store's apply decodes exactly what the client sent.
 */
#ifndef GEOKV_PROTO_PROTO_H
#define GEOKV_PROTO_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/errors.h"

#define PROTO_VERSION          1
#define PROTO_HDR_LEN          16
#define PROTO_MAX_BUCKET       64          /* bucket name bytes */
#define PROTO_MAX_KEY          1024        /* key bytes */
#define PROTO_MAX_CTYPE        127         /* bucket content type bytes */
#define PROTO_MAX_HISTORY      64          /* bucket history depth */
#define PROTO_DEFAULT_MAX_VALUE (1u << 20) /* bucket max value size default: 1 MiB */
#define PROTO_DEFAULT_MAX_FRAME (64u << 20)/* default frame limit: fits a batch of big values */
#define PROTO_MAX_BATCH        100000      /* ops in one batch */
/* Decoder limits for the remaining variable fields (each also bounded by its length prefix). */
#define PROTO_MAX_VALUE        (PROTO_DEFAULT_MAX_FRAME - 4096u) /* one value: fits a default frame */
#define PROTO_MAX_CLUSTER      255         /* cluster id bytes */
#define PROTO_MAX_TOKEN        4096        /* HELLO credentials bytes */
#define PROTO_MAX_ADDR         255         /* "host:port" leader hints */
#define PROTO_MAX_ERRMSG       4096        /* ERROR message bytes */

/* ---- frame header ------------------------------------------------------------------- */

enum proto_type {
	PROTO_T_HELLO    = 1,  /* proto_hello_t */
	PROTO_T_HELLO_OK = 2,  /* proto_hello_ok_t */
	PROTO_T_ERROR    = 3,  /* proto_error_t: a request (or the session) failed */
	PROTO_T_PING     = 4,  /* empty payload */
	PROTO_T_PONG     = 5,  /* empty payload */
	PROTO_T_REQ      = 16, /* proto_op_t */
	PROTO_T_RESP     = 17, /* body by op, see "responses" below */
	/* 32..47: raft peer messages; 48..63: leaf feed. Defined by those modules. */
};

enum proto_flags { PROTO_F_STALE = 1 << 0 };
#define PROTO_F_KNOWN PROTO_F_STALE

typedef struct proto_hdr {
	uint32_t len;
	uint16_t type;
	uint16_t flags;
	uint64_t id;
} proto_hdr_t;

/* A view into a buffer owned by someone else. */
typedef struct proto_bytes {
	const uint8_t *p;
	uint32_t len;
} proto_bytes_t;

/*
 * Decode a frame header from `buf`. Returns PROTO_HDR_LEN when a header and its whole
 * payload are present (payload at buf + PROTO_HDR_LEN, hdr->len bytes), PROTO_EAGAIN when
 * more bytes are needed, PROTO_ETOOBIG when hdr->len > max_frame (hdr is filled so the caller
 * can answer with the id), PROTO_EBADMSG on unknown flag bits.
 */
int proto_hdr_decode(const uint8_t *buf, size_t len, uint32_t max_frame, proto_hdr_t *hdr);
void proto_hdr_encode(uint8_t out[PROTO_HDR_LEN], const proto_hdr_t *hdr);

/* ---- decoding cursor ---------------------------------------------------------------- */

/*
 * A bounds-checked reader. Each get checks the remaining length (and a max for byte
 * strings); on failure it sets the sticky `err` and returns zeros/empty, so the caller
 * checks cur.err once at the end.
 */
typedef struct proto_cur {
	const uint8_t *p, *end;
	int err;
} proto_cur_t;

static inline void proto_cur_init(proto_cur_t *c, const void *p, size_t len)
{
	c->p = (const uint8_t *)p;
	c->end = c->p + len;
	c->err = 0;
}
uint8_t  proto_get_u8(proto_cur_t *c);
uint16_t proto_get_u16(proto_cur_t *c);
uint32_t proto_get_u32(proto_cur_t *c);
uint64_t proto_get_u64(proto_cur_t *c);
/* length-prefixed (lenbytes = 1, 2 or 4); longer than max -> PROTO_ETOOBIG */
proto_bytes_t proto_get_bytes(proto_cur_t *c, int lenbytes, uint32_t max);

/* A bounds-checked writer into a caller buffer; err = PROTO_ETOOBIG when it does not fit. */
typedef struct proto_wbuf {
	uint8_t *p, *end, *start;
	int err;
} proto_wbuf_t;

static inline void proto_wbuf_init(proto_wbuf_t *w, void *p, size_t cap)
{
	w->start = w->p = (uint8_t *)p;
	w->end = w->p + cap;
	w->err = 0;
}
static inline size_t proto_wbuf_len(const proto_wbuf_t *w) { return (size_t)(w->p - w->start); }
void proto_put_u8(proto_wbuf_t *w, uint8_t v);
void proto_put_u16(proto_wbuf_t *w, uint16_t v);
void proto_put_u32(proto_wbuf_t *w, uint32_t v);
void proto_put_u64(proto_wbuf_t *w, uint64_t v);
void proto_put_bytes(proto_wbuf_t *w, int lenbytes, const void *p, size_t len);

/*
 * Whole frames in one wbuf without knowing the payload length up front:
 *   size_t at = proto_frame_begin(w);      reserves the header, returns its offset in w
 *   ... encode the payload into w ...
 *   rc = proto_frame_finish(w, at, type, id); patches len/type/id
 * Several frames may be appended to one wbuf this way (pipelining, one write).
 * proto_frame_finish returns w->err (PROTO_ETOOBIG when the buffer was too small).
 */
size_t proto_frame_begin(proto_wbuf_t *w);
int proto_frame_finish(proto_wbuf_t *w, size_t at, uint16_t type, uint64_t id);

/* Static names for logs ("REQ", "PUT", ...); "?" when unknown. Never NULL. */
const char *proto_type_name(unsigned type);
const char *proto_op_name(unsigned op);

/* ---- names -------------------------------------------------------------------------- */

/* Bucket: [A-Za-z0-9_-]{1,64}. */
bool proto_bucket_valid(const void *name, size_t len);
/* Key (NATS KV rules): [-/_=.A-Za-z0-9]+, 1..1024 bytes, not starting or ending with '.'. */
bool proto_key_valid(const void *key, size_t len);
/* Key prefix for KEYS/WATCH: empty, or a valid key, or a valid key followed by one '.';
 * at most PROTO_MAX_KEY bytes in all (a longer prefix could match no key). Matching is by
 * bytes: prefix "a.b" matches "a.b", "a.b.c" and "a.bc". */
bool proto_prefix_valid(const void *prefix, size_t len);

/* ---- session ------------------------------------------------------------------------ */

enum proto_role { PROTO_ROLE_CLIENT = 1, PROTO_ROLE_PRIMARY = 2, PROTO_ROLE_LEAF = 3,
		  PROTO_ROLE_GATEWAY = 4 };

typedef struct proto_hello {       /* u16 version, u8 role, bytes(u8) cluster, bytes(u16) token */
	uint16_t version;
	uint8_t role;
	proto_bytes_t cluster;     /* empty: accept any cluster id */
	proto_bytes_t token;       /* credentials; empty when the server needs none */
} proto_hello_t;

typedef struct proto_hello_ok {    /* u16 version, u64 node_id, u64 revision, bytes(u8) cluster, bytes(u8) leader */
	uint16_t version;
	uint64_t node_id;
	uint64_t revision;         /* store revision at the server when the session opened */
	proto_bytes_t cluster;
	proto_bytes_t leader;      /* "host:port" of the current leader, may be empty */
} proto_hello_ok_t;

/* A decoded ERROR with code >= 0 is PROTO_EBADMSG: an error frame always carries an error. */
typedef struct proto_error {       /* i32 code, bytes(u16) message, bytes(u8) leader, u32 index, i32 cause */
	int32_t code;              /* KV_E* / PROTO_E* */
	proto_bytes_t message;     /* human text, may be empty */
	proto_bytes_t leader;      /* PROTO_ENOTLEADER: "host:port" of the leader if known */
	uint32_t index;            /* KV_EBATCH: index of the failing op in the batch */
	int32_t cause;             /* KV_EBATCH: that op's own error (kv_result_t.failed_status); else 0 */
} proto_error_t;

int proto_hello_encode(proto_wbuf_t *w, const proto_hello_t *m);
int proto_hello_decode(const uint8_t *p, size_t len, proto_hello_t *m);
int proto_hello_ok_encode(proto_wbuf_t *w, const proto_hello_ok_t *m);
int proto_hello_ok_decode(const uint8_t *p, size_t len, proto_hello_ok_t *m);
int proto_error_encode(proto_wbuf_t *w, const proto_error_t *m);
int proto_error_decode(const uint8_t *p, size_t len, proto_error_t *m);

/* ---- operations --------------------------------------------------------------------- */

enum proto_opcode {
	/* writes: go through the log */
	PROTO_OP_BUCKET_ADD  = 1,  /* bucket, cfg */
	PROTO_OP_BUCKET_DEL  = 2,  /* bucket */
	PROTO_OP_PUT         = 3,  /* bucket, key, value */
	PROTO_OP_CREATE      = 4,  /* bucket, key, value: only if absent (or deleted) */
	PROTO_OP_UPDATE      = 5,  /* bucket, key, value, rev: only if key's last revision == rev */
	PROTO_OP_DELETE      = 6,  /* bucket, key, rev (0 = any): tombstone, watchers see it */
	PROTO_OP_PURGE       = 7,  /* bucket, key, rev (0 = any): tombstone, drops history */
	PROTO_OP_BATCH       = 8,  /* u32 count, then count write ops (no nested batch) */
	PROTO_OP_SBATCH      = 9,  /* u64 client, u64 seq, then as BATCH: a batch applied at
	                            * most once per (client, seq), like Raft client sessions */
	/* reads: served from the store, no log entry */
	PROTO_OP_GET         = 32, /* bucket, key, rev (0 = latest; else the value at rev) */
	PROTO_OP_KEYS        = 33, /* bucket, key = prefix (may be empty), after (bytes), limit */
	PROTO_OP_HISTORY     = 34, /* bucket, key, rev = start after, limit */
	PROTO_OP_BUCKET_INFO = 35, /* bucket */
	PROTO_OP_BUCKET_LIST = 36, /* limit, after = bucket name to start after */
	PROTO_OP_STATUS      = 37, /* nothing */
	PROTO_OP_HASH        = 38, /* nothing: the member's content checksum (a full scan) */
	PROTO_OP_WATCH       = 39, /* bucket, key = prefix, rev = from (0 = the next), limit:
	                            * changes in revision order; waits briefly for one */
	PROTO_OP_SCAN        = 40, /* bucket, key = prefix, after, limit: live records, key order */
	PROTO_OP_SNAPSHOT    = 41, /* rev = offset, after = session ("" = a new one), limit =
	                            * chunk bytes: the store's snapshot stream, in chunks */
};

static inline bool proto_op_is_write(unsigned op) { return op >= 1 && op <= 9; }
/* BATCH or SBATCH: ops that carry other ops (count, batch) */
static inline bool proto_op_is_batch(unsigned op) { return op == 8 || op == 9; }

typedef struct proto_bucket_cfg {  /* u32 history, u32 max_value, u64 max_age_ms, bytes(u8) content_type */
	uint32_t history;          /* 1..64 revisions kept per key; default 1 */
	uint32_t max_value;        /* bytes; 0 = default 1 MiB */
	uint64_t max_age_ms;       /* TTL; 0 = none */
	proto_bytes_t content_type;/* served by the gateway; empty = application/octet-stream */
} proto_bucket_cfg_t;

/*
 * One operation. Which fields are encoded depends on `op` (see enum proto_opcode):
 *   u8 op, then in this order, each only if the op uses it:
 *   bucket bytes(u8), key bytes(u16), value bytes(u32), rev u64, cfg, after bytes(u16), limit u32
 * For PROTO_OP_BATCH: u8 op, u32 count, then count encoded ops; `batch` views those bytes
 * and proto_batch_next() walks them. A batch holds 1..PROTO_MAX_BATCH ops (count 0 is
 * PROTO_EBADMSG, above the max PROTO_ETOOBIG); a BATCH is always the last thing in its
 * payload, so `batch` is everything after the count.
 */
typedef struct proto_op {
	uint8_t op;
	proto_bytes_t bucket;
	proto_bytes_t key;         /* KEYS: the prefix */
	proto_bytes_t value;
	uint64_t rev;
	proto_bucket_cfg_t cfg;
	proto_bytes_t after;       /* KEYS / BUCKET_LIST: resume after this key / bucket */
	uint32_t limit;            /* KEYS / HISTORY / BUCKET_LIST: max items; 0 = server default */
	uint32_t count;            /* BATCH: number of ops */
	proto_bytes_t batch;       /* BATCH: the encoded ops */
	uint64_t client, seq;      /* SBATCH: the session (client id, its batch number) */
} proto_op_t;

/*
 * Encode/decode one op. Decoding checks field lengths against the protocol maxima and that
 * the op code is known; name and key *rules* are checked by the store (so the error is
 * KV_EBADKEY, not PROTO_EBADMSG), except that a decoder never yields a length above the max.
 * A BATCH is decoded shallowly: count and the byte range; each inner op is checked when
 * proto_batch_next() yields it. Returns 0 or a PROTO_E* code: PROTO_EBADTYPE for an unknown
 * op, PROTO_ETOOBIG for a field over its max, PROTO_EBADMSG for anything else (truncated,
 * trailing bytes). Fields an op does not carry are decoded as zero/empty.
 * Encoding a BATCH op re-emits op->count and op->batch verbatim (e.g. a decoded batch).
 */
int proto_op_encode(proto_wbuf_t *w, const proto_op_t *op);
int proto_op_decode(const uint8_t *p, size_t len, proto_op_t *op);

/* Batch building: write the header, then append ops; count is patched by finish. */
typedef struct proto_batch_writer {
	proto_wbuf_t *w;
	uint8_t *count_at;
	uint32_t count;
} proto_batch_writer_t;
/*
 * proto_batch_add: 0; PROTO_EBADTYPE for a read op or a nested BATCH; PROTO_ETOOBIG when the
 * op does not fit in the buffer or the batch is full. On any error the batch is left exactly
 * as before the call (not sticky), so a loader can finish it and start the next batch with
 * the op that did not fit. Finish at least one op: an empty batch does not decode.
 */
void proto_batch_begin(proto_batch_writer_t *b, proto_wbuf_t *w);
int  proto_batch_add(proto_batch_writer_t *b, const proto_op_t *op); /* not a BATCH */
void proto_batch_finish(proto_batch_writer_t *b);

/* Iterate a decoded BATCH: returns 1 with *op filled, 0 at the end, or a PROTO_E* code
 * (PROTO_EBADMSG for a read op or nested BATCH inside, or bytes left after `count` ops). */
typedef struct proto_batch_iter {
	proto_cur_t cur;
	uint32_t left;
} proto_batch_iter_t;
void proto_batch_iter_init(proto_batch_iter_t *it, const proto_op_t *batch);
int  proto_batch_next(proto_batch_iter_t *it, proto_op_t *op);

/* ---- log entries -------------------------------------------------------------------- */

/*
 * The payload of one committed log entry, as the store's apply receives it:
 *   u8 version (1), u64 time_ms (leader wall clock when proposed), then one write op
 *   (possibly a BATCH).
 * The store never reads a clock: time_ms is the only time apply sees (record times, TTL).
 */
typedef struct proto_entry {
	uint64_t time_ms;
	proto_op_t op;
} proto_entry_t;

#define PROTO_ENTRY_VERSION 1
int proto_entry_encode(proto_wbuf_t *w, uint64_t time_ms, const proto_op_t *op);
/* Also valid: header (9 bytes) followed by the raw bytes of an already-encoded op. */
int proto_entry_encode_raw(proto_wbuf_t *w, uint64_t time_ms, const void *op, size_t len);
/* Errors: PROTO_EVERSION for an unknown entry version, PROTO_EBADMSG for a read op, and the
 * proto_op_decode errors. */
int proto_entry_decode(const uint8_t *p, size_t len, proto_entry_t *e);

/* ---- responses (PROTO_T_RESP payloads; errors travel as PROTO_T_ERROR) -------------- */

/* A key's record as reads return it. */
enum proto_rec_kind { PROTO_REC_PUT = 1, PROTO_REC_DEL = 2, PROTO_REC_PURGE = 3 };

typedef struct proto_rec {        /* bytes(u16) key, bytes(u32) value, u64 rev, u64 create_rev, u64 time_ms, u8 kind */
	proto_bytes_t key;
	proto_bytes_t value;
	uint64_t rev;              /* revision that wrote this record */
	uint64_t create_rev;       /* revision that created the key (since its last delete) */
	uint64_t time_ms;          /* leader time of that write */
	uint8_t kind;              /* proto_rec_kind */
} proto_rec_t;

typedef struct proto_bucket_info { /* bytes(u8) name, cfg, u64 keys, u64 bytes, u64 created_rev */
	proto_bytes_t name;
	proto_bucket_cfg_t cfg;
	uint64_t keys;             /* live keys */
	uint64_t bytes;            /* value bytes of live keys */
	uint64_t created_rev;
} proto_bucket_info_t;

/* One member of the answering node's group: u64 id, u8 flags, u64 match, bytes(u8) addr. */
#define PROTO_MAX_MEMBERS 16
enum {
	PROTO_MEMBER_SELF  = 1,    /* the member that answered */
	PROTO_MEMBER_UP    = 2,    /* reachable from it (its own peer connection is up) */
	PROTO_MEMBER_MATCH = 4,    /* match is known (the answering member leads) */
	PROTO_MEMBER_FLAGS = 7
};
typedef struct proto_member {
	uint64_t id;
	uint8_t flags;             /* PROTO_MEMBER_* */
	uint64_t match;            /* highest log index known replicated on it */
	proto_bytes_t addr;        /* its client address, "" while not yet learned */
} proto_member_t;

/* A leaf the answering node feeds (or fed): u64 id, u8 flags, u64 applied, u64 lag_ms,
 * u64 contact_age_ms, bytes(u8) name. */
#define PROTO_MAX_LEAVES 64
enum { PROTO_LEAF_CONNECTED = 1, PROTO_LEAF_FLAGS = 1 };
typedef struct proto_leaf_info {
	uint64_t id;
	uint8_t flags;             /* PROTO_LEAF_* */
	uint64_t applied;          /* applied index the leaf last reported */
	uint64_t lag_ms;           /* the lag it last reported, leader's clock */
	uint64_t contact_age_ms;   /* since its last frame, answering node's clock */
	proto_bytes_t name;
} proto_leaf_info_t;

/* u64 node_id, u8 role, u8 is_leader (0|1), u64 term, u64 revision, u64 applied, u64 commit,
 * u64 first_index, u64 last_index, bytes(u8) leader, bytes(u8) version, u8 n, n x member,
 * u8 nleaves (<= 64), nleaves x leaf info */
typedef struct proto_status {
	uint64_t node_id;
	uint8_t role;              /* proto_role */
	bool is_leader;
	uint64_t term;
	uint64_t revision;         /* store revision */
	uint64_t applied;          /* applied log index */
	uint64_t commit;           /* commit index */
	uint64_t first_index;      /* first log index still kept */
	uint64_t last_index;
	proto_bytes_t leader;      /* "host:port" */
	proto_bytes_t version;     /* software version */
	uint8_t nmembers;          /* voters of its configuration, <= PROTO_MAX_MEMBERS */
	proto_member_t members[PROTO_MAX_MEMBERS];
	uint8_t nleaves;           /* leaves it feeds or fed, <= PROTO_MAX_LEAVES */
	proto_leaf_info_t leaves[PROTO_MAX_LEAVES];
} proto_status_t;

/* HASH: u64 applied, u64 revision, u64 records, u64 hash. The hash is XXH64 of the store's
 * snapshot stream (a logical dump in key order, core/kv_snapshot.c), so two members hold the
 * same content exactly when their hashes at the same applied index are equal. */
typedef struct proto_hash {
	uint64_t applied;
	uint64_t revision;
	uint64_t records;
	uint64_t hash;
} proto_hash_t;

/*
 * RESP body by the request's op:
 *   writes (PUT..PURGE, BUCKET_ADD, BUCKET_DEL): u64 rev   (BATCH: u64 first_rev, u32 count)
 *   GET:          proto_rec_t
 *   KEYS:         u32 n, n x bytes(u16) key, u8 more
 *   HISTORY:      u32 n, n x proto_rec_t, u8 more
 *   BUCKET_INFO:  proto_bucket_info_t
 *   BUCKET_LIST:  u32 n, n x proto_bucket_info_t, u8 more
 *   STATUS:       proto_status_t
 *   HASH:         proto_hash_t
 * The writers below append to a wbuf; the list readers are iterators over the payload.
 */
typedef struct proto_write_resp {
	uint64_t rev;
	uint32_t count;            /* BATCH only; 1 otherwise */
} proto_write_resp_t;

int proto_write_resp_encode(proto_wbuf_t *w, uint8_t op, const proto_write_resp_t *r);
int proto_write_resp_decode(const uint8_t *p, size_t len, uint8_t op, proto_write_resp_t *r);
int proto_rec_encode(proto_wbuf_t *w, const proto_rec_t *r);
int proto_rec_get(proto_cur_t *c, proto_rec_t *r);     /* read one from a cursor */
int proto_rec_decode(const uint8_t *p, size_t len, proto_rec_t *r);
int proto_bucket_info_encode(proto_wbuf_t *w, const proto_bucket_info_t *b);
int proto_bucket_info_get(proto_cur_t *c, proto_bucket_info_t *b);
int proto_bucket_info_decode(const uint8_t *p, size_t len, proto_bucket_info_t *b);
int proto_status_encode(proto_wbuf_t *w, const proto_status_t *s);
int proto_status_decode(const uint8_t *p, size_t len, proto_status_t *s);
int proto_hash_encode(proto_wbuf_t *w, const proto_hash_t *h);
int proto_hash_decode(const uint8_t *p, size_t len, proto_hash_t *h);


/*
 * SNAPSHOT: bytes(u8) session, u64 size, u64 applied, u64 revision, u64 records,
 * bytes(u32) chunk. The server writes its snapshot stream (one read transaction: the
 * consistent, checksummed stream of core/kv_snapshot.c) once per session and serves it
 * by offset; size is the whole stream's length, chunk the bytes at the request's offset
 * (empty at the end). Chunk views the payload.
 */
#define PROTO_MAX_SESSION 64
typedef struct proto_snap_resp {
	proto_bytes_t session;
	uint64_t size, applied, revision, records;
	proto_bytes_t chunk;
} proto_snap_resp_t;
int proto_snap_resp_encode(proto_wbuf_t *w, const proto_snap_resp_t *r);
int proto_snap_resp_decode(const uint8_t *p, size_t len, proto_snap_resp_t *r);

/*
 * Lists (KEYS, HISTORY, BUCKET_LIST, SCAN: records like HISTORY): the writer reserves the count, the caller appends items
 * with the matching encoder (proto_put_bytes(w, 2, key) for KEYS), then finishes with `more`.
 * The reader validates the count against the bytes present, then yields items one by one.
 */
typedef struct proto_list_writer {
	proto_wbuf_t *w;
	uint8_t *count_at;
	uint32_t count;
} proto_list_writer_t;
void proto_list_begin(proto_list_writer_t *l, proto_wbuf_t *w);
void proto_list_item_done(proto_list_writer_t *l);      /* after each appended item */
void proto_list_finish(proto_list_writer_t *l, bool more);

typedef struct proto_list_reader {
	proto_cur_t cur;
	uint32_t left;
	bool more;                 /* the server has more items after these */
	uint8_t op;                /* KEYS, HISTORY or BUCKET_LIST: which items */
} proto_list_reader_t;
/*
 * Checks the framing: n items then exactly one trailing u8 (0|1), decoding every item once,
 * so next() after a successful init does not fail. 0, PROTO_EBADMSG, PROTO_ETOOBIG (an item
 * field over its max), PROTO_EBADTYPE (op is not a list op).
 */
int proto_list_reader_init(proto_list_reader_t *l, const uint8_t *p, size_t len, uint8_t op);
/* Each returns 1 with an item, 0 at the end, or PROTO_EBADMSG (also when the list is of
 * another op's items). Items are views into the payload. */
int proto_list_next_key(proto_list_reader_t *l, proto_bytes_t *key);
int proto_list_next_rec(proto_list_reader_t *l, proto_rec_t *r);
int proto_list_next_bucket(proto_list_reader_t *l, proto_bucket_info_t *b);

/*
 * WATCH: u64 next_rev, then a list of records (as HISTORY's): the changes (puts, deletes,
 * purges) with revision >= the request's, in revision order; ask again from next_rev, which
 * is past every revision the server looked at (matching or not). more = 1: ask at once.
 * The reader checks the u64 and inits l over the rest (proto_list_next_rec reads it).
 */
int proto_watch_resp_decode(const uint8_t *p, size_t len, uint64_t *next_rev,
			    proto_list_reader_t *l);

#endif
