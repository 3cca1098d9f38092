/*
 * The store's data model through its public API: buckets, keys, revisions, history,
 * tombstones, CAS rules, prefixes and paging, batches, TTL, and kv_read_op's encodings.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/kv.h"
#include "tests/core/store_util.h"

static char *dir;
static kv_store_t *s;

static void setup(void)
{
	dir = su_tmpdir();
	cr_assert_eq(kv_open(&s, dir, NULL), 0);
	cr_assert_eq(su_bucket_add(s, "b", 0, 0), 0);
}

static void teardown(void)
{
	kv_close(s);
	su_rmdir(dir);
	free(dir);
}

TestSuite(kv_store, .init = setup, .fini = teardown);

/* ---- revisions and basic ops ------------------------------------------------------------ */

Test(kv_store, new_store_starts_at_zero_and_bucket_add_takes_revision_one)
{
	cr_assert_eq(kv_revision(s), 1);
	cr_assert_eq(kv_applied_index(s), 1);
}

Test(kv_store, every_applied_op_takes_the_next_revision)
{
	uint64_t r1, r2, r3;
	proto_rec_t rec;
	char v[64];

	cr_assert_eq(su_put(s, "b", "k1", "a", &r1), 0);
	cr_assert_eq(su_put(s, "b", "k2", "b", &r2), 0);
	cr_assert_eq(su_put(s, "b", "k1", "c", &r3), 0);
	cr_assert_eq(r1, 2);
	cr_assert_eq(r2, 3);
	cr_assert_eq(r3, 4);
	cr_assert_eq(kv_revision(s), 4);
	cr_assert_eq(su_get(s, "b", "k1", 0, v, sizeof v, &rec), 0);
	cr_assert_str_eq(v, "c");
	cr_assert_eq(rec.rev, 4);
	cr_assert_eq(rec.create_rev, 2, "create_rev stays with the key across updates");
	cr_assert_eq(rec.kind, PROTO_REC_PUT);
	cr_assert_eq(rec.time_ms, 1000);
}

Test(kv_store, failed_op_consumes_the_index_but_not_a_revision)
{
	uint64_t rev;
	cr_assert_eq(su_op(s, 1, PROTO_OP_UPDATE, "b", "k", "v", 77, &rev), KV_EREVISION);
	cr_assert_eq(kv_applied_index(s), 2);
	cr_assert_eq(kv_revision(s), 1);
}

Test(kv_store, get_missing_key_unknown_bucket_and_bad_names)
{
	char v[8];
	cr_assert_eq(su_get(s, "b", "nope", 0, v, sizeof v, NULL), KV_ENOTFOUND);
	cr_assert_eq(su_get(s, "zz", "k", 0, v, sizeof v, NULL), KV_ENOBUCKET);
	cr_assert_eq(su_get(s, "b c", "k", 0, v, sizeof v, NULL), KV_EBADBUCKET);
	cr_assert_eq(su_get(s, "b", ".k", 0, v, sizeof v, NULL), KV_EBADKEY);
	cr_assert_eq(su_get(s, "b", "k k", 0, v, sizeof v, NULL), KV_EBADKEY);
}

Test(kv_store, writes_with_invalid_names_keys_or_sizes_are_refused)
{
	proto_op_t op = {.op = PROTO_OP_BUCKET_ADD, .bucket = su_b("small")};
	kv_result_t res;
	char big[200];

	op.cfg.max_value = 100;
	cr_assert_eq(su_apply(s, 1, &op, &res), 0);
	cr_assert_eq(res.status, 0);
	memset(big, 'x', 100);
	big[100] = 0;
	cr_assert_eq(su_put(s, "small", "k", big, NULL), 0, "exactly max_value fits");
	big[100] = 'x';
	big[101] = 0;
	cr_assert_eq(su_put(s, "small", "k", big, NULL), KV_ETOOBIG);
	cr_assert_eq(su_put(s, "b", "bad key", "v", NULL), KV_EBADKEY);
	cr_assert_eq(su_put(s, "b", "trailing.", "v", NULL), KV_EBADKEY);
	cr_assert_eq(su_put(s, "b!", "k", "v", NULL), KV_EBADBUCKET);
	cr_assert_eq(su_put(s, "missing", "k", "v", NULL), KV_ENOBUCKET);
}

/* ---- CAS rules and tombstones ---------------------------------------------------------- */

Test(kv_store, create_only_if_absent_or_deleted)
{
	uint64_t r1, r2, r3;
	proto_rec_t rec;

	cr_assert_eq(su_op(s, 1, PROTO_OP_CREATE, "b", "k", "v1", 0, &r1), 0);
	cr_assert_eq(su_op(s, 1, PROTO_OP_CREATE, "b", "k", "v2", 0, NULL), KV_EEXIST);
	cr_assert_eq(su_op(s, 1, PROTO_OP_DELETE, "b", "k", NULL, 0, &r2), 0);
	cr_assert_eq(su_op(s, 1, PROTO_OP_CREATE, "b", "k", "v3", 0, &r3), 0);
	cr_assert_eq(su_get(s, "b", "k", 0, NULL, 0, &rec), 0);
	cr_assert_eq(rec.create_rev, r3, "a key re-created after a delete starts a new life");
	cr_assert(r1 < r2 && r2 < r3);
}

Test(kv_store, update_needs_the_current_revision)
{
	uint64_t r1, r2;
	cr_assert_eq(su_put(s, "b", "k", "v1", &r1), 0);
	cr_assert_eq(su_op(s, 1, PROTO_OP_UPDATE, "b", "k", "v2", r1 + 5, NULL), KV_EREVISION);
	cr_assert_eq(su_op(s, 1, PROTO_OP_UPDATE, "b", "k", "v2", r1, &r2), 0);
	cr_assert_eq(su_op(s, 1, PROTO_OP_UPDATE, "b", "k", "v3", r1, NULL), KV_EREVISION);
	cr_assert_eq(su_op(s, 1, PROTO_OP_UPDATE, "b", "new", "v", 3, NULL), KV_EREVISION);
	cr_assert_eq(su_op(s, 1, PROTO_OP_UPDATE, "b", "new", "v", 0, NULL), 0,
		     "an absent key's revision is 0");
}

Test(kv_store, delete_is_a_tombstone_seen_by_history_not_by_get)
{
	uint64_t r1, r2;
	proto_rec_t rec;
	kv_rtxn_t t = {0};

	cr_assert_eq(su_put(s, "b", "k", "v", &r1), 0);
	cr_assert_eq(su_op(s, 1, PROTO_OP_DELETE, "b", "k", NULL, r1 + 1, NULL), KV_EREVISION);
	cr_assert_eq(su_op(s, 1, PROTO_OP_DELETE, "b", "k", NULL, r1, &r2), 0);
	cr_assert_eq(su_get(s, "b", "k", 0, NULL, 0, NULL), KV_ENOTFOUND);
	cr_assert_eq(su_op(s, 1, PROTO_OP_DELETE, "b", "k", NULL, 0, NULL), KV_ENOTFOUND,
		     "deleting a deleted key changes nothing");
	cr_assert_eq(su_op(s, 1, PROTO_OP_DELETE, "b", "never", NULL, 0, NULL), KV_ENOTFOUND);
	cr_assert_eq(kv_read_begin(s, &t), 0);
	cr_assert_eq(kv_get_rec(&t, "b", 1, "k", 1, 0, &rec), 0);
	cr_assert_eq(rec.kind, PROTO_REC_DEL);
	cr_assert_eq(rec.rev, r2);
	cr_assert_eq(rec.value.len, 0);
	kv_read_close(&t);
}

