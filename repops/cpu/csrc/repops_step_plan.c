/* One decode step of a trace program in one C call (docs/trace-layout.md §L5; the Python
 * side is node/ree/step_plan.py).
 *
 * Why: run op by op from Python, a SmolLM2 decode step paid ~15-30 us of dispatch for each of
 * ~2,100 ops (EW, ROPE, MOVE, CONCAT, the first op of each chain or tree): more than half of
 * the step. Here Python evaluates every op's output dims for the step (§L3, vectorised) and
 * lays all outputs back to back in one arena; this interpreter then runs a fixed list of
 * records, one per op or per chain/tree of ops, calling the same C kernels the op-by-op path
 * calls. Every record computes the op's §L5 definition exactly (no rewrite that needs a
 * re-check), so its output bits are the reference's.
 *
 * A record is REC int64 words: kind, first op, ops covered, three inputs, then the kind's
 * parameters. An input word v is: v >= 0 the output of op v in this step; -1 absent;
 * -2 - i for op i of the previous step (prev[i], 0 when absent: §L4 back > s); and
 * W0 - w for weight w of the weight table (pointer + dims).
 */
#include "repops_common.h"

#define REC 40
#define MAXD 6
#define DROW (MAXD + 1) /* ndim, dims... */
#define W0 (-1000000LL)

enum { K_NOP = 0, K_TOKENS = 1, K_GATHER = 2, K_EW = 3, K_FOLDTREE = 4, K_QCHAIN = 5,
       K_DOT = 6, K_ROPE = 7, K_MOVE = 8, K_CONCAT = 9, K_ARGTREE = 10, K_SAMPLE = 11 };
/* SAMPLE stages (referee.layout.Stage, §L5.10) */
enum { S_SCALE = 1, S_SORT = 2, S_EXP = 3, S_SCAN = 4, S_TOPP = 5, S_DRAW = 6, S_JSTAR = 7,
       S_PICK = 8 };
/* the job words a SAMPLE record reads (§L1 JobConfig, RepOps spec §7.2 u of the step) */
enum { J_TEMPERATURE = 0, J_TOP_K = 1, J_TOP_P = 2, J_U = 3, J_WORDS = 4 };

/* kernels of the same library */
void repops_binary(int op, const float *a, const float *b, float *out, int64_t n, int sa,
                   int sb, int nthreads);
void repops_unary(int op, const float *x, float *out, int64_t n, int nthreads);
void repops_fold_levels(const float *x, int64_t rows, int64_t w, int64_t nlev,
                        const int64_t *caps, int64_t nlive, int combine, float *out);
int repops_linear_q_segments(int qt, int64_t M, int64_t N, int64_t K, const float *A,
                             int64_t lda, const uint8_t *Q, int64_t nseg, const int64_t *ends,
                             float *C, int nthreads, int portable);
void repops_gemm(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                 int64_t rsb, int64_t csb, float *C, int64_t ldc, int nthreads);
void repops_rope(const float *x, float *out, const float *cos_t, const float *sin_t,
                 int64_t outer, int64_t T, int64_t D, int64_t half, int pairing, int nthreads);
void repops_argfold_levels(const float *x, int64_t rows, int64_t v, const int32_t *ids,
                           int64_t w, int64_t nlev, const int64_t *caps, int32_t *out);
int64_t repops_sample_order(const float *zp, int64_t v, int32_t *order);
int64_t repops_sample_levels(const int32_t *order, int64_t v, int64_t w, int64_t n,
                             int32_t *out, int64_t *merges);
void repops_sample_scale(const float *z, int64_t n, uint32_t t_bits, float *out);
int64_t repops_sample_exp(const float *zp, const uint32_t *order, int64_t ostride, int64_t v,
                          int64_t k, float *e);
void repops_sample_scan(const float *p, float *c, int64_t n);
void repops_sample_topp(const float *c, int64_t v, int64_t k, uint32_t top_p_bits, float *f);
void repops_sample_draw(const float *c, int64_t v, int64_t big_j, uint32_t u_bits, float *g);

struct plan_ctx {
    uint8_t *arena;
    const int64_t *offs;  /* per op: byte offset of its output in the arena */
    const int64_t *dims;  /* per op: DROW words */
    const int64_t *prev;  /* per op: address of the previous step's output, 0 if none */
    const int64_t *wptr;  /* per weight: address */
    const int64_t *wdims; /* per weight: DROW words */
    int64_t seq, past, token;
    int nthreads;
    char *err;
    int64_t *alias; /* per op: the op whose output bits this one repeats, or -1 */
    const int64_t *job; /* J_WORDS words for SAMPLE records, or NULL (then none may run) */
};

struct operand {
    const void *p;
    const int64_t *d; /* DROW words, or NULL for an absent input */
};

static int fail(struct plan_ctx *c, const char *msg) {
    strncpy(c->err, msg, 199);
    c->err[199] = 0;
    return -1;
}

