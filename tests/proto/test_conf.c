/* proto/conf: the shared configuration loader. Every type, bad values, unknown names,
 * file:line in errors, and the order defaults < file < command line. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/conf.h"
#include "proto/log.h"

typedef struct cfg {
	char *name;
	char buf[8];
	bool flag;
	uint32_t u32, ranged;
	uint64_t u64;
	int i;
	uint64_t size;
	uint32_t size32;
	uint32_t dur32;
	uint64_t dur;
	enum geokv_log_level lvl;
} cfg_t;

#define SET(sec, key, type, field, def, ...) \
	PROTO_CONF_SETTING(cfg_t, sec, key, type, field, def, "help for " key, __VA_ARGS__)

static const proto_conf_setting_t table[] = {
	SET("main", "name", PROTO_CONF_STR, name, "anon", .short_opt = 'n'),
	SET("main", "buf", PROTO_CONF_STRBUF, buf, "abc"),
	SET("main", "flag", PROTO_CONF_BOOL, flag, "false", .short_opt = 'f'),
	SET("num", "u32", PROTO_CONF_U32, u32, "7"),
	SET("num", "u64", PROTO_CONF_U64, u64, "18446744073709551615"),
	SET("num", "small_int", PROTO_CONF_INT, i, "-1", .min = -1, .max = 100),
	SET("num", "ranged", PROTO_CONF_U32, ranged, NULL, .min = 5, .max = 10),
	SET("sz", "size", PROTO_CONF_SIZE, size, "1M"),
	SET("sz", "size32", PROTO_CONF_SIZE, size32, "4K"),
	SET("time", "dur32_ms", PROTO_CONF_DURATION, dur32, "1500"),
	SET("time", "dur_ms", PROTO_CONF_DURATION, dur, "2s"),
	SET("main", "log_level", PROTO_CONF_LEVEL, lvl, "info"),
};

static cfg_t cfg;
static proto_conf_t pc;

static void setup(void)
{
	memset(&cfg, 0, sizeof cfg);
	proto_conf_init(&pc, "test", table, sizeof table / sizeof table[0], &cfg);
	pc.errf = NULL;
	cr_assert_eq(proto_conf_defaults(&pc), 0, "%s", pc.err);
}

static void teardown(void) { proto_conf_free(&pc); }

static const char *write_file(const char *text)
{
	static char path[64];
	int fd;

	snprintf(path, sizeof path, "/tmp/test_conf_XXXXXX");
	fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static int parse(int argc, const char **argv)
{
	return proto_conf_parse_args(&pc, argc, (char **)argv);
}

TestSuite(conf, .init = setup, .fini = teardown);

Test(conf, defaults_from_the_table)
{
	cr_assert_str_eq(cfg.name, "anon");
	cr_assert_str_eq(cfg.buf, "abc");
	cr_assert_not(cfg.flag);
	cr_assert_eq(cfg.u32, 7);
	cr_assert_eq(cfg.u64, UINT64_MAX);
	cr_assert_eq(cfg.i, -1);
	cr_assert_eq(cfg.size, 1 << 20);
	cr_assert_eq(cfg.size32, 4096);
	cr_assert_eq(cfg.dur32, 1500);
	cr_assert_eq(cfg.dur, 2000);
	cr_assert_eq(cfg.lvl, GEOKV_LOG_INFO);
}

Test(conf, every_type_parses)
{
	cr_assert_eq(proto_conf_set(&pc, "main", "name", "bob", NULL), 0);
	cr_assert_str_eq(cfg.name, "bob");
	cr_assert_eq(proto_conf_set(&pc, "main", "buf", "1234567", NULL), 0);
	cr_assert_str_eq(cfg.buf, "1234567");
	for (const char *const *t = (const char *const[]){"true", "YES", "on", "1", NULL}; *t; t++) {
		cfg.flag = false;
		cr_assert_eq(proto_conf_set(&pc, "main", "flag", *t, NULL), 0, "%s", *t);
		cr_assert(cfg.flag, "%s", *t);
	}
	for (const char *const *t = (const char *const[]){"false", "No", "off", "0", NULL}; *t; t++) {
		cfg.flag = true;
		cr_assert_eq(proto_conf_set(&pc, "main", "flag", *t, NULL), 0, "%s", *t);
		cr_assert_not(cfg.flag, "%s", *t);
	}
	cr_assert_eq(proto_conf_set(&pc, "num", "u32", "4294967295", NULL), 0);
	cr_assert_eq(cfg.u32, UINT32_MAX);
	cr_assert_eq(proto_conf_set(&pc, "num", "u64", "0", NULL), 0);
	cr_assert_eq(cfg.u64, 0);
	cr_assert_eq(proto_conf_set(&pc, "num", "small_int", "100", NULL), 0);
	cr_assert_eq(cfg.i, 100);
	cr_assert_eq(proto_conf_set(&pc, "num", "ranged", "5", NULL), 0);
	cr_assert_eq(cfg.ranged, 5);

	static const struct { const char *in; uint64_t want; } sizes[] = {
		{"0", 0}, {"100", 100}, {"100B", 100}, {"512K", 512 << 10}, {"512k", 512 << 10},
		{"64M", 64ull << 20}, {"1MiB", 1 << 20}, {"2GB", 2ull << 30}, {"3T", 3ull << 40}};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		cr_assert_eq(proto_conf_set(&pc, "sz", "size", sizes[i].in, NULL), 0, "%s", sizes[i].in);
		cr_assert_eq(cfg.size, sizes[i].want, "%s", sizes[i].in);
	}
	static const struct { const char *in; uint64_t want; } durs[] = {
		{"0", 0}, {"250", 250}, {"250ms", 250}, {"10s", 10000}, {"5m", 300000},
		{"1h30m", 5400000}, {"2d", 172800000}, {"1s500ms", 1500}};
	for (size_t i = 0; i < sizeof durs / sizeof durs[0]; i++) {
		cr_assert_eq(proto_conf_set(&pc, "time", "dur_ms", durs[i].in, NULL), 0, "%s", durs[i].in);
		cr_assert_eq(cfg.dur, durs[i].want, "%s", durs[i].in);
	}
	cr_assert_eq(proto_conf_set(&pc, "main", "log_level", "WARN", NULL), 0);
	cr_assert_eq(cfg.lvl, GEOKV_LOG_WARN);
	cr_assert_eq(proto_conf_set(&pc, "main", "log_level", "debug", NULL), 0);
	cr_assert_eq(cfg.lvl, GEOKV_LOG_DEBUG);
}

Test(conf, bad_values_are_refused_and_leave_the_old_value)
{
	static const struct { const char *sec, *key, *val; } bad[] = {
		{"main", "buf", "12345678"},          /* does not fit char[8] */
		{"main", "flag", "maybe"}, {"main", "flag", ""},
		{"num", "u32", "-1"}, {"num", "u32", "4294967296"}, {"num", "u32", "12x"},
		{"num", "u32", ""}, {"num", "u32", " 1"}, {"num", "u32", "+1"},
		{"num", "u64", "18446744073709551616"},
		{"num", "small_int", "-2"}, {"num", "small_int", "101"}, {"num", "small_int", "1.5"},
		{"num", "ranged", "4"}, {"num", "ranged", "11"},
		{"sz", "size", "1X"}, {"sz", "size", "-1K"}, {"sz", "size", "K"}, {"sz", "size", "1KK"},
		{"sz", "size", "16777216T"}, {"sz", "size32", "4G"}, {"sz", "size", "1.5G"},
		{"time", "dur_ms", "10q"}, {"time", "dur_ms", "s"}, {"time", "dur_ms", "-5s"},
		{"time", "dur_ms", "1h 30m"}, {"time", "dur32_ms", "50d"},
		{"main", "log_level", "verbose"},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cfg_t before = cfg;
		pc.err[0] = '\0';
		cr_assert_eq(proto_conf_set(&pc, bad[i].sec, bad[i].key, bad[i].val, "here"), -EINVAL,
			     "%s.%s=%s accepted", bad[i].sec, bad[i].key, bad[i].val);
		cr_assert(strstr(pc.err, bad[i].key) != NULL, "error names the key: %s", pc.err);
		cr_assert(strncmp(pc.err, "here: ", 6) == 0, "error names the place: %s", pc.err);
		cr_assert_eq(memcmp(&before, &cfg, sizeof cfg), 0, "%s changed on error", bad[i].key);
	}
}

