/* The SAMPLE tail of a decode step on the CPU (docs/trace-layout.md §L5.10, RepOps spec §7.3),
 * one pass per stage over the V-entry row, for node/ree/fastsample.py.
 *
 * Why C: the tail runs every step (greedy jobs too) on V = 49,152 entries, and through NumPy
 * and torch its sort and eight MERGE levels cost ~0.6 ms each. Here
 *  - the §L5.10 `prec` order of the whole row is one LSD radix sort of 32-bit keys (stable, so
 *    equal keys keep ascending token order: exactly prec's tie rule);
 *  - the token lists of SORT (block B) and of every MERGE level are stable partitions of that
 *    order by block, each one linear pass from the next wider one; MERGE's t is a running
 *    count over its list;
 *  - SCALE, EXP, SCAN, TOPP and DRAW are the element definitions of §L5.10, each float result
 *    the RepOps op (IEEE binary32, round to nearest even, NaN results canonical 0x7FC00000).
 * Integer work only, except where a comment names the spec step.
 */
#include "repops_common.h"
#include "crmath.h"


/* §L5.10 SORT key, mapped so that ascending u32 is descending key: key(v) = NaN ? -2^31 :
 * (sign ? -(v & 0x7FFFFFFF) : v) lies in [-2^31, 0x7F800000], so 0x7FFFFFFF - key lies in
 * [0x7FFFFF, 2^32 - 1]. -0 and +0 both map to key 0. Branch-free (two's complement negation
 * by the sign bit): logits' signs are random, a branch on them mispredicts half the time. */
static inline uint32_t desc_key(uint32_t u) {
    uint32_t mag = u & 0x7FFFFFFFu, neg = u >> 31;
    uint32_t key = (mag ^ (0u - neg)) + neg;
    key = mag > 0x7F800000u ? 0x80000000u : key;
    return 0x7FFFFFFFu - key;
}

#define RADIX_BITS 11
#define RADIX_SIZE (1 << RADIX_BITS)
#define RADIX_PASSES 3 /* 11 + 11 + 10 bits */

/* Tokens of z'[0..v) in §L5.10 prec order (key descending, then token ascending): LSD radix
 * sort of (desc_key << 32 | token) on the high word, 3 stable passes of 11 bits (fewer passes
 * of wider digits thrash L1, more of narrower ones cost more counting), a pass whose digit is
 * the same for every token skipped (a greedy job's row of ±inf). Returns 0, or -1 when out of
 * memory. */
int64_t repops_sample_order(const float *zp, int64_t v, int32_t *order) {
    uint64_t *a = (uint64_t *)malloc((size_t)(2 * v + 1) * sizeof(uint64_t));
    uint32_t *hist = (uint32_t *)calloc(RADIX_PASSES * RADIX_SIZE, sizeof(uint32_t));
    if (!a || !hist) {
        free(a);
        free(hist);
        return -1;
    }
    uint64_t *base = a, *b = a + v;
    const uint32_t *zb = (const uint32_t *)zp;
    for (int64_t j = 0; j < v; j++) {
        uint32_t s = desc_key(zb[j]);
        a[j] = (uint64_t)s << 32 | (uint64_t)j;
        hist[s & (RADIX_SIZE - 1)]++;
        hist[RADIX_SIZE + ((s >> RADIX_BITS) & (RADIX_SIZE - 1))]++;
        hist[2 * RADIX_SIZE + (s >> (2 * RADIX_BITS))]++;
    }
    for (int p = 0; p < RADIX_PASSES; p++) {
        uint32_t *h = hist + p * RADIX_SIZE;
        int shift = 32 + p * RADIX_BITS;
        if (h[(uint32_t)(a[0] >> shift) & (RADIX_SIZE - 1)] == (uint32_t)v)
            continue; /* one bucket: the pass is the identity */
        uint32_t sum = 0;
        for (int d = 0; d < RADIX_SIZE; d++) {
            uint32_t c = h[d];
            h[d] = sum;
            sum += c;
        }
        for (int64_t j = 0; j < v; j++) {
            uint64_t x = a[j];
            b[h[(uint32_t)(x >> shift) & (RADIX_SIZE - 1)]++] = x;
        }
        uint64_t *t = a;
        a = b;
        b = t;
    }
    for (int64_t j = 0; j < v; j++) order[j] = (int32_t)(uint32_t)a[j];
    free(base);
    free(hist);
    return 0;
}

