/* hydra-demo: starts one shard per CPU, spawns a worker on every shard,
 * sends each a batch of numbers from shard 0, and prints what came back.
 * It is what `scripts/run` runs until a real application exists. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hydra.h"

enum { TAG_WORK = 1, TAG_SUM = 2, TAG_STOP = 3 };

struct sum_reply {
    int shard;
    uint64_t count;
    uint64_t sum;
};

/* A worker adds up the numbers it receives until told to stop, then replies
 * to whoever sent the stop with the total. */
static void worker(void *arg)
{
    (void)arg;
    struct sum_reply r = {hy_shard_id(), 0, 0};
    for (;;) {
        struct hy_msg *m;
        if (hy_recv(&m, HY_INFINITY) != 0)
            return;
        if (m->tag == TAG_WORK) {
            uint64_t v;
            memcpy(&v, m->data, sizeof(v));
            r.sum += v;
            r.count++;
        } else if (m->tag == TAG_STOP) {
            hy_send(m->from, TAG_SUM, &r, sizeof(r));
            hy_msg_free(m);
            return;
        }
        hy_msg_free(m);
    }
}

static void demo_main(void *arg)
{
    uint64_t per_worker = *(uint64_t *)arg;
    unsigned n = hy_shard_count();
    hy_pid workers[HY_MAX_SHARDS];
    char buf[HY_PID_STRLEN];
    printf("hydra-demo: node %" PRIu32 ", %u shard(s); main process %s on shard %d\n",
           hy_node_id(), n, hy_pid_format(hy_self(), buf, sizeof(buf)), hy_shard_id());
    for (unsigned s = 0; s < n; s++) {
        struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
        o.shard = (int)s;
        int rc = hy_spawn_opt(worker, NULL, &o, &workers[s]);
        if (rc) {
            printf("spawn on shard %u failed: %s\n", s, hy_strerror(rc));
            return;
        }
        int cpu, node;
        hy_shard_cpu(s, &cpu, &node);
        printf("  spawned worker %s on shard %u (cpu %d, numa node %d)\n",
               hy_pid_format(workers[s], buf, sizeof(buf)), s, cpu, node);
    }
    uint64_t t0 = hy_now_ns();
    for (uint64_t i = 1; i <= per_worker; i++)
        for (unsigned s = 0; s < n; s++)
            hy_send(workers[s], TAG_WORK, &i, sizeof(i));
    for (unsigned s = 0; s < n; s++)
        hy_send(workers[s], TAG_STOP, NULL, 0);
    uint64_t expect = per_worker * (per_worker + 1) / 2;
    int ok = 1;
    for (unsigned k = 0; k < n; k++) {
        struct hy_msg *m;
        if (hy_recv_tag(TAG_SUM, &m, 10 * 1000000000LL) != 0) {
            printf("  no reply within 10 s\n");
            ok = 0;
            break;
        }
        struct sum_reply r;
        memcpy(&r, m->data, sizeof(r));
        printf("  worker on shard %d received %" PRIu64 " messages, sum %" PRIu64 " (%s)\n",
               r.shard, r.count, r.sum, r.sum == expect && r.count == per_worker ? "ok" : "WRONG");
        ok &= r.sum == expect && r.count == per_worker;
        hy_msg_free(m);
    }
    uint64_t dt = hy_now_ns() - t0;
    struct hy_stats st;
    hy_stats_total(&st);
    printf("hydra-demo: %" PRIu64 " messages in %.2f ms; local sends %" PRIu64
           ", cross-shard sends %" PRIu64 "; %s\n",
           per_worker * n + n, (double)dt / 1e6, st.msgs_sent_local, st.msgs_sent_cross,
           ok ? "all sums correct" : "MISMATCH");
    *(uint64_t *)arg = ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 100000;
    struct hy_config cfg;
    hy_config_init(&cfg);
    int rc = hy_run(&cfg, demo_main, &n);
    if (rc) {
        fprintf(stderr, "hydra-demo: cannot start the runtime: %s\n", hy_strerror(rc));
        return 1;
    }
    return n == 0 ? 0 : 1;
}
