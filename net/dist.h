/* Distribution: a cluster of Hydra nodes.
 *
 * Processes on different nodes talk as if local: a pid of another node is
 * an ordinary pid; send, link, unlink, monitor, demonitor, exit signals,
 * GenServer calls and casts to it behave as they do locally, in the same
 * per-sender-receiver order, signals included. Sending to (or linking,
 * monitoring, calling) a pid of a configured peer connects to it
 * automatically; a lost connection is re-established on the next use.
 *
 * Transport: frames are IPv4/UDP datagrams whose destination port is the
 * peer's base port plus the destination shard. They travel over the kernel's
 * UDP sockets (HY_DIST_UDP, one socket per shard, no DPDK needed) or, where
 * built with DPDK, over one NIC queue per shard (HY_DIST_DPDK, see
 * net/transport_dpdk.c and net/README.md for what is and is not tested).
 *
 * Channels: one per (local shard, remote node, remote shard), each with its
 * own handshake, sequence numbers, cumulative and selective acks, fast
 * retransmit on gaps, an adaptive retransmission timeout, duplicate
 * suppression, and fragmentation of large messages (up to
 * max_message_size) that keeps their place in the order.
 *
 * Send queue overflow: send never blocks (Erlang). A channel holds at most
 * send_queue_max messages not yet on the wire; a message beyond that is
 * dropped and counted (hy_dist_stats.dropped_queue_full), exactly as a send
 * to a dead process is: nothing after it is reordered.
 *
 * Handshake: a shared cookie, never sent: challenge/response with fresh
 * random nonces from both sides (HMAC-SHA256 over both nonces, node ids and
 * creations), so a replayed handshake fails; a version field; a session key
 * derived from both nonces authenticates every frame when `authenticate` is
 * on (HMAC-SHA256 truncated to 16 bytes; libsodium).
 *
 * Failure: heartbeats every heartbeat_ns; a peer silent for down_after_ns is
 * down: node monitors get HY_TAG_NODEDOWN, every link to a process there an
 * exit signal noconnection, every monitor a DOWN noconnection. A later
 * reconnect does not revive them, and nothing more from that incarnation is
 * delivered after the noconnection signals. A restarted node has a new
 * creation, so its old pids stay dead.
 */
#ifndef HY_NET_DIST_H
#define HY_NET_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/pid.h"
#include "../core/runtime.h"

enum hy_dist_transport {
    HY_DIST_UDP = 0,  /* kernel UDP sockets */
    HY_DIST_DPDK = 1, /* DPDK ports and queues (when built with DPDK) */
};

#define HY_DIST_NAME_MAX 64

/* One node of the cluster (a line of the cluster file:
 * "name node_id mac ip base_port", e.g. "a 1 02:00:00:00:00:01 127.0.0.1 47000"). */
struct hy_dist_peer {
    char name[HY_DIST_NAME_MAX];
    uint32_t node_id;
    uint8_t mac[6];
    uint32_t ip;        /* IPv4, host byte order */
    uint16_t base_port; /* shard s listens on base_port + s */
};

struct hy_dist_config {
    /* This node: its entry in the peer list is the one with this node id,
     * which must equal the runtime's hy_config.node_id. */
    uint32_t node_id;
    const char *cookie;            /* shared secret (borrowed), required */
    int transport;                 /* enum hy_dist_transport */
    const struct hy_dist_peer *peers; /* every node, this one included (copied) */
    size_t npeers;
    uint64_t heartbeat_ns;         /* default 100 ms */
    uint64_t down_after_ns;        /* default 1 s of silence */
    bool authenticate;             /* authenticate every frame (default off) */
    size_t max_message_size;       /* default: the runtime's max_message_size */
    size_t send_queue_max;         /* messages waiting per channel (default 65536) */
    /* Fault injection, for tests only (all 0 = off, the default; never set
     * in production). Each is a per-mille fraction of the outgoing frames of
     * every shard, retransmissions and handshake frames included, chosen by
     * a deterministic pseudo-random sequence per shard (xorshift seeded from
     * test_fault_seed, the node id and the shard):
     * - drop: the frame is not sent (exercises retransmission);
     * - dup: sent twice, back to back (duplicate suppression);
     * - reorder: held back and sent after the next 1-3 frames of that shard
     *   (or after 1 ms if none follows);
     * - delay: held for test_delay_ns (default 2 ms), released by the
     *   shard's poll hook (late frames, RTT jitter).
     * A frame is dropped, or else delayed, or else reordered, and then
     * maybe duplicated when it goes out. At most 64 frames per shard are
     * held; beyond that they go out at once. */
    unsigned test_drop_permille;
    unsigned test_dup_permille;
    unsigned test_reorder_permille;
    unsigned test_delay_permille;
    uint64_t test_delay_ns;
    uint64_t test_fault_seed;
    /* HY_DIST_DPDK only. EAL arguments passed through to rte_eal_init
     * (borrowed for the call), e.g. "--vdev=net_memif0,role=server,socket=/x",
     * "--no-huge", "--file-prefix=a". Unless they give one, the core list
     * (-l) is the shard CPUs and --file-prefix is "hydra-node<id>". EAL is
     * initialised once per OS process: a later hy_dist_start ignores them. */
    const char *const *eal_args;
    int eal_argc;
    uint16_t dpdk_port; /* DPDK port id to use (default 0): one queue pair per shard */
};

