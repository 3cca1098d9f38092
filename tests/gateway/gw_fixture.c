/*
 * Test and benchmark helper: writes a store and a node-status page the way a node would,
 * through the real store API (kv_apply with proto_entry_encode) and core/nodestat.h.
 *
 *   gw-fixture load DIR BUCKET N [VALUE_BYTES [CONTENT_TYPE]]
 *        bucket (if absent) + keys k0..k<N-1>, values of VALUE_BYTES (default 100) bytes,
 *        in batches of 1000 ops
 *   gw-fixture put DIR BUCKET KEY VALUE     one put; prints the new revision
 *   gw-fixture del DIR BUCKET KEY           delete (tombstone)
 *   gw-fixture rev DIR                      prints the store revision
 *   gw-fixture init DIR                     creates an empty store (revision 0)
 *   gw-fixture node DIR ROLE [LAG_ENTRIES [LAG_MS [CAUGHT_UP]]]
 *        runs as the node's status writer (ROLE leaf|primary): publishes every 50 ms with the
 *        store's revision and a fresh contact time while "fed"; SIGUSR1 = feed stops (FEED
 *        cleared, contact time frozen), SIGUSR2 = feed returns; SIGTERM = clean close.
 *        CAUGHT_UP 0 publishes without KV_NS_CAUGHT_UP (a node still replaying; default 1).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/kv.h"
#include "core/nodestat.h"
#include "proto/proto.h"

static int apply_one(kv_store_t *s, const uint8_t *buf, size_t len, kv_result_t *res)
{
	kv_entry_in_t e = {.index = kv_applied_index(s) + 1, .data = buf, .len = len};
	int rc = kv_apply(s, &e, 1, res);

	if (rc == 0 && res->status != 0)
		rc = res->status;
	return rc;
}

static int do_op(kv_store_t *s, const proto_op_t *op, kv_result_t *res)
{
	static uint8_t buf[1 << 16];
	proto_wbuf_t w;

	proto_wbuf_init(&w, buf, sizeof buf);
	if (proto_entry_encode(&w, (uint64_t)time(NULL) * 1000, op) != 0 || w.err)
		return -EINVAL;
	return apply_one(s, buf, proto_wbuf_len(&w), res);
}

static proto_bytes_t B(const char *s) { return (proto_bytes_t){(const uint8_t *)s, (uint32_t)strlen(s)}; }

static int open_rw(kv_store_t **s, const char *dir)
{
	kv_opts_t o = {.flags = KV_OPEN_NOSYNC};
	int rc = kv_open(s, dir, &o);

	if (rc != 0)
		fprintf(stderr, "gw-fixture: kv_open %s: %s\n", dir, geokv_strerror(rc));
	return rc;
}

static int ensure_bucket(kv_store_t *s, const char *bucket, const char *ctype)
{
	proto_op_t op = {.op = PROTO_OP_BUCKET_ADD, .bucket = B(bucket)};
	kv_result_t res;
	int rc;

	op.cfg.history = 1;
	op.cfg.content_type = B(ctype ? ctype : "");
	rc = do_op(s, &op, &res);
	if (rc == KV_EBUCKETEXISTS)
		rc = 0;
	return rc;
}

static int cmd_load(const char *dir, const char *bucket, long n, long vlen, const char *ctype)
{
	kv_store_t *s;
	uint8_t *buf, *val;
	size_t cap = (size_t)1000 * ((size_t)vlen + 64) + 64;
	int rc;

	if ((rc = open_rw(&s, dir)) != 0)
		return 1;
	if ((rc = ensure_bucket(s, bucket, ctype)) != 0) {
		fprintf(stderr, "gw-fixture: bucket: %s\n", geokv_strerror(rc));
		return 1;
	}
	buf = malloc(cap);
	val = malloc((size_t)vlen + 1);
	for (long i = 0; i < n;) {
		proto_wbuf_t w;
		proto_batch_writer_t bw;
		kv_result_t res;
		proto_wbuf_init(&w, buf, cap);
		proto_put_u8(&w, PROTO_ENTRY_VERSION);
		proto_put_u64(&w, (uint64_t)time(NULL) * 1000);
		proto_batch_begin(&bw, &w);
		for (long j = 0; j < 1000 && i < n; j++, i++) {
			char key[32];
			snprintf(key, sizeof key, "k%ld", i);
			for (long k = 0; k < vlen; k++)
				val[k] = (uint8_t)('a' + (i + k) % 26);
			proto_op_t op = {.op = PROTO_OP_PUT, .bucket = B(bucket), .key = B(key),
					 .value = {val, (uint32_t)vlen}};
			proto_batch_add(&bw, &op);
		}
		proto_batch_finish(&bw);
		if (w.err || (rc = apply_one(s, buf, proto_wbuf_len(&w), &res)) != 0) {
			fprintf(stderr, "gw-fixture: batch: %s\n", geokv_strerror(w.err ? w.err : rc));
			return 1;
		}
	}
	kv_sync(s);
	printf("%" PRIu64 "\n", kv_revision(s));
	kv_close(s);
	free(buf);
	free(val);
	return 0;
}

static volatile sig_atomic_t fed = 1, stop;
static void on_sig(int sig)
{
	if (sig == SIGUSR1)
		fed = 0;
	else if (sig == SIGUSR2)
		fed = 1;
	else
		stop = 1;
}

static int cmd_node(const char *dir, const char *role, uint64_t lag_e, uint64_t lag_ms,
		    bool caught_up)
{
	kv_nodestat_t ns;
	kv_store_t *s;
	kv_opts_t o = {.flags = KV_OPEN_RDONLY};
	uint32_t r = strcmp(role, "primary") == 0 ? PROTO_ROLE_PRIMARY : PROTO_ROLE_LEAF;
	int rc;

	if ((rc = kv_open(&s, dir, &o)) != 0) {
		fprintf(stderr, "gw-fixture: kv_open: %s\n", geokv_strerror(rc));
		return 1;
	}
	if ((rc = kv_nodestat_open_writer(&ns, dir, r, 1)) != 0) {
		fprintf(stderr, "gw-fixture: nodestat: %s\n", geokv_strerror(rc));
		return 1;
	}
	signal(SIGUSR1, on_sig);
	signal(SIGUSR2, on_sig);
	signal(SIGTERM, on_sig);
	signal(SIGINT, on_sig);
	while (!stop) {
		kv_nodestat_data_t *d = &ns.last;
		d->revision = kv_revision(s);
		d->applied = kv_applied_index(s);
		d->commit = d->applied + lag_e;
		d->lag_entries = lag_e;
		d->lag_ms = lag_ms;
		d->flags = (caught_up ? KV_NS_CAUGHT_UP : 0) |
			   (r == PROTO_ROLE_PRIMARY ? KV_NS_LEADER : 0);
		if (fed) {
			d->flags |= KV_NS_FEED;
			d->contact_ms = kv_nodestat_now_ms();
			d->leader_time_ms = d->contact_ms;
		}
		kv_nodestat_publish(&ns, d);
		usleep(50 * 1000);
	}
	kv_nodestat_close(&ns);
	kv_close(s);
	return 0;
}

int main(int argc, char **argv)
{
	kv_store_t *s;
	kv_result_t res;
	int rc;

	if (argc >= 5 && strcmp(argv[1], "load") == 0)
		return cmd_load(argv[2], argv[3], atol(argv[4]), argc > 5 ? atol(argv[5]) : 100,
				argc > 6 ? argv[6] : NULL);
	if (argc >= 4 && strcmp(argv[1], "node") == 0)
		return cmd_node(argv[2], argv[3], argc > 4 ? strtoull(argv[4], NULL, 10) : 0,
				argc > 5 ? strtoull(argv[5], NULL, 10) : 0,
				argc > 6 ? atoi(argv[6]) != 0 : true);
	if (argc == 3 && strcmp(argv[1], "init") == 0) {
		if (open_rw(&s, argv[2]) != 0)
			return 1;
		kv_sync(s);
		kv_close(s);
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "rev") == 0) {
		kv_opts_t o = {.flags = KV_OPEN_RDONLY};
		if ((rc = kv_open(&s, argv[2], &o)) != 0)
			return 1;
		printf("%" PRIu64 "\n", kv_revision(s));
		kv_close(s);
		return 0;
	}
	if ((argc == 6 && strcmp(argv[1], "put") == 0) || (argc == 5 && strcmp(argv[1], "del") == 0)) {
		bool put = argv[1][0] == 'p';
		proto_op_t op = {.op = put ? PROTO_OP_PUT : PROTO_OP_DELETE, .bucket = B(argv[3]),
				 .key = B(argv[4])};
		if (put)
			op.value = B(argv[5]);
		if (open_rw(&s, argv[2]) != 0)
			return 1;
		if (put && (rc = ensure_bucket(s, argv[3], NULL)) != 0) {
			fprintf(stderr, "gw-fixture: bucket: %s\n", geokv_strerror(rc));
			return 1;
		}
		rc = do_op(s, &op, &res);
		if (rc != 0) {
			fprintf(stderr, "gw-fixture: %s: %s\n", argv[1], geokv_strerror(rc));
			return 1;
		}
		kv_sync(s);
		printf("%" PRIu64 "\n", res.rev);
		kv_close(s);
		return 0;
	}
	fprintf(stderr, "usage: see the top of tests/gateway/gw_fixture.c\n");
	return 2;
}
