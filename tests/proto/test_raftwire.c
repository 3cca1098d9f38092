/*
 * Peer wire codec tests (proto/raftwire.h): the peer hello and raft messages of every type
 * round-trip field for field and byte for byte, proto_raft_msg_size is exact, every
 * truncation and every trailing byte is refused, the documented PROTO_EBADMSG / PROTO_ETOOBIG
 * cases are refused as such, and no decoder reads past its input (each input is placed right
 * before a PROT_NONE page, as in test_codec.c).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "proto/proto.h"
#include "proto/raftwire.h"
#include "raft/raft.h"

#define B(s) ((proto_bytes_t){(const uint8_t *)(s), (uint32_t)(sizeof(s) - 1)})

#define CAP      64        /* entry slots handed to the decoder */
#define MAX_DATA (1u << 16) /* max_data handed to the decoder */

/* Offsets in an encoded raft message (see proto/raftwire.h). */
#define OFF_TYPE   0
#define OFF_FLAGS  12
#define OFF_CONF_N 88
#define OFF_IDS    92

/* ---- guard page ---------------------------------------------------------------------- */

static uint8_t *guard_base;
static size_t guard_size; /* readable bytes before the guard page */

static void guard_setup(void)
{
	long pg = sysconf(_SC_PAGESIZE);

	guard_size = 32 * (size_t)pg;
	guard_base = mmap(NULL, guard_size + (size_t)pg, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(guard_base != MAP_FAILED);
	cr_assert(mprotect(guard_base + guard_size, (size_t)pg, PROT_NONE) == 0);
}

static void guard_teardown(void)
{
	munmap(guard_base, guard_size + (size_t)sysconf(_SC_PAGESIZE));
}

/* Copy n bytes so that they end exactly at the guard page: one byte more read = SIGSEGV. */
static const uint8_t *guarded(const void *p, size_t n)
{
	cr_assert(n <= guard_size);
	uint8_t *d = guard_base + guard_size - n;
	if (n)
		memcpy(d, p, n);
	return d;
}

static void le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- samples ------------------------------------------------------------------------- */

static const uint8_t payload[] = "entry payload \0 with a nul and \xff\xfe bytes";
static const uint8_t chunk[] = "snapshot chunk bytes: \x01\x02\x03\x00\x7f\x80";
static uint8_t conf_change[8];

static raft_entry_t sample_ents[3];

/* A message of `type` with every field set to a distinct value (including ones the type does
 * not use: the codec is flat and carries every field). `variant` picks the shape of the
 * variable parts: 0 = entries of each type + conf + data, 1 = nothing variable, 2 = a full
 * conf (RAFT_MAX_NODES ids) and data only, 3 = one entry, no conf. */
static raft_msg_t sample_msg(uint32_t type, int variant)
{
	raft_msg_t m;

	memset(&m, 0, sizeof m);
	m.type = type;
	m.from = 0x01020304u + type;
	m.to = 0x0a0b0c0du + type;
	m.flags = (type + (uint32_t)variant) & (RAFT_MSGF_REJECT | RAFT_MSGF_TRANSFER | RAFT_MSGF_LAST);
	m.term = 0x1111111111111111ull * type;
	m.index = 0x0102030405060708ull + type;
	m.log_term = UINT64_MAX - type;
	m.commit = 0x8000000000000000ull | type;
	m.hint = 42 + type;
	m.ctx = 0xdeadbeefcafef00dull ^ type;
	m.offset = (uint64_t)type << 40;
	m.snap.index = 1000 + type;
	m.snap.term = 7 + type;

	raft_conf_change_encode(conf_change, RAFT_CONF_ADD, 9);
	sample_ents[0] = (raft_entry_t){.index = 501, .term = 6, .type = RAFT_ENTRY_NORMAL,
					.len = sizeof payload - 1, .data = payload};
	sample_ents[1] = (raft_entry_t){.index = 502, .term = 6, .type = RAFT_ENTRY_CONF,
					.len = sizeof conf_change, .data = conf_change};
	sample_ents[2] = (raft_entry_t){.index = 503, .term = 7, .type = RAFT_ENTRY_NOOP,
					.len = 0, .data = NULL};

	switch (variant) {
	case 0:
		m.snap.conf.n = 3;
		m.snap.conf.ids[0] = 1;
		m.snap.conf.ids[1] = 2;
		m.snap.conf.ids[2] = UINT32_MAX;
		m.n_entries = 3;
		m.entries = sample_ents;
		m.data = chunk;
		m.len = sizeof chunk - 1;
		break;
	case 1:
		break;
	case 2:
		m.snap.conf.n = RAFT_MAX_NODES;
		for (uint32_t i = 0; i < RAFT_MAX_NODES; i++)
			m.snap.conf.ids[i] = 100 + i;
		m.data = chunk;
		m.len = sizeof chunk - 1;
		break;
	default:
		m.n_entries = 1;
		m.entries = sample_ents;
		break;
	}
	return m;
}

#define NVARIANTS 4

static size_t encode(const raft_msg_t *m, uint8_t *buf, size_t cap)
{
	proto_wbuf_t w;

	proto_wbuf_init(&w, buf, cap);
	int rc = proto_raft_msg_encode(&w, m);
	cr_assert_eq(rc, 0, "encode type %u: %s", m->type, geokv_strerror(rc));
	return proto_wbuf_len(&w);
}

/* Every field of a and b, and the bytes behind every view. */
static void assert_msg_eq(const raft_msg_t *a, const raft_msg_t *b, const char *what)
{
	cr_assert_eq(a->type, b->type, "%s: type", what);
	cr_assert_eq(a->from, b->from, "%s: from", what);
	cr_assert_eq(a->to, b->to, "%s: to", what);
	cr_assert_eq(a->flags, b->flags, "%s: flags", what);
	cr_assert_eq(a->term, b->term, "%s: term", what);
	cr_assert_eq(a->index, b->index, "%s: index", what);
	cr_assert_eq(a->log_term, b->log_term, "%s: log_term", what);
	cr_assert_eq(a->commit, b->commit, "%s: commit", what);
	cr_assert_eq(a->hint, b->hint, "%s: hint", what);
	cr_assert_eq(a->ctx, b->ctx, "%s: ctx", what);
	cr_assert_eq(a->offset, b->offset, "%s: offset", what);
	cr_assert_eq(a->snap.index, b->snap.index, "%s: snap.index", what);
	cr_assert_eq(a->snap.term, b->snap.term, "%s: snap.term", what);
	cr_assert_eq(a->snap.conf.n, b->snap.conf.n, "%s: conf.n", what);
	for (uint32_t i = 0; i < a->snap.conf.n; i++)
		cr_assert_eq(a->snap.conf.ids[i], b->snap.conf.ids[i], "%s: conf.ids[%u]", what, i);
	cr_assert_eq(a->n_entries, b->n_entries, "%s: n_entries", what);
	for (uint32_t i = 0; i < a->n_entries; i++) {
		const raft_entry_t *x = &a->entries[i], *y = &b->entries[i];
		cr_assert_eq(x->index, y->index, "%s: entry %u index", what, i);
		cr_assert_eq(x->term, y->term, "%s: entry %u term", what, i);
		cr_assert_eq(x->type, y->type, "%s: entry %u type", what, i);
		cr_assert_eq(x->len, y->len, "%s: entry %u len", what, i);
		if (x->len)
			cr_assert(memcmp(x->data, y->data, x->len) == 0, "%s: entry %u data", what, i);
	}
	cr_assert_eq(a->len, b->len, "%s: len", what);
	if (a->len)
		cr_assert(memcmp(a->data, b->data, a->len) == 0, "%s: data", what);
}

/* Decode p and re-encode it: 0 with the re-encoding in re/relen, or the decode error. */
static int check_msg(const uint8_t *p, size_t len, uint8_t *re, size_t recap, size_t *relen)
{
	raft_entry_t ents[CAP];
	raft_msg_t m;
	proto_wbuf_t w;
	int rc = proto_raft_msg_decode(p, len, &m, ents, CAP, MAX_DATA);

	if (rc != 0)
		return rc;
	cr_assert_eq(proto_raft_msg_size(&m), len);
	proto_wbuf_init(&w, re, recap);
	rc = proto_raft_msg_encode(&w, &m);
	cr_assert_eq(rc, 0, "a decoded message re-encodes: %s", geokv_strerror(rc));
	*relen = proto_wbuf_len(&w);
	return 0;
}

static int check_hello(const uint8_t *p, size_t len, uint8_t *re, size_t recap, size_t *relen)
{
	proto_peer_hello_t h;
	proto_wbuf_t w;
	int rc = proto_peer_hello_decode(p, len, &h);

	if (rc != 0)
		return rc;
	proto_wbuf_init(&w, re, recap);
	rc = proto_peer_hello_encode(&w, &h);
	cr_assert_eq(rc, 0, "a decoded hello re-encodes: %s", geokv_strerror(rc));
	*relen = proto_wbuf_len(&w);
	return 0;
}

static int is_refusal(int rc)
{
	return rc == PROTO_EBADMSG || rc == PROTO_ETOOBIG;
}

TestSuite(proto_raftwire, .init = guard_setup, .fini = guard_teardown);

/* ---- peer hello ---------------------------------------------------------------------- */

static const proto_peer_hello_t hello = {
	.version = 0x0102,
	.cluster = B("geo-eu-west"),
	.from = 3,
	.to = 0x80000001u,
	.client_addr = B("10.0.0.3:7379"),
	.token = B("s3cret\0token"),
};

static size_t hello_bytes(uint8_t *buf, size_t cap)
{
	proto_wbuf_t w;

	proto_wbuf_init(&w, buf, cap);
	cr_assert_eq(proto_peer_hello_encode(&w, &hello), 0);
	return proto_wbuf_len(&w);
}

static void assert_bytes_eq(proto_bytes_t a, proto_bytes_t b, const char *what)
{
	cr_assert_eq(a.len, b.len, "%s: len", what);
	if (a.len)
		cr_assert(memcmp(a.p, b.p, a.len) == 0, "%s: bytes", what);
}

Test(proto_raftwire, hello_round_trips_field_for_field)
{
	uint8_t buf[512], re[512];
	proto_peer_hello_t d;
	size_t len = hello_bytes(buf, sizeof buf), relen;

	cr_assert_eq(len, 2 + 1 + 11 + 4 + 4 + 1 + 13 + 2 + 12);
	const uint8_t *p = guarded(buf, len);
	cr_assert_eq(proto_peer_hello_decode(p, len, &d), 0);
	cr_assert_eq(d.version, hello.version);
	cr_assert_eq(d.from, hello.from);
	cr_assert_eq(d.to, hello.to);
	assert_bytes_eq(d.cluster, hello.cluster, "cluster");
	assert_bytes_eq(d.client_addr, hello.client_addr, "client_addr");
	assert_bytes_eq(d.token, hello.token, "token");
	cr_assert(d.cluster.p >= p && d.token.p + d.token.len <= p + len, "views into the input");

	cr_assert_eq(check_hello(p, len, re, sizeof re, &relen), 0);
	cr_assert_eq(relen, len);
	cr_assert(memcmp(re, buf, len) == 0);

	/* empty byte strings */
	proto_peer_hello_t e = {.version = 1, .from = 1, .to = 2};
	proto_wbuf_t w;
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_peer_hello_encode(&w, &e), 0);
	len = proto_wbuf_len(&w);
	cr_assert_eq(len, 2 + 1 + 4 + 4 + 1 + 2);
	cr_assert_eq(proto_peer_hello_decode(guarded(buf, len), len, &d), 0);
	cr_assert(d.cluster.len == 0 && d.client_addr.len == 0 && d.token.len == 0);
}

