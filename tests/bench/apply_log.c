/*
 * apply_log: the store's own apply rate for a given log, the baseline of catchup.sh.
 *
 *   apply_log RAFT_DIR STATE_DIR
 *
 * Reads every entry of a stopped primary's raft/ log and applies it with kv_apply into a
 * fresh store in STATE_DIR, in calls of up to 4096 entries (the primary's APPLY_CHUNK), with
 * the envelope stripped as the primary and the feed do. Only the kv_apply calls are timed.
 * Prints "entries N", "apply_rate <entries/s>".
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/kv.h"
#include "core/log.h"
#include "proto/errors.h"

#define CHUNK 4096

static kv_entry_in_t in[CHUNK];
static kv_result_t res[CHUNK];
static uint8_t *copy[CHUNK];
static size_t n;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	kv_log_t *lg;
	kv_store_t *s;
	kv_log_rtxn_t t = {0};
	kv_opts_t so = {.flags = KV_OPEN_NOSYNC, .map_size = 4ull << 30};
	uint64_t first, last, total = 0;
	double spent = 0;

	if (argc != 3) {
		fprintf(stderr, "usage: apply_log RAFT_DIR STATE_DIR\n");
		return 2;
	}
	int orc;
	if ((orc = kv_log_open(&lg, argv[1], NULL)) != 0 || (orc = kv_open(&s, argv[2], &so)) != 0) {
		fprintf(stderr, "apply_log: cannot open %s or %s: %s\n", argv[1], argv[2],
			geokv_strerror(orc));
		return 1;
	}
	first = kv_log_first_index(lg);
	last = kv_log_last_index(lg);
	for (uint64_t i = first; i <= last; i++) {
		kv_log_entry_t e;
		int rc;
		if (!t.active && (rc = kv_log_read_begin(lg, &t)) != 0) {
			fprintf(stderr, "apply_log: read: %s\n", geokv_strerror(rc));
			return 1;
		}
		if ((rc = kv_log_get(&t, i, &e)) != 0) {
			fprintf(stderr, "apply_log: entry %" PRIu64 ": %s\n", i, geokv_strerror(rc));
			return 1;
		}
		if (e.type == KV_LOG_NORMAL && e.len > 13 && e.data[0] == 0x81) {
			/* copied: the read txn ends before apply (a remap waits for no readers) */
			copy[n] = malloc(e.len - 13);
			for (size_t k = 0; k < e.len - 13; k++)
				copy[n][k] = e.data[13 + k];
			in[n] = (kv_entry_in_t){e.index, copy[n], e.len - 13};
			n++;
		}
		if (n == CHUNK || (i == last && n > 0)) {
			kv_log_read_end(&t);
			double t0 = now_s();
			if ((rc = kv_apply(s, in, n, res)) != 0) {
				fprintf(stderr, "apply_log: apply: %s\n", geokv_strerror(rc));
				return 1;
			}
			spent += now_s() - t0;
			total += n;
			for (size_t k = 0; k < n; k++)
				free(copy[k]);
			n = 0;
		}
	}
	if (t.active)
		kv_log_read_end(&t);
	kv_log_read_close(&t);
	printf("entries %" PRIu64 "\napply_rate %.0f\n", total, spent > 0 ? (double)total / spent : 0);
	kv_close(s);
	kv_log_close(lg);
	return 0;
}
