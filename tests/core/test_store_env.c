/*
 * The store as files and processes: reopen, map growth and KV_EFULL, a full disk, read-only
 * readers in another process, snapshots (round trip, corruption, truncation) and determinism.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/kv.h"
#include "tests/core/store_util.h"

/* A deterministic workload: n entries mixing every op over a few buckets, each entry
 * encoded into ents[i] (malloc'd). Stores fed the same list must end up equal. */
typedef struct workload {
	uint8_t *buf[400];
	kv_entry_in_t e[400];
	size_t n;
} workload_t;

static uint64_t rng_next(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void random_op(proto_op_t *op, uint64_t r, char *key, char *val)
{
	static const uint8_t ops[] = {PROTO_OP_PUT, PROTO_OP_PUT, PROTO_OP_PUT, PROTO_OP_CREATE,
				      PROTO_OP_UPDATE, PROTO_OP_DELETE, PROTO_OP_PURGE};
	static const char *buckets[] = {"alpha", "beta", "gamma"};

	memset(op, 0, sizeof *op);
	snprintf(key, 32, "k.%u", (unsigned)(r % 37));
	snprintf(val, 64, "value-%llu", (unsigned long long)(r >> 20));
	op->op = ops[(r >> 8) % sizeof ops];
	op->bucket = su_b(buckets[(r >> 16) % 3]);
	op->key = su_b(key);
	op->value = su_b(op->op <= PROTO_OP_UPDATE ? val : "");
	op->rev = (r >> 24) % 3 ? 0 : (r >> 30) % 300;
}

/* Mostly single ops, some batches (plain and conditional), and a bucket deleted and
 * re-created midway, over buckets of history 1, 4 and 7 (one with a max age). */
static void workload_build(workload_t *wl, size_t n, uint64_t seed)
{
	static const char *buckets[] = {"alpha", "beta", "gamma"};
	char key[4][32], val[4][64];
	uint8_t tmp[2048];

	wl->n = n;
	for (size_t i = 0; i < n; i++) {
		proto_op_t op = {0};
		uint64_t r = rng_next(&seed);
		wl->buf[i] = malloc(2048);
		if (i < 3 || i == n / 2 + 1) {
			size_t bi = i < 3 ? i : 1;
			op.op = PROTO_OP_BUCKET_ADD;
			op.bucket = su_b(buckets[bi]);
			op.cfg.history = (uint32_t)(1 + bi * 3);
			op.cfg.max_age_ms = bi == 2 ? 5000 : 0;
		} else if (i == n / 2) {
			op.op = PROTO_OP_BUCKET_DEL;
			op.bucket = su_b(buckets[1]);
		} else if (r % 10 == 0) {
			proto_wbuf_t w;
			proto_batch_writer_t bw;
			proto_wbuf_init(&w, tmp, sizeof tmp);
			proto_batch_begin(&bw, &w);
			for (int j = 0; j < 4; j++) {
				random_op(&op, rng_next(&seed), key[j], val[j]);
				if (r % 20 == 0)
					op.op = PROTO_OP_PUT; /* a plain batch */
				cr_assert_eq(proto_batch_add(&bw, &op), 0);
			}
			proto_batch_finish(&bw);
			cr_assert_eq(proto_op_decode(tmp, proto_wbuf_len(&w), &op), 0);
		} else {
			random_op(&op, r, key[0], val[0]);
		}
		wl->e[i].index = i + 1;
		wl->e[i].data = wl->buf[i];
		wl->e[i].len = su_entry(wl->buf[i], 2048, 1000 + i * 10, &op);
	}
}

static void workload_free(workload_t *wl)
{
	for (size_t i = 0; i < wl->n; i++)
		free(wl->buf[i]);
}

/* Apply entries in calls of `group` entries. */
static void workload_apply(kv_store_t *s, const workload_t *wl, size_t group)
{
	kv_result_t res[400];
	for (size_t i = 0; i < wl->n; i += group) {
		size_t n = wl->n - i < group ? wl->n - i : group;
		cr_assert_eq(kv_apply(s, &wl->e[i], n, res), 0);
	}
}

Test(kv_env, reopen_after_close_keeps_everything)
{
	char *dir = su_tmpdir();
	kv_store_t *s;
	workload_t wl;
	uint8_t *snap1, *snap2;
	size_t l1, l2;
	uint64_t rev;

	workload_build(&wl, 300, 1);
	cr_assert_eq(kv_open(&s, dir, NULL), 0);
	workload_apply(s, &wl, 7);
	rev = kv_revision(s);
	snap1 = su_snapshot(s, &l1, NULL);
	kv_close(s);
	cr_assert_eq(kv_open(&s, dir, NULL), 0);
	cr_assert_eq(kv_revision(s), rev);
	cr_assert_eq(kv_applied_index(s), 300);
	snap2 = su_snapshot(s, &l2, NULL);
	cr_assert_eq(l1, l2);
	cr_assert_eq(memcmp(snap1, snap2, l1), 0);
	kv_close(s);
	free(snap1);
	free(snap2);
	workload_free(&wl);
	su_rmdir(dir);
	free(dir);
}

Test(kv_env, same_entries_give_identical_stores_whatever_the_grouping)
{
	static const size_t groups[] = {1, 2, 3, 64, 400};
	uint8_t *first = NULL;
	size_t first_len = 0;
	uint64_t first_rev = 0;
	workload_t wl;

	workload_build(&wl, 400, 42);
	for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++) {
		char *d = su_tmpdir();
		kv_store_t *s;
		uint8_t *snap;
		size_t len;

		cr_assert_eq(kv_open(&s, d, NULL), 0);
		workload_apply(s, &wl, groups[g]);
		snap = su_snapshot(s, &len, NULL);
		if (!first) {
			first = snap;
			first_len = len;
			first_rev = kv_revision(s);
			cr_assert_gt(first_rev, 150, "the workload did apply things");
		} else {
			cr_assert_eq(kv_revision(s), first_rev, "group %zu", groups[g]);
			cr_assert_eq(len, first_len, "group %zu", groups[g]);
			cr_assert_eq(memcmp(snap, first, len), 0, "the logical content is byte-identical "
				     "(group %zu)", groups[g]);
			free(snap);
		}
		kv_close(s);
		su_rmdir(d);
		free(d);
	}
	free(first);
	workload_free(&wl);
}

