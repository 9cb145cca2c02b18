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
 * A busy channel: nothing is dropped on a live connection, neither
 * messages nor exit, link or monitor signals. A process sending into a
 * channel that holds more than send_queue_max messages not yet on the wire
 * waits after its send (sleeping, 100 us between checks, so its reduction
 * budget and the stall detector stay honest) until the channel drains, as
 * a BEAM process sending into a busy distribution port is suspended
 * (busy_dist_port); what it sent is queued already, in order. Senders that
 * cannot wait (a shard callback, a timer firing, the runtime's own signals
 * such as the EXITs of a dying process) do not: their messages queue past
 * the limit, bounded only by memory (hy_dist_channel_stats.queue_depth_max
 * shows how far). (hy_send_foreign reaches processes of this node only: a
 * foreign thread's send to another node's pid is dropped as a send to a
 * dead pid; relay it through a local process.) When memory for a
 * channel or a frame runs out, the connection goes down as a whole (node
 * down: every link and monitor gets noconnection) rather than losing part
 * of what it carries. hy_dist_stats.busy_waits counts the waits;
 * hy_dist_peer_stats_get gives a peer's queue depth.
 *
 * Handshake: a shared cookie, never sent: challenge/response with fresh
 * random nonces from both sides (HMAC-SHA256 over both nonces, node ids and
 * creations), so a replayed handshake fails; a version field. Only the
 * proofs show the cookie: an established session survives any frame that
 * cannot be proven (a HELLO, a REJECT, a CHALLENGE or CONFIRM with a wrong
 * proof: counted in hy_dist_stats.unproven or auth_failures and ignored);
 * the handshake a peer's HELLO opens replaces the session only once its
 * CONFIRM proves it (the old session's links and monitors then get
 * noconnection). Answers to HELLOs are rate-limited per peer (a burst of
 * 64, then one a millisecond: hs_limited), and a channel costs ~0.85 KB
 * until a session is proven. Frames must come from the claimed peer's
 * address and port (base_port + its shard): others are counted
 * (wrong_source) and dropped. Handshakes are logged at info level: done,
 * refused and why.
 *
 * Frame authentication (`authenticate`, on by default): a session key
 * derived from both nonces tags every frame after the handshake
 * (SipHash-2-4, a MAC under that key, over header and payload), so nobody
 * on the path can inject a message or a signal. `tag_bits` sets the tag's
 * length: 64 (the default: SipHash-2-4's standard output, 8 bytes a frame)
 * or 128 (its 128-bit output, 16 bytes). Every node of a cluster must use
 * the same: the HELLO carries it and both proofs cover it, so two nodes
 * that differ never form a session (the responder refuses the HELLO and
 * logs both lengths; the initiator's connect ends with HY_ECONNREFUSED),
 * and no one on the path can make them agree on another length. A forged
 * frame passes a 64-bit tag with probability 2^-64 per try; failed tags
 * are counted (auth_failures) and the frame dropped (net/README.md has the
 * argument). Off, DATA, ACK, HEARTBEAT and CLOSE frames are
 * checked only against the 32-bit session id, which travels in clear, and
 * the addresses: anyone who sees the traffic can inject a `kill`. Turn it
 * off only on a trusted network, and on every node of the cluster alike.
 *
 * Failure: heartbeats every heartbeat_ns; every channel checks its peer; a
 * channel silent for down_after_ns takes the node down: node monitors get HY_TAG_NODEDOWN, every link to a process there an
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

#ifdef __cplusplus
extern "C" {
#endif

enum hy_dist_transport {
    HY_DIST_UDP = 0,  /* kernel UDP sockets */
    HY_DIST_DPDK = 1, /* DPDK ports and queues (when built with DPDK) */
};

#define HY_DIST_NAME_MAX 64

/* One node of the cluster (a line of the cluster file:
 * "name node_id [mac] ip base_port", e.g. "a 1 02:00:00:00:00:01 127.0.0.1
 * 47000" or, for the UDP transport, which needs no MAC, "a 1 127.0.0.1
 * 47000"). */
struct hy_dist_peer {
    char name[HY_DIST_NAME_MAX];
    uint32_t node_id;
    uint8_t mac[6];
    uint32_t ip;        /* IPv4, host byte order */
    uint16_t base_port; /* shard s listens on base_port + s */
};

struct hy_dist_config {
    /* This node: 0 (the default) = the runtime's hy_config.node_id; set, it
     * must equal it. Its entry in the peer list is the one with that id. */
    uint32_t node_id;
    const char *cookie;            /* shared secret (borrowed), required: 1-255 bytes */
    int transport;                 /* enum hy_dist_transport */
    const struct hy_dist_peer *peers; /* every node, this one included (copied) */
    size_t npeers;
    uint64_t heartbeat_ns;         /* default 100 ms */
    uint64_t down_after_ns;        /* default 1 s of silence */
    bool authenticate;             /* tag every frame (default on; see above) */
    unsigned tag_bits;             /* frame tag length: 64 (default; 0 = 64) or 128 (see above;
                                    * in what was padding: later fields keep their offsets);
                                    * anything else: hy_dist_start fails with HY_EINVAL */
    size_t max_message_size;       /* default: the runtime's max_message_size */
    size_t send_queue_max;         /* messages per channel before a sending process waits (default 65536) */
    /* Received messages for a process of another shard are handed over
     * through the ring mesh; when that shard lags, they queue behind its
     * full ring. Past recv_backlog_max queued messages (default 4096)
     * towards any shard, a shard accepts no more data frames from peers:
     * it neither acknowledges nor delivers them, and the peer retransmits
     * them later (counted in dropped_backlog). A flood from the network is
     * thus held back by the peer's own reliability layer, in order and
     * exactly once, and never grows this node's memory without bound. */
    size_t recv_backlog_max;
    /* The same bound in payload bytes (default 64 MiB; 0 = the default):
     * past it, as past recv_backlog_max, data frames are left unaccepted.
     * It bounds the memory of a backlog of large messages, which a count
     * alone does not. */
    size_t recv_backlog_bytes_max;
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
    /* Tests only: the first sequence number of every session, both ways
     * (0 = derived from the session key, the default); e.g. 0xffffff00 to
     * cross the 2^32 wrap within a test. */
    uint32_t test_first_seq;
    /* HY_DIST_DPDK only. EAL arguments passed through to rte_eal_init
     * (borrowed for the call), e.g. "--vdev=net_memif0,role=server,socket=/x",
     * "--no-huge", "--file-prefix=a". Unless they give one, the core list
     * (-l) is the shard CPUs and --file-prefix is "hydra-node<id>"; no
     * memory option is added, so EAL wants hugepages (a mounted hugetlbfs,
     * or "--in-memory" for memfd hugepages without a mount) unless they
     * say "--no-huge" (4 KiB pages; with "--no-shconf", as the tests):
     * net/README.md. EAL is
     * initialised once per OS process: a later hy_dist_start ignores them.
     * A memif client port (memif's role unless role=server) whose server is
     * not there yet, or refuses it because the server's own port has not
     * started, is dialled again after 2 s of link down, then 4, 8 and 16 s
     * (never sooner: a dial again cuts a handshake in progress, which memif
     * does not survive): hy_dist_start waits up to 5 s for the port to start
     * (HY_EIO after that) and up to 30 s for its link, then carries on
     * (frames flow once the link comes up). */
    const char *const *eal_args;
    int eal_argc;
    uint16_t dpdk_port; /* DPDK port id to use (default 0): one queue pair per shard */
};

/* Fills cfg with defaults (no peers, no cookie; node_id 0, authenticate on,
 * tag_bits 64). */
void hy_dist_config_init(struct hy_dist_config *cfg);

/* Reads a cluster file into peers (up to max); *count gets how many there
 * are. Lines: "name node_id [mac] ip base_port" (whitespace-separated; the
 * MAC, "02:00:00:00:00:01", only matters to the DPDK transport); node ids
 * 1..2^24-1; '#' starts a comment; blank lines are skipped.
 * Errors: HY_EIO (cannot read), HY_EINVAL (a malformed line: the message
 * names it on stderr), HY_ENOSPC (more than max). Context: anywhere. */
int hy_dist_cluster_load(const char *path, struct hy_dist_peer *peers, size_t max, size_t *count);

/* Starts distribution on the running runtime: opens every shard's endpoint
 * and installs the remote-send hook (cfg: borrowed for the call; the peers
 * are copied). Each refusal is logged with its cause. Errors: HY_EINVAL
 * (cfg NULL, no cookie, no peers, cfg->node_id set and not the runtime's,
 * tag_bits not 0, 64 or 128),
 * HY_ERANGE (cookie longer than 255 bytes), HY_ENOSPC (more than 64 peers),
 * HY_ENOENT (this node not among the peers), HY_EEXIST (a node id twice),
 * HY_EIO (a socket could not be bound), HY_ENOTSUP (transport not built),
 * HY_EALREADY, HY_ENOTPROC. Context: a process (usually the application's
 * first), once. */
int hy_dist_start(const struct hy_dist_config *cfg);

/* Stops distribution: first every shard stops polling the transport, then
 * peers are told (CLOSE), every connection is dropped (links/monitors get
 * noconnection), endpoints close. Over memif (HY_DIST_DPDK with a net_memif
 * port, whose peer shares our rings) it then waits, up to down_after_ns, for
 * a peer that has not itself stopped to detach before stopping the port.
 * Returns after what was sent was acknowledged or down_after_ns passed.
 * Errors: HY_ENOTSTARTED. Context: a process. */
int hy_dist_stop(void);

/* Connects to node now (it is done automatically on first use). Returns
 * once the handshake succeeded or failed. A refusal cannot be proven (a
 * node without the cookie cannot sign it), so it does not end the wait: the
 * handshake goes on until down_after_ns in case the real peer answers.
 * Errors: HY_ENOENT (not a configured peer), HY_ECONNREFUSED (after
 * down_after_ns, having seen a REJECT or a wrong proof: another cookie),
 * HY_ETIMEDOUT (no answer within down_after_ns), HY_ENOTSTARTED,
 * HY_ENOTPROC. Context: a process. */
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
    /* how long to wait for the answer: 0 (the default) waits the
     * configuration's down_after_ns, HY_INFINITY (< 0) without a bound */
    int64_t timeout_ns;
};

/* Spawns the function registered as fn_name on node, with a copy of
 * arg[len] as its argument (the process gets a pointer to its copy), and
 * waits for its pid. A supervisor's child start function can call it with
 * link = true: the child is then supervised across nodes like a local one.
 * Errors: HY_ENOENT (not a peer), HY_ESRCH (no such function there),
 * HY_ETIMEDOUT (no answer within opts->timeout_ns, by default
 * down_after_ns; the process may still start there, and its late answer
 * then comes to the caller's mailbox as a system message, tag bit 63 set,
 * with link or monitor installed), HY_EINVAL, HY_EMSGSIZE,
 * HY_ENOTPROC. Context: a process. */
int hy_dist_spawn(uint32_t node, const char *fn_name, const void *arg, size_t len,
                  const struct hy_dist_spawn_opts *opts, hy_pid *out);

struct hy_dist_stats {
    uint64_t frames_tx, frames_rx, bytes_tx, bytes_rx;
    uint64_t retransmits, fast_retransmits, dup_frames;
    uint64_t malformed;         /* frames counted and dropped as malformed */
    uint64_t auth_failures;     /* frames or handshakes that failed authentication (a wrong
                                 * tag, a tag of the other length, a wrong proof, a REJECT) */
    uint64_t stale;             /* frames from another incarnation, dropped */
    uint64_t dropped_queue_full;
    uint64_t handshakes;        /* completed */
    uint64_t nodes_down;        /* node-down events */
    uint64_t msgs_tx, msgs_rx;
    uint64_t handed_over;       /* frames that landed on another shard's queue */
    /* (fields below added later; the ones above keep their places) */
    uint64_t wrong_source;      /* frames whose UDP source is not the claimed peer's address/port */
    uint64_t unproven;          /* handshake frames ignored: nothing they claim could be proven
                                 * (also HELLOs refused for another tag length) */
    uint64_t hs_limited;        /* HELLOs unanswered (and REJECTs unsent): per-peer rate limit */
    uint64_t record_errors;     /* sessions closed for an unreadable record (too short, unknown fields) */
    uint64_t dropped_nomem;     /* frames or messages dropped for want of memory */
    uint64_t busy_waits;        /* waits of a sending process on a channel over send_queue_max */
    /* frames left unaccepted (the sender retransmits them) while this
     * node's shards had more than recv_backlog_max messages queued behind
     * a full ring towards another shard */
    uint64_t dropped_backlog;
    uint64_t immediate_tx;      /* DATA frames sent from within the send (a lone message of an
                                   otherwise idle shard), not at the end of the turn */
    uint64_t rx_spin_frames;    /* frames an idle shard took in its rx spin (memif: the poll
                                   hook looks at the queue again for a while before the turn
                                   ends), not at its turn's poll */
};

/* Sums the counters of every shard's endpoint. Errors: HY_ENOTSTARTED. */
int hy_dist_stats_get(struct hy_dist_stats *out);

/* One channel's figures (a channel: this node's local_shard to node's
 * remote_shard), or their sums over every channel to a node
 * (hy_dist_peer_stats_get; srtt/rto are then the largest). Gauges are
 * read without stopping the shard that owns the channel: each figure is
 * current, the set is not one snapshot. */
struct hy_dist_channel_stats {
    uint64_t up;                /* 1 while its session is established */
    uint64_t queue_depth;       /* messages waiting to be framed */
    uint64_t in_flight;         /* frames sent and not yet acknowledged */
    uint64_t srtt_ns, rttvar_ns, rto_ns;
    uint64_t frames_tx, frames_rx, retransmits, fast_retransmits;
    uint64_t rtt_samples;       /* round-trip samples taken */
    /* frames received and dropped, by cause */
    uint64_t dup_frames, stale, auth_failures, beyond_window;
    /* the most messages queue_depth has held (senders that cannot wait
     * may take it past send_queue_max) */
    uint64_t queue_depth_max;
};

/* Figures of the channel from this node's local_shard to node's
 * remote_shard (out: borrowed, filled). Errors: HY_EINVAL (out NULL, a
 * shard out of range), HY_ENOENT (not a peer, or no such channel yet),
 * HY_ENOTSTARTED. Context: any thread, while distribution runs. */
int hy_dist_channel_stats_get(uint32_t node, unsigned local_shard, unsigned remote_shard,
                              struct hy_dist_channel_stats *out);

/* The sums over every channel to node (out: borrowed, filled), e.g. its
 * whole queue depth. Errors: HY_EINVAL, HY_ENOENT (not a peer),
 * HY_ENOTSTARTED. Context: any thread, while distribution runs. */
int hy_dist_peer_stats_get(uint32_t node, struct hy_dist_channel_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* HY_NET_DIST_H */
