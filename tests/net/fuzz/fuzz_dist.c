/* libFuzzer target: Hydra's frame decoder and a channel's receive path.
 *
 * Bytes from the network meet net/dist.c here: hy__wire_get_hdr and the
 * frame checks (on_frame), the handshake states, acks and selective acks
 * (on_acks), sequence, duplicate and out-of-order handling (on_data), the
 * reassembly of message records from the byte stream (take_frame) and
 * their delivery into the runtime (deliver_msg: names, monitors, signals,
 * spawn requests), plus what goes back out (pump, acks). No sockets: dist.c
 * is compiled into this target with -DHY_DIST_FUZZ, which gives it a fake
 * endpoint (dist_internal.h). The input format is in fuzz_dist.h.
 *
 * The runtime (one shard) starts once; each input runs on the shard thread
 * inside a poll hook, as received frames do, then the shard runs whatever
 * the input made runnable (the sink process) before the next one starts.
 * Message buffers are exact-size heap blocks here (hy__msg_alloc wrapped at
 * link time), so AddressSanitizer sees a read past a message's payload.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "dist_internal.h"
#include "errors.h"
#include "fuzz_dist.h"
#include "hydra.h"
#include "shard_internal.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- exact-size message buffers ------------------------------------------------- */

int __real_hy__msg_alloc(struct hy_shard *sh, size_t len, struct hy_msg **out);
int __wrap_hy__msg_alloc(struct hy_shard *sh, size_t len, struct hy_msg **out);

int __wrap_hy__msg_alloc(struct hy_shard *sh, size_t len, struct hy_msg **out)
{
    if (len > hy__rt.cfg.max_message_size)
        return HY_EMSGSIZE;
    struct hy_msg *m = malloc(sizeof(*m) + len);
    if (!m)
        return HY_ENOMEM;
    memset(m, 0, sizeof(*m));
    m->home = HY_HOME_MALLOC; /* freed with free() wherever it ends */
    m->size = m->cap = (uint32_t)len;
    m->kind = HY_K_MSG;
    m->ref = HY_REF_NONE;
    m->from = sh && sh->current ? sh->current->pid : HY_PID_NONE;
    *out = m;
    return 0;
}

/* ---- the sink process --------------------------------------------------------------- */

static hy_pid sink_pid;

static void sink(void *arg)
{
    (void)arg;
    hy_trap_exit(true, NULL);
    hy_register("sink", HY_PID_NONE);
    for (;;) {
        struct hy_msg *m;
        if (hy_recv(&m, HY_INFINITY) != 0)
            continue;
        if (hy_pid_node(m->from) != FUZZ_NODE && !hy_pid_is_none(m->from)) {
            hy_ref ref;
            if (m->tag == FUZZ_SINK_TAG_LINK)
                hy_link(m->from);
            else if (m->tag == FUZZ_SINK_TAG_MONITOR)
                hy_monitor(m->from, &ref);
            else if (!(m->tag & HY_TAG_SYSTEM))
                hy_send(m->from, m->tag, m->data, m->size);
        }
        hy_msg_free(m);
    }
}

static void spawn_sink(void)
{
    struct hy_spawn_opts o = HY_SPAWN_OPTS_INIT;
    o.shard = 0;
    if (hy_spawn_opt(sink, NULL, &o, &sink_pid) != 0)
        abort();
}

/* ---- running an input on the shard ------------------------------------------------------ */

static int efd = -1;
/* (otp/semaphore.h shadows <semaphore.h> here: a mutex and a condition) */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static bool ready, done;

static void post(bool *flag)
{
    pthread_mutex_lock(&lock);
    *flag = true;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
}

static void wait_for(bool *flag)
{
    pthread_mutex_lock(&lock);
    while (!*flag)
        pthread_cond_wait(&cond, &lock);
    *flag = false;
    pthread_mutex_unlock(&lock);
}
static struct hy_poll_hook hook;
static const uint8_t *in_data;
static size_t in_size;
static _Atomic int phase; /* 0 idle, 1 input waiting, 2 letting the runtime run it out */

struct rd {
    const uint8_t *p;
    size_t n;
};

static bool take(struct rd *r, void *out, size_t k)
{
    if (r->n < k)
        return false;
    memcpy(out, r->p, k);
    r->p += k;
    r->n -= k;
    return true;
}

static uint16_t le16(const uint8_t *b) { return (uint16_t)(b[0] | b[1] << 8); }
static uint32_t le32(const uint8_t *b) { return (uint32_t)le16(b) | (uint32_t)le16(b + 2) << 16; }
static uint64_t le64(const uint8_t *b) { return (uint64_t)le32(b) | (uint64_t)le32(b + 4) << 32; }

static const size_t max_sizes[4] = {1u << 20, 64u << 10, 4u << 10, 200};