/* Fills cfg with defaults (no peers, no cookie). */
void hy_dist_config_init(struct hy_dist_config *cfg);

/* Reads a cluster file into peers (up to max); *count gets how many there
 * are. Lines: "name node_id mac ip base_port"; '#' starts a comment.
 * Errors: HY_EIO (cannot read), HY_EINVAL (a malformed line: the message
 * names it on stderr), HY_ENOSPC (more than max). Context: anywhere. */
int hy_dist_cluster_load(const char *path, struct hy_dist_peer *peers, size_t max, size_t *count);

/* Starts distribution on the running runtime: opens every shard's endpoint
 * and installs the remote-send hook. Errors: HY_EINVAL (no cookie, this
 * node not among the peers, node id mismatch), HY_EIO (a socket could not
 * be bound), HY_ENOTSUP (transport not built), HY_EALREADY, HY_ENOTPROC.
 * Context: a process (usually the application's first), once. */
int hy_dist_start(const struct hy_dist_config *cfg);

/* Stops distribution: peers are told (CLOSE), every connection is dropped
 * (links/monitors get noconnection), endpoints close. Errors: HY_ENOTSTARTED.
 * Context: a process. */
int hy_dist_stop(void);

/* Connects to node now (it is done automatically on first use). Returns
 * once the handshake succeeded or failed. Errors: HY_ENOENT (not a
 * configured peer), HY_ETIMEDOUT (no answer within down_after_ns),
 * HY_ECONNREFUSED (handshake rejected: wrong cookie or version),
 * HY_ENOTSTARTED, HY_ENOTPROC. Context: a process. */
int hy_dist_connect(uint32_t node);

/* Drops the connection to node (as if it went down: noconnection to links
 * and monitors). Errors: HY_ENOENT, HY_ENOTSTARTED. Context: a process. */
int hy_dist_disconnect(uint32_t node);

/* Lists connected nodes (up to max); *count gets how many. Context: any shard. */
int hy_dist_nodes(uint32_t *nodes, size_t max, size_t *count);

/* Sends to the process registered as name on node (resolved there, on
 * arrival). Such sends keep their order among themselves, but travel
 * through the node's shard 0 and are not ordered with sends to the process's
 * pid (OTP's single connection orders both; Hydra's channels are per shard
 * pair, and the sender cannot know the target's shard). Errors: as hy_send, HY_EINVAL (bad name), HY_ENOENT (not a
 * peer). Context: a process or shard callback. */
int hy_dist_send_name(const char *name, uint32_t node, uint64_t tag, const void *data, size_t len);

/* Monitors the process registered as name on node ({name, node} in OTP):
 * the name is resolved on arrival there; the DOWN carries the name (and the
 * pid it resolved to, or noproc if none). A node that goes down gives DOWN
 * noconnection. Errors: HY_EINVAL, HY_ENOENT (not a peer), HY_ENOTPROC.
 * Context: a process. */
int hy_dist_monitor_name(const char *name, uint32_t node, hy_ref *ref);

/* ---- spawning on another node ------------------------------------------------ */

/* Function pointers mean nothing on another node, so a process is spawned
 * there by the name of a function that node registered (OTP spawns by
 * module and function): register the same names on every node that may be
 * asked. The table is copied; names up to HY_DIST_NAME_MAX-1 bytes.
 * Errors: HY_EINVAL, HY_EEXIST (name taken), HY_ENOSPC (table full).
 * Context: before hy_dist_start, from one thread. */
int hy_dist_register_fn(const char *name, hy_proc_fn fn);

struct hy_dist_spawn_opts {
    int shard;         /* shard on that node (default 0) */
    bool link;         /* link to the caller, set atomically with the spawn */
    bool monitor;      /* monitor it; the ref goes to *monitor_ref */
    hy_ref *monitor_ref;
};

/* Spawns the function registered as fn_name on node, with a copy of
 * arg[len] as its argument (the process gets a pointer to its copy), and
 * waits for its pid. A supervisor's child start function can call it with
 * link = true: the child is then supervised across nodes like a local one.
 * Errors: HY_ENOENT (not a peer), HY_ESRCH (no such function there),
 * HY_ETIMEDOUT (no answer within down_after_ns), HY_EINVAL, HY_EMSGSIZE,
 * HY_ENOTPROC. Context: a process. */
int hy_dist_spawn(uint32_t node, const char *fn_name, const void *arg, size_t len,
                  const struct hy_dist_spawn_opts *opts, hy_pid *out);

struct hy_dist_stats {
    uint64_t frames_tx, frames_rx, bytes_tx, bytes_rx;
    uint64_t retransmits, fast_retransmits, dup_frames;
    uint64_t malformed;         /* frames counted and dropped as malformed */
    uint64_t auth_failures;     /* frames or handshakes that failed authentication */
    uint64_t stale;             /* frames from another incarnation, dropped */
    uint64_t dropped_queue_full;
    uint64_t handshakes;        /* completed */
    uint64_t nodes_down;        /* node-down events */
    uint64_t msgs_tx, msgs_rx;
    uint64_t handed_over;       /* frames that landed on another shard's queue */
};

/* Sums the counters of every shard's endpoint. Errors: HY_ENOTSTARTED. */
int hy_dist_stats_get(struct hy_dist_stats *out);

#endif /* HY_NET_DIST_H */
