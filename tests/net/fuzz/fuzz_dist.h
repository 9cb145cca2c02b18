/* The input format of the distribution fuzz target (fuzz_dist.c), shared
 * with the seed generator (gen_seeds.c).
 *
 * The target runs a one-shard runtime as node FUZZ_NODE with the fixed
 * creation FUZZ_CREATION, and dist.c's fuzzing endpoint (dist_internal.h,
 * HY_DIST_FUZZ) with peer HY_FUZZ_PEER. A process registered as "sink"
 * (pid FUZZ_SINK_*) traps exits and echoes every message it gets from
 * another node; FUZZ_SINK_TAG_LINK / _MONITOR make it link to / monitor the
 * sender instead. Each input:
 *
 *   byte 0: mode. bit 0: frames are authenticated; bit 1: the channels
 *           start IDLE (handshake paths) instead of UP; bits 2-3: the
 *           largest message accepted: 1 MiB, 64 KiB, 4 KiB, 200 bytes.
 *   then operations, until the input ends (a truncated one is cut short):
 *   op byte, op % 4 =
 *     FUZZ_OP_RAW:   u16 len, len bytes: one datagram, as received
 *     FUZZ_OP_FRAME: u8 type, u8 src shard, u32 seq, u32 ack, u64 sack,
 *                    u16 len, len payload bytes: a frame from the peer
 *                    with valid addresses, creations, session and (in
 *                    authenticated mode) tag, built by the target
 *     FUZZ_OP_SEND:  u8 dst shard, u16 len: a message of len bytes from
 *                    this node to a process on that shard of the peer
 *     FUZZ_OP_POLL:  the endpoint's poll hook runs once (framing, acks)
 *   (all integers little-endian)
 */
#ifndef HY_TESTS_FUZZ_DIST_H
#define HY_TESTS_FUZZ_DIST_H

#define FUZZ_NODE 1u
#define FUZZ_CREATION 0x00abcdu
#define FUZZ_SINK_SHARD 0u
#define FUZZ_SINK_SLOT 1u
#define FUZZ_SINK_GEN 1u
#define FUZZ_SINK_TAG_LINK 0x4c494e4bu
#define FUZZ_SINK_TAG_MONITOR 0x4d4f4e49u

enum { FUZZ_OP_RAW = 0, FUZZ_OP_FRAME = 1, FUZZ_OP_SEND = 2, FUZZ_OP_POLL = 3 };

#define FUZZ_MODE_AUTH 1u
#define FUZZ_MODE_IDLE 2u

#endif
