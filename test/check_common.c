/* check_common.c — statuses, last error, version, parameters and options, half-precision
 * conversions, allocator hook, log callback. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testutil.h"

START_TEST(test_status_strings)
{
    for (int s = 0; s <= QNPU_ERR_INTERNAL; s++) {
        const char *t = qnpu_status_string((qnpu_status)s);
        ck_assert_ptr_nonnull(t);
        ck_assert_str_ne(t, "unknown status");
    }
    ck_assert_str_eq(qnpu_status_string((qnpu_status)999), "unknown status");
    ck_assert_str_eq(qnpu_status_string(QNPU_OK), "success");
}
END_TEST

START_TEST(test_version)
{
    ck_assert_uint_eq(qnpu_version_number(), QNPU_VERSION_NUMBER);
    ck_assert_str_eq(qnpu_version_string(), QNPU_VERSION_STRING);
    char buf[32];
    snprintf(buf, sizeof buf, "%d.%d.%d", QNPU_VERSION_MAJOR, QNPU_VERSION_MINOR, QNPU_VERSION_PATCH);
    ck_assert_str_eq(buf, QNPU_VERSION_STRING);
}
END_TEST

START_TEST(test_last_error)
{
    qnpu_options *o;
    ck_assert_int_eq(qnpu_options_create(&o), QNPU_OK);
    ck_assert_int_eq(qnpu_options_set_int(o, QNPU_P_NUM_THREADS, 5000), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "num_threads"));
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "1024"));
    qnpu_options_free(o);
}
END_TEST

/* Every enum value in the header has a row in params.def, and the reverse. */
static const qnpu_param all_params[] = {
    QNPU_P_NUM_THREADS, QNPU_P_SEED, QNPU_P_EVAL_SEQ_LEN, QNPU_P_MODEL_CHECK_FINITE, QNPU_P_MODEL_MMAP,
    QNPU_P_CALIB_SEQ_LEN, QNPU_P_CALIB_NUM_SAMPLES, QNPU_P_CALIB_FIRST_BLOCK, QNPU_P_INIT_ACT_ROTATED,
    QNPU_P_INIT_ACT_UNROTATED, QNPU_P_INIT_WEIGHT, QNPU_P_INIT_SIGMA_K, QNPU_P_INIT_EMA,
    QNPU_P_INIT_WARMUP_CALLS, QNPU_P_OBSERVER_SYM_DIVISOR, QNPU_P_QUANT_W_BITS, QNPU_P_QUANT_A_BITS,
    QNPU_P_QUANT_DOWN_A_BITS, QNPU_P_QUANT_KV_BITS, QNPU_P_QUANT_HEAD_W_BITS, QNPU_P_ROTATE_R1,
    QNPU_P_ROTATE_R2, QNPU_P_ROTATE_R4, QNPU_P_ROTATE_HADAMARD_FALLBACK, QNPU_P_ROTATE_MAX_DENSE_BLOCK,
    QNPU_P_ROTATE_SEED, QNPU_P_OPTIM_STEPS, QNPU_P_OPTIM_BATCH, QNPU_P_OPTIM_LR,
    QNPU_P_OPTIM_QPARAM_LR_RATIO, QNPU_P_OPTIM_SCHEDULE, QNPU_P_OPTIM_CLIP_NORM,
    QNPU_P_OPTIM_QPARAM_GRAD_CLAMP, QNPU_P_OPTIM_CAYLEY_ITERS, QNPU_P_OPTIM_QR_EVERY,
    QNPU_P_OPTIM_TRAIN_ROTATION, QNPU_P_OPTIM_TRAIN_QPARAMS, QNPU_P_OPTIM_SHUFFLE, QNPU_P_MIXED_MODE,
    QNPU_P_MIXED_P, QNPU_P_MIXED_NUM_SAMPLES, QNPU_P_ENGINE_CTX_SIZE, QNPU_P_CALIB_TEXT,
    QNPU_P_OBSERVER_LINEAR_IN, QNPU_P_OBSERVER_LINEAR_OUT, QNPU_P_OBSERVER_KV, QNPU_P_OBSERVER_ATTENTION,
    QNPU_P_OBSERVER_OTHER, QNPU_P_OBSERVER_PERCENTILE, QNPU_P_OBSERVER_SIGMA_K, QNPU_P_OBSERVER_BINS,
    QNPU_P_QUANT_OUT_BITS, QNPU_P_QUANT_WEIGHT_CLIP, QNPU_P_QUANT_BITS_OVERRIDE, QNPU_P_ROTATE_R4_LAYERS,
    QNPU_P_ENGINE_KERNELS, QNPU_P_OPTIM_MICRO_BATCH, QNPU_P_OPTIM_WEIGHT_ROUND, QNPU_P_OPTIM_GPTQ_DAMP,
    QNPU_P_OPTIM_LOSS, QNPU_P_OPTIM_NAIVE_JOINT, QNPU_P_OPTIM_TRAIN, QNPU_P_EXPORT_ENCODINGS_VERSION,
    QNPU_P_EXPORT_ONNX_FLAVOR, QNPU_P_EXPORT_SEQ_LEN, QNPU_P_EXPORT_QNN_LINEAR_AS, QNPU_P_EXPORT_PAST_LEN,
};

