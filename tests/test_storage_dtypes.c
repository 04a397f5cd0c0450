/* placeholder: replaced by a helper this session */
#include <check.h>
#include <stdlib.h>

START_TEST(test_placeholder) { ck_assert_int_eq(1 + 1, 2); }
END_TEST

int main(void)
{
    Suite *s = suite_create("storage_dtypes");
    TCase *tc = tcase_create("placeholder");
    tcase_add_test(tc, test_placeholder);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
