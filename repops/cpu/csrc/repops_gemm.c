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
#define GEMV_MAX_M 4 /* rows of A handled by the matrix-vector kernels (decode) */

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
/* r[j] (lane i = row j's element i) becomes r[i] (lane j = row j's element i): the standard
 * 4-stage 16x16 transpose (unpack, shuffle_ps, two shuffle_f32x4 rounds). Bits are moved only. */
static inline __attribute__((always_inline)) void transpose16(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 4; g++) { /* u[4g + c], 128-bit lane L = rows 4g..4g+3 at column 4L + c */
        u[4 * g + 0] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm512_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm512_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        __m512 alo = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44);
        __m512 ahi = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
        __m512 blo = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
        __m512 bhi = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
        r[c] = _mm512_shuffle_f32x4(alo, blo, 0x88);
        r[4 + c] = _mm512_shuffle_f32x4(alo, blo, 0xDD);
        r[8 + c] = _mm512_shuffle_f32x4(ahi, bhi, 0x88);
        r[12 + c] = _mm512_shuffle_f32x4(ahi, bhi, 0xDD);
    }
}

/* Load rows n0..n0+nr-1 (nr <= 16), columns k0..k0+kr-1 (kr <= 16) of W; missing rows and
 * columns read as +0 (never stored: lanes of missing rows are dropped, and only the first kr
 * transposed vectors are used). */
static inline __attribute__((always_inline)) void load16(const float *W, int64_t ldw, int nr,
                                                         int kr, __m512 r[16]) {
    const __mmask16 km = (__mmask16)((1u << kr) - 1u);
    for (int j = 0; j < 16; j++)
        r[j] = j < nr ? (kr == 16 ? _mm512_loadu_ps(W + j * ldw) : _mm512_maskz_loadu_ps(km, W + j * ldw))
                      : _mm512_setzero_ps();
}

/* Spec §3.3 for R rows of A against W[N, K] stored row-major, without packing: 16 rows of W at
 * a time are loaded 16 k's at a time and transposed in registers, so lane j holds w[n0 + j, k];
 * each lane then runs its own output's chain acc = fma(x[m, k], w[n, k], acc), k ascending
 * from +0.0. Two row blocks run side by side to overlap their FMA latency chains. */
static inline __attribute__((always_inline)) void gemv_t_body(const int R, int64_t N, int64_t K,
                                                              const float *A, int64_t lda,
                                                              const float *W, int64_t ldw,
                                                              float *C, int64_t ldc) {
    for (int64_t n0 = 0; n0 < N; n0 += 32) {
        const int nr0 = N - n0 < 16 ? (int)(N - n0) : 16;
        const int nr1 = N - n0 - 16 <= 0 ? 0 : (N - n0 - 16 < 16 ? (int)(N - n0 - 16) : 16);
        __m512 acc0[GEMV_MAX_M], acc1[GEMV_MAX_M];
        for (int i = 0; i < R; i++) acc0[i] = acc1[i] = _mm512_setzero_ps();
        for (int64_t k0 = 0; k0 < K; k0 += 16) {
            const int kr = K - k0 < 16 ? (int)(K - k0) : 16;
            __m512 r0[16], r1[16];
            load16(W + n0 * ldw + k0, ldw, nr0, kr, r0);
            transpose16(r0);
            if (nr1) {
                load16(W + (n0 + 16) * ldw + k0, ldw, nr1, kr, r1);
                transpose16(r1);
            }
            for (int k = 0; k < kr; k++) {
                for (int i = 0; i < R; i++) {
                    __m512 a = _mm512_set1_ps(A[i * lda + k0 + k]);
                    acc0[i] = _mm512_fmadd_ps(a, r0[k], acc0[i]);
                    if (nr1) acc1[i] = _mm512_fmadd_ps(a, r1[k], acc1[i]);
                }
            }
        }
        const __mmask16 m0 = (__mmask16)((1u << nr0) - 1u), m1 = (__mmask16)((1u << nr1) - 1u);
        for (int i = 0; i < R; i++) {
            _mm512_mask_storeu_ps(C + i * ldc + n0, m0, acc0[i]);
            if (nr1) _mm512_mask_storeu_ps(C + i * ldc + n0 + 16, m1, acc1[i]);
        }
    }
}

#elif defined(__AVX2__) && defined(__FMA__)
/* r[j] (lane i = row j's element i) becomes r[i] (lane j = row j's element i): the standard
 * 8x8 transpose (unpack, shuffle_ps, permute2f128). Bits are moved only. */
