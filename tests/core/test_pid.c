/* Pids' printed form (core/pid.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hydra.h"

/* A restarted process (new generation in the same slot) and a process of a
 * restarted node (new creation) print unlike their predecessors. */
static void test_pid_format_tells_incarnations_apart(void **state)
{
    (void)state;
    char a[HY_PID_STRLEN], b[HY_PID_STRLEN], c[HY_PID_STRLEN];
    hy_pid_format(hy_pid_make(2, 0xabc, 1, 1, 1), a, sizeof(a));
    hy_pid_format(hy_pid_make(2, 0xabc, 1, 1, 2), b, sizeof(b));
    hy_pid_format(hy_pid_make(2, 0xdef, 1, 1, 1), c, sizeof(c));
    assert_string_equal(a, "<2.1.1.1@000abc>");
    assert_string_equal(b, "<2.1.1.2@000abc>");
    assert_string_equal(c, "<2.1.1.1@000def>");
}

/* The longest pid fits HY_PID_STRLEN; a short buffer is cut, NUL-ended. */
static void test_pid_format_longest_fits(void **state)
{
    (void)state;
    char buf[HY_PID_STRLEN + 8];
    memset(buf, 'x', sizeof(buf));
    hy_pid_format(hy_pid_make(0xffffff, 0xffffff, 0xffff, UINT32_MAX, UINT32_MAX), buf,
                  HY_PID_STRLEN);
    assert_string_equal(buf, "<16777215.65535.4294967295.4294967295@ffffff>");
    assert_true(strlen(buf) < HY_PID_STRLEN);
    char small[6];
    hy_pid_format(hy_pid_make(2, 1, 1, 1, 1), small, sizeof(small));
    assert_string_equal(small, "<2.1.");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pid_format_tells_incarnations_apart),
        cmocka_unit_test(test_pid_format_longest_fits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
