/*
 * libFuzzer target for the leaf feed decoders (proto/feed.h).
 *
 * Input: one selector byte (low bits mod 6: START, SNAP, SNAP_DATA, ENTRIES, HB, ACK; bit 7:
 * append a valid seal, so the fuzzer reaches the decoders behind it), then the payload. Beyond "no crash, no over-read, no UB": whatever a decoder accepts re-encodes to
 * exactly the input (the format is canonical), FEED_ENTRIES yields exactly `count`
 * consecutive entries with views inside the input, and refusals are PROTO_EBADMSG or
 * PROTO_ETOOBIG. abort() otherwise.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/feed.h"
#include "proto/proto.h"

#include <xxhash.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t re[1 << 21];
static uint8_t sealed[1 << 21];

static void check(int cond)
{
	if (!cond)
		abort();
}

static void same(const proto_wbuf_t *w, const uint8_t *p, size_t len)
{
	check(w->err == 0 && proto_wbuf_len(w) == len && memcmp(re, p, len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	proto_wbuf_t w;
	const uint8_t *p;
	size_t len;
	int rc;

	if (size < 1)
		return 0;
	p = data + 1;
	len = size - 1;
	if ((data[0] & 0x80) && len + 8 <= sizeof sealed) {
		uint64_t h = XXH64(p, len, PROTO_FEED_SEAL_SEED);
		memcpy(sealed, p, len);
		for (int i = 0; i < 8; i++)
			sealed[len + (size_t)i] = (uint8_t)(h >> (8 * i));
		p = sealed;
		len += 8;
	}
	proto_wbuf_init(&w, re, sizeof re);
	switch ((data[0] & 0x7f) % 6) {
	case 0: {
		proto_feed_start_t m;
		if ((rc = proto_feed_start_decode(p, len, &m)) == 0) {
			check(proto_feed_start_encode(&w, &m) == 0);
			same(&w, p, len);
		}
		break;
	}
	case 1: {
		proto_feed_snap_t m;
		if ((rc = proto_feed_snap_decode(p, len, &m)) == 0) {
			check(proto_feed_snap_encode(&w, &m) == 0);
			same(&w, p, len);
		}
		break;
	}
	case 2: {
		proto_feed_snap_data_t m;
		if ((rc = proto_feed_snap_data_decode(p, len, &m)) == 0) {
			check(m.data.len <= PROTO_FEED_MAX_CHUNK);
			check(proto_feed_snap_data_encode(&w, &m) == 0);
			same(&w, p, len);
		}
		break;
	}
	case 3: {
		proto_feed_entries_reader_t r;
		proto_feed_entries_writer_t b;
		proto_feed_entry_t e;
		uint32_t n = 0;
		uint64_t last = 0;
		if ((rc = proto_feed_entries_init(&r, p, len)) == 0) {
			check(r.count >= 1 && r.count <= PROTO_FEED_MAX_ENTRIES);
			proto_feed_entries_begin(&b, &w, r.commit, r.leader_time_ms);
			while (proto_feed_entries_next(&r, &e) == 1) {
				check(e.data.len == 0 || (e.data.p >= p && e.data.p + e.data.len <= p + len));
				check(n == 0 || e.index == last + 1);
				last = e.index;
				n++;
				check(proto_feed_entries_add(&b, &e) == 0);
			}
			check(n == r.count);
			proto_feed_entries_finish(&b);
			same(&w, p, len);
		}
		break;
	}
	case 4: {
		proto_feed_hb_t m;
		if ((rc = proto_feed_hb_decode(p, len, &m)) == 0) {
			check(proto_feed_hb_encode(&w, &m) == 0);
			same(&w, p, len);
		}
		break;
	}
	default: {
		proto_feed_ack_t m;
		if ((rc = proto_feed_ack_decode(p, len, &m)) == 0) {
			check(proto_feed_ack_encode(&w, &m) == 0);
			same(&w, p, len);
		}
		break;
	}
	}
	check(rc == 0 || rc == PROTO_EBADMSG || rc == PROTO_ETOOBIG);
	return 0;
}
