/* Spec §3.3 linear on weights kept as GGUF Q4_1 / Q8_0 blocks, dequantized exactly in-kernel.
 *
 * The spec fixes values, not storage (§6.15): the weight value is the one of
 * docs/decisions/0003-dequantization.md, w = RN(d*q + m) for Q4_1 and w = d*q for Q8_0 (d, m the
 * block's fp16 scale/min converted exactly; d*q is exact in binary32). Q4_1 is computed as
 * fma(d, q, m) -- one rounding of the exact d*q + m, the same bits as (d*q) + m because d*q is
 * exact -- and Q8_0 as mul(d, q), which keeps the sign of a zero weight. Each output's dot is
 * then the ascending-k chain acc = fma(x[k], w[n, k], acc) from +0.0 (spec §3.1), exactly as on
 * the dequantized fp32 weights, so results are bit-identical to dequantize-then-linear.
 *
 * Panel layout (repops_qpack): QW = 32 output rows per panel; per block of 32 k: the 32 lanes'
 * fp16 d, (Q4_1) the 32 lanes' fp16 m, then for each k the 32 lanes' q -- Q4_1: 16 bytes, lane j
 * in the low nibble of byte j (j < 16) or the high nibble of byte j - 16; Q8_0: 32 int8.
 */
#include "repops_common.h"
#define QW 32
#define QB 32
#define QT_Q4_1 0
#define QT_Q8_0 1
#define QMAX_M 4 /* rows handled by the fused decode kernel; more rows dequantize to panels */
#define QGROUP 4 /* quant panels dequantized at once for the blocked GEMM (M > QMAX_M) */
/* Below this much work (row groups x N x K) a segmented linear runs on the caller's thread. A
 * decode step's linears (N x K from 192 x 576 to 1536 x 576) are all above it: on this 2-core
 * machine, threading them took the C step plan from ~12.2 to ~8.1 ms a SmolLM2 token (the pool
 * wakes in ~µs; it was 4194304, which kept all but lm_head on one core). */
#define QSEG_THREAD_WORK 65536.0

static inline int64_t qblock_bytes(int qt) { return qt == QT_Q4_1 ? 64 + 64 + 16 * QB : 64 + 32 * QB; }

int64_t repops_qpanel_bytes(int qt, int64_t K) { return (K / QB) * qblock_bytes(qt); }

/* IEEE binary16 -> binary32, exact for every input (subnormals, inf, NaN payload kept). */
static inline float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13);
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    } else if (man == 0) {
        bits = sign;
    } else { /* subnormal half: normalize */
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400u));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3FFu) << 13);
    }
    return repops_bits_to_f(bits);
}

/* Spec §6.15 / ADR 0003 value of lane j, k = kk of a packed block. */
static inline float qweight(int qt, const uint8_t *blk, int j, int kk) {
    uint16_t dh, mh;
    memcpy(&dh, blk + 2 * j, 2);
    float d = half_to_float(dh);
    if (qt == QT_Q8_0) return d * (float)(int8_t)blk[64 + kk * QW + j];
    memcpy(&mh, blk + 64 + 2 * j, 2);
    uint8_t byte = blk[128 + kk * 16 + (j & 15)];
    float q = (float)(j < 16 ? byte & 0xF : byte >> 4);
    return fmaf(d, q, half_to_float(mh));
}

/* GGUF rows (N rows of K/32 ggml blocks each) -> panels. Rows past N get d = m = q = 0. */
void repops_qpack(int qt, int64_t N, int64_t K, const uint8_t *raw, uint8_t *out) {
    const int64_t nb = K / QB, rb = qt == QT_Q4_1 ? 20 : 34, bb = qblock_bytes(qt);
    const int64_t npanels = (N + QW - 1) / QW;
    memset(out, 0, (size_t)(npanels * nb * bb));
    for (int64_t p = 0; p < npanels; p++)
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *blk = out + (p * nb + b) * bb;
            for (int j = 0; j < QW && p * QW + j < N; j++) {
                const uint8_t *src = raw + ((p * QW + j) * nb + b) * rb;
                memcpy(blk + 2 * j, src, 2); /* d */
                if (qt == QT_Q8_0) {
                    for (int kk = 0; kk < QB; kk++) blk[64 + kk * QW + j] = src[2 + kk];
                } else {
                    memcpy(blk + 64 + 2 * j, src + 2, 2); /* m */
                    for (int kk = 0; kk < QB; kk++) {
                        uint8_t q = kk < 16 ? src[4 + kk] & 0xF : src[4 + kk - 16] >> 4;
                        blk[128 + kk * 16 + (j & 15)] |= (uint8_t)(j < 16 ? q : q << 4);
                    }
                }
            }
        }
}