static struct operand operand(const struct plan_ctx *c, int64_t v) {
    struct operand o = {NULL, NULL};
    if (v >= 0) {
        o.p = c->arena + c->offs[v];
        o.d = c->dims + DROW * v;
    } else if (v <= W0) {
        o.p = (const void *)(intptr_t)c->wptr[W0 - v];
        o.d = c->wdims + DROW * (W0 - v);
    } else if (v <= -2) {
        o.p = (const void *)(intptr_t)c->prev[-2 - v];
    }
    return o;
}

static int64_t numel(const int64_t *d) {
    int64_t n = 1;
    for (int64_t k = 0; k < d[0]; k++) n *= d[1 + k];
    return n;
}

/* §L5 rows: (batch, rows, cols) of [..., R, C]; 1-D is one row, 0-D one element. */
static void rows_cols(const int64_t *d, int64_t *ba, int64_t *r, int64_t *cc) {
    int64_t nd = d[0];
    if (nd == 0) { *ba = *r = *cc = 1; return; }
    if (nd == 1) { *ba = 1; *r = 1; *cc = d[1]; return; }
    int64_t b = 1;
    for (int64_t k = 0; k < nd - 2; k++) b *= d[1 + k];
    *ba = b; *r = d[nd - 1]; *cc = d[nd];
}

static int64_t dimword(const int64_t *t, const struct plan_ctx *c) {
    return t[0] + t[1] * c->seq + t[2] * c->past; /* §L3 */
}

/* ---------------------------------------------------------------- §L5.6 EW */

/* NumPy broadcasting of an input to the output dims: element strides per output dim. */
static int bstrides(const int64_t *in, const int64_t *out, int64_t *st) {
    int64_t nd = out[0], ni = in[0], s = 1;
    if (ni > nd) return -1;
    for (int64_t k = nd - 1; k >= 0; k--) {
        int64_t ik = k - (nd - ni);
        if (ik < 0) { st[k] = 0; continue; }
        int64_t dv = in[1 + ik];
        if (dv == out[1 + k]) st[k] = dv == 1 ? 0 : s;
        else if (dv == 1) st[k] = 0;
        else return -1;
        s *= dv;
    }
    return 0;
}

static int run_ew(struct plan_ctx *c, const int64_t *r) {
    const int64_t *p = r + 6;
    int64_t fn = p[0], j = r[1];
    uint32_t scalar = (uint32_t)p[1], fillb = (uint32_t)p[3];
    const int64_t *od = c->dims + DROW * j;
    float *out = (float *)(c->arena + c->offs[j]);
    struct operand a = operand(c, r[3]), b = operand(c, r[4]);
    int64_t nd = od[0], n = numel(od);
    float sc = repops_bits_to_f(scalar);
    int bin = fn < 16;
    if (!a.d || (bin && r[4] != -1 && !b.d)) return fail(c, "EW: absent input");
    int64_t sa[MAXD], sb[MAXD];
    int64_t one[DROW] = {0};
    if (bstrides(a.d, od, sa)) return fail(c, "EW: input a does not broadcast to the output");
    if (bstrides(b.d ? b.d : one, od, sb)) return fail(c, "EW: input b does not broadcast");
    const float *ap = a.p, *bp = b.d ? (const float *)b.p : &sc;
    int64_t last = nd ? od[nd] : 1;
    int64_t rows = last ? n / last : 0;
    int64_t la = nd ? sa[nd - 1] : 0, lb = nd ? sb[nd - 1] : 0;
    /* walk the output rows; inside a row each input is contiguous or one value */
    int64_t idx[MAXD] = {0};
    for (int64_t row = 0; row < rows; row++) {
        int64_t oa = 0, ob = 0;
        for (int64_t k = 0; k + 1 < nd; k++) { oa += idx[k] * sa[k]; ob += idx[k] * sb[k]; }
        float *o = out + row * last;
        if (bin) {
            if ((la != 0 && la != 1) || (lb != 0 && lb != 1)) return fail(c, "EW: stride");
            repops_binary((int)fn - 1, ap + oa, bp + ob, o, last, (int)la, (int)lb, 1);
        } else if (fn == 22) { /* copy, canonical (§L5.6) */
            for (int64_t i = 0; i < last; i++) o[i] = repops_canon(ap[oa + i * la]);
        } else {
            if (la != 1) {
                for (int64_t i = 0; i < last; i++) o[i] = ap[oa];
                repops_unary((int)fn - 16, o, o, last, 1);
            } else {
                repops_unary((int)fn - 16, ap + oa, o, last, 1);
            }
        }
        for (int64_t k = nd - 2; k >= 0; k--) { /* next row index */
            if (++idx[k] < od[1 + k]) break;
            idx[k] = 0;
        }
    }
    if (p[2]) { /* mask: column c > past + r (r the row in [..., R, C]) is `fill` */
        int64_t ba, rr, cc;
        rows_cols(od, &ba, &rr, &cc);
        float fill = repops_bits_to_f(fillb);
        for (int64_t bi = 0; bi < ba; bi++)
            for (int64_t ri = 0; ri < rr; ri++) {
                float *o = out + (bi * rr + ri) * cc;
                for (int64_t ci = c->past + ri + 1; ci < cc; ci++) o[ci] = fill;
            }
    }
    return 0;
}

