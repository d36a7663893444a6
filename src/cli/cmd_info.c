/* synco info: version, backends, threads, CPU features seen by oneDNN, and the convolution path they select. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "synco.h"
#ifdef SYNCO_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif
#ifdef SYNCO_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

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
  printf("backends: ref (plain C + OpenBLAS)");
#ifdef SYNCO_HAVE_ONEDNN
  const dnnl_version_t *v = dnnl_version();
  printf(", onednn %d.%d.%d (default)\n", v->major, v->minor, v->patch);
  const char *isa = "unknown";
  switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_sse41: isa = "sse41"; break;
    case dnnl_cpu_isa_avx: isa = "avx"; break;
    case dnnl_cpu_isa_avx2: isa = "avx2"; break;
    case dnnl_cpu_isa_avx512_mic: isa = "avx512_mic"; break;
    case dnnl_cpu_isa_avx512_mic_4ops: isa = "avx512_mic_4ops"; break;
    case dnnl_cpu_isa_avx512_core: isa = "avx512_core"; break;
    case dnnl_cpu_isa_avx512_core_vnni: isa = "avx512_core_vnni"; break;
    case dnnl_cpu_isa_avx512_core_bf16: isa = "avx512_core_bf16"; break;
    case dnnl_cpu_isa_avx512_core_amx: isa = "avx512_core_amx"; break;
    default: break;
  }
  printf("cpu isa (oneDNN): %s\n", isa);
  const dnnl_cpu_isa_t cpu = dnnl_get_effective_cpu_isa();
  printf("bf16: %s\n", cpu >= dnnl_cpu_isa_avx512_core_bf16 ? "this CPU has AVX512-BF16, but this build runs fp32 only"
                                                             : "no (needs AVX512-BF16)");
  /* the backend keeps nChw8c activations below AVX-512, and that is where wino_conv.c takes the 3x3 layers */
  const char *wino = getenv("SYNCO_CONV_WINOGRAD");
  const int wino_on = cpu >= dnnl_cpu_isa_avx2 && cpu < dnnl_cpu_isa_avx512_core && !(wino && *wino == '0');
  printf("3x3 stride-1 convolutions: %s\n", wino_on ? "Winograd F(2x2,3x3) from 32 channels (SYNCO_CONV_WINOGRAD=0: oneDNN's)"
                                                  : "oneDNN direct");
#else
  printf("\noneDNN: not built in (install libdnnl-dev and rebuild for the fast CPU backend)\n");
#endif
#ifdef SYNCO_HAVE_CUDA
  char gpus[4096] = "";
  synco_cuda_describe(gpus, sizeof gpus);
  printf("cuda: built in (--backend cuda or cuda:N)\n%s", gpus);
#else
  printf("cuda: not built in (make CUDA=1)\n");
#endif
  printf("threads: %d (%s)\n", omp_get_max_threads(), threads > 0 ? "--threads" : "OMP_NUM_THREADS or --threads to change");
#ifdef SYNCO_HAVE_CAIRO
  printf("plots: cairo\n");
#else
  printf("plots: not built in (libcairo2-dev)\n");
#endif
  return 0;
}
