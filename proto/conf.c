/*
 * The shared configuration loader (proto/conf.h): one table per daemon, one set of rules.
 * The file goes through libinih; the command line through getopt_long with options built
 * from the table, so a setting's flag exists exactly when its row does.
 */
#include "proto/conf.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "proto/log.h"

static void conf_error(proto_conf_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void conf_error(proto_conf_t *c, const char *fmt, ...)
{
	char line[sizeof c->err];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (c->err[0] == '\0')
		memcpy(c->err, line, sizeof line);
	if (c->errf != NULL)
		fprintf(c->errf, "%s: %s\n", c->prog ? c->prog : "geokv", line);
}

void proto_conf_init(proto_conf_t *c, const char *prog, const proto_conf_setting_t *settings,
		     size_t nsettings, void *obj)
{
	memset(c, 0, sizeof *c);
	c->prog = prog;
	c->settings = settings;
	c->nsettings = nsettings;
	c->obj = obj;
	c->errf = stderr;
}

/* ---- value parsers ------------------------------------------------------------------- */

int proto_conf_parse_u64(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (s == NULL || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return -EINVAL;
	*out = v;
	return 0;
}

int proto_conf_parse_size(const char *s, uint64_t *bytes)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (s == NULL || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return -EINVAL;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: break;
	}
	if (shift != 0 && *end == 'i' && end[1] == 'B') /* KiB */
		end += 2;
	else if (*end == 'B' || *end == 'b')          /* MB (read as MiB), 100B */
		end++;
	if (*end != '\0' || (shift != 0 && v > (UINT64_MAX >> shift)))
		return -EINVAL;
	*bytes = (uint64_t)v << shift;
	return 0;
}

int proto_conf_parse_duration(const char *s, uint64_t bare_unit_ms, uint64_t *ms)
{
	uint64_t total = 0, n;

	if (s == NULL || *s == '\0')
		return -EINVAL;
	if (proto_conf_parse_u64(s, &n) == 0) {
		if (bare_unit_ms != 0 && n > UINT64_MAX / bare_unit_ms)
			return -EINVAL;
		*ms = n * bare_unit_ms;
		return 0;
	}
	while (*s != '\0') {
		uint64_t mult;
		char *end;

		if (*s < '0' || *s > '9')
			return -EINVAL;
		errno = 0;
		n = strtoull(s, &end, 10);
		if (errno != 0)
			return -EINVAL;
		s = end;
		if (strncmp(s, "ms", 2) == 0) {
			mult = 1;
			s += 2;
		} else if (*s == 's') {
			mult = 1000;
			s++;
		} else if (*s == 'm') {
			mult = 60000;
			s++;
		} else if (*s == 'h') {
			mult = 3600000;
			s++;
		} else if (*s == 'd') {
			mult = 86400000;
			s++;
		} else {
			return -EINVAL;
		}
		if (n > (UINT64_MAX - total) / mult)
			return -EINVAL;
		total += n * mult;
	}
	*ms = total;
	return 0;
}

int proto_conf_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};

	if (s == NULL)
		return -EINVAL;
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* ---- setting one value --------------------------------------------------------------- */

static const char *type_name(proto_conf_type_t t)
{
	switch (t) {
	case PROTO_CONF_STR:
	case PROTO_CONF_STRBUF: return "STRING";
	case PROTO_CONF_BOOL: return "BOOL";
	case PROTO_CONF_U32:
	case PROTO_CONF_U64:
	case PROTO_CONF_INT: return "N";
	case PROTO_CONF_SIZE: return "SIZE";
	case PROTO_CONF_DURATION: return "DURATION";
	case PROTO_CONF_LEVEL: return "LEVEL";
	}
	return "VALUE";
}

static const char *type_hint(proto_conf_type_t t)
{
	switch (t) {
	case PROTO_CONF_BOOL: return "want true or false";
	case PROTO_CONF_U32:
	case PROTO_CONF_U64: return "want a whole number";
	case PROTO_CONF_INT: return "want a whole number";
	case PROTO_CONF_SIZE: return "want bytes, e.g. 65536, 512K, 64M, 1G, 1T";
	case PROTO_CONF_DURATION: return "want milliseconds or e.g. 500ms, 10s, 5m, 1h";
	case PROTO_CONF_LEVEL: return "want debug, info, warn or error";
	default: return "";
	}
}

