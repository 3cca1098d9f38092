/*
 * unsynced-recover JOURNAL_DIR: after the processes that ran under unsynced.so are dead, roll
 * every journaled file back to what its last fsync covered (a power loss): undo records in
 * reverse order, truncation to the size at the first one, then durable (O_DSYNC) writes
 * again, in order. Prints one line per file ("path: dropped N bytes in M writes"), removes
 * the journals, exit 0; 1 on an error.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unsynced.h"

typedef struct rec {
	unu_rec_t h;
	uint8_t *data;
} rec_t;

static int recover(const char *jpath, const char *path)
{
	FILE *f = fopen(jpath, "rb");
	rec_t *v = NULL;
	size_t n = 0, cap = 0, undone = 0, bytes = 0;
	int fd, rc = 0;

	if (!f)
		return -1;
	for (;;) {
		rec_t r;
		if (fread(&r.h, sizeof r.h, 1, f) != 1)
			break;
		if ((r.h.kind != UNU_UNDO && r.h.kind != UNU_REDO) || r.h.len > (1ULL << 34)) {
			fprintf(stderr, "%s: bad journal record\n", jpath);
			rc = -1;
			break;
		}
		r.data = malloc(r.h.len ? r.h.len : 1);
		if (!r.data || fread(r.data, 1, r.h.len, f) != r.h.len) {
			free(r.data); /* a torn last record: its write never happened */
			break;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			v = realloc(v, cap * sizeof *v);
			if (!v) {
				perror("realloc");
				exit(1);
			}
		}
		v[n++] = r;
	}
	fclose(f);
	if (n == 0 || rc != 0)
		goto out;
	if ((fd = open(path, O_RDWR)) < 0) {
		if (errno == ENOENT) /* removed since: nothing to roll back */
			goto out;
		perror(path);
		rc = -1;
		goto out;
	}
	uint64_t size0 = UINT64_MAX;
	for (size_t i = n; i-- > 0;) {
		if (v[i].h.kind != UNU_UNDO)
			continue;
		if (v[i].h.len && pwrite(fd, v[i].data, v[i].h.len, (off_t)v[i].h.off) != (ssize_t)v[i].h.len) {
			perror("pwrite");
			rc = -1;
		}
		size0 = v[i].h.size; /* ends as the first record's: the size at the last sync */
		undone++;
		bytes += v[i].h.len;
	}
	if (size0 != UINT64_MAX && ftruncate(fd, (off_t)size0) != 0) {
		perror("ftruncate");
		rc = -1;
	}
	for (size_t i = 0; i < n; i++)
		if (v[i].h.kind == UNU_REDO &&
		    pwrite(fd, v[i].data, v[i].h.len, (off_t)v[i].h.off) != (ssize_t)v[i].h.len) {
			perror("pwrite");
			rc = -1;
		}
	if (fsync(fd) != 0)
		rc = -1;
	close(fd);
	printf("%s: dropped %zu unsynced writes (%zu bytes overwritten), size %llu\n", path, undone,
	       bytes, (unsigned long long)size0);
out:
	for (size_t i = 0; i < n; i++)
		free(v[i].data);
	free(v);
	return rc;
}

int main(int argc, char **argv)
{
	DIR *d;
	struct dirent *e;
	int rc = 0;

	if (argc != 2) {
		fprintf(stderr, "usage: unsynced-recover JOURNAL_DIR\n");
		return 2;
	}
	if (!(d = opendir(argv[1]))) {
		perror(argv[1]);
		return 1;
	}
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		char jpath[4096], path[4096];
		if (l < 6 || strcmp(e->d_name + l - 5, ".undo") != 0)
			continue;
		snprintf(jpath, sizeof jpath, "%s/%s", argv[1], e->d_name);
		snprintf(path, sizeof path, "%.*s", (int)(l - 5), e->d_name);
		for (char *p = path; *p; p++)
			if (*p == '%')
				*p = '/';
		if (recover(jpath, path) != 0)
			rc = 1;
		unlink(jpath);
	}
	closedir(d);
	return rc;
}
