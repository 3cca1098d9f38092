/*
 * `-o json` output of the geokv CLI: one compact JSON object per line on stdout (a single
 * object for a single answer, NDJSON for lists), built with jansson.
 *
 * Values are JSON strings when they are valid UTF-8 ("value"), else base64 ("value_b64"),
 * the same two fields `geokv load` accepts, so `geokv dump` output loads back byte for byte.
 */
#include "proto/cli.h"

#include <mbedtls/base64.h>
#include <stdio.h>
#include <stdlib.h>

int cli_json_emit(json_t *o)
{
	int rc = 0;

	if (o == NULL)
		return -12; /* -ENOMEM: jansson allocates */
	if (json_dumpf(o, stdout, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
		rc = -5;
	putchar('\n');
	json_decref(o);
	return rc;
}

int cli_json_set_value(json_t *o, const void *p, size_t len)
{
	json_t *s = json_stringn(p ? p : "", len); /* NULL when not valid UTF-8 */
	size_t n = 0;

	if (s)
		return json_object_set_new(o, "value", s);
	/* 4 output bytes per 3 input bytes, plus the NUL mbedtls writes */
	size_t cap = (len + 2) / 3 * 4 + 1;
	unsigned char *b = malloc(cap);
	if (!b)
		return -1;
	if (mbedtls_base64_encode(b, cap, &n, p, len) != 0) {
		free(b);
		return -1;
	}
	int rc = json_object_set_new(o, "value_b64", json_stringn((const char *)b, n));
	free(b);
	return rc;
}

const char *cli_kind_name(uint8_t kind)
{
	return kind == PROTO_REC_PUT ? "PUT" : kind == PROTO_REC_DEL ? "DEL" : "PURGE";
}

json_t *cli_json_rec(const char *bucket, const proto_rec_t *r, bool with_value)
{
	char t[40];
	json_t *o = json_object();

	if (!o)
		return NULL;
	if (bucket)
		json_object_set_new(o, "bucket", json_string(bucket));
	json_object_set_new(o, "key", json_stringn((const char *)r->key.p, r->key.len));
	json_object_set_new(o, "revision", json_integer((json_int_t)r->rev));
	json_object_set_new(o, "created_revision", json_integer((json_int_t)r->create_rev));
	json_object_set_new(o, "time", json_string(cli_fmt_time(r->time_ms, t, sizeof t)));
	json_object_set_new(o, "op", json_string(cli_kind_name(r->kind)));
	json_object_set_new(o, "length", json_integer(r->value.len));
	if (with_value && r->kind == PROTO_REC_PUT &&
	    cli_json_set_value(o, r->value.p, r->value.len) != 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

json_t *cli_json_bucket(const proto_bucket_info_t *b)
{
	json_t *o = json_object();

	if (!o)
		return NULL;
	json_object_set_new(o, "bucket", json_stringn((const char *)b->name.p, b->name.len));
	json_object_set_new(o, "history", json_integer(b->cfg.history));
	json_object_set_new(o, "max_value", json_integer(b->cfg.max_value ? b->cfg.max_value :
							  PROTO_DEFAULT_MAX_VALUE));
	json_object_set_new(o, "ttl_ms", json_integer((json_int_t)b->cfg.max_age_ms));
	json_object_set_new(o, "content_type", json_stringn((const char *)b->cfg.content_type.p,
							    b->cfg.content_type.len));
	json_object_set_new(o, "keys", json_integer((json_int_t)b->keys));
	json_object_set_new(o, "bytes", json_integer((json_int_t)b->bytes));
	json_object_set_new(o, "created_revision", json_integer((json_int_t)b->created_rev));
	return o;
}
