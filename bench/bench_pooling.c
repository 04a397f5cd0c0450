/* PLACEHOLDER: being written. */
#include <stdio.h>
int main(void) { fprintf(stderr, "bench_pooling: not written yet\n"); return 1; }
