#include "proto/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static enum geokv_log_level log_level = GEOKV_LOG_INFO;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

/* syslog priorities (sd-daemon(3) prefixes) by level: debug 7, info 6, warning 4, err 3 */
static const char level_prio[] = {'7', '6', '4', '3'};

/*
 * systemd passes JOURNAL_STREAM=<st_dev>:<st_ino> of the stream it connected stdout/stderr
 * to. Parsed once (the environment is read before any thread could change it); whether
 * stderr still is that stream is checked per line (one fstat, and only when the variable is
 * set), because a daemon started from a unit may have its stderr redirected by its caller.
 */
static pthread_once_t journal_once = PTHREAD_ONCE_INIT;
static bool journal_set;
static unsigned long long journal_dev, journal_ino;

static void journal_parse(void)
{
	const char *v = getenv("JOURNAL_STREAM");
	char *end;

	if (v == NULL || *v == '\0')
		return;
	errno = 0;
	journal_dev = strtoull(v, &end, 10);
	if (errno != 0 || end == v || *end != ':')
		return;
	v = end + 1;
	journal_ino = strtoull(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0')
		return;
	journal_set = true;
}

int geokv_log_to_journal(void)
{
	struct stat st;

	pthread_once(&journal_once, journal_parse);
	if (!journal_set || fstat(STDERR_FILENO, &st) != 0)
		return 0;
	return (unsigned long long)st.st_dev == journal_dev &&
	       (unsigned long long)st.st_ino == journal_ino;
}

void geokv_log_set_level(enum geokv_log_level lvl) { log_level = lvl; }
enum geokv_log_level geokv_log_get_level(void) { return log_level; }

int geokv_log_parse_level(const char *s, enum geokv_log_level *out)
{
	for (int i = 0; i < 4; i++) {
		if (strcasecmp(s, level_names[i]) == 0 ||
		    (i == GEOKV_LOG_WARN && strcasecmp(s, "warning") == 0)) {
			*out = (enum geokv_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

void geokv_log(enum geokv_log_level lvl, const char *component, const char *msg,
	       const char *kvfmt, ...)
{
	char buf[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int r;

	if (lvl < log_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = 0;
	if (geokv_log_to_journal()) { /* "<N>": journald records the line at that priority */
		buf[n++] = '<';
		buf[n++] = level_prio[lvl];
		buf[n++] = '>';
	}
	n += strftime(buf + n, sizeof buf - n, "%Y-%m-%dT%H:%M:%S", &tm);
	r = snprintf(buf + n, sizeof buf - n, ".%03ldZ %s %s %s", ts.tv_nsec / 1000000L,
		     level_names[lvl], component, msg);
	n += (r > 0) ? (size_t)r : 0;
	if (kvfmt != NULL && kvfmt[0] != '\0' && n < sizeof buf - 2) {
		va_list ap;
		buf[n++] = ' ';
		va_start(ap, kvfmt);
		r = vsnprintf(buf + n, sizeof buf - n, kvfmt, ap);
		va_end(ap);
		n += (r > 0) ? (size_t)r : 0;
	}
	if (n > sizeof buf - 2)
		n = sizeof buf - 2; /* truncated line: still one line */
	buf[n++] = '\n';
	/* One write per line; a failed log write has nowhere better to be reported. */
	ssize_t w = write(STDERR_FILENO, buf, n);
	(void)w;
}
