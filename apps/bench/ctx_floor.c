/* ctx_floor: the cost of the bare register switch, with no scheduler.
 *
 * Two contexts (the caller's and one on an mmap'd stack) switch back and
 * forth with hy__ctx_switch and nothing else: no run queue, no mailbox, no
 * bookkeeping. This is the floor under the runtime's process switch
 * (bench_ctx_switch), so the difference between the two is what the
 * scheduler adds.
 *
 * Apps normally include only the public headers; this file is the one
 * exception: it includes core's internal ctx_internal.h, because measuring
 * the raw switch is its whole point.
 */
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "ctx_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define HY_FLOOR_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HY_FLOOR_ASAN 1
#endif
#endif
#ifdef HY_FLOOR_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#define FLOOR_STACK_SIZE (64u * 1024u)
#define FLOOR_WARMUP_ROUNDS 10000ul

struct floor_pair {
    void *main_sp;
    void *co_sp;
#ifdef HY_FLOOR_ASAN
    void *co_lo;
    size_t co_size;
    const void *main_lo;
    size_t main_size;
    void *main_fake;
    void *co_fake;
#endif
};

/* The other context: switches straight back, forever (its stack is simply
 * unmapped when the measurement is over; it is never resumed again). */
static void floor_co(void *arg)
{
    struct floor_pair *p = arg;
#ifdef HY_FLOOR_ASAN
    __sanitizer_finish_switch_fiber(NULL, &p->main_lo, &p->main_size);
#endif
    for (;;) {
#ifdef HY_FLOOR_ASAN
        __sanitizer_start_switch_fiber(&p->co_fake, p->main_lo, p->main_size);
#endif
        hy__ctx_switch(&p->co_sp, p->main_sp);
#ifdef HY_FLOOR_ASAN
        __sanitizer_finish_switch_fiber(p->co_fake, NULL, NULL);
#endif
    }
}

/* One round trip: two switches. */
static inline void floor_round_trip(struct floor_pair *p)
{
#ifdef HY_FLOOR_ASAN
    __sanitizer_start_switch_fiber(&p->main_fake, p->co_lo, p->co_size);
#endif
    hy__ctx_switch(&p->main_sp, p->co_sp);
#ifdef HY_FLOOR_ASAN
    __sanitizer_finish_switch_fiber(p->main_fake, NULL, NULL);
#endif
}

static uint64_t floor_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ns per switch (one hy__ctx_switch call) over iters switches, rounded up to
 * whole round trips; a round trip (there and back) is two switches. Returns
 * a negative value when the stack cannot be allocated. */
double hy_bench_ctx_floor_ns(unsigned long iters)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t map_size = FLOOR_STACK_SIZE + page; /* guard page below the stack */
    unsigned char *map =
        mmap(NULL, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return -1.0;
    if (mprotect(map, page, PROT_NONE) != 0) {
        munmap(map, map_size);
        return -1.0;
    }

    struct floor_pair pair = {0};
    unsigned char *lo = map + page;
#ifdef HY_FLOOR_ASAN
    pair.co_lo = lo;
    pair.co_size = FLOOR_STACK_SIZE;
#endif
    pair.co_sp = hy__ctx_make(lo + FLOOR_STACK_SIZE, floor_co, &pair);

    unsigned long rounds = iters / 2 + (iters & 1);
    if (rounds == 0)
        rounds = 1;
    for (unsigned long i = 0; i < FLOOR_WARMUP_ROUNDS; i++)
        floor_round_trip(&pair);

    uint64_t t0 = floor_now_ns();
    for (unsigned long i = 0; i < rounds; i++)
        floor_round_trip(&pair);
    uint64_t t1 = floor_now_ns();

#ifdef HY_FLOOR_ASAN
    __asan_unpoison_memory_region(lo, FLOOR_STACK_SIZE);
#endif
    munmap(map, map_size);
    return (double)(t1 - t0) / (2.0 * (double)rounds);
}
