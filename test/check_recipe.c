/* check_recipe.c — YAML recipes: qnpu_options_load_recipe, the presets compiled into the
 * library, and the exact "FILE:LINE:COL: problem" of every malformed recipe under
 * test/data/recipes/ (paths are relative to the repository root, where the runner runs). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define DATA "test/data/recipes/"

/* Every parameter as "name=value\n", in table order: two options objects hold the same values
 * exactly when their snapshots are equal. The caller frees the result. */
static char *snapshot(const qnpu_options *o)
{
    size_t cap = 1 << 16, used = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    buf[0] = '\0';
    for (int i = 0; i < qnpu_param_count(); i++) {
        qnpu_param p;
        const char *name;
        int type;
        char value[512];
        ck_assert_int_eq(qnpu_param_at(i, &p), QNPU_OK);
        ck_assert_int_eq(qnpu_param_info(p, &name, &type, NULL, NULL), QNPU_OK);
        if (type == QNPU_PTYPE_FLOAT) {
            double v;
            ck_assert_int_eq(qnpu_options_get_float(o, p, &v), QNPU_OK);
            snprintf(value, sizeof value, "%.17g", v);
        } else if (type == QNPU_PTYPE_CHOICE || type == QNPU_PTYPE_STRING) {
            const char *v;
            ck_assert_int_eq(qnpu_options_get_str(o, p, &v), QNPU_OK);
            snprintf(value, sizeof value, "'%s'", v);
        } else {
            int64_t v;
            ck_assert_int_eq(qnpu_options_get_int(o, p, &v), QNPU_OK);
            snprintf(value, sizeof value, "%lld", (long long)v);
        }
        used += (size_t)snprintf(buf + used, cap - used, "%s=%s\n", name, value);
        ck_assert_uint_lt(used, cap);
    }
    return buf;
}

static void ck_same_options(const qnpu_options *a, const qnpu_options *b)
{
    char *sa = snapshot(a), *sb = snapshot(b);
    ck_assert_str_eq(sa, sb);
    free(sa);
    free(sb);
}

static void set(qnpu_options *o, const char *name, const char *value)
{
    qnpu_param p;
    ck_assert_int_eq(qnpu_param_from_name(name, &p), QNPU_OK);
    ck_assert_msg(qnpu_options_set_str(o, p, value) == QNPU_OK, "%s = %s: %s", name, value,
                  qnpu_last_error());
}

static qnpu_options *fresh(void)
{
    qnpu_options *o;
    ck_assert_int_eq(qnpu_options_create(&o), QNPU_OK);
    return o;
}

/* ---- malformed recipes ------------------------------------------------------------------ */

typedef struct bad_case {
    const char *file;     /* under DATA */
    qnpu_status status;
    const char *message;  /* qnpu_last_error() after DATA file */
} bad_case;

