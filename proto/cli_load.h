/*
 * Internals of `geokv load` (cli_load.c: formats, validation, progress, summary;
 * cli_load_input.c: decompression and lines). Not a library: only proto/cli_load*.c.
 */
#ifndef GEOKV_PROTO_CLI_LOAD_H
#define GEOKV_PROTO_CLI_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/cli.h"

enum { LOAD_CODEC_NONE, LOAD_CODEC_GZIP, LOAD_CODEC_ZSTD };
/* load_src_* errors besides -errno: in the module band of neither proto nor kv */
#define LOAD_EDATA (-30901)   /* corrupt or truncated gzip/zstd input */
#define LOAD_ELONG (-30902)   /* a line longer than max_line (skipped) */

typedef struct load_src load_src_t;

/* path "-" is stdin. Peeks at the first bytes to pick the codec. 0, -errno, -ENOMEM. */
int  load_src_open(load_src_t **out, const char *path, size_t max_line);
void load_src_close(load_src_t *s);
int  load_src_codec(const load_src_t *s);
/* 1 with a line (NUL-terminated, no newline; valid until the next call), 0 at the end,
 * LOAD_ELONG (line skipped), LOAD_EDATA, -errno. */
int  load_src_line(load_src_t *s, char **p, size_t *len);
uint64_t load_src_lineno(const load_src_t *s);
/* Raw (compressed) bytes consumed so far, and the input's size (-1 when not a file). */
uint64_t load_src_raw_bytes(const load_src_t *s);
int64_t  load_src_size(const load_src_t *s);

#endif