/* Dequantize quant panels [p0, p0 + np) into NR-wide fp32 panels (the GEMM's packed-B layout:
 * column j of the group at dst[(j / NR) * K * NR + k * NR + j % NR]). */
static void dequant_panels(int qt, int64_t K, const uint8_t *Q, int64_t np, float *dst) {
    const int64_t nb = K / QB, bb = qblock_bytes(qt), nr = repops_pack_width();
    for (int64_t p = 0; p < np; p++)
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = Q + (p * nb + b) * bb;
            for (int j = 0; j < QW; j++) {
                int64_t col = p * QW + j;
                float *d = dst + (col / nr) * K * nr + col % nr;
                for (int kk = 0; kk < QB; kk++) d[(b * QB + kk) * nr] = qweight(qt, blk, j, kk);
            }
        }
}

#if defined(__AVX512F__)
/* The block at byte offset off of G consecutive quant panels (pb bytes apart): its address
 * and the 32 lanes' fp16 scales as 2 x 16 floats (exact, ADR 0003); for Q8_0 the "min" is
 * unused and set to d. */
static inline __attribute__((always_inline)) void qpanel_blocks(const int G, const int qt,
                                                                const uint8_t *P, int64_t pb,
                                                                int64_t off, const uint8_t **blk,
                                                                __m512 *d0, __m512 *d1,
                                                                __m512 *m0, __m512 *m1) {
#pragma GCC unroll 2
    for (int g = 0; g < G; g++) {
        blk[g] = P + g * pb + off;
        d0[g] = m0[g] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)blk[g]));
        d1[g] = m1[g] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk[g] + 32)));
        if (qt == QT_Q4_1) {
            m0[g] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk[g] + 64)));
            m1[g] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk[g] + 96)));
        }
    }
}

/* The 32 lanes' weights at k = kk of a block, §6.15 / ADR 0003 values: Q4_1 fma(d, q, m) =
 * RN(d*q + m) (d*q is exact), Q8_0 d*q (exact, keeps the sign of a zero weight). tbl holds
 * 0..15 (the nibble -> float table). */
static inline __attribute__((always_inline)) void qblock_weights(const int qt, const uint8_t *blk,
                                                                 int kk, __m512 tbl, __m512 d0,
                                                                 __m512 d1, __m512 m0,
                                                                 __m512 m1, __m512 *w0,
                                                                 __m512 *w1) {
    if (qt == QT_Q4_1) {
        __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(blk + 128 + kk * 16)));
        *w0 = _mm512_fmadd_ps(d0, _mm512_permutexvar_ps(v, tbl), m0);
        *w1 = _mm512_fmadd_ps(d1, _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), tbl), m1);
    } else {
        const uint8_t *q = blk + 64 + kk * QW;
        *w0 = _mm512_mul_ps(d0, _mm512_cvtepi32_ps(
                                    _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q))));
        *w1 = _mm512_mul_ps(d1, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                    _mm_loadu_si128((const __m128i *)(q + 16)))));
    }
}

/* Fused decode kernel, R rows x one quant panel (32 outputs): dequantize each k's 32 weights
 * once (exactly, see the file comment) and run every row's chain on them. */
