/*
 * store_bench: one side of tests/bench/store.sh's comparison per run.
 *
 *   store_bench kv|lmdb DIR N BATCH GETS
 *
 * Both sides put the same N keys (16 hex chars from a fixed seed) with the same 100-byte
 * values, one write txn per BATCH puts, with MDB_NOSYNC and the same initial map size, then
 * do GETS random point reads of those keys, each in its own (renewed) read txn as the
 * gateway does. "kv" goes through kv_apply (one log entry = one BATCH op of BATCH puts) and
 * kv_read_begin/kv_get/kv_read_end; "lmdb" is a bare mdb_put/mdb_get loop. Only the store
 * calls are timed (key and entry generation is not), the same for both. Prints
 *   put_rate <puts/s>
 *   get_rate <reads/s>
 *   bytes_per_key <map bytes in use / N>
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/kv.h"

#define VLEN 100
#define MAP_SIZE (4ull << 30)

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void key_of(uint64_t i, char out[17])
{
	static const char hex[] = "0123456789abcdef";
	uint64_t x = mix(i ^ 0x5eed);
	for (int j = 0; j < 16; j++)
		out[j] = hex[(x >> (j * 4)) & 15];
	out[16] = 0;
}

static void value_of(uint64_t i, uint8_t out[VLEN])
{
	for (int j = 0; j < VLEN; j += 8) {
		uint64_t x = mix(i * 131 + (uint64_t)j);
		memcpy(out + j, &x, VLEN - j < 8 ? (size_t)(VLEN - j) : 8);
	}
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

#define CHECK(x) do { int rc_ = (x); if (rc_) { fprintf(stderr, "%s:%d: %s: %d %s\n", \
	__FILE__, __LINE__, #x, rc_, rc_ < -30000 && rc_ > -30400 ? geokv_strerror(rc_) : mdb_strerror(rc_)); \
	exit(1); } } while (0)

static int run_kv(const char *dir, uint64_t n, uint64_t batch, uint64_t gets)
{
	kv_opts_t o = {.flags = KV_OPEN_NOSYNC, .map_size = MAP_SIZE};
	size_t cap = batch * (VLEN + 40) + 64;
	uint8_t *opbuf = malloc(cap), *ebuf = malloc(cap + 16);
	char (*keys)[17] = malloc(batch * 17);
	uint8_t (*vals)[VLEN] = malloc(batch * VLEN);
	kv_store_t *s;
	kv_result_t res;
	kv_stats_t st;
	double t_put = 0, t0;
	uint64_t idx = 0;

	CHECK(kv_open(&s, dir, &o));
	{
		proto_op_t add = {.op = PROTO_OP_BUCKET_ADD, .bucket = {(const uint8_t *)"bench", 5}};
		proto_wbuf_t w;
		proto_wbuf_init(&w, ebuf, cap + 16);
		CHECK(proto_entry_encode(&w, 1, &add));
		kv_entry_in_t e = {++idx, ebuf, proto_wbuf_len(&w)};
		CHECK(kv_apply(s, &e, 1, &res));
		CHECK(res.status);
	}
	for (uint64_t i = 0; i < n; i += batch) {
		uint64_t m = n - i < batch ? n - i : batch;
		proto_wbuf_t w;
		proto_batch_writer_t bw;
		proto_op_t op = {.op = PROTO_OP_PUT, .bucket = {(const uint8_t *)"bench", 5}};

		proto_wbuf_init(&w, opbuf, cap);
		proto_batch_begin(&bw, &w);
		for (uint64_t j = 0; j < m; j++) {
			key_of(i + j, keys[j]);
			value_of(i + j, vals[j]);
			op.key.p = (const uint8_t *)keys[j];
			op.key.len = 16;
			op.value.p = vals[j];
			op.value.len = VLEN;
			CHECK(proto_batch_add(&bw, &op));
		}
		proto_batch_finish(&bw);
		CHECK(w.err);
		proto_wbuf_t ew;
		proto_wbuf_init(&ew, ebuf, cap + 16);
		CHECK(proto_entry_encode_raw(&ew, 1000 + i, opbuf, proto_wbuf_len(&w)));
		kv_entry_in_t e = {++idx, ebuf, proto_wbuf_len(&ew)};
		t0 = now();
		CHECK(kv_apply(s, &e, 1, &res));
		t_put += now() - t0;
		CHECK(res.status);
	}
	CHECK(kv_stats(s, &st));
	if (st.keys != n) {
		fprintf(stderr, "expected %llu keys, have %llu\n", (unsigned long long)n,
			(unsigned long long)st.keys);
		return 1;
	}

	kv_rtxn_t t = {0};
	proto_rec_t rec;
	char k[17];
	uint64_t sum = 0;
	t0 = now();
	for (uint64_t i = 0; i < gets; i++) {
		key_of(mix(i) % n, k);
		CHECK(kv_read_begin(s, &t));
		CHECK(kv_get(&t, "bench", 5, k, 16, 0, &rec));
		sum += rec.value.p[0];
		kv_read_end(&t);
	}
	double t_get = now() - t0;
	kv_read_close(&t);
	printf("put_rate %.0f\nget_rate %.0f\nbytes_per_key %.1f\nchecksum %llu\n", n / t_put,
	       gets / t_get, (double)st.map_used / n, (unsigned long long)sum);
	kv_close(s);
	free(opbuf);
	free(ebuf);
	free(keys);
	free(vals);
	return 0;
}

static int run_lmdb(const char *dir, uint64_t n, uint64_t batch, uint64_t gets)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_envinfo info;
	MDB_stat ms;
	char (*keys)[17] = malloc(batch * 17);
	uint8_t (*vals)[VLEN] = malloc(batch * VLEN);
	double t_put = 0, t0;

	CHECK(mdb_env_create(&env));
	CHECK(mdb_env_set_mapsize(env, MAP_SIZE));
	CHECK(mdb_env_set_maxdbs(env, 8));
	CHECK(mdb_env_open(env, dir, MDB_NOSYNC | MDB_NOTLS, 0640));
	CHECK(mdb_txn_begin(env, NULL, 0, &txn));
	CHECK(mdb_dbi_open(txn, "bench", MDB_CREATE, &dbi));
	CHECK(mdb_txn_commit(txn));
	for (uint64_t i = 0; i < n; i += batch) {
		uint64_t m = n - i < batch ? n - i : batch;
		for (uint64_t j = 0; j < m; j++) {
			key_of(i + j, keys[j]);
			value_of(i + j, vals[j]);
		}
		t0 = now();
		CHECK(mdb_txn_begin(env, NULL, 0, &txn));
		for (uint64_t j = 0; j < m; j++) {
			MDB_val k = {16, keys[j]}, v = {VLEN, vals[j]};
			CHECK(mdb_put(txn, dbi, &k, &v, 0));
		}
		CHECK(mdb_txn_commit(txn));
		t_put += now() - t0;
	}
	CHECK(mdb_env_info(env, &info));
	CHECK(mdb_env_stat(env, &ms));

	char k[17];
	uint64_t sum = 0;
	txn = NULL;
	t0 = now();
	for (uint64_t i = 0; i < gets; i++) {
		MDB_val kk = {16, k}, v;
		key_of(mix(i) % n, k);
		if (txn)
			CHECK(mdb_txn_renew(txn));
		else
			CHECK(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn));
		CHECK(mdb_get(txn, dbi, &kk, &v));
		sum += ((uint8_t *)v.mv_data)[0];
		mdb_txn_reset(txn);
	}
	double t_get = now() - t0;
	mdb_txn_abort(txn);
	printf("put_rate %.0f\nget_rate %.0f\nbytes_per_key %.1f\nchecksum %llu\n", n / t_put,
	       gets / t_get, (double)(info.me_last_pgno + 1) * ms.ms_psize / n,
	       (unsigned long long)sum);
	mdb_env_close(env);
	free(keys);
	free(vals);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: store_bench kv|lmdb DIR N BATCH GETS\n");
		return 2;
	}
	uint64_t n = strtoull(argv[3], NULL, 10), batch = strtoull(argv[4], NULL, 10);
	uint64_t gets = strtoull(argv[5], NULL, 10);
	if (!n || !batch) {
		fprintf(stderr, "store_bench: N and BATCH must be > 0\n");
		return 2;
	}
	if (!strcmp(argv[1], "kv"))
		return run_kv(argv[2], n, batch, gets);
	if (!strcmp(argv[1], "lmdb"))
		return run_lmdb(argv[2], n, batch, gets);
	fprintf(stderr, "store_bench: unknown mode %s\n", argv[1]);
	return 2;
}
