/*
 * Codec tests: every message round-trips byte for byte, every truncation and every trailing
 * byte is refused, oversize fields are PROTO_ETOOBIG, and no decoder reads past its input
 * (each input is placed right before a PROT_NONE page, as picohttpparser's test.c does).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "proto/proto.h"
#include "samples.h"

#define B(s) ((proto_bytes_t){(const uint8_t *)(s), (uint32_t)(sizeof(s) - 1)})

/* ---- guard page ---------------------------------------------------------------------- */

static uint8_t *guard_base;
static size_t guard_size; /* readable bytes before the guard page */

static void guard_setup(void)
{
	long pg = sysconf(_SC_PAGESIZE);

	guard_size = 16 * (size_t)pg;
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
	memcpy(d, p, n);
	return d;
}

static sample_t samples[64];
static size_t nsamples;

static void setup(void)
{
	guard_setup();
	nsamples = samples_build(samples, 64);
	cr_assert(nsamples >= 25);
	for (size_t i = 0; i < nsamples; i++)
		cr_assert(samples[i].len > 0, "sample %s did not encode", samples[i].name);
}

TestSuite(proto_codec, .init = setup, .fini = guard_teardown);

/* ---- every message ------------------------------------------------------------------- */

Test(proto_codec, every_sample_round_trips_byte_for_byte)
{
	uint8_t re[8192];
	size_t relen;

	for (size_t i = 0; i < nsamples; i++) {
		sample_t *s = &samples[i];
		const uint8_t *p = guarded(s->buf, s->len);
		int rc = sample_check(s->kind, p, s->len, re, sizeof re, &relen);
		cr_assert_eq(rc, 0, "%s: %s", s->name, geokv_strerror(rc));
		cr_assert_eq(relen, s->len, "%s", s->name);
		cr_assert(memcmp(re, s->buf, relen) == 0, "%s", s->name);
	}
}

Test(proto_codec, every_truncation_is_refused_without_overread)
{
	uint8_t re[8192];
	size_t relen;

	for (size_t i = 0; i < nsamples; i++) {
		sample_t *s = &samples[i];
		for (size_t cut = 0; cut < s->len; cut++) {
			const uint8_t *p = guarded(s->buf, cut);
			int rc = sample_check(s->kind, p, cut, re, sizeof re, &relen);
			cr_assert(rc == PROTO_EBADMSG, "%s cut at %zu: %d %s", s->name, cut, rc,
				  geokv_strerror(rc));
		}
	}
}

Test(proto_codec, trailing_bytes_are_refused)
{
	uint8_t buf[8192], re[8192];
	size_t relen;

	for (size_t i = 0; i < nsamples; i++) {
		sample_t *s = &samples[i];
		memcpy(buf, s->buf, s->len);
		buf[s->len] = 0;
		const uint8_t *p = guarded(buf, s->len + 1);
		int rc = sample_check(s->kind, p, s->len + 1, re, sizeof re, &relen);
		cr_assert(rc == PROTO_EBADMSG, "%s + 1 byte: %d", s->name, rc);
	}
}

/* Flip every bit of every sample: decoders may accept or refuse, but never over-read, and
 * whatever they accept re-encodes to the same bytes (one payload, one meaning). */
Test(proto_codec, every_bit_flip_is_decoded_or_refused_consistently)
{
	uint8_t buf[4096], re[8192];
	size_t relen;

	for (size_t i = 0; i < nsamples; i++) {
		sample_t *s = &samples[i];
		for (size_t bit = 0; bit < s->len * 8; bit++) {
			memcpy(buf, s->buf, s->len);
			buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			const uint8_t *p = guarded(buf, s->len);
			int rc = sample_check(s->kind, p, s->len, re, sizeof re, &relen);
			if (rc == 0) {
				cr_assert_eq(relen, s->len, "%s bit %zu", s->name, bit);
				cr_assert(memcmp(re, buf, relen) == 0, "%s bit %zu", s->name, bit);
			} else {
				cr_assert(rc <= PROTO_EAGAIN && rc > PROTO_ELAST, "%s bit %zu: %d",
					  s->name, bit, rc);
			}
		}
	}
}

