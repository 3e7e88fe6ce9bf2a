/* Sequential cumulative sum of RepOps spec §7.3 step 6: c[0] = x[0], c[j] = add(c[j-1], x[j]),
 * one binary32 rounding per step in index order (a running sum, not a fold: the spec fixes this
 * order because the sampler compares every prefix against top_p and r). */
#include "repops_common.h"

void repops_cumsum_seq(const float *x, float *out, int64_t n) {
    REPOPS_FP_ENTER;
    float acc = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        acc = j == 0 ? x[0] : acc + x[j];
        out[j] = repops_canon(acc);
    }
    REPOPS_FP_EXIT;
}