static const bad_case bad_cases[] = {
    {"alias.yaml", QNPU_ERR_RECIPE, ":3:15: aliases (*bits) are not allowed in a recipe"},
    {"anchor.yaml", QNPU_ERR_RECIPE, ":3:15: anchors (&bits) are not allowed in a recipe"},
    {"bad_bool.yaml", QNPU_ERR_RECIPE, ":3:16: optim.shuffle: 'yes' is not true or false"},
    {"bad_choice.yaml", QNPU_ERR_RECIPE,
     ":4:7: rotate.r1: 'hadamard' is not one of identity|random_hadamard|random_orthogonal"},
    {"bad_control.yaml", QNPU_ERR_RECIPE, ":3:15: control characters are not allowed"},
    {"bad_key.yaml", QNPU_ERR_RECIPE, ":3:3: a key must be text, not a list"},
    {"bad_list.yaml", QNPU_ERR_RECIPE,
     ":3:15: quant.w_bits: takes a single value, not a list (lists are for text parameters)"},
    {"bad_list_item.yaml", QNPU_ERR_RECIPE,
     ":4:5: quant.bits_override: a list may hold only scalar values, not a list"},
    {"bad_nested.yaml", QNPU_ERR_RECIPE, ":5:5: rotate.seed: takes a value, not a mapping"},
    {"bad_syntax.yaml", QNPU_ERR_RECIPE, ":4:15: mapping values are not allowed in this context"},
    {"bad_top_level.yaml", QNPU_ERR_RECIPE,
     ":2:1: the top level must be a mapping of keys to values, not a list"},
    {"bad_top_scalar.yaml", QNPU_ERR_RECIPE,
     ":2:1: the top level must be a mapping of keys to values, not a single value"},
    {"bad_unclosed.yaml", QNPU_ERR_RECIPE,
     ":4:1: did not find expected node content (while parsing a flow node at line 4, column 1)"},
    {"bad_unknown_key.yaml", QNPU_ERR_RECIPE,
     ":3:1: unknown key 'calib.num_sample' (did you mean 'calib.num_samples'?)"},
    {"bad_unknown_nested.yaml", QNPU_ERR_RECIPE,
     ":5:3: unknown key 'calib.num_sampels' (did you mean 'calib.num_samples'?)"},
    {"bad_unknown_plain.yaml", QNPU_ERR_RECIPE,
     ":3:1: unknown key 'num_samples' (did you mean 'calib.num_samples'?)"},
    {"bad_unknown_section.yaml", QNPU_ERR_RECIPE, ":3:1: unknown key 'qaunt' (did you mean 'quant'?)"},
    {"bad_utf8.yaml", QNPU_ERR_RECIPE, ":3:17: invalid UTF-8 (byte 0xe9)"},
    {"bad_value_range.yaml", QNPU_ERR_RECIPE, ":5:11: quant.a_bits: 32 is outside [4, 16]"},
    {"bad_value_type.yaml", QNPU_ERR_RECIPE, ":3:16: calib.seq_len: 'many' is not a number"},
    {"bad_version.yaml", QNPU_ERR_RECIPE,
     ":2:10: version: unsupported recipe version '2' (this library reads version 1)"},
    {"bad_version_list.yaml", QNPU_ERR_RECIPE, ":2:10: version: must be 1, not a list"},
    {"duplicate_key.yaml", QNPU_ERR_RECIPE,
     ":5:3: duplicate key 'calib.num_samples' (first at line 3, column 1)"},
    {"duplicate_section.yaml", QNPU_ERR_RECIPE, ":5:1: duplicate key 'quant' (first at line 3, column 1)"},
    {"empty.yaml", QNPU_ERR_RECIPE, ":1:1: empty recipe (it needs at least 'version: 1')"},
    {"missing_value.yaml", QNPU_ERR_RECIPE, ":3:14: quant.w_bits: missing value (write '' for empty text)"},
    {"missing_version.yaml", QNPU_ERR_RECIPE, ":3:1: missing 'version: 1' (every recipe starts with it)"},
    {"null_value.yaml", QNPU_ERR_RECIPE, ":3:13: calib.text: null is not a value (write '' for empty text)"},
    {"tag.yaml", QNPU_ERR_RECIPE, ":3:15: tags (!!int) are not allowed in a recipe"},
    {"two_documents.yaml", QNPU_ERR_RECIPE, ":3:1: a recipe is one YAML document, found a second"},
};
#define N_BAD ((int)(sizeof bad_cases / sizeof bad_cases[0]))

/* Options with a few non-default values, to see that a failed load changes nothing. */
static qnpu_options *before(void)
{
    qnpu_options *o = fresh();
    set(o, "quant.w_bits", "6");
    set(o, "quant.a_bits", "12");
    set(o, "calib.num_samples", "5");
    set(o, "calib.text", "before.txt");
    set(o, "rotate.r1", "random_orthogonal");
    set(o, "optim.lr", "0.25");
    return o;
}

