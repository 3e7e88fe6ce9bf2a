/* A tiny work-claiming thread pool for the memory-bound decode kernels.
 *
 * Why not OpenMP here: a parallel region ends in a barrier, so on a loaded machine (more runnable
 * threads than cores) the caller waits for a worker that has not even been scheduled yet --
 * measured 20 ms for a 1.6 ms product. Here the caller and the workers claim chunks from one
 * atomic counter; the caller runs chunks itself and waits only for chunks that a worker has
 * actually claimed, so a worker that never gets a core costs nothing.
 *
 * Values never depend on this: a chunk is a disjoint set of outputs whose chains run entirely
 * inside one chunk (RepOps spec §3.1), and every thread runs with MXCSR = RNE, no FTZ/DAZ.
 */
#include "repops_common.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define POOL_MAX_WORKERS 63
#define POOL_SPIN 1000 /* pause iterations a worker polls before sleeping (tens of us) */
/* ... and while a trace is being hashed beside the executor (a helping section began or ended
 * within POOL_TRACING_NS): a worker polling for the next product takes the core the hasher
 * needs. A/B on a 2-core AVX2 EPYC (SmolLM2 decode, compact trace, 4-run medians, alternating):
 * a traced token 13.66 ms (mean of 8 medians) polling 1000 always, 13.26 (6) with this, 13.00
 * (8) polling 100 always; exec only 11.70, 11.86 and 12.14 ms: a short poll everywhere would
 * cost the untraced decode about what it gains the traced one. */
#define POOL_SPIN_TRACING 100
#define POOL_TRACING_NS 100000000LL

static _Atomic uint64_t pool_claim; /* generation << 32 | next unclaimed chunk */
static _Atomic int64_t pool_done;   /* chunks finished in the current generation */
static _Atomic uint32_t pool_gen;   /* futex word: bumped once per job */
static _Atomic(repops_chunk_fn) pool_fn;
static _Atomic(void *) pool_ctx;
static _Atomic int64_t pool_n;
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER; /* one job at a time */
static int pool_workers;
static _Atomic int pool_helpers; /* threads in a repops_pool_helping section */
static _Atomic int64_t pool_helped; /* chunks helpers ran (tests: the path is taken) */
static _Atomic int64_t pool_help_ns; /* CLOCK_MONOTONIC ns of the last helping section's edge */

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void futex_wait(_Atomic uint32_t *addr, uint32_t val) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake_all(_Atomic uint32_t *addr) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
}

/* Claim and run chunks of generation g until none is left. A claim succeeds only while the
 * counter still holds generation g, so fn/ctx/n read just before it belong to g. */
static int64_t work_loop(uint32_t g) {
    int64_t ran = 0;
    for (;;) {
        uint64_t c = atomic_load_explicit(&pool_claim, memory_order_acquire);
        if ((uint32_t)(c >> 32) != g) return ran;
        int64_t i = (int64_t)(c & 0xFFFFFFFFu);
        repops_chunk_fn fn = atomic_load_explicit(&pool_fn, memory_order_acquire);
        void *ctx = atomic_load_explicit(&pool_ctx, memory_order_acquire);
        /* n may already be the next job's (repops_pool_run closes the claims first, so the
         * exchange below then fails) */
        if (i >= atomic_load_explicit(&pool_n, memory_order_acquire)) return ran;
        if (!atomic_compare_exchange_weak_explicit(&pool_claim, &c, c + 1, memory_order_acq_rel,
                                                   memory_order_relaxed))
            continue;
        fn(ctx, i);
        ran++;
        atomic_fetch_add_explicit(&pool_done, 1, memory_order_release);
    }
}

static void *worker_main(void *arg) {
    (void)arg;
#if defined(__x86_64__) || defined(__i386__)
    _mm_setcsr(0x1F80u); /* spec §1.2: RNE, no FTZ/DAZ, for the thread's whole life */
#else
    fesetround(FE_TONEAREST);
#endif
    uint32_t seen = atomic_load_explicit(&pool_gen, memory_order_acquire);
    for (;;) {
        uint32_t g = atomic_load_explicit(&pool_gen, memory_order_acquire);
        if (g == seen) {
            const int spin =
                now_ns() - atomic_load_explicit(&pool_help_ns, memory_order_relaxed) <
                        POOL_TRACING_NS
                    ? POOL_SPIN_TRACING
                    : POOL_SPIN;
            for (int s = 0; s < spin && g == seen; s++) {
                cpu_relax();
                g = atomic_load_explicit(&pool_gen, memory_order_acquire);
            }
            if (g == seen) {
                futex_wait(&pool_gen, seen);
                continue;
            }
        }
        seen = g;
        work_loop(g);
    }
    return NULL;
}