Test(kv_store, delete_and_purge_update_bucket_counters)
{
	proto_bucket_info_t info;
	kv_rtxn_t t = {0};

	cr_assert_eq(su_put(s, "b", "a", "12345", NULL), 0);
	cr_assert_eq(su_put(s, "b", "c", "123", NULL), 0);
	cr_assert_eq(su_put(s, "b", "a", "1", NULL), 0);
	cr_assert_eq(kv_read_begin(s, &t), 0);
	cr_assert_eq(kv_bucket_info(&t, "b", 1, &info), 0);
	cr_assert_eq(info.keys, 2);
	cr_assert_eq(info.bytes, 4);
	kv_read_end(&t);
	cr_assert_eq(su_op(s, 1, PROTO_OP_DELETE, "b", "a", NULL, 0, NULL), 0);
	cr_assert_eq(kv_read_begin(s, &t), 0);
	cr_assert_eq(kv_bucket_info(&t, "b", 1, &info), 0);
	cr_assert_eq(info.keys, 1);
	cr_assert_eq(info.bytes, 3);
	kv_read_close(&t);
}

/* ---- history ------------------------------------------------------------------------ */

typedef struct recs {
	uint64_t rev[80];
	uint8_t kind[80];
	char val[80][16];
	int n;
	int stop_after;
} recs_t;

static int collect_rec(void *ctx, const proto_rec_t *r)
{
	recs_t *c = ctx;
	if (c->stop_after && c->n == c->stop_after)
		return 1;
	c->rev[c->n] = r->rev;
	c->kind[c->n] = r->kind;
	snprintf(c->val[c->n], sizeof c->val[0], "%.*s", (int)r->value.len, r->value.p);
	c->n++;
	return 0;
}

static int history(const char *b, const char *k, uint64_t after, size_t limit, recs_t *c, bool *more)
{
	kv_rtxn_t t = {0};
	int rc;

	memset(c, 0, sizeof *c);
	cr_assert_eq(kv_read_begin(s, &t), 0);
	rc = kv_history(&t, b, strlen(b), k, strlen(k), after, limit, collect_rec, c, more);
	kv_read_close(&t);
	return rc;
}

Test(kv_store, history_is_bounded_by_the_bucket_depth_oldest_dropped)
{
	uint64_t rev[6];
	recs_t c;
	bool more;
	char v[16];

	cr_assert_eq(su_bucket_add(s, "h3", 3, 0), 0);
	for (int i = 0; i < 6; i++) {
		snprintf(v, sizeof v, "v%d", i);
		cr_assert_eq(su_put(s, "h3", "k", v, &rev[i]), 0);
	}
	cr_assert_eq(history("h3", "k", 0, 0, &c, &more), 0);
	cr_assert_eq(c.n, 3);
	cr_assert_str_eq(c.val[0], "v3");
	cr_assert_str_eq(c.val[2], "v5");
	cr_assert_eq(c.rev[0], rev[3]);
	cr_assert_not(more);
	/* Only retained records are indexed: 3 in revs for this key (+0 for bucket ops). */
	cr_assert_eq(su_revs_items(s), 3);
	cr_assert_eq(su_db_entries(s, "hist"), 2);
	/* after_rev and limit page through it */
	cr_assert_eq(history("h3", "k", rev[3], 1, &c, &more), 0);
	cr_assert_eq(c.n, 1);
	cr_assert_str_eq(c.val[0], "v4");
	cr_assert(more);
	cr_assert_eq(history("h3", "missing", 0, 0, &c, &more), KV_ENOTFOUND);
}

Test(kv_store, default_depth_one_keeps_only_the_latest)
{
	recs_t c;
	bool more;
	cr_assert_eq(su_put(s, "b", "k", "1", NULL), 0);
	cr_assert_eq(su_put(s, "b", "k", "2", NULL), 0);
	cr_assert_eq(history("b", "k", 0, 0, &c, &more), 0);
	cr_assert_eq(c.n, 1);
	cr_assert_str_eq(c.val[0], "2");
	cr_assert_eq(su_revs_items(s), 1);
	cr_assert_eq(su_db_entries(s, "hist"), 0);
}

Test(kv_store, history_shows_delete_tombstones)
{
	recs_t c;
	bool more;
	cr_assert_eq(su_bucket_add(s, "h", 5, 0), 0);
	cr_assert_eq(su_put(s, "h", "k", "1", NULL), 0);
	cr_assert_eq(su_op(s, 1, PROTO_OP_DELETE, "h", "k", NULL, 0, NULL), 0);
	cr_assert_eq(su_put(s, "h", "k", "2", NULL), 0);
	cr_assert_eq(history("h", "k", 0, 0, &c, &more), 0);
	cr_assert_eq(c.n, 3);
	cr_assert_eq(c.kind[0], PROTO_REC_PUT);
	cr_assert_eq(c.kind[1], PROTO_REC_DEL);
	cr_assert_eq(c.kind[2], PROTO_REC_PUT);
}

Test(kv_store, purge_drops_history_and_leaves_one_marker)
{
	recs_t c;
	bool more;
	cr_assert_eq(su_bucket_add(s, "h", 10, 0), 0);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(su_put(s, "h", "k", "v", NULL), 0);
	cr_assert_eq(su_op(s, 1, PROTO_OP_PURGE, "h", "k", NULL, 0, NULL), 0);
	cr_assert_eq(history("h", "k", 0, 0, &c, &more), 0);
	cr_assert_eq(c.n, 1);
	cr_assert_eq(c.kind[0], PROTO_REC_PURGE);
	cr_assert_eq(su_get(s, "h", "k", 0, NULL, 0, NULL), KV_ENOTFOUND);
	cr_assert_eq(su_db_entries(s, "hist"), 0);
	cr_assert_eq(su_revs_items(s), 1);
	cr_assert_eq(su_op(s, 1, PROTO_OP_PURGE, "h", "k", NULL, 0, NULL), KV_ENOTFOUND);
	cr_assert_eq(su_op(s, 1, PROTO_OP_PURGE, "h", "zz", NULL, 0, NULL), KV_ENOTFOUND);
	cr_assert_eq(su_op(s, 1, PROTO_OP_CREATE, "h", "k", "new", 0, NULL), 0);
}

Test(kv_store, get_at_revision_returns_the_record_current_then)
{
	uint64_t r1, r2, r3;
	char v[16];

	cr_assert_eq(su_bucket_add(s, "h", 2, 0), 0);
	cr_assert_eq(su_put(s, "h", "k", "one", &r1), 0);
	cr_assert_eq(su_put(s, "h", "other", "x", NULL), 0);
	cr_assert_eq(su_put(s, "h", "k", "two", &r2), 0);
	cr_assert_eq(su_get(s, "h", "k", r2 - 1, v, sizeof v, NULL), 0);
	cr_assert_str_eq(v, "one");
	cr_assert_eq(su_get(s, "h", "k", r2, v, sizeof v, NULL), 0);
	cr_assert_str_eq(v, "two");
	cr_assert_eq(su_get(s, "h", "k", 1000, v, sizeof v, NULL), 0);
	cr_assert_str_eq(v, "two");
	cr_assert_eq(su_get(s, "h", "k", r1 - 1, v, sizeof v, NULL), KV_ENOTFOUND,
		     "before the key existed");
	cr_assert_eq(su_put(s, "h", "k", "three", &r3), 0);
	cr_assert_eq(su_get(s, "h", "k", r1, v, sizeof v, NULL), KV_ENOTFOUND,
		     "no longer retained at depth 2");
	cr_assert_eq(su_get(s, "h", "k", r3 - 1, v, sizeof v, NULL), 0);
	cr_assert_str_eq(v, "two");
}

