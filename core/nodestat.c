/*
 * Node status file (core/nodestat.h): layout, seqlock publish and read.
 *
 * Invariant: every field of the page other than the header words is written only between
 * the two increments of `seq` by the one writer holding the flock; readers never write.
 */
#include "core/nodestat.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proto/errors.h"

/* Field order is the file format: append only. */
enum ns_word {
	NSW_ROLE, NSW_FLAGS, NSW_NODE_ID, NSW_TERM, NSW_COMMIT, NSW_APPLIED, NSW_REVISION,
	NSW_CONTACT, NSW_LEADER_TIME, NSW_LAG_ENTRIES, NSW_LAG_MS, NSW_STARTED, NSW_UPDATED,
	NSW_PID, NSW_COUNT
};

struct kv_nodestat_page {
	_Atomic uint32_t magic;
	_Atomic uint32_t version;
	_Atomic uint32_t size;
	_Atomic uint32_t pid;
	_Atomic uint64_t seq;
	_Atomic uint64_t w[NSW_COUNT];
};

_Static_assert(sizeof(struct kv_nodestat_page) <= KV_NODESTAT_PAGE, "nodestat page overflow");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "nodestat needs lock-free 64-bit atomics");

uint64_t kv_nodestat_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int ns_path(char *buf, size_t cap, const char *dir)
{
	int n = snprintf(buf, cap, "%s/%s", dir, KV_NODESTAT_FILE);
	return (n < 0 || (size_t)n >= cap) ? -ENAMETOOLONG : 0;
}

static void ns_store(struct kv_nodestat_page *pg, const kv_nodestat_data_t *d)
{
	const uint64_t v[NSW_COUNT] = {
		[NSW_ROLE] = d->role, [NSW_FLAGS] = d->flags, [NSW_NODE_ID] = d->node_id,
		[NSW_TERM] = d->term, [NSW_COMMIT] = d->commit, [NSW_APPLIED] = d->applied,
		[NSW_REVISION] = d->revision, [NSW_CONTACT] = d->contact_ms,
		[NSW_LEADER_TIME] = d->leader_time_ms, [NSW_LAG_ENTRIES] = d->lag_entries,
		[NSW_LAG_MS] = d->lag_ms, [NSW_STARTED] = d->started_ms,
		[NSW_UPDATED] = d->updated_ms, [NSW_PID] = d->pid,
	};
	uint64_t s = atomic_load_explicit(&pg->seq, memory_order_relaxed);

	atomic_store_explicit(&pg->seq, s + 1, memory_order_relaxed);
	/* Orders the odd seq before the field stores (the classic seqlock writer fence). */
	atomic_thread_fence(memory_order_release);
	for (int i = 0; i < NSW_COUNT; i++)
		atomic_store_explicit(&pg->w[i], v[i], memory_order_relaxed);
	atomic_store_explicit(&pg->seq, s + 2, memory_order_release);
	atomic_store_explicit(&pg->pid, (uint32_t)d->pid, memory_order_relaxed);
}

static int ns_map(kv_nodestat_t *ns, int fd, int prot)
{
	struct stat st;
	void *p;

	if (fstat(fd, &st) != 0)
		return -errno;
	p = mmap(NULL, KV_NODESTAT_PAGE, prot, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	ns->page = p;
	ns->fd = fd;
	ns->dev = (uint64_t)st.st_dev;
	ns->ino = (uint64_t)st.st_ino;
	return 0;
}

int kv_nodestat_open_writer(kv_nodestat_t *ns, const char *dir, uint32_t role, uint64_t node_id)
{
	char path[PATH_MAX];
	struct kv_nodestat_page *pg;
	int fd, rc;

	memset(ns, 0, sizeof *ns);
	ns->fd = -1;
	if ((rc = ns_path(path, sizeof path, dir)) != 0)
		return rc;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		rc = (errno == EWOULDBLOCK) ? -EBUSY : -errno;
		goto fail;
	}
	/* Growing to a page never shrinks what readers mapped; a fresh file reads as zeros. */
	if (ftruncate(fd, KV_NODESTAT_PAGE) != 0) {
		rc = -errno;
		goto fail;
	}
	if ((rc = ns_map(ns, fd, PROT_READ | PROT_WRITE)) != 0)
		goto fail;
	ns->writer = true;
	pg = ns->page;
	/* Header last-but-one: a reader that sees the magic also sees version and size. */
	atomic_store_explicit(&pg->version, KV_NODESTAT_VERSION, memory_order_relaxed);
	atomic_store_explicit(&pg->size, (uint32_t)sizeof *pg, memory_order_relaxed);
	atomic_store_explicit(&pg->magic, KV_NODESTAT_MAGIC, memory_order_release);

	ns->role = role;
	ns->node_id = node_id;
	ns->started_ms = kv_nodestat_now_ms();
	kv_nodestat_publish(ns, &ns->last);
	return 0;
fail:
	close(fd);
	ns->fd = -1;
	return rc;
}

