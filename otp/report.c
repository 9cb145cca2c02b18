/* Reports: a handler or one formatted log line per report. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "callback_internal.h"
#include "errors.h"
#include "report.h"

static _Atomic int enabled = -1; /* -1: not decided yet (environment) */
/* the handler and its ctx, read as one pair; replacing them waits for the
 * reports being handled by the old pair (callback_internal.h) */
static struct hy__callback handler = HY__CALLBACK_INIT;

bool hy_report_enabled(void)
{
    int e = atomic_load_explicit(&enabled, memory_order_relaxed);
    if (e < 0) {
        const char *env = getenv("HYDRA_REPORTS");
        e = !(env && (strcmp(env, "off") == 0 || strcmp(env, "0") == 0));
        int expected = -1;
        atomic_compare_exchange_strong(&enabled, &expected, e);
        e = atomic_load(&enabled);
    }
    return e != 0;
}

void hy_report_set_enabled(bool on)
{
    atomic_store(&enabled, on ? 1 : 0);
}

void hy_report_set_handler(hy_report_fn fn, void *ctx)
{
    hy__callback_set(&handler, (hy__callback_fn)fn, ctx);
}

void hy_report_get_handler(hy_report_fn *fn, void **ctx)
{
    hy__callback_fn f;
    void *c;
    hy__callback_get(&handler, &f, &c);
    if (fn)
        *fn = (hy_report_fn)f;
    if (ctx)
        *ctx = c;
}

static const char *type_name(int type)
{
    static const char *const names[] = {"supervisor_report", "crash_report", "progress_report",
                                        "application_report"};
    if (type < 0 || (size_t)type >= sizeof(names) / sizeof(names[0]))
        return "report";
    return names[type];
}

/* Appends " key=value", quoting value when it has a space or a quote. */
static void put(char *buf, size_t len, size_t *off, const char *key, const char *value)
{
    if (*off >= len)
        return;
    bool quote = strpbrk(value, " \t\"=") != NULL || !*value;
    int n = snprintf(buf + *off, len - *off, quote ? " %s=\"%s\"" : " %s=%s", key, value);
    if (n > 0)
        *off += (size_t)n;
    if (*off >= len)
        *off = len - 1;
}

char *hy_report_format(const struct hy_report *r, char *buf, size_t len)
{
    if (!buf || len == 0)
        return buf;
    buf[0] = '\0';
    int n = snprintf(buf, len, "%s", type_name(r->type));
    size_t off = n > 0 ? (size_t)n : 0;
    if (off >= len)
        off = len - 1;
    char tmp[HY_PID_STRLEN + HY_REASON_TEXT_MAX + 32];
    put(buf, len, &off, "context", r->context ? r->context : "?");
    if (!hy_pid_is_none(r->who))
        put(buf, len, &off, "who", hy_pid_format(r->who, tmp, sizeof(tmp)));
    if (r->name)
        put(buf, len, &off, "name", r->name);
    if (r->child_id)
        put(buf, len, &off, "id", r->child_id);
    if (!hy_pid_is_none(r->child))
        put(buf, len, &off, "pid", hy_pid_format(r->child, tmp, sizeof(tmp)));
    if (r->reason)
        put(buf, len, &off, "reason", hy_reason_format(r->reason, tmp, sizeof(tmp)));
    if (r->error)
        put(buf, len, &off, "error", hy_err_name(r->error));
    if (r->action)
        put(buf, len, &off, "action", r->action);
    if (r->last_message)
        put(buf, len, &off, "last_message", r->last_message);
    return buf;
}

void hy_report(const struct hy_report *r)
{
    if (!r || !hy_report_enabled())
        return;
    hy__callback_fn f;
    void *ctx;
    unsigned slot = hy__callback_enter(&handler, &f, &ctx);
    if (f) {
        ((hy_report_fn)f)(r, ctx);
        hy__callback_exit(&handler, slot);
        return;
    }
    hy__callback_exit(&handler, slot);
    if ((int)r->level > (int)hy_log_get_level())
        return;
    char line[512];
    hy_log(r->level, "%s", hy_report_format(r, line, sizeof(line)));
}
