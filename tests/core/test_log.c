/*
 * Unit tests for core/log.c, the primary's raft/ LMDB environment: what it stores survives a
 * reopen, what it refuses (gaps, corruption) it refuses with the documented code, and its raft
 * storage reads (entries, term, first/last) agree with compaction and truncation.
 * (Registered from tests/integration/meson.build, which the log's owner maintains.)
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "proto/errors.h"
#include "proto/log.h"

static char dir[256];

static void setup(void)
{
	snprintf(dir, sizeof dir, "/tmp/geokv-test-log-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	/* The corruption tests log ERROR lines on purpose; keep them (they document the text). */
}

static void teardown(void)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

static kv_log_t *open_log(void)
{
	kv_log_t *l;
	kv_log_opts_t o = {.map_size = 64u << 20};
	cr_assert_eq(kv_log_open(&l, dir, &o), 0);
	return l;
}

/* Append entries lo..hi with payload "entry-<i>" and the given term. */
static void append_range(kv_log_t *l, uint64_t lo, uint64_t hi, uint64_t term)
{
	static char bufs[64][32];
	kv_log_entry_t e[64];
	size_t n = 0;

	cr_assert(hi - lo + 1 <= 64);
	for (uint64_t i = lo; i <= hi; i++, n++) {
		int len = snprintf(bufs[n], sizeof bufs[n], "entry-%llu", (unsigned long long)i);
		e[n] = (kv_log_entry_t){.index = i, .term = term, .type = KV_LOG_NORMAL,
					.data = (const uint8_t *)bufs[n], .len = (size_t)len};
	}
	cr_assert_eq(kv_log_append(l, e, n, NULL), 0);
}

static void expect_entry(kv_log_t *l, uint64_t index, uint64_t term)
{
	kv_log_rtxn_t t = {0};
	kv_log_entry_t e;
	char want[32];
	int len = snprintf(want, sizeof want, "entry-%llu", (unsigned long long)index);

	cr_assert_eq(kv_log_read_begin(l, &t), 0);
	cr_assert_eq(kv_log_get(&t, index, &e), 0, "index %llu", (unsigned long long)index);
	cr_expect_eq(e.index, index);
	cr_expect_eq(e.term, term);
	cr_expect_eq(e.len, (size_t)len);
	cr_expect_eq(memcmp(e.data, want, e.len), 0);
	kv_log_read_close(&t);
}

/* Overwrite the stored value of `index` through the raw LMDB env (simulates bit rot). */
static void tamper(kv_log_t *l, uint64_t index, int how)
{
	MDB_env *env = kv_log_env(l);
	MDB_txn *txn;
	MDB_dbi dbi;
	uint8_t kb[8], buf[256];
	MDB_val k = {8, kb}, v;

	for (int i = 0; i < 8; i++)
		kb[i] = (uint8_t)(index >> (56 - 8 * i));
	cr_assert_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, "entries", 0, &dbi), 0);
	cr_assert_eq(mdb_get(txn, dbi, &k, &v), 0);
	cr_assert(v.mv_size <= sizeof buf);
	memcpy(buf, v.mv_data, v.mv_size);
	if (how == 0)
		buf[v.mv_size - 1] ^= 0x01; /* one flipped bit in the data */
	else if (how == 1)
		v.mv_size -= 3;             /* truncated value */
	else
		buf[9] ^= 0x80;             /* flipped bit in the term */
	v.mv_data = buf;
	cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
}

TestSuite(core_log, .init = setup, .fini = teardown);

Test(core_log, fresh_log_is_empty)
{
	kv_log_t *l = open_log();
	kv_log_hard_t hs;
	kv_log_snap_t sn;

	cr_expect_eq(kv_log_first_index(l), 1);
	cr_expect_eq(kv_log_last_index(l), 0);
	kv_log_hard(l, &hs);
	kv_log_snap(l, &sn);
	cr_expect_eq(hs.term + hs.vote + hs.commit, 0);
	cr_expect_eq(sn.index + sn.term, 0);
	kv_log_close(l);
}