/* ---- keys ---------------------------------------------------------------------------- */

typedef struct keys {
	char k[64][32];
	int n;
	int stop_after;
} keys_t;

static int collect_key(void *ctx, const proto_bytes_t *key)
{
	keys_t *c = ctx;
	if (c->stop_after && c->n == c->stop_after)
		return 1;
	snprintf(c->k[c->n++], sizeof c->k[0], "%.*s", (int)key->len, key->p);
	return 0;
}

static int keys(const char *prefix, const char *after, size_t limit, keys_t *c, bool *more)
{
	kv_rtxn_t t = {0};
	int rc;

	memset(c, 0, sizeof *c);
	cr_assert_eq(kv_read_begin(s, &t), 0);
	rc = kv_keys(&t, "b", 1, prefix, strlen(prefix), after, after ? strlen(after) : 0, limit,
		     collect_key, c, more);
	kv_read_close(&t);
	return rc;
}

Test(kv_store, keys_by_prefix_sorted_without_tombstones)
{
	const char *ks[] = {"user.2", "user.10", "user.1", "users", "admin", "user.3"};
	keys_t c;
	bool more;

	for (size_t i = 0; i < 6; i++)
		cr_assert_eq(su_put(s, "b", ks[i], "v", NULL), 0);
	cr_assert_eq(su_op(s, 1, PROTO_OP_DELETE, "b", "user.3", NULL, 0, NULL), 0);
	cr_assert_eq(keys("user.", NULL, 0, &c, &more), 0);
	cr_assert_eq(c.n, 3);
	cr_assert_str_eq(c.k[0], "user.1");
	cr_assert_str_eq(c.k[1], "user.10");
	cr_assert_str_eq(c.k[2], "user.2");
	cr_assert_not(more);
	cr_assert_eq(keys("", NULL, 0, &c, &more), 0);
	cr_assert_eq(c.n, 5);
	cr_assert_str_eq(c.k[0], "admin");
	cr_assert_str_eq(c.k[4], "users");
	cr_assert_eq(keys(".bad", NULL, 0, &c, &more), KV_EBADKEY);
}

Test(kv_store, keys_page_with_after_and_limit)
{
	char k[16];
	keys_t c;
	bool more;
	int seen = 0;

	for (int i = 0; i < 25; i++) {
		snprintf(k, sizeof k, "k%02d", i);
		cr_assert_eq(su_put(s, "b", k, "v", NULL), 0);
	}
	char after[32] = "";
	do {
		cr_assert_eq(keys("k", after[0] ? after : NULL, 10, &c, &more), 0);
		for (int i = 0; i < c.n; i++) {
			snprintf(k, sizeof k, "k%02d", seen + i);
			cr_assert_str_eq(c.k[i], k);
		}
		seen += c.n;
		strcpy(after, c.k[c.n - 1]);
	} while (more);
	cr_assert_eq(seen, 25);
	/* A callback that stops also reports more. */
	memset(&c, 0, sizeof c);
	kv_rtxn_t t = {0};
	c.stop_after = 2;
	cr_assert_eq(kv_read_begin(s, &t), 0);
	cr_assert_eq(kv_keys(&t, "b", 1, "", 0, NULL, 0, 0, collect_key, &c, &more), 0);
	cr_assert_eq(c.n, 2);
	cr_assert(more);
	kv_read_close(&t);
}

Test(kv_store, long_keys_up_to_1024_bytes_work_everywhere)
{
	char k1[1025], k2[1025], v[16];
	keys_t c;
	bool more;
	recs_t h;

	memset(k1, 'a', 1024);
	k1[1024] = 0;
	memcpy(k2, k1, sizeof k1);
	k2[1000] = 'b'; /* same first 472 bytes: told apart by the stored full key */
	cr_assert_eq(su_bucket_add(s, "long", 2, 0), 0);
	cr_assert_eq(su_put(s, "long", k1, "one", NULL), 0);
	cr_assert_eq(su_put(s, "long", k2, "two", NULL), 0);
	cr_assert_eq(su_put(s, "long", k1, "uno", NULL), 0);
	cr_assert_eq(su_get(s, "long", k1, 0, v, sizeof v, NULL), 0);
	cr_assert_str_eq(v, "uno");
	cr_assert_eq(su_get(s, "long", k2, 0, v, sizeof v, NULL), 0);
	cr_assert_str_eq(v, "two");
	k2[1001] = 'c';
	cr_assert_eq(su_get(s, "long", k2, 0, v, sizeof v, NULL), KV_ENOTFOUND);
	k2[1001] = 'a';
	cr_assert_eq(history("long", k1, 0, 0, &h, &more), 0);
	cr_assert_eq(h.n, 2);
	cr_assert_str_eq(h.val[0], "one");

	kv_rtxn_t t = {0};
	int n = 0;
	memset(&c, 0, sizeof c);
	cr_assert_eq(kv_read_begin(s, &t), 0);
	/* a prefix longer than the stored part still matches on the full key */
	cr_assert_eq(kv_keys(&t, "long", 4, k2, 1001, NULL, 0, 0, collect_key, &c, &more), 0);
	n = c.n;
	kv_read_close(&t);
	cr_assert_eq(n, 1);
	cr_assert_eq(su_op(s, 1, PROTO_OP_DELETE, "long", k2, NULL, 0, NULL), 0);
	cr_assert_eq(su_get(s, "long", k2, 0, v, sizeof v, NULL), KV_ENOTFOUND);
	k1[1023] = '.'; /* the rules hold past the stored prefix too */
	cr_assert_eq(su_put(s, "long", k1, "x", NULL), KV_EBADKEY);
}

/* ---- buckets -------------------------------------------------------------------------- */

static int collect_bucket(void *ctx, const proto_bucket_info_t *info)
{
	keys_t *c = ctx;
	snprintf(c->k[c->n++], sizeof c->k[0], "%.*s", (int)info->name.len, info->name.p);
	return 0;
}

