/* Shadows mbedTLS 2.28's private header for tests/proto/tls_public_api.sh: proto/tls.c must
 * build from public mbedTLS headers only (ssl_internal.h is gone in mbedTLS 3). */
#error "proto/tls.c includes mbedtls/ssl_internal.h, a private mbedTLS header"