Test(core_log, entries_and_hard_state_survive_reopen)
{
	kv_log_t *l = open_log();
	kv_log_hard_t hs = {.term = 3, .vote = 2, .commit = 7}, got;

	append_range(l, 1, 10, 3);
	cr_assert_eq(kv_log_set_hard(l, &hs), 0);
	cr_assert_eq(kv_log_sync(l), 0);
	kv_log_close(l);

	l = open_log();
	cr_expect_eq(kv_log_first_index(l), 1);
	cr_expect_eq(kv_log_last_index(l), 10);
	kv_log_hard(l, &got);
	cr_expect_eq(got.term, 3);
	cr_expect_eq(got.vote, 2);
	cr_expect_eq(got.commit, 7);
	for (uint64_t i = 1; i <= 10; i++)
		expect_entry(l, i, 3);
	kv_log_close(l);
}

Test(core_log, append_with_a_gap_is_refused)
{
	kv_log_t *l = open_log();
	kv_log_entry_t e = {.index = 3, .term = 1, .data = (const uint8_t *)"x", .len = 1};

	cr_expect_eq(kv_log_append(l, &e, 1, NULL), -EINVAL);
	e.index = 0;
	cr_expect_eq(kv_log_append(l, &e, 1, NULL), -EINVAL);
	append_range(l, 1, 2, 1);
	kv_log_entry_t two[2] = {{.index = 3, .term = 1}, {.index = 5, .term = 1}};
	cr_expect_eq(kv_log_append(l, two, 2, NULL), -EINVAL);
	cr_expect_eq(kv_log_last_index(l), 2);
	kv_log_close(l);
}

static int collect(void *ctx, const kv_log_entry_t *e)
{
	uint64_t *seen = ctx;
	cr_expect_eq(e->index, seen[0] + 1);
	seen[0] = e->index;
	seen[1]++;
	return 0;
}

Test(core_log, entries_range_in_order_with_byte_limit)
{
	kv_log_t *l = open_log();
	kv_log_rtxn_t t = {0};
	uint64_t seen[2] = {4, 0}, next;

	append_range(l, 1, 20, 1);
	cr_assert_eq(kv_log_read_begin(l, &t), 0);
	cr_expect_eq(kv_log_entries(&t, 5, 15, 0, collect, seen, &next), 0);
	cr_expect_eq(seen[1], 10);
	cr_expect_eq(next, 15);
	/* "entry-N" is 7 or 8 bytes: a 20-byte limit yields 2 entries, a 1-byte limit still 1. */
	seen[0] = 0, seen[1] = 0;
	cr_expect_eq(kv_log_entries(&t, 1, 21, 20, collect, seen, &next), 0);
	cr_expect_eq(seen[1], 2);
	cr_expect_eq(next, 3);
	seen[0] = 9, seen[1] = 0;
	cr_expect_eq(kv_log_entries(&t, 10, 21, 1, collect, seen, &next), 0);
	cr_expect_eq(seen[1], 1);
	cr_expect_eq(kv_log_entries(&t, 10, 22, 0, collect, seen, NULL), -ERANGE);
	cr_expect_eq(kv_log_entries(&t, 11, 10, 0, collect, seen, NULL), -ERANGE);
	kv_log_read_end(&t);
	/* The rtxn is reusable after end. */
	cr_assert_eq(kv_log_read_begin(l, &t), 0);
	uint64_t term;
	cr_expect_eq(kv_log_term(&t, 20, &term), 0);
	cr_expect_eq(term, 1);
	cr_expect_eq(kv_log_term(&t, 21, &term), -ERANGE);
	cr_expect_eq(kv_log_term(&t, 0, &term), 0);
	cr_expect_eq(term, 0);
	kv_log_read_close(&t);
	kv_log_close(l);
}

Test(core_log, flipped_bit_is_refused_as_corrupt)
{
	kv_log_t *l = open_log();
	kv_log_rtxn_t t = {0};
	kv_log_entry_t e;
	uint64_t seen[2] = {0, 0}, next;

	append_range(l, 1, 5, 1);
	tamper(l, 3, 0);
	cr_assert_eq(kv_log_read_begin(l, &t), 0);
	cr_expect_eq(kv_log_get(&t, 3, &e), KV_ECORRUPT);
	cr_expect_eq(kv_log_get(&t, 2, &e), 0);
	/* Entries before the bad one are delivered, the bad one never is. */
	cr_expect_eq(kv_log_entries(&t, 1, 6, 0, collect, seen, &next), KV_ECORRUPT);
	cr_expect_eq(seen[1], 2);
	cr_expect_eq(next, 3);
	kv_log_read_close(&t);
	kv_log_close(l);
}