void kv_nodestat_publish(kv_nodestat_t *ns, const kv_nodestat_data_t *d)
{
	if (ns->page == NULL || !ns->writer)
		return;
	if (d != &ns->last)
		ns->last = *d;
	ns->last.role = ns->role;
	ns->last.node_id = ns->node_id;
	ns->last.started_ms = ns->started_ms;
	ns->last.pid = (uint32_t)getpid();
	ns->last.updated_ms = kv_nodestat_now_ms();
	ns_store(ns->page, &ns->last);
}

int kv_nodestat_open_reader(kv_nodestat_t *ns, const char *dir)
{
	char path[PATH_MAX];
	struct stat st;
	int fd, rc;

	memset(ns, 0, sizeof *ns);
	ns->fd = -1;
	if ((rc = ns_path(path, sizeof path, dir)) != 0)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	/* Mapping past EOF would SIGBUS on first touch: require the whole page first. */
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		goto fail;
	}
	if (st.st_size < KV_NODESTAT_PAGE) {
		rc = st.st_size == 0 ? -ENOENT : KV_ECORRUPT;
		goto fail;
	}
	if ((rc = ns_map(ns, fd, PROT_READ)) != 0)
		goto fail;
	if (atomic_load_explicit(&ns->page->magic, memory_order_acquire) != KV_NODESTAT_MAGIC) {
		rc = -ENOENT; /* created, header not yet written: a writer is starting */
		goto unmap;
	}
	if (atomic_load_explicit(&ns->page->version, memory_order_relaxed) < KV_NODESTAT_VERSION ||
	    atomic_load_explicit(&ns->page->size, memory_order_relaxed) <
		    sizeof(struct kv_nodestat_page)) {
		rc = KV_ECORRUPT;
		goto unmap;
	}
	return 0;
unmap:
	munmap(ns->page, KV_NODESTAT_PAGE);
	ns->page = NULL;
fail:
	close(fd);
	ns->fd = -1;
	return rc;
}

int kv_nodestat_read(const kv_nodestat_t *ns, kv_nodestat_data_t *out)
{
	const struct kv_nodestat_page *pg = ns->page;
	uint64_t v[NSW_COUNT];

	if (pg == NULL)
		return -ENOENT;
	for (int tries = 0; tries < KV_NODESTAT_READ_TRIES; tries++) {
		uint64_t s1 = atomic_load_explicit((_Atomic uint64_t *)&pg->seq, memory_order_acquire);
		if (s1 & 1)
			continue;
		for (int i = 0; i < NSW_COUNT; i++)
			v[i] = atomic_load_explicit((_Atomic uint64_t *)&pg->w[i], memory_order_relaxed);
		/* Orders the field loads before the second seq load. */
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit((_Atomic uint64_t *)&pg->seq, memory_order_relaxed) != s1)
			continue;
		out->role = (uint32_t)v[NSW_ROLE];
		out->flags = (uint32_t)v[NSW_FLAGS];
		out->node_id = v[NSW_NODE_ID];
		out->term = v[NSW_TERM];
		out->commit = v[NSW_COMMIT];
		out->applied = v[NSW_APPLIED];
		out->revision = v[NSW_REVISION];
		out->contact_ms = v[NSW_CONTACT];
		out->leader_time_ms = v[NSW_LEADER_TIME];
		out->lag_entries = v[NSW_LAG_ENTRIES];
		out->lag_ms = v[NSW_LAG_MS];
		out->started_ms = v[NSW_STARTED];
		out->updated_ms = v[NSW_UPDATED];
		out->pid = (uint32_t)v[NSW_PID];
		return 0;
	}
	return -EAGAIN;
}

bool kv_nodestat_moved(const kv_nodestat_t *ns, const char *dir)
{
	char path[PATH_MAX];
	struct stat st;

	if (ns->page == NULL || ns_path(path, sizeof path, dir) != 0 || stat(path, &st) != 0)
		return true;
	return (uint64_t)st.st_dev != ns->dev || (uint64_t)st.st_ino != ns->ino;
}

void kv_nodestat_close(kv_nodestat_t *ns)
{
	if (ns->page != NULL) {
		if (ns->writer) {
			ns->last.flags = (ns->last.flags & ~(uint32_t)KV_NS_FEED) | KV_NS_STOPPING;
			kv_nodestat_publish(ns, &ns->last);
			ns->last.pid = 0;
			ns_store(ns->page, &ns->last);
		}
		munmap(ns->page, KV_NODESTAT_PAGE);
		ns->page = NULL;
		/* Only an open handle owns its fd: a zeroed one must not close stdin. */
		close(ns->fd); /* also drops the writer's flock */
	}
	ns->fd = -1;
	ns->writer = false;
}
