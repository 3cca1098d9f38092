/* Leaf feed frames: see proto/feed.h for the layout. */
#include "proto/feed.h"

#include <string.h>
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

uint64_t proto_feed_hash(uint64_t prev, uint64_t index, uint64_t term, uint8_t type,
			 const void *data, size_t len)
{
	uint8_t h[17];
	XXH64_state_t st;

	for (int i = 0; i < 8; i++) {
		h[i] = (uint8_t)(index >> (8 * i));
		h[8 + i] = (uint8_t)(term >> (8 * i));
	}
	h[16] = type;
	XXH64_reset(&st, prev);
	XXH64_update(&st, h, sizeof h);
	if (len > 0)
		XXH64_update(&st, data, len);
	return XXH64_digest(&st);
}

static int finish_decode(const proto_cur_t *c)
{
	if (c->err)
		return c->err;
	return c->p == c->end ? 0 : PROTO_EBADMSG;
}

/* Every payload ends with XXH64 of the bytes before it (see feed.h, "Seal"). */
static void seal(proto_wbuf_t *w, const uint8_t *start)
{
	if (w->err)
		return;
	proto_put_u64(w, XXH64(start, (size_t)(w->p - start), PROTO_FEED_SEAL_SEED));
}

static int unseal(const uint8_t *p, size_t *len)
{
	uint64_t want = 0;

	if (*len < 8)
		return PROTO_EBADMSG;
	*len -= 8;
	for (int i = 0; i < 8; i++)
		want |= (uint64_t)p[*len + (size_t)i] << (8 * i);
	return XXH64(p, *len, PROTO_FEED_SEAL_SEED) == want ? 0 : PROTO_EBADMSG;
}

int proto_feed_start_encode(proto_wbuf_t *w, const proto_feed_start_t *m)
{
	uint8_t *at = w->p;

	if (m->name.len > PROTO_FEED_MAX_NAME)
		return PROTO_ETOOBIG;
	proto_put_u64(w, m->from_index);
	proto_put_u64(w, m->from_term);
	proto_put_u64(w, m->from_hash);
	proto_put_u64(w, m->leaf_id);
	proto_put_bytes(w, 1, m->name.p, m->name.len);
	seal(w, at);
	return w->err;
}

int proto_feed_start_decode(const uint8_t *p, size_t len, proto_feed_start_t *m)
{
	proto_cur_t c;

	if (unseal(p, &len) != 0)
		return PROTO_EBADMSG;
	proto_cur_init(&c, p, len);
	m->from_index = proto_get_u64(&c);
	m->from_term = proto_get_u64(&c);
	m->from_hash = proto_get_u64(&c);
	m->leaf_id = proto_get_u64(&c);
	m->name = proto_get_bytes(&c, 1, PROTO_FEED_MAX_NAME);
	return finish_decode(&c);
}

int proto_feed_snap_encode(proto_wbuf_t *w, const proto_feed_snap_t *m)
{
	uint8_t *at = w->p;

	proto_put_u64(w, m->index);
	proto_put_u64(w, m->term);
	proto_put_u64(w, m->hash);
	proto_put_u64(w, m->size);
	seal(w, at);
	return w->err;
}

int proto_feed_snap_decode(const uint8_t *p, size_t len, proto_feed_snap_t *m)
{
	proto_cur_t c;

	if (unseal(p, &len) != 0)
		return PROTO_EBADMSG;
	proto_cur_init(&c, p, len);
	m->index = proto_get_u64(&c);
	m->term = proto_get_u64(&c);
	m->hash = proto_get_u64(&c);
	m->size = proto_get_u64(&c);
	return finish_decode(&c);
}

int proto_feed_snap_data_encode(proto_wbuf_t *w, const proto_feed_snap_data_t *m)
{
	uint8_t *at = w->p;

	if (m->data.len > PROTO_FEED_MAX_CHUNK)
		return PROTO_ETOOBIG;
	proto_put_u64(w, m->offset);
	proto_put_bytes(w, 4, m->data.p, m->data.len);
	seal(w, at);
	return w->err;
}

int proto_feed_snap_data_decode(const uint8_t *p, size_t len, proto_feed_snap_data_t *m)
{
	proto_cur_t c;

	if (unseal(p, &len) != 0)
		return PROTO_EBADMSG;
	proto_cur_init(&c, p, len);
	m->offset = proto_get_u64(&c);
	m->data = proto_get_bytes(&c, 4, PROTO_FEED_MAX_CHUNK);
	return finish_decode(&c);
}

int proto_feed_hb_encode(proto_wbuf_t *w, const proto_feed_hb_t *m)
{
	uint8_t *at = w->p;

	proto_put_u64(w, m->commit);
	proto_put_u64(w, m->leader_time_ms);
	proto_put_u64(w, m->term);
	seal(w, at);
	return w->err;
}

int proto_feed_hb_decode(const uint8_t *p, size_t len, proto_feed_hb_t *m)
{
	proto_cur_t c;

	if (unseal(p, &len) != 0)
		return PROTO_EBADMSG;
	proto_cur_init(&c, p, len);
	m->commit = proto_get_u64(&c);
	m->leader_time_ms = proto_get_u64(&c);
	m->term = proto_get_u64(&c);
	return finish_decode(&c);
}

