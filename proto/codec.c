/*
 * Frame, message and op codecs (proto/proto.h).
 *
 * Invariants every decoder keeps:
 *   - no read outside [p, p + len): each read goes through proto_cur_t, which checks the
 *     remaining length first and then only ever advances `p` towards `end`;
 *   - no allocation and no loop bounded by a number read from the input unless every
 *     iteration consumes at least one byte (so a hostile count costs at most `len` steps);
 *   - every field length is checked against its protocol maximum before it is used;
 *   - a top-level decode consumes exactly its input: trailing bytes are PROTO_EBADMSG, so
 *     one payload has one meaning (decode(encode(x)) == x and encode(decode(b)) == b).
 */
#include "proto/proto.h"

#include <string.h>

/* ---- cursor ------------------------------------------------------------------------- */

/* Returns p and advances by n, or NULL (sticky PROTO_EBADMSG) when n bytes are not there. */
static const uint8_t *cur_take(proto_cur_t *c, size_t n)
{
	const uint8_t *p;

	if (c->err)
		return NULL;
	if ((size_t)(c->end - c->p) < n) {
		c->err = PROTO_EBADMSG;
		return NULL;
	}
	p = c->p;
	c->p += n;
	return p;
}

uint8_t proto_get_u8(proto_cur_t *c)
{
	const uint8_t *p = cur_take(c, 1);
	return p ? p[0] : 0;
}