START_TEST(test_param_table)
{
    int n = (int)(sizeof all_params / sizeof all_params[0]);
    ck_assert_int_eq(qnpu_param_count(), n);
    for (int i = 0; i < n; i++) {
        const char *name;
        int type;
        double mn, mx;
        ck_assert_int_eq(qnpu_param_info(all_params[i], &name, &type, &mn, &mx), QNPU_OK);
        qnpu_param back;
        ck_assert_int_eq(qnpu_param_from_name(name, &back), QNPU_OK);
        ck_assert_int_eq(back, all_params[i]);
        ck_assert_ptr_nonnull(qnpu_param_doc(all_params[i]));
        ck_assert_int_eq(type == QNPU_PTYPE_CHOICE, qnpu_param_choices(all_params[i]) != NULL);
        /* the default is valid */
        if (type == QNPU_PTYPE_STRING) {
            const char *w;
            ck_assert_int_eq(qnpu_options_get_str(NULL, all_params[i], &w), QNPU_OK);
            ck_assert_str_eq(w, "");
        } else if (type == QNPU_PTYPE_CHOICE) {
            const char *w;
            ck_assert_int_eq(qnpu_options_get_str(NULL, all_params[i], &w), QNPU_OK);
            ck_assert_ptr_nonnull(strstr(qnpu_param_choices(all_params[i]), w));
        } else {
            double v;
            ck_assert_int_eq(qnpu_options_get_float(NULL, all_params[i], &v), QNPU_OK);
            ck_assert(v >= mn && v <= mx);
        }
        qnpu_param at;
        ck_assert_int_eq(qnpu_param_at(i, &at), QNPU_OK);
        int found = 0;
        for (int j = 0; j < n; j++)
            found += all_params[j] == at;
        ck_assert_int_eq(found, 1);
    }
    qnpu_param p;
    ck_assert_int_eq(qnpu_param_from_name("no.such.key", &p), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "no.such.key"));
    ck_assert_int_eq(qnpu_param_info((qnpu_param)9999, NULL, NULL, NULL, NULL), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_param_at(n, &p), QNPU_ERR_INVALID_ARG);
}
END_TEST

START_TEST(test_options)
{
    qnpu_options *o, *c;
    int64_t i;
    double f;
    const char *w;
    ck_assert_int_eq(qnpu_options_create(&o), QNPU_OK);
    ck_assert_int_eq(qnpu_options_set_int(o, QNPU_P_CALIB_NUM_SAMPLES, 32), QNPU_OK);
    ck_assert_int_eq(qnpu_options_get_int(o, QNPU_P_CALIB_NUM_SAMPLES, &i), QNPU_OK);
    ck_assert_int_eq(i, 32);
    ck_assert_int_eq(qnpu_options_set_float(o, QNPU_P_OPTIM_LR, 0.5), QNPU_OK);
    ck_assert_int_eq(qnpu_options_get_float(o, QNPU_P_OPTIM_LR, &f), QNPU_OK);
    ck_assert(f == 0.5);
    ck_assert_int_eq(qnpu_options_set_float(o, QNPU_P_QUANT_W_BITS, 4.5), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_options_set_str(o, QNPU_P_ROTATE_R1, "identity"), QNPU_OK);
    ck_assert_int_eq(qnpu_options_get_str(o, QNPU_P_ROTATE_R1, &w), QNPU_OK);
    ck_assert_str_eq(w, "identity");
    ck_assert_int_eq(qnpu_options_set_str(o, QNPU_P_ROTATE_R1, "random"), QNPU_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(qnpu_last_error(), "rotate.r1"));
    ck_assert_int_eq(qnpu_options_set_int(o, QNPU_P_ROTATE_R1, 1), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_options_set_str(o, QNPU_P_OPTIM_SHUFFLE, "true"), QNPU_OK);
    ck_assert_int_eq(qnpu_options_set_str(o, QNPU_P_OPTIM_SHUFFLE, "yes"), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_options_set_str(o, QNPU_P_INIT_SIGMA_K, "2.5"), QNPU_OK);
    ck_assert_int_eq(qnpu_options_set_str(o, QNPU_P_INIT_SIGMA_K, "2.5x"), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_options_set_float(o, QNPU_P_MIXED_P, NAN), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_options_set_str(o, QNPU_P_CALIB_TEXT, "calib.txt"), QNPU_OK);
    ck_assert_int_eq(qnpu_options_set_int(o, QNPU_P_CALIB_TEXT, 1), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_options_clone(o, &c), QNPU_OK);
    ck_assert_int_eq(qnpu_options_get_str(c, QNPU_P_CALIB_TEXT, &w), QNPU_OK);
    ck_assert_str_eq(w, "calib.txt");
    ck_assert_int_eq(qnpu_options_get_float(c, QNPU_P_INIT_SIGMA_K, &f), QNPU_OK);
    ck_assert(f == 2.5);
    qnpu_options_free(c);
    qnpu_options_free(o);
    qnpu_options_free(NULL);
}
END_TEST

