/* io_errors.c — I/O errors while exporting (issue 7, docs/reliability.md).
 *
 * For the .qnpu save, every exporter format and the report's JSON and SVG, a write that fails part way must return
 * QNPU_ERR_IO with a message naming the path and the error, leave a previous file at the path
 * byte for byte, and leave no temporary file beside it. The failures:
 *   - file size limit: RLIMIT_FSIZE of 4 KiB (SIGXFSZ ignored), so write() fails with EFBIG part
 *     way through (works without privileges);
 *   - a full file system: with a directory argument (test/reliab/io_errors.sh mounts a 64 KiB
 *     tmpfs there when it may), the directory is filled up first and every write gets ENOSPC;
 *   - the path is a directory (the rename fails, EISDIR) and the directory does not exist (the
 *     temporary file cannot be created, ENOENT).
 * Usage: io_errors SHARED_DIR [FULL_DIR] */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quantnpu.h"

static int failures, checks;
#define FAILF(...) do { fprintf(stderr, "io_errors: " __VA_ARGS__); fputc('\n', stderr); failures++; } while (0)

static const char PREV[] = "the previous file: a failed export must leave it as it is\n";

static const struct { const char *name; int fmt; } FORMATS[] = {
    {"qnpu_qmodel_save", -1},
    {"exporter qnpu", QNPU_EXPORT_QNPU},
    {"exporter encodings", QNPU_EXPORT_ENCODINGS},
    {"exporter onnx-qdq", QNPU_EXPORT_ONNX_QDQ},
    {"exporter onnx-float", QNPU_EXPORT_ONNX_FLOAT},
    {"qnpu_report_write_json", -2},
    {"qnpu_report_write_svg", -3},
};

static qnpu_report *report; /* of the model below, for the report writers */
#define NFMT (sizeof FORMATS / sizeof FORMATS[0])

static qnpu_status write_fmt(const qnpu_qmodel *q, int fmt, const char *path)
{
    if (fmt == -1)
        return qnpu_qmodel_save(q, path);
    if (fmt == -2)
        return qnpu_report_write_json(report, path);
    if (fmt == -3)
        return qnpu_report_write_svg(report, path);
    qnpu_options *o = NULL;
    qnpu_exporter *e = NULL;
    qnpu_status st = qnpu_options_create(&o);
    if (st == QNPU_OK)
        st = qnpu_options_set_int(o, QNPU_P_EXPORT_SEQ_LEN, 8);
    if (st == QNPU_OK)
        st = qnpu_exporter_create(q, o, &e);
    if (st == QNPU_OK)
        st = qnpu_exporter_write(e, (qnpu_export_format)fmt, path);
    qnpu_exporter_free(e);
    qnpu_options_free(o);
    return st;
}

/* Entries of `dir` whose names start with `base` other than `base` itself. */
static int temporaries(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    size_t bl = strlen(base);
    while ((e = readdir(d)) != NULL)
        if (!strncmp(e->d_name, base, bl) && strcmp(e->d_name, base)) {
            fprintf(stderr, "io_errors: left behind: %s/%s\n", dir, e->d_name);
            n++;
        }
    closedir(d);
    return n;
}

static int write_prev(const char *path)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t n = fwrite(PREV, 1, sizeof PREV - 1, f);
    return fclose(f) == 0 && n == sizeof PREV - 1 ? 0 : -1;
}

static int prev_intact(const char *path)
{
    char buf[sizeof PREV + 8];
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return n == sizeof PREV - 1 && memcmp(buf, PREV, n) == 0;
}

/* One failing write: status IO, the message names the path and contains `err`, the previous
 * file (when `prev`) is intact, nothing else was left in `dir`. */
static void expect_io(const qnpu_qmodel *q, size_t k, const char *dir, const char *path, int prev,
                      const char *err, const char *what)
{
    checks++;
    qnpu_status st = write_fmt(q, FORMATS[k].fmt, path);
    const char *msg = qnpu_last_error();
    if (st != QNPU_ERR_IO) {
        FAILF("%s, %s: status %d (%s), expected QNPU_ERR_IO: %s", FORMATS[k].name, what, (int)st,
              qnpu_status_string(st), msg);
        return;
    }
    if (!strstr(msg, path) || (err && !strstr(msg, err)))
        FAILF("%s, %s: the message does not name the path and '%s': %s", FORMATS[k].name, what, err ? err : "",
              msg);
    if (prev && !prev_intact(path))
        FAILF("%s, %s: the previous file was changed", FORMATS[k].name, what);
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    if (temporaries(dir, base))
        FAILF("%s, %s: a temporary file was left", FORMATS[k].name, what);
}

