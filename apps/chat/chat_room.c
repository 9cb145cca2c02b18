/* The room: one process, registered as "chat_room", that keeps the members
 * and sends every line said to all of them. A member that ends (its
 * connection closed or crashed) leaves through the monitor's DOWN. */
#include <stdlib.h>
#include <string.h>

#include "chat.h"

#define MAX_MEMBERS 4096

static void room(void *arg)
{
    (void)arg;
    hy_pid *members = calloc(MAX_MEMBERS, sizeof(hy_pid));
    size_t n = 0;
    if (!members || hy_register(CHAT_ROOM_NAME, hy_self()) < 0) {
        free(members);
        hy_panic("chat room cannot start");
    }
    hy_on_exit(free, members);
    for (;;) {
        struct hy_msg *m;
        if (hy_recv(&m, HY_INFINITY) < 0)
            continue;
        if (m->tag == CHAT_TAG_JOIN && n < MAX_MEMBERS) {
            hy_ref ref;
            if (hy_monitor(m->from, &ref) == 0)
                members[n++] = m->from;
        } else if (m->tag == CHAT_TAG_SAY) {
            for (size_t i = 0; i < n; i++)
                hy_send(members[i], CHAT_TAG_TEXT, m->data, m->size);
        } else if (m->tag == HY_TAG_DOWN) {
            const struct hy_down_info *d = (const struct hy_down_info *)m->data;
            for (size_t i = 0; i < n; i++)
                if (hy_pid_eq(members[i], d->pid)) {
                    members[i] = members[--n];
                    break;
                }
        }
        hy_msg_free(m);
    }
}

int chat_room_start(const void *arg, size_t arg_size, hy_pid *pid)
{
    (void)arg;
    (void)arg_size;
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.link = true;
    return hy_spawn_opt(room, NULL, &o, pid);
}
