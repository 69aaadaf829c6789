#include "fuzz.h"
#include "fuzz_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return pd_fuzz_data(PD_FMT_LIBSVM, data, size);
}
