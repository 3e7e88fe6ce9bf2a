/* Elementwise ops of RepOps spec §6.1-§6.4 and casts §6.14 on flat contiguous arrays
 * (the Python layer broadcasts first). Each element is one fixed sequence of IEEE ops. */
#include "repops_common.h"
#include "crmath.h"
#ifdef _OPENMP
#include <omp.h>
#endif

enum { OP_ADD = 0, OP_SUB = 1, OP_MUL = 2, OP_DIV = 3, OP_MAX = 4, OP_MIN = 5 };
enum { OP_NEG = 0, OP_SQRT = 1, OP_EXP = 2, OP_LOG = 3, OP_SIGMOID = 4, OP_SILU = 5 };

/* This thread's share [*t0, *t1) of n elements inside an OpenMP parallel region (all of them
 * outside one, or without OpenMP). */
static inline void thread_range(int64_t n, int64_t *t0, int64_t *t1) {
    *t0 = 0;
    *t1 = n;
#ifdef _OPENMP
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    *t0 = n * t / nt;
    *t1 = n * (t + 1) / nt;
#endif
}

/* Spec §2 / §4.2 elementwise binary op. sa / sb are 1 for a full operand and 0 for a single
 * value broadcast to all n (saves materializing a broadcast scalar). */
#define BINARY_LOOP(SA, SB)                                                                  \
    for (int64_t i = 0; i < n; i++) {                                                        \
        float x = a[i * (SA)], y = b[i * (SB)], r;                                           \
        switch (op) {                                                                        \
        case OP_ADD: r = x + y; break;                                                       \
        case OP_SUB: r = x - y; break;                                                       \
        case OP_MUL: r = x * y; break;                                                       \
        case OP_DIV: r = x / y; break;                                                       \
        case OP_MAX: r = repops_max2(x, y); break;                                           \
        default: r = repops_min2(x, y); break;                                               \
        }                                                                                    \
        out[i] = repops_canon(r);                                                            \
    }

void repops_binary(int op, const float *a, const float *b, float *out, int64_t n, int sa,
                   int sb, int nthreads) {
#pragma omp parallel num_threads(nthreads) if (n > (1 << 22))
    {
        REPOPS_FP_ENTER;
        int64_t t0, t1;
        thread_range(n, &t0, &t1);
        const float *a0 = a + t0 * sa, *b0 = b + t0 * sb;
        float *o0 = out + t0;
        {
            const float *a = a0, *b = b0;
            float *out = o0;
            int64_t n = t1 - t0;
            if (sa && sb) {
                BINARY_LOOP(1, 1)
            } else if (sa) {
                BINARY_LOOP(1, 0)
            } else if (sb) {
                BINARY_LOOP(0, 1)
            } else {
                BINARY_LOOP(0, 0)
            }
        }
        REPOPS_FP_EXIT;
    }
}

/* Spec §5 exp/log, §6.3 sigmoid(x) = div(1, add(1, exp(neg(x)))), §6.4 silu(x) =
 * mul(x, sigmoid(x)) over x[0, n) in blocks: the array exp/log (crmath.c: a vectorized loop,
 * the same correctly rounded values as repops_expf/repops_logf, one MXCSR switch a block
 * instead of one an element), then each element's remaining IEEE ops (a SiLU-heavy decode
 * step spent ~5 % of its time in per-element repops_expf calls). x and out may alias. */
#define UNARY_BLOCK 256
static void unary_transcendental(int op, const float *x, float *out, int64_t n) {
    float t[UNARY_BLOCK];
    for (int64_t i0 = 0; i0 < n; i0 += UNARY_BLOCK) {
        const int m = (int)(n - i0 < UNARY_BLOCK ? n - i0 : UNARY_BLOCK);
        const float *xb = x + i0;
        float *ob = out + i0;
        if (op == OP_EXP || op == OP_LOG) {
            if (op == OP_EXP) repops_exp_f32(xb, t, m); else repops_log_f32(xb, t, m);
            for (int j = 0; j < m; j++) ob[j] = repops_canon(t[j]);
            continue;
        }
        for (int j = 0; j < m; j++) t[j] = -xb[j]; /* spec §1.3 neg: the sign bit */
        repops_exp_f32(t, t, m);
        if (op == OP_SIGMOID)
            for (int j = 0; j < m; j++) ob[j] = repops_canon(1.0f / (1.0f + t[j]));
        else
            for (int j = 0; j < m; j++) ob[j] = repops_canon(xb[j] * (1.0f / (1.0f + t[j])));
    }
}

/* Spec §1.3 neg, §2 sqrt, §5 exp/log, §6.3 sigmoid, §6.4 silu = mul(x, sigmoid(x)). */
void repops_unary(int op, const float *x, float *out, int64_t n, int nthreads) {
#pragma omp parallel num_threads(nthreads) if (n > (1 << 20))
    {
        REPOPS_FP_ENTER;
        int64_t t0, t1;
        thread_range(n, &t0, &t1);
        if (op == OP_NEG || op == OP_SQRT) {
            for (int64_t i = t0; i < t1; i++) {
                float v = x[i];
                out[i] = repops_canon(op == OP_NEG
                                          ? repops_bits_to_f(repops_f_to_bits(v) ^ 0x80000000u)
                                          : sqrtf(v));
            }
        } else {
            unary_transcendental(op, x + t0, out + t0, t1 - t0);
        }
        REPOPS_FP_EXIT;
    }
}

/* Spec §6.14: int -> f32 is RN (the MXCSR guard makes the hardware conversion RNE). */
void repops_i64_to_f32(const int64_t *x, float *out, int64_t n) {
    REPOPS_FP_ENTER;
    for (int64_t i = 0; i < n; i++) out[i] = (float)x[i];
    REPOPS_FP_EXIT;
}

/* Spec §6.14: f32 -> int64 truncates toward zero, NaN -> 0, out of range saturates. */
void repops_f32_to_i64(const float *x, int64_t *out, int64_t n) {
    REPOPS_FP_ENTER;
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        if (v != v) out[i] = 0;
        else if (v >= 9223372036854775808.0f) out[i] = INT64_MAX;
        else if (v < -9223372036854775808.0f) out[i] = INT64_MIN;
        else out[i] = (int64_t)v;
    }
    REPOPS_FP_EXIT;
}
