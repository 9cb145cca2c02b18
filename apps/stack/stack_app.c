/* stack_app: the application (OTP's <app>_app module): what the root
 * supervisor of every shard starts. hy_app_run() builds the node's tree from
 * it: node root -> shard roots -> stack_sup -> stack_server. */
#include "stack.h"

static const struct hy_child_spec children[] = {
    {
        .id = "stack_sup",
        .start = stack_sup_start_link,
        .restart = HY_PERMANENT,
        .type = HY_SUPERVISOR, /* shutdown: infinity, the default for supervisors */
    },
};

const struct hy_app stack_app = {
    .name = "stack",
    .children = children,
    .nchildren = sizeof(children) / sizeof(children[0]),
};