/* ---- snapshots ------------------------------------------------------------------------- */

Test(kv_env, snapshot_round_trip_gives_an_equal_store)
{
	char *d1 = su_tmpdir(), *d2 = su_tmpdir();
	kv_store_t *s1, *s2;
	workload_t wl;
	kv_snap_meta_t m1, m2;
	uint8_t *a, *b;
	size_t la, lb;
	char v[64], v2[64];

	workload_build(&wl, 300, 7);
	cr_assert_eq(kv_open(&s1, d1, NULL), 0);
	workload_apply(s1, &wl, 10);
	a = su_snapshot(s1, &la, &m1);
	cr_assert_eq(m1.applied, 300);
	cr_assert_eq(m1.revision, kv_revision(s1));
	rmdir(d2); /* install creates it */
	cr_assert_eq(su_install(d2, a, la, &m2), 0);
	cr_assert_eq(m2.applied, m1.applied);
	cr_assert_eq(m2.revision, m1.revision);
	cr_assert_eq(m2.records, m1.records);
	cr_assert_eq(kv_open(&s2, d2, NULL), 0);
	cr_assert_eq(kv_revision(s2), m1.revision);
	cr_assert_eq(kv_applied_index(s2), 300);
	b = su_snapshot(s2, &lb, NULL);
	cr_assert_eq(la, lb);
	cr_assert_eq(memcmp(a, b, la), 0);
	for (int i = 0; i < 37; i++) {
		char k[16];
		snprintf(k, sizeof k, "k.%d", i);
		int r1 = su_get(s1, "alpha", k, 0, v, sizeof v, NULL);
		int r2 = su_get(s2, "alpha", k, 0, v2, sizeof v2, NULL);
		cr_assert_eq(r1, r2);
		if (r1 == 0)
			cr_assert_str_eq(v, v2);
	}
	/* The installed store keeps applying where the original left off. */
	cr_assert_eq(su_put(s2, "alpha", "after", "x", NULL), 0);
	cr_assert_eq(kv_revision(s2), m1.revision + 1);
	kv_close(s1);
	kv_close(s2);
	free(a);
	free(b);
	workload_free(&wl);
	su_rmdir(d1);
	su_rmdir(d2);
	free(d1);
	free(d2);
}

static bool dir_has_store(const char *dir)
{
	kv_store_t *s;
	kv_opts_t o = {.flags = KV_OPEN_RDONLY};
	if (kv_open(&s, dir, &o) != 0)
		return false;
	kv_close(s);
	return true;
}