/* Unsigned storage width of a setting: U32 = 4 bytes, U64 = 8, SIZE/DURATION by size. */
static uint64_t width_max(const proto_conf_setting_t *s)
{
	size_t w = s->type == PROTO_CONF_U32 ? 4 : s->type == PROTO_CONF_U64 ? 8 : s->size;
	return w == 4 ? UINT32_MAX : UINT64_MAX;
}

static void store_unsigned(void *p, const proto_conf_setting_t *s, uint64_t v)
{
	if (width_max(s) == UINT32_MAX)
		*(uint32_t *)p = (uint32_t)v;
	else
		*(uint64_t *)p = v;
}

_Static_assert(sizeof(size_t) == sizeof(uint64_t), "SIZE settings stored as size_t assume 64 bits");

/* Parse and store; on error fills c->err naming `where` and the setting. */
static int set_value(proto_conf_t *c, const proto_conf_setting_t *s, const char *val,
		     const char *where)
{
	void *p = (char *)c->obj + s->off;
	uint64_t v = 0;
	int rc = 0;

	if (where == NULL)
		where = "";
	switch (s->type) {
	case PROTO_CONF_STR: {
		char *dup = strdup(val);
		if (dup == NULL)
			return -ENOMEM;
		free(*(char **)p);
		*(char **)p = dup;
		return 0;
	}
	case PROTO_CONF_STRBUF:
		if (strlen(val) >= s->size) {
			conf_error(c, "%s%s[%s] %s: value is %zu bytes, at most %zu allowed", where,
				   *where ? ": " : "", s->section, s->key, strlen(val), s->size - 1);
			return -EINVAL;
		}
		memcpy(p, val, strlen(val) + 1);
		return 0;
	case PROTO_CONF_BOOL:
		rc = proto_conf_parse_bool(val, (bool *)p);
		break;
	case PROTO_CONF_LEVEL: {
		enum geokv_log_level lvl;
		rc = geokv_log_parse_level(val, &lvl);
		if (rc == 0)
			*(enum geokv_log_level *)p = lvl;
		break;
	}
	case PROTO_CONF_INT: {
		long long n;
		char *end;
		int64_t lo = s->min, hi = s->max ? (int64_t)s->max : INT32_MAX;
		if (s->min == 0 && s->max == 0)
			lo = INT32_MIN;
		errno = 0;
		n = strtoll(val, &end, 10);
		if (*val == '\0' || *end != '\0' || errno != 0) {
			rc = -EINVAL;
			break;
		}
		if (n < lo || n > hi) {
			conf_error(c, "%s%s[%s] %s: %lld is out of range %" PRId64 "..%" PRId64, where,
				   *where ? ": " : "", s->section, s->key, n, lo, hi);
			return -EINVAL;
		}
		*(int *)p = (int)n;
		return 0;
	}
	case PROTO_CONF_U32:
	case PROTO_CONF_U64:
	case PROTO_CONF_SIZE:
	case PROTO_CONF_DURATION: {
		uint64_t hi = s->max ? s->max : width_max(s);
		uint64_t lo = s->min > 0 ? (uint64_t)s->min : 0;
		if (s->type == PROTO_CONF_SIZE)
			rc = proto_conf_parse_size(val, &v);
		else if (s->type == PROTO_CONF_DURATION)
			rc = proto_conf_parse_duration(val, 1, &v);
		else
			rc = proto_conf_parse_u64(val, &v);
		if (rc != 0)
			break;
		if (v < lo || v > hi) {
			conf_error(c, "%s%s[%s] %s: '%s' is out of range %" PRIu64 "..%" PRIu64, where,
				   *where ? ": " : "", s->section, s->key, val, lo, hi);
			return -EINVAL;
		}
		store_unsigned(p, s, v);
		return 0;
	}
	}
	if (rc != 0) {
		conf_error(c, "%s%s[%s] %s: bad value '%s' (%s)", where, *where ? ": " : "", s->section,
			   s->key, val, type_hint(s->type));
		return -EINVAL;
	}
	return 0;
}

