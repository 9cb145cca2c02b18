/* Socket addresses for the TCP and UDP APIs (tcp.h, udp.h).
 *
 * A struct hy_addr holds an IPv4 or IPv6 address and a port, by value. Literal
 * addresses are parsed without blocking; host names are resolved with
 * getaddrinfo() on the blocking-call pool (blocking.h), so only the calling
 * process waits.
 */
#ifndef HY_CORE_ADDR_H
#define HY_CORE_ADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* An IPv4 or IPv6 socket address (copied by value). len is the length of the
 * sockaddr inside ss (0 for an empty address). */
struct hy_addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* Longest text hy_addr_format() writes, NUL included ("[v6]:port"). */
#define HY_ADDR_TEXT_MAX 56

/* Parses an IPv4 ("127.0.0.1") or IPv6 ("::1", without brackets) literal and
 * a port into *out. ip NULL or "" means the IPv4 wildcard 0.0.0.0.
 * Errors: HY_EINVAL (not a literal address; out NULL).
 * Context: anywhere. */
int hy_addr_parse(const char *ip, uint16_t port, struct hy_addr *out);

/* Resolves a host name (or literal) to its first address, IPv4 preferred,
 * with getaddrinfo() run on the blocking-call pool; the calling process
 * waits, the shard does not. host is borrowed (copied before the wait).
 * Literals are parsed at once without the pool.
 * Errors: HY_ENOENT (no such host), HY_EINVAL, HY_ENOTPROC, HY_ENOMEM.
 * Context: a process. */
int hy_addr_resolve(const char *host, uint16_t port, struct hy_addr *out);

/* Port of a (port in host order; 0 for an empty address). Context: anywhere. */
uint16_t hy_addr_port(const struct hy_addr *a);

/* Writes "1.2.3.4:80" or "[::1]:80" into buf (len bytes, NUL-terminated,
 * truncated if short) and returns buf. Context: anywhere. */
char *hy_addr_format(const struct hy_addr *a, char *buf, size_t len);

#endif /* HY_CORE_ADDR_H */