/* ---------------------------------------------------------------- §L5.3 DOT */

#define DOT_LANES 8 /* independent output chains interleaved by the scalar DOT loop */

static int run_dot(struct plan_ctx *c, const int64_t *r) {
    const int64_t *p = r + 6;
    int64_t k0 = p[0], k1 = p[1], group = p[2], causal = p[3], j = r[1];
    struct operand a = operand(c, r[3]), b = operand(c, r[4]), acc = operand(c, r[5]);
    if (!a.d || !b.d) return fail(c, "DOT: absent input");
    int64_t ba, rr, k, bb, n, kb;
    rows_cols(a.d, &ba, &rr, &k);
    rows_cols(b.d, &bb, &n, &kb);
    if (kb != k || group < 1 || ba != bb * group) return fail(c, "DOT: shapes do not chain");
    const int64_t *od = c->dims + DROW * j;
    if (numel(od) != ba * rr * n) return fail(c, "DOT: output size");
    if (acc.d && numel(acc.d) != ba * rr * n) return fail(c, "DOT: accumulator size");
    const float *A = a.p, *B = b.p, *C0 = acc.d ? (const float *)acc.p : NULL;
    float *out = (float *)(c->arena + c->offs[j]);
    int64_t kend = k1 < k ? k1 : k;
    int limited = causal == 1 && kend > c->past + 1; /* row 0 sees keys [0, past] */
    if (C0 && p[4] && causal != 2 && (kend <= k0 || (causal == 1 && c->past + rr <= k0))) {
        /* no row has a key in this segment: the output is the accumulator's bits (a DOT's
         * output, so canonical); the recorder hashes that op's bytes once (§L5.3, attention's
         * p.v segments past the live keys) */
        memcpy(out, C0, (size_t)(4 * ba * rr * n));
        if (!memcmp(od, acc.d, sizeof(int64_t) * DROW)) /* same header too: the same root */
            c->alias[j] = c->alias[r[5]] >= 0 ? c->alias[r[5]] : r[5];
        return 0;
    }
    if (!C0 && !limited && kend > k0) {
        /* the spec chain from +0.0: the RepOps GEMM, one strided call per head */
        for (int64_t i = 0; i < ba; i++)
            repops_gemm(rr, n, kend - k0, A + i * rr * k + k0, k, B + (i / group) * n * k + k0,
                        1, k, out + i * rr * n, n, c->nthreads);
    } else {
        REPOPS_FP_ENTER;
        for (int64_t i = 0; i < ba; i++) {
            const float *Bi = B + (i / group) * n * k;
            for (int64_t ri = 0; ri < rr; ri++) {
                int64_t ke = kend;
                if (causal == 1 && ke > c->past + ri + 1) ke = c->past + ri + 1;
                const float *Ar = A + (i * rr + ri) * k;
                float *o = out + (i * rr + ri) * n;
                const float *ci = C0 ? C0 + (i * rr + ri) * n : NULL;
                int64_t ni = 0;
                /* DOT_LANES outputs' chains side by side: each is still its own ascending-k
                 * fma chain (§3.1), but the core no longer waits out one fma's latency per k
                 * (attention's p.v segments: ~4x faster, measured) */
                for (; ni + DOT_LANES <= n; ni += DOT_LANES) {
                    float s[DOT_LANES];
                    const float *Bn = Bi + ni * k;
                    for (int t = 0; t < DOT_LANES; t++) s[t] = ci ? ci[ni + t] : 0.0f;
                    for (int64_t kk = k0; kk < ke; kk++) {
                        const float av = Ar[kk];
                        for (int t = 0; t < DOT_LANES; t++) s[t] = fmaf(av, Bn[t * k + kk], s[t]);
                    }
                    for (int t = 0; t < DOT_LANES; t++) o[ni + t] = repops_canon(s[t]);
                }
                for (; ni < n; ni++) {
                    float s = ci ? ci[ni] : 0.0f;
                    const float *Bn = Bi + ni * k;
                    for (int64_t kk = k0; kk < ke; kk++) s = fmaf(Ar[kk], Bn[kk], s);
                    o[ni] = repops_canon(s);
                }
            }
        }
        REPOPS_FP_EXIT;
    }
    if (causal == 2) {
        float ninf = repops_bits_to_f(0xFF800000u);
        for (int64_t i = 0; i < ba; i++)
            for (int64_t ri = 0; ri < rr; ri++)
                for (int64_t ni = c->past + ri + 1; ni < n; ni++) out[(i * rr + ri) * n + ni] = ninf;
    }
    return 0;
}

/* ---------------------------------------------------------------- §L5.4 FOLD tree */

