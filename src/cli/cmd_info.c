/* synco info: version, backends, threads, CPU features seen by oneDNN. */
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "synco.h"
#ifdef SYNCO_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

int synco_cmd_info(int argc, char **argv) {
  if (argc > 1) {
    const int help = !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h");
    fprintf(help ? stdout : stderr, "usage: synco info\n\nPrints the version, the backends built in, the thread count, "
            "and the CPU instruction set oneDNN uses.\n");
    return help ? 0 : 2;
  }
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
  printf("bf16: %s\n", dnnl_get_effective_cpu_isa() >= dnnl_cpu_isa_avx512_core_bf16 ? "yes" : "no");
#else
  printf("\noneDNN: not built in (install libdnnl-dev and rebuild for the fast CPU backend)\n");
#endif
  printf("threads: %d (OMP_NUM_THREADS or --threads to change)\n", omp_get_max_threads());
#ifdef SYNCO_HAVE_CAIRO
  printf("plots: cairo\n");
#else
  printf("plots: not built in (libcairo2-dev)\n");
#endif
  return 0;
}