uint16_t proto_get_u16(proto_cur_t *c)
{
	const uint8_t *p = cur_take(c, 2);
	return p ? (uint16_t)(p[0] | (uint16_t)p[1] << 8) : 0;
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const uint8_t *p)
{
	return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

uint32_t proto_get_u32(proto_cur_t *c)
{
	const uint8_t *p = cur_take(c, 4);
	return p ? rd32(p) : 0;
}

uint64_t proto_get_u64(proto_cur_t *c)
{
	const uint8_t *p = cur_take(c, 8);
	return p ? rd64(p) : 0;
}

proto_bytes_t proto_get_bytes(proto_cur_t *c, int lenbytes, uint32_t max)
{
	proto_bytes_t b = {NULL, 0};
	uint32_t n;

	switch (lenbytes) {
	case 1: n = proto_get_u8(c); break;
	case 2: n = proto_get_u16(c); break;
	case 4: n = proto_get_u32(c); break;
	default: if (!c->err) c->err = PROTO_EBADMSG; return b;
	}
	if (c->err)
		return b;
	/* The max is checked before the bytes present: an oversize field is refused as such
	 * even when the sender stopped early, so a peer learns the limit, not "truncated". */
	if (n > max) {
		c->err = PROTO_ETOOBIG;
		return b;
	}
	b.p = cur_take(c, n);
	if (b.p == NULL)
		return (proto_bytes_t){NULL, 0};
	b.len = n;
	return b;
}

/* Decoders of whole payloads end here: the cursor's error, or trailing bytes. */
static int cur_done(const proto_cur_t *c)
{
	if (c->err)
		return c->err;
	return c->p == c->end ? 0 : PROTO_EBADMSG;
}

/* ---- writer ------------------------------------------------------------------------- */

static uint8_t *w_take(proto_wbuf_t *w, size_t n)
{
	uint8_t *p;

	if (w->err)
		return NULL;
	if ((size_t)(w->end - w->p) < n) {
		w->err = PROTO_ETOOBIG;
		return NULL;
	}
	p = w->p;
	w->p += n;
	return p;
}

static void wr16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void wr32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void wr64(uint8_t *p, uint64_t v)
{
	wr32(p, (uint32_t)v);
	wr32(p + 4, (uint32_t)(v >> 32));
}

void proto_put_u8(proto_wbuf_t *w, uint8_t v)
{
	uint8_t *p = w_take(w, 1);
	if (p)
		p[0] = v;
}

void proto_put_u16(proto_wbuf_t *w, uint16_t v)
{
	uint8_t *p = w_take(w, 2);
	if (p)
		wr16(p, v);
}

void proto_put_u32(proto_wbuf_t *w, uint32_t v)
{
	uint8_t *p = w_take(w, 4);
	if (p)
		wr32(p, v);
}

void proto_put_u64(proto_wbuf_t *w, uint64_t v)
{
	uint8_t *p = w_take(w, 8);
	if (p)
		wr64(p, v);
}

void proto_put_bytes(proto_wbuf_t *w, int lenbytes, const void *p, size_t len)
{
	uint8_t *d;

	if (w->err)
		return;
	switch (lenbytes) {
	case 1: if (len > UINT8_MAX) goto toobig; proto_put_u8(w, (uint8_t)len); break;
	case 2: if (len > UINT16_MAX) goto toobig; proto_put_u16(w, (uint16_t)len); break;
	case 4: if (len > UINT32_MAX) goto toobig; proto_put_u32(w, (uint32_t)len); break;
	default: w->err = PROTO_EBADMSG; return;
	}
	d = w_take(w, len);
	if (d && len)
		memcpy(d, p, len);
	return;
toobig:
	w->err = PROTO_ETOOBIG;
}

/* Encoders refuse fields over the protocol maximum, so that what they write decodes. */
static void put_field(proto_wbuf_t *w, int lenbytes, proto_bytes_t b, uint32_t max)
{
	if (w->err)
		return;
	if (b.len > max) {
		w->err = PROTO_ETOOBIG;
		return;
	}
	proto_put_bytes(w, lenbytes, b.p, b.len);
}

/* ---- frame header ------------------------------------------------------------------- */

int proto_hdr_decode(const uint8_t *buf, size_t len, uint32_t max_frame, proto_hdr_t *hdr)
{
	if (len < PROTO_HDR_LEN)
		return PROTO_EAGAIN;
	hdr->len = rd32(buf);
	hdr->type = (uint16_t)(buf[4] | buf[5] << 8);
	hdr->flags = (uint16_t)(buf[6] | buf[7] << 8);
	hdr->id = rd64(buf + 8);
	if (hdr->flags & ~(unsigned)PROTO_F_KNOWN)
		return PROTO_EBADMSG;
	/* Before waiting for the payload: a peer announcing 4 GiB must not make us buffer it. */
	if (hdr->len > max_frame)
		return PROTO_ETOOBIG;
	if (len - PROTO_HDR_LEN < hdr->len)
		return PROTO_EAGAIN;
	return PROTO_HDR_LEN;
}

void proto_hdr_encode(uint8_t out[PROTO_HDR_LEN], const proto_hdr_t *hdr)
{
	wr32(out, hdr->len);
	wr16(out + 4, hdr->type);
	wr16(out + 6, hdr->flags);
	wr64(out + 8, hdr->id);
}

size_t proto_frame_begin(proto_wbuf_t *w)
{
	size_t at = proto_wbuf_len(w);

	w_take(w, PROTO_HDR_LEN);
	return at;
}

int proto_frame_finish(proto_wbuf_t *w, size_t at, uint16_t type, uint64_t id)
{
	proto_hdr_t h;
	size_t len;

	if (w->err)
		return w->err;
	len = proto_wbuf_len(w) - at - PROTO_HDR_LEN;
	if (len > UINT32_MAX)
		return w->err = PROTO_ETOOBIG;
	h.len = (uint32_t)len;
	h.type = type;
	h.flags = 0;
	h.id = id;
	proto_hdr_encode(w->start + at, &h);
	return 0;
}

/* ---- session ------------------------------------------------------------------------ */

int proto_hello_encode(proto_wbuf_t *w, const proto_hello_t *m)
{
	proto_put_u16(w, m->version);
	proto_put_u8(w, m->role);
	put_field(w, 1, m->cluster, PROTO_MAX_CLUSTER);
	put_field(w, 2, m->token, PROTO_MAX_TOKEN);
	return w->err;
}

int proto_hello_decode(const uint8_t *p, size_t len, proto_hello_t *m)
{
	proto_cur_t c;

	proto_cur_init(&c, p, len);
	m->version = proto_get_u16(&c);
	m->role = proto_get_u8(&c);
	m->cluster = proto_get_bytes(&c, 1, PROTO_MAX_CLUSTER);
	m->token = proto_get_bytes(&c, 2, PROTO_MAX_TOKEN);
	return cur_done(&c);
}

int proto_hello_ok_encode(proto_wbuf_t *w, const proto_hello_ok_t *m)
{
	proto_put_u16(w, m->version);
	proto_put_u64(w, m->node_id);
	proto_put_u64(w, m->revision);
	put_field(w, 1, m->cluster, PROTO_MAX_CLUSTER);
	put_field(w, 1, m->leader, PROTO_MAX_ADDR);
	return w->err;
}

int proto_hello_ok_decode(const uint8_t *p, size_t len, proto_hello_ok_t *m)
{
	proto_cur_t c;

	proto_cur_init(&c, p, len);
	m->version = proto_get_u16(&c);
	m->node_id = proto_get_u64(&c);
	m->revision = proto_get_u64(&c);
	m->cluster = proto_get_bytes(&c, 1, PROTO_MAX_CLUSTER);
	m->leader = proto_get_bytes(&c, 1, PROTO_MAX_ADDR);
	return cur_done(&c);
}

int proto_error_encode(proto_wbuf_t *w, const proto_error_t *m)
{
	proto_put_u32(w, (uint32_t)m->code);
	put_field(w, 2, m->message, PROTO_MAX_ERRMSG);
	put_field(w, 1, m->leader, PROTO_MAX_ADDR);
	proto_put_u32(w, m->index);
	proto_put_u32(w, (uint32_t)m->cause);
	return w->err;
}

int proto_error_decode(const uint8_t *p, size_t len, proto_error_t *m)
{
	proto_cur_t c;

	proto_cur_init(&c, p, len);
	m->code = (int32_t)proto_get_u32(&c);
	m->message = proto_get_bytes(&c, 2, PROTO_MAX_ERRMSG);
	m->leader = proto_get_bytes(&c, 1, PROTO_MAX_ADDR);
	m->index = proto_get_u32(&c);
	m->cause = (int32_t)proto_get_u32(&c);
	if (c.err == 0 && m->code >= 0)
		return PROTO_EBADMSG; /* an error frame must carry an error */
	return cur_done(&c);
}

/* ---- operations --------------------------------------------------------------------- */

/* Which fields an op carries, in encoding order. */
enum {
	F_BUCKET = 1 << 0,
	F_KEY    = 1 << 1,
	F_VALUE  = 1 << 2,
	F_REV    = 1 << 3,
	F_CFG    = 1 << 4,
	F_AFTER  = 1 << 5,
	F_LIMIT  = 1 << 6,
};

/* 0 for an unknown op (and for BATCH, which has its own layout). */
static unsigned op_fields(unsigned op)
{
	switch (op) {
	case PROTO_OP_BUCKET_ADD:  return F_BUCKET | F_CFG;
	case PROTO_OP_BUCKET_DEL:  return F_BUCKET;
	case PROTO_OP_PUT:
	case PROTO_OP_CREATE:      return F_BUCKET | F_KEY | F_VALUE;
	case PROTO_OP_UPDATE:      return F_BUCKET | F_KEY | F_VALUE | F_REV;
	case PROTO_OP_DELETE:
	case PROTO_OP_PURGE:       return F_BUCKET | F_KEY | F_REV;
	case PROTO_OP_GET:         return F_BUCKET | F_KEY | F_REV;
	case PROTO_OP_KEYS:        return F_BUCKET | F_KEY | F_AFTER | F_LIMIT;
	case PROTO_OP_HISTORY:     return F_BUCKET | F_KEY | F_REV | F_LIMIT;
	case PROTO_OP_BUCKET_INFO: return F_BUCKET;
	case PROTO_OP_BUCKET_LIST: return F_AFTER | F_LIMIT;
	case PROTO_OP_STATUS:      return 0;
	case PROTO_OP_HASH:        return 0;
	case PROTO_OP_WATCH:       return F_BUCKET | F_KEY | F_REV | F_LIMIT;
	case PROTO_OP_SCAN:        return F_BUCKET | F_KEY | F_AFTER | F_LIMIT;
	case PROTO_OP_SNAPSHOT:    return F_REV | F_AFTER | F_LIMIT;
	default:                   return 0;
	}
}

static bool op_known(unsigned op)
{
	return (op >= PROTO_OP_BUCKET_ADD && op <= PROTO_OP_SBATCH) ||
	       (op >= PROTO_OP_GET && op <= PROTO_OP_SNAPSHOT);
}

static void cfg_put(proto_wbuf_t *w, const proto_bucket_cfg_t *cfg)
{
	proto_put_u32(w, cfg->history);
	proto_put_u32(w, cfg->max_value);
	proto_put_u64(w, cfg->max_age_ms);
	put_field(w, 1, cfg->content_type, PROTO_MAX_CTYPE);
}

static void cfg_get(proto_cur_t *c, proto_bucket_cfg_t *cfg)
{
	cfg->history = proto_get_u32(c);
	cfg->max_value = proto_get_u32(c);
	cfg->max_age_ms = proto_get_u64(c);
	cfg->content_type = proto_get_bytes(c, 1, PROTO_MAX_CTYPE);
}

/* Encode a non-BATCH op's fields. */
static void op_put_fields(proto_wbuf_t *w, const proto_op_t *op)
{
	unsigned f = op_fields(op->op);

	proto_put_u8(w, op->op);
	if (f & F_BUCKET)
		put_field(w, 1, op->bucket, PROTO_MAX_BUCKET);
	if (f & F_KEY)
		put_field(w, 2, op->key, PROTO_MAX_KEY);
	if (f & F_VALUE)
		put_field(w, 4, op->value, PROTO_MAX_VALUE);
	if (f & F_REV)
		proto_put_u64(w, op->rev);
	if (f & F_CFG)
		cfg_put(w, &op->cfg);
	if (f & F_AFTER)
		put_field(w, 2, op->after, PROTO_MAX_KEY);
	if (f & F_LIMIT)
		proto_put_u32(w, op->limit);
}

/*
 * Read one op from the cursor. A BATCH takes everything that remains (it is always last:
 * a request payload or a log entry ends with it). Returns 0 or an error; on error the
 * cursor's err is set too.
 */
static int op_get(proto_cur_t *c, proto_op_t *op)
{
	unsigned f;

	memset(op, 0, sizeof *op);
	op->op = proto_get_u8(c);
	if (c->err)
		return c->err;
	if (!op_known(op->op))
		return c->err = PROTO_EBADTYPE;
	if (proto_op_is_batch(op->op)) {
		if (op->op == PROTO_OP_SBATCH) {
			op->client = proto_get_u64(c);
			op->seq = proto_get_u64(c);
		}
		op->count = proto_get_u32(c);
		if (c->err)
			return c->err;
		if (op->count > PROTO_MAX_BATCH)
			return c->err = PROTO_ETOOBIG;
		/* Each inner op is at least 2 bytes (op + bucket length): a count that cannot fit
		 * is refused now, before anyone sizes an array by it. */
		if (op->count == 0 || (size_t)(c->end - c->p) / 2 < op->count)
			return c->err = PROTO_EBADMSG;
		op->batch.p = c->p;
		op->batch.len = (uint32_t)(c->end - c->p);
		if ((size_t)(c->end - c->p) > UINT32_MAX)
			return c->err = PROTO_ETOOBIG;
		c->p = c->end;
		return 0;
	}
	f = op_fields(op->op);
	if (f & F_BUCKET)
		op->bucket = proto_get_bytes(c, 1, PROTO_MAX_BUCKET);
	if (f & F_KEY)
		op->key = proto_get_bytes(c, 2, PROTO_MAX_KEY);
	if (f & F_VALUE)
		op->value = proto_get_bytes(c, 4, PROTO_MAX_VALUE);
	if (f & F_REV)
		op->rev = proto_get_u64(c);
	if (f & F_CFG)
		cfg_get(c, &op->cfg);
	if (f & F_AFTER)
		op->after = proto_get_bytes(c, 2, PROTO_MAX_KEY);
	if (f & F_LIMIT)
		op->limit = proto_get_u32(c);
	op->count = 1;
	return c->err;
}

int proto_op_encode(proto_wbuf_t *w, const proto_op_t *op)
{
	if (w->err)
		return w->err;
	if (!op_known(op->op))
		return w->err = PROTO_EBADTYPE;
	if (proto_op_is_batch(op->op)) {
		/* Re-emit an already-built batch (e.g. a decoded one) verbatim. */
		if (op->count == 0 || op->count > PROTO_MAX_BATCH)
			return w->err = op->count ? PROTO_ETOOBIG : PROTO_EBADMSG;
		proto_put_u8(w, op->op);
		if (op->op == PROTO_OP_SBATCH) {
			proto_put_u64(w, op->client);
			proto_put_u64(w, op->seq);
		}
		proto_put_u32(w, op->count);
		if (op->batch.len) {
			uint8_t *d = w_take(w, op->batch.len);
			if (d)
				memcpy(d, op->batch.p, op->batch.len);
		}
		return w->err;
	}
	op_put_fields(w, op);
	return w->err;
}

int proto_op_decode(const uint8_t *p, size_t len, proto_op_t *op)
{
	proto_cur_t c;
	int rc;

	proto_cur_init(&c, p, len);
	rc = op_get(&c, op);
	return rc ? rc : cur_done(&c);
}

void proto_batch_begin(proto_batch_writer_t *b, proto_wbuf_t *w)
{
	b->w = w;
	b->count = 0;
	proto_put_u8(w, PROTO_OP_BATCH);
	b->count_at = w_take(w, 4);
}

int proto_batch_add(proto_batch_writer_t *b, const proto_op_t *op)
{
	proto_wbuf_t *w = b->w;
	uint8_t *mark = w->p;

	if (w->err)
		return w->err;
	if (!proto_op_is_write(op->op) || proto_op_is_batch(op->op))
		return PROTO_EBADTYPE; /* not sticky: the batch so far is still good */
	if (b->count >= PROTO_MAX_BATCH)
		return PROTO_ETOOBIG;
	op_put_fields(w, op);
	if (w->err) {
		/* Leave the batch as it was, so a caller that fills buffers until full can
		 * finish this batch and start the next one with the op that did not fit. */
		int err = w->err;
		w->p = mark;
		w->err = 0;
		return err;
	}
	b->count++;
	return 0;
}

void proto_batch_finish(proto_batch_writer_t *b)
{
	if (b->w->err == 0 && b->count_at)
		wr32(b->count_at, b->count);
}

void proto_batch_iter_init(proto_batch_iter_t *it, const proto_op_t *batch)
{
	proto_cur_init(&it->cur, batch->batch.p, batch->batch.len);
	it->left = batch->count;
}

int proto_batch_next(proto_batch_iter_t *it, proto_op_t *op)
{
	int rc;

	if (it->cur.err)
		return it->cur.err;
	if (it->left == 0)
		return it->cur.p == it->cur.end ? 0 : (it->cur.err = PROTO_EBADMSG);
	rc = op_get(&it->cur, op);
	if (rc)
		return rc;
	if (!proto_op_is_write(op->op) || proto_op_is_batch(op->op))
		return it->cur.err = PROTO_EBADMSG;
	it->left--;
	return 1;
}

/* ---- log entries -------------------------------------------------------------------- */

int proto_entry_encode(proto_wbuf_t *w, uint64_t time_ms, const proto_op_t *op)
{
	if (!proto_op_is_write(op->op))
		return w->err ? w->err : (w->err = PROTO_EBADTYPE);
	proto_put_u8(w, PROTO_ENTRY_VERSION);
	proto_put_u64(w, time_ms);
	return proto_op_encode(w, op);
}

int proto_entry_encode_raw(proto_wbuf_t *w, uint64_t time_ms, const void *op, size_t len)
{
	uint8_t *d;

	proto_put_u8(w, PROTO_ENTRY_VERSION);
	proto_put_u64(w, time_ms);
	d = w_take(w, len);
	if (d && len)
		memcpy(d, op, len);
	return w->err;
}

int proto_entry_decode(const uint8_t *p, size_t len, proto_entry_t *e)
{
	proto_cur_t c;
	uint8_t v;
	int rc;

	proto_cur_init(&c, p, len);
	v = proto_get_u8(&c);
	e->time_ms = proto_get_u64(&c);
	if (c.err)
		return c.err;
	if (v != PROTO_ENTRY_VERSION)
		return PROTO_EVERSION;
	rc = op_get(&c, &e->op);
	if (rc)
		return rc;
	if (!proto_op_is_write(e->op.op))
		return PROTO_EBADMSG;
	return cur_done(&c);
}

/* ---- responses ---------------------------------------------------------------------- */

int proto_write_resp_encode(proto_wbuf_t *w, uint8_t op, const proto_write_resp_t *r)
{
	proto_put_u64(w, r->rev);
	if (proto_op_is_batch(op))
		proto_put_u32(w, r->count);
	return w->err;
}

int proto_write_resp_decode(const uint8_t *p, size_t len, uint8_t op, proto_write_resp_t *r)
{
	proto_cur_t c;

	proto_cur_init(&c, p, len);
	r->rev = proto_get_u64(&c);
	r->count = proto_op_is_batch(op) ? proto_get_u32(&c) : 1;
	return cur_done(&c);
}

int proto_rec_encode(proto_wbuf_t *w, const proto_rec_t *r)
{
	put_field(w, 2, r->key, PROTO_MAX_KEY);
	put_field(w, 4, r->value, PROTO_MAX_VALUE);
	proto_put_u64(w, r->rev);
	proto_put_u64(w, r->create_rev);
	proto_put_u64(w, r->time_ms);
	proto_put_u8(w, r->kind);
	return w->err;
}

int proto_rec_get(proto_cur_t *c, proto_rec_t *r)
{
	r->key = proto_get_bytes(c, 2, PROTO_MAX_KEY);
	r->value = proto_get_bytes(c, 4, PROTO_MAX_VALUE);
	r->rev = proto_get_u64(c);
	r->create_rev = proto_get_u64(c);
	r->time_ms = proto_get_u64(c);
	r->kind = proto_get_u8(c);
	if (c->err == 0 && (r->kind < PROTO_REC_PUT || r->kind > PROTO_REC_PURGE))
		c->err = PROTO_EBADMSG;
	return c->err;
}

int proto_rec_decode(const uint8_t *p, size_t len, proto_rec_t *r)
{
	proto_cur_t c;

	proto_cur_init(&c, p, len);
	proto_rec_get(&c, r);
	return cur_done(&c);
}

int proto_bucket_info_encode(proto_wbuf_t *w, const proto_bucket_info_t *b)
{
	put_field(w, 1, b->name, PROTO_MAX_BUCKET);
	cfg_put(w, &b->cfg);
	proto_put_u64(w, b->keys);
	proto_put_u64(w, b->bytes);
	proto_put_u64(w, b->created_rev);
	return w->err;
}

int proto_bucket_info_get(proto_cur_t *c, proto_bucket_info_t *b)
{
	b->name = proto_get_bytes(c, 1, PROTO_MAX_BUCKET);
	cfg_get(c, &b->cfg);
	b->keys = proto_get_u64(c);
	b->bytes = proto_get_u64(c);
	b->created_rev = proto_get_u64(c);
	return c->err;
}

int proto_bucket_info_decode(const uint8_t *p, size_t len, proto_bucket_info_t *b)
{
	proto_cur_t c;

	proto_cur_init(&c, p, len);
	proto_bucket_info_get(&c, b);
	return cur_done(&c);
}

/*
 * STATUS body: u64 node_id, u8 role, u8 is_leader (0|1), u64 term, u64 revision, u64 applied,
 * u64 commit, u64 first_index, u64 last_index, bytes(u8) leader, bytes(u8) version.
 */
int proto_status_encode(proto_wbuf_t *w, const proto_status_t *s)
{
	proto_put_u64(w, s->node_id);
	proto_put_u8(w, s->role);
	proto_put_u8(w, s->is_leader ? 1 : 0);
	proto_put_u64(w, s->term);
	proto_put_u64(w, s->revision);
	proto_put_u64(w, s->applied);
	proto_put_u64(w, s->commit);
	proto_put_u64(w, s->first_index);
	proto_put_u64(w, s->last_index);
	put_field(w, 1, s->leader, PROTO_MAX_ADDR);
	put_field(w, 1, s->version, UINT8_MAX);
	if (s->nmembers > PROTO_MAX_MEMBERS)
		return PROTO_ETOOBIG;
	proto_put_u8(w, s->nmembers);
	for (unsigned i = 0; i < s->nmembers; i++) {
		const proto_member_t *m = &s->members[i];
		proto_put_u64(w, m->id);
		proto_put_u8(w, m->flags);
		proto_put_u64(w, m->match);
		put_field(w, 1, m->addr, PROTO_MAX_ADDR);
	}
	if (s->nleaves > PROTO_MAX_LEAVES)
		return PROTO_ETOOBIG;
	proto_put_u8(w, s->nleaves);
	{
		for (unsigned i = 0; i < s->nleaves; i++) {
			const proto_leaf_info_t *l = &s->leaves[i];
			proto_put_u64(w, l->id);
			proto_put_u8(w, l->flags);
			proto_put_u64(w, l->applied);
			proto_put_u64(w, l->lag_ms);
			proto_put_u64(w, l->contact_age_ms);
			put_field(w, 1, l->name, UINT8_MAX);
		}
	}
	return w->err;
}

int proto_status_decode(const uint8_t *p, size_t len, proto_status_t *s)
{
	proto_cur_t c;
	uint8_t leader;

	proto_cur_init(&c, p, len);
	s->node_id = proto_get_u64(&c);
	s->role = proto_get_u8(&c);
	leader = proto_get_u8(&c);
	s->is_leader = leader == 1;
	s->term = proto_get_u64(&c);
	s->revision = proto_get_u64(&c);
	s->applied = proto_get_u64(&c);
	s->commit = proto_get_u64(&c);
	s->first_index = proto_get_u64(&c);
	s->last_index = proto_get_u64(&c);
	s->leader = proto_get_bytes(&c, 1, PROTO_MAX_ADDR);
	s->version = proto_get_bytes(&c, 1, UINT8_MAX);
	s->nmembers = proto_get_u8(&c);
	if (c.err == 0 && (leader > 1 || s->nmembers > PROTO_MAX_MEMBERS))
		return PROTO_EBADMSG;
	for (unsigned i = 0; i < s->nmembers && c.err == 0; i++) {
		proto_member_t *m = &s->members[i];
		m->id = proto_get_u64(&c);
		m->flags = proto_get_u8(&c);
		m->match = proto_get_u64(&c);
		m->addr = proto_get_bytes(&c, 1, PROTO_MAX_ADDR);
		if (c.err == 0 && (m->flags & ~PROTO_MEMBER_FLAGS))
			return PROTO_EBADMSG;
	}
	s->nleaves = proto_get_u8(&c);
	if (c.err == 0) {
		if (s->nleaves > PROTO_MAX_LEAVES)
			return PROTO_EBADMSG;
		for (unsigned i = 0; i < s->nleaves && c.err == 0; i++) {
			proto_leaf_info_t *l = &s->leaves[i];
			l->id = proto_get_u64(&c);
			l->flags = proto_get_u8(&c);
			l->applied = proto_get_u64(&c);
			l->lag_ms = proto_get_u64(&c);
			l->contact_age_ms = proto_get_u64(&c);
			l->name = proto_get_bytes(&c, 1, UINT8_MAX);
			if (c.err == 0 && (l->flags & ~PROTO_LEAF_FLAGS))
				return PROTO_EBADMSG;
		}
	}
	return cur_done(&c);
}

int proto_hash_encode(proto_wbuf_t *w, const proto_hash_t *h)
{
	proto_put_u64(w, h->applied);
	proto_put_u64(w, h->revision);
	proto_put_u64(w, h->records);
	proto_put_u64(w, h->hash);
	return w->err;
}

int proto_hash_decode(const uint8_t *p, size_t len, proto_hash_t *h)
{
	proto_cur_t c;

	proto_cur_init(&c, p, len);
	h->applied = proto_get_u64(&c);
	h->revision = proto_get_u64(&c);
	h->records = proto_get_u64(&c);
	h->hash = proto_get_u64(&c);
	return cur_done(&c);
}

/* ---- lists -------------------------------------------------------------------------- */

void proto_list_begin(proto_list_writer_t *l, proto_wbuf_t *w)
{
	l->w = w;
	l->count = 0;
	l->count_at = w_take(w, 4);
}

void proto_list_item_done(proto_list_writer_t *l)
{
	l->count++;
}

void proto_list_finish(proto_list_writer_t *l, bool more)
{
	proto_put_u8(l->w, more ? 1 : 0);
	if (l->w->err == 0 && l->count_at)
		wr32(l->count_at, l->count);
}

static int list_item(proto_list_reader_t *l, proto_bytes_t *key, proto_rec_t *rec,
		     proto_bucket_info_t *b)
{
	switch (l->op) {
	case PROTO_OP_KEYS:
		*key = proto_get_bytes(&l->cur, 2, PROTO_MAX_KEY);
		return l->cur.err;
	case PROTO_OP_HISTORY:
	case PROTO_OP_SCAN:
		return proto_rec_get(&l->cur, rec);
	case PROTO_OP_BUCKET_LIST:
		return proto_bucket_info_get(&l->cur, b);
	default:
		return l->cur.err = PROTO_EBADMSG;
	}
}

int proto_list_reader_init(proto_list_reader_t *l, const uint8_t *p, size_t len, uint8_t op)
{
	proto_list_reader_t walk;
	proto_bytes_t key;
	proto_rec_t rec;
	proto_bucket_info_t b;
	uint8_t more;
	uint32_t i;
	int rc;

	memset(l, 0, sizeof *l);
	if (op != PROTO_OP_KEYS && op != PROTO_OP_HISTORY && op != PROTO_OP_BUCKET_LIST &&
	    op != PROTO_OP_SCAN)
		return PROTO_EBADTYPE;
	if (len < 5)
		return PROTO_EBADMSG;
	proto_cur_init(&l->cur, p, len - 1);
	l->op = op;
	l->left = proto_get_u32(&l->cur);
	/* Every item is at least 2 bytes: a count the bytes cannot hold is refused before the
	 * walk, which is then bounded by len anyway. */
	if ((len - 5) / 2 < l->left)
		return PROTO_EBADMSG;
	more = p[len - 1];
	if (more > 1)
		return PROTO_EBADMSG;
	l->more = more == 1;
	/* Validate the whole list once, so that next() after a successful init cannot fail
	 * and a caller never acts on half of a bad response. */
	walk = *l;
	for (i = 0; i < l->left; i++) {
		rc = list_item(&walk, &key, &rec, &b);
		if (rc)
			return rc;
	}
	if (walk.cur.p != walk.cur.end)
		return PROTO_EBADMSG;
	return 0;
}

static int list_next(proto_list_reader_t *l, uint8_t op, proto_bytes_t *key, proto_rec_t *rec,
		     proto_bucket_info_t *b)
{
	int rc;

	if (l->cur.err)
		return l->cur.err;
	if (l->op != op && !(op == PROTO_OP_HISTORY && l->op == PROTO_OP_SCAN))
		return PROTO_EBADMSG;
	if (l->left == 0)
		return 0;
	rc = list_item(l, key, rec, b);
	if (rc)
		return rc;
	l->left--;
	return 1;
}

int proto_list_next_key(proto_list_reader_t *l, proto_bytes_t *key)
{
	return list_next(l, PROTO_OP_KEYS, key, NULL, NULL);
}

int proto_list_next_rec(proto_list_reader_t *l, proto_rec_t *r)
{
	return list_next(l, PROTO_OP_HISTORY, NULL, r, NULL);
}

int proto_list_next_bucket(proto_list_reader_t *l, proto_bucket_info_t *b)
{
	return list_next(l, PROTO_OP_BUCKET_LIST, NULL, NULL, b);
}

/* ---- WATCH and SNAPSHOT answers --------------------------------------------------------- */

int proto_watch_resp_decode(const uint8_t *p, size_t len, uint64_t *next_rev,
			    proto_list_reader_t *l)
{
	proto_cur_t c;

	proto_cur_init(&c, p, len);
	*next_rev = proto_get_u64(&c);
	if (c.err)
		return PROTO_EBADMSG;
	return proto_list_reader_init(l, c.p, (size_t)(c.end - c.p), PROTO_OP_HISTORY);
}

int proto_snap_resp_encode(proto_wbuf_t *w, const proto_snap_resp_t *r)
{
	if (r->session.len > PROTO_MAX_SESSION)
		return w->err = PROTO_ETOOBIG;
	proto_put_bytes(w, 1, r->session.p, r->session.len);
	proto_put_u64(w, r->size);
	proto_put_u64(w, r->applied);
	proto_put_u64(w, r->revision);
	proto_put_u64(w, r->records);
	proto_put_bytes(w, 4, r->chunk.p, r->chunk.len);
	return w->err;
}

int proto_snap_resp_decode(const uint8_t *p, size_t len, proto_snap_resp_t *r)
{
	proto_cur_t c;

	memset(r, 0, sizeof *r);
	proto_cur_init(&c, p, len);
	r->session = proto_get_bytes(&c, 1, PROTO_MAX_SESSION);
	r->size = proto_get_u64(&c);
	r->applied = proto_get_u64(&c);
	r->revision = proto_get_u64(&c);
	r->records = proto_get_u64(&c);
	r->chunk = proto_get_bytes(&c, 4, PROTO_DEFAULT_MAX_FRAME);
	if (c.err)
		return c.err;
	if (c.p != c.end || r->chunk.len > r->size)
		return PROTO_EBADMSG;
	return 0;
}
