/* Correctly rounded binary32 exp and log (RepOps spec §5; algorithms and error analysis in
 * docs/spec-exp-log.md, section numbers below refer to that document).
 *
 * Scheme (§2): evaluate f(x) in binary64 with explicit fma to a proven relative error below
 * CR_ERR; if both ends of [y - CR_ERR|y|, y + CR_ERR|y|] round to the same binary32 value, that
 * value is the correctly rounded result; otherwise the input is one of the few "hard cases"
 * enumerated exhaustively and served from a table computed with 200-bit arithmetic.
 * Only IEEE-754 binary64 add/sub/mul/div/fma and bit manipulation are used, so the AVX2 path,
 * the portable path and the Triton kernels (repops/gpu/crmath.py) compute identical bits.
 */
#include "crmath.h"

#include "repops_common.h"

/* §3.1 exp constants. */
#define EXP_LOG2E 0x1.71547652b82fep+0
#define EXP_SHIFT 0x1.8p52 /* adding it rounds to an integer (RNE) */
#define LN2_HI 0x1.62e42fefa3a00p-1 /* 44 significant bits: k * LN2_HI exact for |k| < 2^9 */
#define LN2_LO -0x1.0ca86c3898d00p-49
#define EXP_XMIN -104.0f /* exp(-104) < 2^-150: rounds to +0 like everything below */
#define EXP_XMAX 89.0f   /* exp(89) > 2^128: rounds to +inf like everything above */

/* (exp(r) - 1 - r) / r^2 on |r| <= ln2/2, degree 10; |exp(r) - p(r)| < 2^-61.3 exp(r). */
static const double EXP_C[11] = {
    0x1.0000000000000p-1, 0x1.5555555555557p-3, 0x1.5555555555556p-5, 0x1.11111111100dfp-7,
    0x1.6c16c16c162d6p-10, 0x1.a01a01abe6323p-13, 0x1.a01a01a6d7831p-16, 0x1.71de0237484cdp-19,
    0x1.27e4db67ac2b0p-22, 0x1.af4ddda1c08cdp-26, 0x1.1f72fc83bcbc7p-29,
};

/* §3.2 log constants: R(z)/z with log1p(f) = 2s + s R(s^2), s = f / (2 + f), |s| <= 0.1716,
 * degree 7 in z = s^2; relative error of 2s + sR below 2^-60.6. */
static const double LOG_C[8] = {
    0x1.5555555555555p-1, 0x1.9999999999a38p-2, 0x1.2492492476bf2p-2, 0x1.c71c7201712d2p-3,
    0x1.745cf8fa80a6ep-3, 0x1.3b1c377d3240fp-3, 0x1.0fbe5ca9fd6f9p-3, 0x1.0c05f222f1ac5p-3,
};
#define SQRT2_MANT 0x6a09e667f3bcdULL /* fraction bits of the binary64 nearest sqrt(2) */
#define MANT_MASK 0x000fffffffffffffULL

/* §2: proven bound on the relative error of the binary64 approximations is below 2^-51.9
 * (exp) and 2^-51.7 (log); the test uses 2^-51, whose fma-rounded ends still enclose them. */
#define CR_ERR 0x1p-51

#define ALWAYS_INLINE static inline __attribute__((always_inline))

ALWAYS_INLINE uint64_t d_bits(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }
ALWAYS_INLINE double bits_d(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }

/* §3.1: exp(x) = 2^k exp(r), r = x - k ln2 (Cody-Waite, first step exact), |r| <= 0.3466.
 * Requires x in [EXP_XMIN, EXP_XMAX]. */
ALWAYS_INLINE double exp_core(double x) {
    double t = fma(x, EXP_LOG2E, EXP_SHIFT);
    double kd = t - EXP_SHIFT;
    int64_t k = (int64_t)(d_bits(t) - d_bits(EXP_SHIFT));
    double r = fma(kd, -LN2_HI, x);
    r = fma(kd, -LN2_LO, r);
    double q = fma(EXP_C[10], r, EXP_C[9]); /* Horner, written out so loops vectorize */
    q = fma(q, r, EXP_C[8]);
    q = fma(q, r, EXP_C[7]);
    q = fma(q, r, EXP_C[6]);
    q = fma(q, r, EXP_C[5]);
    q = fma(q, r, EXP_C[4]);
    q = fma(q, r, EXP_C[3]);
    q = fma(q, r, EXP_C[2]);
    q = fma(q, r, EXP_C[1]);
    q = fma(q, r, EXP_C[0]);
    double u = fma(q, r, 1.0);
    double p = fma(u, r, 1.0);
    return p * bits_d((uint64_t)(k + 1023) << 52);
}