Test(kv_store, bucket_add_info_list_and_rules)
{
	proto_op_t op = {.op = PROTO_OP_BUCKET_ADD, .bucket = su_b("cfg")};
	proto_bucket_info_t info;
	kv_result_t res;
	kv_rtxn_t t = {0};
	keys_t c = {0};
	bool more;

	op.cfg.history = 5;
	op.cfg.max_age_ms = 60000;
	op.cfg.content_type = su_b("application/json");
	cr_assert_eq(su_apply(s, 1, &op, &res), 0);
	cr_assert_eq(res.status, 0);
	uint64_t created = res.rev;
	cr_assert_eq(su_apply(s, 1, &op, &res), 0);
	cr_assert_eq(res.status, 0, "adding the same bucket again is a no-op");
	cr_assert_eq(res.rev, created);
	op.cfg.history = 6;
	cr_assert_eq(su_apply(s, 1, &op, &res), 0);
	cr_assert_eq(res.status, KV_EBUCKETEXISTS);
	op.bucket = su_b("other");
	op.cfg.history = 65;
	cr_assert_eq(su_apply(s, 1, &op, &res), 0);
	cr_assert_eq(res.status, KV_EBADCONFIG);
	op.cfg.history = 1;
	op.cfg.content_type = su_b("text/plain\r\nX: y");
	cr_assert_eq(su_apply(s, 1, &op, &res), 0);
	cr_assert_eq(res.status, KV_EBADCONFIG);
	cr_assert_eq(su_bucket_add(s, "bad name", 0, 0), KV_EBADBUCKET);

	cr_assert_eq(kv_read_begin(s, &t), 0);
	cr_assert_eq(kv_bucket_info(&t, "cfg", 3, &info), 0);
	cr_assert_eq(info.cfg.history, 5);
	cr_assert_eq(info.cfg.max_value, PROTO_DEFAULT_MAX_VALUE);
	cr_assert_eq(info.cfg.max_age_ms, 60000);
	cr_assert_eq(info.cfg.content_type.len, 16);
	cr_assert_eq(info.created_rev, created);
	cr_assert_eq(kv_bucket_info(&t, "nope", 4, &info), KV_ENOBUCKET);
	cr_assert_eq(kv_buckets(&t, NULL, 0, 0, collect_bucket, &c, &more), 0);
	cr_assert_eq(c.n, 2);
	cr_assert_str_eq(c.k[0], "b");
	cr_assert_str_eq(c.k[1], "cfg");
	memset(&c, 0, sizeof c);
	cr_assert_eq(kv_buckets(&t, "b", 1, 0, collect_bucket, &c, &more), 0);
	cr_assert_eq(c.n, 1);
	cr_assert_str_eq(c.k[0], "cfg");
	memset(&c, 0, sizeof c);
	cr_assert_eq(kv_buckets(&t, NULL, 0, 1, collect_bucket, &c, &more), 0);
	cr_assert_eq(c.n, 1);
	cr_assert(more);
	kv_read_close(&t);
}

Test(kv_store, bucket_delete_removes_its_keys_and_indexes)
{
	proto_op_t op = {.op = PROTO_OP_BUCKET_DEL, .bucket = su_b("t")};
	kv_result_t res;

	cr_assert_eq(su_bucket_add(s, "t", 4, 1000), 0);
	for (int i = 0; i < 50; i++) {
		char k[16];
		snprintf(k, sizeof k, "k%d", i % 20);
		cr_assert_eq(su_put(s, "t", k, "v", NULL), 0);
	}
	cr_assert_eq(su_put(s, "b", "stay", "v", NULL), 0);
	cr_assert_eq(su_op(s, 1, PROTO_OP_DELETE, "t", "k1", NULL, 0, NULL), 0);
	cr_assert_eq(su_apply(s, 1, &op, &res), 0);
	cr_assert_eq(res.status, 0);
	cr_assert_eq(su_get(s, "t", "k2", 0, NULL, 0, NULL), KV_ENOBUCKET);
	cr_assert_eq(su_key_records(s), 1);
	cr_assert_eq(su_db_entries(s, "hist"), 0);
	cr_assert_eq(su_revs_items(s), 1);
	cr_assert_eq(su_db_entries(s, "ttl"), 0);
	cr_assert_eq(su_apply(s, 1, &op, &res), 0);
	cr_assert_eq(res.status, KV_ENOBUCKET);
	/* Re-created, it is empty: ids are not reused. */
	cr_assert_eq(su_bucket_add(s, "t", 4, 1000), 0);
	cr_assert_eq(su_get(s, "t", "k2", 0, NULL, 0, NULL), KV_ENOTFOUND);
}

/* ---- batches and multi-entry calls ------------------------------------------------------ */

static size_t batch_of(uint8_t *buf, size_t cap, const proto_op_t *ops, int n)
{
	static uint8_t tmp[4 << 20];
	proto_wbuf_t w;
	proto_batch_writer_t bw;
	proto_op_t op;

	proto_wbuf_init(&w, tmp, sizeof tmp);
	proto_batch_begin(&bw, &w);
	for (int i = 0; i < n; i++)
		cr_assert_eq(proto_batch_add(&bw, &ops[i]), 0);
	proto_batch_finish(&bw);
	cr_assert_eq(proto_op_decode(tmp, proto_wbuf_len(&w), &op), 0);
	return su_entry(buf, cap, 5000, &op);
}

static int apply_buf(const uint8_t *buf, size_t len, kv_result_t *res)
{
	kv_entry_in_t e = {kv_applied_index(s) + 1, buf, len};
	return kv_apply(s, &e, 1, res);
}

Test(kv_store, batch_applies_all_ops_with_consecutive_revisions)
{
	proto_op_t ops[3] = {
		{.op = PROTO_OP_PUT, .bucket = su_b("b"), .key = su_b("x"), .value = su_b("1")},
		{.op = PROTO_OP_PUT, .bucket = su_b("b"), .key = su_b("y"), .value = su_b("2")},
		{.op = PROTO_OP_PUT, .bucket = su_b("b"), .key = su_b("x"), .value = su_b("3")},
	};
	uint8_t buf[4096];
	kv_result_t res;
	proto_rec_t rec;
	char v[8];

	cr_assert_eq(apply_buf(buf, batch_of(buf, sizeof buf, ops, 3), &res), 0);
	cr_assert_eq(res.status, 0);
	cr_assert_eq(res.count, 3);
	cr_assert_eq(res.rev, 2);
	cr_assert_eq(kv_revision(s), 4);
	cr_assert_eq(su_get(s, "b", "x", 0, v, sizeof v, &rec), 0);
	cr_assert_str_eq(v, "3");
	cr_assert_eq(rec.rev, 4);
	cr_assert_eq(rec.create_rev, 2);
	cr_assert_eq(rec.time_ms, 5000);
}

Test(kv_store, batch_with_a_failing_conditional_op_applies_nothing)
{
	proto_op_t ops[4] = {
		{.op = PROTO_OP_BUCKET_ADD, .bucket = su_b("nb")},
		{.op = PROTO_OP_PUT, .bucket = su_b("nb"), .key = su_b("x"), .value = su_b("1")},
		{.op = PROTO_OP_PUT, .bucket = su_b("b"), .key = su_b("y"), .value = su_b("2")},
		{.op = PROTO_OP_CREATE, .bucket = su_b("b"), .key = su_b("exists"), .value = su_b("3")},
	};
	uint8_t buf[4096];
	kv_result_t res;
	uint64_t rev0, idx0;

	cr_assert_eq(su_put(s, "b", "exists", "0", NULL), 0);
	rev0 = kv_revision(s);
	idx0 = kv_applied_index(s);
	cr_assert_eq(apply_buf(buf, batch_of(buf, sizeof buf, ops, 4), &res), 0);
	cr_assert_eq(res.status, KV_EBATCH);
	cr_assert_eq(res.failed_at, 3);
	cr_assert_eq(res.failed_status, KV_EEXIST);
	cr_assert_eq(res.count, 0);
	cr_assert_eq(kv_revision(s), rev0);
	cr_assert_eq(kv_applied_index(s), idx0 + 1, "the entry's index is consumed");
	cr_assert_eq(su_get(s, "b", "y", 0, NULL, 0, NULL), KV_ENOTFOUND);
	cr_assert_eq(su_get(s, "nb", "x", 0, NULL, 0, NULL), KV_ENOBUCKET);
	/* The same batch with the conflict removed goes through, bucket creation included. */
	cr_assert_eq(apply_buf(buf, batch_of(buf, sizeof buf, ops, 3), &res), 0);
	cr_assert_eq(res.status, 0);
	cr_assert_eq(res.count, 3);
	cr_assert_eq(su_get(s, "nb", "x", 0, NULL, 0, NULL), 0);
}