const proto_conf_setting_t *proto_conf_find(const proto_conf_t *c, const char *section,
					    const char *key)
{
	for (size_t i = 0; i < c->nsettings; i++)
		if (strcmp(c->settings[i].section, section) == 0 &&
		    strcmp(c->settings[i].key, key) == 0)
			return &c->settings[i];
	return NULL;
}

static bool section_known(const proto_conf_t *c, const char *section)
{
	for (size_t i = 0; i < c->nsettings; i++)
		if (strcmp(c->settings[i].section, section) == 0)
			return true;
	return false;
}

/* A key that differs only by '-' for '_' (the old primary spelling), in any section. */
static const proto_conf_setting_t *find_like(const proto_conf_t *c, const char *key)
{
	char norm[128];
	size_t i;

	for (i = 0; key[i] != '\0' && i + 1 < sizeof norm; i++)
		norm[i] = key[i] == '-' ? '_' : key[i];
	norm[i] = '\0';
	for (i = 0; i < c->nsettings; i++)
		if (strcmp(c->settings[i].key, norm) == 0)
			return &c->settings[i];
	return NULL;
}

int proto_conf_set(proto_conf_t *c, const char *section, const char *key, const char *value,
		   const char *where)
{
	const proto_conf_setting_t *s = proto_conf_find(c, section, key);
	const char *sep = where != NULL && *where != '\0' ? ": " : "";

	if (where == NULL)
		where = "";
	if (s == NULL) {
		const proto_conf_setting_t *like = find_like(c, key);
		if (!section_known(c, section) && like == NULL)
			conf_error(c, "%s%sunknown section [%s]", where, sep, section);
		else if (like != NULL)
			conf_error(c, "%s%sunknown setting [%s] %s (did you mean [%s] %s?)", where, sep,
				   section, key, like->section, like->key);
		else
			conf_error(c, "%s%sunknown setting [%s] %s", where, sep, section, key);
		return -EINVAL;
	}
	return set_value(c, s, value, where);
}

int proto_conf_set_arg(proto_conf_t *c, const char *arg)
{
	const char *dot = strchr(arg, '.'), *eq = strchr(arg, '=');
	char section[64], key[128];

	if (dot == NULL || eq == NULL || dot > eq || dot == arg || eq == dot + 1 ||
	    (size_t)(dot - arg) >= sizeof section || (size_t)(eq - dot - 1) >= sizeof key) {
		conf_error(c, "--set '%s': want SECTION.KEY=VALUE, e.g. --set tls.cert=server.crt", arg);
		return -EINVAL;
	}
	memcpy(section, arg, (size_t)(dot - arg));
	section[dot - arg] = '\0';
	memcpy(key, dot + 1, (size_t)(eq - dot - 1));
	key[eq - dot - 1] = '\0';
	return proto_conf_set(c, section, key, eq + 1, "--set");
}

int proto_conf_defaults(proto_conf_t *c)
{
	for (size_t i = 0; i < c->nsettings; i++) {
		const proto_conf_setting_t *s = &c->settings[i];
		void *p = (char *)c->obj + s->off;

		if (s->type == PROTO_CONF_STR) {
			free(*(char **)p);
			*(char **)p = NULL;
		}
		if (s->def == NULL) {
			if (s->type != PROTO_CONF_STR)
				memset(p, 0, s->size);
			continue;
		}
		if (set_value(c, s, s->def, "default") != 0)
			return -EINVAL;
	}
	return 0;
}

void proto_conf_free(proto_conf_t *c)
{
	for (size_t i = 0; i < c->nsettings; i++)
		if (c->settings[i].type == PROTO_CONF_STR) {
			char **p = (char **)((char *)c->obj + c->settings[i].off);
			free(*p);
			*p = NULL;
		}
}

/* ---- the INI file -------------------------------------------------------------------- */

/* inih (built without INI_HANDLER_LINENO) does not tell the handler the line, so the
 * reader counts: a handler call always follows the read of the line it is about. */
struct file_ctx {
	proto_conf_t *c;
	const char *path;
	FILE *f;
	int line;        /* line of the text last returned by the reader */
	bool at_bol;     /* the last read ended a line */
	int rc;
};

static char *file_reader(char *str, int num, void *stream)
{
	struct file_ctx *x = stream;
	char *r = fgets(str, num, x->f);

	if (r != NULL) {
		size_t n = strlen(r);
		if (x->at_bol)
			x->line++;
		x->at_bol = n > 0 && r[n - 1] == '\n';
	}
	return r;
}