Test(proto_raftwire, hello_truncations_and_trailing_bytes_are_refused)
{
	uint8_t buf[512];
	proto_peer_hello_t d;
	size_t len = hello_bytes(buf, sizeof buf);

	for (size_t cut = 0; cut < len; cut++) {
		int rc = proto_peer_hello_decode(guarded(buf, cut), cut, &d);
		cr_assert_eq(rc, PROTO_EBADMSG, "cut at %zu: %s", cut, geokv_strerror(rc));
	}
	for (size_t extra = 1; extra <= 4; extra++) {
		memset(buf + len, 0, extra);
		int rc = proto_peer_hello_decode(guarded(buf, len + extra), len + extra, &d);
		cr_assert_eq(rc, PROTO_EBADMSG, "+%zu bytes", extra);
	}
}

Test(proto_raftwire, hello_with_node_id_zero_is_badmsg)
{
	uint8_t buf[512];
	proto_peer_hello_t h = hello, d;
	proto_wbuf_t w;

	h.from = 0;
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_peer_hello_encode(&w, &h), 0);
	cr_assert_eq(proto_peer_hello_decode(buf, proto_wbuf_len(&w), &d), PROTO_EBADMSG);
	h = hello;
	h.to = 0;
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_peer_hello_encode(&w, &h), 0);
	cr_assert_eq(proto_peer_hello_decode(buf, proto_wbuf_len(&w), &d), PROTO_EBADMSG);
}