Test(conf, unknown_keys_and_sections)
{
	cr_assert_eq(proto_conf_set(&pc, "main", "nope", "1", "x"), -EINVAL);
	cr_assert_str_eq(pc.err, "x: unknown setting [main] nope");
	pc.err[0] = '\0';
	cr_assert_eq(proto_conf_set(&pc, "nosuch", "what", "1", "x"), -EINVAL);
	cr_assert_str_eq(pc.err, "x: unknown section [nosuch]");
	pc.err[0] = '\0';
	/* a key of another section, or spelled with dashes: the error says where it lives */
	cr_assert_eq(proto_conf_set(&pc, "main", "dur-ms", "1", "x"), -EINVAL);
	cr_assert_str_eq(pc.err, "x: unknown setting [main] dur-ms (did you mean [time] dur_ms?)");
}

Test(conf, file_sets_values)
{
	const char *path = write_file("; comment\n[main]\nname = from file\nflag = yes\n\n"
				      "[sz]\nsize = 2G ; inline comment\n[time]\ndur_ms = 1m\n");
	cr_assert_eq(proto_conf_load_file(&pc, path), 0, "%s", pc.err);
	cr_assert_str_eq(cfg.name, "from file");
	cr_assert(cfg.flag);
	cr_assert_eq(cfg.size, 2ull << 30);
	cr_assert_eq(cfg.dur, 60000);
	unlink(path);
}