static qnpu_qmodel *make_qmodel(const char *shared)
{
    char bin[600], txt[600];
    snprintf(bin, sizeof bin, "%s/models/stories260K.bin", shared);
    snprintf(txt, sizeof txt, "%s/data/tinystories_train_head.txt", shared);
    qnpu_model *m = NULL;
    qnpu_tokenizer *t = NULL;
    qnpu_options *o = NULL;
    qnpu_calibrator *c = NULL;
    qnpu_qmodel *q = NULL;
    FILE *f = fopen(txt, "rb");
    char text[4000];
    size_t len = f ? fread(text, 1, sizeof text, f) : 0;
    if (f)
        fclose(f);
    if (qnpu_model_load(bin, NULL, &m) != QNPU_OK || qnpu_tokenizer_from_model(m, &t) != QNPU_OK ||
        qnpu_options_create(&o) != QNPU_OK || qnpu_options_set_int(o, QNPU_P_NUM_THREADS, 1) != QNPU_OK ||
        qnpu_options_set_int(o, QNPU_P_CALIB_SEQ_LEN, 32) != QNPU_OK ||
        qnpu_options_set_int(o, QNPU_P_CALIB_NUM_SAMPLES, 1) != QNPU_OK ||
        qnpu_options_set_int(o, QNPU_P_CALIB_FIRST_BLOCK, 0) != QNPU_OK ||
        qnpu_calibrator_create(m, t, o, &c) != QNPU_OK || qnpu_calibrator_run(c, text, len, &q) != QNPU_OK)
        fprintf(stderr, "io_errors: cannot make the model: %s\n", qnpu_last_error());
    int32_t ids[16];
    size_t n = 0;
    if (q && (qnpu_tokenizer_encode(t, text, 200, 1, ids, 16, &n) != QNPU_ERR_BUFFER_TOO_SMALL ||
              qnpu_report_create(m, q, o, ids, 16, 8, &report) != QNPU_OK)) {
        fprintf(stderr, "io_errors: cannot make the report: %s\n", qnpu_last_error());
        qnpu_qmodel_free(q);
        q = NULL;
    }
    qnpu_calibrator_free(c);
    qnpu_options_free(o);
    qnpu_tokenizer_free(t);
    qnpu_model_free(m);
    return q;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: io_errors SHARED_DIR [FULL_DIR]\n");
        return 2;
    }
    qnpu_qmodel *q = make_qmodel(argv[1]);
    if (!q)
        return 2;
    char dir[256], path[600];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/qnpu-io-XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    snprintf(path, sizeof path, "%s/out.bin", dir);

    /* 0. every format succeeds here (else the failures below would prove nothing) */
    for (size_t k = 0; k < NFMT; k++) {
        if (write_fmt(q, FORMATS[k].fmt, path) != QNPU_OK)
            FAILF("%s: cannot write at all: %s", FORMATS[k].name, qnpu_last_error());
        struct stat st;
        if (stat(path, &st) != 0 || st.st_size <= 4096)
            FAILF("%s: the output is %lld bytes, too small for the 4 KiB limit", FORMATS[k].name,
                  (long long)st.st_size);
        unlink(path);
    }

    /* 1. RLIMIT_FSIZE: write() fails with EFBIG past 4 KiB */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 4096;
    for (size_t k = 0; k < NFMT; k++) {
        if (write_prev(path) != 0) {
            FAILF("cannot write %s", path);
            break;
        }
        if (setrlimit(RLIMIT_FSIZE, &lim) != 0) {
            FAILF("setrlimit: %s", strerror(errno));
            break;
        }
        expect_io(q, k, dir, path, 1, strerror(EFBIG), "file size limit, over a previous file");
        unlink(path);
        expect_io(q, k, dir, path, 0, strerror(EFBIG), "file size limit, new file");
        setrlimit(RLIMIT_FSIZE, &old);
        if (access(path, F_OK) == 0)
            FAILF("%s: a failed new file was left at %s", FORMATS[k].name, path);
    }
    printf("io_errors: file size limit (EFBIG): %d checks\n", checks);

    /* 2. the path is a directory: the rename fails; the directory does not exist */
    char sub[600], missing[700];
    snprintf(sub, sizeof sub, "%s/adir", dir);
    snprintf(missing, sizeof missing, "%s/no/such/dir/out.bin", dir);
    mkdir(sub, 0755);
    for (size_t k = 0; k < NFMT; k++) {
        expect_io(q, k, dir, sub, 0, NULL, "the path is a directory");
        expect_io(q, k, dir, missing, 0, strerror(ENOENT), "no such directory");
    }
    rmdir(sub);
    printf("io_errors: rename onto a directory, missing directory: %d checks\n", checks);

    /* 3. a full file system */
    if (argc > 2) {
        const char *full = argv[2];
        char fpath[600], filler[600];
        snprintf(fpath, sizeof fpath, "%s/out.bin", full);
        snprintf(filler, sizeof filler, "%s/filler", full);
        int before = checks;
        if (write_prev(fpath) != 0) {
            FAILF("cannot write %s", fpath);
        } else {
            int fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            char block[4096];
            memset(block, 0x5a, sizeof block);
            while (fd >= 0 && write(fd, block, sizeof block) > 0) {
            }
            while (fd >= 0 && write(fd, block, 1) > 0) {
            }
            if (fd >= 0)
                close(fd);
            for (size_t k = 0; k < NFMT; k++)
                expect_io(q, k, full, fpath, 1, strerror(ENOSPC), "a full file system");
            unlink(filler);
            /* with room again, the export succeeds over the previous file */
            if (write_fmt(q, FORMATS[0].fmt, fpath) == QNPU_OK && prev_intact(fpath))
                FAILF("a successful save left the previous file");
            unlink(fpath);
        }
        printf("io_errors: full file system (ENOSPC, %s): %d checks\n", full, checks - before);
    } else {
        printf("io_errors: full file system: skipped (no small file system given)\n");
    }

    unlink(path);
    rmdir(dir);
    qnpu_qmodel_free(q);
    qnpu_report_free(report);
    printf("io_errors: %s (%d checks)\n", failures ? "FAILED" : "all passed", checks);
    return failures ? 1 : 0;
}