Test(core_log, truncated_value_and_bad_term_are_refused)
{
	kv_log_t *l = open_log();
	kv_log_rtxn_t t = {0};
	kv_log_entry_t e;
	uint64_t term;

	append_range(l, 1, 5, 1);
	tamper(l, 4, 1);
	tamper(l, 5, 2);
	cr_assert_eq(kv_log_read_begin(l, &t), 0);
	cr_expect_eq(kv_log_get(&t, 4, &e), KV_ECORRUPT);
	cr_expect_eq(kv_log_term(&t, 5, &term), KV_ECORRUPT);
	kv_log_read_close(&t);
	kv_log_close(l);
}

Test(core_log, truncate_and_conflicting_append_replace_the_suffix)
{
	kv_log_t *l = open_log();

	append_range(l, 1, 10, 1);
	cr_assert_eq(kv_log_truncate(l, 8), 0);
	cr_expect_eq(kv_log_last_index(l), 7);
	cr_expect_eq(kv_log_truncate(l, 100), 0);
	cr_expect_eq(kv_log_last_index(l), 7);
	/* A raft conflict: new leader's entries from 5 on, term 2. */
	append_range(l, 5, 9, 2);
	cr_expect_eq(kv_log_last_index(l), 9);
	expect_entry(l, 4, 1);
	expect_entry(l, 5, 2);
	expect_entry(l, 9, 2);
	kv_log_close(l);
	l = open_log();
	cr_expect_eq(kv_log_last_index(l), 9);
	expect_entry(l, 6, 2);
	kv_log_close(l);
}

Test(core_log, compaction_moves_first_and_keeps_the_term)
{
	kv_log_t *l = open_log();
	kv_log_rtxn_t t = {0};
	kv_log_entry_t e;
	kv_log_snap_t sn;
	uint64_t term, seen[2] = {0, 0};

	append_range(l, 1, 5, 1);
	append_range(l, 6, 10, 2);
	cr_assert_eq(kv_log_compact(l, 6), 0);
	cr_expect_eq(kv_log_first_index(l), 7);
	cr_expect_eq(kv_log_last_index(l), 10);
	kv_log_snap(l, &sn);
	cr_expect_eq(sn.index, 6);
	cr_expect_eq(sn.term, 2);
	cr_expect_eq(kv_log_compact(l, 3), 0); /* behind: no-op */
	cr_expect_eq(kv_log_compact(l, 11), -ERANGE);
	cr_assert_eq(kv_log_read_begin(l, &t), 0);
	cr_expect_eq(kv_log_get(&t, 6, &e), KV_ENOTFOUND);
	cr_expect_eq(kv_log_term(&t, 6, &term), 0);
	cr_expect_eq(term, 2);
	cr_expect_eq(kv_log_term(&t, 5, &term), KV_ENOTFOUND);
	cr_expect_eq(kv_log_entries(&t, 6, 11, 0, collect, seen, NULL), KV_ENOTFOUND);
	kv_log_read_close(&t);
	cr_expect_eq(kv_log_truncate(l, 6), -EINVAL);
	kv_log_close(l);

	l = open_log();
	cr_expect_eq(kv_log_first_index(l), 7);
	cr_expect_eq(kv_log_last_index(l), 10);
	/* Compact everything: the log is empty but continues after the snapshot. */
	cr_assert_eq(kv_log_compact(l, 10), 0);
	cr_expect_eq(kv_log_first_index(l), 11);
	cr_expect_eq(kv_log_last_index(l), 10);
	append_range(l, 11, 12, 3);
	expect_entry(l, 12, 3);
	kv_log_close(l);
}

