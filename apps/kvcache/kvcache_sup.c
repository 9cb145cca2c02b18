/* kvcache_sup: keeps the shard's key owner running (OTP's <app>_sup). A
 * restarted owner starts with an empty store. */
#include "kvcache.h"

static const struct hy_child_spec children[] = {
    {
        .id = "kvcache_server",
        .start = kvcache_server_start_link,
        .restart = HY_PERMANENT,
        .shutdown_ns = 2000000000LL, /* 2 s, then killed */
        .type = HY_WORKER,
    },
};

/* at most 10 restarts in 5 s, then the shard's root decides */
static const struct hy_sup_flags flags = {
    .strategy = HY_ONE_FOR_ONE,
    .intensity = 10,
    .period_s = 5,
};

int kvcache_sup_start_link(const void *arg, size_t arg_size, hy_pid *pid)
{
    (void)arg;
    (void)arg_size;
    struct hy_reason why;
    return hy_supervisor_start_link(&flags, children, sizeof(children) / sizeof(children[0]), NULL,
                                    pid, &why);
}