/* ---- frame header -------------------------------------------------------------------- */

Test(proto_codec, header_round_trip_and_partial)
{
	uint8_t buf[PROTO_HDR_LEN + 5];
	proto_hdr_t h = {5, PROTO_T_REQ, 0, 0x0102030405060708ull}, d;

	proto_hdr_encode(buf, &h);
	memcpy(buf + PROTO_HDR_LEN, "hello", 5);
	/* little-endian on the wire, whatever the host */
	cr_assert_eq(buf[0], 5);
	cr_assert_eq(buf[4], PROTO_T_REQ);
	cr_assert_eq(buf[8], 0x08);
	cr_assert_eq(buf[15], 0x01);
	for (size_t n = 0; n < sizeof buf; n++) {
		const uint8_t *p = guarded(buf, n);
		cr_assert_eq(proto_hdr_decode(p, n, 1024, &d), PROTO_EAGAIN, "n=%zu", n);
	}
	const uint8_t *p = guarded(buf, sizeof buf);
	cr_assert_eq(proto_hdr_decode(p, sizeof buf, 1024, &d), PROTO_HDR_LEN);
	cr_assert_eq(d.len, 5);
	cr_assert_eq(d.type, PROTO_T_REQ);
	cr_assert_eq(d.flags, 0);
	cr_assert_eq(d.id, h.id);
}

Test(proto_codec, header_over_max_frame_is_toobig_before_payload_arrives)
{
	uint8_t buf[PROTO_HDR_LEN];
	proto_hdr_t h = {1025, PROTO_T_REQ, 0, 77}, d;

	proto_hdr_encode(buf, &h);
	cr_assert_eq(proto_hdr_decode(guarded(buf, sizeof buf), sizeof buf, 1024, &d), PROTO_ETOOBIG);
	cr_assert_eq(d.id, 77, "id is filled so the receiver can answer");
	h.len = UINT32_MAX;
	proto_hdr_encode(buf, &h);
	cr_assert_eq(proto_hdr_decode(buf, sizeof buf, PROTO_DEFAULT_MAX_FRAME, &d), PROTO_ETOOBIG);
}

Test(proto_codec, header_with_unknown_flags_is_badmsg)
{
	uint8_t buf[PROTO_HDR_LEN];
	proto_hdr_t h = {0, PROTO_T_PING, 0x8000, 1}, d;

	proto_hdr_encode(buf, &h);
	cr_assert_eq(proto_hdr_decode(buf, sizeof buf, 1024, &d), PROTO_EBADMSG);
}

Test(proto_codec, frames_are_built_in_place_and_pipelined)
{
	uint8_t buf[256];
	proto_wbuf_t w;
	proto_hdr_t d;
	proto_op_t op = {.op = PROTO_OP_GET, .bucket = B("b"), .key = B("k")}, out;

	proto_wbuf_init(&w, buf, sizeof buf);
	for (uint64_t id = 1; id <= 3; id++) {
		size_t at = proto_frame_begin(&w);
		proto_op_encode(&w, &op);
		cr_assert_eq(proto_frame_finish(&w, at, PROTO_T_REQ, id), 0);
	}
	size_t off = 0, total = proto_wbuf_len(&w);
	for (uint64_t id = 1; id <= 3; id++) {
		cr_assert_eq(proto_hdr_decode(buf + off, total - off, 1024, &d), PROTO_HDR_LEN);
		cr_assert_eq(d.id, id);
		cr_assert_eq(d.type, PROTO_T_REQ);
		cr_assert_eq(proto_op_decode(buf + off + PROTO_HDR_LEN, d.len, &out), 0);
		cr_assert_eq(out.key.len, 1);
		off += PROTO_HDR_LEN + d.len;
	}
	cr_assert_eq(off, total);

	/* a frame that does not fit reports ETOOBIG */
	proto_wbuf_init(&w, buf, 20);
	size_t at = proto_frame_begin(&w);
	proto_op_encode(&w, &op);
	cr_assert_eq(proto_frame_finish(&w, at, PROTO_T_REQ, 9), PROTO_ETOOBIG);
}