Test(core_log, reset_discards_the_log_after_a_snapshot)
{
	kv_log_t *l = open_log();
	kv_log_snap_t sn = {.index = 100, .term = 4};

	append_range(l, 1, 5, 1);
	cr_assert_eq(kv_log_reset(l, &sn), 0);
	cr_expect_eq(kv_log_first_index(l), 101);
	cr_expect_eq(kv_log_last_index(l), 100);
	append_range(l, 101, 101, 4);
	kv_log_close(l);
	l = open_log();
	cr_expect_eq(kv_log_first_index(l), 101);
	cr_expect_eq(kv_log_last_index(l), 101);
	kv_log_close(l);
}

Test(core_log, corrupt_hard_state_refuses_to_open)
{
	kv_log_t *l = open_log();
	kv_log_hard_t hs = {.term = 9, .vote = 1, .commit = 0};
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = {4, "hard"}, v;
	uint8_t buf[32];

	cr_assert_eq(kv_log_set_hard(l, &hs), 0);
	cr_assert_eq(mdb_txn_begin(kv_log_env(l), NULL, 0, &txn), 0);
	cr_assert_eq(mdb_dbi_open(txn, "meta", 0, &dbi), 0);
	cr_assert_eq(mdb_get(txn, dbi, &k, &v), 0);
	memcpy(buf, v.mv_data, sizeof buf);
	buf[0] ^= 0x04; /* term 9 -> 13 without fixing the checksum */
	v = (MDB_val){sizeof buf, buf};
	cr_assert_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
	kv_log_close(l);

	kv_log_opts_t o = {.map_size = 64u << 20};
	cr_expect_eq(kv_log_open(&l, dir, &o), KV_ECORRUPT);
}

Test(core_log, big_entries_round_trip)
{
	kv_log_t *l = open_log();
	kv_log_rtxn_t t = {0};
	kv_log_entry_t e, got;
	size_t len = 3u << 20;
	uint8_t *big = malloc(len);

	for (size_t i = 0; i < len; i++)
		big[i] = (uint8_t)(i * 31 + 7);
	e = (kv_log_entry_t){.index = 1, .term = 1, .type = KV_LOG_NORMAL, .data = big, .len = len};
	cr_assert_eq(kv_log_append(l, &e, 1, NULL), 0);
	cr_assert_eq(kv_log_read_begin(l, &t), 0);
	cr_assert_eq(kv_log_get(&t, 1, &got), 0);
	cr_expect_eq(got.len, len);
	cr_expect_eq(memcmp(got.data, big, len), 0);
	kv_log_read_close(&t);
	kv_log_close(l);
	free(big);
}

/* kv_log_space: pages freed by compaction count as free inside the file (admission reuses
 * them before it asks the disk for more), the file keeps its high-water, map is the cap. */
Test(core_log, space_counts_compacted_pages_as_free)
{
	kv_log_t *l = open_log();
	kv_log_space_t a, b, c;
	size_t len = 1u << 20;
	uint8_t *big = calloc(1, len);
	kv_log_entry_t e[4];

	cr_assert_eq(kv_log_space(l, &a), 0);
	cr_expect_eq(a.map, 64u << 20);
	cr_expect_leq(a.used, a.file);
	for (int i = 0; i < 4; i++)
		e[i] = (kv_log_entry_t){.index = (uint64_t)i + 1, .term = 1, .type = KV_LOG_NORMAL,
					.data = big, .len = len};
	cr_assert_eq(kv_log_append(l, e, 4, NULL), 0);
	cr_assert_eq(kv_log_space(l, &b), 0);
	cr_expect_geq(b.used, a.used + 4 * len, "4 MiB of entries: used %llu -> %llu",
		      (unsigned long long)a.used, (unsigned long long)b.used);
	cr_expect_geq(b.file, b.used);
	cr_assert_eq(kv_log_compact(l, 4), 0);
	cr_assert_eq(kv_log_space(l, &c), 0);
	cr_expect_geq(c.file, b.file, "the file keeps its high-water");
	cr_expect_lt(c.used + 3 * len, b.used, "compacted pages are free: used %llu -> %llu",
		     (unsigned long long)b.used, (unsigned long long)c.used);
	kv_log_close(l);
	free(big);
}