static inline __attribute__((always_inline)) void qgemv_body(const int R, const int G,
                                                             const int qt, int64_t K,
                                                             const float *A, int64_t lda,
                                                             const uint8_t *P, int64_t pb,
                                                             float *out) {
    const __m512 tbl = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const int64_t nb = K / QB, bb = qblock_bytes(qt);
    __m512 acc[QMAX_M][2][2];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 2
        for (int g = 0; g < G; g++) acc[i][g][0] = acc[i][g][1] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk[2];
        __m512 d0[2], d1[2], m0[2], m1[2];
        qpanel_blocks(G, qt, P, pb, b * bb, blk, d0, d1, m0, m1);
        const float *a = A + b * QB;
#pragma GCC unroll 2
        for (int kk = 0; kk < QB; kk++) {
            __m512 w0[2], w1[2];
#pragma GCC unroll 2
            for (int g = 0; g < G; g++)
                qblock_weights(qt, blk[g], kk, tbl, d0[g], d1[g], m0[g], m1[g], &w0[g], &w1[g]);
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                __m512 x = _mm512_set1_ps(a[i * lda + kk]);
#pragma GCC unroll 2
                for (int g = 0; g < G; g++) {
                    acc[i][g][0] = _mm512_fmadd_ps(x, w0[g], acc[i][g][0]);
                    acc[i][g][1] = _mm512_fmadd_ps(x, w1[g], acc[i][g][1]);
                }
            }
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 2
        for (int g = 0; g < G; g++) {
            _mm512_storeu_ps(out + (i * G + g) * QW, acc[i][g][0]);
            _mm512_storeu_ps(out + (i * G + g) * QW + 16, acc[i][g][1]);
        }
}

/* out is R x (G*QW): row i, panel g at out + (i*G + g)*QW. */
typedef void (*qgemv_fn)(int64_t K, const float *A, int64_t lda, const uint8_t *P, int64_t pb,
                         float *out);
#define DEFINE_QGEMV(R, G, QT, SUF)                                                          \
    static void qg##SUF(int64_t K, const float *A, int64_t lda, const uint8_t *P, int64_t pb, \
                        float *out) {                                                        \
        qgemv_body(R, G, QT, K, A, lda, P, pb, out);                                         \
    }
/* The specialised shapes (rows R, panels G, type) of a kernel body, named P##SUF: R = 1..4
 * rows on one panel, and two panels at once for one or two rows (twice the independent FMA
 * chains per weight load). ONE[qt][R] and TWO[qt][R] index them. */
#define QKERNEL_SHAPES(X)                                                                     \
    X(1, 1, QT_Q4_1, 41_1) X(2, 1, QT_Q4_1, 41_2) X(3, 1, QT_Q4_1, 41_3)                       \
    X(4, 1, QT_Q4_1, 41_4) X(1, 1, QT_Q8_0, 80_1) X(2, 1, QT_Q8_0, 80_2)                       \
    X(3, 1, QT_Q8_0, 80_3) X(4, 1, QT_Q8_0, 80_4) X(1, 2, QT_Q4_1, 41_1x2)                     \
    X(2, 2, QT_Q4_1, 41_2x2) X(1, 2, QT_Q8_0, 80_1x2) X(2, 2, QT_Q8_0, 80_2x2)
