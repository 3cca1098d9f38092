/*
 * geokv peer wire format: the frames primaries exchange on their peer listener.
 *
 * What it is: pure, bounds-checked codecs (like proto/proto.h, whose frame header they use)
 * for the peer handshake and for raft messages (raft/raft.h's raft_msg_t). No I/O, no
 * allocation. Decoded byte strings and entry data are views into the input buffer.
 *
 * What it is not: the transport (core/peer.c) or consensus (raft/).
 *
 * Frames (types in the 32..47 band proto.h reserves for peers):
 *   PROTO_T_PEER_HELLO  dialer -> acceptor, then acceptor -> dialer (same body):
 *       u16 version, bytes(u8) cluster, u32 from, u32 to, bytes(u8) client_addr,
 *       bytes(u16) token
 *     `from` is the sender's node id, `to` the node it believes it talks to; the acceptor
 *     answers with its own hello (from/to swapped) or an ERROR (PROTO_ECLUSTER, PROTO_EAUTH,
 *     PROTO_EBADMSG for an unknown node or a wrong `to`) and closes.
 *   PROTO_T_RAFT        one raft message, sender -> receiver, id 0:
 *       u32 type, u32 from, u32 to, u32 flags, u64 term, u64 index, u64 log_term, u64 commit,
 *       u64 hint, u64 ctx, u64 offset,
 *       u64 snap.index, u64 snap.term, u32 conf.n, conf.n x u32 id,
 *       u32 n_entries, n_entries x (u64 index, u64 term, u32 type, bytes(u32) data),
 *       bytes(u32) data
 * All integers little-endian. A connection carries messages one way (the dialer sends):
 * each pair of primaries holds two connections.
 */
#ifndef GEOKV_PROTO_RAFTWIRE_H
#define GEOKV_PROTO_RAFTWIRE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"
#include "raft/raft.h"

enum {
	PROTO_T_PEER_HELLO = 32,
	PROTO_T_RAFT       = 33,
};

typedef struct proto_peer_hello {
	uint16_t version;
	proto_bytes_t cluster;
	uint32_t from;
	uint32_t to;
	proto_bytes_t client_addr; /* HOST:PORT clients use for the sender (leader hints) */
	proto_bytes_t token;       /* the cluster's token when one is configured */
} proto_peer_hello_t;

int proto_peer_hello_encode(proto_wbuf_t *w, const proto_peer_hello_t *m);
int proto_peer_hello_decode(const uint8_t *p, size_t len, proto_peer_hello_t *m);

/* Bytes proto_raft_msg_encode needs for m (exact). */
size_t proto_raft_msg_size(const raft_msg_t *m);
int proto_raft_msg_encode(proto_wbuf_t *w, const raft_msg_t *m);

/*
 * Decode one raft message. Entries go into ents[0..cap) (views into p; m->entries = ents).
 * Errors: PROTO_EBADMSG (truncated, trailing bytes, unknown type, conf.n over
 * RAFT_MAX_NODES, an entry type raft does not know), PROTO_ETOOBIG (more than cap entries, a
 * byte string over max_data).
 */
int proto_raft_msg_decode(const uint8_t *p, size_t len, raft_msg_t *m, raft_entry_t *ents,
			  size_t cap, uint32_t max_data);

#endif