/* ---- fields -------------------------------------------------------------------------- */

Test(proto_codec, op_fields_decode_to_what_was_encoded)
{
	uint8_t buf[512];
	proto_wbuf_t w;
	proto_op_t in, out;

	memset(&in, 0, sizeof in);
	in.op = PROTO_OP_UPDATE;
	in.bucket = B("orders");
	in.key = B("a.b.c");
	in.value = B("value\0with nul");
	in.rev = UINT64_MAX - 1;
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_op_encode(&w, &in), 0);
	cr_assert_eq(proto_op_decode(buf, proto_wbuf_len(&w), &out), 0);
	cr_assert_eq(out.op, PROTO_OP_UPDATE);
	cr_assert(out.bucket.len == 6 && memcmp(out.bucket.p, "orders", 6) == 0);
	cr_assert(out.key.len == 5 && memcmp(out.key.p, "a.b.c", 5) == 0);
	cr_assert(out.value.len == in.value.len && memcmp(out.value.p, in.value.p, in.value.len) == 0);
	cr_assert_eq(out.rev, UINT64_MAX - 1);
	cr_assert_eq(out.limit, 0);
	cr_assert_eq(out.cfg.history, 0, "fields the op does not carry decode as zero");

	memset(&in, 0, sizeof in);
	in.op = PROTO_OP_BUCKET_ADD;
	in.bucket = B("b");
	in.cfg = (proto_bucket_cfg_t){64, 123456, 1000, B("text/csv")};
	in.key = B("ignored");
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_op_encode(&w, &in), 0);
	cr_assert_eq(proto_op_decode(buf, proto_wbuf_len(&w), &out), 0);
	cr_assert_eq(out.cfg.history, 64);
	cr_assert_eq(out.cfg.max_value, 123456);
	cr_assert_eq(out.cfg.max_age_ms, 1000);
	cr_assert(out.cfg.content_type.len == 8);
	cr_assert_eq(out.key.len, 0, "BUCKET_ADD carries no key");
}

Test(proto_codec, batch_iterates_its_ops_in_order)
{
	uint8_t buf[4096];
	proto_wbuf_t w;
	proto_batch_writer_t b;
	proto_batch_iter_t it;
	proto_op_t op, out;
	char key[16];
	int rc, i = 0;

	proto_wbuf_init(&w, buf, sizeof buf);
	proto_batch_begin(&b, &w);
	memset(&op, 0, sizeof op);
	op.op = PROTO_OP_PUT;
	op.bucket = B("b");
	for (i = 0; i < 50; i++) {
		snprintf(key, sizeof key, "k%d", i);
		op.key = (proto_bytes_t){(const uint8_t *)key, (uint32_t)strlen(key)};
		op.value = op.key;
		cr_assert_eq(proto_batch_add(&b, &op), 0);
	}
	proto_batch_finish(&b);
	cr_assert_eq(proto_op_decode(buf, proto_wbuf_len(&w), &out), 0);
	cr_assert_eq(out.op, PROTO_OP_BATCH);
	cr_assert_eq(out.count, 50);
	proto_batch_iter_init(&it, &out);
	i = 0;
	while ((rc = proto_batch_next(&it, &op)) == 1) {
		snprintf(key, sizeof key, "k%d", i++);
		cr_assert(op.key.len == strlen(key) && memcmp(op.key.p, key, op.key.len) == 0);
	}
	cr_assert_eq(rc, 0);
	cr_assert_eq(i, 50);
}

