/* geokv-primary: entry point. Everything else is in core/primary.c and core/server.c. */
#include <stdlib.h>

#include "core/primary.h"

int main(int argc, char **argv)
{
	prim_config_t cfg;
	int rc = prim_config_parse(&cfg, argc, argv);

	if (rc != 0)
		return rc > 0 ? EXIT_SUCCESS : 2;
	cfg.argv = argv;
	return prim_run(&cfg) == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
