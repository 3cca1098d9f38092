/*
 * The core allocates nothing per message: this binary interposes malloc and friends
 * (glibc resolves them to the executable's definitions first) and counts the calls made
 * while the cluster driver is inside a raft_* call, over a steady workload: proposals,
 * batched and pipelined appends, heartbeats, ReadIndex, forwarded proposals, and a
 * follower catching up after a partition. raft_init (which preallocates) is not counted.
 * Built only without sanitizers, which interpose malloc themselves.
 */
#include <criterion/criterion.h>
#include <stddef.h>
#include <string.h>

#include "tests/raft/cluster.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static unsigned long allocs_in_raft;

void *malloc(size_t n);
void *calloc(size_t n, size_t m);
void *realloc(void *p, size_t n);
void free(void *p);

void *malloc(size_t n)
{
	if (tc_in_raft > 0)
		allocs_in_raft++;
	return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
	if (tc_in_raft > 0)
		allocs_in_raft++;
	return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
	if (tc_in_raft > 0)
		allocs_in_raft++;
	return __libc_realloc(p, n);
}

void free(void *p)
{
	if (tc_in_raft > 0 && p != NULL)
		allocs_in_raft++;
	__libc_free(p);
}

Test(raft_noalloc, steady_replication_allocates_nothing)
{
	tc_t c;
	char buf[200];
	uint64_t before, forwarded = 0;

	tc_init(&c, 3, 3, NULL);
	tc_run(&c, 40);
	int l = tc_leader(&c);

	cr_assert_neq(l, 0);
	memset(buf, 'x', sizeof buf);
	allocs_in_raft = 0;
	before = c.n_applied_normal[1];
	for (int round = 0; round < 2000; round++) {
		int f = l % 3 + 1;

		tc_in_raft++;
		for (int k = 0; k < 5; k++)
			cr_assert_eq(raft_propose(&c.r[l], buf, 1 + (size_t)(round + k) % sizeof buf), 0);
		forwarded += raft_propose(&c.r[f], buf, 10) == RAFT_FORWARDED;
		cr_assert_eq(raft_read_index(&c.r[l], (uint64_t)round), 0);
		tc_in_raft--;
		tc_ready(&c, f);
		if (round % 500 == 100)
			c.cut[l][f] = true;   /* the follower falls behind... */
		if (round % 500 == 200)
			c.cut[l][f] = false;  /* ...and catches up through probing */
		tc_run(&c, 1);
	}
	tc_run(&c, 20);
	cr_assert_gt(forwarded, 1000);
	cr_assert_eq(c.n_applied_normal[1] - before, 2000 * 5 + forwarded, "all proposals applied");
	cr_assert_eq(allocs_in_raft, 0, "%lu allocations inside raft calls", allocs_in_raft);
	tc_free(&c);
}
