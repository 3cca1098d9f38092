/*
 * geokv-restore: build a fresh member's data dir from a `geokv snapshot save` file.
 *
 *   geokv-restore --data DIR FILE
 *
 * The file is the store's snapshot stream (core/kv_snapshot.c): kv_snapshot_install checks
 * every chunk's checksum and the trailer, and builds DIR/state from it (nothing usable is
 * left on a mismatch). DIR/raft gets an empty log whose snapshot meta is the store's applied
 * index, so geokv-primary starts on it as on a member that compacted its log there: it
 * founds a group with its configured members and goes on from that revision. Refuses a
 * DIR that already holds a state/ or raft/ (restore into a fresh dir; never over a member).
 *
 * Restoring a whole group: restore the same file into every member's dir, then start them
 * all (equal content, revision and applied index everywhere; `geokv status --checksum`
 * shows equal checksums). Or restore one member, start it alone, and let new members catch
 * up from it by snapshot.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/kv.h"
#include "core/log.h"
#include "proto/errors.h"
#include "proto/version.h"

static long read_cb(void *ctx, void *p, size_t cap)
{
	FILE *f = ctx;
	size_t n = fread(p, 1, cap, f);

	if (n == 0 && ferror(f))
		return -EIO;
	return (long)n;
}

/* A directory that is absent or empty. */
static bool fresh(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	bool empty = true;

	if (!d)
		return errno == ENOENT;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			empty = false;
	closedir(d);
	return empty;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: geokv-restore --data DIR FILE\n\n"
		   "Build a fresh geokv-primary data dir (DIR/state, DIR/raft) from FILE, a\n"
		   "snapshot written by 'geokv snapshot save'; every chunk's checksum is checked.\n"
		   "Then start: geokv-primary --data DIR ...\n\n"
		   "  -d, --data DIR       the data dir to create (must not hold state/ or raft/)\n"
		   "  -V, --version        print the version\n"
		   "  -h, --help           this help\n");
}

int main(int argc, char **argv)
{
	static const struct option lo[] = {
		{"data", required_argument, NULL, 'd'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *data = NULL;
	char state[4200], raft[4200];
	kv_snap_meta_t m;
	kv_log_t *log;
	FILE *f;
	int ch, rc;

	while ((ch = getopt_long(argc, argv, "d:Vh", lo, NULL)) != -1) {
		switch (ch) {
		case 'd':
			data = optarg;
			break;
		case 'V':
			printf("geokv-restore %s\n", geokv_version());
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!data || optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	snprintf(state, sizeof state, "%s/state", data);
	snprintf(raft, sizeof raft, "%s/raft", data);
	if (!fresh(state) || !fresh(raft)) {
		fprintf(stderr, "geokv-restore: %s already holds a store or a log: restore into a "
				"fresh data dir\n", data);
		return 1;
	}
	if (mkdir(data, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, "geokv-restore: %s: %s\n", data, strerror(errno));
		return 1;
	}
	if ((f = fopen(argv[optind], "rb")) == NULL) {
		fprintf(stderr, "geokv-restore: %s: %s\n", argv[optind], strerror(errno));
		return 1;
	}
	rc = kv_snapshot_install(state, NULL, read_cb, f, &m);
	fclose(f);
	if (rc != 0) {
		fprintf(stderr, "geokv-restore: %s: %s\n", argv[optind], rc == KV_ECORRUPT ?
			"not a complete geokv snapshot (a checksum or the trailer does not match)" :
			geokv_strerror(rc));
		return 1;
	}
	/* The log continues after the store's applied index; the members come from the
	 * daemon's configuration at its first start (an empty conf: the founders). */
	kv_log_snap_t snap = {.index = m.applied, .term = 1};
	/* committed through the snapshot, as on a member that compacted there: the daemon's
	 * replay then starts after it */
	kv_log_hard_t hs = {.term = 1, .vote = 0, .commit = m.applied};
	if ((rc = kv_log_open(&log, raft, NULL)) != 0 || (rc = kv_log_reset(log, &snap)) != 0 ||
	    (rc = kv_log_set_hard(log, &hs)) != 0 || (rc = kv_log_sync(log)) != 0) {
		fprintf(stderr, "geokv-restore: %s: %s\n", raft, geokv_strerror(rc));
		return 1;
	}
	kv_log_close(log);
	printf("restored %s into %s: applied %" PRIu64 ", revision %" PRIu64 ", %" PRIu64
	       " records\n", argv[optind], data, m.applied, m.revision, m.records);
	return 0;
}