/* The block lists of the SORT and MERGE levels (§L5.10). L_w lists, for every block
 * [s0, s0 + w) of tokens, the block's tokens in global order at positions [s0, min(s0 + w, v)):
 * SORT with block B outputs L_B, MERGE with half h merges the runs of L_h into L_2h (a merge
 * of sorted runs under a strict total order is the sorted run). L_w for w >= v is the global
 * order. L_w comes from L_2w by splitting each 2w-block stably into its first-half tokens
 * A = [s0, s0 + w) and the others: two running output positions, no per-block table, and no
 * branch on the token (which half comes next is a coin toss). The A position is s0 + t with
 * t the MERGE rule's count of A before the offset, so the same pass writes the MERGE output
 * for half w: t · 2^32 + token at the token's offset in L_2w (mout, or NULL for none). */
static void split_scalar(const int32_t *in, int64_t s0, int64_t q, int64_t end, int64_t w,
                         int64_t pa, int64_t pb, int32_t *out, int64_t *mout) {
    if (mout)
        for (; q < end; q++) {
            int64_t tok = in[q], is_a = tok - s0 < w;
            out[pb ^ ((pa ^ pb) & -is_a)] = (int32_t)tok;
            mout[q] = (pa - s0) << 32 | tok;
            pa += is_a;
            pb += 1 - is_a;
        }
    else
        for (; q < end; q++) {
            int64_t tok = in[q], is_a = tok - s0 < w;
            out[pb ^ ((pa ^ pb) & -is_a)] = (int32_t)tok;
            pa += is_a;
            pb += 1 - is_a;
        }
}

#if defined(__AVX512F__)
/* 16 offsets of L_2w at once (blocks of 2w a multiple of 16 tokens): the A and B tokens are
 * compressed, in order, to their two running positions (masked stores: the lanes past them
 * belong to the other half or to nothing yet). t of lane i is t at the chunk's start plus the
 * A lanes before i: its rank among the A lanes for an A lane (expand of 0, 1, … over the A
 * mask), i minus its rank among the B lanes for a B lane. Integer work only: the same output
 * as split_scalar. */
static int64_t split_avx512(const int32_t *in, int64_t s0, int64_t end, int64_t w, int64_t *pa,
                            int64_t *pb, int32_t *out, int64_t *mout) {
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i mid = _mm512_set1_epi32((int32_t)(s0 + w));
    int64_t a = *pa, b = *pb, q = s0;
    for (; q + 16 <= end; q += 16) {
        __m512i tok = _mm512_loadu_si512((const void *)(in + q));
        __mmask16 ka = _mm512_cmplt_epi32_mask(tok, mid), kb = (__mmask16)~ka;
        int na = __builtin_popcount((unsigned)ka);
        _mm512_mask_storeu_epi32(out + a, (__mmask16)((1u << na) - 1),
                                 _mm512_maskz_compress_epi32(ka, tok));
        _mm512_mask_storeu_epi32(out + b, (__mmask16)((1u << (16 - na)) - 1),
                                 _mm512_maskz_compress_epi32(kb, tok));
        if (mout) {
            __m512i ra = _mm512_maskz_expand_epi32(ka, iota);
            __m512i rb = _mm512_maskz_expand_epi32(kb, iota);
            __m512i t = _mm512_add_epi32(_mm512_mask_blend_epi32(ka, _mm512_sub_epi32(iota, rb), ra),
                                         _mm512_set1_epi32((int32_t)(a - s0)));
            __m512i t0 = _mm512_cvtepu32_epi64(_mm512_castsi512_si256(t));
            __m512i t1 = _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(t, 1));
            __m512i x0 = _mm512_cvtepu32_epi64(_mm512_castsi512_si256(tok));
            __m512i x1 = _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(tok, 1));
            _mm512_storeu_si512((void *)(mout + q), _mm512_or_si512(_mm512_slli_epi64(t0, 32), x0));
            _mm512_storeu_si512((void *)(mout + q + 8),
                                _mm512_or_si512(_mm512_slli_epi64(t1, 32), x1));
        }
        a += na;
        b += 16 - na;
    }
    *pa = a;
    *pb = b;
    return q;
}
#endif

static void split_level(const int32_t *in, int64_t v, int64_t w, int32_t *out, int64_t *mout) {
#if defined(__AVX512F__)
    int vec = (2 * w) % 16 == 0 && v + 2 * w < ((int64_t)1 << 31);
#endif
    for (int64_t s0 = 0; s0 < v; s0 += 2 * w) {
        int64_t end = s0 + 2 * w < v ? s0 + 2 * w : v;
        int64_t pa = s0, pb = s0 + w, q = s0; /* pb is used only if the block has a second half */
#if defined(__AVX512F__)
        if (vec) q = split_avx512(in, s0, end, w, &pa, &pb, out, mout);
#endif
        split_scalar(in, s0, q, end, w, pa, pb, out, mout);
    }
}

