/* libFuzzer target: the safetensors reader must reject, never crash on, any byte string. */
#include <stddef.h>
#include <stdint.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  synco_safetensors st;
  if (synco_st_parse(&st, data, size, "fuzz") == SYNCO_OK) {
    float tmp[64];
    for (int i = 0; i < st.count; i++)
      if (synco_st_numel(&st.entries[i]) <= 64) synco_st_get_f32(&st, st.entries[i].name, tmp, synco_st_numel(&st.entries[i]), NULL, 0);
    synco_st_close(&st);
  }
  return 0;
}