static int file_handler(void *user, const char *section, const char *key, const char *value)
{
	struct file_ctx *x = user;
	char where[512];

	if (x->rc != 0)
		return 1; /* report the first error only */
	snprintf(where, sizeof where, "%s:%d", x->path, x->line);
	if (section[0] == '\0') {
		const proto_conf_setting_t *like = find_like(x->c, key);
		if (like != NULL)
			conf_error(x->c, "%s: '%s' is outside any [section] (did you mean [%s] %s?)",
				   where, key, like->section, like->key);
		else
			conf_error(x->c, "%s: '%s' is outside any [section]", where, key);
		x->rc = -EINVAL;
		return 1;
	}
	x->rc = proto_conf_set(x->c, section, key, value, where);
	return 1; /* our own errors are in x->rc: inih's non-zero return is then a syntax error */
}

int proto_conf_load_file(proto_conf_t *c, const char *path)
{
	struct file_ctx x = {.c = c, .path = path, .at_bol = true};
	int rc;

	if ((x.f = fopen(path, "r")) == NULL) {
		conf_error(c, "cannot read config '%s': %s", path, strerror(errno));
		return -EINVAL;
	}
	rc = ini_parse_stream(file_reader, &x, file_handler, &x);
	fclose(x.f);
	if (x.rc != 0)
		return x.rc;
	if (rc > 0) {
		conf_error(c, "%s:%d: syntax error (want [section] or key = value)", path, rc);
		return -EINVAL;
	}
	if (rc < 0) {
		conf_error(c, "%s: cannot parse (%s)", path, rc == -2 ? "out of memory" : "read error");
		return -EINVAL;
	}
	return 0;
}

/* ---- the command line ---------------------------------------------------------------- */

#define OPT_BASE 1000 /* getopt values of per-setting long flags: OPT_BASE + index */

static void flag_name(const proto_conf_setting_t *s, char *buf, size_t n)
{
	size_t i;

	for (i = 0; s->key[i] != '\0' && i + 1 < n; i++)
		buf[i] = s->key[i] == '_' ? '-' : s->key[i];
	buf[i] = '\0';
}

void proto_conf_help(const proto_conf_t *c, FILE *f)
{
	const char *last = NULL;

	fprintf(f, "usage: %s [-c FILE] [--KEY-NAME VALUE]... [-s SECTION.KEY=VALUE]...\n",
		c->prog);
	if (c->intro != NULL)
		fprintf(f, "\n%s", c->intro);
	fprintf(f,
		"\nSettings come from their defaults, then the INI file (-c), then the command line\n"
		"left to right; a later value wins. Every setting below is `key = value` in its\n"
		"[section] of the file, `--key-name VALUE` (underscores as dashes) and\n"
		"`--set section.key=VALUE` on the command line. See docs/config.md.\n"
		"\n"
		"  -c, --config FILE                    INI configuration file\n"
		"  -s, --set SECTION.KEY=VALUE          any setting\n"
		"  -h, --help                           this text\n");
	if (c->version != NULL)
		fprintf(f, "  -V, --version                        print the version\n");
	fprintf(f, "\nSizes take K/M/G/T (1024-based); durations (keys ending in _ms) take a number\n"
		   "of milliseconds or 500ms, 10s, 5m, 1h, 2d.\n");
	for (size_t i = 0; i < c->nsettings; i++) {
		const proto_conf_setting_t *s = &c->settings[i];
		char flag[64], left[96];

		if (last == NULL || strcmp(last, s->section) != 0) {
			fprintf(f, "\n[%s]\n", s->section);
			last = s->section;
		}
		flag_name(s, flag, sizeof flag);
		snprintf(left, sizeof left, "%c%c%s--%s%s%s", s->short_opt ? '-' : ' ',
			 s->short_opt ? s->short_opt : ' ', s->short_opt ? ", " : "  ", flag,
			 s->type == PROTO_CONF_BOOL ? "[=" : " ", type_name(s->type));
		if (s->type == PROTO_CONF_BOOL)
			strcat(left, "]");
		fprintf(f, "  %-36s %s", left, s->help);
		if (s->def != NULL && s->def[0] != '\0')
			fprintf(f, " (default %s)", s->def);
		fputc('\n', f);
	}
}