static int run_foldtree(struct plan_ctx *c, const int64_t *r) {
    const int64_t *p = r + 6;
    int64_t combine = p[0], causal = p[1], nlev = p[5], j = r[1];
    struct operand x = operand(c, r[3]);
    if (!x.d) return fail(c, "FOLD: absent input");
    int64_t ba, rr, w;
    rows_cols(x.d, &ba, &rr, &w);
    if (causal && rr != 1) return fail(c, "FOLD: causal rows (prefill) are not planned");
    int64_t win = w;
    for (int64_t l = 0; l < nlev; l++) {
        int64_t cap = p[6 + l];
        if (cap < 1 || win > 2 * cap) return fail(c, "FOLD: row wider than two caps");
        if (numel(c->dims + DROW * (j + l)) != ba * rr * cap) return fail(c, "FOLD: level size");
        win = cap;
    }
    int64_t nl = dimword(p + 2, c);
    if (nl > w) nl = w;
    if (causal && nl > c->past + 1) nl = c->past + 1;
    if (nl < 0) nl = 0;
    repops_fold_levels(x.p, ba * rr, w, nlev, p + 6, nl, (int)combine,
                       (float *)(c->arena + c->offs[j]));
    return 0;
}

/* ---------------------------------------------------------------- one weight linear */

static int run_qchain(struct plan_ctx *c, const int64_t *r) {
    const int64_t *p = r + 6;
    struct operand x = operand(c, r[3]);
    if (!x.d) return fail(c, "DOT: absent input");
    int64_t n = p[1], k = p[2], m = numel(x.d) / (k ? k : 1);
    if (x.d[0] < 1 || x.d[x.d[0]] != k) return fail(c, "DOT: x does not match the weight's K");
    for (int64_t s = 0; s < p[5]; s++)
        if (numel(c->dims + DROW * (r[1] + s)) != m * n) return fail(c, "DOT: segment size");
    if (repops_linear_q_segments((int)p[0], m, n, k, x.p, k,
                                 (const uint8_t *)(intptr_t)p[3], p[5],
                                 (const int64_t *)(intptr_t)p[4],
                                 (float *)(c->arena + c->offs[r[1]]), c->nthreads, 0))
        return fail(c, "DOT: the quantized kernel refused the segment ends");
    return 0;
}

/* ---------------------------------------------------------------- §L5.7 ROPE */

static int run_rope(struct plan_ctx *c, const int64_t *r) {
    const int64_t *p = r + 6;
    int64_t dh = p[0], rot = p[1], mode = p[2], j = r[1];
    struct operand x = operand(c, r[3]), cs = operand(c, r[4]), sn = operand(c, r[5]);
    if (!x.d || !cs.d || !sn.d || x.d[0] < 2 || cs.d[0] != 2) return fail(c, "ROPE: inputs");
    int64_t nd = x.d[0], t = x.d[nd - 1], w = x.d[nd], half = cs.d[2];
    if (dh < 1 || w % dh || rot > dh || half != rot / 2) return fail(c, "ROPE: bad head layout");
    if (c->past + t > cs.d[1]) return fail(c, "ROPE: position past the table");
    int64_t lead = numel(x.d) / (t * w ? t * w : 1);
    const float *xp = x.p;
    float *out = (float *)(c->arena + c->offs[j]);
    for (int64_t l = 0; l < lead; l++)
        for (int64_t ti = 0; ti < t; ti++) {
            int64_t row = l * t + ti, pos = c->past + ti;
            /* one row's heads are D-wide runs: [heads, 1, D] at this position */
            repops_rope(xp + row * w, out + row * w, (const float *)cs.p + pos * half,
                        (const float *)sn.p + pos * half, w / dh, 1, dh, half, (int)mode, 1);
        }
    return 0;
}

/* ---------------------------------------------------------------- §L5.8 MOVE */

/* A MOVE that transposes its last two axes (the input's next-to-last stride 1, its last one
 * not: the V cache's per-head [64, keys] layout, growing with the context): MOVE_TILE output
 * rows at a time, so that each input row's MOVE_TILE neighbours are read together instead of
 * one element per pass over the keys (a decode step at ~250 keys: ~17.1 -> ~16.4 ms here).
 * The same words land in the same places. */
