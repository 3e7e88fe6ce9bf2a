/* Row reductions of RepOps spec §4.1 (fold sum), §4.2 (max/min) and §6.11 (argmax) over
 * `rows` contiguous rows of length n. */
#include "repops_common.h"

void repops_sum_rows(const float *x, float *out, int64_t rows, int64_t n, int nthreads) {
#pragma omp parallel num_threads(nthreads) if (rows * n > (1 << 22))
    {
        REPOPS_FP_ENTER;
        float *buf = malloc(sizeof(float) * (size_t)repops_fold_buf_len(n));
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) out[r] = repops_fold_sum(x + r * n, n, buf);
        free(buf);
        REPOPS_FP_EXIT;
    }
}

void repops_max_rows(const float *x, float *out, int64_t rows, int64_t n, int is_min,
                     int nthreads) {
#pragma omp parallel num_threads(nthreads) if (rows * n > (1 << 22))
    {
        REPOPS_FP_ENTER;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const float *row = x + r * n;
            float m = is_min ? INFINITY : -INFINITY;
            if (is_min)
                for (int64_t i = 0; i < n; i++) m = repops_min2(m, row[i]);
            else
                for (int64_t i = 0; i < n; i++) m = repops_max2(m, row[i]);
            out[r] = repops_canon(m);
        }
        REPOPS_FP_EXIT;
    }
}

/* Spec §6.11: first NaN if any; else the lowest index with no strictly greater element. */
void repops_argmax_rows(const float *x, int64_t *out, int64_t rows, int64_t n, int nthreads) {
#pragma omp parallel for num_threads(nthreads) schedule(static) if (rows * n > (1 << 22))
    for (int64_t r = 0; r < rows; r++) {
        const float *row = x + r * n;
        int64_t best = 0;
        for (int64_t i = 0; i < n; i++) {
            if (row[i] != row[i]) { best = i; break; }
            if (row[i] > row[best]) best = i;
        }
        out[r] = best;
    }
}
