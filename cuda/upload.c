/* Large host-to-device copies (a stage's weights at their first use)
 * through pinned staging.
 *
 * cudaMemcpyAsync from pageable memory drains the stream, then copies
 * through the driver's own staging with one host thread; our weights are
 * mmap'ed file pages, each faulted in at its first touch. Here a few host
 * threads populate the pages (MADV_POPULATE_READ) and copy them into one of
 * two pinned buffers while the other buffer's DMA runs, and the stream is
 * not drained: a weight's upload overlaps the products queued before it.
 * When this returns the host data has been read, so it may go at once. */
#include "core.h"

#include "error.h"

#include <cuda_runtime.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22   /* Linux 5.14; older kernels say EINVAL, and the copy faults the pages in */
#endif

#define UP_CHUNK ((size_t)16 << 20)   /* bytes per pinned buffer */
#define UP_MIN ((size_t)4 << 20)      /* below this, the plain copy */
#define UP_MAXT 8                     /* host threads copying, the caller included */

static void *buf[2];
static cudaEvent_t done_ev[2];
static int ready = -1;   /* -1 not tried, 0 unavailable (plain copies), 1 set up */
static pthread_mutex_t one = PTHREAD_MUTEX_INITIALIZER;   /* one staged upload at a time */

/* the worker pool: each job is one chunk, cut into nth + 1 page-aligned slices */
static pthread_t th[UP_MAXT];
static int nth;   /* workers, not counting the caller */
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t go = PTHREAD_COND_INITIALIZER, fin = PTHREAD_COND_INITIALIZER;
static unsigned long gen;
static int pending, quit;
static unsigned char *j_dst;
static const unsigned char *j_src;
static size_t j_n;

static void slice(int i)
{
    size_t page = 4096, per = (j_n / (size_t)(nth + 1) + page - 1) / page * page;
    size_t a = (size_t)i * per;
    if (a >= j_n) return;
    size_t n = j_n - a < per ? j_n - a : per;
    uintptr_t lo = (uintptr_t)(j_src + a) & ~(uintptr_t)(page - 1);
    (void)madvise((void *)lo, (uintptr_t)(j_src + a + n) - lo, MADV_POPULATE_READ);
    memcpy(j_dst + a, j_src + a, n);
}

static void *worker(void *arg)
{
    int i = (int)(intptr_t)arg;
    unsigned long seen = 0;
    pthread_mutex_lock(&m);
    for (;;) {
        while (!quit && gen == seen) pthread_cond_wait(&go, &m);
        if (quit) break;
        seen = gen;
        pthread_mutex_unlock(&m);
        slice(i);
        pthread_mutex_lock(&m);
        if (--pending == 0) pthread_cond_signal(&fin);
    }
    pthread_mutex_unlock(&m);
    return NULL;
}

static void copy_par(void *dst, const void *src, size_t n)
{
    pthread_mutex_lock(&m);
    j_dst = dst, j_src = src, j_n = n;
    pending = nth;
    gen++;
    pthread_cond_broadcast(&go);
    pthread_mutex_unlock(&m);
    slice(0);
    pthread_mutex_lock(&m);
    while (pending) pthread_cond_wait(&fin, &m);
    pthread_mutex_unlock(&m);
}

static void setup(void)
{
    ready = 0;
    for (int b = 0; b < 2; b++)
        if (cudaHostAlloc(&buf[b], UP_CHUNK, cudaHostAllocDefault) != cudaSuccess ||
            cudaEventCreateWithFlags(&done_ev[b], cudaEventDisableTiming) != cudaSuccess) {
            (void)cudaGetLastError();
            cs_cuda_upload_shutdown();
            ready = 0;
            return;
        }
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int want = cpus > UP_MAXT ? UP_MAXT : cpus > 1 ? (int)cpus : 1;
    /* workers take no signals: the caller's handlers run on the caller */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    quit = 0;
    for (nth = 0; nth < want - 1; nth++)
        if (pthread_create(&th[nth], NULL, worker, (void *)(intptr_t)(nth + 1))) break;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    ready = 1;
}

int cs_cuda_upload_staged(void *dst, const void *host, size_t bytes)
{
    cudaStream_t st = (cudaStream_t)cs_cuda_stream();
    pthread_mutex_lock(&one);
    if (ready < 0 && bytes >= UP_MIN) setup();
    if (ready != 1 || bytes < UP_MIN) {
        pthread_mutex_unlock(&one);
        cudaError_t e = bytes ? cudaMemcpyAsync(dst, host, bytes, cudaMemcpyHostToDevice, st) : cudaSuccess;
        return e == cudaSuccess ? 0 : cs_cuda_fail(e, "an upload");
    }
    cudaError_t e = cudaSuccess;
    for (size_t o = 0, c = 0; o < bytes && e == cudaSuccess; o += UP_CHUNK, c++) {
        int b = (int)(c & 1);
        size_t n = bytes - o < UP_CHUNK ? bytes - o : UP_CHUNK;
        e = cudaEventSynchronize(done_ev[b]);   /* this buffer's last DMA has read it */
        if (e != cudaSuccess) break;
        copy_par(buf[b], (const unsigned char *)host + o, n);
        e = cudaMemcpyAsync((unsigned char *)dst + o, buf[b], n, cudaMemcpyHostToDevice, st);
        if (e == cudaSuccess) e = cudaEventRecord(done_ev[b], st);
    }
    pthread_mutex_unlock(&one);
    return e == cudaSuccess ? 0 : cs_cuda_fail(e, "an upload");
}

void cs_cuda_upload_shutdown(void)
{
    pthread_mutex_lock(&m);
    quit = 1;
    pthread_cond_broadcast(&go);
    pthread_mutex_unlock(&m);
    for (int i = 0; i < nth; i++) pthread_join(th[i], NULL);
    nth = 0;
    for (int b = 0; b < 2; b++) {
        if (done_ev[b]) cudaEventSynchronize(done_ev[b]), cudaEventDestroy(done_ev[b]);
        if (buf[b]) cudaFreeHost(buf[b]);
        done_ev[b] = NULL, buf[b] = NULL;
    }
    (void)cudaGetLastError();
    ready = -1;
}
