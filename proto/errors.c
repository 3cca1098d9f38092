#include "proto/errors.h"

#include <string.h>
#include <uv.h>

#include "raft/raft.h"

struct errdef {
	int code;
	const char *name;
	const char *text;
};

static const struct errdef errtab[] = {
	{KV_ENOTFOUND, "KV_ENOTFOUND", "key not found"},
	{KV_EEXIST, "KV_EEXIST", "key already exists"},
	{KV_EREVISION, "KV_EREVISION", "wrong last revision for key"},
	{KV_EBADKEY, "KV_EBADKEY", "invalid key"},
	{KV_EBADBUCKET, "KV_EBADBUCKET", "invalid bucket name"},
	{KV_ENOBUCKET, "KV_ENOBUCKET", "bucket not found"},
	{KV_EBUCKETEXISTS, "KV_EBUCKETEXISTS", "bucket exists with a different configuration"},
	{KV_ETOOBIG, "KV_ETOOBIG", "value larger than the bucket's maximum value size"},
	{KV_EFULL, "KV_EFULL", "store is full"},
	{KV_ECORRUPT, "KV_ECORRUPT", "stored data failed its checksum"},
	{KV_EBADCONFIG, "KV_EBADCONFIG", "invalid bucket configuration"},
	{KV_EREADONLY, "KV_EREADONLY", "store is read-only"},
	{KV_EINTERNAL, "KV_EINTERNAL", "internal storage error"},
	{KV_EBATCH, "KV_EBATCH", "an operation in the batch failed"},
	{PROTO_EAGAIN, "PROTO_EAGAIN", "incomplete frame"},
	{PROTO_EBADMSG, "PROTO_EBADMSG", "malformed message"},
	{PROTO_ETOOBIG, "PROTO_ETOOBIG", "frame or field too large"},
	{PROTO_EVERSION, "PROTO_EVERSION", "unsupported protocol version"},
	{PROTO_EAUTH, "PROTO_EAUTH", "authentication failed"},
	{PROTO_ECLUSTER, "PROTO_ECLUSTER", "cluster id mismatch"},
	{PROTO_ENOTLEADER, "PROTO_ENOTLEADER", "not the leader"},
	{PROTO_EBUSY, "PROTO_EBUSY", "too many requests"},
	{PROTO_EINTERNAL, "PROTO_EINTERNAL", "internal server error"},
	{PROTO_ECLOSED, "PROTO_ECLOSED", "connection closed"},
	{PROTO_ETIMEDOUT, "PROTO_ETIMEDOUT", "request timed out"},
	{PROTO_EBADTYPE, "PROTO_EBADTYPE", "unknown message type"},
	{PROTO_ESHUTDOWN, "PROTO_ESHUTDOWN", "server shutting down"},
	{PROTO_ETLS, "PROTO_ETLS", "TLS failed"},
};

static const struct errdef *find(int err)
{
	for (size_t i = 0; i < sizeof errtab / sizeof errtab[0]; i++)
		if (errtab[i].code == err)
			return &errtab[i];
	return NULL;
}

const char *geokv_strerror(int err)
{
	const struct errdef *d;

	if (err == 0)
		return "success";
	if ((d = find(err)) != NULL)
		return d->text;
	if (err <= -30300 && err > -30400)
		return raft_strerror(err);
	if (err <= -30780 && err >= -30799)
		return "LMDB error"; /* callers translate MDB codes at the boundary */
	if (err < 0 && err > -4096)
		return uv_strerror(err); /* negative errno, same convention as libuv */
	return "unknown error";
}

const char *geokv_errname(int err)
{
	const struct errdef *d;

	if (err == 0)
		return "OK";
	if ((d = find(err)) != NULL)
		return d->name;
	if (err <= -30300 && err > -30400)
		return "RAFT_ERROR";
	if (err < 0 && err > -4096)
		return uv_err_name(err);
	return "EUNKNOWN";
}