Test(proto_codec, batch_add_refuses_reads_nesting_and_overflow_without_damage)
{
	uint8_t buf[64];
	proto_wbuf_t w;
	proto_batch_writer_t b;
	proto_op_t op = {.op = PROTO_OP_PUT, .bucket = B("b"), .key = B("k"), .value = B("v")}, out;

	proto_wbuf_init(&w, buf, sizeof buf);
	proto_batch_begin(&b, &w);
	cr_assert_eq(proto_batch_add(&b, &op), 0);
	proto_op_t get = {.op = PROTO_OP_GET, .bucket = B("b"), .key = B("k")};
	cr_assert_eq(proto_batch_add(&b, &get), PROTO_EBADTYPE);
	proto_op_t nest = {.op = PROTO_OP_BATCH};
	cr_assert_eq(proto_batch_add(&b, &nest), PROTO_EBADTYPE);
	int added = 1, rc;
	while ((rc = proto_batch_add(&b, &op)) == 0)
		added++;
	cr_assert_eq(rc, PROTO_ETOOBIG);
	cr_assert_eq(w.err, 0, "a full batch stays usable");
	proto_batch_finish(&b);
	cr_assert_eq(proto_op_decode(buf, proto_wbuf_len(&w), &out), 0);
	cr_assert_eq(out.count, (uint32_t)added);
}

Test(proto_codec, batch_with_read_op_or_nested_batch_or_zero_count_is_refused)
{
	uint8_t buf[128];
	proto_wbuf_t w;
	proto_op_t out, in;
	proto_batch_iter_t it;

	/* hand-built: BATCH count=1 containing a GET */
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_put_u8(&w, PROTO_OP_BATCH);
	proto_put_u32(&w, 1);
	proto_op_t get = {.op = PROTO_OP_GET, .bucket = B("b"), .key = B("k")};
	proto_op_encode(&w, &get);
	cr_assert_eq(proto_op_decode(buf, proto_wbuf_len(&w), &out), 0, "shallow decode");
	proto_batch_iter_init(&it, &out);
	cr_assert_eq(proto_batch_next(&it, &in), PROTO_EBADMSG);

	/* BATCH count=1 containing a BATCH */
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_put_u8(&w, PROTO_OP_BATCH);
	proto_put_u32(&w, 1);
	proto_put_u8(&w, PROTO_OP_BATCH);
	proto_put_u32(&w, 1);
	proto_op_t del = {.op = PROTO_OP_BUCKET_DEL, .bucket = B("b")};
	proto_op_encode(&w, &del);
	cr_assert_eq(proto_op_decode(buf, proto_wbuf_len(&w), &out), 0);
	proto_batch_iter_init(&it, &out);
	cr_assert_eq(proto_batch_next(&it, &in), PROTO_EBADMSG);

	/* count 0 */
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_put_u8(&w, PROTO_OP_BATCH);
	proto_put_u32(&w, 0);
	cr_assert_eq(proto_op_decode(buf, proto_wbuf_len(&w), &out), PROTO_EBADMSG);

	/* count larger than the bytes could hold */
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_put_u8(&w, PROTO_OP_BATCH);
	proto_put_u32(&w, 1000);
	proto_op_encode(&w, &del);
	cr_assert_eq(proto_op_decode(buf, proto_wbuf_len(&w), &out), PROTO_EBADMSG);

	/* count over the maximum */
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_put_u8(&w, PROTO_OP_BATCH);
	proto_put_u32(&w, PROTO_MAX_BATCH + 1);
	cr_assert_eq(proto_op_decode(buf, proto_wbuf_len(&w), &out), PROTO_ETOOBIG);

	/* fewer ops than count, and more bytes than count ops */
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_put_u8(&w, PROTO_OP_BATCH);
	proto_put_u32(&w, 2);
	proto_op_encode(&w, &del);
	proto_op_encode(&w, &del);
	proto_op_encode(&w, &del);
	cr_assert_eq(proto_op_decode(buf, proto_wbuf_len(&w), &out), 0);
	proto_batch_iter_init(&it, &out);
	cr_assert_eq(proto_batch_next(&it, &in), 1);
	cr_assert_eq(proto_batch_next(&it, &in), 1);
	cr_assert_eq(proto_batch_next(&it, &in), PROTO_EBADMSG, "bytes after count ops");
}

Test(proto_codec, unknown_op_is_ebadtype)
{
	uint8_t buf[] = {0, 10, 11, 31, 42, 255};
	proto_op_t out;
	for (size_t i = 0; i < sizeof buf; i++)
		cr_assert_eq(proto_op_decode(&buf[i], 1, &out), PROTO_EBADTYPE, "op %u", buf[i]);
	proto_op_t op = {.op = 200};
	uint8_t o[16];
	proto_wbuf_t w;
	proto_wbuf_init(&w, o, sizeof o);
	cr_assert_eq(proto_op_encode(&w, &op), PROTO_EBADTYPE);
}