Test(conf, file_errors_name_file_and_line)
{
	char want[256];
	const char *path = write_file("[main]\nname = x\n\n[num]\nu32 = lots\n");

	cr_assert_eq(proto_conf_load_file(&pc, path), -EINVAL);
	snprintf(want, sizeof want, "%s:5: [num] u32: bad value 'lots' (want a whole number)", path);
	cr_assert_str_eq(pc.err, want);
	unlink(path);

	pc.err[0] = '\0';
	path = write_file("[main]\n; a comment\nbogus = 1\n");
	cr_assert_eq(proto_conf_load_file(&pc, path), -EINVAL);
	snprintf(want, sizeof want, "%s:3: unknown setting [main] bogus", path);
	cr_assert_str_eq(pc.err, want);
	unlink(path);

	pc.err[0] = '\0';
	path = write_file("[main]\nname = a\n[other]\nkey = 1\n");
	cr_assert_eq(proto_conf_load_file(&pc, path), -EINVAL);
	snprintf(want, sizeof want, "%s:4: unknown section [other]", path);
	cr_assert_str_eq(pc.err, want);
	unlink(path);

	pc.err[0] = '\0';
	path = write_file("u32 = 1\n");
	cr_assert_eq(proto_conf_load_file(&pc, path), -EINVAL);
	snprintf(want, sizeof want, "%s:1: 'u32' is outside any [section] (did you mean [num] u32?)",
		 path);
	cr_assert_str_eq(pc.err, want);
	unlink(path);

	pc.err[0] = '\0';
	path = write_file("[main]\nname = a\nthis line has no equals sign\n");
	cr_assert_eq(proto_conf_load_file(&pc, path), -EINVAL);
	snprintf(want, sizeof want, "%s:3: syntax error (want [section] or key = value)", path);
	cr_assert_str_eq(pc.err, want);
	unlink(path);

	pc.err[0] = '\0';
	cr_assert_eq(proto_conf_load_file(&pc, "/nonexistent/x.ini"), -EINVAL);
	cr_assert(strstr(pc.err, "cannot read config '/nonexistent/x.ini'") != NULL, "%s", pc.err);
}

Test(conf, long_line_keeps_line_numbers)
{
	char text[1024], want[256];
	const char *path;

	/* a comment longer than inih's line buffer is read in pieces; still one line */
	snprintf(text, sizeof text, "[main]\n;%0400d\nname = a\nbad = 1\n", 0);
	path = write_file(text);
	cr_assert_eq(proto_conf_load_file(&pc, path), -EINVAL);
	snprintf(want, sizeof want, "%s:4: unknown setting [main] bad", path);
	cr_assert_str_eq(pc.err, want);
	unlink(path);
}

Test(conf, flags_override_the_file_wherever_c_appears)
{
	const char *path = write_file("[num]\nu32 = 11\n[main]\nname = file\nflag = true\n");
	const char *argv[] = {"prog", "--u32", "12", "-n", "flag", "--set", "sz.size=3K",
			      "--flag=false", "-c", path, "--dur-ms=5s", NULL};

	cr_assert_eq(parse(11, argv), 0, "%s", pc.err);
	cr_assert_str_eq(pc.config_file, path);
	cr_assert_eq(cfg.u32, 12);
	cr_assert_str_eq(cfg.name, "flag");
	cr_assert_not(cfg.flag);
	cr_assert_eq(cfg.size, 3072);
	cr_assert_eq(cfg.dur, 5000);
	unlink(path);
}

