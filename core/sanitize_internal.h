/* Which sanitizer the runtime is built with, told once for every file.
 * clang < 16 defines neither __SANITIZE_ADDRESS__ nor __SANITIZE_THREAD__:
 * __has_feature tells it there.
 *
 * HY_ASAN: AddressSanitizer (the stacks' and switches' annotations, crash.c's
 * reports). HY_TSAN: ThreadSanitizer (the switches as fibers, ctx_internal.h;
 * the counters' stores seen as atomics, stats_internal.h). Internal: never
 * installed. */
#ifndef HY_SANITIZE_INTERNAL_H
#define HY_SANITIZE_INTERNAL_H

#if defined(__SANITIZE_ADDRESS__)
#define HY_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HY_ASAN 1
#endif
#endif

#if defined(__SANITIZE_THREAD__)
#define HY_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HY_TSAN 1
#endif
#endif

#endif
