/*
 * geokv error codes.
 *
 * Every geokv function that can fail returns int: 0 on success, a negative errno (as libuv
 * does), or a negative code from one of the module bands below. The bands sit far below any
 * errno and away from LMDB's (-30799..-30780), so one int carries any of them and
 * geokv_strerror() names each. The KV_ and PROTO_ numbers are part of the wire protocol
 * (a response's status field carries them): never renumber, only append.
 *
 *   KV_E*     -30100 .. -30199   store and data-model rules (core/, also sent on the wire)
 *   PROTO_E*  -30200 .. -30299   framing, decoding, sessions, client library
 *   RAFT_E*   -30300 .. -30399   consensus (declared in raft/raft.h, which depends on nothing)
 */
#ifndef GEOKV_PROTO_ERRORS_H
#define GEOKV_PROTO_ERRORS_H

enum {
	KV_ENOTFOUND     = -30100, /* key absent, deleted, or revision not retained */
	KV_EEXIST        = -30101, /* create: key already has a live value */
	KV_EREVISION     = -30102, /* update/delete: key's revision is not the expected one */
	KV_EBADKEY       = -30103, /* key breaks the key rules */
	KV_EBADBUCKET    = -30104, /* bucket name breaks the bucket-name rules */
	KV_ENOBUCKET     = -30105, /* bucket does not exist */
	KV_EBUCKETEXISTS = -30106, /* bucket add with a different config */
	KV_ETOOBIG       = -30107, /* value larger than the bucket's max value size */
	KV_EFULL         = -30108, /* store full: map at its configured maximum, or disk full */
	KV_ECORRUPT      = -30109, /* checksum mismatch or undecodable stored data */
	KV_EBADCONFIG    = -30110, /* bucket config out of range */
	KV_EREADONLY     = -30111, /* write on a read-only store */
	KV_EINTERNAL     = -30112, /* unexpected storage error (logged where it happened) */
	KV_EBATCH        = -30113, /* a batch op failed; the result says which and why */
	KV_ELAST         = -30114,

	PROTO_EAGAIN     = -30200, /* decoder: need more bytes (not an error on a stream) */
	PROTO_EBADMSG    = -30201, /* malformed frame or message */
	PROTO_ETOOBIG    = -30202, /* frame or field over its configured maximum */
	PROTO_EVERSION   = -30203, /* protocol version not supported */
	PROTO_EAUTH      = -30204, /* bad credentials */
	PROTO_ECLUSTER   = -30205, /* cluster id does not match */
	PROTO_ENOTLEADER = -30206, /* this node cannot take writes; response carries a leader hint */
	PROTO_EBUSY      = -30207, /* too many requests in flight: retry later */
	PROTO_EINTERNAL  = -30208, /* server-side failure (logged on the server) */
	PROTO_ECLOSED    = -30209, /* connection closed before the response */
	PROTO_ETIMEDOUT  = -30210, /* no response within the deadline */
	PROTO_EBADTYPE   = -30211, /* unknown frame type or op */
	PROTO_ESHUTDOWN  = -30212, /* server is shutting down */
	PROTO_ETLS       = -30213, /* TLS: handshake or certificate check failed, or the server
				    * requires TLS and the client spoke plain */
	PROTO_ELAST      = -30214,
};

/*
 * A static, human-readable text for any geokv code, negative errno, or LMDB code.
 * Never NULL. Thread-safe.
 */
const char *geokv_strerror(int err);

/* Short stable symbol ("KV_ENOTFOUND", "ECONNREFUSED", ...) for logs and JSON; never NULL. */
const char *geokv_errname(int err);

#endif