Test(kv_env, corrupted_or_truncated_snapshot_is_refused_and_leaves_no_store)
{
	char *d1 = su_tmpdir(), *base = su_tmpdir(), d2[512];
	kv_store_t *s1;
	workload_t wl;
	uint8_t *a, *bad;
	size_t la;
	int cases = 0;

	workload_build(&wl, 200, 9);
	cr_assert_eq(kv_open(&s1, d1, NULL), 0);
	workload_apply(s1, &wl, 50);
	a = su_snapshot(s1, &la, NULL);
	bad = malloc(la);
	/* One flipped bit anywhere: header, records, hashes, trailer. */
	for (size_t off = 0; off < la; off += (off < 64 || off > la - 64) ? 1 : 97) {
		memcpy(bad, a, la);
		bad[off] ^= 0x10;
		snprintf(d2, sizeof d2, "%s/c%zu", base, off);
		cr_assert_eq(su_install(d2, bad, la, NULL), KV_ECORRUPT, "flip at %zu", off);
		cr_assert_not(dir_has_store(d2));
		cases++;
	}
	/* Every truncation near the ends and a spread in between. */
	for (size_t len = 0; len < la; len += (len < 64 || len > la - 64) ? 1 : 113) {
		snprintf(d2, sizeof d2, "%s/t%zu", base, len);
		cr_assert_eq(su_install(d2, a, len, NULL), KV_ECORRUPT, "truncated at %zu", len);
		cr_assert_not(dir_has_store(d2));
		struct stat st;
		cr_assert_neq(stat(d2, &st), 0, "the directory install created is removed");
		cases++;
	}
	cr_assert_gt(cases, 100);
	/* Installing into a non-empty directory is refused before anything is read. */
	cr_assert_eq(su_install(d1, a, la, NULL), -ENOTEMPTY);
	kv_close(s1);
	free(a);
	free(bad);
	workload_free(&wl);
	su_rmdir(d1);
	su_rmdir(base);
	free(d1);
	free(base);
}

/* ---- map growth and full stores -------------------------------------------------------- */

static int put_big(kv_store_t *s, int i, size_t vlen)
{
	static char v[70000];
	char k[32];

	memset(v, 'a' + i % 26, vlen);
	v[vlen] = 0;
	snprintf(k, sizeof k, "big.%d", i);
	return su_put(s, "b", k, v, NULL);
}

Test(kv_env, map_grows_on_demand_up_to_map_max)
{
	char *dir = su_tmpdir();
	kv_store_t *s;
	kv_opts_t o = {.map_size = 256 << 10, .map_max = 16 << 20};
	kv_stats_t st;

	cr_assert_eq(kv_open(&s, dir, &o), 0);
	cr_assert_eq(su_bucket_add(s, "b", 0, 0), 0);
	for (int i = 0; i < 100; i++)
		cr_assert_eq(put_big(s, i, 50000), 0, "put %d", i);
	cr_assert_eq(kv_stats(s, &st), 0);
	cr_assert_gt(st.map_size, 256 << 10);
	cr_assert_leq(st.map_size, 16 << 20);
	cr_assert_eq(st.keys, 100);
	kv_close(s);
	su_rmdir(dir);
	free(dir);
}

Test(kv_env, full_store_says_efull_loses_nothing_and_keeps_serving)
{
	char *dir = su_tmpdir();
	kv_store_t *s;
	kv_opts_t o = {.map_size = 256 << 10, .map_max = 1 << 20};
	int i, rc = 0;
	uint64_t rev, idx;
	char v[16];

	cr_assert_eq(kv_open(&s, dir, &o), 0);
	cr_assert_eq(su_bucket_add(s, "b", 0, 0), 0);
	for (i = 0; i < 1000 && (rc = put_big(s, i, 30000)) == 0; i++)
		;
	cr_assert_eq(rc, KV_EFULL, "after %d puts", i);
	cr_assert_gt(i, 5);
	rev = kv_revision(s);
	idx = kv_applied_index(s);
	cr_assert_eq(put_big(s, 5000, 30000), KV_EFULL, "still full");
	cr_assert_eq(kv_applied_index(s), idx, "a refused call applies nothing");
	cr_assert_eq(su_get(s, "b", "big.0", 0, v, sizeof v, NULL), 0, "reads still work");
	cr_assert_eq(v[0], 'a');
	cr_assert_eq(su_put(s, "b", "small", "x", NULL), 0, "a small write may still fit");
	kv_close(s);
	cr_assert_eq(kv_open(&s, dir, &o), 0);
	cr_assert_eq(kv_revision(s), rev + 1);
	for (int j = 0; j < i; j++) {
		char k[32];
		snprintf(k, sizeof k, "big.%d", j);
		cr_assert_eq(su_get(s, "b", k, 0, NULL, 0, NULL), 0);
	}
	kv_close(s);
	su_rmdir(dir);
	free(dir);
}

