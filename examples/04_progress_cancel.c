/* 04_progress_cancel.c — follow a long call with a progress bar, and cancel it.
 *
 *   cc 04_progress_cancel.c $(pkg-config --cflags --libs libquantnpu) -o 04_progress_cancel
 *   ./04_progress_cancel ../shared out.qnpu
 *
 * The contract (quantnpu.h, qnpu_progress_fn): the library calls the callback on the thread that
 * made the API call with a short stage name and `done` of `total` units; a non-zero return asks
 * it to stop, and the running call returns QNPU_ERR_CANCELLED at its next safe point, with no
 * result. Here the optimizer's stage-1 training ("train", one unit per step) is stopped at step
 * 10 of 40; the program checks that status, that no quantized model came back, and that nothing
 * was written. Exit 77 when SHARED is missing. */
#define _POSIX_C_SOURCE 200809L /* isatty, unlink */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <quantnpu.h>

struct progress {
    const qnpu_optimizer *opt; /* to read the loss of the step just done */
    int64_t cancel_at;         /* return non-zero once this many units are done */
    int64_t calls, last_done;
    int tty;                   /* redraw one line on a terminal, one line per call in a log */
};

static int on_progress(void *user, const char *stage, int64_t done, int64_t total)
{
    struct progress *p = user;
    p->calls++;
    p->last_done = done;
    int width = 30, filled = (int)(width * done / (total > 0 ? total : 1));
    printf("%s%-6s [%.*s%*s] %3lld/%lld  loss %.4f", p->tty ? "\r" : "", stage, filled,
           "##############################", width - filled, "", (long long)done, (long long)total,
           qnpu_optimizer_last_loss(p->opt));
    printf(p->tty ? "" : "\n");
    fflush(stdout);
    return done >= p->cancel_at; /* non-zero: please stop */
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s SHARED OUT.qnpu\n", argv[0]);
        return 2;
    }
    char model_path[4096], train_path[4096];
    snprintf(model_path, sizeof model_path, "%s/models/stories260K.bin", argv[1]);
    snprintf(train_path, sizeof train_path, "%s/data/tinystories_train_head.txt", argv[1]);
    FILE *f = fopen(train_path, "rb");
    if (!f || access(model_path, R_OK) != 0) {
        printf("skipped: %s or %s not found\n", model_path, train_path);
        if (f)
            fclose(f);
        return 77;
    }
    static char text[32 * 1024]; /* the first 32 KB of the training text are plenty */
    size_t len = fread(text, 1, sizeof text, f);
    fclose(f);
    unlink(argv[2]); /* start clean: OUT must not exist after a cancelled run */

    int rc = 1;
    qnpu_options *opts = NULL;
    qnpu_model *model = NULL;
    qnpu_tokenizer *tok = NULL;
    qnpu_optimizer *opt = NULL;
    qnpu_qmodel *q = NULL;
    /* QNPU_OK is 0, so a chain of || stops at the first failing call. */
    if (qnpu_options_create(&opts) != QNPU_OK || qnpu_options_load_recipe(opts, "quantnpu-w4a8") ||
        qnpu_options_set_int(opts, QNPU_P_NUM_THREADS, 1) ||
        qnpu_options_set_int(opts, QNPU_P_OPTIM_STEPS, 40) ||
        qnpu_options_set_int(opts, QNPU_P_OPTIM_BATCH, 1) ||
        qnpu_options_set_int(opts, QNPU_P_CALIB_SEQ_LEN, 64) ||
        qnpu_options_set_int(opts, QNPU_P_CALIB_NUM_SAMPLES, 2) ||
        qnpu_options_set_int(opts, QNPU_P_CALIB_FIRST_BLOCK, 0) ||
        qnpu_options_set_int(opts, QNPU_P_INIT_WARMUP_CALLS, 16) ||
        qnpu_model_load(model_path, opts, &model) || qnpu_tokenizer_from_model(model, &tok) ||
        qnpu_optimizer_create(model, tok, opts, &opt)) {
        fprintf(stderr, "setup failed: %s\n", qnpu_last_error());
        goto out;
    }

    struct progress p = {opt, 10, 0, 0, isatty(STDOUT_FILENO)};
    qnpu_optimizer_set_progress(opt, on_progress, &p);
    qnpu_status st = qnpu_optimizer_run(opt, text, len, &q);
    printf("%s", p.tty ? "\n" : "");
    printf("run returned %s (%s)\n", qnpu_status_string(st), qnpu_last_error());

    /* What the contract promises, checked: */
    if (st != QNPU_ERR_CANCELLED)
        fprintf(stderr, "FAIL: expected QNPU_ERR_CANCELLED\n");
    else if (q != NULL)
        fprintf(stderr, "FAIL: a cancelled run returned a model\n");
    else if (p.calls != p.cancel_at || p.last_done != p.cancel_at)
        fprintf(stderr, "FAIL: the callback ran %lld times after asking to stop at %lld\n",
                (long long)p.calls, (long long)p.cancel_at);
    else if (isnan(qnpu_optimizer_last_loss(opt)))
        fprintf(stderr, "FAIL: the steps done before the cancel have no loss\n");
    else if (access(argv[2], F_OK) == 0)
        fprintf(stderr, "FAIL: %s exists\n", argv[2]);
    else
        rc = 0;
    /* Only a successful run gives a model to save, so a cancel can never leave a half file;
     * qnpu_qmodel_save itself writes a temporary file and renames it, so neither can a crash. */
    if (st == QNPU_OK && qnpu_qmodel_save(q, argv[2]) != QNPU_OK)
        rc = 1;
    if (rc == 0)
        printf("cancelled after %lld of 40 steps; no model, no %s\n", (long long)p.last_done, argv[2]);
out:
    qnpu_qmodel_free(q);
    qnpu_optimizer_free(opt);
    qnpu_tokenizer_free(tok);
    qnpu_model_free(model);
    qnpu_options_free(opts);
    return rc;
}