Test(proto_raftwire, hello_fields_over_their_max_are_toobig)
{
	static uint8_t big[PROTO_MAX_TOKEN + 1];
	uint8_t buf[8192];
	proto_peer_hello_t h, d;
	proto_wbuf_t w;

	/* encoder: each field one over its max */
	h = hello;
	h.token = (proto_bytes_t){big, PROTO_MAX_TOKEN + 1};
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_peer_hello_encode(&w, &h), PROTO_ETOOBIG);
	h = hello;
	h.cluster = (proto_bytes_t){big, PROTO_MAX_CLUSTER + 1};
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_peer_hello_encode(&w, &h), PROTO_ETOOBIG);
	h = hello;
	h.client_addr = (proto_bytes_t){big, PROTO_MAX_ADDR + 1};
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_peer_hello_encode(&w, &h), PROTO_ETOOBIG);

	/* at the max: fine */
	h = hello;
	h.token = (proto_bytes_t){big, PROTO_MAX_TOKEN};
	h.cluster = (proto_bytes_t){big, PROTO_MAX_CLUSTER};
	h.client_addr = (proto_bytes_t){big, PROTO_MAX_ADDR};
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_peer_hello_encode(&w, &h), 0);
	size_t len = proto_wbuf_len(&w);
	cr_assert_eq(proto_peer_hello_decode(guarded(buf, len), len, &d), 0);
	cr_assert_eq(d.token.len, PROTO_MAX_TOKEN);

	/* decoder: a token length one over the max, hand-built, with the bytes present */
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_put_u16(&w, 1);
	proto_put_bytes(&w, 1, "c", 1);
	proto_put_u32(&w, 1);
	proto_put_u32(&w, 2);
	proto_put_bytes(&w, 1, "a:1", 3);
	proto_put_bytes(&w, 2, big, PROTO_MAX_TOKEN + 1);
	cr_assert_eq(w.err, 0);
	len = proto_wbuf_len(&w);
	cr_assert_eq(proto_peer_hello_decode(guarded(buf, len), len, &d), PROTO_ETOOBIG);
	/* and without them: still too big, not truncated */
	cr_assert_eq(proto_peer_hello_decode(guarded(buf, len - PROTO_MAX_TOKEN - 1),
					     len - PROTO_MAX_TOKEN - 1, &d),
		     PROTO_ETOOBIG);
}

