/*
 * geokv-primary's leaf feed: the glue between the primary (its raft log, its store) and the
 * feed server (core/feed.h). Loop thread only. prim__ names, like core/primary_int.h.
 * The server is optional: without `[feed] feed_listen` every call here is a no-op.
 */
#ifndef GEOKV_CORE_PRIM_FEED_H
#define GEOKV_CORE_PRIM_FEED_H

#include "core/feed.h"
#include "core/primary_int.h"

int  prim__feed_start(prim_t *p);        /* listen on feed_listen; 0 or an error (logged) */
void prim__feed_notify(prim_t *p);       /* entries were applied: push them */
void prim__feed_store_closing(prim_t *p);/* before state/ is replaced */
void prim__feed_close(prim_t *p);
/* Leaves for STATUS: up to cap, returns how many. */
size_t prim__feed_leaves(prim_t *p, kv_feed_leaf_t *out, size_t cap);
void prim__feed_metrics(prim_t *p, proto_metrics_buf_t *b);
/* Fill st->leaves (views valid until the next call). */
void prim__feed_status(prim_t *p, proto_status_t *st);

#endif
