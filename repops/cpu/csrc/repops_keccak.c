/* Keccak256 (Ethereum's keccak, pad 0x01..0x80 — not SHA3's 0x06) and the commitment trees of
 * docs/commitments.md (C2 chunks, C3 Merkle tree, C4 data root, C5 trace leaves and root).
 *
 * Why in C: committing a trace hashes every 1 KiB chunk of every op output (~120K keccak calls
 * per SmolLM2 token); one Python call per chunk cost more than running the ops. Everything here
 * is integer code written for any byte order (lanes are assembled from bytes, never cast), so
 * the digests do not depend on the machine, the ISA flags or the thread count: threads only
 * split independent leaves or independent nodes of one level.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KECCAK_RATE 136 /* bytes: 1088-bit rate of keccak256 */
#define CHUNK_BYTES 1024 /* commitments C2 */
/* Threads only for ≥ 1024 hashes (~2.5 ms): waking sleeping OpenMP workers on a loaded machine
 * cost more than hashing a 192-chunk tensor (measured: 10× slower at 64). Dynamic blocks let a
 * thread that got the CPU take over the share of one that did not. */
#define PAR_MIN_NODES 1024

/* The build compiles with -march=native; GCC 12's znver3 scheduling of this permutation runs
 * ~35 % slower than its generic tuning (measured in scripts/bench_commit.py's machine), so the
 * permutation alone is tuned generically. Tuning only reorders instructions: same digests. */
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define KECCAK_TUNE __attribute__((target("tune=generic")))
#else
#define KECCAK_TUNE
#endif

#define ROL64(v, n) (((v) << (n)) | ((v) >> (64 - (n))))

