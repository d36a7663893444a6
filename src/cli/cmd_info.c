/* synco info: version, backends, threads, CPU features seen by oneDNN, and the convolution path they select (the
 * backend registry describes the backends, so that this file needs no backend's headers). */
#include <omp.h>
#include <stdio.h>

#include "backend/registry.h"
#include "base/status.h"
#include "cli/args.h"
#include "cli/commands.h"
#include "cli/wait_policy.h"
#include "dist/dist.h"
#include "io/tfevents.h"
#include "synco.h"

int synco_cmd_info(int argc, char **argv) {
  int threads = 0;
  synco_arg args[] = {
      {"threads", 0, SYNCO_ARG_INT, &threads, "the thread count to report, as the other commands take it (0 = all cores)"},
      {NULL, 0, 0, NULL, NULL, 0},
  };
  int rc = synco_args_parse("info", "Prints the version, the backends built in, the thread count, and the CPU instruction set "
                            "oneDNN uses.", args, argc, argv, NULL, 0, NULL);
  if (rc) return rc == 1 ? 0 : 2;
  if (threads > 0) omp_set_num_threads(threads);
  printf("synco %s\n", synco_version());
  char backends[4096]; /* the bf16 kernel probe alone takes ~600 characters */
  synco_backend_describe(backends, sizeof backends);
  fputs(backends, stdout);
  /* how processes of one run talk (src/dist): always the single process; MPI when built with it */
#ifdef SYNCO_HAVE_MPI
  printf("transports: single process, MPI (%s; launch with mpirun -np N or srun)", synco_dist_mpi_version());
#ifdef SYNCO_HAVE_NCCL
  const int nv = synco_dist_nccl_version();
  printf(", NCCL %d.%d.%d (with --backend cuda)", nv / 10000, nv / 100 % 100, nv % 100);
#endif
  printf("\n");
#else
  printf("transports: single process (MPI not built in: apt-get install openmpi-bin libopenmpi-dev and rebuild)\n");
#endif
  printf("threads: %d (%s); idle threads wait: %s; pretrain and bench step run fewer while other processes take "
         "cores, with the same results (--no-adapt-threads: always all)\n",
         omp_get_max_threads(), threads > 0 ? "--threads" : "OMP_NUM_THREADS or --threads to change",
         synco_wait_policy_describe());
  printf("huge pages: %s\n", synco_huge_pages_describe());
#ifdef SYNCO_HAVE_CAIRO
  printf("plots: cairo\n");
#else
  printf("plots: not built in (libcairo2-dev)\n");
#endif
  printf("tensorboard: %s\n", synco_tfevents_available() ? "event files (protobuf-c)"
                                                          : "not built in (libprotobuf-c-dev protobuf-c-compiler)");
  return 0;
}
