/* gguf.c — GGUF v3 loader (llama architecture). Not written yet. */
#include "../internal.h"

qnpu_status qnpu__load_gguf(qnpu_model *m, const qnpu_options *opts)
{
    (void)opts;
    return qnpu__fail(QNPU_ERR_UNSUPPORTED, "%s: GGUF loading is not implemented yet", m->path);
}
