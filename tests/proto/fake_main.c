/*
 * fake_serverd: runs the test fake server (fake_server.h) until stdin closes; prints its
 * port on stdout first. Used by cli_test.sh to drive the geokv CLI without a daemon.
 * Flags: --follower (writes refused with NOTLEADER), --silent, --page N, --fail-bad.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_server.h"

int main(int argc, char **argv)
{
	fake_cfg_t cfg = {0};
	int port;
	char buf[64];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--follower") == 0)
			cfg.follower = true;
		else if (strcmp(argv[i], "--silent") == 0)
			cfg.silent = true;
		else if (strcmp(argv[i], "--fail-bad") == 0)
			cfg.fail_key_bad = true;
		else if (strcmp(argv[i], "--page") == 0 && i + 1 < argc)
			cfg.page_limit = (uint32_t)atoi(argv[++i]);
	}
	fake_server_t *f = fake_start(&cfg, &port);
	printf("%d\n", port);
	fflush(stdout);
	while (fgets(buf, sizeof buf, stdin))
		;
	fake_stop(f);
	return 0;
}