int proto_conf_parse_args(proto_conf_t *c, int argc, char **argv)
{
	size_t n = c->nsettings;
	struct option *opts = calloc(n + 5, sizeof *opts);
	char (*names)[64] = calloc(n + 1, sizeof *names);
	char shortopts[256];
	size_t sl = 0;
	int ch, rc = 0;

	if (opts == NULL || names == NULL) {
		free(opts);
		free(names);
		return -ENOMEM;
	}
	sl += (size_t)snprintf(shortopts + sl, sizeof shortopts - sl, "c:s:h%s", c->version ? "V" : "");
	for (size_t i = 0; i < n; i++) {
		const proto_conf_setting_t *s = &c->settings[i];
		bool is_bool = s->type == PROTO_CONF_BOOL;

		flag_name(s, names[i], sizeof names[i]);
		opts[i] = (struct option){names[i], is_bool ? optional_argument : required_argument,
					  NULL, OPT_BASE + (int)i};
		if (s->short_opt && sl + 3 < sizeof shortopts) {
			shortopts[sl++] = s->short_opt;
			if (!is_bool)
				shortopts[sl++] = ':';
			shortopts[sl] = '\0';
		}
	}
	opts[n] = (struct option){"config", required_argument, NULL, 'c'};
	opts[n + 1] = (struct option){"set", required_argument, NULL, 's'};
	opts[n + 2] = (struct option){"help", no_argument, NULL, 'h'};
	if (c->version != NULL)
		opts[n + 3] = (struct option){"version", no_argument, NULL, 'V'};

	/* Pass 1: -c, --help, --version, and unknown flags, before anything is applied. */
	c->config_file = NULL;
	opterr = 0;
	optind = 0;
	while ((ch = getopt_long(argc, argv, shortopts, opts, NULL)) != -1) {
		if (ch == 'c') {
			c->config_file = optarg;
		} else if (ch == 'h') {
			proto_conf_help(c, stdout);
			rc = 1;
			goto out;
		} else if (ch == 'V') {
			printf("%s %s\n", c->prog, c->version);
			rc = 1;
			goto out;
		} else if (ch == '?' || ch == ':') {
			/* getopt leaves optopt 0 for an unknown long option, the option's value
			 * for one that lacks its argument, the letter for a short one. */
			const char *a = argv[optind - 1];
			bool known = optopt != 0 && (optopt >= OPT_BASE || strchr(shortopts, optopt));
			if (optopt != 0 && optopt < OPT_BASE)
				conf_error(c, "%s -%c (run %s --help)",
					   known ? "missing value for option" : "unknown option", optopt,
					   c->prog);
			else
				conf_error(c, "%s '%s' (run %s --help)",
					   known ? "missing value for option" : "unknown option", a, c->prog);
			rc = -EINVAL;
			goto out;
		}
	}
	if (optind < argc) {
		conf_error(c, "unexpected argument '%s' (run %s --help)", argv[optind], c->prog);
		rc = -EINVAL;
		goto out;
	}
	if (c->config_file != NULL && (rc = proto_conf_load_file(c, c->config_file)) != 0)
		goto out;

	/* Pass 2: the flags, in order, over the file. */
	optind = 0;
	while ((ch = getopt_long(argc, argv, shortopts, opts, NULL)) != -1) {
		char where[80];
		const proto_conf_setting_t *s;
		size_t i;

		if (ch == 's') {
			rc = proto_conf_set_arg(c, optarg);
		} else if (ch >= OPT_BASE && ch < OPT_BASE + (int)n) {
			i = (size_t)(ch - OPT_BASE);
			s = &c->settings[i];
			snprintf(where, sizeof where, "--%s", names[i]);
			rc = set_value(c, s, optarg ? optarg : "true", where);
		} else if (ch != 'c') {
			for (i = 0; i < n && c->settings[i].short_opt != ch; i++)
				;
			if (i == n)
				continue;
			s = &c->settings[i];
			snprintf(where, sizeof where, "-%c", ch);
			rc = set_value(c, s, s->type == PROTO_CONF_BOOL ? "true" : optarg, where);
		}
		if (rc != 0)
			goto out;
	}
out:
	free(opts);
	free(names);
	optind = 0;
	return rc;
}