/* §3.2: log(x) = e ln2 + log1p(f), x = 2^e (1 + f), 1 + f in [sqrt2/2, sqrt2); the fdlibm
 * arrangement keeps f exact and confines the rounding of s to a damped correction term.
 * Requires x > 0 finite (any binary32 value, subnormals included, is normal in binary64). */
ALWAYS_INLINE double log_core(double x) {
    uint64_t b = d_bits(x);
    uint64_t mb = b & MANT_MASK;
    uint64_t big = mb > SQRT2_MANT;
    uint64_t eb = (b >> 52) + big; /* biased exponent of x, plus one when m is halved */
    double m = bits_d(mb | ((1023 - big) << 52));
    double ed = bits_d(d_bits(EXP_SHIFT) + eb - 1023) - EXP_SHIFT; /* exact int -> double */
    double f = m - 1.0;
    double s = f / (2.0 + f);
    double z = s * s;
    double pz = fma(LOG_C[7], z, LOG_C[6]);
    pz = fma(pz, z, LOG_C[5]);
    pz = fma(pz, z, LOG_C[4]);
    pz = fma(pz, z, LOG_C[3]);
    pz = fma(pz, z, LOG_C[2]);
    pz = fma(pz, z, LOG_C[1]);
    pz = fma(pz, z, LOG_C[0]);
    double hfsq = 0.5 * (f * f);     /* exact: f has at most 23 significant bits */
    double t = fma(z, pz, hfsq);     /* hfsq + R */
    double w = fma(s, t, ed * LN2_LO);
    double v = hfsq - w;
    double g = v - f;
    return fma(ed, LN2_HI, -g);
}

/* §2 rounding test: 1 when the enclosure of the exact value straddles a binary32 boundary.
 * Selections below work on bits with integer operations: GCC does not if-convert floating
 * comparisons under -fno-fast-math (they may trap), which would stop vectorization. */
ALWAYS_INLINE int is_hard(double y) {
    return repops_f_to_bits((float)fma(y, -CR_ERR, y)) != repops_f_to_bits((float)fma(y, CR_ERR, y));
}

/* Branch-free select: cond must be 0 or 1. */
ALWAYS_INLINE uint32_t sel32(int cond, uint32_t a, uint32_t b) {
    uint32_t m = 0u - (uint32_t)cond;
    return (a & m) | (b & ~m);
}

#define BITS_104 0x42d00000u /* 104.0f */
#define BITS_89 0x42b20000u  /* 89.0f */
#define BITS_INF 0x7f800000u

/* RepOps spec §5 special values: exp(NaN) = NaN, exp(-inf) = +0, exp(+inf) = +inf. */
ALWAYS_INLINE float exp_fast(float x, int *hard) {
    uint32_t ux = repops_f_to_bits(x), ax = ux & 0x7fffffffu;
    int neg = (int)(ux >> 31), nan = ax > BITS_INF;
    uint32_t uc = sel32(neg & (ax > BITS_104), BITS_104 | 0x80000000u, ux);
    uc = sel32((neg ^ 1) & (ax > BITS_89), BITS_89, uc); /* +NaN lands here too, replaced below */
    uc = sel32(nan, 0u, uc);
    double y = exp_core((double)repops_bits_to_f(uc));
    *hard = is_hard(y);
    uint32_t r = repops_f_to_bits((float)y);
    return repops_bits_to_f(sel32(nan, REPOPS_CANON_NAN_BITS, r));
}

/* log(x < 0) = NaN, log(+-0) = -inf, log(+inf) = +inf, log(NaN) = NaN, log(1) = +0. */
ALWAYS_INLINE float log_fast(float x, int *hard) {
    uint32_t ux = repops_f_to_bits(x);
    int ok = ux - 1u < 0x7f7fffffu; /* +subnormal .. +FLT_MAX */
    double y = log_core((double)repops_bits_to_f(sel32(ok, ux, 0x3f800000u)));
    *hard = ok & is_hard(y);
    uint32_t special = sel32((ux << 1) == 0, 0xff800000u,
                             sel32(ux == BITS_INF, BITS_INF, REPOPS_CANON_NAN_BITS));
    return repops_bits_to_f(sel32(ok, repops_f_to_bits((float)y), special));
}

/* §4 hard-case tables: every input whose approximation fails the rounding test (found by
 * `scripts/check_exp_log_exhaustive.py --find-hard`, which also rewrites these tables), sorted
 * by input bits, with the correctly rounded result bits computed at 200-bit precision. The same
 * pairs are in tests/vectors/exp_log_hard.json and repops/gpu/crmath.py. The last row is a
 * sentinel (a NaN input, never flagged). */
