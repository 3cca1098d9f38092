/* geokv_strerror / geokv_errname over every band, and the one-line log format. */
#include <criterion/criterion.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "proto/errors.h"
#include "proto/log.h"
#include "raft/raft.h"

Test(errors, every_kv_and_proto_code_has_its_own_name_and_text)
{
	const struct { int lo, hi; } bands[] = {{KV_ELAST + 1, KV_ENOTFOUND},
						{PROTO_ELAST + 1, PROTO_EAGAIN}};
	for (size_t b = 0; b < 2; b++) {
		for (int e = bands[b].hi; e >= bands[b].lo; e--) {
			const char *name = geokv_errname(e), *text = geokv_strerror(e);
			cr_assert_str_neq(name, "EUNKNOWN", "code %d has no name", e);
			cr_assert_str_neq(text, "unknown error", "code %d has no text", e);
			/* names are unique: a duplicate would make logs ambiguous */
			for (int f = e - 1; f >= bands[b].lo; f--)
				cr_assert_str_neq(name, geokv_errname(f), "codes %d and %d share a name", e, f);
		}
	}
}

Test(errors, errno_raft_and_success_are_named)
{
	cr_assert_str_eq(geokv_strerror(0), "success");
	cr_assert_str_eq(geokv_errname(0), "OK");
	cr_assert_str_eq(geokv_errname(-ECONNREFUSED), "ECONNREFUSED");
	cr_assert(strstr(geokv_strerror(-ENOENT), "no such file") != NULL);
	cr_assert_str_eq(geokv_strerror(RAFT_ENOTLEADER), raft_strerror(RAFT_ENOTLEADER));
	cr_assert_str_eq(geokv_strerror(-29999), "unknown error");
	cr_assert_str_eq(geokv_strerror(12345), "unknown error");
}

/* Capture stderr into a pipe around one call. */
static void capture(char *out, size_t cap, void (*fn)(void))
{
	int p[2], saved = dup(STDERR_FILENO);
	cr_assert_eq(pipe(p), 0);
	dup2(p[1], STDERR_FILENO);
	fn();
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(p[1]);
	ssize_t n = read(p[0], out, cap - 1);
	close(p[0]);
	out[n > 0 ? n : 0] = '\0';
}

static void log_one(void) { GK_INFO("raft", "became leader", "term=%d node=%d", 7, 2); }
static void log_debug(void) { GK_DEBUG("raft", "noise", "x=%d", 1); }
static void log_long(void)
{
	static char big[5000];
	memset(big, 'a', sizeof big - 1);
	GK_WARN("test", "long", "v=%s", big);
}

Test(log, one_line_with_utc_ms_time_level_component_message_and_pairs)
{
	char buf[4096];
	regex_t re;
	geokv_log_set_level(GEOKV_LOG_INFO);
	capture(buf, sizeof buf, log_one);
	cr_assert_eq(regcomp(&re, "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
			     "INFO raft became leader term=7 node=2\n$", REG_EXTENDED), 0);
	cr_assert_eq(regexec(&re, buf, 0, NULL, 0), 0, "got: %s", buf);
	regfree(&re);
}

Test(log, level_filter_drops_lower_levels)
{
	char buf[256];
	geokv_log_set_level(GEOKV_LOG_INFO);
	capture(buf, sizeof buf, log_debug);
	cr_assert_str_empty(buf);
	geokv_log_set_level(GEOKV_LOG_DEBUG);
	capture(buf, sizeof buf, log_debug);
	cr_assert(strstr(buf, " DEBUG raft noise x=1\n") != NULL, "got: %s", buf);
}

Test(log, an_overlong_line_is_truncated_but_stays_one_line)
{
	char buf[8192];
	geokv_log_set_level(GEOKV_LOG_INFO);
	capture(buf, sizeof buf, log_long);
	size_t n = strlen(buf);
	cr_assert(n > 1000 && n <= 2048, "length %zu", n);
	cr_assert_eq(buf[n - 1], '\n');
	cr_assert_null(memchr(buf, '\n', n - 1));
}

Test(log, parse_level_accepts_names_in_any_case_and_rejects_others)
{
	enum geokv_log_level l;
	cr_assert_eq(geokv_log_parse_level("debug", &l), 0);
	cr_assert_eq(l, GEOKV_LOG_DEBUG);
	cr_assert_eq(geokv_log_parse_level("WARNING", &l), 0);
	cr_assert_eq(l, GEOKV_LOG_WARN);
	cr_assert_eq(geokv_log_parse_level("Error", &l), 0);
	cr_assert_eq(l, GEOKV_LOG_ERROR);
	cr_assert_eq(geokv_log_parse_level("verbose", &l), -EINVAL);
}
