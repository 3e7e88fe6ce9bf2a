/* Matmul as the ascending-k FMA chain of RepOps spec §3.1-§3.3.
 *
 * A register-blocked GotoBLAS-style GEMM: B is packed into KC x NR panels, A into MR x KC
 * panels, and a micro-kernel keeps an MR x NR tile of accumulators in registers. Each
 * accumulator lane is one output element; for each k (ascending) it does exactly one
 * fma(a[m,k], b[k,n], acc). K is blocked (KC), and between blocks the accumulator is stored to
 * C and reloaded from it, which preserves the value bit for bit: the result is the spec's chain
 * whatever the blocking, tiling, ISA or thread count. The first K block starts from +0.0.
 */
#include "repops_common.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__AVX512F__)
#define MR 12
#define NV 2
#elif defined(__AVX2__) && defined(__FMA__)
#define MR 6
#define NV 2
#else
#define MR 4
#define NV 4
#endif
#define NR (REPOPS_VW * NV)
#define KC 256
#define MC (MR * 8)
#define NC (NR * 64)

typedef void (*ukr_fn)(int64_t kc, const float *A, const float *B, int64_t ldb, float *C,
                       int64_t ldc, int first);

/* Spec §3.1 inner step for an R x NR tile: acc = fma(a, b, acc) for k = 0..kc-1 ascending. */
static inline __attribute__((always_inline)) void ukr_body(const int R, int64_t kc,
                                                           const float *A, const float *B,
                                                           int64_t ldb, float *C, int64_t ldc,
                                                           int first) {
    repops_vf acc[MR][NV];
#pragma GCC unroll 16
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[i][v] = first ? REPOPS_VZERO() : REPOPS_VLOAD(C + i * ldc + v * REPOPS_VW);
    for (int64_t k = 0; k < kc; k++) {
        repops_vf b[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) b[v] = REPOPS_VLOAD(B + k * ldb + v * REPOPS_VW);
#pragma GCC unroll 16
        for (int i = 0; i < R; i++) {
            repops_vf a = REPOPS_VSET1(A[k * R + i]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[i][v] = REPOPS_VFMA(a, b[v], acc[i][v]);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) REPOPS_VSTORE(C + i * ldc + v * REPOPS_VW, acc[i][v]);
}

#define DEFINE_UKR(R)                                                                        \
    static void ukr_##R(int64_t kc, const float *A, const float *B, int64_t ldb, float *C,   \
                        int64_t ldc, int first) {                                            \
        ukr_body(R, kc, A, B, ldb, C, ldc, first);                                           \
    }
DEFINE_UKR(1)
DEFINE_UKR(2)
DEFINE_UKR(3)
DEFINE_UKR(4)
#if MR > 4
DEFINE_UKR(5)
DEFINE_UKR(6)
#endif
#if MR > 6
DEFINE_UKR(7)
DEFINE_UKR(8)
DEFINE_UKR(9)
DEFINE_UKR(10)
DEFINE_UKR(11)
DEFINE_UKR(12)
#endif

static const ukr_fn UKR[MR + 1] = {
    NULL, ukr_1, ukr_2, ukr_3, ukr_4,
#if MR > 4
    ukr_5, ukr_6,
#endif
#if MR > 6
    ukr_7, ukr_8, ukr_9, ukr_10, ukr_11, ukr_12,
#endif
};

/* Bp[k*NR + j] = B[k, j] for j < nr, zero-padded columns (never stored back to C). */
static void pack_b(int64_t kc, int64_t nr, const float *B, int64_t rsb, int64_t csb,
                   float *Bp) {
    if (csb == 1) {
        for (int64_t k = 0; k < kc; k++) {
            memcpy(Bp + k * NR, B + k * rsb, (size_t)nr * sizeof(float));
            for (int64_t j = nr; j < NR; j++) Bp[k * NR + j] = 0.0f;
        }
    } else {
        for (int64_t j = 0; j < nr; j++) {
            const float *src = B + j * csb;
            for (int64_t k = 0; k < kc; k++) Bp[k * NR + j] = src[k * rsb];
        }
        for (int64_t j = nr; j < NR; j++)
            for (int64_t k = 0; k < kc; k++) Bp[k * NR + j] = 0.0f;
    }
}

/* Ap[k*mr + i] = A[i, k] */
static void pack_a(int64_t kc, int64_t mr, const float *A, int64_t lda, float *Ap) {
    for (int64_t i = 0; i < mr; i++) {
        const float *src = A + i * lda;
        for (int64_t k = 0; k < kc; k++) Ap[k * mr + i] = src[k];
    }
}

#if defined(__AVX512F__)
/* Spec §3.3 for a few rows of A against W[N,K] stored row-major (B = W^T: rsb = 1, csb = ldw):
 * the decode matrix-vector case. Each lane of a vector is one output n; the 16 values
 * W[n..n+16, k] are gathered per k, so W streams from memory once with no packing pass. */
static void gemv_t(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *W,
                   int64_t ldw, float *C, int64_t ldc) {
    const __m512i idx = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32((int)ldw));
    int64_t n0 = 0;
    for (; n0 + 32 <= N; n0 += 32) {
        const float *w0 = W + n0 * ldw, *w1 = W + (n0 + 16) * ldw;
        __m512 acc0[4], acc1[4];
        for (int m = 0; m < 4; m++) acc0[m] = acc1[m] = _mm512_setzero_ps();
        for (int64_t k = 0; k < K; k++) {
            __m512 g0 = _mm512_i32gather_ps(idx, w0 + k, 4);
            __m512 g1 = _mm512_i32gather_ps(idx, w1 + k, 4);
            for (int m = 0; m < M; m++) {
                __m512 a = _mm512_set1_ps(A[m * lda + k]);
                acc0[m] = _mm512_fmadd_ps(a, g0, acc0[m]);
                acc1[m] = _mm512_fmadd_ps(a, g1, acc1[m]);
            }
        }
        for (int m = 0; m < M; m++) {
            _mm512_storeu_ps(C + m * ldc + n0, acc0[m]);
            _mm512_storeu_ps(C + m * ldc + n0 + 16, acc1[m]);
        }
    }
    for (; n0 < N; n0++)
        for (int64_t m = 0; m < M; m++) {
            float acc = 0.0f;
            for (int64_t k = 0; k < K; k++) acc = fmaf(A[m * lda + k], W[n0 * ldw + k], acc);
            C[m * ldc + n0] = acc;
        }
}
#endif

