/*
 * geokv leaf feed wire format: the frames a leaf and its source (a primary, or another leaf)
 * exchange on the source's feed listener.
 *
 * What it is: pure, bounds-checked codecs (like proto/proto.h, whose frame header, HELLO and
 * ERROR they reuse) and the chained entry hash. No I/O, no allocation. Decoded byte strings
 * and entry data are views into the input buffer.
 *
 * What it is not: the feed server (core/feed.h) or the follower (leaf/).
 *
 * Session (types in the 48..63 band proto.h reserves for the leaf feed):
 *   leaf   -> source  HELLO (role PROTO_ROLE_LEAF, cluster id, token)
 *   source -> leaf    HELLO_OK, or ERROR (PROTO_EVERSION, PROTO_ECLUSTER, PROTO_EAUTH) + close
 *   leaf   -> source  FEED_START  u64 from_index, u64 from_term, u64 from_hash, u64 leaf_id,
 *                                 bytes(u8) name
 *       "I have applied through from_index, whose entry had term from_term (0 = unknown) and
 *       chain hash from_hash". The source answers with a snapshot when from_index is no
 *       longer in what it can serve, or when from_term disagrees with its own log (the leaf
 *       diverged: it is re-synced, never fed on top of a different history).
 *   source -> leaf    FEED_SNAP   u64 index, u64 term, u64 hash, u64 size
 *       a snapshot of state/ (core/kv.h's stream, `size` bytes) follows in FEED_SNAP_DATA
 *       frames; the store it installs has applied `index` and the chain continues from
 *       `hash` (PROTO_FEED_SNAP_SEED(index)).
 *   source -> leaf    FEED_SNAP_DATA  u64 offset, bytes(u32) data   (data <= PROTO_FEED_MAX_CHUNK)
 *   source -> leaf    FEED_ENTRIES    u64 commit, u64 leader_time_ms, u32 n, n x entry
 *       entry = u64 index, u64 term, u8 type, bytes(u32) data, u64 hash
 *       consecutive committed entries, in index order; type is core/log.h's kv_log_type:
 *       NORMAL data is a proto_entry_t (what kv_apply consumes), NOOP and CONF carry no data
 *       (a leaf only needs their index). hash = proto_feed_hash(previous hash, entry).
 *   source -> leaf    FEED_HB         u64 commit, u64 leader_time_ms, u64 term
 *       every heartbeat interval while nothing else is sent: the group's commit index as the
 *       source knows it and the leader's clock (the source's own clock, which on a primary
 *       that is not the leader is assumed NTP-close to it).
 *   leaf   -> source  FEED_ACK        u64 applied, u64 revision, u64 lag_ms, u64 commit
 *       the leaf's applied position and lag, so the source can show every leaf's lag.
 * All integers little-endian; every frame id and flags are 0.
 *
 * Seal: every payload above is followed by u64 XXH64(payload, seed PROTO_FEED_SEAL_SEED), and
 * every decoder refuses a payload whose seal does not match (PROTO_EBADMSG). On plain TCP a
 * flipped byte anywhere in a frame (a commit index, a heartbeat, a snapshot chunk) is caught
 * by the seal; a flipped header byte breaks the framing, the type or the zero id/flags and is
 * refused too. TLS adds its own record MAC on top.
 *
 * The chain: h(i) = XXH64(le64 index | le64 term | u8 type | data, seed = h(i-1)). The leaf
 * recomputes it for every entry before applying it and refuses the stream on a mismatch, an
 * index that is not last + 1 (a gap or a duplicate), or undecodable bytes: a flipped byte in
 * transit, a lost or repeated frame, or a source serving another history is detected and
 * repaired by reconnecting (from the leaf's applied position), never applied.
 */
#ifndef GEOKV_PROTO_FEED_H
#define GEOKV_PROTO_FEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

enum {
	PROTO_T_FEED_START     = 48,
	PROTO_T_FEED_SNAP      = 49,
	PROTO_T_FEED_SNAP_DATA = 50,
	PROTO_T_FEED_ENTRIES   = 51,
	PROTO_T_FEED_HB        = 52,
	PROTO_T_FEED_ACK       = 53,
};

#define PROTO_FEED_MAX_NAME    255          /* leaf name bytes */
#define PROTO_FEED_MAX_CHUNK   (1u << 20)   /* snapshot bytes per FEED_SNAP_DATA */
#define PROTO_FEED_MAX_ENTRIES 65536        /* entries per FEED_ENTRIES frame */
#define PROTO_FEED_ENTRY_FIXED 29           /* an entry's bytes besides its data */
#define PROTO_FEED_SEAL_SEED   0x6665656473656131ull
/* Entry types a feed carries (= kv_log_type; numbers are part of the protocol). */
enum { PROTO_FEED_NORMAL = 0, PROTO_FEED_CONF = 1, PROTO_FEED_NOOP = 2 };
/* The chain value at a snapshot's index: both sides derive it, nothing else is needed. */
#define PROTO_FEED_SNAP_SEED(index) ((uint64_t)(index) * 0x9e3779b97f4a7c15ull ^ 0x67656f6b76666565ull)