#define QKERNEL_TABLES(T, P, ONE, TWO)                                                        \
    static const T ONE[2][QMAX_M + 1] = {{NULL, P##41_1, P##41_2, P##41_3, P##41_4},           \
                                         {NULL, P##80_1, P##80_2, P##80_3, P##80_4}};          \
    static const T TWO[2][3] = {{NULL, P##41_1x2, P##41_2x2}, {NULL, P##80_1x2, P##80_2x2}};
QKERNEL_SHAPES(DEFINE_QGEMV)
QKERNEL_TABLES(qgemv_fn, qg, QGEMV, QGEMV2)

/* Dequantize one quant panel into a K x QW fp32 panel (the GEMM's packed layout when
 * NR == QW), with the fused kernel's exact vector dequantization. */
static void dequant_panel_avx512(int qt, int64_t K, const uint8_t *P, float *dst) {
    const __m512 tbl = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const int64_t nb = K / QB, bb = qblock_bytes(qt);
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk;
        __m512 d0, d1, m0, m1;
        qpanel_blocks(1, qt, P, 0, b * bb, &blk, &d0, &d1, &m0, &m1);
        float *o = dst + b * QB * QW;
        for (int kk = 0; kk < QB; kk++) {
            __m512 w0, w1;
            qblock_weights(qt, blk, kk, tbl, d0, d1, m0, m1, &w0, &w1);
            _mm512_storeu_ps(o + kk * QW, w0);
            _mm512_storeu_ps(o + kk * QW + 16, w1);
        }
    }
}
#endif

/* Output columns [p0*QW, min(p1*QW, N)) of C[M, N] from quant panels p0..p1-1. */
static void qlinear_range(int qt, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                          const uint8_t *Q, float *C, int64_t ldc, int64_t p0, int64_t p1) {
    const int64_t pb = repops_qpanel_bytes(qt, K);
#if defined(__AVX512F__)
    if (M <= QMAX_M) {
        float out[QMAX_M * QW * 2];
        for (int64_t p = p0; p < p1;) {
            const int g = M <= 2 && p + 1 < p1 ? 2 : 1;
            (g == 2 ? QGEMV2[qt][M] : QGEMV[qt][M])(K, A, lda, Q + p * pb, pb, out);
            int64_t n0 = p * QW, nc = N - n0 < g * QW ? N - n0 : g * QW;
            for (int64_t i = 0; i < M; i++)
                memcpy(C + i * ldc + n0, out + i * g * QW, (size_t)nc * sizeof(float));
            p += g;
        }
        for (int64_t i = 0; i < M; i++) {
            int64_t n0 = p0 * QW, n1 = p1 * QW < N ? p1 * QW : N;
            repops_canon_array(C + i * ldc + n0, n1 - n0);
        }
        return;
    }
#endif
    float *buf = aligned_alloc(64, sizeof(float) * (size_t)(K * QW * QGROUP));
    for (int64_t p = p0; p < p1; p += QGROUP) {
        int64_t np = p1 - p < QGROUP ? p1 - p : QGROUP;
#if defined(__AVX512F__)
        if (repops_pack_width() == QW) {
            for (int64_t i = 0; i < np; i++)
                dequant_panel_avx512(qt, K, Q + (p + i) * pb, buf + i * K * QW);
        } else
#endif
            dequant_panels(qt, K, Q + p * pb, np, buf);
        int64_t n0 = p * QW, nc = N - n0 < np * QW ? N - n0 : np * QW;
        repops_gemm_packed_serial(M, nc, K, A, lda, buf, C + n0, ldc);
    }
    free(buf);
}

struct qjob {
    int qt;
    int64_t M, N, K;
    const float *A;
    int64_t lda;
    const uint8_t *Q;
    float *C;
    int64_t ldc, npanels, nchunks;
};

static void qchunk(void *ctx, int64_t i) {
    const struct qjob *j = ctx;
    int64_t p0 = j->npanels * i / j->nchunks, p1 = j->npanels * (i + 1) / j->nchunks;
    if (p1 > p0) qlinear_range(j->qt, j->M, j->N, j->K, j->A, j->lda, j->Q, j->C, j->ldc, p0, p1);
}

/* Spec §3.3: C[M, N] = A[M, K] W^T with W as quant panels (repops_qpack). Pool threads take
 * disjoint panel ranges; each output's chain runs in one chunk, so threads change no bit. */
void repops_linear_q(int qt, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                     const uint8_t *Q, float *C, int64_t ldc, int nthreads) {
    if (M <= 0 || N <= 0) return;
    const int64_t npanels = (N + QW - 1) / QW;
    double work = M <= QMAX_M ? (double)N * (double)K : (double)M * (double)N * (double)K / 8.0;
    if (work < 4194304.0) nthreads = 1;
    int64_t per = M <= QMAX_M ? 1 : QGROUP; /* panels per chunk at least */
    int64_t nchunks = nthreads > 1 ? npanels / per : 1;
    if (nchunks > 8 * nthreads) nchunks = 8 * nthreads;
    if (nchunks < 1) nchunks = 1;
    struct qjob job = {qt, M, N, K, A, lda, Q, C, ldc, npanels, nchunks};
    REPOPS_FP_ENTER;
    repops_pool_run(nchunks, qchunk, &job, nthreads);
    REPOPS_FP_EXIT;
}

/* Exact dequantization of the quant panels back to W[N, K] (ADR 0003 values), for tests and
 * for callers that need the fp32 weight. */
void repops_qdequant(int qt, int64_t N, int64_t K, const uint8_t *Q, float *W) {
    REPOPS_FP_ENTER;
    const int64_t nb = K / QB, bb = qblock_bytes(qt);
    for (int64_t n = 0; n < N; n++)
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = Q + ((n / QW) * nb + b) * bb;
            for (int kk = 0; kk < QB; kk++) W[n * K + b * QB + kk] = qweight(qt, blk, (int)(n % QW), kk);
        }
    REPOPS_FP_EXIT;
}

/* ------------------------------------------------------------------------------------------
 * Segmented chains on quant panels: every k-segment of one weight linear in one call
 * (docs/trace-layout.md §L5.3, §L8: a linear is DOT segments [0, e0), [e0, e1), ..., segment
 * s starting from segment s-1's output).
 *
 * Why this is the spec chain with no re-check: each output's §3.1 chain acc = fma(x[k], w[n, k],
 * acc) runs once over k ascending from +0.0, and the running accumulator is stored at every
 * segment end. Segment s of §L5.3 continues from segment s-1's *output*, which is this same
 * accumulator after canon (§1.2); canon only changes a NaN's payload, and a NaN accumulator
 * stays NaN through every later fma, so storing canon(acc) at each end gives every segment's
 * bits, signed zeros included (no fma(1, acc, +0) restart that turns -0 into +0, no zero
 * products). A segment past K (end == previous end) copies the accumulator, as §L5.3 says.
 * Weights are the §6.15 / ADR 0003 values, dequantized in-kernel exactly as qgemv_body does.
 *
 * C is [nseg, M, N] (segment stride sstride, row stride ldc). ends[s] = min(k1(s), K): non-
 * decreasing, ends[nseg-1] <= K (checked by repops_linear_q_segments).
 */

/* Portable path (any ISA; also the test oracle of the vector path): one output at a time. */
static void qseg_portable(int qt, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                          const uint8_t *Q, int64_t nseg, const int64_t *ends, float *C,
                          int64_t sstride, int64_t ldc, int64_t p0, int64_t p1) {
    const int64_t nb = K / QB, bb = qblock_bytes(qt);
    for (int64_t p = p0; p < p1; p++)
        for (int j = 0; j < QW && p * QW + j < N; j++)
            for (int64_t i = 0; i < M; i++) {
                const int64_t n = p * QW + j;
                float acc = 0.0f; /* §3.1: the chain starts from +0.0 */
                int64_t s = 0;
                for (int64_t k = 0; s < nseg; k++) {
                    while (s < nseg && ends[s] == k) C[s++ * sstride + i * ldc + n] = repops_canon(acc);
                    if (s >= nseg) break;
                    const uint8_t *blk = Q + (p * nb + k / QB) * bb;
                    acc = fmaf(A[i * lda + k], qweight(qt, blk, j, (int)(k % QB)), acc);
                }
            }
}

#if defined(__AVX512F__)
/* R rows x G quant panels (G*32 outputs, the first nc of them real). */
static inline __attribute__((always_inline)) void qseg_body(const int R, const int G,
                                                            const int qt, const float *A,
                                                            int64_t lda, const uint8_t *P,
                                                            int64_t pb, int64_t nseg,
                                                            const int64_t *ends, float *C,
                                                            int64_t sstride, int64_t ldc,
                                                            int64_t nc) {
    const __m512 tbl = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 qnan = _mm512_castsi512_ps(_mm512_set1_epi32((int)REPOPS_CANON_NAN_BITS));
    const int64_t bb = qblock_bytes(qt);
    __mmask16 live[2][2];
    __m512 acc[QMAX_M][2][2];
#pragma GCC unroll 2
    for (int g = 0; g < G; g++)
        for (int h = 0; h < 2; h++) {
            int64_t c = nc - g * QW - h * 16;
            live[g][h] = c >= 16 ? (__mmask16)0xFFFF : c <= 0 ? 0 : (__mmask16)((1u << c) - 1);
        }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 2
        for (int g = 0; g < G; g++) acc[i][g][0] = acc[i][g][1] = _mm512_setzero_ps();
/* §1.2: the stored output is canon(acc); the running acc itself continues (see above) */
#define QSEG_STORE(S)                                                                          \
    for (int i = 0; i < R; i++)                                                                \
        for (int g = 0; g < G; g++)                                                            \
            for (int h = 0; h < 2; h++) {                                                      \
                __m512 v = acc[i][g][h];                                                       \
                v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), qnan);       \
                _mm512_mask_storeu_ps(C + (S) * sstride + i * ldc + g * QW + h * 16,          \
                                      live[g][h], v);                                          \
            }
    int64_t s = 0;
    while (s < nseg && ends[s] == 0) { /* an empty first segment: +0.0 */
        QSEG_STORE(s);
        s++;
    }
    for (int64_t b = 0; s < nseg; b++) {
        const int64_t kb = b * QB;
        const uint8_t *blk[2];
        __m512 d0[2], d1[2], m0[2], m1[2];
        qpanel_blocks(G, qt, P, pb, b * bb, blk, d0, d1, m0, m1);
        const float *a = A + kb;
        int kk = 0;
        while (kk < QB && s < nseg) {
            /* ends[s] > kb + kk here: ends at or before it were stored below */
            const int stop = ends[s] - kb < QB ? (int)(ends[s] - kb) : QB;
            for (; kk < stop; kk++) {
                __m512 w0[2], w1[2];
#pragma GCC unroll 2
                for (int g = 0; g < G; g++)
                    qblock_weights(qt, blk[g], kk, tbl, d0[g], d1[g], m0[g], m1[g], &w0[g],
                                   &w1[g]);
#pragma GCC unroll 4
                for (int i = 0; i < R; i++) { /* §3.1: acc = fma(x[k], w[n, k], acc) */
                    __m512 x = _mm512_set1_ps(a[i * lda + kk]);
#pragma GCC unroll 2
                    for (int g = 0; g < G; g++) {
                        acc[i][g][0] = _mm512_fmadd_ps(x, w0[g], acc[i][g][0]);
                        acc[i][g][1] = _mm512_fmadd_ps(x, w1[g], acc[i][g][1]);
                    }
                }
            }
            while (s < nseg && ends[s] == kb + kk) { /* segment end(s): §L5.3 outputs */
                QSEG_STORE(s);
                s++;
            }
        }
    }
#undef QSEG_STORE
}

typedef void (*qseg_fn)(const float *A, int64_t lda, const uint8_t *P, int64_t pb, int64_t nseg,
                        const int64_t *ends, float *C, int64_t sstride, int64_t ldc, int64_t nc);
#define DEFINE_QSEG(R, G, QT, SUF)                                                            \
    static void qs##SUF(const float *A, int64_t lda, const uint8_t *P, int64_t pb, int64_t nseg, \
                        const int64_t *ends, float *C, int64_t sstride, int64_t ldc,           \
                        int64_t nc) {                                                          \
        qseg_body(R, G, QT, A, lda, P, pb, nseg, ends, C, sstride, ldc, nc);                   \
    }
