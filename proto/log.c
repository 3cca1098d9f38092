#include "proto/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static enum geokv_log_level log_level = GEOKV_LOG_INFO;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

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
	n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
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
