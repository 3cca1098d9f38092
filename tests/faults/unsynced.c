/*
 * unsynced.so: an LD_PRELOAD storage shim that lets a test drop, after a crash, every byte a
 * process wrote but did not fsync: what a power loss does to a disk's write cache, and what
 * Jepsen's NATS analysis did with LazyFS. A kill -9 alone loses nothing (the page cache
 * survives the process), so it cannot show that a daemon acknowledged before fsync.
 *
 * How: for each write to a file under $GEOKV_UNSYNCED_DIR (lock.mdb excepted: LMDB's reader
 * table is not content), the bytes it overwrites are first appended to an undo journal kept
 * under $GEOKV_UNSYNCED_JOURNAL, with the file's size as of its last sync. fsync/fdatasync of
 * the file (or sync/syncfs) empties its journal. A write through an O_SYNC/O_DSYNC descriptor
 * is durable at once: it is journaled as a redo record instead. `unsynced-recover JOURNAL`
 * (unsynced_recover.c) then rolls every file back: undo records in reverse order, truncation
 * to the synced size, then the durable records again in order.
 *
 * Model limits (documented in tests/faults/README.md): directory operations (rename, unlink,
 * mkdir) are treated as durable at once; writes are dropped whole, never torn.
 */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include "unsynced.h"

#define MAXFD 4096

typedef struct tracked {
	int jfd;                 /* journal fd, -1 = not tracked */
	int dsync;               /* opened O_SYNC / O_DSYNC */
	char path[PATH_MAX];
} tracked_t;

static tracked_t fds[MAXFD];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static const char *dir_prefix, *jdir;
static int inited;

static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_close)(int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_ftruncate)(int, off_t);
static void (*real_sync)(void);
static int (*real_syncfs)(int);

static void init(void)
{
	if (inited)
		return;
	real_open = dlsym(RTLD_NEXT, "open");
	real_openat = dlsym(RTLD_NEXT, "openat");
	real_close = dlsym(RTLD_NEXT, "close");
	real_write = dlsym(RTLD_NEXT, "write");
	real_pwrite = dlsym(RTLD_NEXT, "pwrite");
	real_writev = dlsym(RTLD_NEXT, "writev");
	real_pwritev = dlsym(RTLD_NEXT, "pwritev");
	real_fsync = dlsym(RTLD_NEXT, "fsync");
	real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
	real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
	real_sync = dlsym(RTLD_NEXT, "sync");
	real_syncfs = dlsym(RTLD_NEXT, "syncfs");
	dir_prefix = getenv("GEOKV_UNSYNCED_DIR");
	jdir = getenv("GEOKV_UNSYNCED_JOURNAL");
	for (int i = 0; i < MAXFD; i++)
		fds[i].jfd = -1;
	inited = 1;
}

__attribute__((constructor)) static void ctor(void) { init(); }

static void die(const char *what)
{
	char m[256];
	int n = snprintf(m, sizeof m, "unsynced.so: %s: %s\n", what, strerror(errno));
	if (real_write)
		(void)real_write(2, m, (size_t)n);
	abort();
}

/* One journal per file path, named by the path with '/' as '%'. */
static int journal_open(const char *path)
{
	char name[PATH_MAX], *q;
	int n = snprintf(name, sizeof name, "%s/", jdir);

	for (q = name + n; *path && q < name + sizeof name - 8; path++)
		*q++ = *path == '/' ? '%' : *path;
	memcpy(q, ".undo", 6);
	int fd = real_open(name, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd < 0)
		die("open journal");
	return fd;
}

static void track(int fd, const char *path, int flags)
{
	char abs[PATH_MAX];
	const char *base;

	if (fd < 0 || fd >= MAXFD || !dir_prefix || !jdir || !(flags & (O_WRONLY | O_RDWR)))
		return;
	if (path[0] != '/') {
		if (!getcwd(abs, sizeof abs))
			return;
		size_t l = strlen(abs);
		snprintf(abs + l, sizeof abs - l, "/%s", path);
	} else {
		snprintf(abs, sizeof abs, "%s", path);
	}
	if (strncmp(abs, dir_prefix, strlen(dir_prefix)) != 0)
		return;
	base = strrchr(abs, '/');
	if (base && strcmp(base + 1, "lock.mdb") == 0)
		return;
	pthread_mutex_lock(&mu);
	if (fds[fd].jfd >= 0)
		real_close(fds[fd].jfd);
	fds[fd].jfd = journal_open(abs);
	fds[fd].dsync = (flags & (O_SYNC | O_DSYNC)) != 0;
	snprintf(fds[fd].path, sizeof fds[fd].path, "%s", abs);
	pthread_mutex_unlock(&mu);
}

static void jwrite(int jfd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n > 0) {
		ssize_t w = real_write(jfd, b, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			die("journal write");
		b += w;
		n -= (size_t)w;
	}
}

/*
 * Before a write of n bytes at off: journal what it replaces (undo) or, for a durable write,
 * what it writes (redo, filled in after the write by the caller passing `data`).
 */
static void journal_before(int fd, off_t off, size_t n)
{
	tracked_t *t = &fds[fd];
	struct stat st;
	unu_rec_t r;

	if (fstat(fd, &st) != 0)
		die("fstat");
	r.kind = UNU_UNDO;
	r.off = (uint64_t)off;
	r.size = (uint64_t)st.st_size;
	r.len = 0;
	if ((uint64_t)off < (uint64_t)st.st_size)
		r.len = (uint64_t)st.st_size - (uint64_t)off < n ? (uint64_t)st.st_size - (uint64_t)off : n;
	uint8_t *old = r.len ? malloc(r.len) : NULL;
	if (r.len && !old)
		die("malloc");
	if (r.len && pread(fd, old, r.len, off) != (ssize_t)r.len)
		die("pread");
	jwrite(t->jfd, &r, sizeof r);
	if (r.len)
		jwrite(t->jfd, old, r.len);
	free(old);
}

