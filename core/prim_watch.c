/*
 * WATCH long-polls (core/prim_stream.h). A WATCH whose from-revision the store has reached
 * is answered at once through the ordinary read path (kv_read_op -> kv_changes); one past
 * the store's revision is parked until an apply reaches it (prim__watch_kick, called by the
 * pipeline after every apply) or PRIM_WATCH_WAIT_MS pass (prim__watch_sweep, from the
 * connection sweep), and then answered the same way. "From now" (rev 0) is pinned to the
 * revision after the current one when the request arrives, so no write between two polls
 * is missed: the client asks again from the answer's next_rev.
 *
 * Why a list and no per-watch timer: parked watches are few and short-lived; one pass per
 * apply or sweep costs less than a timer handle each, and a closed connection's watch is
 * simply dropped at the next pass (it holds a connection reference until then).
 */
#include "core/prim_stream.h"

#include <stdlib.h>
#include <string.h>

typedef struct pwatch {
	struct pwatch *next;
	prim_conn_t *c;
	uint64_t id, from, deadline;
	size_t len;
	uint8_t pl[];              /* the op, re-encoded with rev = from */
} pwatch_t;

/* One daemon per process: the parked list is the process's (and names no prim_t field, so
 * the pipeline's struct stays as it is). */
static pwatch_t *parked;
static size_t nparked;

static void serve(pwatch_t *w)
{
	if (prim__conn_open(w->c))
		prim__serve_read(w->c, w->id, w->pl, w->len);
	prim__conn_unref(w->c);
	free(w);
	nparked--;
}

int prim__watch_req(prim_t *p, prim_conn_t *c, uint64_t id, const proto_op_t *op)
{
	uint64_t now_rev = kv_revision(p->store);
	proto_op_t o = *op;
	proto_wbuf_t wb;
	size_t cap = 1 + 1 + o.bucket.len + 2 + o.key.len + 8 + 4 + 16;
	pwatch_t *w = malloc(sizeof *w + cap);
	int rc;

	if (!w)
		return PROTO_EINTERNAL;
	o.rev = o.rev ? o.rev : now_rev + 1;
	proto_wbuf_init(&wb, w->pl, cap);
	if ((rc = proto_op_encode(&wb, &o)) != 0) {
		free(w);
		return rc;
	}
	w->len = proto_wbuf_len(&wb);
	w->c = c;
	w->id = id;
	w->from = o.rev;
	w->deadline = uv_now(p->loop) + PRIM_WATCH_WAIT_MS;
	prim__conn_ref(c);
	nparked++;
	if (now_rev >= w->from) {
		serve(w);
		return 0;
	}
	if (nparked > PRIM_WATCH_MAX) {
		prim__conn_unref(c);
		free(w);
		nparked--;
		return PROTO_EBUSY;
	}
	w->next = parked;
	parked = w;
	return 0;
}

void prim__watch_kick(prim_t *p)
{
	uint64_t rev;
	pwatch_t **pp = &parked;

	if (!parked)
		return;
	rev = kv_revision(p->store);
	while (*pp) {
		pwatch_t *w = *pp;
		if (rev >= w->from || !prim__conn_open(w->c)) {
			*pp = w->next;
			serve(w);
		} else {
			pp = &w->next;
		}
	}
}

void prim__watch_sweep(prim_t *p, uint64_t now_ms)
{
	pwatch_t **pp = &parked;

	(void)p;
	while (*pp) {
		pwatch_t *w = *pp;
		if (now_ms >= w->deadline || !prim__conn_open(w->c)) {
			*pp = w->next;
			serve(w); /* empty, with next_rev = from */
		} else {
			pp = &w->next;
		}
	}
}

void prim__watch_drop_all(void)
{
	while (parked) {
		pwatch_t *w = parked;
		parked = w->next;
		prim__conn_unref(w->c);
		free(w);
		nparked--;
	}
}
