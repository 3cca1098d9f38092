/*
 * geokv-primary: the client requests that outlive one request/answer turn, kept out of
 * server.c (the connection) and primary.c (the pipeline), which only call these hooks.
 *
 *   WATCH (core/prim_watch.c): answered from this member's store, never a ReadIndex round;
 *   when nothing is new it waits (up to PRIM_WATCH_WAIT_MS) for the next apply, so a
 *   watcher hears of a write as soon as it is applied, without polling.
 *   SNAPSHOT (core/prim_snap.c): the store's snapshot stream, written once per session to an
 *   unlinked temporary file in the data dir (one read transaction: consistent) and served
 *   by offset in chunks, so memory stays bounded and a slow reader holds no LMDB snapshot.
 *
 * Loop thread only. Each parked request holds a reference on its connection.
 */
#ifndef GEOKV_CORE_PRIM_STREAM_H
#define GEOKV_CORE_PRIM_STREAM_H

#include <stdint.h>

#include "core/primary_int.h"

#define PRIM_WATCH_WAIT_MS 5000   /* a WATCH with nothing new is answered empty after this */
#define PRIM_WATCH_MAX     4096   /* parked watches per member; more: PROTO_EBUSY */
#define PRIM_SNAP_SESSIONS 4      /* snapshot sessions at once; the oldest idle one goes */
#define PRIM_SNAP_IDLE_MS  60000  /* a session not read for this long is dropped */

/* WATCH op: answers now or parks. 0 (answered or parked), or an error to reply. */
int  prim__watch_req(prim_t *p, prim_conn_t *c, uint64_t id, const proto_op_t *op);
/* After apply moved the store's revision: answer the watches it satisfies. */
void prim__watch_kick(prim_t *p);
/* From the connection sweep: answer expired watches, drop those of closed connections. */
void prim__watch_sweep(prim_t *p, uint64_t now_ms);
/* Shutdown: drop every parked watch (prim_watch.c) and, with prim__stream_close, every
 * snapshot session. */
void prim__watch_drop_all(void);
void prim__stream_close(prim_t *p);

/* SNAPSHOT op. 0 (answered) or an error to reply. */
int  prim__snap_req(prim_t *p, prim_conn_t *c, uint64_t id, const proto_op_t *op);

/* A RESP with this body (server.c). 0 or an error (the connection is closed on -ENOMEM). */
int  prim__reply_body(prim_conn_t *c, uint64_t id, const void *body, size_t len);

#endif
