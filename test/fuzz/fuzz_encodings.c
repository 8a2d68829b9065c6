/* fuzz_encodings.c — libFuzzer harness for the QNN / AIMET encodings JSON re-reader
 * (lib/export/encodings.c, qnpu__encodings_parse, on lib/model/json.c). The input is an
 * encodings file of either schema version. A file that parses is walked: every record must be
 * well formed (a name, n >= 1 scales and offsets for integer encodings, none for float ones,
 * min/max exactly for 0.6.1) and findable by name; the counts must add up. */
#include "fuzz_util.h"
#include "export/encodings.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fz_setup();
    return 0;
}

static void check_record(const qnpu__encodings *e, const qnpu__enc_record *r)
{
    if (!r->name || (r->param != 0 && r->param != 1))
        abort();
    if (r->is_float) {
        if (r->n != 0)
            abort();
    } else {
        if (r->n < 1 || !r->scale || !r->offset)
            abort();
        if ((e->version == QNPU__ENC_V061) != (r->min != NULL && r->max != NULL))
            abort();
        volatile float sum = 0; /* touch every element (ASan checks the sizes) */
        volatile int64_t osum = 0;
        for (int64_t i = 0; i < r->n; i++) {
            sum += r->scale[i];
            osum += r->offset[i];
            if (r->min)
                sum += r->min[i] + r->max[i];
        }
        (void)sum, (void)osum;
    }
    /* names may repeat: the lookup finds one record of that name */
    const qnpu__enc_record *f = qnpu__encodings_find(e, r->param, r->name);
    if (!f || strcmp(f->name, r->name) != 0 || f->param != r->param)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qnpu__encodings *e = NULL;
    fz_clear_error();
    qnpu_status s = qnpu__encodings_parse("fuzz.encodings", data, size, &e);
    fz_check_status(s, "qnpu__encodings_parse");
    if (s != QNPU_OK) {
        if (e)
            abort();
        return 0;
    }
    if (!e || (e->version != QNPU__ENC_V061 && e->version != QNPU__ENC_V100) || e->n_act < 0 ||
        e->n_act > e->n_rec || (e->n_rec && !e->rec))
        abort();
    for (int64_t i = 0; i < e->n_rec; i++) {
        check_record(e, &e->rec[i]);
        if (e->rec[i].param != (i >= e->n_act))
            abort(); /* activations first, then parameters */
    }
    qnpu__encodings_free(e);
    return 0;
}
