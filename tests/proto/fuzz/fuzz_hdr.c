/*
 * libFuzzer target for the frame header: treats the input as a byte stream and walks it
 * frame by frame, as a connection's read loop does, with a small max_frame so both the
 * PROTO_ETOOBIG and the PROTO_EAGAIN paths are reached. Each payload of a REQ frame also
 * goes through the op decoder.
 */
#include <stdint.h>
#include <stdlib.h>

#include "proto/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;
	proto_hdr_t h;
	proto_op_t op;

	while (off < size) {
		int rc = proto_hdr_decode(data + off, size - off, 4096, &h);
		if (rc == PROTO_EAGAIN || rc == PROTO_EBADMSG || rc == PROTO_ETOOBIG)
			break;
		if (rc != PROTO_HDR_LEN || h.len > size - off - PROTO_HDR_LEN)
			abort();
		if (h.type == PROTO_T_REQ)
			(void)proto_op_decode(data + off + PROTO_HDR_LEN, h.len, &op);
		off += PROTO_HDR_LEN + h.len;
	}
	return 0;
}
