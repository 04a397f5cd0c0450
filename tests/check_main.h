/* The tail of every suite's main(): run it, free it, and return the exit
 * status meson reads (0 when every check passed). */
#ifndef NB_CHECK_MAIN_H
#define NB_CHECK_MAIN_H

#include <check.h>

static inline int nb_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

#endif
