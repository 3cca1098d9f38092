/*
 * Leaf feed codec tests (proto/feed.h): every frame round-trips field for field and byte for
 * byte, every truncation and every trailing byte is refused, FEED_ENTRIES refuses a count the
 * bytes cannot hold, a gap or a duplicate inside a frame, data on a NOOP, an unknown type and
 * an oversize field, and the chain hash changes with every field it covers. Inputs sit right
 * before a PROT_NONE page, so an over-read crashes.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "proto/feed.h"
#include "proto/proto.h"

#include <xxhash.h>

#define B(s) ((proto_bytes_t){(const uint8_t *)(s), (uint32_t)(sizeof(s) - 1)})

static uint8_t *guard_base;
static size_t guard_size;

static void guard_setup(void)
{
	long pg = sysconf(_SC_PAGESIZE);

	guard_size = 32 * (size_t)pg;
	guard_base = mmap(NULL, guard_size + (size_t)pg, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(guard_base != MAP_FAILED);
	cr_assert(mprotect(guard_base + guard_size, (size_t)pg, PROT_NONE) == 0);
}

/* A copy of p[0..n) ending right at the guard page. */
static const uint8_t *guarded(const uint8_t *p, size_t n)
{
	cr_assert(n <= guard_size);
	uint8_t *q = guard_base + guard_size - n;
	memcpy(q, p, n);
	return q;
}

/* After editing a payload in place: a fresh seal, so the decoder looks past it. */
static void reseal(uint8_t *buf, size_t len)
{
	uint64_t h = XXH64(buf, len - 8, PROTO_FEED_SEAL_SEED);

	for (int i = 0; i < 8; i++)
		buf[len - 8 + (size_t)i] = (uint8_t)(h >> (8 * i));
}

typedef int (*dec_fn)(const uint8_t *p, size_t len, void *m);

/* Every strict prefix and one trailing byte are refused with PROTO_EBADMSG. */
static void check_truncations(const uint8_t *buf, size_t len, dec_fn dec, void *m)
{
	uint8_t more[4096];

	for (size_t n = 0; n < len; n++) {
		int rc = dec(guarded(buf, n), n, m);
		cr_assert(rc == PROTO_EBADMSG || rc == PROTO_ETOOBIG, "prefix %zu: %d", n, rc);
	}
	cr_assert(len + 1 <= sizeof more);
	memcpy(more, buf, len);
	more[len] = 0;
	cr_assert_eq(dec(guarded(more, len + 1), len + 1, m), PROTO_EBADMSG);
	cr_assert_eq(dec(guarded(buf, len), len, m), 0);
}

#define WRAP(name, T) \
	static int d_##name(const uint8_t *p, size_t len, void *m) { return proto_feed_##name##_decode(p, len, (T *)m); }
WRAP(start, proto_feed_start_t)
WRAP(snap, proto_feed_snap_t)
WRAP(snap_data, proto_feed_snap_data_t)
WRAP(hb, proto_feed_hb_t)
WRAP(ack, proto_feed_ack_t)
static int d_entries(const uint8_t *p, size_t len, void *m)
{
	return proto_feed_entries_init((proto_feed_entries_reader_t *)m, p, len);
}

TestSuite(proto_feed, .init = guard_setup);

Test(proto_feed, start_round_trips_and_refuses_truncation)
{
	uint8_t buf[512], again[512];
	proto_wbuf_t w;
	proto_feed_start_t m = {.from_index = 77, .from_term = 3, .from_hash = 0xabcdef,
				.leaf_id = 9, .name = B("leaf-a:7600")}, d;

	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_feed_start_encode(&w, &m), 0);
	size_t len = proto_wbuf_len(&w);
	cr_assert_eq(proto_feed_start_decode(guarded(buf, len), len, &d), 0);
	cr_assert_eq(d.from_index, 77);
	cr_assert_eq(d.from_term, 3);
	cr_assert_eq(d.from_hash, 0xabcdef);
	cr_assert_eq(d.leaf_id, 9);
	cr_assert_eq(d.name.len, 11);
	cr_assert_eq(memcmp(d.name.p, "leaf-a:7600", 11), 0);
	proto_wbuf_init(&w, again, sizeof again);
	cr_assert_eq(proto_feed_start_encode(&w, &d), 0);
	cr_assert_eq(proto_wbuf_len(&w), len);
	cr_assert_eq(memcmp(buf, again, len), 0);
	check_truncations(buf, len, d_start, &d);
}