#define MOVE_TILE 8
static void move_transposed(const uint32_t *xp, uint32_t *out, const int64_t *od,
                            const int64_t *st, int64_t off, int64_t n) {
    const int64_t nd = od[0], rows = od[nd - 1], inner = od[nd], is = st[nd - 1];
    int64_t idx[MAXD] = {0};
    for (int64_t plane = 0; plane < n / (rows * inner); plane++) {
        int64_t o = off;
        for (int64_t k = 0; k + 2 < nd; k++) o += idx[k] * st[k];
        uint32_t *dst = out + plane * rows * inner;
        for (int64_t r0 = 0; r0 < rows; r0 += MOVE_TILE) {
            const int64_t rb = rows - r0 < MOVE_TILE ? rows - r0 : MOVE_TILE;
            const uint32_t *src = xp + o + r0;
            uint32_t *d = dst + r0 * inner;
            if (rb == MOVE_TILE) /* unrolled: the common case, ~7 % faster a step than the loop */
                for (int64_t i = 0; i < inner; i++)
#pragma GCC unroll 8
                    for (int q = 0; q < MOVE_TILE; q++) d[q * inner + i] = src[i * is + q];
            else
                for (int64_t i = 0; i < inner; i++)
                    for (int64_t q = 0; q < rb; q++) d[q * inner + i] = src[i * is + q];
        }
        for (int64_t k = nd - 3; k >= 0; k--) {
            if (++idx[k] < od[1 + k]) break;
            idx[k] = 0;
        }
    }
}