Test(proto_codec, entry_refuses_other_version_and_read_ops)
{
	uint8_t buf[128];
	proto_wbuf_t w;
	proto_entry_t e;
	proto_op_t get = {.op = PROTO_OP_GET, .bucket = B("b"), .key = B("k")};
	proto_op_t put = {.op = PROTO_OP_PUT, .bucket = B("b"), .key = B("k"), .value = B("v")};

	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_entry_encode(&w, 1, &get), PROTO_EBADTYPE);

	proto_wbuf_init(&w, buf, sizeof buf);
	proto_put_u8(&w, 1);
	proto_put_u64(&w, 5);
	proto_op_encode(&w, &get);
	cr_assert_eq(proto_entry_decode(buf, proto_wbuf_len(&w), &e), PROTO_EBADMSG);

	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_entry_encode(&w, 42, &put), 0);
	cr_assert_eq(proto_entry_decode(buf, proto_wbuf_len(&w), &e), 0);
	cr_assert_eq(e.time_ms, 42);
	cr_assert_eq(e.op.op, PROTO_OP_PUT);
	buf[0] = 2;
	cr_assert_eq(proto_entry_decode(buf, proto_wbuf_len(&w), &e), PROTO_EVERSION);
}

Test(proto_codec, response_enums_out_of_range_are_badmsg)
{
	uint8_t buf[256];
	proto_wbuf_t w;
	proto_rec_t r = {B("k"), B("v"), 1, 1, 1, PROTO_REC_PUT};
	size_t n;

	proto_wbuf_init(&w, buf, sizeof buf);
	proto_rec_encode(&w, &r);
	n = proto_wbuf_len(&w);
	buf[n - 1] = 0;
	cr_assert_eq(proto_rec_decode(buf, n, &r), PROTO_EBADMSG);
	buf[n - 1] = 4;
	cr_assert_eq(proto_rec_decode(buf, n, &r), PROTO_EBADMSG);

	proto_status_t st = {0};
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_status_encode(&w, &st);
	buf[9] = 2; /* is_leader */
	cr_assert_eq(proto_status_decode(buf, proto_wbuf_len(&w), &st), PROTO_EBADMSG);

	/* members: at most PROTO_MAX_MEMBERS, flags only the known bits */
	proto_status_t ms = {0};
	ms.nmembers = 1;
	ms.members[0] = (proto_member_t){7, PROTO_MEMBER_UP, 5, B("h:1")};
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_status_encode(&w, &ms), 0);
	n = proto_wbuf_len(&w);
	cr_assert_eq(proto_status_decode(buf, n, &st), 0);
	cr_assert_eq(st.nmembers, 1);
	cr_assert_eq(st.members[0].id, 7);
	cr_assert_eq(st.members[0].match, 5);
	cr_assert_eq(st.members[0].addr.len, 3);
	buf[n - 1 - 4 - 8 - 1] = 0x80; /* the member's flags byte */
	cr_assert_eq(proto_status_decode(buf, n, &st), PROTO_EBADMSG);
	buf[n - 1 - 4 - 8 - 1] = PROTO_MEMBER_UP;
	buf[n - 1 - 4 - 8 - 1 - 8 - 1] = PROTO_MAX_MEMBERS + 1; /* the count */
	cr_assert_eq(proto_status_decode(buf, n, &st), PROTO_EBADMSG);
	ms.nmembers = PROTO_MAX_MEMBERS + 1;
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_status_encode(&w, &ms), PROTO_ETOOBIG);

	/* leaves: at most PROTO_MAX_LEAVES, flags only the known bits */
	proto_status_t ls = {0};
	ls.nleaves = 1;
	ls.leaves[0] = (proto_leaf_info_t){9, PROTO_LEAF_CONNECTED, 50, 2, 30, B("lf")};
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_status_encode(&w, &ls), 0);
	n = proto_wbuf_len(&w);
	cr_assert_eq(proto_status_decode(buf, n, &st), 0);
	cr_assert_eq(st.nleaves, 1);
	cr_assert_eq(st.leaves[0].applied, 50);
	cr_assert_eq(st.leaves[0].name.len, 2);
	buf[n - 3 - 24 - 1] = 2; /* the leaf's flags byte */
	cr_assert_eq(proto_status_decode(buf, n, &st), PROTO_EBADMSG);
	buf[n - 3 - 24 - 1] = PROTO_LEAF_CONNECTED;
	buf[n - 3 - 24 - 1 - 8 - 1] = PROTO_MAX_LEAVES + 1; /* the count */
	cr_assert_eq(proto_status_decode(buf, n, &st), PROTO_EBADMSG);
	ls.nleaves = PROTO_MAX_LEAVES + 1;
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_status_encode(&w, &ls), PROTO_ETOOBIG);

	proto_error_t e = {0, B("x"), B(""), 0, 0};
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_error_encode(&w, &e);
	cr_assert_eq(proto_error_decode(buf, proto_wbuf_len(&w), &e), PROTO_EBADMSG,
		     "an ERROR carrying success");

	/* list: more must be 0 or 1; count must fit; op must be a list op */
	uint8_t l[] = {0, 0, 0, 0, 2};
	proto_list_reader_t lr;
	cr_assert_eq(proto_list_reader_init(&lr, l, sizeof l, PROTO_OP_KEYS), PROTO_EBADMSG);
	uint8_t l2[] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0};
	cr_assert_eq(proto_list_reader_init(&lr, l2, sizeof l2, PROTO_OP_KEYS), PROTO_EBADMSG);
	uint8_t l3[] = {0, 0, 0, 0, 0};
	cr_assert_eq(proto_list_reader_init(&lr, l3, sizeof l3, PROTO_OP_GET), PROTO_EBADTYPE);
	cr_assert_eq(proto_list_reader_init(&lr, l3, sizeof l3, PROTO_OP_KEYS), 0);
	proto_rec_t rr;
	cr_assert_eq(proto_list_next_rec(&lr, &rr), PROTO_EBADMSG, "keys list read as records");
}