typedef struct proto_feed_start {
	uint64_t from_index;
	uint64_t from_term;        /* 0 = unknown (after a restart) */
	uint64_t from_hash;
	uint64_t leaf_id;          /* the leaf's configured id (status listing) */
	proto_bytes_t name;        /* the leaf's name, e.g. its feed address; may be empty */
} proto_feed_start_t;

typedef struct proto_feed_snap {
	uint64_t index, term, hash, size;
} proto_feed_snap_t;

typedef struct proto_feed_snap_data {
	uint64_t offset;
	proto_bytes_t data;
} proto_feed_snap_data_t;

typedef struct proto_feed_entry {
	uint64_t index;
	uint64_t term;
	uint8_t type;              /* PROTO_FEED_NORMAL, _CONF, _NOOP */
	proto_bytes_t data;        /* NORMAL only; empty for the others */
	uint64_t hash;
} proto_feed_entry_t;

typedef struct proto_feed_hb {
	uint64_t commit, leader_time_ms, term;
} proto_feed_hb_t;

typedef struct proto_feed_ack {
	uint64_t applied, revision, lag_ms, commit;
} proto_feed_ack_t;

/* The chain step. */
uint64_t proto_feed_hash(uint64_t prev, uint64_t index, uint64_t term, uint8_t type,
			 const void *data, size_t len);

/* Encoders append to w and return w->err (PROTO_ETOOBIG: a field over its max, or w full).
 * Decoders return 0, PROTO_EBADMSG (truncated, trailing bytes, a rule broken) or
 * PROTO_ETOOBIG (a field over its max). */
int proto_feed_start_encode(proto_wbuf_t *w, const proto_feed_start_t *m);
int proto_feed_start_decode(const uint8_t *p, size_t len, proto_feed_start_t *m);
int proto_feed_snap_encode(proto_wbuf_t *w, const proto_feed_snap_t *m);
int proto_feed_snap_decode(const uint8_t *p, size_t len, proto_feed_snap_t *m);
int proto_feed_snap_data_encode(proto_wbuf_t *w, const proto_feed_snap_data_t *m);
int proto_feed_snap_data_decode(const uint8_t *p, size_t len, proto_feed_snap_data_t *m);
int proto_feed_hb_encode(proto_wbuf_t *w, const proto_feed_hb_t *m);
int proto_feed_hb_decode(const uint8_t *p, size_t len, proto_feed_hb_t *m);
int proto_feed_ack_encode(proto_wbuf_t *w, const proto_feed_ack_t *m);
int proto_feed_ack_decode(const uint8_t *p, size_t len, proto_feed_ack_t *m);

/*
 * FEED_ENTRIES: writer and reader.
 * Writer: begin (commit, time), add entries (each checked: type known, data only on NORMAL;
 * PROTO_ETOOBIG when it does not fit with the seal or the frame is full, and then the frame
 * is left as it was before the call, so the caller sends it and starts the next), finish
 * (patches n, appends the seal).
 * Reader: init checks the whole frame once (n within bounds and equal to the entries present,
 * each entry well formed, indexes consecutive, no trailing bytes), so next() after a
 * successful init cannot fail. Entry data are views into p.
 */
typedef struct proto_feed_entries_writer {
	proto_wbuf_t *w;
	uint8_t *count_at;
	uint8_t *start;            /* the payload's first byte (for the seal) */
	uint32_t count;
	uint64_t last_index;
} proto_feed_entries_writer_t;
void proto_feed_entries_begin(proto_feed_entries_writer_t *b, proto_wbuf_t *w, uint64_t commit,
			      uint64_t leader_time_ms);
int  proto_feed_entries_add(proto_feed_entries_writer_t *b, const proto_feed_entry_t *e);
void proto_feed_entries_finish(proto_feed_entries_writer_t *b);

typedef struct proto_feed_entries_reader {
	uint64_t commit, leader_time_ms;
	uint32_t count;            /* entries in the frame (>= 1) */
	proto_cur_t cur;
	uint32_t left;
} proto_feed_entries_reader_t;
int proto_feed_entries_init(proto_feed_entries_reader_t *r, const uint8_t *p, size_t len);
/* 1 with *e filled, 0 at the end. */
int proto_feed_entries_next(proto_feed_entries_reader_t *r, proto_feed_entry_t *e);

#endif
