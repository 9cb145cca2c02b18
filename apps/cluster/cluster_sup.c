/* cluster_sup: keeps the cluster server running (OTP's <app>_sup module). */
#include "cluster.h"

/* at most 3 restarts in 5 s, then this supervisor gives up and its own
 * supervisor (shard 0's root) decides */
static const struct hy_sup_flags flags = {
    .strategy = HY_ONE_FOR_ONE,
    .intensity = 3,
    .period_s = 5,
};

/* arg[arg_size]: a pointer to the struct cluster_config, handed on to the
 * server (the supervisor copies it) */
int cluster_sup_start_link(const void *arg, size_t arg_size, hy_pid *pid)
{
    const struct hy_child_spec children[] = {
        {
            .id = "cluster_server",
            .start = cluster_server_start_link,
            .arg = arg,
            .arg_size = arg_size,
            .restart = HY_PERMANENT,
            .shutdown_ns = 5000000000LL, /* 5 s to stop, then killed */
            .type = HY_WORKER,
        },
    };
    struct hy_reason why;
    return hy_supervisor_start_link(&flags, children, sizeof(children) / sizeof(children[0]), NULL,
                                    pid, &why);
}
