/* core/nodestat: one writer, readers see consistent published values. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/nodestat.h"
#include "proto/proto.h"

static char dir[64];

static void mkdir_tmp(void)
{
	strcpy(dir, "/tmp/gw-ns.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void rm_tmp(void)
{
	char p[128];
	snprintf(p, sizeof p, "%s/nodestat", dir);
	unlink(p);
	rmdir(dir);
}

TestSuite(kv_nodestat, .init = mkdir_tmp, .fini = rm_tmp);

Test(kv_nodestat, reader_before_writer_is_enoent)
{
	kv_nodestat_t r;
	cr_assert_eq(kv_nodestat_open_reader(&r, dir), -ENOENT);
	kv_nodestat_close(&r);
}

Test(kv_nodestat, publish_then_read_and_second_writer_refused)
{
	kv_nodestat_t w, w2, r;
	kv_nodestat_data_t d;
	cr_assert_eq(kv_nodestat_open_writer(&w, dir, PROTO_ROLE_LEAF, 9), 0);
	cr_assert_eq(kv_nodestat_open_writer(&w2, dir, PROTO_ROLE_LEAF, 9), -EBUSY);
	cr_assert_eq(kv_nodestat_open_reader(&r, dir), 0);
	w.last.revision = 77;
	w.last.flags = KV_NS_FEED;
	w.last.role = 1234; /* ignored: role is fixed at open */
	kv_nodestat_publish(&w, &w.last);
	cr_assert_eq(kv_nodestat_read(&r, &d), 0);
	cr_assert_eq(d.revision, 77);
	cr_assert_eq(d.role, PROTO_ROLE_LEAF);
	cr_assert_eq(d.node_id, 9);
	cr_assert_eq(d.pid, (uint32_t)getpid());
	cr_assert_neq(d.updated_ms, 0);
	cr_assert_not(kv_nodestat_moved(&r, dir));
	kv_nodestat_close(&w);
	cr_assert_eq(kv_nodestat_read(&r, &d), 0);
	cr_assert_eq(d.pid, 0, "clean close clears pid");
	cr_assert(d.flags & KV_NS_STOPPING);
	cr_assert_not(d.flags & KV_NS_FEED);
	kv_nodestat_close(&r);
}

static volatile int stop;
static void *writer(void *arg)
{
	kv_nodestat_t *w = arg;
	for (uint64_t i = 1; !stop; i++) {
		w->last.applied = i;
		w->last.revision = i * 3;
		w->last.commit = i * 5;
		kv_nodestat_publish(w, &w->last);
	}
	return NULL;
}

Test(kv_nodestat, seqlock_never_shows_a_torn_publish)
{
	kv_nodestat_t w, r;
	kv_nodestat_data_t d;
	pthread_t t;
	cr_assert_eq(kv_nodestat_open_writer(&w, dir, PROTO_ROLE_PRIMARY, 1), 0);
	cr_assert_eq(kv_nodestat_open_reader(&r, dir), 0);
	pthread_create(&t, NULL, writer, &w);
	for (int i = 0; i < 200000; i++) {
		int rc = kv_nodestat_read(&r, &d);
		if (rc == -EAGAIN)
			continue;
		cr_assert_eq(rc, 0);
		cr_assert_eq(d.revision, d.applied * 3);
		cr_assert_eq(d.commit, d.applied * 5);
	}
	stop = 1;
	pthread_join(t, NULL);
	kv_nodestat_close(&r);
	kv_nodestat_close(&w);
}

Test(kv_nodestat, replaced_file_is_detected)
{
	kv_nodestat_t w, r;
	char p[128];
	cr_assert_eq(kv_nodestat_open_writer(&w, dir, PROTO_ROLE_LEAF, 1), 0);
	cr_assert_eq(kv_nodestat_open_reader(&r, dir), 0);
	kv_nodestat_close(&w);
	snprintf(p, sizeof p, "%s/nodestat", dir);
	unlink(p);
	cr_assert(kv_nodestat_moved(&r, dir));
	cr_assert_eq(kv_nodestat_open_writer(&w, dir, PROTO_ROLE_LEAF, 1), 0);
	cr_assert(kv_nodestat_moved(&r, dir));
	kv_nodestat_close(&r);
	cr_assert_eq(kv_nodestat_open_reader(&r, dir), 0);
	cr_assert_not(kv_nodestat_moved(&r, dir));
	kv_nodestat_close(&r);
	kv_nodestat_close(&w);
}

Test(kv_nodestat, zeroed_handle_close_is_harmless)
{
	kv_nodestat_t z = {0};
	kv_nodestat_close(&z);
	cr_assert_eq(kv_nodestat_read(&z, &(kv_nodestat_data_t){0}), -ENOENT);
}
