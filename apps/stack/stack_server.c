/* The stack server: a GenServer holding a stack of strings (the seed's
 * example): init with ["hello", "world"]; call pop -> "hello"; cast push
 * "rust"; call pop -> "rust". Its state lives in the server's arena
 * (hy_alloc), so it is released with the process, however it ends. */
#include <string.h>

#include "stack.h"

#define STACK_MAX       1024
#define CALL_TIMEOUT_NS 5000000000LL

struct stack {
    unsigned n;
    char *items[STACK_MAX]; /* items[n-1] is the top */
};

static char *dup_in_arena(const char *s, size_t len)
{
    char *c = hy_alloc(len + 1);
    if (c) {
        memcpy(c, s, len);
        c[len] = '\0';
    }
    return c;
}

/* ---- callbacks (run in the server process) ----------------------------------- */

static int stack_init(struct hy_gs *gs, void *arg)
{
    struct stack *st = hy_alloc(sizeof(*st));
    if (!st) {
        hy_gs_stop(gs, hy_reason_user(1, "out of memory"));
        return HY_GS_STOP;
    }
    st->n = 0;
    /* arg: "hello\0world\0\0", top first: push in reverse */
    const char *items[STACK_MAX];
    unsigned k = 0;
    for (const char *p = arg; p && *p && k < STACK_MAX; p += strlen(p) + 1)
        items[k++] = p;
    while (k > 0) {
        k--;
        st->items[st->n++] = dup_in_arena(items[k], strlen(items[k]));
    }
    hy_gs_set_state(gs, st);
    return HY_GS_OK;
}

static int stack_call(struct hy_gs *gs, uint64_t tag, const void *data, size_t len, hy_gs_from from)
{
    (void)data;
    (void)len;
    struct stack *st = hy_gs_state(gs);
    if (tag != STACK_POP)
        return HY_GS_OK; /* unknown request: no reply, the caller times out */
    if (st->n == 0) {
        hy_gen_server_reply(from, STACK_EMPTY, NULL, 0);
        return HY_GS_OK;
    }
    const char *top = st->items[--st->n];
    hy_gen_server_reply(from, STACK_REPLY, top, strlen(top));
    return HY_GS_OK;
}

static int stack_cast(struct hy_gs *gs, uint64_t tag, const void *data, size_t len)
{
    struct stack *st = hy_gs_state(gs);
    if (tag == STACK_PUSH && st->n < STACK_MAX)
        st->items[st->n++] = dup_in_arena(data, len);
    return HY_GS_OK;
}

/* handle_info, handle_continue and terminate: NULL, the OTP defaults */
const struct hy_gen_server_ops stack_server_ops = {
    .init = stack_init,
    .handle_call = stack_call,
    .handle_cast = stack_cast,
};

/* ---- API (runs in the caller) ---------------------------------------------------- */

int stack_server_start_link(const void *arg, size_t arg_size, hy_pid *pid)
{
    struct hy_gen_server_opts o = HY_GEN_SERVER_OPTS_INIT;
    o.name = STACK_NAME;
    o.arg_size = arg_size; /* the server gets its own copy of the list */
    return hy_gen_server_start_link(&stack_server_ops, arg, &o, pid);
}

int stack_server_pop(char *out, size_t cap)
{
    struct hy_msg *r;
    int rc = hy_gen_server_call_name(STACK_NAME, STACK_POP, NULL, 0, CALL_TIMEOUT_NS, &r, NULL);
    if (rc)
        return rc;
    size_t n = r->size < cap - 1 ? r->size : cap - 1;
    memcpy(out, r->data, n);
    out[n] = '\0';
    int empty = r->tag == STACK_EMPTY;
    hy_msg_free(r);
    return empty ? HY_ENODATA : 0;
}

int stack_server_push(const char *item)
{
    hy_pid pid;
    if (hy_whereis(STACK_NAME, &pid) != 0)
        return HY_ENOPROC;
    return hy_gen_server_cast(pid, STACK_PUSH, item, strlen(item));
}
