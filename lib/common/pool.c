/* pool.c — a fixed set of worker threads that run one task at a time (qnpu__pool_run), for
 * kernels split by the caller (rows of a GEMM, heads of attention). The calling thread is
 * worker 0, so a pool of n threads starts n − 1. Work is assigned statically by index, so
 * results do not depend on scheduling.
 *
 * A decode step runs a few hundred short tasks, so waking sleeping threads through the kernel for
 * each would dominate: workers and the caller first spin on atomic counters for a short while
 * (SPIN polls, about 20–50 µs) and only then sleep on the condition variables. */
#include <pthread.h>
#include <stdatomic.h>

#include "../internal.h"

#define SPIN 20000

struct qnpu__pool {
    int n;
    pthread_t *tid;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    _Atomic uint64_t gen;    /* incremented for every task (written under mu) */
    _Atomic int pending;     /* workers still running the current task */
    _Atomic int quit;
    qnpu__task_fn fn;
    void *arg;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

typedef struct { qnpu__pool *p; int ith; } worker_arg;
static worker_arg *worker_args_of(qnpu__pool *p) { return (worker_arg *)(p->tid + p->n); }

static void *worker(void *v)
{
    worker_arg *wa = v;
    qnpu__pool *p = wa->p;
    uint64_t seen = 0;
    for (;;) {
        for (int i = 0; i < SPIN && atomic_load(&p->gen) == seen && !atomic_load(&p->quit); i++)
            cpu_relax();
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit))
            pthread_cond_wait(&p->start, &p->mu);
        if (atomic_load(&p->quit)) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        seen = atomic_load(&p->gen);
        qnpu__task_fn fn = p->fn;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);
        fn(arg, wa->ith, p->n);
        if (atomic_fetch_sub(&p->pending, 1) == 1) {
            pthread_mutex_lock(&p->mu); /* the caller may be asleep on `done` */
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

qnpu_status qnpu__pool_create(int n, qnpu__pool **out)
{
    *out = NULL;
    if (n < 1)
        n = 1;
    qnpu__pool *p = qnpu__calloc(1, sizeof *p);
    if (!p)
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "thread pool: out of memory");
    p->n = n;
    /* one block: thread ids, then the workers' arguments */
    p->tid = qnpu__calloc((size_t)n, sizeof(pthread_t) + sizeof(worker_arg));
    if (!p->tid) {
        qnpu__free(p);
        return qnpu__fail(QNPU_ERR_NO_MEMORY, "thread pool: out of memory");
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 1; i < n; i++) {
        worker_arg *wa = &worker_args_of(p)[i];
        wa->p = p;
        wa->ith = i;
        if (pthread_create(&p->tid[i], NULL, worker, wa) != 0) {
            p->n = i; /* the workers started so far are joined by qnpu__pool_free */
            qnpu__pool_free(p);
            return qnpu__fail(QNPU_ERR_NO_MEMORY, "thread pool: cannot start thread %d of %d", i, n);
        }
    }
    *out = p;
    return QNPU_OK;
}

int qnpu__pool_size(const qnpu__pool *p)
{
    return p ? p->n : 1;
}

void qnpu__pool_run(qnpu__pool *p, qnpu__task_fn fn, void *arg)
{
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->pending, p->n - 1);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    for (int i = 0; i < SPIN && atomic_load(&p->pending) > 0; i++)
        cpu_relax();
    if (atomic_load(&p->pending) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

void qnpu__pool_free(qnpu__pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->tid[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    qnpu__free(p->tid);
    qnpu__free(p);
}