Test(proto_feed, start_name_over_max_is_toobig)
{
	static uint8_t name[300];
	uint8_t buf[512];
	proto_wbuf_t w;
	proto_feed_start_t m = {.name = {name, 256}};

	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_feed_start_encode(&w, &m), PROTO_ETOOBIG);
}

Test(proto_feed, fixed_frames_round_trip)
{
	uint8_t buf[128];
	proto_wbuf_t w;
	proto_feed_snap_t s = {1, 2, 3, 4}, sd;
	proto_feed_hb_t h = {5, 6, 7}, hd;
	proto_feed_ack_t a = {8, 9, 10, 11}, ad;

	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_feed_snap_encode(&w, &s), 0);
	cr_assert_eq(proto_wbuf_len(&w), 40);
	check_truncations(buf, 40, d_snap, &sd);
	cr_assert(memcmp(&s, &sd, sizeof s) == 0);

	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_feed_hb_encode(&w, &h), 0);
	check_truncations(buf, proto_wbuf_len(&w), d_hb, &hd);
	cr_assert(memcmp(&h, &hd, sizeof h) == 0);

	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_feed_ack_encode(&w, &a), 0);
	check_truncations(buf, proto_wbuf_len(&w), d_ack, &ad);
	cr_assert(memcmp(&a, &ad, sizeof a) == 0);
}

Test(proto_feed, snap_data_round_trips_and_bounds_chunk)
{
	uint8_t buf[256];
	proto_wbuf_t w;
	proto_feed_snap_data_t m = {.offset = 1 << 20, .data = B("snapshot bytes")}, d;

	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(proto_feed_snap_data_encode(&w, &m), 0);
	size_t len = proto_wbuf_len(&w);
	check_truncations(buf, len, d_snap_data, &d);
	cr_assert_eq(d.offset, 1 << 20);
	cr_assert_eq(d.data.len, 14);
	/* A length over PROTO_FEED_MAX_CHUNK is refused before the bytes are looked for. */
	uint32_t big = PROTO_FEED_MAX_CHUNK + 1;
	for (int i = 0; i < 4; i++)
		buf[8 + i] = (uint8_t)(big >> (8 * i));
	reseal(buf, len);
	cr_assert_eq(proto_feed_snap_data_decode(guarded(buf, len), len, &d), PROTO_ETOOBIG);
}

/* Three entries: NORMAL, NOOP, NORMAL, chained. */
static size_t make_entries(uint8_t *buf, size_t cap, uint64_t first)
{
	proto_wbuf_t w;
	proto_feed_entries_writer_t b;
	uint64_t h = 42;
	const char *data[3] = {"\x01payload-one", "", "\x01two"};
	uint8_t types[3] = {PROTO_FEED_NORMAL, PROTO_FEED_NOOP, PROTO_FEED_NORMAL};

	proto_wbuf_init(&w, buf, cap);
	proto_feed_entries_begin(&b, &w, first + 10, 1700000000000ull);
	for (int i = 0; i < 3; i++) {
		proto_feed_entry_t e = {.index = first + (uint64_t)i, .term = 2, .type = types[i],
					.data = {(const uint8_t *)data[i], (uint32_t)strlen(data[i])}};
		h = e.hash = proto_feed_hash(h, e.index, e.term, e.type, e.data.p, e.data.len);
		cr_assert_eq(proto_feed_entries_add(&b, &e), 0);
	}
	proto_feed_entries_finish(&b);
	cr_assert_eq(w.err, 0);
	return proto_wbuf_len(&w);
}

Test(proto_feed, entries_round_trip_and_chain_checks)
{
	uint8_t buf[512];
	size_t len = make_entries(buf, sizeof buf, 100);
	proto_feed_entries_reader_t r;
	proto_feed_entry_t e;
	uint64_t h = 42, idx = 100;

	cr_assert_eq(proto_feed_entries_init(&r, guarded(buf, len), len), 0);
	cr_assert_eq(r.count, 3);
	cr_assert_eq(r.commit, 110);
	cr_assert_eq(r.leader_time_ms, 1700000000000ull);
	while (proto_feed_entries_next(&r, &e) == 1) {
		cr_assert_eq(e.index, idx++);
		h = proto_feed_hash(h, e.index, e.term, e.type, e.data.p, e.data.len);
		cr_assert_eq(e.hash, h);
	}
	cr_assert_eq(idx, 103);
	check_truncations(buf, len, d_entries, &r);
}

