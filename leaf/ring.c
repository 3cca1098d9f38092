/*
 * The recent entries ring: copies of the last entries this leaf applied, bounded in bytes,
 * from which core/feed.c serves leaves below this one. A leaf below that is further behind
 * than the ring reaches gets a snapshot of state/ instead, exactly as from a primary whose
 * log was compacted.
 */
#include "leaf/leaf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RING_SLOTS_MIN 1024

int leaf_ring_init(leaf_ring_t *r, size_t max_bytes)
{
	memset(r, 0, sizeof *r);
	r->max_bytes = max_bytes;
	r->cap = RING_SLOTS_MIN;
	r->e = calloc(r->cap, sizeof *r->e);
	return r->e ? 0 : -ENOMEM;
}

static void drop_oldest(leaf_ring_t *r)
{
	leaf_rent_t *x = r->e[r->head];

	r->bytes -= sizeof *x + x->len;
	free(x);
	r->e[r->head] = NULL;
	r->head = (r->head + 1) % r->cap;
	r->n--;
}

void leaf_ring_clear(leaf_ring_t *r)
{
	while (r->n > 0)
		drop_oldest(r);
	r->head = 0;
}

void leaf_ring_free(leaf_ring_t *r)
{
	if (r->e == NULL)
		return;
	leaf_ring_clear(r);
	free(r->e);
	r->e = NULL;
}

static int grow(leaf_ring_t *r)
{
	size_t cap = r->cap * 2;
	leaf_rent_t **e = calloc(cap, sizeof *e);

	if (e == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < r->n; i++)
		e[i] = r->e[(r->head + i) % r->cap];
	free(r->e);
	r->e = e;
	r->cap = cap;
	r->head = 0;
	return 0;
}

uint64_t leaf_ring_first(const leaf_ring_t *r)
{
	return r->n ? r->e[r->head]->index : 0;
}

int leaf_ring_push(leaf_ring_t *r, uint64_t index, uint64_t term, uint8_t type,
		   const uint8_t *data, size_t len)
{
	leaf_rent_t *x;

	if (r->n > 0 && r->e[(r->head + r->n - 1) % r->cap]->index + 1 != index)
		leaf_ring_clear(r);
	if (r->max_bytes == 0)
		return 0;
	while (r->n > 0 && r->bytes + sizeof *x + len > r->max_bytes)
		drop_oldest(r);
	/* Slots grow with the entries the byte bound admits (small entries: many slots). */
	if (r->n == r->cap && grow(r) != 0)
		drop_oldest(r);
	if ((x = malloc(sizeof *x + len)) == NULL)
		return -ENOMEM;
	x->index = index;
	x->term = term;
	x->type = type;
	x->len = (uint32_t)len;
	if (len)
		memcpy(x->data, data, len);
	r->e[(r->head + r->n) % r->cap] = x;
	r->n++;
	r->bytes += sizeof *x + len;
	return 0;
}

const leaf_rent_t *leaf_ring_get(const leaf_ring_t *r, uint64_t index)
{
	uint64_t first = leaf_ring_first(r);

	if (r->n == 0 || index < first || index - first >= r->n)
		return NULL;
	return r->e[(r->head + (size_t)(index - first)) % r->cap];
}

/* ---- the feed source ------------------------------------------------------------------ */

static uint64_t src_served(void *ctx) { return ((leaf_t *)ctx)->pos_index; }

static uint64_t src_first(void *ctx)
{
	leaf_t *l = ctx;
	uint64_t f = leaf_ring_first(&l->ring);

	return f ? f : l->pos_index + 1;
}

static int src_entries(void *ctx, uint64_t lo, uint64_t hi, size_t max_bytes,
		       kv_feed_entry_cb cb, void *cbctx)
{
	leaf_t *l = ctx;
	size_t seen = 0;

	if (lo < src_first(l))
		return KV_ENOTFOUND;
	for (uint64_t i = lo; i < hi; i++) {
		const leaf_rent_t *x = leaf_ring_get(&l->ring, i);
		if (x == NULL)
			return i == lo ? KV_ENOTFOUND : 0;
		if (i > lo && seen + x->len > max_bytes)
			break;
		if (cb(cbctx, x->index, x->term, x->type, x->data, x->len) != 0)
			break;
		seen += x->len;
	}
	return 0;
}

static int src_term(void *ctx, uint64_t index, uint64_t *term)
{
	leaf_t *l = ctx;
	const leaf_rent_t *x = leaf_ring_get(&l->ring, index);

	if (x != NULL) {
		*term = x->term;
		return 0;
	}
	if (index == l->pos_index && l->pos_term != 0) {
		*term = l->pos_term;
		return 0;
	}
	return KV_ENOTFOUND;
}

static void src_beat(void *ctx, uint64_t *commit, uint64_t *leader_time_ms, uint64_t *term)
{
	leaf_t *l = ctx;

	*commit = l->commit > l->pos_index ? l->commit : l->pos_index;
	*leader_time_ms = leaf_leader_now(l);
	*term = l->term;
}

static kv_store_t *src_store(void *ctx) { return ((leaf_t *)ctx)->store; }

/* Fed ourselves: streaming, and heard from our source within the stall bound. */
static bool src_fresh(void *ctx)
{
	leaf_t *l = ctx;

	return l->state == LS_STREAM && kv_nodestat_now_ms() - l->contact_ms <= l->cfg->stall_ms;
}

void leaf_feed_src(leaf_t *l, kv_feed_src_t *s)
{
	*s = (kv_feed_src_t){.ctx = l, .served = src_served, .first = src_first,
			     .entries = src_entries, .term = src_term, .beat = src_beat,
			     .store = src_store, .fresh = src_fresh};
}
