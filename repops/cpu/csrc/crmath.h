/* Correctly rounded binary32 exp and log (RepOps spec §5, docs/spec-exp-log.md).
 *
 * Every function returns the round-to-nearest-even binary32 value of the exact
 * mathematical result, for every one of the 2^32 inputs (proven exhaustively by
 * scripts/check_exp_log_exhaustive.py).  NaN results are the canonical 0x7FC00000.
 * Results do not depend on the ISA: the AVX2/FMA and the portable code paths
 * perform the same IEEE-754 binary64 operations.
 */
#ifndef REPOPS_CRMATH_H
#define REPOPS_CRMATH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

float repops_expf(float x);
float repops_logf(float x);

/* y[i] = repops_expf(x[i]) / repops_logf(x[i]); x and y may be the same array. */
void repops_exp_f32(const float *x, float *y, int64_t n);
void repops_log_f32(const float *x, float *y, int64_t n);

/* Audit hooks (docs/spec-exp-log.md §4): the binary64 approximation before the
 * final rounding, and the enumeration of the inputs whose approximation is too
 * close to a binary32 rounding boundary (the "hard cases" served from a table).
 * which = 0 for exp, 1 for log. */
void repops_crmath_approx_f64(int which, const float *x, double *y, int64_t n);
int64_t repops_crmath_find_hard(int which, uint32_t first_bits, int64_t count,
                                uint32_t *out, int64_t cap);
/* Number of table entries and the i-th (input bits, result bits) pair. */
int64_t repops_crmath_table_size(int which);
void repops_crmath_table_entry(int which, int64_t i, uint32_t *in_bits, uint32_t *out_bits);

#ifdef __cplusplus
}
#endif

#endif /* REPOPS_CRMATH_H */