static void run_input(const uint8_t *data, size_t size)
{
    struct rd r = {data, size};
    uint8_t mode = 0;
    take(&r, &mode, 1); /* (an empty input: mode 0, no operations) */
    bool auth = mode & FUZZ_MODE_AUTH;
    hy__dist_fuzz_reset(auth, mode & FUZZ_MODE_IDLE, max_sizes[(mode >> 2) & 3]);
    uint8_t op;
    while (take(&r, &op, 1)) {
        switch (op % 4) {
        case FUZZ_OP_RAW: {
            uint8_t lb[2];
            if (!take(&r, lb, 2))
                return;
            size_t len = le16(lb);
            if (len > r.n)
                len = r.n;
            /* its own heap block: a read past the datagram is caught */
            uint8_t *f = malloc(len ? len : 1);
            if (!f)
                abort();
            take(&r, f, len);
            hy__dist_fuzz_frame(f, len);
            free(f);
            break;
        }
        case FUZZ_OP_FRAME: {
            uint8_t b[20];
            if (!take(&r, b, sizeof(b)))
                return;
            size_t len = le16(b + 18);
            if (len > HY_WIRE_MAXPAY)
                len = HY_WIRE_MAXPAY;
            if (len > r.n)
                len = r.n;
            struct hy_wire_hdr h = {
                .magic = HY_WIRE_MAGIC,
                .version = HY_WIRE_VERSION,
                .type = (uint8_t)(1 + b[0] % 8),
                .src_node = HY_FUZZ_PEER,
                .src_creation = HY_FUZZ_PEER_CREATION,
                .dst_node = hy_node_id(),
                .dst_creation = hy_node_creation(),
                .src_shard = b[1],
                .dst_shard = 0,
                .session = HY_FUZZ_SESSION,
                .seq = le32(b + 2),
                .ack = le32(b + 6),
                .sack = le64(b + 10),
                .len = (uint16_t)len,
                .flags = auth ? HY_WF_AUTH : 0,
            };
            size_t n = HY_WIRE_HDR + len + (auth ? HY_WIRE_TAG64 : 0);
            uint8_t *f = malloc(n);
            if (!f)
                abort();
            hy__wire_put_hdr(f, &h);
            take(&r, f + HY_WIRE_HDR, len);
            if (auth)
                hy__dist_fuzz_sign(f, n);
            hy__dist_fuzz_frame(f, n);
            free(f);
            break;
        }
        case FUZZ_OP_SEND: {
            uint8_t b[3];
            if (!take(&r, b, sizeof(b)))
                return;
            hy__dist_fuzz_send(b[0], le16(b + 1));
            break;
        }
        default:
            hy__dist_fuzz_poll();
            break;
        }
    }
}

static unsigned fuzz_poll(void *ctx)
{
    (void)ctx;
    struct hy_shard *sh = hy__shard();
    int ph = atomic_load(&phase);
    if (ph == 1) {
        uint64_t v;
        (void)!read(efd, &v, sizeof(v));
        run_input(in_data, in_size);
        hy__dist_fuzz_poll();
        atomic_store(&phase, 2);
        return 1;
    }
    if (ph == 2 && sh->rq_len == 0) {
        /* the sink has run: send what it answered, then the input is over */
        hy__dist_fuzz_poll();
        struct hy_proc *p = hy__proc_lookup(sh, sink_pid);
        if (!p || p->state >= HY_P_EXITING)
            spawn_sink(); /* killed (an untrappable exit from "the peer") */
        atomic_store(&phase, 0);
        post(&done);
        return 1;
    }
    return 0;
}

static uint64_t fuzz_deadline(void *ctx)
{
    (void)ctx;
    return atomic_load(&phase) ? 0 : UINT64_MAX;
}

static void fuzz_main(void *arg)
{
    (void)arg;
    spawn_sink();
    hook.poll = fuzz_poll;
    hook.next_deadline_ns = fuzz_deadline;
    hook.fd = efd;
    if (hy_hook_add_poll(&hook) != 0)
        abort();
    post(&ready);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (efd < 0)
        abort();
    struct hy_config cfg;
    hy_config_init(&cfg);
    cfg.nshards = 1;
    cfg.pin = false;
    cfg.node_id = FUZZ_NODE;
    cfg.node_creation = FUZZ_CREATION;
    cfg.idle_spin_ns = 2000000;
    cfg.stall_threshold_ns = 0;
    cfg.keep_running = true; /* fuzz_main only sets up */
    hy_log_set_level(HY_LOG_ERROR);
    if (hy_start(&cfg, fuzz_main, NULL) != 0)
        abort();
    /* a fault is the fuzzer's to report (with the input), not the runtime's */
    hy__crash_uninstall();
    wait_for(&ready);
    hy_pid want = hy_pid_make(FUZZ_NODE, FUZZ_CREATION, FUZZ_SINK_SHARD, FUZZ_SINK_SLOT,
                              FUZZ_SINK_GEN);
    if (!hy_pid_eq(sink_pid, want)) {
        char a[HY_PID_STRLEN];
        hy_pid_format(sink_pid, a, sizeof(a));
        fprintf(stderr, "fuzz_dist: the sink is %s (slot %u gen %u), not the pid fuzz_dist.h and "
                        "the seeds name: update FUZZ_SINK_* and regenerate the seeds\n",
                a, hy_pid_slot(sink_pid), hy_pid_gen(sink_pid));
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    in_data = data;
    in_size = size;
    atomic_store(&phase, 1);
    uint64_t one = 1;
    (void)!write(efd, &one, sizeof(one));
    wait_for(&done);
    return 0;
}
