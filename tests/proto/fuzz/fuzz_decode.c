/*
 * libFuzzer target for one message decoder, chosen at build time by FUZZ_KIND (a
 * sample_kind, see samples.h) or, for FUZZ_KIND == -1, by the first input byte (responses).
 *
 * Property checked beyond "no crash, no over-read, no leak": whatever a decoder accepts
 * re-encodes to exactly the input bytes (batches and lists iterated to the end), so one
 * payload has one meaning; whatever it refuses is refused with a PROTO_E* code.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "samples.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t re[1 << 20];
	enum sample_kind kind;
	size_t relen;
	int rc;

#if FUZZ_KIND < 0
	if (size < 1)
		return 0;
	kind = (enum sample_kind)(data[0] % SK_NKINDS);
	data++;
	size--;
#else
	kind = (enum sample_kind)FUZZ_KIND;
#endif
	if (size > sizeof re)
		return 0;
	rc = sample_check(kind, data, size, re, sizeof re, &relen);
	if (rc == 0) {
		if (relen != size || memcmp(re, data, size) != 0)
			abort();
	} else if (!(rc <= PROTO_EAGAIN && rc > PROTO_ELAST)) {
		abort();
	}
	return 0;
}
