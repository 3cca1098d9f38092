/*
 * proto_conf: the one configuration loader of every geokv daemon (and the value parsers the
 * `geokv` CLI shares with it).
 *
 * What it is: a table of settings (section, key, type, where the value lives in the caller's
 * struct, default, help) and the code that fills that struct from, in this order:
 *   1. the defaults in the table,
 *   2. an INI file (`-c FILE`, read with libinih): `[section]` then `key = value`,
 *   3. the command line, left to right: `--key-name VALUE` (every setting has one: its key
 *      with '-' for '_'), `-s/--set section.key=value` (any setting), and a short flag where
 *      the table gives one.
 * So a flag always beats the file. `--help` prints every setting from the same table, so the
 * file's keys, the flags and the help cannot drift apart. docs/config.md is the user's view.
 *
 * Naming convention (the same in every daemon): sections and keys are snake_case; a key is
 * unique within a daemon (so its flag is too); durations end in `_ms` (a bare number is
 * milliseconds; "10s", "5m", "1h30m" work too); sizes take K/M/G/T (powers of 1024).
 *
 * What it is not: validation across settings (the daemon checks those after loading), or a
 * reloader. Errors are strict: unknown sections, unknown keys, bad values, positional
 * arguments are all refused, so a typo never passes silently.
 *
 * Errors: functions return 0 or -EINVAL (-ENOMEM for allocation), after writing one line into
 * conf->err (the first error is kept) and, when conf->errf is set, printing
 * "<prog>: <message>" to it. Messages name the place ("file:line", "--flag", "--set") and
 * the setting ("[store] map_max").
 *
 * Memory: PROTO_CONF_STR values are heap strings owned by the caller's struct; free them
 * with proto_conf_free(). PROTO_CONF_STRBUF values are copied into a char array in place.
 * Not thread-safe (uses getopt): call at start-up.
 */
#ifndef GEOKV_PROTO_CONF_H
#define GEOKV_PROTO_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum proto_conf_type {
	PROTO_CONF_STR,      /* char *, strdup'ed (NULL when unset and no default) */
	PROTO_CONF_STRBUF,   /* char[size]; too long is an error */
	PROTO_CONF_BOOL,     /* bool: true/false, yes/no, on/off, 1/0; a bare flag = true */
	PROTO_CONF_U32,      /* uint32_t, decimal */
	PROTO_CONF_U64,      /* uint64_t, decimal */
	PROTO_CONF_INT,      /* int, decimal, may be negative */
	PROTO_CONF_SIZE,     /* bytes with K/M/G/T (1024-based; "KiB", "MB" also read as binary);
			      * stored in a uint32_t, uint64_t or size_t (by size) */
	PROTO_CONF_DURATION, /* milliseconds: "250", "250ms", "10s", "5m", "1h30m", "2d";
			      * stored in a uint32_t or uint64_t (by size) */
	PROTO_CONF_LEVEL,    /* enum geokv_log_level: debug|info|warn|error */
} proto_conf_type_t;

typedef struct proto_conf_setting {
	const char *section;   /* "primary", "tls", ... */
	const char *key;       /* "map_max": INI key, `--set store.map_max=`, flag --map-max */
	proto_conf_type_t type;
	size_t off;            /* offsetof the value in the caller's struct */
	size_t size;           /* sizeof the value (array size for STRBUF) */
	const char *def;       /* default as written in a file; NULL = zero / empty / NULL */
	const char *help;      /* one line */
	char short_opt;        /* 0 or a short flag ('d' for -d) */
	int64_t min;           /* numbers: smallest accepted (INT may be negative) */
	uint64_t max;          /* numbers: largest accepted; 0 = the storage type's maximum */
} proto_conf_setting_t;

/* One table row for a field of struct type T, e.g.
 * PROTO_CONF_SETTING(prim_config_t, "store", "map_max", PROTO_CONF_SIZE, map_max, "1T",
 *                    "state/ size cap") -- further designated initializers may follow. */
#define PROTO_CONF_SETTING(T, sec, k, ty, field, dflt, hlp, ...)                                \
	{ .section = (sec), .key = (k), .type = (ty), .off = offsetof(T, field),                 \
	  .size = sizeof(((T *)0)->field), .def = (dflt), .help = (hlp), __VA_ARGS__ }

typedef struct proto_conf {
	const char *prog;                      /* "geokv-primary": prefixes messages, usage */
	const char *intro;                     /* --help text after the usage line, or NULL */
	const char *version;                   /* printed by -V/--version; NULL = no -V */
	const proto_conf_setting_t *settings;
	size_t nsettings;
	void *obj;                             /* the struct the offsets point into */
	FILE *errf;                            /* also print errors here (NULL = don't) */
	const char *config_file;               /* after parse_args: the -c argument or NULL
						* (points into argv) */
	char err[512];                         /* the first error */
} proto_conf_t;

/* Zero *c and fill its fields; errf = stderr. */
void proto_conf_init(proto_conf_t *c, const char *prog, const proto_conf_setting_t *settings,
		     size_t nsettings, void *obj);

/* Set every setting to its table default (frees earlier STR values). 0 or -EINVAL (a bad
 * default in the table: a programming error). */
int proto_conf_defaults(proto_conf_t *c);

/* The setting [section] key, or NULL. */
const proto_conf_setting_t *proto_conf_find(const proto_conf_t *c, const char *section,
					    const char *key);

/* Parse `value` into setting [section] key. `where` names the source for errors ("x.ini:3",
 * "--set"); NULL = "". 0, -EINVAL (unknown setting, bad value), -ENOMEM. */
int proto_conf_set(proto_conf_t *c, const char *section, const char *key, const char *value,
		   const char *where);

/* Apply "section.key=value" (the argument of --set). */
int proto_conf_set_arg(proto_conf_t *c, const char *arg);

/* Read an INI file: every `key = value` must be a known setting of its [section]; keys
 * outside a section are refused. Errors name file:line. Stops at the first error. */
int proto_conf_load_file(proto_conf_t *c, const char *path);

/*
 * The whole command line: -c/--config FILE is loaded first (wherever it appears), then every
 * other flag in order. Handles -h/--help (prints proto_conf_help to stdout) and -V/--version.
 * Returns 0 to run, 1 when help/version was printed (exit 0), -EINVAL on any error (message
 * printed; exit 2). Does not apply defaults: call proto_conf_defaults first.
 */
int proto_conf_parse_args(proto_conf_t *c, int argc, char **argv);

/* The --help text: usage, intro, the generic flags, then every setting by section with its
 * flag, value kind, default and help. */
void proto_conf_help(const proto_conf_t *c, FILE *f);

/* Free the PROTO_CONF_STR values (set them to NULL). */
void proto_conf_free(proto_conf_t *c);

/* ---- value parsers (also used by the `geokv` CLI) ------------------------------------ */

/* Decimal, no sign, no spaces, fits uint64_t. 0 or -EINVAL. */
int proto_conf_parse_u64(const char *s, uint64_t *out);
/* "1048576", "512K", "1M", "1MiB", "2GB", "3T", "100B" (K/M/G/T = powers of 1024). */
int proto_conf_parse_size(const char *s, uint64_t *bytes);
/* "500ms", "10s", "5m", "1h30m", "2d"; a bare number counts bare_unit_ms each (1 for a
 * config `_ms` key, 1000 for the CLI's --timeout). 0 or -EINVAL (also on overflow). */
int proto_conf_parse_duration(const char *s, uint64_t bare_unit_ms, uint64_t *ms);
/* true/yes/on/1, false/no/off/0 (any case). */
int proto_conf_parse_bool(const char *s, bool *out);

#endif