static void journal_redo(int fd, off_t off, const struct iovec *iov, int cnt, size_t done)
{
	unu_rec_t r = {.kind = UNU_REDO, .off = (uint64_t)off, .size = 0, .len = done};

	jwrite(fds[fd].jfd, &r, sizeof r);
	for (int i = 0; i < cnt && done > 0; i++) {
		size_t l = iov[i].iov_len < done ? iov[i].iov_len : done;
		jwrite(fds[fd].jfd, iov[i].iov_base, l);
		done -= l;
	}
}

static size_t iov_total(const struct iovec *iov, int cnt)
{
	size_t n = 0;
	for (int i = 0; i < cnt; i++)
		n += iov[i].iov_len;
	return n;
}

static int tracked_fd(int fd) { return fd >= 0 && fd < MAXFD && fds[fd].jfd >= 0; }

/* The one write path: positional (off >= 0) or at the file offset (off < 0). */
static ssize_t do_write(int fd, const struct iovec *iov, int cnt, off_t off)
{
	ssize_t w;

	init();
	if (!tracked_fd(fd))
		return off < 0 ? real_writev(fd, iov, cnt) : real_pwritev(fd, iov, cnt, off);
	pthread_mutex_lock(&mu);
	off_t at = off >= 0 ? off : lseek(fd, 0, SEEK_CUR);
	if (at < 0)
		die("lseek");
	if (!fds[fd].dsync)
		journal_before(fd, at, iov_total(iov, cnt));
	w = off < 0 ? real_writev(fd, iov, cnt) : real_pwritev(fd, iov, cnt, off);
	if (w > 0 && fds[fd].dsync)
		journal_redo(fd, at, iov, cnt, (size_t)w);
	pthread_mutex_unlock(&mu);
	return w;
}

static void synced(int fd)
{
	pthread_mutex_lock(&mu);
	if (tracked_fd(fd)) {
		/* every fd of the same file shares the journal by path: empty it */
		if (real_ftruncate(fds[fd].jfd, 0) != 0)
			die("truncate journal");
	}
	pthread_mutex_unlock(&mu);
}

int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;
	int fd;

	init();
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	fd = real_open(path, flags, mode);
	if (fd >= 0)
		track(fd, path, flags);
	return fd;
}
int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int openat(int dfd, const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;
	int fd;

	init();
	if (flags & (O_CREAT | O_TMPFILE)) {
		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	fd = real_openat(dfd, path, flags, mode);
	if (fd >= 0 && (dfd == AT_FDCWD || path[0] == '/'))
		track(fd, path, flags);
	return fd;
}
int openat64(int dfd, const char *path, int flags, ...) __attribute__((alias("openat")));

int close(int fd)
{
	init();
	if (fd >= 0 && fd < MAXFD) {
		pthread_mutex_lock(&mu);
		if (fds[fd].jfd >= 0) {
			real_close(fds[fd].jfd);
			fds[fd].jfd = -1;
		}
		pthread_mutex_unlock(&mu);
	}
	return real_close(fd);
}

ssize_t write(int fd, const void *b, size_t n)
{
	struct iovec v = {(void *)b, n};
	init();
	if (!tracked_fd(fd))
		return real_write(fd, b, n);
	return do_write(fd, &v, 1, -1);
}

ssize_t pwrite(int fd, const void *b, size_t n, off_t off)
{
	struct iovec v = {(void *)b, n};
	init();
	if (!tracked_fd(fd))
		return real_pwrite(fd, b, n, off);
	return do_write(fd, &v, 1, off);
}
ssize_t pwrite64(int fd, const void *b, size_t n, off_t off) __attribute__((alias("pwrite")));

ssize_t writev(int fd, const struct iovec *iov, int cnt) { return do_write(fd, iov, cnt, -1); }

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	return do_write(fd, iov, cnt, off);
}
ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off_t off) __attribute__((alias("pwritev")));

int ftruncate(int fd, off_t len)
{
	init();
	if (tracked_fd(fd)) {
		/* journal the bytes a shrink drops and the size before it */
		pthread_mutex_lock(&mu);
		struct stat st;
		if (fstat(fd, &st) == 0 && len < st.st_size)
			journal_before(fd, len, (size_t)(st.st_size - len));
		else if (fstat(fd, &st) == 0)
			journal_before(fd, st.st_size, 0);
		pthread_mutex_unlock(&mu);
	}
	return real_ftruncate(fd, len);
}
int ftruncate64(int fd, off_t len) __attribute__((alias("ftruncate")));

int fsync(int fd)
{
	init();
	int rc = real_fsync(fd);
	if (rc == 0)
		synced(fd);
	return rc;
}

int fdatasync(int fd)
{
	init();
	int rc = real_fdatasync(fd);
	if (rc == 0)
		synced(fd);
	return rc;
}

static void sync_all(void)
{
	pthread_mutex_lock(&mu);
	for (int i = 0; i < MAXFD; i++)
		if (fds[i].jfd >= 0 && real_ftruncate(fds[i].jfd, 0) != 0)
			die("truncate journal");
	pthread_mutex_unlock(&mu);
}

void sync(void)
{
	init();
	real_sync();
	sync_all();
}

int syncfs(int fd)
{
	init();
	int rc = real_syncfs(fd);
	if (rc == 0)
		sync_all();
	return rc;
}