START_TEST(test_bad_recipe)
{
    const bad_case *c = &bad_cases[_i];
    char path[256], want[512];
    snprintf(path, sizeof path, DATA "%s", c->file);
    snprintf(want, sizeof want, "%s%s", path, c->message);
    qnpu_options *o = before(), *ref = before();
    ck_assert_int_eq(qnpu_options_load_recipe(o, path), c->status);
    ck_assert_str_eq(qnpu_last_error(), want);
    ck_same_options(o, ref);
    qnpu_options_free(o);
    qnpu_options_free(ref);
}
END_TEST

/* Every file of test/data/recipes/ is either a good_* recipe or has a row above. */
START_TEST(test_bad_cases_cover_the_data)
{
    DIR *d = opendir(DATA);
    ck_assert_ptr_nonnull(d);
    int files = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || strncmp(e->d_name, "good_", 5) == 0)
            continue;
        int found = 0;
        for (int i = 0; i < N_BAD; i++)
            found |= strcmp(bad_cases[i].file, e->d_name) == 0;
        ck_assert_msg(found, "%s has no expectation in check_recipe.c", e->d_name);
        files++;
    }
    closedir(d);
    ck_assert_int_eq(files, N_BAD);
}
END_TEST

START_TEST(test_bad_arguments)
{
    qnpu_options *o = before(), *ref = before();
    ck_assert_int_eq(qnpu_options_load_recipe(NULL, "w4a8"), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_options_load_recipe(o, NULL), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_options_load_recipe(o, "w3a3"), QNPU_ERR_INVALID_ARG);
    ck_assert_str_eq(qnpu_last_error(),
                     "unknown recipe preset 'w3a3' (presets: quantnpu-w4a4-mixed, quantnpu-w4a8, w4a16, "
                     "w4a4-mixed, w4a8-hadamard, w4a8, w8a8; a recipe file needs a '/' or a .yaml suffix)");
    ck_assert_int_eq(qnpu_options_load_recipe(o, ""), QNPU_ERR_INVALID_ARG);
    /* a preset name is never looked up as a file, a path never as a preset */
    ck_assert_int_eq(qnpu_options_load_recipe(o, "w4a8.yaml"), QNPU_ERR_IO);
    ck_assert_str_eq(qnpu_last_error(), "w4a8.yaml: cannot open: No such file or directory");
    ck_assert_int_eq(qnpu_options_load_recipe(o, DATA "missing.yaml"), QNPU_ERR_IO);
    ck_assert_str_eq(qnpu_last_error(), DATA "missing.yaml: cannot open: No such file or directory");
    ck_assert_int_eq(qnpu_options_load_recipe(o, DATA), QNPU_ERR_IO);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), DATA));
    ck_same_options(o, ref);
    qnpu_options_free(o);
    qnpu_options_free(ref);
}
END_TEST

/* Errors in recipes written on the fly: a BOM and CRLF line ends keep the positions right,
 * nesting has a limit, messages name the path as given. */