/* ---- oversize ------------------------------------------------------------------------ */

/* A field whose length prefix is over the max is ETOOBIG, even before its bytes arrive. */
Test(proto_codec, oversize_fields_are_toobig_on_decode)
{
	uint8_t buf[8192];
	proto_wbuf_t w;
	proto_op_t op;
	proto_hello_t h;
	proto_error_t e;
	proto_rec_t r;

	/* bucket 65 */
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_put_u8(&w, PROTO_OP_BUCKET_DEL);
	proto_put_u8(&w, PROTO_MAX_BUCKET + 1);
	memset(w.p, 'a', PROTO_MAX_BUCKET + 1);
	w.p += PROTO_MAX_BUCKET + 1;
	cr_assert_eq(proto_op_decode(buf, proto_wbuf_len(&w), &op), PROTO_ETOOBIG);

	/* key 1025 */
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_put_u8(&w, PROTO_OP_GET);
	proto_put_bytes(&w, 1, "b", 1);
	proto_put_u16(&w, PROTO_MAX_KEY + 1);
	cr_assert_eq(proto_op_decode(buf, proto_wbuf_len(&w), &op), PROTO_ETOOBIG);

	/* value over PROTO_MAX_VALUE: refused from the 4-byte length alone */
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_put_u8(&w, PROTO_OP_PUT);
	proto_put_bytes(&w, 1, "b", 1);
	proto_put_bytes(&w, 2, "k", 1);
	proto_put_u32(&w, PROTO_MAX_VALUE + 1);
	cr_assert_eq(proto_op_decode(buf, proto_wbuf_len(&w), &op), PROTO_ETOOBIG);

	/* content type 128 */
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_put_u8(&w, PROTO_OP_BUCKET_ADD);
	proto_put_bytes(&w, 1, "b", 1);
	proto_put_u32(&w, 1);
	proto_put_u32(&w, 0);
	proto_put_u64(&w, 0);
	proto_put_u8(&w, PROTO_MAX_CTYPE + 1);
	cr_assert_eq(proto_op_decode(buf, proto_wbuf_len(&w), &op), PROTO_ETOOBIG);

	/* KEYS after 1025 */
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_put_u8(&w, PROTO_OP_KEYS);
	proto_put_bytes(&w, 1, "b", 1);
	proto_put_bytes(&w, 2, "", 0);
	proto_put_u16(&w, PROTO_MAX_KEY + 1);
	cr_assert_eq(proto_op_decode(buf, proto_wbuf_len(&w), &op), PROTO_ETOOBIG);

	/* hello token */
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_put_u16(&w, 1);
	proto_put_u8(&w, 1);
	proto_put_bytes(&w, 1, "", 0);
	proto_put_u16(&w, PROTO_MAX_TOKEN + 1);
	cr_assert_eq(proto_hello_decode(buf, proto_wbuf_len(&w), &h), PROTO_ETOOBIG);

	/* error message */
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_put_u32(&w, (uint32_t)KV_ENOTFOUND);
	proto_put_u16(&w, PROTO_MAX_ERRMSG + 1);
	cr_assert_eq(proto_error_decode(buf, proto_wbuf_len(&w), &e), PROTO_ETOOBIG);

	/* record key */
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_put_u16(&w, PROTO_MAX_KEY + 1);
	cr_assert_eq(proto_rec_decode(buf, proto_wbuf_len(&w), &r), PROTO_ETOOBIG);

	/* a list item over its max */
	proto_list_reader_t lr;
	proto_wbuf_init(&w, buf, sizeof buf);
	proto_put_u32(&w, 1);
	proto_put_u16(&w, PROTO_MAX_KEY + 1);
	memset(w.p, 'k', PROTO_MAX_KEY + 1);
	w.p += PROTO_MAX_KEY + 1;
	proto_put_u8(&w, 0);
	cr_assert_eq(proto_list_reader_init(&lr, buf, proto_wbuf_len(&w), PROTO_OP_KEYS),
		     PROTO_ETOOBIG);
}

