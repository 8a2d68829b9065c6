/* llama2c.c — loader for llama2.c legacy (version 0) checkpoints.
 *
 * Layout (little-endian): 7 int32 {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
 * seq_len}; vocab_size < 0 means a separate classifier follows. Then float32 arrays, each
 * row-major [out][in], stacked over layers:
 *   token_embedding_table[vocab][dim], rms_att_weight[L][dim], wq[L][H*dh][dim],
 *   wk[L][KV*dh][dim], wv[L][KV*dh][dim], wo[L][dim][H*dh], rms_ffn_weight[L][dim],
 *   w1[L][ff][dim], w2[L][dim][ff], w3[L][ff][dim], rms_final_weight[dim],
 *   freq_cis_real[seq][dh/2], freq_cis_imag[seq][dh/2] (unused), wcls[vocab][dim] if separate.
 * RoPE pairs are interleaved (2i, 2i+1); RMSNorm eps 1e-5, theta 10000. */
#include <stdio.h>
#include <string.h>

#include "../internal.h"

#define LLAMA2C_V1_MAGIC 0x616b3432u /* "ak42": the newer llama2.c export versions */

typedef struct section {
    const char *src;        /* llama2.c's array name */
    const char *canon;      /* canonical name pattern ("%d" = layer), NULL = skipped */
    int per_layer;
    int64_t rows, cols;
} section;

qnpu_status qnpu__load_llama2c(qnpu_model *m, const qnpu_options *opts)
{
    qnpu__file *f = &m->files[0];
    qnpu_status s = qnpu__file_open(m->path, (int)qnpu__opt_int(opts, QNPU_P_MODEL_MMAP), f);
    if (s != QNPU_OK)
        return s;
    m->n_files = 1;
    if (f->size < 28) {
        return qnpu__fail(QNPU_ERR_IO, "%s: truncated: %zu bytes, the llama2.c header needs 28",
                          m->path, f->size);
    }
    int32_t h[7];
    memcpy(h, f->data, sizeof h);
    if ((uint32_t)h[0] == LLAMA2C_V1_MAGIC)
        return qnpu__fail(QNPU_ERR_UNSUPPORTED,
                          "%s: llama2.c export version 1/2 (magic \"ak42\"); only the legacy "
                          "version-0 checkpoint is supported", m->path);
    m->dim = h[0];
    m->ffn = h[1];
    m->n_layers = h[2];
    m->n_heads = h[3];
    m->n_kv_heads = h[4];
    m->tied = h[5] > 0;
    m->vocab = h[5] > 0 ? h[5] : -(int64_t)h[5];
    m->max_seq = h[6];
    if (m->n_heads > 0)
        m->head_dim = m->dim / m->n_heads;
    if (m->n_heads <= 0 || m->dim % m->n_heads)
        return qnpu__fail(QNPU_ERR_FORMAT, "%s: dim %lld is not a multiple of n_heads %lld", m->path,
                          (long long)m->dim, (long long)m->n_heads);
    m->rope_half = 0;
    if ((s = qnpu__model_check_dims(m)) != QNPU_OK)
        return s;

    int64_t d = m->dim, q = m->n_heads * m->head_dim, kv = m->n_kv_heads * m->head_dim;
    const section secs[] = {
        {"token_embedding_table", "token_embd.weight", 0, m->vocab, d},
        {"rms_att_weight", "blk.%d.attn_norm.weight", 1, 1, d},
        {"wq", "blk.%d.attn_q.weight", 1, q, d},
        {"wk", "blk.%d.attn_k.weight", 1, kv, d},
        {"wv", "blk.%d.attn_v.weight", 1, kv, d},
        {"wo", "blk.%d.attn_output.weight", 1, d, q},
        {"rms_ffn_weight", "blk.%d.ffn_norm.weight", 1, 1, d},
        {"w1", "blk.%d.ffn_gate.weight", 1, m->ffn, d},
        {"w2", "blk.%d.ffn_down.weight", 1, d, m->ffn},
        {"w3", "blk.%d.ffn_up.weight", 1, m->ffn, d},
        {"rms_final_weight", "output_norm.weight", 0, 1, d},
        {"freq_cis_real", NULL, 0, m->max_seq, m->head_dim / 2},
        {"freq_cis_imag", NULL, 0, m->max_seq, m->head_dim / 2},
        {"wcls", "output.weight", 0, m->vocab, d},
    };
    int nsec = (int)(sizeof secs / sizeof secs[0]) - (m->tied ? 1 : 0);
    size_t off = 28;
    for (int i = 0; i < nsec; i++) {
        const section *sc = &secs[i];
        /* dims are bounded by check_dims, so these products fit in 64 bits */
        size_t one = (size_t)(sc->rows * sc->cols) * sizeof(float);
        int copies = sc->per_layer ? (int)m->n_layers : 1;
        if (off + one * (size_t)copies > f->size)
            return qnpu__fail(QNPU_ERR_IO,
                              "%s: truncated: tensor '%s' needs bytes %zu..%zu, the file has %zu",
                              m->path, sc->src, off, off + one * (size_t)copies, f->size);
        for (int l = 0; l < copies && sc->canon; l++) {
            char canon[64], src[64];
            snprintf(canon, sizeof canon, sc->canon, l);
            if (sc->per_layer)
                snprintf(src, sizeof src, "%s[%d]", sc->src, l);
            else
                snprintf(src, sizeof src, "%s", sc->src);
            s = qnpu__model_add_tensor(m, canon, src, QNPU__F32, sc->rows, sc->cols,
                                       f->data + off + one * (size_t)l);
            if (s != QNPU_OK)
                return s;
        }
        off += one * (size_t)copies;
    }
    if (off != f->size)
        return qnpu__fail(QNPU_ERR_FORMAT,
                          "%s: %zu bytes, but a llama2.c checkpoint with this header has %zu "
                          "(wrong header, or not a legacy llama2.c file)", m->path, f->size, off);
    return QNPU_OK;
}