Test(conf, later_flags_win_and_bare_bool_flag_is_true)
{
	const char *argv[] = {"prog", "--u32", "1", "--set", "num.u32=2", "-f", NULL};

	cr_assert_eq(parse(6, argv), 0, "%s", pc.err);
	cr_assert_eq(cfg.u32, 2);
	cr_assert(cfg.flag);
}

Test(conf, command_line_errors)
{
	const char *a1[] = {"prog", "--nope", "1", NULL};
	cr_assert_eq(parse(3, a1), -EINVAL);
	cr_assert(strstr(pc.err, "unknown option '--nope'") != NULL, "%s", pc.err);

	pc.err[0] = '\0';
	const char *a2[] = {"prog", "--u32", "x", NULL};
	cr_assert_eq(parse(3, a2), -EINVAL);
	cr_assert_str_eq(pc.err, "--u32: [num] u32: bad value 'x' (want a whole number)");

	pc.err[0] = '\0';
	const char *a3[] = {"prog", "--set", "num.u32", NULL};
	cr_assert_eq(parse(3, a3), -EINVAL);
	cr_assert(strstr(pc.err, "want SECTION.KEY=VALUE") != NULL, "%s", pc.err);

	pc.err[0] = '\0';
	const char *a4[] = {"prog", "--set", "num.nope=1", NULL};
	cr_assert_eq(parse(3, a4), -EINVAL);
	cr_assert_str_eq(pc.err, "--set: unknown setting [num] nope");

	pc.err[0] = '\0';
	const char *a5[] = {"prog", "stray", NULL};
	cr_assert_eq(parse(2, a5), -EINVAL);
	cr_assert(strstr(pc.err, "unexpected argument 'stray'") != NULL, "%s", pc.err);

	pc.err[0] = '\0';
	const char *a6[] = {"prog", "--u32", NULL};
	cr_assert_eq(parse(2, a6), -EINVAL);
	cr_assert(strstr(pc.err, "missing value for option '--u32'") != NULL, "%s", pc.err);

	/* a bad file stops before any flag is applied */
	pc.err[0] = '\0';
	const char *a7[] = {"prog", "--u32", "9", "-c", "/nonexistent.ini", NULL};
	cr_assert_eq(parse(5, a7), -EINVAL);
	cr_assert_eq(cfg.u32, 7);
}

Test(conf, help_lists_every_setting_with_flag_and_default)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	proto_conf_help(&pc, f);
	fclose(f);
	cr_assert(strstr(text, "usage: test ") != NULL);
	cr_assert(strstr(text, "[time]\n") != NULL);
	cr_assert(strstr(text, "--dur-ms DURATION") != NULL, "%s", text);
	cr_assert(strstr(text, "-n, --name STRING") != NULL, "%s", text);
	cr_assert(strstr(text, "--flag[=BOOL]") != NULL, "%s", text);
	cr_assert(strstr(text, "help for size (default 1M)") != NULL, "%s", text);
	for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
		cr_assert(strstr(text, table[i].help) != NULL, "%s missing", table[i].key);
	free(text);
}

Test(conf, help_and_version_exit_zero)
{
	const char *a1[] = {"prog", "--u32", "bad", "--help", NULL};
	cr_assert_eq(parse(4, a1), 1); /* help wins, nothing applied */
	pc.version = "1.2.3";
	const char *a2[] = {"prog", "-V", NULL};
	cr_assert_eq(parse(2, a2), 1);
}

Test(conf, parsers_for_the_cli)
{
	uint64_t v;

	cr_assert_eq(proto_conf_parse_duration("10", 1000, &v), 0); /* CLI: bare = seconds */
	cr_assert_eq(v, 10000);
	cr_assert_eq(proto_conf_parse_duration("18446744073709551615", 1000, &v), -EINVAL);
	cr_assert_eq(proto_conf_parse_duration("", 1, &v), -EINVAL);
	cr_assert_eq(proto_conf_parse_duration("213503982335d", 1, &v), -EINVAL); /* overflow */
	cr_assert_eq(proto_conf_parse_u64("18446744073709551615", &v), 0);
	cr_assert_eq(v, UINT64_MAX);
	cr_assert_eq(proto_conf_parse_u64("18446744073709551616", &v), -EINVAL);
	cr_assert_eq(proto_conf_parse_size("17179869184G", &v), -EINVAL); /* 2^64 */
	cr_assert_eq(proto_conf_parse_size("17179869183G", &v), 0);
}
