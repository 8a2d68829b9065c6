/* fuzz_recipe.c — libFuzzer harness for the YAML recipe reader (lib/recipe/recipe.c): the input
 * is a recipe's text, applied with qnpu__recipe_apply (what qnpu_options_load_recipe does after
 * reading the file) to fresh options. A failed load must leave the options unchanged: after a
 * failure (of an input whose size is a multiple of 4) every parameter is compared, as text, with
 * its value before the call. */
#include "fuzz_util.h"
#include "recipe/recipe.h"

/* Every parameter of `o` as "name=value;" into buf (0 if it does not fit). */
static size_t dump(const qnpu_options *o, char *buf, size_t cap)
{
    size_t used = 0;
    for (int i = 0; i < qnpu_param_count(); i++) {
        qnpu_param p;
        const char *name, *str = NULL;
        int type;
        double min, max, f = 0;
        if (qnpu_param_at(i, &p) != QNPU_OK || qnpu_param_info(p, &name, &type, &min, &max) != QNPU_OK)
            abort();
        int64_t v = 0;
        if (qnpu_options_get_str(o, p, &str) != QNPU_OK)
            str = NULL;
        if (qnpu_options_get_int(o, p, &v) != QNPU_OK)
            v = 0;
        if (qnpu_options_get_float(o, p, &f) != QNPU_OK)
            f = 0;
        int n = snprintf(buf + used, cap - used, "%s=%s/%lld/%.17g;", name, str ? str : "",
                         (long long)v, f);
        if (n < 0 || (size_t)n >= cap - used)
            return 0;
        used += (size_t)n;
    }
    return used;
}

static char before[1 << 16], after[1 << 16];
static size_t n_before;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    fz_setup();
    qnpu_options *o = fz_options();
    n_before = dump(o, before, sizeof before);
    qnpu_options_free(o);
    if (!n_before)
        fz_die("dump");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qnpu_options *o = fz_options();
    fz_clear_error();
    qnpu_status s = qnpu__recipe_apply(o, "fuzz.yaml", (const char *)data, size);
    fz_check_status(s, "qnpu__recipe_apply");
    if (s != QNPU_OK && s != QNPU_ERR_RECIPE && s != QNPU_ERR_NO_MEMORY) {
        fprintf(stderr, "fuzz_recipe: status %d\n", (int)s);
        abort();
    }
    /* the comparison costs more than the parse: do it for one failing input in four (chosen by
     * size, so a given input always gets the same treatment) */
    if (s != QNPU_OK && size % 4 == 0) {
        size_t n = dump(o, after, sizeof after);
        if (n != n_before || memcmp(before, after, n) != 0) {
            fprintf(stderr, "fuzz_recipe: a failed recipe changed the options\n");
            abort();
        }
    }
    qnpu_options_free(o);
    return 0;
}