START_TEST(test_written_errors)
{
    static const struct {
        const char *name, *text, *message;
    } cases[] = {
        {"bom.yaml", "\xEF\xBB\xBFversion: 1\nquant.w_bits: 9\n", ":2:15: quant.w_bits: 9 is outside [2, 8]"},
        {"crlf.yaml", "version: 1\r\n\r\nquant.w_bits: 1\r\n", ":3:15: quant.w_bits: 1 is outside [2, 8]"},
        {"bom_ctl.yaml", "\xEF\xBB\xBFversion: 1 \x01\n", ":1:12: control characters are not allowed"},
        {"utf8_col.yaml", "version: 1\ncalib.text: \"\xC3\xA9\xC3\xA9\x01\"\n",
         ":2:16: control characters are not allowed"},
        {"truncated.yaml", "version: 1\ncalib.text: \"\xE2\x82", ":2:14: invalid UTF-8 (byte 0xe2)"},
        {"overlong.yaml", "version: 1\n# \xC0\xAF\n", ":2:3: invalid UTF-8 (byte 0xc0)"},
        {"surrogate.yaml", "version: 1\n# \xED\xA0\x80\n", ":2:3: invalid UTF-8 (byte 0xed)"},
        {"nul.yaml", "version: 1\ncalib.text: \"a\\0b\"\n", ":2:13: calib.text: the value holds a NUL character"},
        {"deep.yaml", "version: 1\na: {b: {c: {d: {e: {f: {g: {h: {i: {j: 1}}}}}}}}}\n",
         ":2:36: nested more than 8 levels deep"},
        {"only_doc.yaml", "---\n", ":1:1: empty recipe (it needs at least 'version: 1')"},
        {"zero.yaml", "", ":1:1: empty recipe (it needs at least 'version: 1')"},
        {"version_text.yaml", "version: one\n", ":1:10: version: unsupported recipe version 'one' (this library reads version 1)"},
        {"version_map.yaml", "version: {major: 1}\n", ":1:10: version: must be 1, not a mapping"},
        {"list_in_map.yaml", "version: 1\nquant: [w_bits]\n", ":2:8: quant: takes a mapping of its parameters, not a list"},
        {"version_late.yaml", "quant.bogus: 1\nversion: 2\n",
         ":2:10: version: unsupported recipe version '2' (this library reads version 1)"},
        {"float_int.yaml", "version: 1\ncalib.seq_len: 2.5\n", ":2:16: calib.seq_len: takes an integer, got 2.5"},
        {"suggest_none.yaml", "version: 1\nbanana: 1\n", ":2:1: unknown key 'banana'"},
        {"suggest_deep.yaml", "version: 1\nquant:\n  quant.w_bits: 4\n",
         ":3:3: unknown key 'quant.quant.w_bits' (did you mean 'quant.w_bits'?)"},
        {"section_value.yaml", "version: 1\nrotate: off\n", ":2:9: rotate: takes a mapping of its parameters, not a value"},
        {"empty_key.yaml", "version: 1\n\"\": 4\n", ":2:1: empty key"},
        {"empty_quoted_num.yaml", "version: 1\nquant.w_bits: ''\n", ":2:15: quant.w_bits: '' is not a number"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = qt_tmpfile(cases[i].name);
        char want[512];
        qt_write_file(path, cases[i].text, strlen(cases[i].text));
        snprintf(want, sizeof want, "%s%s", path, cases[i].message);
        qnpu_options *o = before(), *ref = before();
        ck_assert_msg(qnpu_options_load_recipe(o, path) == QNPU_ERR_RECIPE, "%s", cases[i].name);
        ck_assert_str_eq(qnpu_last_error(), want);
        ck_same_options(o, ref);
        qnpu_options_free(o);
        qnpu_options_free(ref);
    }
}
END_TEST

/* ---- good recipes ----------------------------------------------------------------------- */

/* What good_flat.yaml, good_nested.yaml and good_flow.yaml set. */
static void set_good_values(qnpu_options *o)
{
    set(o, "calib.seq_len", "128");
    set(o, "calib.num_samples", "3");
    set(o, "calib.text", "data/my text.txt");
    set(o, "quant.w_bits", "6");
    set(o, "quant.a_bits", "16");
    set(o, "optim.shuffle", "true");
    set(o, "optim.lr", "0.001");
    set(o, "rotate.r1", "random_orthogonal");
    set(o, "rotate.r4_layers", "0,3,4");
    set(o, "quant.bits_override", "layer0.qkv.in:8,layer4.down.in:16");
}

START_TEST(test_flat_nested_flow_agree)
{
    static const char *const files[] = {DATA "good_flat.yaml", DATA "good_nested.yaml",
                                        DATA "good_flow.yaml"};
    qnpu_options *want = fresh();
    set_good_values(want);
    for (int i = 0; i < 3; i++) {
        qnpu_options *o = fresh();
        ck_assert_msg(qnpu_options_load_recipe(o, files[i]) == QNPU_OK, "%s", qnpu_last_error());
        ck_same_options(o, want);
        const char *s;
        ck_assert_int_eq(qnpu_options_get_str(o, QNPU_P_QUANT_BITS_OVERRIDE, &s), QNPU_OK);
        ck_assert_str_eq(s, "layer0.qkv.in:8,layer4.down.in:16");
        qnpu_options_free(o);
    }
    qnpu_options_free(want);
}
END_TEST

/* Keys not in the recipe keep their values, set earlier or by another recipe (layering). */
START_TEST(test_keeps_other_values)
{
    qnpu_options *o = fresh(), *want = fresh();
    set(o, "num_threads", "3");
    set(o, "optim.steps", "7");
    set(o, "quant.w_bits", "2");
    ck_assert_int_eq(qnpu_options_load_recipe(o, DATA "good_flat.yaml"), QNPU_OK);
    set(want, "num_threads", "3");
    set(want, "optim.steps", "7");
    set_good_values(want);
    ck_same_options(o, want);

    /* a preset, then a file on top; then the preset again resets only what it names */
    const char *path = qt_tmpfile("layer.yaml");
    const char *text = "version: 1\nquant: {a_bits: 16}\nrotate.r4_layers: []\ncalib.text: ''\n";
    qt_write_file(path, text, strlen(text));
    ck_assert_int_eq(qnpu_options_load_recipe(o, "w4a8"), QNPU_OK);
    ck_assert_int_eq(qnpu_options_load_recipe(o, path), QNPU_OK);
    int64_t v;
    const char *s;
    ck_assert_int_eq(qnpu_options_get_int(o, QNPU_P_QUANT_W_BITS, &v), QNPU_OK);
    ck_assert_int_eq(v, 4);
    ck_assert_int_eq(qnpu_options_get_int(o, QNPU_P_QUANT_A_BITS, &v), QNPU_OK);
    ck_assert_int_eq(v, 16);
    ck_assert_int_eq(qnpu_options_get_int(o, QNPU_P_OPTIM_STEPS, &v), QNPU_OK);
    ck_assert_int_eq(v, 7);
    ck_assert_int_eq(qnpu_options_get_str(o, QNPU_P_ROTATE_R4_LAYERS, &s), QNPU_OK);
    ck_assert_str_eq(s, "");
    ck_assert_int_eq(qnpu_options_get_str(o, QNPU_P_CALIB_TEXT, &s), QNPU_OK);
    ck_assert_str_eq(s, "");
    ck_assert_int_eq(qnpu_options_load_recipe(o, "w4a8"), QNPU_OK);
    ck_assert_int_eq(qnpu_options_get_int(o, QNPU_P_QUANT_A_BITS, &v), QNPU_OK);
    ck_assert_int_eq(v, 8);
    qnpu_options_free(o);
    qnpu_options_free(want);
}
END_TEST

/* ---- presets ---------------------------------------------------------------------------- */

typedef struct kv {
    const char *key, *value;
} kv;

/* What every preset sets (docs/recipes.md). */
static const kv common_values[] = {
    {"calib.seq_len", "256"}, {"calib.num_samples", "16"}, {"calib.first_block", "10"},
    {"observer.linear_in", "minmax"}, {"observer.linear_out", "minmax"}, {"observer.kv", "minmax"},
    {"observer.attention", "minmax"}, {"observer.other", "minmax"}, {"rotate.r4", "off"},
    {"quant.head_w_bits", "8"}, {"quant.kv_bits", "8"}, {"quant.out_bits", "8"},
    {"quant.down_a_bits", "16"}, {"quant.weight_clip", "none"},
};

static const struct preset_case {
    const char *name;
    kv values[10];
} presets[] = {
    /* the learned two-stage pipeline; every other optim.* and init.* value they name is the default */
    {"quantnpu-w4a4-mixed", {{"quant.a_bits", "4"}, {"rotate.r1", "random_hadamard"}, {"optim.train", "true"},
                             {"mixed.mode", "act_4to8"}, {"mixed.p", "0.06"}, {"observer.linear_in", "percentile"},
                             {"observer.linear_out", "mse"}, {"observer.kv", "mse"}, {"init.weight", "mse"},
                             {"optim.weight_round", "gptq"}}},
    {"quantnpu-w4a8", {{"quant.a_bits", "8"}, {"rotate.r1", "random_hadamard"}, {"optim.train", "true"},
                       {"optim.steps", "512"}, {"mixed.mode", "down_8to16"}, {"observer.linear_in", "percentile"},
                       {"observer.linear_out", "mse"}, {"observer.kv", "mse"}, {"init.weight", "mse"},
                       {"optim.weight_round", "gptq"}}},
    {"w4a16", {{"quant.w_bits", "4"}, {"quant.a_bits", "16"}, {"rotate.r1", "identity"},
               {"rotate.r2", "identity"}}},
    {"w4a4-mixed", {{"quant.w_bits", "4"}, {"quant.a_bits", "4"}, {"rotate.r1", "random_hadamard"},
                    {"rotate.r2", "random_hadamard"}, {"rotate.seed", "0"},
                    {"quant.bits_override", "layer0.*.in:8"}}},
    {"w4a8-hadamard", {{"quant.w_bits", "4"}, {"quant.a_bits", "8"}, {"rotate.r1", "random_hadamard"},
                       {"rotate.r2", "random_hadamard"}, {"rotate.seed", "0"}}},
    {"w4a8", {{"quant.w_bits", "4"}, {"quant.a_bits", "8"}, {"rotate.r1", "identity"},
              {"rotate.r2", "identity"}}},
    {"w8a8", {{"quant.w_bits", "8"}, {"quant.a_bits", "8"}, {"rotate.r1", "identity"},
              {"rotate.r2", "identity"}, {"observer.linear_in", "percentile"},
              {"observer.linear_out", "mse"}, {"observer.kv", "mse"}}},
};
#define N_PRESETS ((int)(sizeof presets / sizeof presets[0]))

START_TEST(test_preset_listing)
{
    for (int i = 0; i < N_PRESETS; i++) {
        ck_assert_ptr_nonnull(qnpu_recipe_preset_name(i));
        ck_assert_str_eq(qnpu_recipe_preset_name(i), presets[i].name);
    }
    ck_assert_ptr_null(qnpu_recipe_preset_name(N_PRESETS));
    ck_assert_ptr_null(qnpu_recipe_preset_name(1000));
    ck_assert_ptr_null(qnpu_recipe_preset_name(-1));
    const char *text = NULL;
    ck_assert_int_eq(qnpu_recipe_preset_text("w5a5", &text), QNPU_ERR_INVALID_ARG);
    ck_assert_str_eq(qnpu_last_error(), "unknown recipe preset 'w5a5' (presets: quantnpu-w4a4-mixed, "
                                        "quantnpu-w4a8, w4a16, w4a4-mixed, w4a8-hadamard, w4a8, w8a8)");
    ck_assert_ptr_null(text);
    ck_assert_int_eq(qnpu_recipe_preset_text(NULL, &text), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_recipe_preset_text("w4a8", NULL), QNPU_ERR_INVALID_ARG);
}
END_TEST

/* Each preset (by name, by path, by ./path) holds exactly the documented values, every other
 * parameter at its default; its text is recipes/NAME.yaml byte for byte. */
START_TEST(test_preset_values)
{
    const struct preset_case *pc = &presets[_i];
    qnpu_options *want = fresh();
    for (size_t k = 0; k < sizeof common_values / sizeof common_values[0]; k++)
        set(want, common_values[k].key, common_values[k].value);
    for (int k = 0; k < (int)(sizeof pc->values / sizeof pc->values[0]) && pc->values[k].key; k++)
        set(want, pc->values[k].key, pc->values[k].value);

    char path[128], dot[140];
    snprintf(path, sizeof path, "recipes/%s.yaml", pc->name);
    snprintf(dot, sizeof dot, "./%s", path);
    const char *forms[] = {pc->name, path, dot};
    for (int f = 0; f < 3; f++) {
        qnpu_options *o = fresh();
        ck_assert_msg(qnpu_options_load_recipe(o, forms[f]) == QNPU_OK, "%s: %s", forms[f],
                      qnpu_last_error());
        ck_same_options(o, want);
        qnpu_options_free(o);
    }

    const char *text;
    size_t len;
    ck_assert_int_eq(qnpu_recipe_preset_text(pc->name, &text), QNPU_OK);
    char *file = qt_read_file(path, &len);
    ck_assert_ptr_nonnull(file);
    ck_assert_uint_eq(strlen(text), len);
    ck_assert(memcmp(text, file, len) == 0);
    ck_assert_msg(strstr(text, "\n#") || text[0] == '#', "%s has no comment", pc->name);
    free(file);
    qnpu_options_free(want);
}
END_TEST

/* The presets differ where documented: a quick look at the values that name them. */
START_TEST(test_preset_spot_values)
{
    qnpu_options *o = fresh();
    int64_t v;
    const char *s;
    ck_assert_int_eq(qnpu_options_load_recipe(o, "w4a4-mixed"), QNPU_OK);
    ck_assert_int_eq(qnpu_options_get_int(o, QNPU_P_QUANT_A_BITS, &v), QNPU_OK);
    ck_assert_int_eq(v, 4);
    ck_assert_int_eq(qnpu_options_get_str(o, QNPU_P_QUANT_BITS_OVERRIDE, &s), QNPU_OK);
    ck_assert_str_eq(s, "layer0.*.in:8");
    ck_assert_int_eq(qnpu_options_get_str(o, QNPU_P_ROTATE_R2, &s), QNPU_OK);
    ck_assert_str_eq(s, "random_hadamard");
    ck_assert_int_eq(qnpu_options_load_recipe(o, "w8a8"), QNPU_OK);
    ck_assert_int_eq(qnpu_options_get_int(o, QNPU_P_QUANT_W_BITS, &v), QNPU_OK);
    ck_assert_int_eq(v, 8);
    ck_assert_int_eq(qnpu_options_get_str(o, QNPU_P_ROTATE_R1, &s), QNPU_OK);
    ck_assert_str_eq(s, "identity");
    /* w8a8 does not name bits_override: the value from w4a4-mixed stays */
    ck_assert_int_eq(qnpu_options_get_str(o, QNPU_P_QUANT_BITS_OVERRIDE, &s), QNPU_OK);
    ck_assert_str_eq(s, "layer0.*.in:8");
    qnpu_options_free(o);
}
END_TEST

Suite *qnpu_recipe_suite(void)
{
    Suite *s = suite_create("recipe");
    TCase *bad = tcase_create("bad");
    tcase_add_loop_test(bad, test_bad_recipe, 0, N_BAD);
    tcase_add_test(bad, test_bad_cases_cover_the_data);
    tcase_add_test(bad, test_bad_arguments);
    tcase_add_test(bad, test_written_errors);
    suite_add_tcase(s, bad);
    TCase *good = tcase_create("good");
    tcase_add_test(good, test_flat_nested_flow_agree);
    tcase_add_test(good, test_keeps_other_values);
    suite_add_tcase(s, good);
    TCase *pre = tcase_create("presets");
    tcase_add_test(pre, test_preset_listing);
    tcase_add_loop_test(pre, test_preset_values, 0, N_PRESETS);
    tcase_add_test(pre, test_preset_spot_values);
    suite_add_tcase(s, pre);
    return s;
}