Test(kv_store, batch_of_puts_with_one_bad_key_applies_nothing)
{
	proto_op_t ops[3] = {
		{.op = PROTO_OP_PUT, .bucket = su_b("b"), .key = su_b("ok"), .value = su_b("1")},
		{.op = PROTO_OP_PUT, .bucket = su_b("b"), .key = su_b("ok2"), .value = su_b("2")},
		{.op = PROTO_OP_PUT, .bucket = su_b("b"), .key = su_b("bad key"), .value = su_b("3")},
	};
	uint8_t buf[4096];
	kv_result_t res;

	cr_assert_eq(apply_buf(buf, batch_of(buf, sizeof buf, ops, 3), &res), 0);
	cr_assert_eq(res.status, KV_EBATCH);
	cr_assert_eq(res.failed_at, 2);
	cr_assert_eq(res.failed_status, KV_EBADKEY);
	cr_assert_eq(su_get(s, "b", "ok", 0, NULL, 0, NULL), KV_ENOTFOUND);
	cr_assert_eq(kv_revision(s), 1);
}

Test(kv_store, many_entries_in_one_call_each_with_its_result)
{
	uint8_t bufs[3][256];
	proto_op_t ops[3] = {
		{.op = PROTO_OP_PUT, .bucket = su_b("b"), .key = su_b("a"), .value = su_b("1")},
		{.op = PROTO_OP_CREATE, .bucket = su_b("b"), .key = su_b("a"), .value = su_b("2")},
		{.op = PROTO_OP_PUT, .bucket = su_b("b"), .key = su_b("c"), .value = su_b("3")},
	};
	kv_entry_in_t e[3];
	kv_result_t res[3];
	uint64_t idx = kv_applied_index(s);

	for (int i = 0; i < 3; i++) {
		e[i].index = idx + 1 + (uint64_t)i * 2; /* gaps are fine, order is not */
		e[i].data = bufs[i];
		e[i].len = su_entry(bufs[i], sizeof bufs[i], 10, &ops[i]);
	}
	cr_assert_eq(kv_apply(s, e, 3, res), 0);
	cr_assert_eq(res[0].status, 0);
	cr_assert_eq(res[0].rev, 2);
	cr_assert_eq(res[1].status, KV_EEXIST);
	cr_assert_eq(res[2].status, 0);
	cr_assert_eq(res[2].rev, 3);
	cr_assert_eq(kv_applied_index(s), idx + 5);
	cr_assert_eq(kv_apply(s, e, 1, res), -EINVAL, "an index at or below applied is refused");
}

Test(kv_store, undecodable_entry_fails_the_call_and_applies_nothing)
{
	uint8_t good[256], bad[256];
	proto_op_t op = {.op = PROTO_OP_PUT, .bucket = su_b("b"), .key = su_b("a"), .value = su_b("1")};
	kv_entry_in_t e[2];
	kv_result_t res[2];
	uint64_t idx = kv_applied_index(s);
	size_t n = su_entry(good, sizeof good, 10, &op);

	memcpy(bad, good, n);
	e[0] = (kv_entry_in_t){idx + 1, good, n};
	e[1] = (kv_entry_in_t){idx + 2, bad, n - 1}; /* truncated */
	cr_assert_eq(kv_apply(s, e, 2, res), KV_ECORRUPT);
	bad[0] = 99; /* unknown entry version */
	e[1].len = n;
	cr_assert_eq(kv_apply(s, e, 2, res), KV_ECORRUPT);
	cr_assert_eq(kv_applied_index(s), idx);
	cr_assert_eq(su_get(s, "b", "a", 0, NULL, 0, NULL), KV_ENOTFOUND);
}

Test(kv_store, plain_batch_checks_every_op_even_in_a_run_of_one_bucket)
{
	proto_op_t add = {.op = PROTO_OP_BUCKET_ADD, .bucket = su_b("small")};
	proto_op_t ops[4] = {
		{.op = PROTO_OP_PUT, .bucket = su_b("small"), .key = su_b("a"), .value = su_b("1234")},
		{.op = PROTO_OP_PUT, .bucket = su_b("small"), .key = su_b("b"), .value = su_b("1")},
		{.op = PROTO_OP_PUT, .bucket = su_b("small"), .key = su_b("c"), .value = su_b("12345")},
		{.op = PROTO_OP_PUT, .bucket = su_b("b"), .key = su_b("d"), .value = su_b("12345")},
	};
	uint8_t buf[4096];
	kv_result_t res;

	add.cfg.max_value = 4;
	cr_assert_eq(su_apply(s, 1, &add, &res), 0);
	cr_assert_eq(res.status, 0);
	cr_assert_eq(apply_buf(buf, batch_of(buf, sizeof buf, ops, 4), &res), 0);
	cr_assert_eq(res.status, KV_EBATCH);
	cr_assert_eq(res.failed_at, 2);
	cr_assert_eq(res.failed_status, KV_ETOOBIG);
	cr_assert_eq(su_get(s, "small", "a", 0, NULL, 0, NULL), KV_ENOTFOUND);
	ops[2].value = su_b("x");
	ops[1].bucket = su_b("gone");
	cr_assert_eq(apply_buf(buf, batch_of(buf, sizeof buf, ops, 4), &res), 0);
	cr_assert_eq(res.failed_at, 1);
	cr_assert_eq(res.failed_status, KV_ENOBUCKET);
	ops[1].bucket = su_b("small");
	cr_assert_eq(apply_buf(buf, batch_of(buf, sizeof buf, ops, 4), &res), 0);
	cr_assert_eq(res.status, 0);
	cr_assert_eq(res.count, 4);
	cr_assert_eq(su_get(s, "b", "d", 0, NULL, 0, NULL), 0);
	cr_assert_eq(su_check_revs(s), 0);
}

/*
 * The revision index (runs of revisions, written through one cursor per write txn: see
 * kv_apply.c) must stay exact through thousands of revisions (a deep tree, runs full and
 * partly cut), overwrites inside one batch (items cut from the open run) and across batches
 * (from stored runs), history trims, purges, nested-txn batches that commit or abort, and
 * batches spanning more buckets than apply's bucket cache holds.
 */
Test(kv_store, revision_index_stays_exact_through_large_mixed_batches)
{
	static proto_op_t ops[400];
	static char keys[400][16], names[70][8];
	static uint8_t buf[1 << 17];
	const char *bk[3] = {"b", "h", "t"};
	kv_result_t res;
	uint64_t x = 7;
	int nb = 0;

	cr_assert_eq(su_bucket_add(s, "h", 3, 0), 0);
	cr_assert_eq(su_bucket_add(s, "t", 0, 60000), 0);
	for (int i = 0; i < 70; i++) {
		snprintf(names[i], sizeof names[i], "m%d", i);
		cr_assert_eq(su_bucket_add(s, names[i], 2, 0), 0);
	}
	for (int round = 0; round < 40; round++) {
		int n = 400;
		for (int i = 0; i < n; i++) {
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			proto_op_t *o = &ops[i];
			memset(o, 0, sizeof *o);
			snprintf(keys[i], sizeof keys[i], "k%llu", (unsigned long long)(x >> 33) % 1500);
			o->op = PROTO_OP_PUT;
			o->bucket = su_b(round % 10 == 9 ? names[i % 70] : bk[(x >> 20) % 3]);
			o->key = su_b(keys[i]);
			o->value = su_b(keys[i]);
			if (round % 4 == 3 && i % 7 == 1) { /* not a plain batch: nested txn */
				if (round % 8 == 7) { /* purge what the op before put: commits */
					o->op = PROTO_OP_PURGE;
					o->bucket = ops[i - 1].bucket;
					o->key = ops[i - 1].key;
				} else { /* a delete of a missing key soon aborts the batch */
					o->op = PROTO_OP_DELETE;
				}
			}
		}
		cr_assert_eq(apply_buf(buf, batch_of(buf, sizeof buf, ops, n), &res), 0, "round %d", round);
		if (res.status == 0)
			nb++;
		cr_assert_eq(res.status == 0, round % 8 != 3, "round %d", round);
		cr_assert_eq(su_check_revs(s), 0, "round %d", round);
	}
	cr_assert_eq(nb, 35);
	cr_assert_gt(su_revs_items(s), 3000);
	cr_assert_gt(su_db_entries(s, "revs"), 40, "runs on many pages: a tree more than one deep");
}

