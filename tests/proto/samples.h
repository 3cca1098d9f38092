/*
 * Sample messages for the codec tests and the fuzz seed corpus generator: one encoded
 * example of every message, op and response, plus a "check" decoder per kind that decodes
 * fully (iterating batches and lists) and re-encodes, so a test can assert both that good
 * input decodes to the same bytes and that bad input is refused.
 */
#ifndef GEOKV_TESTS_PROTO_SAMPLES_H
#define GEOKV_TESTS_PROTO_SAMPLES_H

#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

enum sample_kind {
	SK_HELLO, SK_HELLO_OK, SK_ERROR, SK_OP, SK_ENTRY, SK_WRITE_RESP, SK_BATCH_RESP, SK_REC,
	SK_BUCKET_INFO, SK_STATUS, SK_LIST_KEYS, SK_LIST_HISTORY, SK_LIST_BUCKETS, SK_HASH,
	SK_WATCH_RESP, SK_SNAP_RESP, SK_LIST_SCAN, SK_NKINDS
};

typedef struct sample {
	const char *name;
	enum sample_kind kind;
	uint8_t buf[4096];
	size_t len;
} sample_t;

/* Fills `out` (capacity max) with every sample; returns how many. */
size_t samples_build(sample_t *out, size_t max);

/*
 * Decode `p` as `kind` completely (every batch op, every list item) and re-encode it into
 * `re` (capacity recap). Returns 0 with *relen set, or the first decode error.
 */
int sample_check(enum sample_kind kind, const uint8_t *p, size_t len, uint8_t *re, size_t recap,
		 size_t *relen);

#endif