/* Serial GEMM on one block: C[M,N] = chain_k A[M,K] B[K,N] (spec §3.1). B[k,n] lives at
 * B[k*rsb + n*csb], so both matmul (row-major B) and linear (W[N,K], rsb=1, csb=K) use it. */
void repops_gemm_serial(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const float *B, int64_t rsb, int64_t csb, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K == 0) {
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) C[m * ldc + n] = 0.0f; /* +0.0, spec §3.1 */
        return;
    }
#if defined(__AVX512F__)
    if (M <= 4 && rsb == 1 && csb != 1 && csb * 16 < INT32_MAX) {
        gemv_t(M, N, K, A, lda, B, csb, C, ldc);
        for (int64_t m = 0; m < M; m++) repops_canon_array(C + m * ldc, N);
        return;
    }
#endif
    /* packing B pays off when a panel is reused by many rows of A; for a few rows (decode)
     * it is a second pass over the weights, so row-major B is then read in place (narrow B
     * only: a wide B read 32 columns at a time strides across pages) */
    const int direct_b = csb == 1 && M <= MR && N <= 4096;
    float *Bp = aligned_alloc(64, sizeof(float) * (size_t)KC * NC);
    float *Ap = aligned_alloc(64, sizeof(float) * (size_t)KC * MC);
    float tile[MR * NR];
    for (int64_t jc = 0; jc < N; jc += NC) {
        int64_t nc = N - jc < NC ? N - jc : NC;
        for (int64_t pc = 0; pc < K; pc += KC) {
            int64_t kc = K - pc < KC ? K - pc : KC;
            int first = pc == 0;
            for (int64_t jr = 0; jr < nc; jr += NR) {
                int64_t nr = nc - jr < NR ? nc - jr : NR;
                if (!direct_b || nr < NR)
                    pack_b(kc, nr, B + pc * rsb + (jc + jr) * csb, rsb, csb, Bp + jr * KC);
            }
            for (int64_t ic = 0; ic < M; ic += MC) {
                int64_t mc = M - ic < MC ? M - ic : MC;
                for (int64_t ir = 0; ir < mc; ir += MR) {
                    int64_t mr = mc - ir < MR ? mc - ir : MR;
                    pack_a(kc, mr, A + (ic + ir) * lda + pc, lda, Ap + ir * KC);
                }
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    int64_t nr = nc - jr < NR ? nc - jr : NR;
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        int64_t mr = mc - ir < MR ? mc - ir : MR;
                        float *c = C + (ic + ir) * ldc + jc + jr;
                        if (nr == NR && direct_b) { /* few rows: read row-major B in place */
                            UKR[mr](kc, Ap + ir * KC, B + pc * rsb + jc + jr, rsb, c, ldc, first);
                        } else if (nr == NR) {
                            UKR[mr](kc, Ap + ir * KC, Bp + jr * KC, NR, c, ldc, first);
                        } else {
                            /* edge tile: run on a full-width copy, write back valid columns */
                            for (int64_t i = 0; i < mr; i++) {
                                for (int64_t j = 0; j < NR; j++)
                                    tile[i * NR + j] = (!first && j < nr) ? c[i * ldc + j] : 0.0f;
                            }
                            UKR[mr](kc, Ap + ir * KC, Bp + jr * KC, NR, tile, NR, first);
                            for (int64_t i = 0; i < mr; i++)
                                memcpy(c + i * ldc, tile + i * NR, (size_t)nr * sizeof(float));
                        }
                    }
                }
            }
        }
    }
    free(Bp);
    free(Ap);
    for (int64_t m = 0; m < M; m++) repops_canon_array(C + m * ldc, N);
}

