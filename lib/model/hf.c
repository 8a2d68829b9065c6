/* hf.c — Hugging Face directory loader (config.json + safetensors). Not written yet. */
#include "../internal.h"

qnpu_status qnpu__load_hf(qnpu_model *m, const qnpu_options *opts)
{
    (void)opts;
    return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: Hugging Face loading is not implemented yet", m->path);
}