static const uint32_t EXP_HARD[][2] = {
    /* BEGIN HARD TABLE exp */
    {0xBAE0E25Cu, 0x3F7F8FA7u},
    {0xBBF0EDF1u, 0x3F7E1FE9u},
    {0xC16912CDu, 0x34FD331Bu},
    /* END HARD TABLE exp */
    {0xFFFFFFFFu, 0x7FC00000u},
};
static const uint32_t LOG_HARD[][2] = {
    /* BEGIN HARD TABLE log */
    {0x0DC8BBA4u, 0xC289BAC4u},
    {0x111C87F8u, 0xC28085DFu},
    {0x145CB6D4u, 0xC26F092Fu},
    {0x1A8446CBu, 0xC24D0A45u},
    {0x1F116AB8u, 0xC233B53Eu},
    {0x28E3FA26u, 0xC1FA75E0u},
    {0x29E6126Bu, 0xC1EF4C02u},
    {0x29FD22F8u, 0xC1EE8859u},
    {0x2C4C24B7u, 0xC1D48710u},
    {0x2E492984u, 0xC1BE76EEu},
    {0x38DCBE38u, 0xC1128BA4u},
    {0x39C31348u, 0xC0FCAF65u},
    {0x3BF86EF0u, 0xC09C399Eu},
    {0x3C413D3Au, 0xC08E158Fu},
    {0x41178FEBu, 0x400FE5E7u},
    {0x464D5B2Bu, 0x4117BCF1u},
    {0x4665A9A6u, 0x41198725u},
    {0x4C5D65A5u, 0x418F034Bu},
    {0x4D604EBEu, 0x419A352Cu},
    {0x4E85F412u, 0x41A6B811u},
    {0x54AF989Du, 0x41EB6D3Cu},
    {0x5EE8984Eu, 0x422E4A21u},
    {0x65D890D3u, 0x4254D1F9u},
    {0x66A8C860u, 0x42595E46u},
    {0x66ABBD63u, 0x4259700Eu},
    {0x6D1F23EBu, 0x427D2D35u},
    {0x6F31A8ECu, 0x42845A89u},
    {0x79E7EC37u, 0x42A1FFB7u},
    /* END HARD TABLE log */
    {0xFFFFFFFFu, 0x7FC00000u},
};
#define EXP_NHARD ((int64_t)(sizeof EXP_HARD / sizeof EXP_HARD[0]) - 1)
#define LOG_NHARD ((int64_t)(sizeof LOG_HARD / sizeof LOG_HARD[0]) - 1)

static float hard_lookup(const uint32_t (*tab)[2], int64_t n, float x, float fallback) {
    uint32_t key = repops_f_to_bits(x);
    int64_t lo = 0, hi = n - 1;
    while (lo <= hi) {
        int64_t mid = (lo + hi) / 2;
        if (tab[mid][0] == key) return repops_bits_to_f(tab[mid][1]);
        if (tab[mid][0] < key) lo = mid + 1; else hi = mid - 1;
    }
    return fallback; /* unreachable for inputs flagged by is_hard (proven exhaustively) */
}

float repops_expf(float x) {
    REPOPS_FP_ENTER;
    int hard;
    float r = exp_fast(x, &hard);
    if (hard) r = hard_lookup(EXP_HARD, EXP_NHARD, x, r);
    REPOPS_FP_EXIT;
    return r;
}

float repops_logf(float x) {
    REPOPS_FP_ENTER;
    int hard;
    float r = log_fast(x, &hard);
    if (hard) r = hard_lookup(LOG_HARD, LOG_NHARD, x, r);
    REPOPS_FP_EXIT;
    return r;
}

/* Array versions: a branch-free loop over blocks (vectorized by the compiler), then a scalar
 * fix-up of the rare hard cases of the block. The inputs of a block are copied first so that
 * x == y (in place) works. */
#define CR_BLOCK 256
#define DEFINE_ARRAY(NAME, FAST, TAB, NTAB, ATTR)                                        \
    ATTR static void NAME(const float *x, float *y, int64_t n) {                         \
        float xb[CR_BLOCK], yb[CR_BLOCK];                                                \
        int hb[CR_BLOCK];                                                                \
        for (int64_t i0 = 0; i0 < n; i0 += CR_BLOCK) {                                   \
            int m = (int)(n - i0 < CR_BLOCK ? n - i0 : CR_BLOCK);                        \
            memcpy(xb, x + i0, (size_t)m * sizeof(float));                               \
            int any = 0;                                                                 \
            for (int j = 0; j < m; j++) {                                                \
                yb[j] = FAST(xb[j], &hb[j]);                                             \
                any |= hb[j];                                                            \
            }                                                                            \
            if (any)                                                                     \
                for (int j = 0; j < m; j++)                                              \
                    if (hb[j]) yb[j] = hard_lookup(TAB, NTAB, xb[j], yb[j]);             \
            memcpy(y + i0, yb, (size_t)m * sizeof(float));                               \
        }                                                                                \
    }