static inline __attribute__((always_inline)) void transpose8(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int g = 0; g < 2; g++) { /* u[4g + c], 128-bit lane L = rows 4g..4g+3 at column 4L + c */
        u[4 * g + 0] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
        u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
        u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
        u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
        r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
    }
}

/* Load rows n0..n0+nr-1 (nr <= 8), columns k0..k0+kr-1 (kr <= 8) of W; missing rows and
 * columns read as +0 (never stored: lanes of missing rows are dropped, and only the first kr
 * transposed vectors are used). */
static inline __attribute__((always_inline)) void load8(const float *W, int64_t ldw, int nr,
                                                        int kr, __m256 r[8]) {
    const __m256i km = repops_first_lanes8(kr);
    for (int j = 0; j < 8; j++)
        r[j] = j < nr ? (kr == 8 ? _mm256_loadu_ps(W + j * ldw) : _mm256_maskload_ps(W + j * ldw, km))
                      : _mm256_setzero_ps();
}

/* Spec §3.3 for R rows of A against W[N, K] stored row-major, without packing (the AVX2 form
 * of the AVX-512 kernel above): GT blocks of 8 rows of W are loaded 8 k's at a time and
 * transposed in registers, so lane j of block b holds w[n0 + 8b + j, k]; each lane runs its
 * own output's chain acc = fma(x[m, k], w[n, k], acc), k ascending from +0.0. The GT blocks
 * side by side overlap their FMA latency chains. */
#define GT 4
static inline __attribute__((always_inline)) void gemv_t_body(const int R, int64_t N, int64_t K,
                                                              const float *A, int64_t lda,
                                                              const float *W, int64_t ldw,
                                                              float *C, int64_t ldc) {
    for (int64_t n0 = 0; n0 < N; n0 += 8 * GT) {
        int nr[GT];
        for (int b = 0; b < GT; b++) {
            const int64_t left = N - n0 - 8 * b;
            nr[b] = left <= 0 ? 0 : (left < 8 ? (int)left : 8);
        }
        __m256 acc[GEMV_MAX_M][GT];
        for (int i = 0; i < R; i++)
            for (int b = 0; b < GT; b++) acc[i][b] = _mm256_setzero_ps();
        for (int64_t k0 = 0; k0 < K; k0 += 8) {
            const int kr = K - k0 < 8 ? (int)(K - k0) : 8;
            __m256 r[GT][8];
            for (int b = 0; b < GT; b++) {
                load8(W + (n0 + 8 * b) * ldw + k0, ldw, nr[b], kr, r[b]);
                transpose8(r[b]);
            }
            for (int k = 0; k < kr; k++)
                for (int i = 0; i < R; i++) {
                    const __m256 a = _mm256_set1_ps(A[i * lda + k0 + k]);
                    for (int b = 0; b < GT; b++) acc[i][b] = _mm256_fmadd_ps(a, r[b][k], acc[i][b]);
                }
        }
        for (int i = 0; i < R; i++)
            for (int b = 0; b < GT; b++)
                if (nr[b])
                    _mm256_maskstore_ps(C + i * ldc + n0 + 8 * b, repops_first_lanes8(nr[b]),
                                        acc[i][b]);
    }
}
#undef GT
#endif

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#define HAVE_GEMV_T 1
static void gemv_t1(int64_t N, int64_t K, const float *A, int64_t lda, const float *W,
                    int64_t ldw, float *C, int64_t ldc) {
    gemv_t_body(1, N, K, A, lda, W, ldw, C, ldc);
}
static void gemv_t2(int64_t N, int64_t K, const float *A, int64_t lda, const float *W,
                    int64_t ldw, float *C, int64_t ldc) {
    gemv_t_body(2, N, K, A, lda, W, ldw, C, ldc);
}
static void gemv_t4(int64_t N, int64_t K, const float *A, int64_t lda, const float *W,
                    int64_t ldw, float *C, int64_t ldc) {
    gemv_t_body(4, N, K, A, lda, W, ldw, C, ldc);
}

static void gemv_t(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *W,
                   int64_t ldw, float *C, int64_t ldc) {
    if (M == 1)
        gemv_t1(N, K, A, lda, W, ldw, C, ldc);
    else if (M == 2)
        gemv_t2(N, K, A, lda, W, ldw, C, ldc);
    else if (M == 4)
        gemv_t4(N, K, A, lda, W, ldw, C, ldc);
    else { /* M == 3: rows 0-1, then row 2 (each output's chain is independent of the others) */
        gemv_t2(N, K, A, lda, W, ldw, C, ldc);
        gemv_t1(N, K, A + 2 * lda, lda, W, ldw, C + 2 * ldc, ldc);
    }
}
#endif

