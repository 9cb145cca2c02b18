/* The stack application: the interfaces between its modules, shaped like an
 * OTP release (apps/stack/README.md):
 *
 *   stack_server.c  the GenServer: callbacks and its client API
 *   stack_sup.c     the supervisor that keeps the server running
 *   stack_app.c     the application: what every shard's root supervises
 *   main.c          hydra-stack: runs the application
 */
#ifndef HY_APPS_STACK_H
#define HY_APPS_STACK_H

#include <stddef.h>

#include "hydra.h"

/* ---- stack_server.c ------------------------------------------------------ */

/* Request and reply tags. */
enum { STACK_POP = 1, STACK_PUSH = 2, STACK_REPLY = 3, STACK_EMPTY = 4 };

/* The name the server registers under. */
#define STACK_NAME "stack"

/* Callbacks of the stack server; init's arg is a NUL-separated list of
 * initial elements, top first, ending with an empty string
 * ("hello\0world\0"). */
extern const struct hy_gen_server_ops stack_server_ops;

/* Child start function: starts the server registered as STACK_NAME, linked
 * to the calling supervisor, with arg[arg_size] as init's list (copied). */
int stack_server_start_link(const void *arg, size_t arg_size, hy_pid *pid);

/* Pops the top element into out (cap bytes, NUL-terminated). Errors:
 * HY_ENODATA (the stack is empty), and hy_gen_server_call_name's.
 * Context: a process. */
int stack_server_pop(char *out, size_t cap);

/* Pushes item (copied); returns at once. Errors: HY_ENOPROC (no server),
 * HY_EMSGSIZE. Context: a process. */
int stack_server_push(const char *item);

/* ---- stack_sup.c ----------------------------------------------------------- */

/* Child start function: a one_for_one supervisor over the stack server. */
int stack_sup_start_link(const void *arg, size_t arg_size, hy_pid *pid);

/* ---- stack_app.c ----------------------------------------------------------- */

/* The application: every shard's root supervises stack_sup. The server
 * registers one name, so run it on one shard (cfg.nshards = 1). */
extern const struct hy_app stack_app;

#endif /* HY_APPS_STACK_H */