/* Runs of the revision index close when full (a 1,024-byte key fills one alone) and when
 * their revisions would span more than a u16 offset (bucket ops take revisions, no items). */
Test(kv_store, revision_runs_split_on_size_and_on_revision_span)
{
	static proto_op_t ops[2 + 2 * 33000];
	static char lk[4][1025];
	static uint8_t buf[4 << 20];
	kv_result_t res;
	int n = 0;

	for (int i = 0; i < 4; i++) {
		memset(lk[i], 'a' + i, 1024);
		lk[i][1024] = 0;
	}
	for (int i = 0; i < 8; i++)
		ops[n++] = (proto_op_t){.op = PROTO_OP_PUT, .bucket = su_b("b"),
					.key = su_b(i % 2 ? lk[i / 2] : "short"), .value = su_b("v")};
	cr_assert_eq(apply_buf(buf, batch_of(buf, sizeof buf, ops, n), &res), 0);
	cr_assert_eq(res.status, 0);
	cr_assert_eq(su_revs_items(s), 5);
	cr_assert_eq(su_check_revs(s), 0);

	n = 0;
	ops[n++] = (proto_op_t){.op = PROTO_OP_PUT, .bucket = su_b("b"), .key = su_b("x"), .value = su_b("1")};
	for (int i = 0; i < 33000; i++) {
		ops[n++] = (proto_op_t){.op = PROTO_OP_BUCKET_ADD, .bucket = su_b("z")};
		ops[n++] = (proto_op_t){.op = PROTO_OP_BUCKET_DEL, .bucket = su_b("z")};
	}
	ops[n++] = (proto_op_t){.op = PROTO_OP_PUT, .bucket = su_b("b"), .key = su_b("y"), .value = su_b("2")};
	cr_assert_eq(apply_buf(buf, batch_of(buf, sizeof buf, ops, n), &res), 0);
	cr_assert_eq(res.status, 0);
	cr_assert_eq(su_get(s, "b", "y", 0, NULL, 0, NULL), 0);
	cr_assert_eq(su_revs_items(s), 7);
	cr_assert_eq(su_check_revs(s), 0);
}

/* ---- TTL ------------------------------------------------------------------------------ */

typedef struct exp {
	char k[16][32];
	uint64_t rev[16];
	int n;
} exp_t;

static void collect_exp(void *ctx, const proto_bytes_t *b, const proto_bytes_t *k, uint64_t rev)
{
	exp_t *e = ctx;
	cr_assert_eq(b->len, 3);
	cr_assert_eq(memcmp(b->p, "ttl", 3), 0);
	snprintf(e->k[e->n], sizeof e->k[0], "%.*s", (int)k->len, k->p);
	e->rev[e->n++] = rev;
}

Test(kv_store, expired_lists_keys_past_max_age_oldest_first_using_entry_time)
{
	exp_t e = {0};
	uint64_t rb, rc_;

	cr_assert_eq(su_bucket_add(s, "ttl", 1, 1000), 0);
	cr_assert_eq(su_op(s, 300, PROTO_OP_PUT, "ttl", "c", "v", 0, NULL), 0);
	cr_assert_eq(su_op(s, 100, PROTO_OP_PUT, "ttl", "a", "v", 0, NULL), 0);
	cr_assert_eq(su_op(s, 200, PROTO_OP_PUT, "ttl", "b", "v", 0, &rb), 0);
	cr_assert_eq(su_op(s, 250, PROTO_OP_PUT, "ttl", "d", "v", 0, NULL), 0);
	cr_assert_eq(su_op(s, 100, PROTO_OP_PUT, "b", "nottl", "v", 0, NULL), 0);
	cr_assert_eq(kv_expired(s, 1050, 0, collect_exp, &e), 0, "nothing is 1000 ms old yet");
	cr_assert_eq(kv_expired(s, 1260, 0, collect_exp, &e), 3);
	cr_assert_str_eq(e.k[0], "a");
	cr_assert_str_eq(e.k[1], "b");
	cr_assert_str_eq(e.k[2], "d");
	cr_assert_eq(e.rev[1], rb);
	/* An overwrite restarts the clock; a delete removes the key from expiry. */
	cr_assert_eq(su_op(s, 1200, PROTO_OP_PUT, "ttl", "a", "v", 0, NULL), 0);
	cr_assert_eq(su_op(s, 1200, PROTO_OP_DELETE, "ttl", "b", NULL, 0, NULL), 0);
	memset(&e, 0, sizeof e);
	cr_assert_eq(kv_expired(s, 1400, 10, collect_exp, &e), 2);
	cr_assert_str_eq(e.k[0], "d");
	cr_assert_str_eq(e.k[1], "c");
	memset(&e, 0, sizeof e);
	cr_assert_eq(kv_expired(s, 1400, 1, collect_exp, &e), 1, "limit");
	/* The leader's DELETE with the record's rev expires it. */
	cr_assert_eq(su_op(s, 1400, PROTO_OP_DELETE, "ttl", "d", NULL, e.rev[0] + 100, NULL), KV_EREVISION);
	cr_assert_eq(su_op(s, 1400, PROTO_OP_DELETE, "ttl", e.k[0], NULL, e.rev[0], &rc_), 0);
	memset(&e, 0, sizeof e);
	cr_assert_eq(kv_expired(s, 1400, 10, collect_exp, &e), 1);
}

/* ---- kv_read_op ----------------------------------------------------------------------- */

Test(kv_store, read_op_encodes_get_and_keys_and_stops_lists_at_the_buffer_end)
{
	uint8_t buf[4096];
	proto_wbuf_t w;
	proto_rec_t rec;
	proto_list_reader_t lr;
	proto_bytes_t key;
	kv_rtxn_t t = {0};
	proto_op_t op = {.op = PROTO_OP_GET, .bucket = su_b("b"), .key = su_b("k05")};
	int n = 0;

	for (int i = 0; i < 20; i++) {
		char k[8];
		snprintf(k, sizeof k, "k%02d", i);
		cr_assert_eq(su_put(s, "b", k, "value", NULL), 0);
	}
	cr_assert_eq(kv_read_begin(s, &t), 0);
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(kv_read_op(&t, &op, &w), 0);
	cr_assert_eq(proto_rec_decode(buf, proto_wbuf_len(&w), &rec), 0);
	cr_assert_eq(rec.value.len, 5);
	cr_assert_eq(rec.rev, 7);

	op.key = su_b("zz");
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(kv_read_op(&t, &op, &w), KV_ENOTFOUND);
	cr_assert_eq(proto_wbuf_len(&w), 0, "w is left as it was");

	op = (proto_op_t){.op = PROTO_OP_KEYS, .bucket = su_b("b"), .key = su_b("k")};
	proto_wbuf_init(&w, buf, 4 + 5 * 5 + 3); /* count, 5 keys, then too little for a 6th */
	cr_assert_eq(kv_read_op(&t, &op, &w), 0);
	cr_assert_eq(proto_list_reader_init(&lr, buf, proto_wbuf_len(&w), PROTO_OP_KEYS), 0);
	while (proto_list_next_key(&lr, &key) == 1)
		n++;
	cr_assert_eq(n, 5);
	cr_assert(lr.more);

	proto_wbuf_init(&w, buf, 8);
	op = (proto_op_t){.op = PROTO_OP_GET, .bucket = su_b("b"), .key = su_b("k01")};
	cr_assert_eq(kv_read_op(&t, &op, &w), PROTO_ETOOBIG);

	op = (proto_op_t){.op = PROTO_OP_BUCKET_LIST};
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(kv_read_op(&t, &op, &w), 0);
	cr_assert_eq(proto_list_reader_init(&lr, buf, proto_wbuf_len(&w), PROTO_OP_BUCKET_LIST), 0);
	cr_assert_eq(lr.left, 1);

	op = (proto_op_t){.op = PROTO_OP_HISTORY, .bucket = su_b("b"), .key = su_b("k03")};
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(kv_read_op(&t, &op, &w), 0);
	cr_assert_eq(proto_list_reader_init(&lr, buf, proto_wbuf_len(&w), PROTO_OP_HISTORY), 0);
	cr_assert_eq(lr.left, 1);

	op = (proto_op_t){.op = PROTO_OP_BUCKET_INFO, .bucket = su_b("b")};
	proto_wbuf_init(&w, buf, sizeof buf);
	cr_assert_eq(kv_read_op(&t, &op, &w), 0);
	kv_read_close(&t);
}

