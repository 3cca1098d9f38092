/*
 * geokv watch, dump and snapshot save: the commands that read more than one answer.
 *
 *   watch: WATCH long-polls (proto.h): the member answers at once with the changes from a
 *     revision on, or waits up to 5 s for the next one; the CLI asks again from next_rev,
 *     so it sees every retained change in revision order, without polling.
 *   dump: SCAN pages of live records in key order, printed as NDJSON {"key","value"} (or
 *     "value_b64"): exactly what `geokv load` reads back. Each page is its own read; for
 *     one consistent copy of the whole store use snapshot save.
 *   snapshot save: the member's snapshot stream, in chunks of one session, into FILE.tmp,
 *     fsynced and renamed to FILE; prints its XXH64, which equals the member's content
 *     checksum (status --checksum) at the snapshot's applied index.
 */
#include "proto/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

/* ---- watch ------------------------------------------------------------------------------ */

static void print_change(const char *bucket, const proto_rec_t *r, bool json)
{
	char t[40];

	if (json) {
		cli_json_emit(cli_json_rec(bucket, r, true));
		return;
	}
	printf("[%s] %s %s > %.*s revision: %" PRIu64, cli_fmt_time(r->time_ms, t, sizeof t),
	       cli_kind_name(r->kind), bucket, (int)r->key.len, (const char *)r->key.p, r->rev);
	if (r->kind != PROTO_REC_PUT) {
		putchar('\n');
		return;
	}
	bool printable = true;
	for (uint32_t i = 0; i < r->value.len; i++)
		if (r->value.p[i] < 0x20 || r->value.p[i] > 0x7e)
			printable = false;
	if (printable)
		printf(": %.*s\n", (int)r->value.len, (const char *)r->value.p);
	else
		printf(": (%u bytes, binary)\n", r->value.len);
}

int cli_cmd_watch(cli_ctx_t *cx, const char *bucket, const char *prefix, const opts_t *o)
{
	kvc_t *k;
	uint64_t from = o->has_rev ? o->rev : 0, seen = 0;
	int rc;

	/* the member may hold a WATCH for 5 s before it answers "nothing new" */
	if (cx->timeout_ms < 15000)
		cx->timeout_ms = 15000;
	if (!(k = cli_client(cx)))
		return cx->open_exit;
	for (;;) {
		proto_op_t op;
		const uint8_t *body;
		uint32_t len;
		proto_list_reader_t lr;
		proto_rec_t r;
		uint64_t next;

		memset(&op, 0, sizeof op);
		op.op = PROTO_OP_WATCH;
		op.bucket = (proto_bytes_t){(const uint8_t *)bucket, (uint32_t)strlen(bucket)};
		op.key = (proto_bytes_t){(const uint8_t *)prefix, (uint32_t)strlen(prefix)};
		op.rev = from;
		op.limit = 1000;
		if ((rc = kvc_call(k, &op, &body, &len)) != 0)
			return cli_fail(cx, rc, rc == KV_EBADKEY ? prefix : bucket);
		if ((rc = proto_watch_resp_decode(body, len, &next, &lr)) != 0)
			return cli_fail(cx, rc, "watch");
		while ((rc = proto_list_next_rec(&lr, &r)) == 1) {
			print_change(bucket, &r, cx->json);
			if (o->count && ++seen >= o->count) {
				fflush(stdout);
				return CLI_OK;
			}
		}
		if (fflush(stdout) != 0 || ferror(stdout))
			return CLI_ERR; /* the reader went away */
		if (next > from || from == 0)
			from = next;
	}
}

/* ---- dump ------------------------------------------------------------------------------- */

int cli_cmd_dump(cli_ctx_t *cx, const char *bucket, const char *prefix, const opts_t *o)
{
	kvc_t *k;
	char after[PROTO_MAX_KEY];
	size_t alen = 0;
	uint64_t n = 0;
	int rc;

	(void)o;
	if (!(k = cli_client(cx)))
		return cx->open_exit;
	for (;;) {
		proto_op_t op;
		const uint8_t *body;
		uint32_t len;
		proto_list_reader_t lr;
		proto_rec_t r;

		memset(&op, 0, sizeof op);
		op.op = PROTO_OP_SCAN;
		op.bucket = (proto_bytes_t){(const uint8_t *)bucket, (uint32_t)strlen(bucket)};
		op.key = (proto_bytes_t){(const uint8_t *)prefix, (uint32_t)strlen(prefix)};
		op.after = (proto_bytes_t){(const uint8_t *)after, (uint32_t)alen};
		op.limit = 10000;
		if ((rc = kvc_call(k, &op, &body, &len)) != 0)
			return cli_fail(cx, rc, rc == KV_EBADKEY ? prefix : bucket);
		if ((rc = proto_list_reader_init(&lr, body, len, PROTO_OP_SCAN)) != 0)
			return cli_fail(cx, rc, "dump");
		while ((rc = proto_list_next_rec(&lr, &r)) == 1) {
			json_t *j = json_object();
			if (!j || json_object_set_new(j, "key", json_stringn((const char *)r.key.p,
									     r.key.len)) ||
			    cli_json_set_value(j, r.value.p, r.value.len) != 0) {
				json_decref(j);
				return cli_fail(cx, -ENOMEM, "dump");
			}
			cli_json_emit(j);
			memcpy(after, r.key.p, r.key.len);
			alen = r.key.len;
			n++;
		}
		if (!lr.more)
			break;
	}
	if (fflush(stdout) != 0)
		return CLI_ERR;
	return CLI_OK;
}

