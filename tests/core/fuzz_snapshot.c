/*
 * libFuzzer target for kv_snapshot_install, the decoder a leaf runs on a snapshot streamed
 * from a primary.
 *
 * Every chunk of the stream carries a header check and an XXH64 of its payload, so raw random
 * bytes would be refused at the first chunk and never reach the record decoder. This target
 * therefore frames the fuzzer's bytes itself, with correct checksums:
 *
 *   input = mode byte, then chunks of: u8 type, u16 len (LE), len payload bytes
 *
 * mode bit 0 set: the input after the mode byte is fed raw instead (header and checksum
 * validation); bit 1: the stream is handed over in small reads (partial-read paths).
 * A successful install is opened and read back in full: whatever a stream with valid
 * checksums installs must be readable without crashing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/kv.h"

typedef struct feed {
	const uint8_t *p;
	size_t len, off, step;
} feed_t;

static long feed_read(void *ctx, void *buf, size_t cap)
{
	feed_t *f = ctx;
	size_t n = f->len - f->off;
	if (n > cap)
		n = cap;
	if (f->step && n > f->step)
		n = f->step;
	memcpy(buf, f->p + f->off, n);
	f->off += n;
	return (long)n;
}

static void le32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void le64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

/* Frame the fuzzer's chunk specs into a well-checksummed stream. Returns its length. */
static size_t frame(const uint8_t *in, size_t n, uint8_t *out, size_t cap)
{
	size_t o = 0;
	uint64_t seq = 0;
	while (n >= 3) {
		uint32_t type = in[0], len = (uint32_t)in[1] | (uint32_t)in[2] << 8;
		in += 3, n -= 3;
		if (len > n)
			len = (uint32_t)n;
		if (o + 24 + len + 8 > cap)
			break;
		le32(out + o, 0x31534b47u);
		le32(out + o + 4, type);
		le64(out + o + 8, seq);
		le32(out + o + 16, len);
		le32(out + o + 20, (uint32_t)XXH64(out + o, 20, 0));
		memcpy(out + o + 24, in, len);
		le64(out + o + 24 + len, XXH64(in, len, seq));
		o += 24 + (size_t)len + 8;
		in += len, n -= len, seq++;
	}
	return o;
}

static int count_key(void *ctx, const proto_bytes_t *key) { (void)key; ++*(size_t *)ctx; return 0; }

static int read_bucket(void *ctx, const proto_bucket_info_t *b)
{
	kv_rtxn_t *t = ctx;
	size_t keys = 0;
	bool more = false;
	proto_rec_t rec;
	kv_keys(t, b->name.p, b->name.len, "", 0, "", 0, 1000, count_key, &keys, &more);
	kv_get(t, b->name.p, b->name.len, "a", 1, 0, &rec);
	return 0;
}

static char dir[64];
static void rm_store(void)
{
	char p[96];
	snprintf(p, sizeof p, "%s/data.mdb", dir);
	unlink(p);
	snprintf(p, sizeof p, "%s/lock.mdb", dir);
	unlink(p);
	rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t stream[1 << 17];
	kv_opts_t opts = {.map_size = 8u << 20, .map_max = 64u << 20};
	kv_snap_meta_t meta;
	feed_t f = {0};

	if (size < 1 || size > 60000)
		return 0;
	if (!dir[0])
		snprintf(dir, sizeof dir, "/tmp/geokv-fuzz-snap.%d", (int)getpid());
	rm_store();
	if (data[0] & 1) {
		f.p = data + 1;
		f.len = size - 1;
	} else {
		f.p = stream;
		f.len = frame(data + 1, size - 1, stream, sizeof stream);
	}
	f.step = (data[0] & 2) ? 7 : 0;

	if (kv_snapshot_install(dir, &opts, feed_read, &f, &meta) == 0) {
		kv_store_t *s;
		if (kv_open(&s, dir, &(kv_opts_t){.flags = KV_OPEN_RDONLY}) == 0) {
			kv_rtxn_t t = {0};
			bool more;
			if (kv_read_begin(s, &t) == 0) {
				kv_buckets(&t, "", 0, 100, read_bucket, &t, &more);
				kv_read_end(&t);
			}
			kv_read_close(&t);
			kv_close(s);
		}
	}
	rm_store();
	return 0;
}