/* ---- read transactions ------------------------------------------------------------- */

Test(kv_store, read_txn_is_a_snapshot_and_renews_to_see_new_writes)
{
	kv_rtxn_t t = {0};
	proto_rec_t rec;

	cr_assert_eq(su_put(s, "b", "k", "1", NULL), 0);
	cr_assert_eq(kv_read_begin(s, &t), 0);
	cr_assert_eq(kv_txn_revision(&t), 2);
	cr_assert_eq(su_put(s, "b", "k", "2", NULL), 0);
	cr_assert_eq(kv_get(&t, "b", 1, "k", 1, 0, &rec), 0);
	cr_assert_eq(rec.value.p[0], '1', "a running read does not see later writes");
	cr_assert_eq(kv_read_begin(s, &t), -EINVAL, "begin twice without end");
	kv_read_end(&t);
	for (int i = 0; i < 1000; i++) {
		cr_assert_eq(kv_read_begin(s, &t), 0);
		cr_assert_eq(kv_get(&t, "b", 1, "k", 1, 0, &rec), 0);
		cr_assert_eq(rec.value.p[0], '2');
		kv_read_end(&t);
	}
	cr_assert_eq(kv_read_begin(s, &t), 0);
	cr_assert_eq(kv_txn_applied(&t), 3);
	kv_read_close(&t);
	kv_read_close(&t); /* closing twice is harmless */
}

Test(kv_store, stats_count_buckets_and_live_keys)
{
	kv_stats_t st;
	cr_assert_eq(su_put(s, "b", "a", "v", NULL), 0);
	cr_assert_eq(su_put(s, "b", "c", "v", NULL), 0);
	cr_assert_eq(su_bucket_add(s, "e", 0, 0), 0);
	cr_assert_eq(kv_stats(s, &st), 0);
	cr_assert_eq(st.buckets, 2);
	cr_assert_eq(st.keys, 2);
	cr_assert_eq(st.revision, 4);
	cr_assert(st.map_used > 0 && st.map_used <= st.map_size);
}

Test(kv_store, reused_read_txn_follows_a_bucket_deleted_and_recreated)
{
	proto_op_t del = {.op = PROTO_OP_BUCKET_DEL, .bucket = su_b("b")};
	kv_result_t res;
	kv_rtxn_t t = {0};
	proto_rec_t rec;

	cr_assert_eq(su_put(s, "b", "k", "old", NULL), 0);
	cr_assert_eq(kv_read_begin(s, &t), 0);
	cr_assert_eq(kv_get(&t, "b", 1, "k", 1, 0, &rec), 0);
	kv_read_end(&t);
	cr_assert_eq(su_apply(s, 1, &del, &res), 0);
	cr_assert_eq(res.status, 0);
	cr_assert_eq(kv_read_begin(s, &t), 0);
	cr_assert_eq(kv_get(&t, "b", 1, "k", 1, 0, &rec), KV_ENOBUCKET);
	kv_read_end(&t);
	cr_assert_eq(su_bucket_add(s, "b", 0, 0), 0);
	cr_assert_eq(su_put(s, "b", "k", "new", NULL), 0);
	cr_assert_eq(kv_read_begin(s, &t), 0);
	cr_assert_eq(kv_get(&t, "b", 1, "k", 1, 0, &rec), 0);
	cr_assert_eq(memcmp(rec.value.p, "new", 3), 0);
	kv_read_end(&t);
	cr_assert_eq(su_apply(s, 1, &del, &res), 0);
	cr_assert_eq(su_bucket_add(s, "b", 0, 0), 0);
	cr_assert_eq(kv_read_begin(s, &t), 0);
	cr_assert_eq(kv_get(&t, "b", 1, "k", 1, 0, &rec), KV_ENOTFOUND);
	kv_read_close(&t);
}

/* ---- record checksums (format 3) ---------------------------------------------------------- */

#include <lmdb.h>

/* Change the stored value of key KEY (bucket id 1) behind the store's back: flip one bit of
 * its value byte AT (from the end of the value, before the 4-byte trailer), or, with
 * from != NULL, give it the exact stored bytes of key FROM (a record under the wrong key). */
static void tamper_record(const char *key, size_t at, const char *from)
{
	MDB_txn *txn;
	uint8_t kb[64], buf[4096];
	size_t klen = strlen(key);
	MDB_val k = {4 + klen, kb}, v;

	kb[0] = kb[1] = kb[2] = 0;
	kb[3] = 1;
	memcpy(kb + 4, key, klen);
	cr_assert_eq(mdb_txn_begin(kv_env(s), NULL, 0, &txn), 0);
	if (from != NULL) {
		uint8_t fb[64];
		MDB_val fk = {4 + strlen(from), fb};
		memcpy(fb, kb, 4);
		memcpy(fb + 4, from, strlen(from));
		cr_assert_eq(mdb_get(txn, 1, &fk, &v), 0);
	} else {
		cr_assert_eq(mdb_get(txn, 1, &k, &v), 0);
	}
	cr_assert(v.mv_size <= sizeof buf && v.mv_size > 4 + at);
	memcpy(buf, v.mv_data, v.mv_size);
	if (from == NULL)
		buf[v.mv_size - 5 - at] ^= 0x10;
	v.mv_data = buf;
	cr_assert_eq(mdb_put(txn, 1, &k, &v, 0), 0);
	cr_assert_eq(mdb_txn_commit(txn), 0);
}

Test(kv_store, a_flipped_value_byte_is_refused_never_served)
{
	proto_rec_t rec;
	char v[64];

	cr_assert_eq(su_put(s, "b", "k1", "card-0001", NULL), 0);
	cr_assert_eq(su_put(s, "b", "k2", "card-0002", NULL), 0);
	cr_assert_eq(kv_corrupt_count(s), 0);
	tamper_record("k1", 0, NULL);
	cr_expect_eq(su_get(s, "b", "k1", 0, v, sizeof v, &rec), KV_ECORRUPT);
	cr_expect_eq(kv_corrupt_count(s), 1, "counted");
	cr_expect_eq(su_get(s, "b", "k2", 0, v, sizeof v, &rec), 0, "other keys still served");
	cr_expect_str_eq(v, "card-0002");
}