/* f16 -> f32 -> f16 is the identity on every non-NaN bit pattern; narrowing matches the
 * compiler's _Float16 conversion (an independent implementation) where available. */
START_TEST(test_half)
{
    for (uint32_t h = 0; h < 65536; h++) {
        float f = qnpu__f16_to_f32((uint16_t)h);
        if (isnan(f))
            continue;
        ck_assert_uint_eq(qnpu__f32_to_f16(f), h);
        ck_assert_uint_eq(qnpu__f32_to_bf16(qnpu__bf16_to_f32((uint16_t)h)), h);
    }
#ifdef __FLT16_MAX__
    uint64_t st = 12345;
    for (int i = 0; i < 200000; i++) {
        st = st * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t bits = (uint32_t)(st >> 32);
        float f;
        memcpy(&f, &bits, 4);
        if (isnan(f))
            continue;
        _Float16 ref = (_Float16)f;
        uint16_t rb;
        memcpy(&rb, &ref, 2);
        ck_assert_msg(qnpu__f32_to_f16(f) == rb, "f32 %a -> f16 %04x, expected %04x", (double)f,
                      qnpu__f32_to_f16(f), rb);
    }
#endif
    ck_assert(qnpu__bf16_to_f32(0x3f80) == 1.0f);
    ck_assert_uint_eq(qnpu__f32_to_bf16(1.00390625f), 0x3f80); /* tie to even */
}
END_TEST

static size_t n_alloc, n_free;
static void *count_alloc(void *user, size_t size, size_t align)
{
    (void)user;
    n_alloc++;
    return aligned_alloc(align, (size + align - 1) / align * align);
}
static void count_free(void *user, void *p)
{
    (void)user;
    n_free++;
    free(p);
}

START_TEST(test_allocator)
{
    ck_assert_int_eq(qnpu_set_allocator(count_alloc, NULL, NULL), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_set_allocator(count_alloc, count_free, NULL), QNPU_OK);
    qnpu_options *o;
    ck_assert_int_eq(qnpu_options_create(&o), QNPU_OK);
    ck_assert_uint_eq(n_alloc, 1);
    ck_assert_int_eq(qnpu_set_allocator(NULL, NULL, NULL), QNPU_ERR_STATE);
    qnpu_options_free(o);
    ck_assert_uint_eq(n_free, 1);
    ck_assert_int_eq(qnpu_set_allocator(NULL, NULL, NULL), QNPU_OK);
}
END_TEST

static char logged[1024];
static int log_calls;
static void capture_log(void *user, int level, const char *msg)
{
    (void)user;
    (void)level;
    log_calls++;
    snprintf(logged, sizeof logged, "%s", msg);
}

START_TEST(test_log)
{
    ck_assert_int_eq(qnpu_set_log_level(9), QNPU_ERR_INVALID_ARG);
    ck_assert_int_eq(qnpu_set_log_callback(capture_log, NULL), QNPU_OK);
    ck_assert_int_eq(qnpu_set_log_level(QNPU_LOG_DEBUG), QNPU_OK);
    qnpu_param p;
    qnpu_param_from_name("bogus.name", &p);
    ck_assert_int_ge(log_calls, 1);
    ck_assert_ptr_nonnull(strstr(logged, "bogus.name"));
    ck_assert_ptr_null(strchr(logged, '\n'));
    ck_assert_int_eq(qnpu_set_log_level(QNPU_LOG_WARN), QNPU_OK);
    ck_assert_int_eq(qnpu_set_log_callback(NULL, NULL), QNPU_OK);
}
END_TEST

Suite *qnpu_common_suite(void)
{
    Suite *s = suite_create("common");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_status_strings);
    tcase_add_test(tc, test_version);
    tcase_add_test(tc, test_last_error);
    tcase_add_test(tc, test_param_table);
    tcase_add_test(tc, test_options);
    tcase_add_test(tc, test_half);
    tcase_add_test(tc, test_allocator);
    tcase_add_test(tc, test_log);
    suite_add_tcase(s, tc);
    return s;
}