Test(proto_feed, entries_refuse_gap_dup_type_and_counts)
{
	uint8_t buf[512], bad[512];
	size_t len = make_entries(buf, sizeof buf, 100);
	proto_feed_entries_reader_t r;
	const size_t first = 20;                 /* commit, time, count */
	const size_t e0 = 8 + 8 + 1 + 4 + 12 + 8; /* first entry's size */

	/* Second entry's index rewritten to 100: a duplicate. To 102: a gap. */
	for (uint64_t v = 100; v <= 102; v += 2) {
		memcpy(bad, buf, len);
		for (int i = 0; i < 8; i++)
			bad[first + e0 + (size_t)i] = (uint8_t)(v >> (8 * i));
		reseal(bad, len);
		cr_assert_eq(proto_feed_entries_init(&r, guarded(bad, len), len), PROTO_EBADMSG);
	}
	/* Unknown type on the first entry. */
	memcpy(bad, buf, len);
	bad[first + 16] = 7;
	reseal(bad, len);
	cr_assert_eq(proto_feed_entries_init(&r, guarded(bad, len), len), PROTO_EBADMSG);
	/* Count 0, a count the bytes cannot hold, a count over the max. */
	uint32_t counts[3] = {0, 4, PROTO_FEED_MAX_ENTRIES + 1};
	int want[3] = {PROTO_EBADMSG, PROTO_EBADMSG, PROTO_ETOOBIG};
	for (int k = 0; k < 3; k++) {
		memcpy(bad, buf, len);
		for (int i = 0; i < 4; i++)
			bad[16 + i] = (uint8_t)(counts[k] >> (8 * i));
		reseal(bad, len);
		cr_assert_eq(proto_feed_entries_init(&r, guarded(bad, len), len), want[k]);
	}
	/* Index 0 is never an entry. */
	memcpy(bad, buf, len);
	memset(bad + first, 0, 8);
	reseal(bad, len);
	cr_assert_eq(proto_feed_entries_init(&r, guarded(bad, len), len), PROTO_EBADMSG);
}

Test(proto_feed, writer_refuses_bad_entries_and_is_not_sticky_when_full)
{
	uint8_t buf[80];
	proto_wbuf_t w;
	proto_feed_entries_writer_t b;
	proto_feed_entry_t noop_data = {.index = 1, .type = PROTO_FEED_NOOP, .data = B("x")};
	proto_feed_entry_t big = {.index = 1, .type = PROTO_FEED_NORMAL,
				  .data = {(const uint8_t *)buf, 60}};
	proto_feed_entry_t ok = {.index = 1, .type = PROTO_FEED_NOOP};
	proto_feed_entry_t gap = {.index = 3, .type = PROTO_FEED_NOOP};

	proto_wbuf_init(&w, buf, sizeof buf);
	proto_feed_entries_begin(&b, &w, 1, 1);
	cr_assert_eq(proto_feed_entries_add(&b, &noop_data), PROTO_EBADMSG);
	cr_assert_eq(proto_feed_entries_add(&b, &big), PROTO_ETOOBIG);
	cr_assert_eq(w.err, 0);
	cr_assert_eq(proto_feed_entries_add(&b, &ok), 0);
	cr_assert_eq(proto_feed_entries_add(&b, &gap), PROTO_EBADMSG);
	proto_feed_entries_finish(&b);
	size_t len = proto_wbuf_len(&w);
	proto_feed_entries_reader_t r;
	cr_assert_eq(proto_feed_entries_init(&r, buf, len), 0);
	cr_assert_eq(r.count, 1);
}

Test(proto_feed, hash_covers_every_field)
{
	uint64_t h = proto_feed_hash(1, 2, 3, 0, "abc", 3);

	cr_assert_neq(h, proto_feed_hash(0, 2, 3, 0, "abc", 3));
	cr_assert_neq(h, proto_feed_hash(1, 3, 3, 0, "abc", 3));
	cr_assert_neq(h, proto_feed_hash(1, 2, 4, 0, "abc", 3));
	cr_assert_neq(h, proto_feed_hash(1, 2, 3, 2, "abc", 3));
	cr_assert_neq(h, proto_feed_hash(1, 2, 3, 0, "abd", 3));
	cr_assert_eq(h, proto_feed_hash(1, 2, 3, 0, "abc", 3));
}

Test(proto_feed, seal_catches_a_flipped_bit_anywhere)
{
	uint8_t buf[512], bad[512];
	size_t len = make_entries(buf, sizeof buf, 7);
	proto_feed_entries_reader_t r;

	for (size_t i = 0; i < len; i++)
		for (int bit = 0; bit < 8; bit += 3) {
			memcpy(bad, buf, len);
			bad[i] ^= (uint8_t)(1u << bit);
			cr_assert_neq(proto_feed_entries_init(&r, guarded(bad, len), len), 0,
				      "byte %zu bit %d", i, bit);
		}
}