QKERNEL_SHAPES(DEFINE_QSEG)
QKERNEL_TABLES(qseg_fn, qs, QSEG, QSEG2)
#endif

#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
/* The same chains on AVX2 hosts (no AVX-512): a panel's 32 lanes as 4 x 8 floats, R rows of
 * one panel. Weights are the §6.15 / ADR 0003 values exactly as qweight (Q4_1 fma(d, q, m),
 * Q8_0 d*q; the nibble/int8 -> float conversions are exact), and each lane's chain is the
 * §3.1 ascending-k fma chain: bit-identical to the portable path (tests compare the two). */
#define QSEG_AVX2 1
static inline __attribute__((always_inline)) void qseg_store8(float *dst, __m256 v, int64_t c) {
    const __m256 qnan = _mm256_castsi256_ps(_mm256_set1_epi32((int)REPOPS_CANON_NAN_BITS));
    v = _mm256_blendv_ps(v, qnan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q)); /* §1.2 canon */
    if (c >= 8) {
        _mm256_storeu_ps(dst, v);
    } else if (c > 0) {
        _mm256_maskstore_ps(dst, repops_first_lanes8(c), v);
    }
}

static inline __attribute__((always_inline)) void qseg_body_avx2(const int R, const int qt,
                                                                 const float *A, int64_t lda,
                                                                 const uint8_t *P, int64_t nseg,
                                                                 const int64_t *ends, float *C,
                                                                 int64_t sstride, int64_t ldc,
                                                                 int64_t nc) {
    const int64_t bb = qblock_bytes(qt);
    const __m256i low = _mm256_set1_epi32(0xF);
    __m256 acc[QMAX_M][4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
        for (int h = 0; h < 4; h++) acc[i][h] = _mm256_setzero_ps();
#define QSEG_STORE8(S)                                                                         \
    for (int i = 0; i < R; i++)                                                                \
        for (int h = 0; h < 4; h++)                                                            \
            qseg_store8(C + (S) * sstride + i * ldc + h * 8, acc[i][h], nc - h * 8);
    int64_t s = 0;
    while (s < nseg && ends[s] == 0) { /* an empty first segment: +0.0 */
        QSEG_STORE8(s);
        s++;
    }
    for (int64_t b = 0; s < nseg; b++) {
        const int64_t kb = b * QB;
        const uint8_t *blk = P + b * bb;
        __m256 d[4], m[4];
        for (int h = 0; h < 4; h++) {
            d[h] = m[h] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16 * h)));
            if (qt == QT_Q4_1)
                m[h] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 64 + 16 * h)));
        }
        const float *a = A + kb;
        int kk = 0;
        while (kk < QB && s < nseg) {
            const int stop = ends[s] - kb < QB ? (int)(ends[s] - kb) : QB;
            for (; kk < stop; kk++) {
                __m256 w[4];
                if (qt == QT_Q4_1) { /* lanes 0-15: low nibbles of bytes 0-15; 16-31: high */
                    const uint8_t *q = blk + 128 + kk * 16;
                    __m256i v0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)q));
                    __m256i v1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q + 8)));
                    w[0] = _mm256_fmadd_ps(d[0], _mm256_cvtepi32_ps(_mm256_and_si256(v0, low)), m[0]);
                    w[1] = _mm256_fmadd_ps(d[1], _mm256_cvtepi32_ps(_mm256_and_si256(v1, low)), m[1]);
                    w[2] = _mm256_fmadd_ps(d[2], _mm256_cvtepi32_ps(_mm256_srli_epi32(v0, 4)), m[2]);
                    w[3] = _mm256_fmadd_ps(d[3], _mm256_cvtepi32_ps(_mm256_srli_epi32(v1, 4)), m[3]);
                } else {
                    const uint8_t *q = blk + 64 + kk * QW;
                    for (int h = 0; h < 4; h++)
                        w[h] = _mm256_mul_ps(d[h], _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                                                       _mm_loadl_epi64((const __m128i *)(q + 8 * h)))));
                }
