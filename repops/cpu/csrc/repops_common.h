/* Shared helpers of the RepOps v1 CPU reference (docs/repops-spec.md).
 *
 * Everything here is compiled with -O3 -ffp-contract=off -fno-fast-math, so every `a * b + c`
 * written in C is two roundings and every fused step is an explicit fmaf / FMA intrinsic.
 * The vector macros pick AVX-512, AVX2+FMA or scalar at compile time; the build compiles per
 * machine (-march=native) with the CPU flags in the cache key. None of the paths changes a
 * result: all of them run the same per-element sequence of IEEE operations.
 */
#ifndef REPOPS_COMMON_H
#define REPOPS_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
/* Spec §1.2: honour subnormals and round to nearest even whatever the caller's MXCSR says
 * (torch.set_flush_denormal or a library may have set FTZ/DAZ). 0x1F80 = all exceptions
 * masked, RNE, no FTZ, no DAZ. OpenMP workers have their own MXCSR, so every parallel
 * region body uses the guard too. */
#define REPOPS_FP_ENTER unsigned int repops_saved_csr_ = _mm_getcsr(); _mm_setcsr(0x1F80u)
#define REPOPS_FP_EXIT _mm_setcsr(repops_saved_csr_)
#else
#include <fenv.h>
#define REPOPS_FP_ENTER int repops_saved_rnd_ = fegetround(); fesetround(FE_TONEAREST)
#define REPOPS_FP_EXIT fesetround(repops_saved_rnd_)
#endif

#define REPOPS_CANON_NAN_BITS 0x7FC00000u
#define F32_ONE_BITS 0x3F800000u /* binary32 1.0: the sampler's flags (§L5.10) */

static inline float repops_bits_to_f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static inline uint32_t repops_f_to_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* Spec §1.2: any NaN result becomes the canonical quiet NaN 0x7FC00000. */
static inline float repops_canon(float x) {
    return x != x ? repops_bits_to_f(REPOPS_CANON_NAN_BITS) : x;
}

static inline void repops_canon_array(float *x, int64_t n) {
    const float q = repops_bits_to_f(REPOPS_CANON_NAN_BITS);
    for (int64_t i = 0; i < n; i++) x[i] = x[i] != x[i] ? q : x[i];
}

/* Spec §4.2 max2: NaN propagates, max(-0,+0) = +0; otherwise the larger value. */
static inline float repops_max2(float a, float b) {
    if (a != a || b != b) return repops_bits_to_f(REPOPS_CANON_NAN_BITS);
    if (a > b) return a;
    if (b > a) return b;
    /* equal: only a (+0, -0) pair differs in bits; AND of the bits is +0 unless both are -0 */
    return repops_bits_to_f(repops_f_to_bits(a) & repops_f_to_bits(b));
}

/* Spec §4.2 min2: NaN propagates, min(-0,+0) = -0. */
static inline float repops_min2(float a, float b) {
    if (a != a || b != b) return repops_bits_to_f(REPOPS_CANON_NAN_BITS);
    if (a < b) return a;
    if (b < a) return b;
    return repops_bits_to_f(repops_f_to_bits(a) | repops_f_to_bits(b));
}

/* Spec §4.1 folding-tree sum. `buf` has room for P/2 floats (P = next power of two >= n).
 * The first level reads x directly: a missing partner is -0.0, and x + (-0.0) == x, so the
 * element is copied instead of added (bit-identical, including for NaN after canon). */
static inline float repops_fold_sum(const float *x, int64_t n, float *buf) {
    if (n == 0) return -0.0f;
    if (n == 1) return repops_canon(x[0]);
    int64_t p = 1;
    while (p < n) p <<= 1;
    int64_t h = p >> 1;
    int64_t full = n - h; /* pairs (i, i+h) with i + h < n */
    for (int64_t i = 0; i < full; i++) buf[i] = x[i] + x[i + h];
    for (int64_t i = full; i < h; i++) buf[i] = x[i];
    while (h > 1) {
        int64_t q = h >> 1;
        for (int64_t i = 0; i < q; i++) buf[i] = buf[i] + buf[i + q];
        h = q;
    }
    return repops_canon(buf[0]);
}

static inline int64_t repops_fold_buf_len(int64_t n) {
    int64_t p = 1;
    while (p < n) p <<= 1;
    return p > 1 ? p >> 1 : 1;
}

static inline float repops_row_max(const float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = repops_max2(m, x[i]);
    return m;
}

#if defined(__AVX512F__)
#define REPOPS_VW 16
typedef __m512 repops_vf;
#define REPOPS_VLOAD(p) _mm512_loadu_ps(p)
#define REPOPS_VSTORE(p, v) _mm512_storeu_ps((p), (v))
#define REPOPS_VSET1(x) _mm512_set1_ps(x)
#define REPOPS_VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define REPOPS_VZERO() _mm512_setzero_ps()
#define REPOPS_ISA "avx512"
#elif defined(__AVX2__) && defined(__FMA__)
#define REPOPS_VW 8
typedef __m256 repops_vf;
#define REPOPS_VLOAD(p) _mm256_loadu_ps(p)
#define REPOPS_VSTORE(p, v) _mm256_storeu_ps((p), (v))
#define REPOPS_VSET1(x) _mm256_set1_ps(x)
#define REPOPS_VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define REPOPS_VZERO() _mm256_setzero_ps()
#define REPOPS_ISA "avx2"
/* The first n (0..8) of 8 int32 lanes set: the mask of a partial vector's maskload/maskstore. */
static inline __m256i repops_first_lanes8(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#else
#define REPOPS_VW 1
typedef float repops_vf;
#define REPOPS_VLOAD(p) (*(p))
#define REPOPS_VSTORE(p, v) (*(p) = (v))
#define REPOPS_VSET1(x) (x)
#define REPOPS_VFMA(a, b, c) fmaf((a), (b), (c))
#define REPOPS_VZERO() (0.0f)
#define REPOPS_ISA "scalar"
#endif

/* GEMM of the dot chain (spec §3.1), defined in repops_gemm.c and reused by attention. */
void repops_gemm_serial(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const float *B, int64_t rsb, int64_t csb, float *C, int64_t ldc);
/* The same on B pre-packed into repops_pack_width()-wide panels (repops_pack_nk layout); used by
 * the quantized linear after it dequantizes a group of panels. */
void repops_gemm_packed_serial(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                               const float *Bpre, float *C, int64_t ldc);
int repops_pack_width(void);

/* repops_pool.c: run fn(ctx, i) for i in [0, nchunks) on the caller and up to nthreads - 1
 * workers; chunks must write disjoint outputs. */
typedef void (*repops_chunk_fn)(void *ctx, int64_t chunk);
void repops_pool_run(int64_t nchunks, repops_chunk_fn fn, void *ctx, int nthreads);

#endif
