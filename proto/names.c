/*
 * Name rules (bucket, key, key prefix) and static names for frame types and ops.
 *
 * The rules are byte tables, not <ctype.h>: isalnum() follows the locale, and a key that is
 * valid on one node must be valid on every node.
 */
#include "proto/proto.h"

/* Bytes allowed in a bucket name: [A-Za-z0-9_-]. */
static bool bucket_byte(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-';
}

/* Bytes allowed in a key: [-/_=.A-Za-z0-9]. */
static bool key_byte(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '/' || c == '_' || c == '=' || c == '.';
}

bool proto_bucket_valid(const void *name, size_t len)
{
	const uint8_t *p = name;

	if (len == 0 || len > PROTO_MAX_BUCKET)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!bucket_byte(p[i]))
			return false;
	return true;
}

bool proto_key_valid(const void *key, size_t len)
{
	const uint8_t *p = key;

	if (len == 0 || len > PROTO_MAX_KEY)
		return false;
	if (p[0] == '.' || p[len - 1] == '.')
		return false;
	for (size_t i = 0; i < len; i++)
		if (!key_byte(p[i]))
			return false;
	return true;
}

bool proto_prefix_valid(const void *prefix, size_t len)
{
	const uint8_t *p = prefix;

	if (len == 0)
		return true;
	if (len > PROTO_MAX_KEY)
		return false;
	/* "orders." lists every key under "orders": allow exactly one trailing dot. */
	if (p[len - 1] == '.')
		return len > 1 && proto_key_valid(p, len - 1);
	return proto_key_valid(p, len);
}

const char *proto_type_name(unsigned type)
{
	switch (type) {
	case PROTO_T_HELLO:    return "HELLO";
	case PROTO_T_HELLO_OK: return "HELLO_OK";
	case PROTO_T_ERROR:    return "ERROR";
	case PROTO_T_PING:     return "PING";
	case PROTO_T_PONG:     return "PONG";
	case PROTO_T_REQ:      return "REQ";
	case PROTO_T_RESP:     return "RESP";
	default:               return "?";
	}
}

const char *proto_op_name(unsigned op)
{
	switch (op) {
	case PROTO_OP_BUCKET_ADD:  return "BUCKET_ADD";
	case PROTO_OP_BUCKET_DEL:  return "BUCKET_DEL";
	case PROTO_OP_PUT:         return "PUT";
	case PROTO_OP_CREATE:      return "CREATE";
	case PROTO_OP_UPDATE:      return "UPDATE";
	case PROTO_OP_DELETE:      return "DELETE";
	case PROTO_OP_PURGE:       return "PURGE";
	case PROTO_OP_BATCH:       return "BATCH";
	case PROTO_OP_SBATCH:      return "SBATCH";
	case PROTO_OP_GET:         return "GET";
	case PROTO_OP_KEYS:        return "KEYS";
	case PROTO_OP_HISTORY:     return "HISTORY";
	case PROTO_OP_BUCKET_INFO: return "BUCKET_INFO";
	case PROTO_OP_BUCKET_LIST: return "BUCKET_LIST";
	case PROTO_OP_STATUS:      return "STATUS";
	case PROTO_OP_HASH:        return "HASH";
	case PROTO_OP_WATCH:       return "WATCH";
	case PROTO_OP_SCAN:        return "SCAN";
	case PROTO_OP_SNAPSHOT:    return "SNAPSHOT";
	default:                   return "?";
	}
}