#pragma GCC unroll 4
                for (int i = 0; i < R; i++) { /* §3.1: acc = fma(x[k], w[n, k], acc) */
                    const __m256 x = _mm256_set1_ps(a[i * lda + kk]);
                    for (int h = 0; h < 4; h++) acc[i][h] = _mm256_fmadd_ps(x, w[h], acc[i][h]);
                }
            }
            while (s < nseg && ends[s] == kb + kk) { /* segment end(s): §L5.3 outputs */
                QSEG_STORE8(s);
                s++;
            }
        }
    }
#undef QSEG_STORE8
}

typedef void (*qseg8_fn)(const float *A, int64_t lda, const uint8_t *P, int64_t nseg,
                         const int64_t *ends, float *C, int64_t sstride, int64_t ldc, int64_t nc);
#define DEFINE_QSEG8(R, QT, SUF)                                                               \
    static void q8s##SUF(const float *A, int64_t lda, const uint8_t *P, int64_t nseg,           \
                         const int64_t *ends, float *C, int64_t sstride, int64_t ldc,          \
                         int64_t nc) {                                                         \
        qseg_body_avx2(R, QT, A, lda, P, nseg, ends, C, sstride, ldc, nc);                    \
    }
DEFINE_QSEG8(1, QT_Q4_1, 41_1) DEFINE_QSEG8(2, QT_Q4_1, 41_2) DEFINE_QSEG8(3, QT_Q4_1, 41_3)
DEFINE_QSEG8(4, QT_Q4_1, 41_4) DEFINE_QSEG8(1, QT_Q8_0, 80_1) DEFINE_QSEG8(2, QT_Q8_0, 80_2)
DEFINE_QSEG8(3, QT_Q8_0, 80_3) DEFINE_QSEG8(4, QT_Q8_0, 80_4)
static const qseg8_fn QSEG8[2][QMAX_M + 1] = {{NULL, q8s41_1, q8s41_2, q8s41_3, q8s41_4},
                                              {NULL, q8s80_1, q8s80_2, q8s80_3, q8s80_4}};
