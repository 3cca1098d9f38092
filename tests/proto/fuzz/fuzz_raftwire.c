/*
 * libFuzzer target for the peer frame decoders (proto/raftwire.h).
 *
 * Input: one selector byte, then the payload. Selector bit 0: 1 = PEER_HELLO, 0 = RAFT.
 * For RAFT, the other bits pick the decoder's limits: 0 (selector 0x00) = roomy limits
 * (FUZZ_CAP entries, FUZZ_MAX_DATA bytes), else cap = bits 1..3 (0..7 entries) and
 * max_data = 16 * bits 4..7 (0..240 bytes), so the limit paths are reached too.
 *
 * Properties checked beyond "no crash, no over-read, no UB":
 *   - whatever a decoder accepts re-encodes to exactly the input payload (the format is
 *     canonical: every byte is a field, no padding, trailing bytes refused), and for RAFT
 *     proto_raft_msg_size() is the payload length and the decoded message obeys the limits
 *     and the documented rules (known type, flags and entry types; conf.n <= RAFT_MAX_NODES;
 *     views inside the input);
 *   - whatever it refuses is refused with PROTO_EBADMSG or PROTO_ETOOBIG;
 *   - limits only ever add PROTO_ETOOBIG: under tight limits a message decodes the same as
 *     under roomy ones, a PROTO_EBADMSG stays one, and a PROTO_ETOOBIG that the roomy
 *     decode accepts really is over a limit.
 * abort() otherwise.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"
#include "proto/raftwire.h"
#include "raft/raft.h"

#define FUZZ_CAP      4096
#define FUZZ_MAX_DATA (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t re[1 << 20];

static void check(int cond)
{
	if (!cond)
		abort();
}

static int refusal(int rc)
{
	return rc == PROTO_EBADMSG || rc == PROTO_ETOOBIG;
}

static int inside(const void *v, size_t n, const uint8_t *p, size_t len)
{
	const uint8_t *b = v;

	if (n == 0)
		return 1;
	return b != NULL && b >= p && n <= len && b - p <= (ptrdiff_t)(len - n);
}

static void reencode_msg(const raft_msg_t *m, const uint8_t *p, size_t len)
{
	proto_wbuf_t w;

	check(proto_raft_msg_size(m) == len);
	proto_wbuf_init(&w, re, sizeof re);
	check(proto_raft_msg_encode(&w, m) == 0);
	check(proto_wbuf_len(&w) == len && memcmp(re, p, len) == 0);
}

static void fuzz_hello(const uint8_t *p, size_t len)
{
	proto_peer_hello_t h;
	proto_wbuf_t w;
	int rc = proto_peer_hello_decode(p, len, &h);

	if (rc != 0) {
		check(refusal(rc));
		return;
	}
	check(h.from != 0 && h.to != 0);
	check(h.cluster.len <= PROTO_MAX_CLUSTER && inside(h.cluster.p, h.cluster.len, p, len));
	check(h.client_addr.len <= PROTO_MAX_ADDR &&
	      inside(h.client_addr.p, h.client_addr.len, p, len));
	check(h.token.len <= PROTO_MAX_TOKEN && inside(h.token.p, h.token.len, p, len));
	proto_wbuf_init(&w, re, sizeof re);
	check(proto_peer_hello_encode(&w, &h) == 0);
	check(proto_wbuf_len(&w) == len && memcmp(re, p, len) == 0);
}

static void check_msg(const raft_msg_t *m, const raft_entry_t *ents, size_t cap,
		      uint32_t max_data, const uint8_t *p, size_t len)
{
	check(m->type > 0 && m->type < RAFT_MSG_TYPE_MAX);
	check((m->flags & ~(uint32_t)(RAFT_MSGF_REJECT | RAFT_MSGF_TRANSFER | RAFT_MSGF_LAST)) ==
	      0);
	check(m->snap.conf.n <= RAFT_MAX_NODES);
	check(m->n_entries <= cap);
	check(m->n_entries ? m->entries == ents : m->entries == NULL);
	for (uint32_t i = 0; i < m->n_entries; i++) {
		check(m->entries[i].type <= RAFT_ENTRY_NOOP);
		check(m->entries[i].len <= max_data);
		check(inside(m->entries[i].data, m->entries[i].len, p, len));
	}
	check(m->len <= max_data && inside(m->data, m->len, p, len));
}

static int over_limits(const raft_msg_t *m, size_t cap, uint32_t max_data)
{
	if (m->n_entries > cap || m->len > max_data)
		return 1;
	for (uint32_t i = 0; i < m->n_entries; i++)
		if (m->entries[i].len > max_data)
			return 1;
	return 0;
}

static void fuzz_raft(uint8_t sel, const uint8_t *p, size_t len)
{
	static raft_entry_t ents[FUZZ_CAP], ents2[FUZZ_CAP];
	raft_msg_t m, m2;
	size_t cap = FUZZ_CAP;
	uint32_t max_data = FUZZ_MAX_DATA;
	int rc, rc2;

	if (sel != 0) {
		cap = (sel >> 1) & 7;
		max_data = 16u * (uint32_t)(sel >> 4);
	}
	rc = proto_raft_msg_decode(p, len, &m, ents, cap, max_data);
	if (rc == 0) {
		check_msg(&m, ents, cap, max_data, p, len);
		reencode_msg(&m, p, len);
	} else {
		check(refusal(rc));
	}
	if (sel == 0)
		return;

	/* The same payload under roomy limits. */
	rc2 = proto_raft_msg_decode(p, len, &m2, ents2, FUZZ_CAP, FUZZ_MAX_DATA);
	if (rc == 0) {
		check(rc2 == 0);
		check(proto_raft_msg_size(&m2) == len);
	} else if (rc == PROTO_EBADMSG) {
		check(rc2 == PROTO_EBADMSG);
	} else if (rc2 == 0) {
		check(over_limits(&m2, cap, max_data));
	}
	if (rc2 == 0) {
		check_msg(&m2, ents2, FUZZ_CAP, FUZZ_MAX_DATA, p, len);
		reencode_msg(&m2, p, len);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t sel;

	if (size < 1 || size - 1 > sizeof re)
		return 0;
	sel = data[0];
	if (sel & 1)
		fuzz_hello(data + 1, size - 1);
	else
		fuzz_raft(sel, data + 1, size - 1);
	return 0;
}
