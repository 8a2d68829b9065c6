/* fuzz_llama2c.c — libFuzzer harness: the input is a llama2.c checkpoint (lib/model/llama2c.c),
 * loaded through qnpu_model_load (so an input starting with "GGUF" reaches the GGUF loader).
 * A model that loads is queried, read and run for a prefill and a decode step (fuzz_util.h). */
#include "fuzz_util.h"

static fz_file file;
static qnpu_options *opts;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fz_setup();
    fz_file_init(&file, "llama2c");
    opts = fz_options();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_file_set(&file, data, size);
    fz_load_model(file.path, opts);
    return 0;
}
