/* Hydra: an Erlang/OTP-style, thread-per-core runtime for C.
 * This umbrella header only includes the public headers.
 *
 * Installed layout: <prefix>/include/hydra/{core,otp,net}/NAME.h, this file as
 * <prefix>/include/hydra/hydra.h and a forwarding <prefix>/include/hydra.h, so
 * `#include <hydra.h>`, `#include <hydra/hydra.h>` and `#include <hydra/core/msg.h>`
 * all work and no Hydra header can shadow a system or user header of the same
 * name (pkg-config puts only <prefix>/include on the include path). */
#ifndef HY_HYDRA_H
#define HY_HYDRA_H

#include "core/addr.h"
#include "core/blocking.h"
#include "core/errors.h"
#include "core/hook.h"
#include "core/log.h"
#include "core/msg.h"
#include "core/pid.h"
#include "core/proc.h"
#include "core/runtime.h"
#include "core/signals.h"
#include "core/stats.h"
#include "core/tcp.h"
#include "core/timer.h"
#include "core/topology.h"
#include "core/udp.h"
#include "core/version.h"

#include "otp/application.h"
#include "otp/gen_server.h"
#include "otp/hash_ring.h"
#include "otp/registry.h"
#include "otp/report.h"
#include "otp/semaphore.h"
#include "otp/supervisor.h"
#include "otp/task.h"
#include "otp/tcp_server.h"

#include "net/console.h"
#include "net/dist.h"
#include "net/http.h"
#include "net/ws.h"

#endif /* HY_HYDRA_H */