/* SORT's list and the MERGE levels above it in one call: out = L_w, and with merges,
 * merges[i·v .. (i+1)·v) = the MERGE output of half w·2^i (from L_{w·2^(i+1)}) for i = 0 ..
 * n-1, where w·2^n >= v (so L_{w·2^n} is `order`): the lists from the widest down, the
 * intermediate ones in two scratch rows that stay in cache. Returns 0, or -1 when out of
 * memory. */
int64_t repops_sample_levels(const int32_t *order, int64_t v, int64_t w, int64_t n, int32_t *out,
                             int64_t *merges) {
    int32_t *scratch = n > 1 ? (int32_t *)malloc((size_t)(2 * v) * sizeof(int32_t)) : NULL;
    if (n > 1 && !scratch) return -1;
    const int32_t *in = order;
    for (int64_t i = n - 1; i >= 0; i--) {
        int32_t *dst = i == 0 ? out : scratch + (i & 1) * v;
        split_level(in, v, w << i, dst, merges ? merges + i * v : NULL);
        in = dst;
    }
    free(scratch);
    return 0;
}

/* MERGE with half h (§L5.10 MERGE rule) from L_2h alone: out[q] = t(q) · 2^32 + L_2h[q], t(q)
 * = how many tokens of the block's first half A = [s0, s0 + h) precede offset q, i.e. the
 * recurrence t(0) = 0, t(q+1) = t(q) + takeA(t(q), q) read off the merged run. For a MERGE
 * whose half is not one repops_sample_levels produced. */
void repops_sample_merge(const int32_t *list, int64_t v, int64_t h, int64_t *out) {
    for (int64_t s0 = 0; s0 < v; s0 += 2 * h) {
        int64_t end = s0 + 2 * h < v ? s0 + 2 * h : v, t = 0;
        for (int64_t q = s0; q < end; q++) {
            int64_t tok = list[q];
            out[q] = t << 32 | tok;
            t += tok - s0 < h;
        }
    }
}

/* SCALE (§L5.10, RepOps spec §7.3 step 2): z'[j] = div(z[j], T), spec §2 div (IEEE binary32,
 * round to nearest even), NaN canonical: the repops_binary DIV with a broadcast T, as a loop
 * the compiler vectorizes. */
void repops_sample_scale(const float *z, int64_t n, uint32_t t_bits, float *out) {
    REPOPS_FP_ENTER;
    float t = repops_bits_to_f(t_bits);
    for (int64_t j = 0; j < n; j++) out[j] = repops_canon(z[j] / t);
    REPOPS_FP_EXIT;
}

#define EXP_CHUNK 256

/* EXP (§L5.10, RepOps spec §7.3 step 5): e[j] = j < k ? exp(sub(z'[o_j], z'[o_0])) : -0.0 with
 * o_j = low(order[j]); the order is int32 (ostride 1) or int64 (ostride 2: the low word of a
 * little-endian element). sub is spec §2, exp the correctly rounded spec §5 exp, NaN canonical.
 * A chunk of differences with no finite value (a greedy job: z' = z / 0 is ±inf or NaN) takes
 * exp's values there directly: exp(NaN) = NaN, exp(+inf) = +inf, exp(-inf) = +0.
 * Returns 0, or -1 when an order entry names no token of the row (the reference's error). */
int64_t repops_sample_exp(const float *zp, const uint32_t *order, int64_t ostride, int64_t v,
                          int64_t k, float *e) {
    if (order[0] >= (uint64_t)v) return -1;
    REPOPS_FP_ENTER;
    const float nan = repops_bits_to_f(REPOPS_CANON_NAN_BITS);
    const uint32_t uv = (uint32_t)v;
    float m = zp[order[0]];
    uint32_t bad = 0; /* an entry >= v reads z'[0] instead and fails the call at the end */
    for (int64_t j0 = 0; j0 < k; j0 += EXP_CHUNK) {
        int64_t n = k - j0 < EXP_CHUNK ? k - j0 : EXP_CHUNK;
        float *d = e + j0;
        const uint32_t *o = order + j0 * ostride;
        /* the gather, then the subtraction as a vector loop */
#define GATHER(STRIDE)                                                                        \
    for (int64_t j = 0; j < n; j++) {                                                         \
        uint32_t t = o[(STRIDE) * j];                                                         \
        bad |= t >= uv;                                                                       \
        d[j] = zp[t < uv ? t : 0];                                                            \
    }
        if (ostride == 2)
            GATHER(2)
        else
            GATHER(1)
#undef GATHER
        uint32_t finite = 0;
        for (int64_t j = 0; j < n; j++) {
            float x = repops_canon(d[j] - m);
            d[j] = x;
            finite |= (repops_f_to_bits(x) & 0x7F800000u) != 0x7F800000u;
        }
        if (finite) {
            repops_exp_f32(d, d, n);
            repops_canon_array(d, n);
        } else {
            for (int64_t j = 0; j < n; j++) d[j] = d[j] != d[j] ? nan : d[j] > 0.0f ? d[j] : 0.0f;
        }
    }
    for (int64_t j = k; j < v; j++) e[j] = -0.0f;
    REPOPS_FP_EXIT;
    return bad ? -1 : 0;
}

