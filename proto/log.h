/*
 * One line per event, to stderr:
 *
 *   2026-11-23T10:00:00.123Z INFO raft became leader term=7 node=2
 *
 * time (UTC, ms), level, component, a fixed message, then key=value pairs built by the
 * caller's format string. The message text never carries variables, so lines can be grepped
 * and counted. Thread-safe: each line is formatted into a stack buffer and written with one
 * write(2), so lines from several threads or processes never interleave (up to PIPE_BUF).
 *
 * Under systemd, when stderr is the journal (JOURNAL_STREAM names stderr's device and inode),
 * each line starts with its syslog priority, sd-daemon(3) style, so journald stores the level
 * (`journalctl -p warning` works) and strips the prefix:
 *
 *   <6>2026-11-23T10:00:00.123Z INFO raft became leader term=7 node=2
 *
 * <7> debug, <6> info, <4> warn, <3> error. Anywhere else (a terminal, a file, a pipe, stderr
 * redirected away from the journal) there is no prefix.
 *
 * Lives in proto/ because every daemon and the CLI already depend on proto.
 */
#ifndef GEOKV_PROTO_LOG_H
#define GEOKV_PROTO_LOG_H

enum geokv_log_level { GEOKV_LOG_DEBUG = 0, GEOKV_LOG_INFO, GEOKV_LOG_WARN, GEOKV_LOG_ERROR };

/* Lines below this level are dropped (default INFO). Not synchronised: set at start-up. */
void geokv_log_set_level(enum geokv_log_level lvl);
enum geokv_log_level geokv_log_get_level(void);

/* 1 when stderr is the systemd journal stream (lines get a "<N>" priority prefix), else 0. */
int geokv_log_to_journal(void);

/* Parse "debug|info|warn|error" (any case); 0 on success, -EINVAL otherwise. */
int geokv_log_parse_level(const char *s, enum geokv_log_level *out);

/*
 * Log one event. `msg` is a fixed text; `kvfmt` (may be NULL) is a printf format producing
 * the key=value part, e.g. geokv_log(GEOKV_LOG_INFO, "raft", "became leader", "term=%llu", t).
 * Values containing spaces should be quoted by the caller.
 */
void geokv_log(enum geokv_log_level lvl, const char *component, const char *msg,
	       const char *kvfmt, ...) __attribute__((format(printf, 4, 5)));

#define GK_DEBUG(comp, msg, ...) \
	do { if (geokv_log_get_level() <= GEOKV_LOG_DEBUG) geokv_log(GEOKV_LOG_DEBUG, comp, msg, __VA_ARGS__); } while (0)
#define GK_INFO(comp, msg, ...)  geokv_log(GEOKV_LOG_INFO, comp, msg, __VA_ARGS__)
#define GK_WARN(comp, msg, ...)  geokv_log(GEOKV_LOG_WARN, comp, msg, __VA_ARGS__)
#define GK_ERROR(comp, msg, ...) geokv_log(GEOKV_LOG_ERROR, comp, msg, __VA_ARGS__)

#endif
