#include "raft/raft.h"

const char *raft_strerror(int err)
{
	switch (err) {
	case RAFT_ENOTLEADER: return "not the raft leader";
	default: return "raft error";
	}
}
