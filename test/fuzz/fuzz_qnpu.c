/* fuzz_qnpu.c — libFuzzer harness for the .qnpu reader (lib/export/qnpu_file.c,
 * qnpu_qmodel_load) and, for what loads, the consumers of a quantized model: its points, its
 * tokenizer, the integer engine (prefill and decode) and the simulated graph's perplexity.
 *
 * Every section and the header carry a CRC-32, which random mutations would almost never get
 * right. So an input whose stored header CRC is zero is "unsealed": before loading, the
 * harness computes every section's CRC (for table entries that lie inside the input) and then
 * the header's, as a writer would. The seeds are stored unsealed (gen_fuzz_corpus); inputs with
 * a non-zero header CRC are loaded as they are, which exercises the checksum checks. */
#include "fuzz_util.h"
#include "export/qnpu_file.h"

static fz_file file;
static qnpu_options *opts;
static unsigned char *buf;
static size_t buf_cap;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fz_setup();
    fz_file_init(&file, "qnpu");
    opts = fz_options();
    return 0;
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t rd64(const unsigned char *p)
{
    return rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

static void wr32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void seal(unsigned char *b, size_t n)
{
    if (n < QNPU__QF_HEADER_SIZE || rd32(b + QNPU__QH_CRC) != 0)
        return;
    uint64_t count = rd32(b + QNPU__QH_SECTION_COUNT);
    uint64_t room = (n - QNPU__QF_HEADER_SIZE) / QNPU__QF_ENTRY_SIZE;
    if (count > room)
        count = room;
    for (uint64_t i = 0; i < count; i++) {
        unsigned char *e = b + QNPU__QF_HEADER_SIZE + QNPU__QF_ENTRY_SIZE * i;
        uint64_t off = rd64(e + QNPU__QE_OFFSET), sz = rd64(e + QNPU__QE_SIZE);
        if (off <= n && sz <= n - off)
            wr32(e + QNPU__QE_CRC, qnpu__crc32(0, b + off, (size_t)sz));
    }
    size_t tend = QNPU__QF_HEADER_SIZE + (size_t)(QNPU__QF_ENTRY_SIZE * count);
    wr32(b + QNPU__QH_CRC, qnpu__crc32(0, b, tend)); /* the field is still zero */
}

static void use_qmodel(const qnpu_qmodel *q)
{
    int64_t dims[QNPU_DIM_EOS + 1] = {0};
    for (int d = QNPU_DIM_HIDDEN; d <= QNPU_DIM_EOS; d++)
        if (qnpu_qmodel_get_dim(q, (qnpu_model_dim)d, &dims[d]) != QNPU_OK)
            abort();
    int64_t n = qnpu_qmodel_qp_count(q);
    for (int64_t i = 0; i < n; i++) {
        const char *name;
        int bits, sym;
        double scale;
        int32_t zero;
        if (qnpu_qmodel_qp_info(q, i, &name, &bits, &sym, &scale, &zero) != QNPU_OK || !name)
            abort();
    }
    qnpu_tokenizer *t = NULL;
    fz_clear_error();
    qnpu_status s = qnpu_tokenizer_from_qmodel(q, &t);
    fz_check_status(s, "qnpu_tokenizer_from_qmodel");
    if (s == QNPU_OK) {
        fz_use_tokenizer(t);
        qnpu_tokenizer_free(t);
    }

    int64_t vocab = dims[QNPU_DIM_VOCAB], d = dims[QNPU_DIM_HIDDEN];
    if (vocab * d > (1 << 16) || dims[QNPU_DIM_FFN] * d > (1 << 16) || dims[QNPU_DIM_LAYERS] > 4)
        return;
    qnpu_options *o = fz_run_options();
    int32_t tok[3] = {(int32_t)dims[QNPU_DIM_BOS], 0, (int32_t)(vocab - 1)};
    qnpu_session *se = NULL;
    fz_clear_error();
    s = qnpu_session_create(q, o, &se);
    fz_check_status(s, "qnpu_session_create");
    if (s == QNPU_OK) {
        float *logits = malloc((size_t)vocab * sizeof(float));
        if (!logits)
            abort();
        fz_clear_error();
        fz_check_status(qnpu_session_eval(se, tok, 2, 0, logits, (size_t)vocab), "qnpu_session_eval");
        fz_clear_error();
        fz_check_status(qnpu_session_eval(se, tok + 2, 1, 0, logits, (size_t)vocab), "qnpu_session_eval");
        free(logits);
        qnpu_session_free(se);
    }
    double ppl;
    int64_t scored;
    fz_clear_error();
    fz_check_status(qnpu_qmodel_perplexity_ids(q, o, tok, 3, 3, &ppl, &scored), "qnpu_qmodel_perplexity_ids");
    qnpu_options_free(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > buf_cap) {
        free(buf);
        buf_cap = size;
        if (!(buf = malloc(buf_cap)))
            abort();
    }
    if (size)
        memcpy(buf, data, size);
    seal(buf, size);
    fz_file_set(&file, buf, size);
    qnpu_qmodel *q = NULL;
    fz_clear_error();
    qnpu_status s = qnpu_qmodel_load(file.path, opts, &q);
    fz_check_status(s, "qnpu_qmodel_load");
    if (s == QNPU_OK) {
        use_qmodel(q);
        qnpu_qmodel_free(q);
    } else if (q) {
        abort();
    }
    return 0;
}
