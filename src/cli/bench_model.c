/* placeholder until the benchmark lands */
#include <stdio.h>
int synco_bench_fwdbwd(int argc, char **argv) { fprintf(stderr, "synco bench: not built yet\n"); return 1; }
int synco_bench_step(int argc, char **argv) { fprintf(stderr, "synco bench: not built yet\n"); return 1; }
