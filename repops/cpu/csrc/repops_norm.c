/* Row-wise composite ops of RepOps spec §6.5 softmax, §6.6 log_softmax, §6.7 RMSNorm and
 * §6.8 LayerNorm, each the spec's sequence of rounded primitives over contiguous rows. */
#include "repops_common.h"
#include "crmath.h"

/* Spec §6.5 (log_sm = 0) and §6.6 (log_sm = 1) on one row; d has room for n floats. */
static void softmax_row(const float *x, float *y, int64_t n, int log_sm, float *d, float *buf) {
    float m = repops_row_max(x, n);
    for (int64_t i = 0; i < n; i++) d[i] = x[i] - m;
    repops_exp_f32(d, y, n);
    float s = repops_fold_sum(y, n, buf);
    if (log_sm) {
        float l = repops_logf(s);
        for (int64_t i = 0; i < n; i++) y[i] = repops_canon(d[i] - l);
    } else {
        for (int64_t i = 0; i < n; i++) y[i] = repops_canon(y[i] / s);
    }
}

void repops_softmax_rows(const float *x, float *out, int64_t rows, int64_t n, int log_sm,
                         int nthreads) {
#pragma omp parallel num_threads(nthreads) if (rows * n > (1 << 20))
    {
        REPOPS_FP_ENTER;
        float *d = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
        float *buf = malloc(sizeof(float) * (size_t)repops_fold_buf_len(n));
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) softmax_row(x + r * n, out + r * n, n, log_sm, d, buf);
        free(d);
        free(buf);
        REPOPS_FP_EXIT;
    }
}

/* Spec §6.7: y = mul(div(x, sqrt(add(div(fold_sum(x*x), n), eps))), w). w may be NULL. */
void repops_rms_norm_rows(const float *x, const float *w, float eps, float *out, int64_t rows,
                          int64_t n, int nthreads) {
#pragma omp parallel num_threads(nthreads) if (rows * n > (1 << 20))
    {
        REPOPS_FP_ENTER;
        float *q = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
        float *buf = malloc(sizeof(float) * (size_t)repops_fold_buf_len(n));
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x + r * n;
            float *yr = out + r * n;
            for (int64_t i = 0; i < n; i++) q[i] = xr[i] * xr[i];
            float ms = repops_fold_sum(q, n, buf) / (float)n;
            float rr = sqrtf(ms + eps);
            if (w)
                for (int64_t i = 0; i < n; i++) yr[i] = repops_canon((xr[i] / rr) * w[i]);
            else
                for (int64_t i = 0; i < n; i++) yr[i] = repops_canon(xr[i] / rr);
        }
        free(q);
        free(buf);
        REPOPS_FP_EXIT;
    }
}

/* Spec §6.8 LayerNorm; w and b may be NULL. */
void repops_layer_norm_rows(const float *x, const float *w, const float *b, float eps,
                            float *out, int64_t rows, int64_t n, int nthreads) {
#pragma omp parallel num_threads(nthreads) if (rows * n > (1 << 20))
    {
        REPOPS_FP_ENTER;
        float *c = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
        float *q = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
        float *buf = malloc(sizeof(float) * (size_t)repops_fold_buf_len(n));
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x + r * n;
            float *yr = out + r * n;
            float mu = repops_fold_sum(xr, n, buf) / (float)n;
            for (int64_t i = 0; i < n; i++) c[i] = xr[i] - mu;
            for (int64_t i = 0; i < n; i++) q[i] = c[i] * c[i];
            float var = repops_fold_sum(q, n, buf) / (float)n;
            float rr = sqrtf(var + eps);
            for (int64_t i = 0; i < n; i++) {
                float z = c[i] / rr;
                if (w) z = z * w[i];
                if (b) z = z + b[i];
                yr[i] = repops_canon(z);
            }
        }
        free(c);
        free(q);
        free(buf);
        REPOPS_FP_EXIT;
    }
}
