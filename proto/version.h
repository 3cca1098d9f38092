/*
 * The software version, for `--version` on the CLI and every daemon.
 *
 * GEOKV_VERSION (a compile-time string, from meson's project version; the top meson.build
 * defines it) is the release; geokv_version() adds the source revision when the tree was a
 * git checkout at build time ("0.1.0 (git 840f2d2)"; "0.1.0" otherwise). The string is
 * static: never freed.
 */
#ifndef GEOKV_PROTO_VERSION_H
#define GEOKV_PROTO_VERSION_H

#ifndef GEOKV_VERSION
#define GEOKV_VERSION "0.0.0"
#endif

const char *geokv_version(void);

#endif
