/* hydra-stack: runs the stack application.
 *
 *   hydra-stack          starts the tree, runs the demo (pop, push "rust",
 *                        pop) in a process once it is up, then stops in order
 *   hydra-stack --serve  starts the tree and runs until SIGINT or SIGTERM
 *
 * The exit status is hy_app_run's (0: stopped in order), or 1 when the demo
 * did not see what it expected. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "stack.h"

static bool demo_ok;

static void demo(void *arg)
{
    (void)arg;
    char a[64] = "", b[64] = "";
    int ra = stack_server_pop(a, sizeof(a));
    printf("pop -> \"%s\"\n", a);
    int rp = stack_server_push("rust");
    printf("push \"rust\"\n");
    int rb = stack_server_pop(b, sizeof(b));
    printf("pop -> \"%s\"\n", b);
    demo_ok = ra == 0 && rp == 0 && rb == 0 && strcmp(a, "hello") == 0 && strcmp(b, "rust") == 0;
} /* returning stops the application */

int main(int argc, char **argv)
{
    bool serve = argc > 1 && strcmp(argv[1], "--serve") == 0;
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 1; /* one registered server: one shard */
    struct hy_app app = stack_app;
    if (!serve)
        app.main = demo;
    struct hy_app_result res;
    int status = hy_app_run(&app, &cfg, &res);
    if (status != HY_APP_STOPPED) {
        char why[96];
        fprintf(stderr, "hydra-stack: ended with status %d (%s, %s)\n", status,
                hy_err_name(res.error), hy_reason_format(&res.reason, why, sizeof(why)));
        return status;
    }
    if (serve)
        fprintf(stderr, "hydra-stack: stopped by signal %d\n", res.signal);
    return serve || demo_ok ? 0 : 1;
}
