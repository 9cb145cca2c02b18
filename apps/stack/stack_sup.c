/* stack_sup: keeps the stack server running (OTP's <app>_sup module). */
#include "stack.h"

static const char initial[] = "hello\0world\0"; /* top first */

static const struct hy_child_spec children[] = {
    {
        .id = "stack_server",
        .start = stack_server_start_link,
        .arg = initial, /* copied by the supervisor */
        .arg_size = sizeof(initial),
        .restart = HY_PERMANENT,
        .shutdown_ns = 5000000000LL, /* 5 s to stop, then killed */
        .type = HY_WORKER,
    },
};

/* at most 3 restarts in 5 s, then this supervisor gives up and its own
 * supervisor (the shard's root) decides */
static const struct hy_sup_flags flags = {
    .strategy = HY_ONE_FOR_ONE,
    .intensity = 3,
    .period_s = 5,
};

int stack_sup_start_link(const void *arg, size_t arg_size, hy_pid *pid)
{
    (void)arg;
    (void)arg_size;
    struct hy_reason why;
    return hy_supervisor_start_link(&flags, children, sizeof(children) / sizeof(children[0]), NULL,
                                    pid, &why);
}
