/* RoPE application, RepOps spec §6.9: x[outer, T, D] with tables cos/sin[T, half] (already
 * gathered for each row's position). Pair i is (2i, 2i+1) for `adjacent` (pairing 0) or
 * (i, i+half) for `half` (pairing 1); dims >= 2*half are copied. Products are separately
 * rounded (no fma): a' = sub(mul(a,c), mul(b,s)), b' = add(mul(a,s), mul(b,c)). */
#include "repops_common.h"

void repops_rope(const float *x, float *out, const float *cos_t, const float *sin_t,
                 int64_t outer, int64_t T, int64_t D, int64_t half, int pairing, int nthreads) {
#pragma omp parallel num_threads(nthreads) if (outer * T * D > (1 << 22))
    {
        REPOPS_FP_ENTER;
#pragma omp for schedule(static)
        for (int64_t row = 0; row < outer * T; row++) {
            int64_t t = row % T;
            const float *xr = x + row * D;
            float *yr = out + row * D;
            const float *c = cos_t + t * half, *s = sin_t + t * half;
            for (int64_t i = 2 * half; i < D; i++) yr[i] = repops_canon(xr[i]);
            for (int64_t i = 0; i < half; i++) {
                int64_t ia = pairing == 0 ? 2 * i : i;
                int64_t ib = pairing == 0 ? 2 * i + 1 : i + half;
                float a = xr[ia], b = xr[ib];
                float pa = a * c[i], pb = b * s[i];
                float qa = a * s[i], qb = b * c[i];
                yr[ia] = repops_canon(pa - pb);
                yr[ib] = repops_canon(qa + qb);
            }
        }
        REPOPS_FP_EXIT;
    }
}
