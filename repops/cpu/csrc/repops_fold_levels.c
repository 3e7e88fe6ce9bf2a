/* Consecutive FOLD levels of one reduction tree in one call (docs/trace-layout.md §L5.4).
 *
 * The lowering writes a row reduction (RMSNorm's sum of squares, softmax's max and sum) as one
 * trace op per tree level, each a leaf of its own: level l halves the row to its cap c_l,
 * out[i] = combine(in[i], in[i + c_l]) for i < m_l = max(0, n_l - c_l), out[i] = in[i] for
 * m_l <= i < min(w_l, c_l), and -0.0 for w_l <= i < c_l (the padding of a row narrower than
 * the cap), where w_l is the level's input width and n_l = min(w_l, live elements).
 * Run one level per Python call, a SmolLM2 decode step paid ~40 us for each of its ~1,300
 * levels; here every level of a tree is one pass over a few KB.
 *
 * combine is spec §2 add (0) or §4.2 max2 (1), each result canonicalised (§1.2); copies are
 * canonicalised too, which changes nothing for an input already canonical and is what the
 * level does for one that is not (the executor's `canon`).
 */
#include "repops_common.h"

/* x: rows × w; caps: per level; nlive: the row's live elements (the op's n, already limited
 * by the causal position); out: the levels back to back, level l rows × caps[l]. */
void repops_fold_levels(const float *x, int64_t rows, int64_t w, int64_t nlev,
                        const int64_t *caps, int64_t nlive, int combine, float *out) {
    REPOPS_FP_ENTER;
    const float *in = x;
    int64_t win = w;
    for (int64_t l = 0; l < nlev; l++) {
        int64_t cap = caps[l], n = nlive < win ? nlive : win;
        int64_t m = n > cap ? n - cap : 0, hi = win < cap ? win : cap;
        for (int64_t r = 0; r < rows; r++) {
            const float *a = in + r * win;
            float *o = out + r * cap;
            int64_t i = 0;
            if (combine == 0) {
                for (; i < m; i++) o[i] = repops_canon(a[i] + a[i + cap]);
            } else {
                for (; i < m; i++) o[i] = repops_canon(repops_max2(a[i], a[i + cap]));
            }
            for (; i < hi; i++) o[i] = repops_canon(a[i]);
            for (; i < cap; i++) o[i] = -0.0f;
        }
        in = out;
        out += rows * cap;
        win = cap;
    }
    REPOPS_FP_EXIT;
}

/* docs/trace-layout.md §L5.5 ARGFOLD, the index tree of spec §6.11 argmax: level l keeps
 * indices into the row x; out[i] = the winner of ids[i] and ids[i + c_l] for i < w_l - c_l,
 * ids[i] for the rest up to min(w_l, c_l). The winner is the larger value, the lower index on
 * a tie (-0 == +0) and on two NaNs, the NaN against a number. */
static inline int32_t arg_winner(const float *x, int32_t ia, int32_t ib) {
    /* branch-free (the rows of the sampler's J0/j0 trees are 0/1 values, ties everywhere:
     * branches on them mispredict), so the loops below vectorize */
    float va = x[ia], vb = x[ib];
    int na = va != va, nb = vb != vb, b_lo = ib < ia;
    int take_b = (na & nb & b_lo) | (nb & !na) | (!na & !nb & ((vb > va) | ((vb == va) & b_lo)));
    return take_b ? ib : ia;
}

/* x: rows × v values; ids: rows × w indices of the first level's input, or NULL for the
 * whole row (0 … v-1, w = v); out: the levels back to back, level l rows × min(w_l, c_l). */
void repops_argfold_levels(const float *x, int64_t rows, int64_t v, const int32_t *ids,
                           int64_t w, int64_t nlev, const int64_t *caps, int32_t *out) {
    const int32_t *in = ids;
    int64_t win = ids ? w : v;
    for (int64_t l = 0; l < nlev; l++) {
        int64_t cap = caps[l], wout = win < cap ? win : cap, npair = win > cap ? win - cap : 0;
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x + r * v;
            const int32_t *a = in ? in + r * win : NULL;
            int32_t *o = out + r * wout;
            int64_t i = 0;
            for (; i < npair; i++) {
                int32_t ia = a ? a[i] : (int32_t)i, ib = a ? a[i + cap] : (int32_t)(i + cap);
                o[i] = arg_winner(xr, ia, ib);
            }
            for (; i < wout; i++) o[i] = a ? a[i] : (int32_t)i;
        }
        in = out;
        out += rows * wout;
        win = wout;
    }
}
