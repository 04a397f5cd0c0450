/* PLACEHOLDER: being written. */
#include <stdio.h>
int main(void) { fprintf(stderr, "bench_conv2d: not written yet\n"); return 1; }
