/* The undo journal of tests/faults/unsynced.c: records of a header and `len` bytes. */
#ifndef GEOKV_TESTS_UNSYNCED_H
#define GEOKV_TESTS_UNSYNCED_H

#include <stdint.h>

enum { UNU_UNDO = 1, UNU_REDO = 2 };

typedef struct unu_rec {
	uint64_t kind;  /* UNU_UNDO: bytes the write replaced; UNU_REDO: bytes a durable write wrote */
	uint64_t off;   /* file offset */
	uint64_t size;  /* UNU_UNDO: the file's size before the write */
	uint64_t len;   /* bytes that follow */
} unu_rec_t;

#endif