Test(proto_raftwire, hello_bit_flips_are_decoded_or_refused_consistently)
{
	uint8_t orig[512], buf[512], re[8192];
	size_t len = hello_bytes(orig, sizeof orig), relen;

	for (size_t bit = 0; bit < len * 8; bit++) {
		memcpy(buf, orig, len);
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		int rc = check_hello(guarded(buf, len), len, re, sizeof re, &relen);
		if (rc == 0) {
			cr_assert_eq(relen, len, "bit %zu", bit);
			cr_assert(memcmp(re, buf, len) == 0, "bit %zu", bit);
		} else {
			cr_assert(is_refusal(rc), "bit %zu: %d %s", bit, rc, geokv_strerror(rc));
		}
	}
}

/* ---- raft messages: round trip ------------------------------------------------------- */

Test(proto_raftwire, every_message_type_round_trips_field_for_field)
{
	uint8_t buf[4096], re[4096];
	char what[64];
	int checked = 0;

	for (uint32_t type = 1; type < RAFT_MSG_TYPE_MAX; type++) {
		for (int v = 0; v < NVARIANTS; v++) {
			raft_msg_t m = sample_msg(type, v), d;
			raft_entry_t ents[CAP];
			size_t len = encode(&m, buf, sizeof buf), relen;

			snprintf(what, sizeof what, "%s/%d", raft_msg_type_name(type), v);
			cr_assert_eq(proto_raft_msg_size(&m), len, "%s: size", what);
			const uint8_t *p = guarded(buf, len);
			memset(ents, 0xa5, sizeof ents);
			int rc = proto_raft_msg_decode(p, len, &d, ents, CAP, MAX_DATA);
			cr_assert_eq(rc, 0, "%s: %s", what, geokv_strerror(rc));
			assert_msg_eq(&m, &d, what);
			if (d.n_entries) {
				cr_assert_eq(d.entries, ents, "%s: entries go into ents", what);
				for (uint32_t i = 0; i < d.n_entries; i++)
					if (d.entries[i].len)
						cr_assert((const uint8_t *)d.entries[i].data >= p &&
							  (const uint8_t *)d.entries[i].data +
								  d.entries[i].len <= p + len,
							  "%s: entry data is a view", what);
			} else {
				cr_assert_null(d.entries, "%s: no entries, no array", what);
			}
			if (d.len)
				cr_assert((const uint8_t *)d.data >= p &&
					  (const uint8_t *)d.data + d.len <= p + len,
					  "%s: data is a view", what);
			for (uint32_t i = d.snap.conf.n; i < RAFT_MAX_NODES; i++)
				cr_assert_eq(d.snap.conf.ids[i], 0, "%s: unused conf slots zeroed", what);

			cr_assert_eq(check_msg(p, len, re, sizeof re, &relen), 0, "%s", what);
			cr_assert_eq(relen, len, "%s", what);
			cr_assert(memcmp(re, buf, len) == 0, "%s: byte for byte", what);
			checked++;
		}
	}
	cr_assert_eq(checked, (RAFT_MSG_TYPE_MAX - 1) * NVARIANTS);
}

