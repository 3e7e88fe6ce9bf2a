/* Causal grouped-query attention with a KV prefix, RepOps spec §6.10.
 *
 * Per (batch, query head): scores S = chain_d q.k (the §3.1 GEMM, computed for every key; the
 * masked ones are then never read), S[j] = mul(S[j], scale), causal softmax over exactly the
 * pos+1 visible keys (§6.5), then o[d] = chain over j = 0..pos ascending of fma(P[j], v[j,d])
 * starting from +0.0. Masked keys are excluded from every max, fold and chain.
 */
#include "repops_common.h"
#include "crmath.h"

#define QBLOCK 64

/* o[0..D) = chain_{j<len} fma(p[j], v[j, :], acc), acc from +0.0 (spec §3.1). */
static void pv_chain(const float *p, const float *v, int64_t len, int64_t D, float *o) {
    int64_t d0 = 0;
    for (; d0 + 4 * REPOPS_VW <= D; d0 += 4 * REPOPS_VW) {
        repops_vf a0 = REPOPS_VZERO(), a1 = REPOPS_VZERO(), a2 = REPOPS_VZERO(),
                  a3 = REPOPS_VZERO();
        for (int64_t j = 0; j < len; j++) {
            repops_vf pj = REPOPS_VSET1(p[j]);
            const float *vr = v + j * D + d0;
            a0 = REPOPS_VFMA(pj, REPOPS_VLOAD(vr), a0);
            a1 = REPOPS_VFMA(pj, REPOPS_VLOAD(vr + REPOPS_VW), a1);
            a2 = REPOPS_VFMA(pj, REPOPS_VLOAD(vr + 2 * REPOPS_VW), a2);
            a3 = REPOPS_VFMA(pj, REPOPS_VLOAD(vr + 3 * REPOPS_VW), a3);
        }
        REPOPS_VSTORE(o + d0, a0);
        REPOPS_VSTORE(o + d0 + REPOPS_VW, a1);
        REPOPS_VSTORE(o + d0 + 2 * REPOPS_VW, a2);
        REPOPS_VSTORE(o + d0 + 3 * REPOPS_VW, a3);
    }
    for (; d0 < D; d0++) {
        float acc = 0.0f;
        for (int64_t j = 0; j < len; j++) acc = fmaf(p[j], v[j * D + d0], acc);
        o[d0] = acc;
    }
    repops_canon_array(o, D);
}

/* q[B, Hq, Tq, D], k/v[B, Hkv, Tk, D], out[B, Hq, Tq, D], all contiguous. */
void repops_attention(const float *q, const float *k, const float *v, float *out, int64_t B,
                      int64_t Hq, int64_t Hkv, int64_t Tq, int64_t Tk, int64_t D, float scale,
                      int nthreads) {
    int64_t rep = Hq / Hkv;
    int64_t nblk = (Tq + QBLOCK - 1) / QBLOCK;
    int64_t units = B * Hq * nblk;
#pragma omp parallel num_threads(nthreads) if (units > 1 && (double)units * Tq * Tk * D > 33554432.0)
    {
        REPOPS_FP_ENTER;
        float *S = malloc(sizeof(float) * (size_t)QBLOCK * (size_t)(Tk > 0 ? Tk : 1));
        float *e = malloc(sizeof(float) * (size_t)(Tk > 0 ? Tk : 1));
        float *buf = malloc(sizeof(float) * (size_t)repops_fold_buf_len(Tk));
#pragma omp for schedule(dynamic, 1)
        for (int64_t u = 0; u < units; u++) {
            int64_t blk = u % nblk, bh = u / nblk;
            int64_t b = bh / Hq, h = bh % Hq, g = h / rep;
            int64_t t0 = blk * QBLOCK, tq = Tq - t0 < QBLOCK ? Tq - t0 : QBLOCK;
            const float *qh = q + ((b * Hq + h) * Tq + t0) * D;
            const float *kh = k + (b * Hkv + g) * Tk * D;
            const float *vh = v + (b * Hkv + g) * Tk * D;
            int64_t last_pos = Tk - Tq + t0 + tq - 1; /* keys beyond are masked for every row */
            repops_gemm_serial(tq, last_pos + 1, D, qh, D, kh, 1, D, S, Tk);
            for (int64_t i = 0; i < tq; i++) {
                int64_t len = Tk - Tq + t0 + i + 1;
                float *s = S + i * Tk;
                for (int64_t j = 0; j < len; j++) s[j] = s[j] * scale;
                float m = repops_row_max(s, len);
                for (int64_t j = 0; j < len; j++) s[j] = s[j] - m;
                repops_exp_f32(s, e, len);
                float den = repops_fold_sum(e, len, buf);
                for (int64_t j = 0; j < len; j++) e[j] = e[j] / den;
                pv_chain(e, vh, len, D, out + ((b * Hq + h) * Tq + t0 + i) * D);
            }
        }
        free(S);
        free(e);
        free(buf);
        REPOPS_FP_EXIT;
    }
}