Test(proto_codec, oversize_fields_are_toobig_on_encode)
{
	static uint8_t big[PROTO_MAX_TOKEN + 2];
	uint8_t buf[8192];
	proto_wbuf_t w;

	memset(big, 'a', sizeof big);
	proto_op_t op = {.op = PROTO_OP_PUT, .bucket = {big, PROTO_MAX_BUCKET + 1},
			 .key = B("k"), .value = B("v")};
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_op_encode(&w, &op), PROTO_ETOOBIG);

	op.bucket = B("b");
	op.key = (proto_bytes_t){big, PROTO_MAX_KEY + 1};
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_op_encode(&w, &op), PROTO_ETOOBIG);

	op.key = (proto_bytes_t){big, PROTO_MAX_KEY};
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_op_encode(&w, &op), 0, "exactly the max is fine");

	proto_hello_t h = {1, 1, B(""), {big, PROTO_MAX_TOKEN + 1}};
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_hello_encode(&w, &h), PROTO_ETOOBIG);

	/* a buffer too small is ETOOBIG too, and sticky */
	proto_wbuf_init(&w, buf, 3);
	proto_put_u32(&w, 1);
	cr_assert_eq(w.err, PROTO_ETOOBIG);
	proto_put_u8(&w, 1);
	cr_assert_eq(proto_wbuf_len(&w), 0);
}

/* ---- cursor -------------------------------------------------------------------------- */

Test(proto_codec, cursor_error_is_sticky_and_reads_zero)
{
	uint8_t b[] = {1, 2, 3};
	proto_cur_t c;

	proto_cur_init(&c, guarded(b, 3), 3);
	cr_assert_eq(proto_get_u16(&c), 0x0201);
	cr_assert_eq(proto_get_u32(&c), 0);
	cr_assert_eq(c.err, PROTO_EBADMSG);
	cr_assert_eq(proto_get_u8(&c), 0, "after an error nothing more is read");
	proto_bytes_t x = proto_get_bytes(&c, 1, 10);
	cr_assert(x.p == NULL && x.len == 0);

	proto_cur_init(&c, b, 3);
	proto_get_bytes(&c, 3, 10);
	cr_assert_eq(c.err, PROTO_EBADMSG, "bad lenbytes");
}

