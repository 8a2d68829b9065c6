/* fuzz_gguf.c — libFuzzer harness: the input is a GGUF file (lib/model/gguf.c), loaded
 * through qnpu_model_load (an input without the "GGUF" magic reaches the llama2.c loader).
 * A model that loads is queried, read and run for a prefill and a decode step, and its embedded
 * vocabulary becomes a tokenizer that encodes and decodes a fixed text (fuzz_util.h). */
#include "fuzz_util.h"

static fz_file file;
static qnpu_options *opts;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fz_setup();
    fz_file_init(&file, "gguf");
    opts = fz_options();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_file_set(&file, data, size);
    fz_load_model(file.path, opts);
    return 0;
}