/* ---- snapshot save ------------------------------------------------------------------------ */

int cli_cmd_snapshot_save(cli_ctx_t *cx, const char *file, const opts_t *o)
{
	kvc_t *k;
	char tmp[4096], session[PROTO_MAX_SESSION];
	size_t slen = 0;
	uint64_t off = 0, size = 0;
	proto_snap_resp_t r;
	XXH64_state_t *h;
	int fd, rc, code = CLI_OK;

	(void)o;
	if (!(k = cli_client(cx)))
		return cx->open_exit;
	if (snprintf(tmp, sizeof tmp, "%s.tmp", file) >= (int)sizeof tmp)
		return cli_usage_error("snapshot save", "file name too long");
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
		fprintf(stderr, "geokv: %s: %s\n", tmp, strerror(errno));
		return CLI_ERR;
	}
	h = XXH64_createState();
	XXH64_reset(h, 0);
	memset(&r, 0, sizeof r);
	do {
		proto_op_t op;
		const uint8_t *body;
		uint32_t len;

		memset(&op, 0, sizeof op);
		op.op = PROTO_OP_SNAPSHOT;
		op.rev = off;
		op.after = (proto_bytes_t){(const uint8_t *)session, (uint32_t)slen};
		op.limit = 4u << 20;
		if ((rc = kvc_call(k, &op, &body, &len)) != 0) {
			code = cli_fail(cx, rc, "snapshot");
			goto fail;
		}
		if ((rc = proto_snap_resp_decode(body, len, &r)) != 0 ||
		    (slen && (r.session.len != slen || memcmp(r.session.p, session, slen))) ||
		    (slen && r.size != size) || off + r.chunk.len > r.size ||
		    (r.chunk.len == 0 && off < r.size)) {
			code = cli_fail(cx, rc ? rc : PROTO_EBADMSG, "snapshot");
			goto fail;
		}
		if (!slen) {
			slen = r.session.len;
			memcpy(session, r.session.p, slen);
			size = r.size;
		}
		for (size_t done = 0; done < r.chunk.len;) {
			ssize_t w = write(fd, r.chunk.p + done, r.chunk.len - done);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				fprintf(stderr, "geokv: %s: %s\n", tmp, strerror(errno));
				code = CLI_ERR;
				goto fail;
			}
			done += (size_t)w;
		}
		XXH64_update(h, r.chunk.p, r.chunk.len);
		off += r.chunk.len;
		if (!cx->json && isatty(STDERR_FILENO))
			fprintf(stderr, "\r%" PRIu64 " / %" PRIu64 " bytes\033[K", off, size);
	} while (off < size);
	if (!cx->json && isatty(STDERR_FILENO))
		fputc('\n', stderr);
	if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, file) != 0) {
		fprintf(stderr, "geokv: %s: %s\n", file, strerror(errno));
		fd = -1;
		code = CLI_ERR;
		goto fail;
	}
	uint64_t sum = XXH64_digest(h);
	XXH64_freeState(h);
	char hex[20];
	snprintf(hex, sizeof hex, "%016" PRIx64, sum);
	if (cx->json)
		cli_json_emit(json_pack("{sssIsIsIsIss}", "file", file, "bytes", (json_int_t)size,
					"applied", (json_int_t)r.applied, "revision",
					(json_int_t)r.revision, "records", (json_int_t)r.records,
					"checksum", hex));
	else
		printf("snapshot saved to %s: %" PRIu64 " bytes, applied %" PRIu64 ", revision %"
		       PRIu64 ", %" PRIu64 " records, checksum %s\n", file, size, r.applied,
		       r.revision, r.records, hex);
	return CLI_OK;
fail:
	XXH64_freeState(h);
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return code;
}
