/* hydra-chat: a broadcast chat room over WebSocket (see README.md). */
#ifndef HY_APPS_CHAT_H
#define HY_APPS_CHAT_H

#include <hydra.h>

#define CHAT_ROOM_NAME "chat_room"
#define CHAT_TAG_JOIN 1 /* connection -> room: add me (the room monitors the sender) */
#define CHAT_TAG_SAY 2  /* connection -> room: payload = text to broadcast */
#define CHAT_TAG_TEXT 3 /* room -> connection: payload = text to send to the client */

/* Start function of the room (a child of shard 0's root supervisor). */
int chat_room_start(const void *arg, size_t arg_size, hy_pid *pid);

/* Entry point of a connection's process (hy_tcp_server_ops.handle). */
void chat_conn_handle(struct hy_tcp *sock, void *arg);

#endif