Test(proto_raftwire, layout_is_little_endian_as_documented)
{
	uint8_t buf[4096];
	raft_msg_t m = sample_msg(RAFT_MSG_APPEND, 0);
	size_t len = encode(&m, buf, sizeof buf);

	cr_assert_eq(rd32(buf + OFF_TYPE), RAFT_MSG_APPEND);
	cr_assert_eq(rd32(buf + 4), m.from);
	cr_assert_eq(rd32(buf + 8), m.to);
	cr_assert_eq(rd32(buf + OFF_FLAGS), m.flags);
	cr_assert_eq(buf[16], (uint8_t)m.term);
	cr_assert_eq(buf[23], (uint8_t)(m.term >> 56));
	cr_assert_eq(rd32(buf + OFF_CONF_N), 3);
	cr_assert_eq(rd32(buf + OFF_IDS), 1);
	cr_assert_eq(rd32(buf + OFF_IDS + 12), 3, "n_entries after the conf ids");
	/* the message data (a u32 length, then the bytes) ends the payload */
	cr_assert_eq(rd32(buf + len - m.len - 4), m.len);
	cr_assert(memcmp(buf + len - m.len, chunk, m.len) == 0);
	/* fixed part: 4 u32 + 9 u64 + conf.n + n_entries + data length */
	raft_msg_t z = {.type = RAFT_MSG_HEARTBEAT};
	cr_assert_eq(proto_raft_msg_size(&z), 4 * 4 + 9 * 8 + 4 + 4 + 4);
}

Test(proto_raftwire, size_is_exact_and_a_short_buffer_is_toobig)
{
	uint8_t buf[4096];

	for (uint32_t type = 1; type < RAFT_MSG_TYPE_MAX; type++) {
		for (int v = 0; v < NVARIANTS; v++) {
			raft_msg_t m = sample_msg(type, v);
			size_t need = proto_raft_msg_size(&m);
			proto_wbuf_t w;

			proto_wbuf_init(&w, buf, need);
			cr_assert_eq(proto_raft_msg_encode(&w, &m), 0, "type %u/%d", type, v);
			cr_assert_eq(proto_wbuf_len(&w), need);
			proto_wbuf_init(&w, buf, need - 1);
			cr_assert_eq(proto_raft_msg_encode(&w, &m), PROTO_ETOOBIG, "type %u/%d", type, v);
		}
	}
}

