/* Peer frames: see proto/raftwire.h for the layout. */
#include "proto/raftwire.h"

#include <string.h>

int proto_peer_hello_encode(proto_wbuf_t *w, const proto_peer_hello_t *m)
{
	if (m->cluster.len > PROTO_MAX_CLUSTER || m->client_addr.len > PROTO_MAX_ADDR ||
	    m->token.len > PROTO_MAX_TOKEN)
		return PROTO_ETOOBIG;
	proto_put_u16(w, m->version);
	proto_put_bytes(w, 1, m->cluster.p, m->cluster.len);
	proto_put_u32(w, m->from);
	proto_put_u32(w, m->to);
	proto_put_bytes(w, 1, m->client_addr.p, m->client_addr.len);
	proto_put_bytes(w, 2, m->token.p, m->token.len);
	return w->err;
}

int proto_peer_hello_decode(const uint8_t *p, size_t len, proto_peer_hello_t *m)
{
	proto_cur_t c;

	proto_cur_init(&c, p, len);
	m->version = proto_get_u16(&c);
	m->cluster = proto_get_bytes(&c, 1, PROTO_MAX_CLUSTER);
	m->from = proto_get_u32(&c);
	m->to = proto_get_u32(&c);
	m->client_addr = proto_get_bytes(&c, 1, PROTO_MAX_ADDR);
	m->token = proto_get_bytes(&c, 2, PROTO_MAX_TOKEN);
	if (c.err)
		return c.err;
	if (c.p != c.end || m->from == 0 || m->to == 0)
		return PROTO_EBADMSG;
	return 0;
}

#define RAFT_FIXED (4 * 4 + 7 * 8 + 2 * 8 + 4 + 4 + 4) /* header .. n_entries, data length */

size_t proto_raft_msg_size(const raft_msg_t *m)
{
	size_t n = RAFT_FIXED + 4 * (size_t)m->snap.conf.n + m->len;

	for (uint32_t i = 0; i < m->n_entries; i++)
		n += 8 + 8 + 4 + 4 + m->entries[i].len;
	return n;
}

int proto_raft_msg_encode(proto_wbuf_t *w, const raft_msg_t *m)
{
	if (m->snap.conf.n > RAFT_MAX_NODES || m->len > UINT32_MAX)
		return PROTO_ETOOBIG;
	proto_put_u32(w, m->type);
	proto_put_u32(w, m->from);
	proto_put_u32(w, m->to);
	proto_put_u32(w, m->flags);
	proto_put_u64(w, m->term);
	proto_put_u64(w, m->index);
	proto_put_u64(w, m->log_term);
	proto_put_u64(w, m->commit);
	proto_put_u64(w, m->hint);
	proto_put_u64(w, m->ctx);
	proto_put_u64(w, m->offset);
	proto_put_u64(w, m->snap.index);
	proto_put_u64(w, m->snap.term);
	proto_put_u32(w, m->snap.conf.n);
	for (uint32_t i = 0; i < m->snap.conf.n; i++)
		proto_put_u32(w, m->snap.conf.ids[i]);
	proto_put_u32(w, m->n_entries);
	for (uint32_t i = 0; i < m->n_entries; i++) {
		const raft_entry_t *e = &m->entries[i];
		proto_put_u64(w, e->index);
		proto_put_u64(w, e->term);
		proto_put_u32(w, e->type);
		proto_put_bytes(w, 4, e->data, e->len);
	}
	proto_put_bytes(w, 4, m->data, m->len);
	return w->err;
}

int proto_raft_msg_decode(const uint8_t *p, size_t len, raft_msg_t *m, raft_entry_t *ents,
			  size_t cap, uint32_t max_data)
{
	proto_cur_t c;
	proto_bytes_t b;

	memset(m, 0, sizeof *m);
	proto_cur_init(&c, p, len);
	m->type = proto_get_u32(&c);
	m->from = proto_get_u32(&c);
	m->to = proto_get_u32(&c);
	m->flags = proto_get_u32(&c);
	m->term = proto_get_u64(&c);
	m->index = proto_get_u64(&c);
	m->log_term = proto_get_u64(&c);
	m->commit = proto_get_u64(&c);
	m->hint = proto_get_u64(&c);
	m->ctx = proto_get_u64(&c);
	m->offset = proto_get_u64(&c);
	m->snap.index = proto_get_u64(&c);
	m->snap.term = proto_get_u64(&c);
	m->snap.conf.n = proto_get_u32(&c);
	if (c.err)
		return c.err;
	if (m->type == 0 || m->type >= RAFT_MSG_TYPE_MAX || m->snap.conf.n > RAFT_MAX_NODES ||
	    (m->flags & ~(uint32_t)(RAFT_MSGF_REJECT | RAFT_MSGF_TRANSFER | RAFT_MSGF_LAST)))
		return PROTO_EBADMSG;
	for (uint32_t i = 0; i < m->snap.conf.n; i++)
		m->snap.conf.ids[i] = proto_get_u32(&c);
	m->n_entries = proto_get_u32(&c);
	if (c.err)
		return c.err;
	/* Each entry takes at least 24 bytes: a count the payload cannot hold is malformed,
	 * one it could hold but we have no room for is too big. */
	if ((size_t)m->n_entries > (size_t)(c.end - c.p) / 24)
		return PROTO_EBADMSG;
	if (m->n_entries > cap)
		return PROTO_ETOOBIG;
	for (uint32_t i = 0; i < m->n_entries; i++) {
		raft_entry_t *e = &ents[i];
		e->index = proto_get_u64(&c);
		e->term = proto_get_u64(&c);
		e->type = proto_get_u32(&c);
		b = proto_get_bytes(&c, 4, max_data);
		if (c.err)
			return c.err;
		if (e->type > RAFT_ENTRY_NOOP)
			return PROTO_EBADMSG;
		e->data = b.p;
		e->len = b.len;
	}
	m->entries = m->n_entries ? ents : NULL;
	b = proto_get_bytes(&c, 4, max_data);
	if (c.err)
		return c.err;
	m->data = b.p;
	m->len = b.len;
	return c.p == c.end ? 0 : PROTO_EBADMSG;
}