/* Spec §3.2/§3.3: C = A @ B with B[k,n] at B[k*rsb + n*csb]. Threads split N (or M when N is
 * narrow) into disjoint output blocks; each output's chain is computed by one thread in full,
 * so the thread count never changes a bit. */
void repops_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                 int64_t rsb, int64_t csb, float *C, int64_t ldc, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    /* waking a second thread costs more than small products gain (and on a loaded machine it
     * waits for a core): thread only when there are at least 2^25 multiply-adds */
    if ((double)M * (double)N * (double)K < 33554432.0) nthreads = 1;
    int64_t npanels = (N + NR - 1) / NR;
    int split_n = npanels >= 2 * nthreads || M < 2 * MR;
    int64_t units = split_n ? npanels : (M + MR - 1) / MR;
    if (units < nthreads) nthreads = (int)(units > 0 ? units : 1);
#pragma omp parallel num_threads(nthreads)
    {
        REPOPS_FP_ENTER;
#ifdef _OPENMP
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        int t = 0, nt = 1;
#endif
        int64_t u0 = units * t / nt, u1 = units * (t + 1) / nt;
        if (split_n) {
            int64_t n0 = u0 * NR, n1 = u1 * NR < N ? u1 * NR : N;
            if (n1 > n0)
                repops_gemm_serial(M, n1 - n0, K, A, lda, B + n0 * csb, rsb, csb, C + n0, ldc);
        } else {
            int64_t m0 = u0 * MR, m1 = u1 * MR < M ? u1 * MR : M;
            if (m1 > m0)
                repops_gemm_serial(m1 - m0, N, K, A + m0 * lda, lda, B, rsb, csb, C + m0 * ldc,
                                   ldc);
        }
        REPOPS_FP_EXIT;
    }
}

const char *repops_isa(void) { return REPOPS_ISA; }