/* ---- weights pre-packed once (spec §3.3 linear; the spec fixes values, not storage) ----
 * Layout: W[N, K] becomes ceil(N/NR) panels of K x NR floats, P[(p*K + k)*NR + j] = W[p*NR + j,
 * k], rows past N zero. One vector load at (p, k) holds w[n, k] for NR consecutive outputs n, so
 * every lane runs its own output's ascending-k chain with a broadcast x[m, k], and the weights
 * stream from memory once, contiguously, with no per-call packing or transposing. */

/* Spec §3.1 for R rows of A against G adjacent packed panels: acc = fma(x[m,k], w[n,k], acc)
 * for k ascending from +0.0, NR*G outputs per row; out is R x (G*NR), row stride G*NR. */
static inline __attribute__((always_inline)) void gemv_packed_body(const int R, const int G,
                                                                   int64_t K, const float *A,
                                                                   int64_t lda, const float *P,
                                                                   float *out) {
    repops_vf acc[GEMV_MAX_M][4][NV];
    const int64_t ps = K * NR; /* floats per panel */
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int g = 0; g < G; g++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[i][g][v] = REPOPS_VZERO();
    for (int64_t k = 0; k < K; k++) {
        repops_vf b[4][NV];
#pragma GCC unroll 4
        for (int g = 0; g < G; g++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) b[g][v] = REPOPS_VLOAD(P + g * ps + k * NR + v * REPOPS_VW);
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            repops_vf a = REPOPS_VSET1(A[i * lda + k]);
#pragma GCC unroll 4
            for (int g = 0; g < G; g++)
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) acc[i][g][v] = REPOPS_VFMA(a, b[g][v], acc[i][g][v]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int g = 0; g < G; g++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                REPOPS_VSTORE(out + i * G * NR + g * NR + v * REPOPS_VW, acc[i][g][v]);
}

typedef void (*gemv_fn)(int64_t K, const float *A, int64_t lda, const float *P, float *out);
#define DEFINE_GEMV(R, G)                                                                    \
    static void gemv_##R##_##G(int64_t K, const float *A, int64_t lda, const float *P,        \
                               float *out) {                                                 \
        gemv_packed_body(R, G, K, A, lda, P, out);                                           \
    }
DEFINE_GEMV(1, 1)
DEFINE_GEMV(1, 4)
DEFINE_GEMV(2, 1)
DEFINE_GEMV(2, 2)
DEFINE_GEMV(3, 1)
DEFINE_GEMV(4, 1)
/* panels per step for R rows: about 8 independent accumulators hide the FMA latency */
static const gemv_fn GEMV_WIDE[GEMV_MAX_M + 1] = {NULL, gemv_1_4, gemv_2_2, gemv_3_1, gemv_4_1};
static const int GEMV_G[GEMV_MAX_M + 1] = {0, 4, 2, 1, 1};
static const gemv_fn GEMV_ONE[GEMV_MAX_M + 1] = {NULL, gemv_1_1, gemv_2_1, gemv_3_1, gemv_4_1};

/* C[M, N] (M <= GEMV_MAX_M) from packed panels P (panel 0 = column 0 of C). */
static void gemv_packed(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const float *P, float *C, int64_t ldc) {
    float out[GEMV_MAX_M * 4 * NR];
    const int64_t npanels = (N + NR - 1) / NR;
    const int G = GEMV_G[M];
    int64_t p = 0;
    while (p < npanels) {
        const int g = p + G <= npanels ? G : 1;
        (g == G ? GEMV_WIDE : GEMV_ONE)[M](K, A, lda, P + p * K * NR, out);
        int64_t n0 = p * NR, ncols = N - n0 < g * NR ? N - n0 : g * NR;
        for (int64_t i = 0; i < M; i++)
            memcpy(C + i * ldc + n0, out + i * g * NR, (size_t)ncols * sizeof(float));
        p += g;
    }
}

/* Serial GEMM on one block: C[M,N] = chain_k A[M,K] B[K,N] (spec §3.1). B[k,n] lives at
 * B[k*rsb + n*csb], so both matmul (row-major B) and linear (W[N,K], rsb=1, csb=K) use it.
 * With `Bpre` (weights pre-packed by repops_pack_nk, panel p at Bpre + p*K*NR) B is ignored
 * and no packing pass runs. */