/* ---- names --------------------------------------------------------------------------- */

Test(proto_names, bucket_rules)
{
	char name[PROTO_MAX_BUCKET + 2];

	cr_assert(proto_bucket_valid("cards", 5));
	cr_assert(proto_bucket_valid("A-z_0-9", 7));
	cr_assert(proto_bucket_valid("-", 1));
	cr_assert(!proto_bucket_valid("", 0));
	cr_assert(!proto_bucket_valid("a.b", 3));
	cr_assert(!proto_bucket_valid("a b", 3));
	cr_assert(!proto_bucket_valid("a/b", 3));
	cr_assert(!proto_bucket_valid("caf\xc3\xa9", 5));
	cr_assert(!proto_bucket_valid("a\0b", 3));
	memset(name, 'x', sizeof name);
	cr_assert(proto_bucket_valid(name, PROTO_MAX_BUCKET));
	cr_assert(!proto_bucket_valid(name, PROTO_MAX_BUCKET + 1));
}

Test(proto_names, key_rules)
{
	static char key[PROTO_MAX_KEY + 2];

	cr_assert(proto_key_valid("a", 1));
	cr_assert(proto_key_valid("user.42/card=1_x-y", 18));
	cr_assert(proto_key_valid("a..b", 4), "NATS allows empty tokens inside");
	cr_assert(proto_key_valid("=", 1));
	cr_assert(!proto_key_valid("", 0));
	cr_assert(!proto_key_valid(".", 1));
	cr_assert(!proto_key_valid(".a", 2));
	cr_assert(!proto_key_valid("a.", 2));
	cr_assert(!proto_key_valid("a b", 3));
	cr_assert(!proto_key_valid("a*", 2));
	cr_assert(!proto_key_valid("a>", 2));
	cr_assert(!proto_key_valid("a:b", 3));
	cr_assert(!proto_key_valid("a\0", 2));
	cr_assert(!proto_key_valid("\xff", 1));
	memset(key, 'k', sizeof key);
	cr_assert(proto_key_valid(key, PROTO_MAX_KEY));
	cr_assert(!proto_key_valid(key, PROTO_MAX_KEY + 1));
}

Test(proto_names, prefix_rules)
{
	static char p[PROTO_MAX_KEY + 2];

	cr_assert(proto_prefix_valid("", 0));
	cr_assert(proto_prefix_valid("user", 4));
	cr_assert(proto_prefix_valid("user.", 5));
	cr_assert(proto_prefix_valid("user.42", 7));
	cr_assert(!proto_prefix_valid(".", 1));
	cr_assert(!proto_prefix_valid("user..", 6), "only one trailing dot");
	cr_assert(!proto_prefix_valid(".user", 5));
	cr_assert(!proto_prefix_valid("us er", 5));
	cr_assert(!proto_prefix_valid("user.*", 6));
	memset(p, 'k', sizeof p);
	cr_assert(proto_prefix_valid(p, PROTO_MAX_KEY));
	p[PROTO_MAX_KEY - 1] = '.';
	cr_assert(proto_prefix_valid(p, PROTO_MAX_KEY));
	cr_assert(!proto_prefix_valid(p, PROTO_MAX_KEY + 1));
}

Test(proto_names, type_and_op_names)
{
	cr_assert_str_eq(proto_type_name(PROTO_T_REQ), "REQ");
	cr_assert_str_eq(proto_type_name(999), "?");
	cr_assert_str_eq(proto_op_name(PROTO_OP_PUT), "PUT");
	cr_assert_str_eq(proto_op_name(PROTO_OP_STATUS), "STATUS");
	cr_assert_str_eq(proto_op_name(PROTO_OP_HASH), "HASH");
	cr_assert_str_eq(proto_op_name(0), "?");
}
