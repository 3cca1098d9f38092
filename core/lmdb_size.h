/*
 * A truncated LMDB file: data.mdb shorter than the last page its meta page names. LMDB reads
 * through its memory map, so touching a page past the end of the file is SIGBUS; the one
 * safe answer is to refuse the environment at open. Checked by the store and the log.
 */
#ifndef GEOKV_CORE_LMDB_SIZE_H
#define GEOKV_CORE_LMDB_SIZE_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

/* true when dir/data.mdb is shorter than its used pages (*have, *want in bytes) */
static inline bool gk_lmdb_truncated(MDB_env *env, const char *dir, uint64_t *have,
				     uint64_t *want)
{
	MDB_envinfo info;
	MDB_stat st;
	struct stat fs;
	char path[4200];

	snprintf(path, sizeof path, "%s/data.mdb", dir);
	if (mdb_env_info(env, &info) != 0 || mdb_env_stat(env, &st) != 0 || stat(path, &fs) != 0)
		return false;
	*have = (uint64_t)fs.st_size;
	*want = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
	return *have < *want;
}

#endif
