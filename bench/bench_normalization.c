/* PLACEHOLDER: being written. */
#include <stdio.h>
int main(void) { fprintf(stderr, "bench_normalization: not written yet\n"); return 1; }
