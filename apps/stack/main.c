/* hydra-stack: the stack server of the tutorial. */
#include <stdio.h>
#include <string.h>

#include "hydra.h"
#include "stack_server.h"

static int pop(hy_pid srv, char *out, size_t cap)
{
    struct hy_msg *r;
    int rc = hy_gen_server_call(srv, STACK_POP, NULL, 0, 5000000000LL, &r, NULL);
    if (rc)
        return rc;
    size_t n = r->size < cap - 1 ? r->size : cap - 1;
    memcpy(out, r->data, n);
    out[n] = '\0';
    int empty = r->tag == STACK_EMPTY;
    hy_msg_free(r);
    return empty ? HY_ENODATA : 0;
}

static void stack_main(void *arg)
{
    int *status = arg;
    static const char init[] = "hello\0world\0";
    struct hy_gen_server_opts o = HY_GEN_SERVER_OPTS_INIT;
    o.name = "stack";
    o.arg_size = sizeof(init);
    hy_pid srv;
    int rc = hy_gen_server_start_link(&stack_server_ops, (void *)init, &o, &srv);
    if (rc) {
        printf("start failed: %s\n", hy_strerror(rc));
        return;
    }
    char a[64], b[64];
    if (pop(srv, a, sizeof a) == 0)
        printf("pop -> \"%s\"\n", a);
    hy_gen_server_cast(srv, STACK_PUSH, "rust", 4);
    printf("push \"rust\"\n");
    if (pop(srv, b, sizeof b) == 0)
        printf("pop -> \"%s\"\n", b);
    hy_gen_server_stop(srv, hy_reason_make(HY_REASON_NORMAL), HY_INFINITY);
    *status = strcmp(a, "hello") == 0 && strcmp(b, "rust") == 0 ? 0 : 1;
}

int main(void)
{
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 1;
    int status = 1;
    int rc = hy_run(&cfg, stack_main, &status);
    if (rc) {
        fprintf(stderr, "hydra-stack: %s\n", hy_strerror(rc));
        return 1;
    }
    return status;
}
