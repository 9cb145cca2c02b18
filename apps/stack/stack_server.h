/* The stack server: a GenServer holding a stack of strings. */
#ifndef HY_APPS_STACK_SERVER_H
#define HY_APPS_STACK_SERVER_H

#include "hydra.h"

enum { STACK_POP = 1, STACK_PUSH = 2, STACK_REPLY = 3, STACK_EMPTY = 4 };

/* Callbacks of the stack server; init's arg is a NUL-separated list of
 * initial elements, top first, ending with an empty string. */
extern const struct hy_gen_server_ops stack_server_ops;

#endif
