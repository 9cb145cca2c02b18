/* Hydra error codes.
 *
 * Every public function returns 0 on success or a negative HY_E* code from the
 * table below (never errno, never a thread-local: coroutines share a thread).
 * Exit *reasons* of processes are a different thing: see signals.h.
 */
#ifndef HY_CORE_ERRORS_H
#define HY_CORE_ERRORS_H

/* X(name, value, message). Values mirror the closest errno so that tools that
 * print errno numbers stay meaningful. */
#define HY_ERRNO_MAP(X)                                                                  \
    X(EPERM, -1, "operation not permitted in this context")                              \
    X(ENOENT, -2, "no such entry")                                                       \
    X(ESRCH, -3, "no such process")                                                      \
    X(EINTR, -4, "interrupted")                                                          \
    X(EIO, -5, "input/output error")                                                     \
    X(EBADF, -9, "bad or closed socket")                                                 \
    X(EAGAIN, -11, "resource temporarily unavailable, try again")                        \
    X(ENOMEM, -12, "out of memory")                                                      \
    X(EBUSY, -16, "resource busy")                                                       \
    X(EEXIST, -17, "already exists")                                                     \
    X(ENODEV, -19, "no such device")                                                     \
    X(EINVAL, -22, "invalid argument")                                                   \
    X(EMFILE, -24, "too many open files")                                                \
    X(ENOSPC, -28, "no space left")                                                      \
    X(ERANGE, -34, "value out of range")                                                 \
    X(ENOSYS, -38, "not implemented on this platform")                                   \
    X(ENODATA, -61, "no data available")                                                 \
    X(EMSGSIZE, -90, "message too long")                                                 \
    X(ENOTSUP, -95, "operation not supported")                                           \
    X(EADDRINUSE, -98, "address already in use")                                         \
    X(EADDRNOTAVAIL, -99, "address not available")                                       \
    X(ENETUNREACH, -101, "network unreachable")                                          \
    X(ECONNRESET, -104, "connection reset by peer")                                      \
    X(ENOTCONN, -107, "socket not connected")                                            \
    X(ECONNREFUSED, -111, "connection refused")                                          \
    X(ETIMEDOUT, -110, "timed out")                                                      \
    X(EHOSTUNREACH, -113, "host unreachable")                                            \
    X(EALREADY, -114, "operation already in progress")                                   \
    X(ENOPROC, -1000, "no such process (dead or unknown pid)")                           \
    X(ENOTPROC, -1001, "must be called from inside a Hydra process")                     \
    X(ENOTSTARTED, -1002, "the runtime is not started")                                  \
    X(ESTARTED, -1003, "the runtime is already started")                                 \
    X(EBADCPU, -1004, "invalid CPU list (unknown, offline or duplicate CPU)")            \
    X(ENOTSHARD, -1005, "must be called from a shard thread")                            \
    X(EMAILBOX, -1006, "receiver's mailbox is full")                                     \
    X(ENONAME, -1007, "no process registered under that name")                           \
    X(EEXIT, -1008, "process exited")                                                    \
    X(EIGNORED, -1009, "start was ignored by the process's init")                          \
    X(ESTOPPED, -1010, "the process's init failed (returned stop or crashed)")             \
    X(ESHUTDOWN, -1011, "the supervisor is shutting down or gave up")                    \
    X(ECLOSED, -1012, "connection closed by peer")

enum hy_error {
#define HY_ERR_ENUM_(name, value, msg) HY_##name = (value),
    HY_ERRNO_MAP(HY_ERR_ENUM_)
#undef HY_ERR_ENUM_
};

/* Returns a static, human-readable description of a HY_E* code (or of 0).
 * Unknown codes give "unknown error". Never NULL.
 * Context: anywhere, signal-safe. */
const char *hy_strerror(int err);

/* Returns the symbolic name of a HY_E* code ("HY_ENOMEM"), "0" for success,
 * "HY_E?" when unknown. Context: anywhere, signal-safe. */
const char *hy_err_name(int err);

#endif /* HY_CORE_ERRORS_H */