#define NEG_ZERO_BITS 0x80000000u

/* The first j' >= j with (p[j'] is -0.0) == neg0 (n if none), a vector of words per step: it
 * runs ahead of SCAN's chain of adds, so it must cost little next to it. */
static int64_t next_run_end(const uint32_t *pb, int64_t j, int64_t n, int neg0) {
#if defined(__AVX512F__)
    const __m512i nz = _mm512_set1_epi32((int32_t)NEG_ZERO_BITS);
    const unsigned flip = neg0 ? 0u : 0xFFFFu;
    for (; j + 16 <= n; j += 16) {
        unsigned m = (unsigned)_mm512_cmpeq_epi32_mask(_mm512_loadu_si512((const void *)(pb + j)),
                                                       nz) ^ flip;
        if (m) return j + __builtin_ctz(m);
    }
#elif defined(__AVX2__)
    const __m256i nz = _mm256_set1_epi32((int32_t)NEG_ZERO_BITS);
    const unsigned flip = neg0 ? 0u : 0xFFu;
    for (; j + 8 <= n; j += 8) {
        __m256i eq = _mm256_cmpeq_epi32(_mm256_loadu_si256((const __m256i *)(pb + j)), nz);
        unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(eq)) ^ flip;
        if (m) return j + __builtin_ctz(m);
    }
#endif
    for (; j < n; j++)
        if ((pb[j] == NEG_ZERO_BITS) == neg0) return j;
    return n;
}

/* SCAN (§L5.10, RepOps spec §7.3 step 6): c[0] = canon(p[0]), c[j] = add(c[j-1], p[j]), one
 * binary32 rounding per step in index order (repops_cumsum_seq). Two exact shortcuts keep the
 * latency chain of the adds short: an addend of -0.0 leaves every x unchanged (x + -0 = x for
 * ±0, finite and ±inf; NaN stays NaN), so a run of them copies the sum (EXP pads the row past
 * K with -0, and div(-0, s) is -0 for every s > 0); and once the sum is NaN every later one
 * is NaN (a greedy job's row). The runs are found first and added in a plain loop: a test or
 * select per element would lengthen the chain of dependent adds. */
void repops_sample_scan(const float *p, float *c, int64_t n) {
    if (n <= 0) return;
    REPOPS_FP_ENTER;
    const uint32_t *pb = (const uint32_t *)p;
    float acc = p[0];
    c[0] = repops_canon(acc);
    int64_t j = 1;
    while (j < n && acc == acc) {
        float held = repops_canon(acc);
        for (int64_t end = next_run_end(pb, j, n, 0); j < end; j++) c[j] = held;
        for (int64_t end = next_run_end(pb, j, n, 1); j < end; j++) {
            acc = acc + p[j];
            c[j] = repops_canon(acc);
        }
    }
    for (; j < n; j++) c[j] = repops_bits_to_f(REPOPS_CANON_NAN_BITS);
    REPOPS_FP_EXIT;
}

/* TOPP (§L5.10, RepOps spec §7.3 step 6): f[j] = (topP < 1.0 && j < K && c[j] >= topP) ? 1.0
 * : +0.0, IEEE comparisons (false on NaN). */
void repops_sample_topp(const float *c, int64_t v, int64_t k, uint32_t top_p_bits, float *f) {
    float tp = repops_bits_to_f(top_p_bits), one = repops_bits_to_f(F32_ONE_BITS);
    int64_t live = tp < 1.0f ? k : 0;
    for (int64_t j = 0; j < live; j++) f[j] = c[j] >= tp ? one : 0.0f;
    for (int64_t j = live; j < v; j++) f[j] = 0.0f;
}

/* DRAW (§L5.10, RepOps spec §7.3 step 7): r = mul(u, c[J]) (spec §2, NaN canonical), g[j] =
 * (j <= J && c[j] > r) ? 1.0 : +0.0. The caller has J in [0, v). */
void repops_sample_draw(const float *c, int64_t v, int64_t big_j, uint32_t u_bits, float *g) {
    REPOPS_FP_ENTER;
    float r = repops_canon(repops_bits_to_f(u_bits) * c[big_j]);
    REPOPS_FP_EXIT;
    float one = repops_bits_to_f(F32_ONE_BITS);
    for (int64_t j = 0; j <= big_j; j++) g[j] = c[j] > r ? one : 0.0f;
    for (int64_t j = big_j + 1; j < v; j++) g[j] = 0.0f;
}