DEFINE_ARRAY(exp_array_portable, exp_fast, EXP_HARD, EXP_NHARD, )
DEFINE_ARRAY(log_array_portable, log_fast, LOG_HARD, LOG_NHARD, )

#if defined(__x86_64__) && defined(__GNUC__)
/* Same operations, compiled for AVX2+FMA so that fma() is one instruction and the loop is
 * vectorized even when the build does not pass -march. Results are identical by IEEE-754. */
#define CR_HAVE_AVX2 1
DEFINE_ARRAY(exp_array_avx2, exp_fast, EXP_HARD, EXP_NHARD, __attribute__((target("avx2,fma"))))
DEFINE_ARRAY(log_array_avx2, log_fast, LOG_HARD, LOG_NHARD, __attribute__((target("avx2,fma"))))

static int cpu_has_avx2_fma(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
}
#endif

void repops_exp_f32(const float *x, float *y, int64_t n) {
    REPOPS_FP_ENTER;
#ifdef CR_HAVE_AVX2
    if (cpu_has_avx2_fma()) exp_array_avx2(x, y, n); else
#endif
    exp_array_portable(x, y, n);
    REPOPS_FP_EXIT;
}

void repops_log_f32(const float *x, float *y, int64_t n) {
    REPOPS_FP_ENTER;
#ifdef CR_HAVE_AVX2
    if (cpu_has_avx2_fma()) log_array_avx2(x, y, n); else
#endif
    log_array_portable(x, y, n);
    REPOPS_FP_EXIT;
}

/* Audit hooks (§4). */
void repops_crmath_approx_f64(int which, const float *x, double *y, int64_t n) {
    REPOPS_FP_ENTER;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        if (which == 0) {
            float c = v < EXP_XMIN ? EXP_XMIN : (v > EXP_XMAX ? EXP_XMAX : v);
            y[i] = v != v ? (double)v : exp_core((double)c);
        } else {
            y[i] = (v > 0.0f && v < INFINITY) ? log_core((double)v) : (double)repops_logf(v);
        }
    }
    REPOPS_FP_EXIT;
}

/* Flags of the inputs first_bits .. first_bits + count - 1, vectorized like the array paths. */
#define DEFINE_FIND(NAME, FAST, ATTR)                                                    \
    ATTR static int64_t NAME(uint32_t first, int64_t count, uint32_t *out, int64_t cap) { \
        int64_t found = 0;                                                               \
        int hb[CR_BLOCK];                                                                \
        for (int64_t i0 = 0; i0 < count; i0 += CR_BLOCK) {                               \
            int m = (int)(count - i0 < CR_BLOCK ? count - i0 : CR_BLOCK);                \
            int any = 0;                                                                 \
            for (int j = 0; j < m; j++) {                                                \
                FAST(repops_bits_to_f(first + (uint32_t)(i0 + j)), &hb[j]);              \
                any |= hb[j];                                                            \
            }                                                                            \
            for (int j = 0; any && j < m; j++)                                           \
                if (hb[j]) {                                                             \
                    if (found < cap) out[found] = first + (uint32_t)(i0 + j);            \
                    found++;                                                             \
                }                                                                        \
        }                                                                                \
        return found;                                                                    \
    }

DEFINE_FIND(exp_find_portable, exp_fast, )
DEFINE_FIND(log_find_portable, log_fast, )
#ifdef CR_HAVE_AVX2
DEFINE_FIND(exp_find_avx2, exp_fast, __attribute__((target("avx2,fma"))))
DEFINE_FIND(log_find_avx2, log_fast, __attribute__((target("avx2,fma"))))
#endif

int64_t repops_crmath_find_hard(int which, uint32_t first_bits, int64_t count, uint32_t *out,
                                int64_t cap) {
    REPOPS_FP_ENTER;
    int64_t found;
#ifdef CR_HAVE_AVX2
    if (cpu_has_avx2_fma())
        found = which == 0 ? exp_find_avx2(first_bits, count, out, cap)
                           : log_find_avx2(first_bits, count, out, cap);
    else
#endif
        found = which == 0 ? exp_find_portable(first_bits, count, out, cap)
                           : log_find_portable(first_bits, count, out, cap);
    REPOPS_FP_EXIT;
    return found;
}

int64_t repops_crmath_table_size(int which) { return which == 0 ? EXP_NHARD : LOG_NHARD; }

void repops_crmath_table_entry(int which, int64_t i, uint32_t *in_bits, uint32_t *out_bits) {
    const uint32_t (*tab)[2] = which == 0 ? EXP_HARD : LOG_HARD;
    *in_bits = tab[i][0];
    *out_bits = tab[i][1];
}