Test(proto_raftwire, decoder_accepts_exactly_cap_entries_and_max_data)
{
	static uint8_t big[256];
	uint8_t buf[8192];
	raft_entry_t in[CAP], ents[CAP];
	raft_msg_t m = sample_msg(RAFT_MSG_APPEND, 1), d;

	for (uint32_t i = 0; i < CAP; i++)
		in[i] = (raft_entry_t){.index = 10 + i, .term = 2, .type = i % 3,
				       .len = (uint32_t)(i % 5), .data = big};
	m.n_entries = CAP;
	m.entries = in;
	m.data = big;
	m.len = sizeof big;
	size_t len = encode(&m, buf, sizeof buf);
	cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, CAP, sizeof big), 0);
	assert_msg_eq(&m, &d, "cap entries");
	/* one fewer slot, or one byte less allowed: too big */
	cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, CAP - 1, sizeof big),
		     PROTO_ETOOBIG);
	cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, CAP,
					   sizeof big - 1),
		     PROTO_ETOOBIG);
}

/* ---- raft messages: refusals --------------------------------------------------------- */

Test(proto_raftwire, every_truncation_is_refused_without_overread)
{
	uint8_t buf[4096];
	raft_entry_t ents[CAP];
	raft_msg_t d;

	for (uint32_t type = 1; type < RAFT_MSG_TYPE_MAX; type++) {
		for (int v = 0; v < NVARIANTS; v++) {
			raft_msg_t m = sample_msg(type, v);
			size_t len = encode(&m, buf, sizeof buf);

			for (size_t cut = 0; cut < len; cut++) {
				int rc = proto_raft_msg_decode(guarded(buf, cut), cut, &d, ents, CAP,
							       MAX_DATA);
				cr_assert_eq(rc, PROTO_EBADMSG, "type %u/%d cut at %zu: %d %s", type,
					     v, cut, rc, geokv_strerror(rc));
			}
		}
	}
}

Test(proto_raftwire, trailing_bytes_are_refused)
{
	uint8_t buf[4096];
	raft_entry_t ents[CAP];
	raft_msg_t d;

	for (uint32_t type = 1; type < RAFT_MSG_TYPE_MAX; type++) {
		for (int v = 0; v < NVARIANTS; v++) {
			raft_msg_t m = sample_msg(type, v);
			size_t len = encode(&m, buf, sizeof buf);

			for (size_t extra = 1; extra <= 30; extra++) {
				memset(buf + len, (int)extra, extra);
				int rc = proto_raft_msg_decode(guarded(buf, len + extra), len + extra,
							       &d, ents, CAP, MAX_DATA);
				cr_assert_eq(rc, PROTO_EBADMSG, "type %u/%d + %zu bytes: %d", type, v,
					     extra, rc);
			}
		}
	}
}

Test(proto_raftwire, unknown_message_type_is_badmsg)
{
	uint8_t buf[4096];
	raft_entry_t ents[CAP];
	raft_msg_t m = sample_msg(RAFT_MSG_APPEND, 0), d;
	size_t len = encode(&m, buf, sizeof buf);
	const uint32_t bad[] = {0, RAFT_MSG_TYPE_MAX, RAFT_MSG_TYPE_MAX + 1, 0x100, UINT32_MAX};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		le32(buf + OFF_TYPE, bad[i]);
		cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, CAP, MAX_DATA),
			     PROTO_EBADMSG, "type %u", bad[i]);
	}
	/* also when only the fixed part is there: the type is checked before anything else */
	le32(buf + OFF_TYPE, 0);
	cr_assert_eq(proto_raft_msg_decode(guarded(buf, 8), 8, &d, ents, CAP, MAX_DATA),
		     PROTO_EBADMSG);
}

Test(proto_raftwire, unknown_flags_are_badmsg)
{
	uint8_t buf[4096];
	raft_entry_t ents[CAP];
	raft_msg_t m = sample_msg(RAFT_MSG_VOTE, 1), d;
	size_t len = encode(&m, buf, sizeof buf);

	le32(buf + OFF_FLAGS, RAFT_MSGF_REJECT | RAFT_MSGF_TRANSFER | RAFT_MSGF_LAST);
	cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, CAP, MAX_DATA), 0);
	for (int bit = 3; bit < 32; bit++) {
		le32(buf + OFF_FLAGS, 1u << bit);
		cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, CAP, MAX_DATA),
			     PROTO_EBADMSG, "flag bit %d", bit);
	}
}

