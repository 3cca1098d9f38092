/*
 * Helpers for the store tests: scratch directories, building and applying log entries, and
 * short read wrappers. Every helper that applies goes through kv_apply with entries encoded
 * by proto_entry_encode, exactly as the primary and leaves do.
 */
#ifndef GEOKV_TESTS_CORE_STORE_UTIL_H
#define GEOKV_TESTS_CORE_STORE_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "core/kv.h"

/* A fresh directory under $TMPDIR (or /tmp); removed with su_rmdir. Returns a static-free
 * malloc'd path. */
char *su_tmpdir(void);
void su_rmdir(const char *dir);

proto_bytes_t su_b(const char *s);

/* Encode one entry (time_ms, op) into buf; returns its length (aborts on failure). */
size_t su_entry(uint8_t *buf, size_t cap, uint64_t time_ms, const proto_op_t *op);

/* Apply one op as one entry at index applied+1 with time t. Returns kv_apply's result;
 * *res gets the per-entry result. */
int su_apply(kv_store_t *s, uint64_t t, const proto_op_t *op, kv_result_t *res);

/* Shorthands: return res.status (0 or KV_E*), *rev gets the op's revision (may be NULL). */
int su_bucket_add(kv_store_t *s, const char *name, uint32_t history, uint64_t max_age_ms);
int su_put(kv_store_t *s, const char *b, const char *k, const char *v, uint64_t *rev);
int su_op(kv_store_t *s, uint64_t t, uint8_t opc, const char *b, const char *k, const char *v,
	  uint64_t rev_arg, uint64_t *rev);

/* Read the latest value of a key into out (NUL-terminated); returns kv_get's code. */
int su_get(kv_store_t *s, const char *b, const char *k, uint64_t at, char *out, size_t cap,
	   proto_rec_t *rec);

/* The whole snapshot of s in memory (malloc'd, *len bytes). */
uint8_t *su_snapshot(kv_store_t *s, size_t *len, kv_snap_meta_t *meta);

/* Install a snapshot from memory into dir. */
int su_install(const char *dir, const uint8_t *p, size_t len, kv_snap_meta_t *meta);

/* Entries in one LMDB database of the store ("keys", "revs", "ttl", ...). */
uint64_t su_db_entries(kv_store_t *s, const char *db);

/* Latest-record entries (all buckets, tombstones included) in the main database. */
uint64_t su_key_records(kv_store_t *s);

/* The revision index holds exactly one item (in its runs) per retained record (latest and
 * hist), each naming that record's bucket id and key, in well-formed runs: 0, or -1 with the
 * first mismatch on stderr. */
int su_check_revs(kv_store_t *s);

/* Items (revisions) in the revision index, whatever runs hold them. */
uint64_t su_revs_items(kv_store_t *s);

#endif