Test(kv_env, disk_full_says_efull)
{
	char *dir = su_tmpdir();
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* A file size limit stands in for a full disk: LMDB's writes fail with EFBIG. */
		kv_store_t *s;
		struct rlimit rl = {4 << 20, 4 << 20};
		int i, rc = 0;

		signal(SIGXFSZ, SIG_IGN);
		if (kv_open(&s, dir, NULL) || su_bucket_add(s, "b", 0, 0))
			_exit(2);
		setrlimit(RLIMIT_FSIZE, &rl);
		for (i = 0; i < 1000 && (rc = put_big(s, i, 60000)) == 0; i++)
			;
		if (rc != KV_EFULL) {
			fprintf(stderr, "disk full: got %d (%s) after %d puts\n", rc, geokv_strerror(rc), i);
			_exit(3);
		}
		if (su_get(s, "b", "big.0", 0, NULL, 0, NULL) != 0)
			_exit(4);
		kv_close(s);
		_exit(0);
	}
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st));
	cr_assert_eq(WEXITSTATUS(st), 0, "child status %d", WEXITSTATUS(st));
	su_rmdir(dir);
	free(dir);
}

/* ---- processes ------------------------------------------------------------------------ */

Test(kv_env, second_process_reads_read_only_while_one_writes_and_the_map_grows)
{
	char *dir = su_tmpdir();
	kv_store_t *s;
	kv_opts_t o = {.map_size = 256 << 10, .map_max = 64 << 20};
	int pipefd[2];
	pid_t pid;

	cr_assert_eq(kv_open(&s, dir, &o), 0);
	cr_assert_eq(su_bucket_add(s, "b", 0, 0), 0);
	cr_assert_eq(su_put(s, "b", "counter", "0", NULL), 0);
	cr_assert_eq(pipe(pipefd), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* Reader: revisions never go backwards, every read is consistent, and the
		 * writer's map growth is adopted on the way. */
		kv_store_t *r;
		kv_opts_t ro = {.flags = KV_OPEN_RDONLY};
		kv_rtxn_t t = {0};
		uint64_t last = 0, reads = 0;
		char c;

		close(pipefd[1]);
		if (kv_open(&r, dir, &ro))
			_exit(2);
		if (kv_apply(r, NULL, 1, NULL) != KV_EREADONLY)
			_exit(3);
		for (;;) {
			proto_rec_t rec;
			int rc;
			if ((rc = kv_read_begin(r, &t)))
				_exit(4);
			uint64_t rev = kv_txn_revision(&t);
			if (rev < last)
				_exit(5);
			last = rev;
			if ((rc = kv_get(&t, "b", 1, "counter", 7, 0, &rec)) != 0)
				_exit(6);
			if (rec.rev > rev)
				_exit(7);
			kv_read_end(&t);
			reads++;
			/* stop once the writer closed the pipe */
			struct timeval tv = {0, 0};
			fd_set fds;
			FD_ZERO(&fds);
			FD_SET(pipefd[0], &fds);
			if (select(pipefd[0] + 1, &fds, NULL, NULL, &tv) > 0 && read(pipefd[0], &c, 1) == 0)
				break;
		}
		if (kv_revision(r) < 200 || reads < 10)
			_exit(8);
		kv_read_close(&t);
		kv_close(r);
		_exit(0);
	}
	close(pipefd[0]);
	for (int i = 0; i < 200; i++) {
		char v[16];
		cr_assert_eq(su_put(s, "b", "counter", (snprintf(v, sizeof v, "%d", i), v), NULL), 0);
		if (i % 10 == 0)
			cr_assert_eq(put_big(s, i, 60000), 0);
	}
	kv_stats_t st;
	cr_assert_eq(kv_stats(s, &st), 0);
	cr_assert_gt(st.map_size, 256 << 10, "the map grew while the reader ran");
	close(pipefd[1]);
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	cr_assert_eq(WEXITSTATUS(status), 0, "reader exit %d", WEXITSTATUS(status));
	kv_close(s);
	su_rmdir(dir);
	free(dir);
}

Test(kv_env, read_only_open_of_a_missing_or_foreign_directory_fails)
{
	char *dir = su_tmpdir();
	kv_store_t *s;
	kv_opts_t ro = {.flags = KV_OPEN_RDONLY};
	char path[512];

	snprintf(path, sizeof path, "%s/none", dir);
	cr_assert_neq(kv_open(&s, path, &ro), 0);
	cr_assert_neq(kv_open(&s, dir, &ro), 0);
	su_rmdir(dir);
	free(dir);
}