Test(proto_raftwire, conf_over_max_nodes_is_badmsg)
{
	uint8_t buf[4096];
	raft_entry_t ents[CAP];
	raft_msg_t m = sample_msg(RAFT_MSG_SNAPSHOT, 2), d;
	proto_wbuf_t w;
	size_t len = encode(&m, buf, sizeof buf);

	cr_assert_eq(rd32(buf + OFF_CONF_N), RAFT_MAX_NODES);
	cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, CAP, MAX_DATA), 0);
	const uint32_t bad[] = {RAFT_MAX_NODES + 1, 1000, UINT32_MAX};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		le32(buf + OFF_CONF_N, bad[i]);
		cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, CAP, MAX_DATA),
			     PROTO_EBADMSG, "conf.n %u", bad[i]);
	}

	/* a well-formed 17-id conf (the bytes are all there), hand-built */
	proto_wbuf_init(&w, buf, sizeof buf);
	for (int i = 0; i < 4; i++)
		proto_put_u32(&w, i == 0 ? RAFT_MSG_SNAPSHOT : 1);
	for (int i = 0; i < 9; i++)
		proto_put_u64(&w, 1);
	proto_put_u32(&w, RAFT_MAX_NODES + 1);
	for (int i = 0; i < RAFT_MAX_NODES + 1; i++)
		proto_put_u32(&w, 10 + (uint32_t)i);
	proto_put_u32(&w, 0);
	proto_put_bytes(&w, 4, NULL, 0);
	len = proto_wbuf_len(&w);
	cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, CAP, MAX_DATA),
		     PROTO_EBADMSG);

	/* the encoder refuses what the decoder would */
	m.snap.conf.n = RAFT_MAX_NODES + 1;
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_raft_msg_encode(&w, &m), PROTO_ETOOBIG);
}

Test(proto_raftwire, unknown_entry_type_is_badmsg)
{
	uint8_t buf[4096];
	raft_entry_t ents[CAP], in[2];
	raft_msg_t m = sample_msg(RAFT_MSG_APPEND, 1), d;
	const uint32_t bad[] = {RAFT_ENTRY_NOOP + 1, 100, UINT32_MAX};

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		for (int pos = 0; pos < 2; pos++) {
			in[0] = (raft_entry_t){.index = 1, .term = 1, .type = RAFT_ENTRY_NORMAL,
					       .len = 3, .data = "abc"};
			in[1] = in[0];
			in[pos].type = bad[i];
			m.n_entries = 2;
			m.entries = in;
			size_t len = encode(&m, buf, sizeof buf);
			cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, CAP,
							   MAX_DATA),
				     PROTO_EBADMSG, "entry type %u at %d", bad[i], pos);
		}
	}
}

Test(proto_raftwire, more_entries_than_cap_is_toobig)
{
	uint8_t buf[4096];
	raft_entry_t ents[CAP], in[5];
	raft_msg_t m = sample_msg(RAFT_MSG_APPEND, 1), d;

	for (uint32_t i = 0; i < 5; i++)
		in[i] = (raft_entry_t){.index = 1 + i, .term = 1, .type = RAFT_ENTRY_NOOP};
	m.n_entries = 5;
	m.entries = in;
	size_t len = encode(&m, buf, sizeof buf);
	for (size_t cap = 0; cap < 5; cap++)
		cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, cap, MAX_DATA),
			     PROTO_ETOOBIG, "cap %zu", cap);
	cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, 5, MAX_DATA), 0);
	cr_assert_eq(d.n_entries, 5);
}

Test(proto_raftwire, entry_count_the_bytes_cannot_hold_is_badmsg)
{
	uint8_t buf[4096];
	raft_entry_t ents[CAP], in[5];
	raft_msg_t m = sample_msg(RAFT_MSG_APPEND, 1), d;
	size_t at = OFF_IDS; /* n_entries: no conf ids in variant 1 */

	/* 5 empty entries: 5 x 24 bytes + the data length follow the count */
	for (uint32_t i = 0; i < 5; i++)
		in[i] = (raft_entry_t){.index = 1 + i, .term = 1, .type = RAFT_ENTRY_NOOP};
	m.n_entries = 5;
	m.entries = in;
	size_t len = encode(&m, buf, sizeof buf);
	cr_assert_eq(rd32(buf + at), 5);
	cr_assert_eq(len, at + 4 + 5 * 24 + 4);
	const uint32_t bad[] = {6, 7, 1000, UINT32_MAX};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		le32(buf + at, bad[i]);
		/* even with a cap that would allow it: the bytes are not there */
		cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, CAP, MAX_DATA),
			     PROTO_EBADMSG, "n_entries %u", bad[i]);
		cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, 1, MAX_DATA),
			     PROTO_EBADMSG, "n_entries %u, cap 1", bad[i]);
	}
	/* fewer entries than the bytes hold: the rest is trailing garbage */
	le32(buf + at, 1);
	cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, CAP, MAX_DATA),
		     PROTO_EBADMSG);
}

