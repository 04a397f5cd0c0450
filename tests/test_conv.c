/* PLACEHOLDER: being written; fails until it is. */
#include <stdio.h>
int main(void) { fprintf(stderr, "test_conv: not written yet\n"); return 1; }