static const uint64_t RC[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL, 0x8000000080008000ULL,
    0x000000000000808bULL, 0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL,
    0x000000000000008aULL, 0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL, 0x8000000000008003ULL,
    0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800aULL, 0x800000008000000aULL,
    0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

/* keccak-f[1600]: theta, rho+pi, chi, iota; lane (x, y) is a(x + 5y). The state lives in
 * scalars (so the compiler keeps what it can in registers) and two rounds are unrolled per
 * iteration, ping-ponging between a and e instead of copying. */
KECCAK_TUNE static void keccak_f1600(uint64_t s[25]) {
    uint64_t a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16, a17, a18, a19, a20, a21, a22, a23, a24;
    uint64_t e0, e1, e2, e3, e4, e5, e6, e7, e8, e9, e10, e11, e12, e13, e14, e15, e16, e17, e18, e19, e20, e21, e22, e23, e24;
    uint64_t b0, b1, b2, b3, b4, c0, c1, c2, c3, c4, d0, d1, d2, d3, d4;
    a0 = s[0];
    a1 = s[1];
    a2 = s[2];
    a3 = s[3];
    a4 = s[4];
    a5 = s[5];
    a6 = s[6];
    a7 = s[7];
    a8 = s[8];
    a9 = s[9];
    a10 = s[10];
    a11 = s[11];
    a12 = s[12];
    a13 = s[13];
    a14 = s[14];
    a15 = s[15];
    a16 = s[16];
    a17 = s[17];
    a18 = s[18];
    a19 = s[19];
    a20 = s[20];
    a21 = s[21];
    a22 = s[22];
    a23 = s[23];
    a24 = s[24];
    for (int round = 0; round < 24; round += 2) {
        c0 = a0 ^ a5 ^ a10 ^ a15 ^ a20;
        c1 = a1 ^ a6 ^ a11 ^ a16 ^ a21;
        c2 = a2 ^ a7 ^ a12 ^ a17 ^ a22;
        c3 = a3 ^ a8 ^ a13 ^ a18 ^ a23;
        c4 = a4 ^ a9 ^ a14 ^ a19 ^ a24;
        d0 = c4 ^ ROL64(c1, 1);
        d1 = c0 ^ ROL64(c2, 1);
        d2 = c1 ^ ROL64(c3, 1);
        d3 = c2 ^ ROL64(c4, 1);
        d4 = c3 ^ ROL64(c0, 1);
        b0 = a0 ^ d0;
        b1 = ROL64(a6 ^ d1, 44);
        b2 = ROL64(a12 ^ d2, 43);
        b3 = ROL64(a18 ^ d3, 21);
        b4 = ROL64(a24 ^ d4, 14);
        e0 = b0 ^ (~b1 & b2) ^ RC[round];
        e1 = b1 ^ (~b2 & b3);
        e2 = b2 ^ (~b3 & b4);
        e3 = b3 ^ (~b4 & b0);
        e4 = b4 ^ (~b0 & b1);
        b0 = ROL64(a3 ^ d3, 28);
        b1 = ROL64(a9 ^ d4, 20);
        b2 = ROL64(a10 ^ d0, 3);
        b3 = ROL64(a16 ^ d1, 45);
        b4 = ROL64(a22 ^ d2, 61);
        e5 = b0 ^ (~b1 & b2);
        e6 = b1 ^ (~b2 & b3);
        e7 = b2 ^ (~b3 & b4);
        e8 = b3 ^ (~b4 & b0);
        e9 = b4 ^ (~b0 & b1);
        b0 = ROL64(a1 ^ d1, 1);
        b1 = ROL64(a7 ^ d2, 6);
        b2 = ROL64(a13 ^ d3, 25);
        b3 = ROL64(a19 ^ d4, 8);
        b4 = ROL64(a20 ^ d0, 18);
        e10 = b0 ^ (~b1 & b2);
        e11 = b1 ^ (~b2 & b3);
        e12 = b2 ^ (~b3 & b4);
        e13 = b3 ^ (~b4 & b0);
        e14 = b4 ^ (~b0 & b1);
        b0 = ROL64(a4 ^ d4, 27);
        b1 = ROL64(a5 ^ d0, 36);
        b2 = ROL64(a11 ^ d1, 10);
        b3 = ROL64(a17 ^ d2, 15);
        b4 = ROL64(a23 ^ d3, 56);
        e15 = b0 ^ (~b1 & b2);
        e16 = b1 ^ (~b2 & b3);
        e17 = b2 ^ (~b3 & b4);
        e18 = b3 ^ (~b4 & b0);
        e19 = b4 ^ (~b0 & b1);
        b0 = ROL64(a2 ^ d2, 62);
        b1 = ROL64(a8 ^ d3, 55);
        b2 = ROL64(a14 ^ d4, 39);
        b3 = ROL64(a15 ^ d0, 41);
        b4 = ROL64(a21 ^ d1, 2);
        e20 = b0 ^ (~b1 & b2);
        e21 = b1 ^ (~b2 & b3);
        e22 = b2 ^ (~b3 & b4);
        e23 = b3 ^ (~b4 & b0);
        e24 = b4 ^ (~b0 & b1);
        c0 = e0 ^ e5 ^ e10 ^ e15 ^ e20;
        c1 = e1 ^ e6 ^ e11 ^ e16 ^ e21;
        c2 = e2 ^ e7 ^ e12 ^ e17 ^ e22;
        c3 = e3 ^ e8 ^ e13 ^ e18 ^ e23;
        c4 = e4 ^ e9 ^ e14 ^ e19 ^ e24;
        d0 = c4 ^ ROL64(c1, 1);
        d1 = c0 ^ ROL64(c2, 1);
        d2 = c1 ^ ROL64(c3, 1);
        d3 = c2 ^ ROL64(c4, 1);
        d4 = c3 ^ ROL64(c0, 1);
        b0 = e0 ^ d0;
        b1 = ROL64(e6 ^ d1, 44);
        b2 = ROL64(e12 ^ d2, 43);
        b3 = ROL64(e18 ^ d3, 21);
        b4 = ROL64(e24 ^ d4, 14);
        a0 = b0 ^ (~b1 & b2) ^ RC[round + 1];
        a1 = b1 ^ (~b2 & b3);
        a2 = b2 ^ (~b3 & b4);
        a3 = b3 ^ (~b4 & b0);
        a4 = b4 ^ (~b0 & b1);
        b0 = ROL64(e3 ^ d3, 28);
        b1 = ROL64(e9 ^ d4, 20);
        b2 = ROL64(e10 ^ d0, 3);
        b3 = ROL64(e16 ^ d1, 45);
        b4 = ROL64(e22 ^ d2, 61);
        a5 = b0 ^ (~b1 & b2);
        a6 = b1 ^ (~b2 & b3);
        a7 = b2 ^ (~b3 & b4);
        a8 = b3 ^ (~b4 & b0);
        a9 = b4 ^ (~b0 & b1);
        b0 = ROL64(e1 ^ d1, 1);
        b1 = ROL64(e7 ^ d2, 6);
        b2 = ROL64(e13 ^ d3, 25);
        b3 = ROL64(e19 ^ d4, 8);
        b4 = ROL64(e20 ^ d0, 18);
        a10 = b0 ^ (~b1 & b2);
        a11 = b1 ^ (~b2 & b3);
        a12 = b2 ^ (~b3 & b4);
        a13 = b3 ^ (~b4 & b0);
        a14 = b4 ^ (~b0 & b1);
        b0 = ROL64(e4 ^ d4, 27);
        b1 = ROL64(e5 ^ d0, 36);
        b2 = ROL64(e11 ^ d1, 10);
        b3 = ROL64(e17 ^ d2, 15);
        b4 = ROL64(e23 ^ d3, 56);
        a15 = b0 ^ (~b1 & b2);
        a16 = b1 ^ (~b2 & b3);
        a17 = b2 ^ (~b3 & b4);
        a18 = b3 ^ (~b4 & b0);
        a19 = b4 ^ (~b0 & b1);
        b0 = ROL64(e2 ^ d2, 62);
        b1 = ROL64(e8 ^ d3, 55);
        b2 = ROL64(e14 ^ d4, 39);
        b3 = ROL64(e15 ^ d0, 41);
        b4 = ROL64(e21 ^ d1, 2);
        a20 = b0 ^ (~b1 & b2);
        a21 = b1 ^ (~b2 & b3);
        a22 = b2 ^ (~b3 & b4);
        a23 = b3 ^ (~b4 & b0);
        a24 = b4 ^ (~b0 & b1);
    }
    s[0] = a0;
    s[1] = a1;
    s[2] = a2;
    s[3] = a3;
    s[4] = a4;
    s[5] = a5;
    s[6] = a6;
    s[7] = a7;
    s[8] = a8;
    s[9] = a9;
    s[10] = a10;
    s[11] = a11;
    s[12] = a12;
    s[13] = a13;
    s[14] = a14;
    s[15] = a15;
    s[16] = a16;
    s[17] = a17;
    s[18] = a18;
    s[19] = a19;
    s[20] = a20;
    s[21] = a21;
    s[22] = a22;
    s[23] = a23;
    s[24] = a24;
}

static inline uint64_t load64_le(const uint8_t* p) {
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

/* Sponge over the 1088-bit rate; `pos` counts bytes absorbed into the current block. */
typedef struct {
    uint64_t a[25];
    unsigned pos;
} sponge;

static inline void sp_init(sponge* s) {
    memset(s->a, 0, sizeof s->a);
    s->pos = 0;
}

static inline void sp_byte(sponge* s, uint8_t v) {
    s->a[s->pos >> 3] ^= (uint64_t)v << (8 * (s->pos & 7));
    if (++s->pos == KECCAK_RATE) {
        keccak_f1600(s->a);
        s->pos = 0;
    }
}

static void sp_absorb(sponge* s, const uint8_t* p, int64_t len) {
    while (len > 0 && (s->pos & 7)) {
        sp_byte(s, *p++);
        len--;
    }
    /* now lane aligned: whole lanes straight from memory */
    while (len >= 8) {
        s->a[s->pos >> 3] ^= load64_le(p);
        p += 8;
        len -= 8;
        s->pos += 8;
        if (s->pos == KECCAK_RATE) {
            keccak_f1600(s->a);
            s->pos = 0;
        }
    }
    while (len > 0) {
        sp_byte(s, *p++);
        len--;
    }
}

/* Ethereum keccak padding: 0x01 after the message, 0x80 in the last rate byte. */
static void sp_final(sponge* s, uint8_t out[32]) {
    s->a[s->pos >> 3] ^= (uint64_t)0x01 << (8 * (s->pos & 7));
    s->a[(KECCAK_RATE - 1) >> 3] ^= (uint64_t)0x80 << (8 * ((KECCAK_RATE - 1) & 7));
    keccak_f1600(s->a);
    for (int i = 0; i < 32; i++) out[i] = (uint8_t)(s->a[i >> 3] >> (8 * (i & 7)));
}

void repops_keccak256(const uint8_t* data, int64_t len, uint8_t out[32]) {
    sponge s;
    sp_init(&s);
    sp_absorb(&s, data, len);
    sp_final(&s, out);
}

/* keccak256(tag ‖ a ‖ b): every tree hash of commitments C3-C5 is a tag byte and its fields. */
static void tagged_hash(uint8_t tag, const uint8_t* a, int64_t alen, const uint8_t* b,
                        int64_t blen, uint8_t out[32]) {
    sponge s;
    sp_init(&s);
    sp_byte(&s, tag);
    sp_absorb(&s, a, alen);
    if (blen) sp_absorb(&s, b, blen);
    sp_final(&s, out);
}

static int64_t n_chunks(int64_t len) { /* commitments C2: at least one (empty) chunk */
    return len <= 0 ? 1 : (len + CHUNK_BYTES - 1) / CHUNK_BYTES;
}

static int64_t pow2_at_least(int64_t n) {
    int64_t p = 1;
    while (p < n) p *= 2;
    return p;
}

/* Commitments C2 + C3 leaves: keccak256(0x00 ‖ chunk), the last chunk short. out: n × 32. */
void repops_chunk_leaves(const uint8_t* data, int64_t len, uint8_t* out, int threads) {
    int64_t n = n_chunks(len);
#pragma omp parallel for schedule(dynamic, 64) num_threads(threads) if (threads > 1 && n >= PAR_MIN_NODES)
    for (int64_t i = 0; i < n; i++) {
        int64_t off = i * CHUNK_BYTES;
        int64_t m = len - off < CHUNK_BYTES ? len - off : CHUNK_BYTES;
        tagged_hash(0x00, data + off, m < 0 ? 0 : m, NULL, 0, out + 32 * i);
    }
}

/* Commitments C3: one level up, keccak256(0x01 ‖ left ‖ right); `src` has 2 × half nodes. */
static void merkle_up(const uint8_t* src, int64_t half, uint8_t* dst, int threads) {
#pragma omp parallel for schedule(dynamic, 64) num_threads(threads) if (threads > 1 && half >= PAR_MIN_NODES)
    for (int64_t i = 0; i < half; i++) tagged_hash(0x01, src + 64 * i, 64, NULL, 0, dst + 32 * i);
}

/* Commitments C3 in place: `buf` holds n leaves and room for P = next power of two ≥ n; the
 * ZERO padding is written here. The root ends in buf[0..32). Node i overwrites the input of
 * pair i/2, which a sequential loop has already read; a threaded level goes through `tmp`. */
static void merkle_root_inplace(uint8_t* buf, int64_t n, int threads) {
    int64_t p = pow2_at_least(n);
    memset(buf + 32 * n, 0, (size_t)(32 * (p - n)));
    uint8_t* tmp = NULL;
    for (; p > 1; p /= 2) {
        int64_t half = p / 2;
        if (threads > 1 && half >= PAR_MIN_NODES) {
            if (!tmp) tmp = malloc((size_t)(32 * half));
            merkle_up(buf, half, tmp, threads);
            memcpy(buf, tmp, (size_t)(32 * half));
        } else {
            merkle_up(buf, half, buf, 1);
        }
    }
    free(tmp);
}

void repops_merkle_root(const uint8_t* leaves, int64_t n, uint8_t out[32], int threads) {
    int64_t p = pow2_at_least(n);
    uint8_t* buf = malloc((size_t)(32 * p));
    memcpy(buf, leaves, (size_t)(32 * n));
    merkle_root_inplace(buf, n, threads);
    memcpy(out, buf, 32);
    free(buf);
}

/* Commitments C3, every level: out has 2P - 1 nodes, the padded leaves first, the root last
 * (what the dispute game and proofs read). */
void repops_merkle_levels(const uint8_t* leaves, int64_t n, uint8_t* out, int threads) {
    int64_t p = pow2_at_least(n);
    memcpy(out, leaves, (size_t)(32 * n));
    memset(out + 32 * n, 0, (size_t)(32 * (p - n)));
    for (uint8_t* level = out; p > 1; p /= 2) {
        merkle_up(level, p / 2, level + 32 * p, threads);
        level += 32 * p;
    }
}

/* Commitments C2 + C3: the data root of a tensor's canonical bytes in one call. */
void repops_tensor_data_root_mt(const uint8_t* data, int64_t len, uint8_t out[32], int threads) {
    int64_t n = n_chunks(len), p = pow2_at_least(n);
    uint8_t small[32 * 16];
    uint8_t* buf = p <= 16 ? small : malloc((size_t)(32 * p));
    repops_chunk_leaves(data, len, buf, threads);
    merkle_root_inplace(buf, n, threads);
    memcpy(out, buf, 32);
    if (buf != small) free(buf);
}

void repops_tensor_data_root(const uint8_t* data, int64_t len, uint8_t out[32]) {
    repops_tensor_data_root_mt(data, len, out, 1);
}

/* Commitments C4: keccak256(header ‖ data_root), header = 0x02 ‖ dtype ‖ ndim ‖ dims (built by
 * the caller, who validates dims). */
void repops_tensor_root(const uint8_t* hdr, int64_t hlen, const uint8_t* data, int64_t len,
                        uint8_t out[32], int threads) {
    uint8_t root[32];
    repops_tensor_data_root_mt(data, len, root, threads);
    sponge s;
    sp_init(&s);
    sp_absorb(&s, hdr, hlen);
    sp_absorb(&s, root, 32);
    sp_final(&s, out);
}

/* Commitments C5 leaves: keccak256(0x03 ‖ uint32 i (big-endian) ‖ op_hash ‖ output_root).
 * op_hashes and roots are n × 32 each. */
void repops_trace_leaves(const uint8_t* op_hashes, const uint8_t* roots, int64_t n, uint8_t* out,
                         int threads) {
#pragma omp parallel for schedule(dynamic, 64) num_threads(threads) if (threads > 1 && n >= PAR_MIN_NODES)
    for (int64_t i = 0; i < n; i++) {
        uint8_t rec[68];
        rec[0] = (uint8_t)(i >> 24);
        rec[1] = (uint8_t)(i >> 16);
        rec[2] = (uint8_t)(i >> 8);
        rec[3] = (uint8_t)i;
        memcpy(rec + 4, op_hashes + 32 * i, 32);
        memcpy(rec + 36, roots + 32 * i, 32);
        tagged_hash(0x03, rec, 68, NULL, 0, out + 32 * i);
    }
}

/* Commitments C5: trace root over n ≥ 1 leaves. */
void repops_trace_root(const uint8_t* op_hashes, const uint8_t* roots, int64_t n, uint8_t out[32],
                       int threads) {
    uint8_t* buf = malloc((size_t)(32 * pow2_at_least(n)));
    repops_trace_leaves(op_hashes, roots, n, buf, threads);
    merkle_root_inplace(buf, n, threads);
    memcpy(out, buf, 32);
    free(buf);
}