Test(proto_raftwire, byte_string_over_max_data_is_toobig)
{
	static uint8_t big[1024];
	uint8_t buf[4096];
	raft_entry_t ents[CAP], in[2];
	raft_msg_t m = sample_msg(RAFT_MSG_APPEND, 1), d;
	size_t len;

	/* entry data over max_data, in the first or a later entry */
	for (int pos = 0; pos < 2; pos++) {
		in[0] = (raft_entry_t){.index = 1, .term = 1, .type = RAFT_ENTRY_NORMAL, .len = 100,
				       .data = big};
		in[1] = in[0];
		in[pos].len = 101;
		m.n_entries = 2;
		m.entries = in;
		len = encode(&m, buf, sizeof buf);
		cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, CAP, 100),
			     PROTO_ETOOBIG, "entry %d", pos);
		cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, CAP, 101), 0);
	}

	/* message data over max_data */
	m = sample_msg(RAFT_MSG_SNAPSHOT, 1);
	m.data = big;
	m.len = sizeof big;
	len = encode(&m, buf, sizeof buf);
	cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, CAP, sizeof big - 1),
		     PROTO_ETOOBIG);
	cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, CAP, sizeof big), 0);
	cr_assert_eq(d.len, sizeof big);
	/* a length over the max is too big even when the sender stopped before the bytes */
	cr_assert_eq(proto_raft_msg_decode(guarded(buf, len - sizeof big), len - sizeof big, &d,
					   ents, CAP, sizeof big - 1),
		     PROTO_ETOOBIG);
	/* max_data 0: only empty strings */
	m.len = 0;
	len = encode(&m, buf, sizeof buf);
	cr_assert_eq(proto_raft_msg_decode(guarded(buf, len), len, &d, ents, CAP, 0), 0);
}

Test(proto_raftwire, bit_flips_are_decoded_or_refused_consistently)
{
	uint8_t orig[4096], buf[4096], re[8192];
	size_t relen;
	int accepted = 0, refused = 0;

	for (uint32_t type = 1; type < RAFT_MSG_TYPE_MAX; type++) {
		for (int v = 0; v < NVARIANTS; v++) {
			raft_msg_t m = sample_msg(type, v);
			size_t len = encode(&m, orig, sizeof orig);

			for (size_t bit = 0; bit < len * 8; bit++) {
				memcpy(buf, orig, len);
				buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
				int rc = check_msg(guarded(buf, len), len, re, sizeof re, &relen);
				if (rc == 0) {
					cr_assert_eq(relen, len, "type %u/%d bit %zu", type, v, bit);
					cr_assert(memcmp(re, buf, len) == 0, "type %u/%d bit %zu", type,
						  v, bit);
					accepted++;
				} else {
					cr_assert(is_refusal(rc), "type %u/%d bit %zu: %d %s", type, v,
						  bit, rc, geokv_strerror(rc));
					refused++;
				}
			}
		}
	}
	cr_assert(accepted > 0 && refused > 0, "accepted %d refused %d", accepted, refused);
}

Test(proto_raftwire, byte_values_at_every_position_are_decoded_or_refused_consistently)
{
	uint8_t orig[4096], buf[4096], re[8192];
	size_t relen;
	const uint8_t vals[] = {0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff};
	raft_msg_t m = sample_msg(RAFT_MSG_APPEND, 0);
	size_t len = encode(&m, orig, sizeof orig);

	for (size_t pos = 0; pos < len; pos++) {
		for (size_t k = 0; k < sizeof vals; k++) {
			memcpy(buf, orig, len);
			buf[pos] = vals[k];
			int rc = check_msg(guarded(buf, len), len, re, sizeof re, &relen);
			if (rc == 0) {
				cr_assert_eq(relen, len, "pos %zu = %02x", pos, vals[k]);
				cr_assert(memcmp(re, buf, len) == 0, "pos %zu = %02x", pos, vals[k]);
			} else {
				cr_assert(is_refusal(rc), "pos %zu = %02x: %d", pos, vals[k], rc);
			}
		}
	}
}
