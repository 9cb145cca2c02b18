/* Hydra: an Erlang/OTP-style, thread-per-core runtime for C.
 * This umbrella header only includes the public headers. */
#ifndef HY_HYDRA_H
#define HY_HYDRA_H

#include "blocking.h"
#include "errors.h"
#include "hook.h"
#include "log.h"
#include "msg.h"
#include "pid.h"
#include "proc.h"
#include "runtime.h"
#include "signals.h"
#include "stats.h"
#include "timer.h"
#include "topology.h"

#include "application.h"
#include "dist.h"
#include "gen_server.h"
#include "hash_ring.h"
#include "registry.h"
#include "report.h"
#include "semaphore.h"
#include "supervisor.h"
#include "task.h"

#endif /* HY_HYDRA_H */