#endif

struct qseg_job {
    int qt, portable;
    int64_t M, N, K;
    const float *A;
    int64_t lda;
    const uint8_t *Q;
    int64_t nseg;
    const int64_t *ends;
    float *C;
    int64_t npanels, nchunks, unit;
};

/* Panels [p0, p1): every row group (at most QMAX_M rows) runs on a panel while it is in cache.
 * Chunks are whole units of `unit` panels (2 for one or two rows: the two-panel kernel). */
static void qseg_chunk(void *ctx, int64_t ci) {
    const struct qseg_job *j = ctx;
    const int64_t nu = (j->npanels + j->unit - 1) / j->unit;
    int64_t p0 = j->unit * (nu * ci / j->nchunks), p1 = j->unit * (nu * (ci + 1) / j->nchunks);
    if (p1 > j->npanels) p1 = j->npanels;
    const int64_t sstride = j->M * j->N, ldc = j->N;
    REPOPS_FP_ENTER; /* pool workers have their own MXCSR (§1.1: no FTZ/DAZ, RNE) */
#if defined(__AVX512F__)
    if (!j->portable) {
        const int64_t pb = repops_qpanel_bytes(j->qt, j->K);
        for (int64_t p = p0; p < p1;) {
            const int g = j->M <= 2 && p + 1 < p1 ? 2 : 1;
            const int64_t n0 = p * QW, nc = j->N - n0 < g * QW ? j->N - n0 : g * QW;
            for (int64_t i0 = 0; i0 < j->M; i0 += QMAX_M) {
                const int r = j->M - i0 < QMAX_M ? (int)(j->M - i0) : QMAX_M;
                (g == 2 ? QSEG2[j->qt][r] : QSEG[j->qt][r])(
                    j->A + i0 * j->lda, j->lda, j->Q + p * pb, pb, j->nseg, j->ends,
                    j->C + i0 * ldc + n0, sstride, ldc, nc);
            }
            p += g;
        }
        REPOPS_FP_EXIT;
        return;
    }
#elif defined(QSEG_AVX2)
    if (!j->portable) {
        const int64_t pb = repops_qpanel_bytes(j->qt, j->K);
        for (int64_t p = p0; p < p1; p++) {
            const int64_t n0 = p * QW, nc = j->N - n0 < QW ? j->N - n0 : QW;
            for (int64_t i0 = 0; i0 < j->M; i0 += QMAX_M) {
                const int r = j->M - i0 < QMAX_M ? (int)(j->M - i0) : QMAX_M;
                QSEG8[j->qt][r](j->A + i0 * j->lda, j->lda, j->Q + p * pb, j->nseg, j->ends,
                                j->C + i0 * ldc + n0, sstride, ldc, nc);
            }
        }
        REPOPS_FP_EXIT;
        return;
    }
#endif
    if (p1 > p0)
        qseg_portable(j->qt, j->M, j->N, j->K, j->A, j->lda, j->Q, j->nseg, j->ends, j->C,
                      sstride, ldc, p0, p1);
    REPOPS_FP_EXIT;
}