int proto_feed_ack_encode(proto_wbuf_t *w, const proto_feed_ack_t *m)
{
	uint8_t *at = w->p;

	proto_put_u64(w, m->applied);
	proto_put_u64(w, m->revision);
	proto_put_u64(w, m->lag_ms);
	proto_put_u64(w, m->commit);
	seal(w, at);
	return w->err;
}

int proto_feed_ack_decode(const uint8_t *p, size_t len, proto_feed_ack_t *m)
{
	proto_cur_t c;

	if (unseal(p, &len) != 0)
		return PROTO_EBADMSG;
	proto_cur_init(&c, p, len);
	m->applied = proto_get_u64(&c);
	m->revision = proto_get_u64(&c);
	m->lag_ms = proto_get_u64(&c);
	m->commit = proto_get_u64(&c);
	return finish_decode(&c);
}

/* ---- FEED_ENTRIES ------------------------------------------------------------------- */

void proto_feed_entries_begin(proto_feed_entries_writer_t *b, proto_wbuf_t *w, uint64_t commit,
			      uint64_t leader_time_ms)
{
	b->w = w;
	b->count = 0;
	b->last_index = 0;
	b->start = w->p;
	proto_put_u64(w, commit);
	proto_put_u64(w, leader_time_ms);
	b->count_at = w->p;
	proto_put_u32(w, 0);
}

int proto_feed_entries_add(proto_feed_entries_writer_t *b, const proto_feed_entry_t *e)
{
	proto_wbuf_t *w = b->w;
	uint8_t *at = w->p;

	if (w->err)
		return w->err;
	if (e->type > PROTO_FEED_NOOP || (e->type != PROTO_FEED_NORMAL && e->data.len > 0) ||
	    e->index == 0 || (b->count > 0 && e->index != b->last_index + 1))
		return PROTO_EBADMSG;
	if (b->count == PROTO_FEED_MAX_ENTRIES ||
	    (size_t)(w->end - w->p) < PROTO_FEED_ENTRY_FIXED + 8 + (size_t)e->data.len)
		return PROTO_ETOOBIG; /* not sticky: the frame stays as it was */
	proto_put_u64(w, e->index);
	proto_put_u64(w, e->term);
	proto_put_u8(w, e->type);
	proto_put_bytes(w, 4, e->data.p, e->data.len);
	proto_put_u64(w, e->hash);
	if (w->err || w->end - w->p < 8) { /* room for the seal stays */
		w->p = at;
		w->err = 0;
		return PROTO_ETOOBIG;
	}
	b->count++;
	b->last_index = e->index;
	return 0;
}

void proto_feed_entries_finish(proto_feed_entries_writer_t *b)
{
	if (b->w->err || b->count_at == NULL)
		return;
	for (int i = 0; i < 4; i++)
		b->count_at[i] = (uint8_t)(b->count >> (8 * i));
	seal(b->w, b->start);
}

static int entry_get(proto_cur_t *c, proto_feed_entry_t *e)
{
	e->index = proto_get_u64(c);
	e->term = proto_get_u64(c);
	e->type = proto_get_u8(c);
	e->data = proto_get_bytes(c, 4, PROTO_DEFAULT_MAX_FRAME);
	e->hash = proto_get_u64(c);
	if (c->err)
		return c->err;
	if (e->type > PROTO_FEED_NOOP || (e->type != PROTO_FEED_NORMAL && e->data.len > 0) ||
	    e->index == 0)
		return PROTO_EBADMSG;
	return 0;
}

int proto_feed_entries_init(proto_feed_entries_reader_t *r, const uint8_t *p, size_t len)
{
	proto_cur_t c;
	proto_feed_entry_t e;
	uint64_t last = 0;
	int rc;

	if (unseal(p, &len) != 0)
		return PROTO_EBADMSG;
	proto_cur_init(&c, p, len);
	r->commit = proto_get_u64(&c);
	r->leader_time_ms = proto_get_u64(&c);
	r->count = proto_get_u32(&c);
	if (c.err)
		return c.err;
	if (r->count == 0)
		return PROTO_EBADMSG;
	if (r->count > PROTO_FEED_MAX_ENTRIES)
		return PROTO_ETOOBIG;
	/* Each entry takes at least PROTO_FEED_ENTRY_FIXED bytes: a count the bytes cannot
	 * hold is refused before walking them. */
	if ((size_t)(c.end - c.p) / PROTO_FEED_ENTRY_FIXED < r->count)
		return PROTO_EBADMSG;
	r->cur = c;
	for (uint32_t i = 0; i < r->count; i++) {
		if ((rc = entry_get(&c, &e)) != 0)
			return rc;
		if (i > 0 && e.index != last + 1)
			return PROTO_EBADMSG;
		last = e.index;
	}
	if (c.p != c.end)
		return PROTO_EBADMSG;
	r->left = r->count;
	return 0;
}

int proto_feed_entries_next(proto_feed_entries_reader_t *r, proto_feed_entry_t *e)
{
	if (r->left == 0)
		return 0;
	if (entry_get(&r->cur, e) != 0)
		return PROTO_EBADMSG; /* cannot happen after a successful init */
	r->left--;
	return 1;
}
