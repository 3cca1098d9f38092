/*
 * The leaf's ring of recent entries (leaf/ring.c): bounded in bytes, oldest dropped first,
 * cleared on a gap, lookups by index only inside what it holds; and the feed source over it
 * refuses (KV_ENOTFOUND) what the ring no longer reaches, so the feed server sends a
 * snapshot instead.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "leaf/leaf.h"

Test(leaf_ring, holds_consecutive_entries_and_looks_them_up)
{
	leaf_ring_t r;

	cr_assert_eq(leaf_ring_init(&r, 1 << 20), 0);
	cr_assert_eq(leaf_ring_first(&r), 0);
	for (uint64_t i = 10; i < 3010; i++)
		cr_assert_eq(leaf_ring_push(&r, i, 2, 0, (const uint8_t *)"abc", 3), 0);
	cr_assert_eq(leaf_ring_first(&r), 10);
	cr_assert_eq(r.n, 3000);
	const leaf_rent_t *e = leaf_ring_get(&r, 2000);
	cr_assert_not_null(e);
	cr_assert_eq(e->index, 2000);
	cr_assert_eq(e->len, 3);
	cr_assert_eq(memcmp(e->data, "abc", 3), 0);
	cr_assert_null(leaf_ring_get(&r, 9));
	cr_assert_null(leaf_ring_get(&r, 3010));
	leaf_ring_free(&r);
}

Test(leaf_ring, drops_the_oldest_past_its_byte_bound)
{
	leaf_ring_t r;
	static uint8_t big[1000];

	cr_assert_eq(leaf_ring_init(&r, 100 * (sizeof(leaf_rent_t) + sizeof big)), 0);
	for (uint64_t i = 1; i <= 1000; i++)
		cr_assert_eq(leaf_ring_push(&r, i, 1, 0, big, sizeof big), 0);
	cr_assert_leq(r.bytes, r.max_bytes);
	cr_assert_eq(r.n, 100);
	cr_assert_eq(leaf_ring_first(&r), 901);
	cr_assert_not_null(leaf_ring_get(&r, 1000));
	cr_assert_null(leaf_ring_get(&r, 900));
	leaf_ring_free(&r);
}

Test(leaf_ring, a_gap_clears_it)
{
	leaf_ring_t r;

	cr_assert_eq(leaf_ring_init(&r, 1 << 20), 0);
	for (uint64_t i = 1; i <= 5; i++)
		leaf_ring_push(&r, i, 1, 2, NULL, 0);
	leaf_ring_push(&r, 50, 1, 0, (const uint8_t *)"x", 1); /* after a snapshot, say */
	cr_assert_eq(r.n, 1);
	cr_assert_eq(leaf_ring_first(&r), 50);
	cr_assert_null(leaf_ring_get(&r, 5));
	leaf_ring_free(&r);
}

struct collect {
	uint64_t first, last, n;
};

static int collect_cb(void *ctx, uint64_t index, uint64_t term, uint8_t type, const uint8_t *data,
		      size_t len)
{
	struct collect *c = ctx;

	(void)term, (void)type, (void)data, (void)len;
	if (c->n == 0)
		c->first = index;
	c->last = index;
	c->n++;
	return 0;
}

Test(leaf_ring, the_feed_source_serves_only_what_the_ring_holds)
{
	static leaf_t l;
	static leaf_config_t cfg;
	kv_feed_src_t s;
	struct collect c = {0};
	uint64_t term;

	cfg.stall_ms = 3000;
	l.cfg = &cfg;
	cr_assert_eq(leaf_ring_init(&l.ring, 1 << 20), 0);
	for (uint64_t i = 100; i <= 200; i++)
		leaf_ring_push(&l.ring, i, 4, 0, (const uint8_t *)"v", 1);
	l.pos_index = 200;
	l.pos_term = 4;
	leaf_feed_src(&l, &s);
	cr_assert_eq(s.served(s.ctx), 200);
	cr_assert_eq(s.first(s.ctx), 100);
	cr_assert_eq(s.entries(s.ctx, 99, 201, 1 << 20, collect_cb, &c), KV_ENOTFOUND);
	cr_assert_eq(s.entries(s.ctx, 150, 201, 1 << 20, collect_cb, &c), 0);
	cr_assert_eq(c.first, 150);
	cr_assert_eq(c.last, 200);
	cr_assert_eq(c.n, 51);
	/* max_bytes: the first entry always, then as many as fit */
	c = (struct collect){0};
	cr_assert_eq(s.entries(s.ctx, 150, 201, 10, collect_cb, &c), 0);
	cr_assert_eq(c.n, 10);
	cr_assert_eq(s.term(s.ctx, 120, &term), 0);
	cr_assert_eq(term, 4);
	cr_assert_eq(s.term(s.ctx, 50, &term), KV_ENOTFOUND);
	/* not streaming: not fresh, so no heartbeats to leaves below */
	cr_assert(!s.fresh(s.ctx));
	leaf_ring_free(&l.ring);
}