/* All segments of x W^T at once (see above): A[M, K] (row stride lda), W as quant panels
 * (repops_qpack), ends[nseg] the segment ends clipped to K; C[nseg, M, N]. Threads take
 * disjoint panel ranges and each output's whole chain runs in one chunk (§3.1), so the thread
 * count changes no bit. portable = 1 forces the scalar path (tests compare the two).
 * Returns 0, or -1 when the ends are not non-decreasing within [0, K] (nothing written). */
int repops_linear_q_segments(int qt, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                             const uint8_t *Q, int64_t nseg, const int64_t *ends, float *C,
                             int nthreads, int portable) {
    if (nseg < 1 || (qt != QT_Q4_1 && qt != QT_Q8_0) || K % QB) return -1;
    for (int64_t s = 0; s < nseg; s++)
        if (ends[s] < (s ? ends[s - 1] : 0) || ends[s] > K) return -1;
    if (M <= 0 || N <= 0) return 0;
    const int64_t npanels = (N + QW - 1) / QW;
    /* decode is memory bound: thread like repops_linear_q, on the weight bytes streamed once
     * per row group */
    double work = (double)((M + QMAX_M - 1) / QMAX_M) * (double)N * (double)ends[nseg - 1];
    if (work < QSEG_THREAD_WORK) nthreads = 1;
    /* one or two rows: chunks of panel pairs, so that every panel runs in the two-panel
     * kernel (four fma chains a k instead of two: one panel alone waits on fma latency) */
    const int64_t unit = M <= 2 ? 2 : 1, nunits = (npanels + unit - 1) / unit;
    int64_t nchunks = nthreads > 1 ? nunits : 1;
    if (nchunks > 8 * nthreads) nchunks = 8 * nthreads;
    struct qseg_job job = {qt, portable, M, N, K, A, lda, Q, nseg, ends, C, npanels, nchunks,
                           unit};
    repops_pool_run(nchunks, qseg_chunk, &job, nthreads);
    return 0;
}
