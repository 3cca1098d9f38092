/*
 * proto/log.c under systemd: when stderr is the journal (JOURNAL_STREAM = stderr's
 * st_dev:st_ino), every line starts with its syslog priority "<N>" (sd-daemon(3)); anywhere
 * else, no prefix.
 *
 * Each case logs in a forked child whose stderr is a temporary file: the log module reads
 * JOURNAL_STREAM once per process, and the child's environment and stderr are its own.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto/log.h"

enum env_kind { ENV_NONE, ENV_MATCH, ENV_OTHER_INODE, ENV_GARBAGE };

/* Run the four levels in a child with stderr = a temp file and JOURNAL_STREAM per `kind`;
 * returns what the child wrote (static buffer). */
static const char *log_in_child(enum env_kind kind)
{
	static char out[4096];
	char path[] = "/tmp/geokv-logj-XXXXXX";
	int fd = mkstemp(path);
	pid_t pid;
	int status;

	cr_assert(fd >= 0);
	unlink(path);
	pid = fork();
	cr_assert(pid >= 0);
	if (pid == 0) {
		struct stat st;
		char v[64];
		if (dup2(fd, STDERR_FILENO) < 0 || fstat(STDERR_FILENO, &st) != 0)
			_exit(10);
		switch (kind) {
		case ENV_NONE:
			unsetenv("JOURNAL_STREAM");
			break;
		case ENV_MATCH:
			snprintf(v, sizeof v, "%llu:%llu", (unsigned long long)st.st_dev,
				 (unsigned long long)st.st_ino);
			setenv("JOURNAL_STREAM", v, 1);
			break;
		case ENV_OTHER_INODE: /* the journal is some other stream: stderr was redirected */
			snprintf(v, sizeof v, "%llu:%llu", (unsigned long long)st.st_dev,
				 (unsigned long long)st.st_ino + 1);
			setenv("JOURNAL_STREAM", v, 1);
			break;
		case ENV_GARBAGE:
			setenv("JOURNAL_STREAM", "not-a-stream", 1);
			break;
		}
		geokv_log_set_level(GEOKV_LOG_DEBUG);
		GK_DEBUG("test", "d", "x=%d", 1);
		GK_INFO("test", "i", "x=%d", 2);
		GK_WARN("test", "w", NULL);
		GK_ERROR("test", "e", "x=%s", "y");
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
	ssize_t n = pread(fd, out, sizeof out - 1, 0);
	close(fd);
	out[n > 0 ? n : 0] = '\0';
	return out;
}

/* Line `i` (0-based) of s, into buf. */
static const char *line(const char *s, int i, char *buf, size_t cap)
{
	for (; i > 0 && s != NULL; i--) {
		s = strchr(s, '\n');
		if (s != NULL)
			s++;
	}
	cr_assert(s != NULL && *s != '\0', "missing line");
	size_t n = strcspn(s, "\n");
	cr_assert(n < cap);
	memcpy(buf, s, n);
	buf[n] = '\0';
	return buf;
}

Test(log_journal, stderr_is_the_journal_each_line_gets_its_syslog_priority)
{
	const char *out = log_in_child(ENV_MATCH);
	static const struct { const char *prefix, *level; } want[] = {
		{"<7>", " DEBUG test d x=1"}, {"<6>", " INFO test i x=2"},
		{"<4>", " WARN test w"}, {"<3>", " ERROR test e x=y"},
	};
	char b[512];

	for (int i = 0; i < 4; i++) {
		line(out, i, b, sizeof b);
		cr_assert(strncmp(b, want[i].prefix, 3) == 0, "line %d: %s", i, b);
		/* the rest is the usual line: <N>YYYY-MM-DDTHH:MM:SS.mmmZ LEVEL ... */
		cr_assert(b[3] >= '0' && b[3] <= '9' && b[7] == '-' && b[26] == 'Z', "line %d: %s", i, b);
		cr_assert(strstr(b, want[i].level) == b + 27, "line %d: %s", i, b);
	}
}

Test(log_journal, without_journal_stream_no_prefix)
{
	const char *out = log_in_child(ENV_NONE);
	char b[512];

	for (int i = 0; i < 4; i++)
		cr_assert(line(out, i, b, sizeof b)[0] == '2', "line %d: %s", i, b); /* the year */
	cr_assert_null(strchr(out, '<'));
}

Test(log_journal, journal_stream_of_another_file_no_prefix)
{
	const char *out = log_in_child(ENV_OTHER_INODE);

	cr_assert_null(strchr(out, '<'), "%s", out);
	cr_assert(strstr(out, " INFO test i x=2\n") != NULL);
}

Test(log_journal, malformed_journal_stream_no_prefix)
{
	const char *out = log_in_child(ENV_GARBAGE);

	cr_assert_null(strchr(out, '<'), "%s", out);
	cr_assert(strstr(out, " ERROR test e x=y\n") != NULL);
}