Test(kv_store, a_record_under_another_key_is_refused)
{
	proto_rec_t rec;
	char v[64];

	cr_assert_eq(su_put(s, "b", "k1", "card-0001", NULL), 0);
	cr_assert_eq(su_put(s, "b", "k2", "card-0002", NULL), 0);
	tamper_record("k1", 0, "k2"); /* k2's bytes, trailer included, stored under k1 */
	cr_expect_eq(su_get(s, "b", "k1", 0, v, sizeof v, &rec), KV_ECORRUPT);
}

Test(kv_store, a_corrupt_record_stops_writes_to_it_snapshots_and_checksums)
{
	kv_snap_meta_t m;
	uint64_t h;
	uint64_t rev0;

	cr_assert_eq(su_put(s, "b", "k1", "card-0001", NULL), 0);
	tamper_record("k1", 3, NULL);
	rev0 = kv_revision(s);
	/* applying over it would diverge from the members whose copy is sound */
	cr_expect_eq(su_put(s, "b", "k1", "card-0001-v2", NULL), KV_ECORRUPT);
	cr_expect_eq(kv_revision(s), rev0, "nothing applied");
	cr_expect_eq(kv_checksum(s, &m, &h), KV_ECORRUPT, "no checksum of a corrupt store");
	cr_expect_geq(kv_corrupt_count(s), 2);
}

/* ---- sessions: SBATCH applies each (client, seq) once ------------------------------------ */

static uint64_t sb_time = 5000;  /* leader time of the next SBATCH entry */

static size_t sbatch_of(uint8_t *buf, size_t cap, const proto_op_t *ops, int n, uint64_t client,
			uint64_t seq)
{
	static uint8_t tmp[1 << 16];
	proto_wbuf_t w;
	proto_batch_writer_t bw;
	proto_op_t op;

	proto_wbuf_init(&w, tmp, sizeof tmp);
	proto_batch_begin(&bw, &w);
	for (int i = 0; i < n; i++)
		cr_assert_eq(proto_batch_add(&bw, &ops[i]), 0);
	proto_batch_finish(&bw);
	cr_assert_eq(proto_op_decode(tmp, proto_wbuf_len(&w), &op), 0);
	op.op = PROTO_OP_SBATCH;
	op.client = client;
	op.seq = seq;
	return su_entry(buf, cap, sb_time, &op);
}

/* apply SBATCH (client, seq) of two puts; returns res */
static kv_result_t sput(uint64_t client, uint64_t seq, const char *k1, const char *k2)
{
	proto_op_t ops[2] = {
		{.op = PROTO_OP_PUT, .bucket = su_b("b"), .key = su_b(k1), .value = su_b("v")},
		{.op = PROTO_OP_PUT, .bucket = su_b("b"), .key = su_b(k2), .value = su_b("w")},
	};
	uint8_t buf[4096];
	kv_result_t res;

	cr_assert_eq(apply_buf(buf, sbatch_of(buf, sizeof buf, ops, 2, client, seq), &res), 0);
	return res;
}

Test(kv_store, sbatch_resent_is_applied_once_and_answered_as_done)
{
	kv_result_t r = sput(7, 1, "a", "b");
	cr_assert_eq(r.status, 0);
	cr_assert_eq(r.rev, 2);
	cr_assert_eq(r.count, 2);
	uint64_t rev = kv_revision(s);
	r = sput(7, 1, "a", "b"); /* the resend after a lost answer */
	cr_assert_eq(r.status, 0);
	cr_assert_eq(r.rev, 0, "a duplicate takes no revision");
	cr_assert_eq(r.count, 2);
	cr_assert_eq(kv_revision(s), rev, "nothing applied twice");
	r = sput(8, 1, "a", "b"); /* another client's batch 1 is its own */
	cr_assert_eq(r.rev, rev + 1);
}

Test(kv_store, sbatch_out_of_order_within_the_window_and_old_numbers)
{
	cr_assert_eq(sput(7, 1, "a", "b").rev, 2);
	cr_assert_eq(sput(7, 3, "c", "d").rev, 4, "3 before 2 (a failover reordered them)");
	cr_assert_eq(sput(7, 2, "e", "f").rev, 6, "2 was never applied: it is now");
	cr_assert_eq(sput(7, 2, "e", "f").rev, 0, "and only once");
	cr_assert_eq(sput(7, 3, "c", "d").rev, 0);
	cr_assert_eq(sput(7, 300, "g", "h").rev, 8);
	cr_assert_eq(sput(7, 4, "x", "y").rev, 0, "further than the window below: applied");
	cr_assert_eq(sput(7, 299, "i", "j").rev, 10, "within the window, not applied yet");
	cr_assert_eq(kv_revision(s), 11);
	cr_assert_eq(sput(0, 0, "k", "l").rev, 12, "seq 0: no session, a plain batch");
	cr_assert_eq(sput(0, 0, "k", "l").rev, 14);
}

Test(kv_store, sbatch_failing_a_rule_is_not_recorded)
{
	proto_op_t ops[1] = {{.op = PROTO_OP_PUT, .bucket = su_b("nosuch"), .key = su_b("a"),
			      .value = su_b("v")}};
	uint8_t buf[4096];
	kv_result_t res;

	cr_assert_eq(apply_buf(buf, sbatch_of(buf, sizeof buf, ops, 1, 9, 1), &res), 0);
	cr_assert_eq(res.status, KV_EBATCH);
	cr_assert_eq(apply_buf(buf, sbatch_of(buf, sizeof buf, ops, 1, 9, 1), &res), 0);
	cr_assert_eq(res.status, KV_EBATCH, "a resend fails again, never 'already applied'");
}

Test(kv_store, sessions_travel_in_snapshots)
{
	kv_snap_meta_t m;
	size_t len;
	kv_store_t *s2;
	char *d2 = su_tmpdir();
	kv_result_t r = sput(7, 1, "a", "b");

	cr_assert_eq(r.rev, 2);
	uint8_t *snap = su_snapshot(s, &len, &m);
	su_rmdir(d2);
	cr_assert_eq(su_install(d2, snap, len, &m), 0);
	free(snap);
	cr_assert_eq(kv_open(&s2, d2, NULL), 0);
	/* the installed copy knows batch 1 of client 7: a resend to it is a duplicate too */
	kv_store_t *keep = s;
	s = s2;
	cr_assert_eq(sput(7, 1, "a", "b").rev, 0);
	cr_assert_eq(sput(7, 2, "c", "d").rev, 4);
	s = keep;
	kv_close(s2);
	su_rmdir(d2);
	free(d2);
}

Test(kv_store, sessions_unused_for_a_week_are_swept_when_new_ones_start)
{
	const uint64_t day = 24 * 3600 * 1000ull;

	sb_time = 5000;
	cr_assert_eq(sput(10, 1, "a", "b").rev, 2);
	cr_assert_eq(sput(20, 1, "c", "d").rev, 4);
	sb_time = 5000 + 6 * day;
	cr_assert_eq(sput(20, 2, "e", "f").rev, 6, "client 20 used again");
	sb_time = 5000 + 8 * day;
	cr_assert_eq(sput(5, 1, "g", "h").rev, 8, "a new session sweeps the ones after it");
	cr_assert_eq(sput(20, 2, "e", "f").rev, 0, "client 20 was used 2 days ago: kept");
	cr_assert_eq(sput(10, 1, "a", "b").rev, 10, "client 10, unused 8 days: forgotten");
	sb_time = 5000;
}
