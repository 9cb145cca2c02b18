#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "callback_internal.h"
#include "log.h"
#include "shard_internal.h"

static _Atomic int level = -1;
/* the sink and its ctx, read as one pair; replacing them waits for the
 * lines being written through the old pair (callback_internal.h) */
static struct hy__callback sink = HY__CALLBACK_INIT;

static int env_level(void)
{
    const char *e = getenv("HYDRA_LOG");
    static const char *const names[] = {"error", "warning", "notice", "info", "debug"};
    if (e)
        for (int i = 0; i < 5; i++)
            if (strcmp(e, names[i]) == 0)
                return i;
    return HY_LOG_NOTICE;
}

void hy_log_set_level(enum hy_log_level l)
{
    atomic_store(&level, (int)l);
}

enum hy_log_level hy_log_get_level(void)
{
    int l = atomic_load(&level);
    if (l < 0) {
        l = env_level();
        atomic_store(&level, l);
    }
    return (enum hy_log_level)l;
}

void hy_log_set_sink(hy_log_sink_fn fn, void *ctx)
{
    hy__callback_set(&sink, (hy__callback_fn)fn, ctx);
}

void hy_log_get_sink(hy_log_sink_fn *fn, void **ctx)
{
    hy__callback_fn f;
    void *c;
    hy__callback_get(&sink, &f, &c);
    if (fn)
        *fn = (hy_log_sink_fn)f;
    if (ctx)
        *ctx = c;
}

void hy_log(enum hy_log_level l, const char *fmt, ...)
{
    if ((int)l > (int)hy_log_get_level())
        return;
    static const char *const tags[] = {"error", "warning", "notice", "info", "debug"};
    char line[1024];
    int n;
    struct hy_shard *sh = hy__tls_shard;
    if (sh && sh->current) {
        char pid[HY_PID_STRLEN];
        n = snprintf(line, sizeof(line), "hydra %s [shard %u %s] ", tags[l], sh->id,
                     hy_pid_format(sh->current->pid, pid, sizeof(pid)));
    } else if (sh) {
        n = snprintf(line, sizeof(line), "hydra %s [shard %u] ", tags[l], sh->id);
    } else {
        n = snprintf(line, sizeof(line), "hydra %s ", tags[l]);
    }
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    hy__callback_fn f;
    void *ctx;
    unsigned slot = hy__callback_enter(&sink, &f, &ctx);
    if (f) {
        line[len] = '\0';
        /* the sink runs inside the runtime's call: a fault in it is not the
         * calling process's own (crash.c) */
        struct hy_proc *p = sh ? sh->current : NULL;
        if (p)
            p->in_rt++;
        ((hy_log_sink_fn)f)(l, line, ctx);
        if (p)
            p->in_rt--;
        hy__callback_exit(&sink, slot);
        return;
    }
    hy__callback_exit(&sink, slot);
    line[len++] = '\n';
    (void)!write(2, line, len);
}