static int run_move(struct plan_ctx *c, const int64_t *r) {
    const int64_t *p = r + 6;
    int64_t j = r[1];
    struct operand x = operand(c, r[3]);
    if (!x.d) return fail(c, "MOVE: absent input");
    const int64_t *od = c->dims + DROW * j;
    int64_t nd = od[0], off = dimword(p, c), st[MAXD], last = off;
    for (int64_t k = 0; k < nd; k++) {
        st[k] = dimword(p + 3 + 3 * k, c);
        if (st[k] < 0) return fail(c, "MOVE: negative stride");
        if (od[1 + k] > 0) last += (od[1 + k] - 1) * st[k];
    }
    int64_t n = numel(od);
    if (n == 0) return 0;
    if (off < 0 || last >= numel(x.d)) return fail(c, "MOVE: element outside the input");
    const uint32_t *xp = x.p;
    uint32_t *out = (uint32_t *)(c->arena + c->offs[j]);
    int64_t inner = nd ? od[nd] : 1, is = nd ? st[nd - 1] : 0, idx[MAXD] = {0};
    if (nd >= 2 && is != 1 && st[nd - 2] == 1 && od[nd - 1] >= MOVE_TILE) {
        move_transposed(xp, out, od, st, off, n);
        return 0;
    }
    for (int64_t row = 0; row < n / inner; row++) {
        int64_t o = off;
        for (int64_t k = 0; k + 1 < nd; k++) o += idx[k] * st[k];
        uint32_t *dst = out + row * inner;
        if (is == 1) memcpy(dst, xp + o, 4 * inner);
        else for (int64_t i = 0; i < inner; i++) dst[i] = xp[o + i * is];
        for (int64_t k = nd - 2; k >= 0; k--) {
            if (++idx[k] < od[1 + k]) break;
            idx[k] = 0;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- §L5.9 CONCAT */

static int run_concat(struct plan_ctx *c, const int64_t *r) {
    int64_t axis = r[6], j = r[1];
    struct operand a = operand(c, r[3]), b = operand(c, r[4]);
    const int64_t *od = c->dims + DROW * j;
    int64_t nd = od[0];
    if (!b.d || axis < 0 || axis >= nd || b.d[0] != nd) return fail(c, "CONCAT: inputs");
    int64_t outer = 1, inner = 1;
    for (int64_t k = 0; k < axis; k++) outer *= od[1 + k];
    for (int64_t k = axis + 1; k < nd; k++) inner *= od[1 + k];
    int64_t lb = b.d[1 + axis], la = od[1 + axis] - lb;
    if (la < 0 || (la > 0 && !a.p)) return fail(c, "CONCAT: lengths");
    uint8_t *out = c->arena + c->offs[j];
    const uint8_t *ap = a.p, *bp = b.p;
    int64_t ca = 4 * la * inner, cb = 4 * lb * inner;
    for (int64_t o = 0; o < outer; o++) {
        if (ca) memcpy(out + o * (ca + cb), ap + o * ca, ca);
        memcpy(out + o * (ca + cb) + ca, bp + o * cb, cb);
    }
    return 0;
}

/* ---------------------------------------------------------------- §L5.1/2 TOKENS, GATHER */

static int run_gather(struct plan_ctx *c, const int64_t *r) {
    struct operand ids = operand(c, r[3]), tab = operand(c, r[4]);
    if (!ids.d || !tab.d || tab.d[0] != 2) return fail(c, "GATHER: inputs");
    int64_t v = tab.d[1], d = tab.d[2], n = numel(ids.d);
    const int32_t *ip = ids.p;
    uint8_t *out = c->arena + c->offs[r[1]];
    for (int64_t i = 0; i < n; i++) {
        if (ip[i] < 0 || ip[i] >= v) return fail(c, "GATHER: id outside the table");
        memcpy(out + 4 * i * d, (const uint8_t *)tab.p + 4 * ip[i] * d, 4 * d);
    }
    return 0;
}

/* ---------------------------------------------------------------- §L5.5 ARGFOLD trees */

/* Every level of one argmax tree over the last axis of x (fold_tree.ArgTree): level l is op
 * j + l, and the levels lie back to back in the arena as repops_argfold_levels writes them. */
static int run_argtree(struct plan_ctx *c, const int64_t *r) {
    const int64_t *p = r + 6;
    int64_t nlev = p[0], j = r[1];
    struct operand x = operand(c, r[3]);
    if (!x.d) return fail(c, "ARGFOLD: absent input");
    int64_t v = x.d[0] ? x.d[x.d[0]] : 1, rows = v ? numel(x.d) / v : 0, win = v;
    for (int64_t l = 0; l < nlev; l++) {
        int64_t cap = p[1 + l], wout = win < cap ? win : cap;
        if (cap < 1 || win > 2 * cap) return fail(c, "ARGFOLD: row wider than two caps");
        if (numel(c->dims + DROW * (j + l)) != rows * wout) return fail(c, "ARGFOLD: level size");
        win = wout;
    }
    repops_argfold_levels(x.p, rows, v, NULL, v, nlev, p + 1,
                          (int32_t *)(c->arena + c->offs[j]));
    return 0;
}

/* ---------------------------------------------------------------- §L5.10 SAMPLE */

/* A row input of V elements (the reference's shape rule; what keeps the reads inside it). */
static const void *sample_row(const struct plan_ctx *c, int64_t w, int64_t v) {
    struct operand o = operand(c, w);
    return o.d && numel(o.d) == v ? o.p : NULL;
}

/* An index input's element 0 (J0, j0, A, j*), in [0, v). */
static int sample_index(struct plan_ctx *c, int64_t w, int64_t v, int64_t *out) {
    struct operand o = operand(c, w);
    if (!o.d || numel(o.d) < 1) return fail(c, "SAMPLE: index input absent");
    int32_t got = *(const int32_t *)o.p;
    if (got < 0 || got >= v) return fail(c, "SAMPLE: index outside the row");
    *out = got;
    return 0;
}

/* J of RepOps spec §7.3 step 6: J0 when f[J0] is 1.0, else K - 1. */
static int sample_big_j(struct plan_ctx *c, int64_t wf, int64_t wj0, int64_t v, int64_t k,
                        int64_t *out) {
    const uint32_t *f = sample_row(c, wf, v);
    if (!f) return fail(c, "SAMPLE: f is not a row of V");
    if (sample_index(c, wj0, v, out)) return -1;
    if (f[*out] != F32_ONE_BITS) *out = k - 1;
    return 0;
}

/* SORT's list and the MERGE levels above it (the record covers SORT and its p[4] MERGE ops,
 * which lie back to back after it): one radix sort of the row, then every level as
 * repops_sample_levels writes them (node/ree/fastsample.py `_CpuRow`). */
static int run_sort(struct plan_ctx *c, const int64_t *r, const float *zp, int64_t v) {
    const int64_t *p = r + 6;
    int64_t w = p[1], nm = p[4], j = r[1], n = 0;
    if (w < 1) return fail(c, "SAMPLE SORT: block size");
    if (w < v)
        for (n = 1; (w << n) < v; n++) {}
    if (n != nm) return fail(c, "SAMPLE SORT: the MERGE levels do not match the row");
    for (int64_t i = 0; i <= nm; i++)
        if (numel(c->dims + DROW * (j + i)) != v) return fail(c, "SAMPLE SORT: output size");
    int32_t *order = (int32_t *)malloc((size_t)v * sizeof(int32_t));
    int32_t *out = (int32_t *)(c->arena + c->offs[j]);
    int64_t rc = !order || repops_sample_order(zp, v, order);
    if (!rc && nm == 0) memcpy(out, order, (size_t)v * sizeof(int32_t));
    if (!rc && nm > 0)
        rc = repops_sample_levels(order, v, w, nm, out, (int64_t *)(c->arena + c->offs[j + 1]));
    free(order);
    return rc ? fail(c, "SAMPLE SORT: no memory for the sort") : 0;
}

/* One SAMPLE stage (§L5.10) of the job's step: the definitions of repops_sample.c, with the
 * job's temperature, top-k, top-p and this step's u from c->job. The element ops SCALE, EXP,
 * SCAN, TOPP, DRAW write V elements; JSTAR and PICK one index. Record parameters: stage,
 * block, the fourth input (JSTAR's J0, PICK's j*), the order input's stride in 32-bit words
 * (EXP, PICK: 1 for SORT's int32, 2 for MERGE's int64), SORT's MERGE count. */
static int run_sample(struct plan_ctx *c, const int64_t *r) {
    const int64_t *p = r + 6, *jw = c->job;
    int64_t j = r[1];
    if (!jw) return fail(c, "SAMPLE: no job config");
    struct operand x = operand(c, r[3]);
    if (!x.d) return fail(c, "SAMPLE: absent input");
    int64_t v = numel(x.d), big_j, at;
    if (v < 1) return fail(c, "SAMPLE: an empty row");
    int64_t k = jw[J_TOP_K] == 0 || jw[J_TOP_K] >= v ? v : jw[J_TOP_K];
    int64_t nout = numel(c->dims + DROW * j);
    void *out = c->arena + c->offs[j];
    int64_t stage = p[0];
    if (stage != S_SORT && stage != S_JSTAR && stage != S_PICK && nout != v)
        return fail(c, "SAMPLE: output size");
    if ((stage == S_JSTAR || stage == S_PICK) && nout != 1)
        return fail(c, "SAMPLE: an index output has one element");
    switch (stage) {
    case S_SCALE: repops_sample_scale(x.p, v, (uint32_t)jw[J_TEMPERATURE], out); return 0;
    case S_SORT: return run_sort(c, r, x.p, v);
    case S_EXP: {
        const uint32_t *order = sample_row(c, r[4], v);
        if (!order) return fail(c, "SAMPLE EXP: order is not a row of V");
        if (repops_sample_exp(x.p, order, p[3], v, k, out))
            return fail(c, "SAMPLE EXP order: index outside the row");
        return 0;
    }
    case S_SCAN: repops_sample_scan(x.p, out, v); return 0;
    case S_TOPP: repops_sample_topp(x.p, v, k, (uint32_t)jw[J_TOP_P], out); return 0;
    case S_DRAW:
        if (sample_big_j(c, r[4], r[5], v, k, &big_j)) return -1;
        repops_sample_draw(x.p, v, big_j, (uint32_t)jw[J_U], out);
        return 0;
    case S_JSTAR: {
        if (sample_big_j(c, r[5], p[2], v, k, &big_j) || sample_index(c, r[4], v, &at)) return -1;
        *(int32_t *)out = (int32_t)(((const uint32_t *)x.p)[at] == F32_ONE_BITS ? at : big_j);
        return 0;
    }
    case S_PICK: {
        if (sample_index(c, r[4], v, &at)) return -1;
        uint32_t za = ((const uint32_t *)x.p)[at];
        int greedy = (jw[J_TEMPERATURE] & 0x7FFFFFFF) == 0;
        if (greedy || (za & 0x7FFFFFFFu) > 0x7F800000u) { /* T = ±0, or z[A] is NaN */
            *(int32_t *)out = (int32_t)at;
            return 0;
        }
        const uint32_t *order = sample_row(c, r[5], v);
        if (!order) return fail(c, "SAMPLE PICK: order is not a row of V");
        if (sample_index(c, p[2], v, &at)) return -1;
        uint32_t tok = order[at * p[3]];
        if (tok >= (uint64_t)v) return fail(c, "SAMPLE PICK: index outside the row");
        *(int32_t *)out = (int32_t)tok;
        return 0;
    }
    default: return fail(c, "SAMPLE: unknown stage");
    }
}

static int run_record(struct plan_ctx *c, const int64_t *r) {
    switch (r[0]) {
    case K_NOP: return 0;
    case K_TOKENS: {
        if (numel(c->dims + DROW * r[1]) != 1) return fail(c, "TOKENS: a decode step has one");
        *(int32_t *)(c->arena + c->offs[r[1]]) = (int32_t)c->token;
        return 0;
    }
    case K_GATHER: return run_gather(c, r);
    case K_EW: return run_ew(c, r);
    case K_FOLDTREE: return run_foldtree(c, r);
    case K_QCHAIN: return run_qchain(c, r);
    case K_DOT: return run_dot(c, r);
    case K_ROPE: return run_rope(c, r);
    case K_MOVE: return run_move(c, r);
    case K_CONCAT: return run_concat(c, r);
    case K_ARGTREE: return run_argtree(c, r);
    case K_SAMPLE: return run_sample(c, r);
    default: return fail(c, "unknown record kind");
    }
}

/* One linear for several jobs' steps at once: the rows of every job stacked into one call of
 * the GGUF-block kernel (each output element is its own row's chain, so stacking changes no
 * bit: node/ree/batch.py), then each job's segment rows copied to its arena. Returns 0, or
 * 1 + the job that failed. */
static int run_qchain_lanes(struct plan_ctx *cs, int64_t nl, const int64_t *r, float *xs,
                            float *ys) {
    const int64_t *p = r + 6;
    int64_t n = p[1], k = p[2], nseg = p[5], m = 0;
    for (int64_t l = 0; l < nl; l++) {
        struct operand x = operand(&cs[l], r[3]);
        if (!x.d || x.d[0] < 1 || x.d[x.d[0]] != k || numel(x.d) != k) {
            fail(&cs[l], "DOT: x does not match the weight's K (one row per job)");
            return 1 + (int)l;
        }
        for (int64_t s = 0; s < nseg; s++)
            if (numel(cs[l].dims + DROW * (r[1] + s)) != n) {
                fail(&cs[l], "DOT: segment size");
                return 1 + (int)l;
            }
        memcpy(xs + m * k, x.p, (size_t)(4 * k));
        m++;
    }
    if (repops_linear_q_segments((int)p[0], m, n, k, xs, k, (const uint8_t *)(intptr_t)p[3],
                                 nseg, (const int64_t *)(intptr_t)p[4], ys, cs[0].nthreads, 0)) {
        fail(&cs[0], "DOT: the quantized kernel refused the segment ends");
        return 1;
    }
    for (int64_t l = 0; l < nl; l++)
        for (int64_t s = 0; s < nseg; s++)
            memcpy(cs[l].arena + cs[l].offs[r[1] + s], ys + (s * m + l) * n, (size_t)(4 * n));
    return 0;
}

/* Records [0, nrec) of one decode step of each of nl jobs (lane l: its arena, offsets, dims,
 * previous-step addresses, symbols, token, alias array and job words in
 * lane_args[LANE_ARGS l ...]): weight
 * linears stacked over the jobs, every other record job by job. scratch: floats for the
 * stacked rows and outputs (nl * max K + nl * max nseg * N). Returns 0, or
 * (1 + job) << 32 | (1 + record) for the record that failed. */
#define LANE_ARGS 9

/* A job's context from its LANE_ARGS words (arena, offsets, dims, previous-step addresses,
 * seq, past, token, alias array, job words). */
static struct plan_ctx lane_ctx(const int64_t *a, const int64_t *wptr, const int64_t *wdims,
                                int nthreads, char *err) {
    return (struct plan_ctx){(uint8_t *)(intptr_t)a[0], (const int64_t *)(intptr_t)a[1],
                             (const int64_t *)(intptr_t)a[2], (const int64_t *)(intptr_t)a[3],
                             wptr, wdims, a[4], a[5], a[6], nthreads, err,
                             (int64_t *)(intptr_t)a[7], (const int64_t *)(intptr_t)a[8]};
}

int64_t repops_step_plan_run_lanes(int64_t nrec, const int64_t *recs, int64_t nl,
                                   const int64_t *lane_args, const int64_t *wptr,
                                   const int64_t *wdims, int nthreads, char *err,
                                   float *scratch, int64_t xs_floats) {
    struct plan_ctx *cs = calloc((size_t)nl, sizeof *cs);
    if (!cs) return 1;
    for (int64_t l = 0; l < nl; l++)
        cs[l] = lane_ctx(lane_args + LANE_ARGS * l, wptr, wdims, nthreads, err);
    int64_t rc = 0;
    for (int64_t i = 0; i < nrec && !rc; i++) {
        const int64_t *r = recs + REC * i;
        if (r[0] == K_QCHAIN && nl > 1) {
            int64_t bad = run_qchain_lanes(cs, nl, r, scratch, scratch + xs_floats);
            if (bad) rc = (bad << 32) | (i + 1);
            continue;
        }
        for (int64_t l = 0; l < nl; l++)
            if (run_record(&cs[l], r)) { rc = ((1 + l) << 32) | (i + 1); break; }
    }
    free(cs);
    return rc;
}

/* Records [0, nrec) of one step of each of nl jobs (lane_args as for run_lanes), the jobs
 * side by side on nthreads threads, each job's records in order on one thread: a CUDA batch's
 * SAMPLE tails on the host (node/ree/fastexec.py _HostTail), which one after another were most
 * of a 32-job step. No record may be threaded itself (they get nthreads 1). errs: 200 bytes
 * a job; rcs: per job 0, or 1 + the record that failed. */
void repops_step_plan_run_jobs(int64_t nrec, const int64_t *recs, int64_t nl,
                               const int64_t *lane_args, const int64_t *wptr,
                               const int64_t *wdims, int nthreads, char *errs, int64_t *rcs) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads > 0 ? nthreads : 1)
    for (int64_t l = 0; l < nl; l++) {
        struct plan_ctx c = lane_ctx(lane_args + LANE_ARGS * l, wptr, wdims, 1, errs + 200 * l);
        rcs[l] = 0;
        for (int64_t i = 0; i < nrec; i++)
            if (run_record(&c, recs + REC * i)) { rcs[l] = i + 1; break; }
    }
}

/* Runs records [0, nrec) of one step. Returns 0, or 1 + the index of the record that failed
 * (err then holds why; outputs of later records are unwritten). alias (per op, -1 on entry)
 * gets, for an op whose output repeats an earlier op's bits, that op. job: the J_WORDS words
 * SAMPLE records read (NULL when the plan has none). */
int64_t repops_step_plan_run(int64_t nrec, const int64_t *recs, uint8_t *arena,
                             const int64_t *offs, const int64_t *dims, const int64_t *prev,
                             const int64_t *wptr, const int64_t *wdims, int64_t seq,
                             int64_t past, int64_t token, int nthreads, char *err,
                             int64_t *alias, const int64_t *job) {
    struct plan_ctx c = {arena, offs, dims, prev, wptr, wdims, seq, past, token, nthreads, err,
                         alias, job};
    for (int64_t i = 0; i < nrec; i++)
        if (run_record(&c, recs + REC * i)) return i + 1;
    return 0;
}