static void gemm_serial(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const float *B, int64_t rsb, int64_t csb, const float *Bpre, float *C,
                        int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K == 0) {
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) C[m * ldc + n] = 0.0f; /* +0.0, spec §3.1 */
        return;
    }
    if (Bpre != NULL && M <= GEMV_MAX_M) {
        gemv_packed(M, N, K, A, lda, Bpre, C, ldc);
        for (int64_t m = 0; m < M; m++) repops_canon_array(C + m * ldc, N);
        return;
    }
#if defined(HAVE_GEMV_T)
    if (Bpre == NULL && M <= GEMV_MAX_M && rsb == 1 && csb != 1) {
        gemv_t(M, N, K, A, lda, B, csb, C, ldc);
        for (int64_t m = 0; m < M; m++) repops_canon_array(C + m * ldc, N);
        return;
    }
#endif
    /* packing B pays off when a panel is reused by many rows of A; for a few rows (decode)
     * it is a second pass over the weights, so row-major B is then read in place (narrow B
     * only: a wide B read 32 columns at a time strides across pages) */
    const int direct_b = Bpre == NULL && csb == 1 && M <= MR && N <= 4096;
    float *Bp = Bpre ? NULL : aligned_alloc(64, sizeof(float) * (size_t)KC * NC);
    float *Ap = aligned_alloc(64, sizeof(float) * (size_t)KC * MC);
    float tile[MR * NR];
    for (int64_t jc = 0; jc < N; jc += NC) {
        int64_t nc = N - jc < NC ? N - jc : NC;
        for (int64_t pc = 0; pc < K; pc += KC) {
            int64_t kc = K - pc < KC ? K - pc : KC;
            int first = pc == 0;
            for (int64_t jr = 0; jr < nc && !Bpre; jr += NR) {
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
                    /* the packed panel of columns jc+jr.. for k = pc.. (row stride NR) */
                    const float *bp = Bpre ? Bpre + ((jc + jr) / NR) * K * NR + pc * NR
                                           : Bp + jr * KC;
                    for (int64_t ir = 0; ir < mc; ir += MR) {
                        int64_t mr = mc - ir < MR ? mc - ir : MR;
                        float *c = C + (ic + ir) * ldc + jc + jr;
                        if (nr == NR && direct_b) { /* few rows: read row-major B in place */
                            UKR[mr](kc, Ap + ir * KC, B + pc * rsb + jc + jr, rsb, c, ldc, first);
                        } else if (nr == NR) {
                            UKR[mr](kc, Ap + ir * KC, bp, NR, c, ldc, first);
                        } else {
                            /* edge tile: run on a full-width copy, write back valid columns */
                            for (int64_t i = 0; i < mr; i++) {
                                for (int64_t j = 0; j < NR; j++)
                                    tile[i * NR + j] = (!first && j < nr) ? c[i * ldc + j] : 0.0f;
                            }
                            UKR[mr](kc, Ap + ir * KC, bp, NR, tile, NR, first);
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

void repops_gemm_serial(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const float *B, int64_t rsb, int64_t csb, float *C, int64_t ldc) {
    gemm_serial(M, N, K, A, lda, B, rsb, csb, NULL, C, ldc);
}

void repops_gemm_packed_serial(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                               const float *Bpre, float *C, int64_t ldc) {
    gemm_serial(M, N, K, A, lda, NULL, 1, K, Bpre, C, ldc);
}

/* One pool chunk of the decode product on packed panels: outputs of panels [p0, p1). */
struct gemv_job {
    int64_t M, N, K;
    const float *A;
    int64_t lda;
    const float *P; /* packed panels, or NULL for W[N, K] row-major at B (row stride csb) */
    const float *B;
    int64_t csb;
    float *C;
    int64_t ldc, npanels, nchunks;
};

static void gemv_chunk(void *ctx, int64_t i) {
    const struct gemv_job *j = ctx;
    int64_t p0 = j->npanels * i / j->nchunks, p1 = j->npanels * (i + 1) / j->nchunks;
    int64_t n0 = p0 * NR, n1 = p1 * NR < j->N ? p1 * NR : j->N;
    if (n1 <= n0) return;
    if (j->P == NULL) { /* the serial path (transposing matrix-vector kernel), canonicalized */
        gemm_serial(j->M, n1 - n0, j->K, j->A, j->lda, j->B + n0 * j->csb, 1, j->csb, NULL,
                    j->C + n0, j->ldc);
        return;
    }
    gemv_packed(j->M, n1 - n0, j->K, j->A, j->lda, j->P + p0 * j->K * NR, j->C + n0, j->ldc);
    for (int64_t m = 0; m < j->M; m++) repops_canon_array(j->C + m * j->ldc + n0, n1 - n0);
}

/* Spec §3.2/§3.3: C = A @ B with B[k,n] at B[k*rsb + n*csb], or from packed panels Bpre.
 * Threads split N (or M when N is narrow) into disjoint output blocks; each output's chain is
 * computed by one thread in full, so the thread count never changes a bit. */
static void gemm_threaded(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                          const float *B, int64_t rsb, int64_t csb, const float *Bpre, float *C,
                          int64_t ldc, int nthreads) {
    if (nthreads < 1) nthreads = 1;
    /* waking a second thread costs more than small products gain (and on a loaded machine it
     * waits for a core): thread only when there are at least 2^25 multiply-adds, or, for the
     * memory-bound decode product on packed weights, at least 2^20 weights to stream */
    double work = (double)M * (double)N * (double)K;
    int gemv = M <= GEMV_MAX_M && (Bpre != NULL || (rsb == 1 && csb != 1));
    int64_t npanels = (N + NR - 1) / NR;
    if (gemv && M > 0 && N > 0 && K > 0) { /* decode: pool threads, see repops_pool.c */
        if ((double)N * (double)K < 4194304.0) nthreads = 1;
        struct gemv_job job = {M, N, K, A, lda, Bpre, B, csb, C, ldc, npanels,
                               nthreads > 1 ? (npanels < 8 * nthreads ? npanels : 8 * nthreads) : 1};
        REPOPS_FP_ENTER;
        repops_pool_run(job.nchunks, gemv_chunk, &job, nthreads);
        REPOPS_FP_EXIT;
        return;
    }
    if (work < 33554432.0) nthreads = 1;
    int split_n = gemv || npanels >= 2 * nthreads || M < 2 * MR;
    int64_t units = split_n ? npanels : (M + MR - 1) / MR;
    if (units < nthreads) nthreads = (int)(units > 0 ? units : 1);
    if (nthreads == 1) { /* no parallel region: entering one costs microseconds */
        REPOPS_FP_ENTER;
        gemm_serial(M, N, K, A, lda, B, rsb, csb, Bpre, C, ldc);
        REPOPS_FP_EXIT;
        return;
    }
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
                gemm_serial(M, n1 - n0, K, A, lda, Bpre ? NULL : B + n0 * csb, rsb, csb,
                            Bpre ? Bpre + u0 * K * NR : NULL, C + n0, ldc);
        } else {
            int64_t m0 = u0 * MR, m1 = u1 * MR < M ? u1 * MR : M;
            if (m1 > m0)
                gemm_serial(m1 - m0, N, K, A + m0 * lda, lda, B, rsb, csb, Bpre, C + m0 * ldc,
                            ldc);
        }
        REPOPS_FP_EXIT;
    }
}

void repops_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                 int64_t rsb, int64_t csb, float *C, int64_t ldc, int nthreads) {
    gemm_threaded(M, N, K, A, lda, B, rsb, csb, NULL, C, ldc, nthreads);
}

/* Spec §3.3 linear on weights packed by repops_pack_nk: Y[M, N] = X[M, K] W[N, K]^T. */
void repops_linear_packed(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                          const float *P, float *C, int64_t ldc, int nthreads) {
    gemm_threaded(M, N, K, A, lda, NULL, 1, K, P, C, ldc, nthreads);
}

/* Columns per packed panel (the layout's NR; depends on the ISA this library was built for). */
int repops_pack_width(void) { return NR; }

/* W[N, K] (row stride ldw) -> panels P[ceil(N/NR)][K][NR], zero rows past N. Bits copied. */
void repops_pack_nk(int64_t N, int64_t K, const float *W, int64_t ldw, float *P) {
    const int64_t npanels = (N + NR - 1) / NR;
    for (int64_t p = 0; p < npanels; p++) {
        float *dst = P + p * K * NR;
        for (int64_t k0 = 0; k0 < K; k0 += 64) {
            int64_t k1 = k0 + 64 < K ? k0 + 64 : K;
            for (int64_t j = 0; j < NR; j++) {
                int64_t n = p * NR + j;
                if (n < N) {
                    const float *src = W + n * ldw;
                    for (int64_t k = k0; k < k1; k++) dst[k * NR + j] = src[k];
                } else {
                    for (int64_t k = k0; k < k1; k++) dst[k * NR + j] = 0.0f;
                }
            }
        }
    }
}

const char *repops_isa(void) { return REPOPS_ISA; }