static void pool_after_fork_child(void) {
    /* the workers do not exist in a forked child: start new ones on first use */
    pool_workers = 0;
    pthread_mutex_init(&pool_lock, NULL);
}

static void pool_grow(int want) {
    static int atfork_done;
    if (!atfork_done) {
        pthread_atfork(NULL, NULL, pool_after_fork_child);
        atfork_done = 1;
    }
    if (want > POOL_MAX_WORKERS) want = POOL_MAX_WORKERS;
    while (pool_workers < want) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&t, &attr, worker_main, NULL);
        pthread_attr_destroy(&attr);
        if (rc != 0) break; /* fewer workers: the caller runs the remaining chunks itself */
        pool_workers++;
    }
}

/* A thread that hashes a trace beside the executor (repops_keccak.c) marks its hashing a
 * helping section and calls repops_pool_help between message batches. Why: with the trace,
 * three threads (executor, pool worker, hasher) shared two cores, and the OS split the second
 * core between a worker spinning for the next product and the hasher. While a helper is
 * hashing, jobs do not wake the sleeping workers: the helper takes chunks within microseconds
 * of a job's start instead, and returns to its hashing when none is left. */
void repops_pool_helping(int on) {
    atomic_fetch_add_explicit(&pool_helpers, on ? 1 : -1, memory_order_relaxed);
    atomic_store_explicit(&pool_help_ns, now_ns(), memory_order_relaxed);
}

/* Claim and run the current job's chunks, if one has any left (a load or two when not). */
void repops_pool_help(void) {
    uint32_t g = atomic_load_explicit(&pool_gen, memory_order_acquire);
    uint64_t c = atomic_load_explicit(&pool_claim, memory_order_relaxed);
    if ((uint32_t)(c >> 32) != g ||
        (int64_t)(c & 0xFFFFFFFFu) >= atomic_load_explicit(&pool_n, memory_order_relaxed))
        return;
    REPOPS_FP_ENTER; /* spec §1.2 for the chunks; the hasher's own mode restored after */
    int64_t ran = work_loop(g);
    REPOPS_FP_EXIT;
    if (ran) atomic_fetch_add_explicit(&pool_helped, ran, memory_order_relaxed);
}

int64_t repops_pool_helped(void) { return atomic_load_explicit(&pool_helped, memory_order_relaxed); }

/* Run fn(ctx, i) for i in [0, nchunks) on the caller plus up to nthreads - 1 pool workers. The
 * caller must have set its own MXCSR (REPOPS_FP_ENTER). */
void repops_pool_run(int64_t nchunks, repops_chunk_fn fn, void *ctx, int nthreads) {
    if (nthreads <= 1 || nchunks <= 1) {
        for (int64_t i = 0; i < nchunks; i++) fn(ctx, i);
        return;
    }
    pthread_mutex_lock(&pool_lock);
    pool_grow(nthreads - 1);
    uint32_t g = atomic_load_explicit(&pool_gen, memory_order_relaxed) + 1;
    /* Close the last job's claims before its fn/ctx/n are replaced. Without this, a thread in
     * work_loop that had read the last claim word (generation g - 1, index = its chunk count)
     * and then this job's larger n passed the index check, and its compare-exchange still
     * found that claim word: it ran "chunk n_last" with the last job's ctx, a dead stack frame
     * by now. That window is a few stores wide unless this thread is preempted inside it
     * (many hashing threads on few cores): the likely cause of three segfaults seen here in
     * qseg_chunk / qs41_4 through a garbage job, with traces hashing beside prefills (a
     * stress test of 10^5-10^6 jobs did not reproduce it). From here on every claim of
     * generation g - 1 fails; none of g exists before the store of (g, 0) below. */
    atomic_store_explicit(&pool_claim, (uint64_t)g << 32 | 0xFFFFFFFFu, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    atomic_store_explicit(&pool_fn, fn, memory_order_relaxed);
    atomic_store_explicit(&pool_ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&pool_n, nchunks, memory_order_relaxed);
    atomic_store_explicit(&pool_done, 0, memory_order_relaxed);
    atomic_store_explicit(&pool_claim, (uint64_t)g << 32, memory_order_release);
    atomic_store_explicit(&pool_gen, g, memory_order_release);
    if (atomic_load_explicit(&pool_helpers, memory_order_relaxed) == 0) futex_wake_all(&pool_gen);
    work_loop(g);
    /* wait only for chunks a worker claimed and is still running */
    for (int64_t spins = 0; atomic_load_explicit(&pool_done, memory_order_acquire) < nchunks;
         spins++) {
        if (spins < 100000)
            cpu_relax();
        else
            sched_yield();
    }
    pthread_mutex_unlock(&pool_lock);
}
