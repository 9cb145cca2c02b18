/* Hydra error codes.
 *
 * Every public function returns 0 on success or a negative HY_E* code from the
 * table below (never errno, never a thread-local: coroutines share a thread).
 * Exit *reasons* of processes are a different thing: see signals.h.
 */
#ifndef HY_CORE_ERRORS_H
#define HY_CORE_ERRORS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Codes no Hydra function returns, kept (names and values) for programs that
 * use the same vocabulary in their own APIs, as the stack example returns
 * HY_ENODATA for an empty stack. X(name, value, message), like the map below. */
#define HY_ERRNO_APP_MAP(X)                                                              \
    X(ERANGE, -34, "value out of range")                                                 \
    X(ENOSYS, -38, "not implemented on this platform")                                   \
    X(ENODATA, -61, "no data available")                                                 \
    X(EMAILBOX, -1006, "receiver's mailbox is full")                                     \
    X(ESHUTDOWN, -1011, "shutting down")

/* X(name, value, message): the application codes above, then every code
 * Hydra's functions return (meson test error_codes checks that the library's
 * sources use each one).
 * Values mirror the closest errno so that tools that print errno numbers stay
 * meaningful. */
#define HY_ERRNO_MAP(X)                                                                  \
    HY_ERRNO_APP_MAP(X)                                                                  \
    X(EPERM, -1, "operation not permitted in this context")                              \
    X(ENOENT, -2, "no such entry")                                                       \
    X(ESRCH, -3, "no such process")                                                      \
    X(EINTR, -4, "interrupted (a message arrived)")                                      \
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
    X(ENONAME, -1007, "no process registered under that name")                           \
    X(EEXIT, -1008, "process exited")                                                    \
    X(EIGNORED, -1009, "start was ignored by the process's init")                          \
    X(ESTOPPED, -1010, "the process's init failed (returned stop or crashed)")             \
    X(ECLOSED, -1012, "connection closed by peer")

/* The statuses hy_app_run() returns (enum hy_app_status, otp/application.h):
 * positive, so that main() can return them as its exit status, and
 * described by hy_strerror() and hy_err_name() like the codes above, so any
 * non-zero value a Hydra function returns can be printed the same way.
 * X(name, value, message); HY_APP_STOPPED is 0 (success). */
#define HY_APP_STATUS_MAP(X)                                                             \
    X(APP_GAVE_UP, 1, "application ended: its root supervisor gave up")                  \
    X(APP_START_FAILED, 2, "application failed to start")                                \
    X(APP_MAIN_FAILED, 3, "application's main process ended abnormally")                 \
    X(APP_HALTED, 4, "application halted: the runtime was stopped under it")             \
    X(APP_RUNTIME_FAILED, 5, "application could not run (see its result's error)")

enum hy_error {
#define HY_ERR_ENUM_(name, value, msg) HY_##name = (value),
    HY_ERRNO_MAP(HY_ERR_ENUM_)
#undef HY_ERR_ENUM_
};

/* Returns a static, human-readable description of a HY_E* code, of an
 * HY_APP_* status (positive) or of 0. Unknown codes give "unknown error".
 * Never NULL.
 * Context: anywhere, signal-safe. */
const char *hy_strerror(int err);

/* Returns the symbolic name of a HY_E* code ("HY_ENOMEM") or HY_APP_*
 * status ("HY_APP_GAVE_UP"), "0" for success, "HY_E?" when unknown.
 * Context: anywhere, signal-safe. */
const char *hy_err_name(int err);

#ifdef __cplusplus
}
#endif

#endif /* HY_CORE_ERRORS_H */
