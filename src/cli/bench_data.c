/* placeholder until the benchmark lands */
#include <stdio.h>
int synco_bench_data(int argc, char **argv) { fprintf(stderr, "synco bench: not built yet\n"); return 1; }
