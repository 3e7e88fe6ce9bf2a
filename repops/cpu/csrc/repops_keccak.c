/* Keccak256 (Ethereum's keccak, pad 0x01..0x80 — not SHA3's 0x06) and the commitment trees of
 * docs/commitments.md (C2 chunks, C3 Merkle tree, C4 tensor roots, C5 trace leaves and root).
 *
 * Why in C: committing a trace hashes every 1 KiB chunk of every op output (a SmolLM2 decode
 * step: ~24 MB in ~4,600 distinct tensors, ~220K keccak-f permutations); one Python call per
 * chunk cost more than running the ops, and one scalar C call per tensor still ~90-110 ms.
 *
 * Why lanes: nearly every hash here is one of many independent messages of the same length
 * (1025-byte chunk leaves, 65-byte tree nodes, 69-byte trace leaves), so eight of them
 * (AVX-512) or four (AVX2) go through one keccak-f1600 on vectors of that many lanes (GCC/Clang
 * vector extensions, compiled by the build's -march=native; see KECCAK_VEC for other targets).
 * `repops_tensor_roots` hashes a whole step's tensors in one call, batching chunks and tree
 * nodes across tensors.
 *
 * Everything here is integer code written for any byte order (lanes are assembled from bytes,
 * never cast), and each digest is computed by one lane of one batch from its own message only,
 * so the digests do not depend on the machine, the ISA flags, the lane count, how messages were
 * grouped into batches or the thread count.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KECCAK_RATE 136 /* bytes: 1088-bit rate of keccak256 */
#define RATE_WORDS 17
#define CHUNK_BYTES 1024 /* commitments C2 */
/* Messages of up to this many keccak blocks are batched (a 1025-byte chunk leaf, the longest
 * message of C2-C5, is 8 blocks); any longer one takes the scalar sponge. */
#define MAX_BATCH_BLOCKS 8
/* Threads only from 8192 permutations (~0.4 ms on one AVX-512 core, ~2 ms scalar): waking
 * sleeping OpenMP workers on a loaded machine cost more than hashing a 192-chunk tensor
 * (measured: 10× slower at 64 chunk hashes). Dynamic blocks let a thread that got the CPU take
 * over the share of one that did not. */
#define PAR_MIN_BLOCKS 8192

/* repops_pool.c: the executor's product chunks, taken between batches while a trace step is
 * hashed beside it (see repops_pool_helping); they never touch a digest. Weak, so that this file
 * also builds alone (tests compile it by itself, with other ISA flags). */
#if defined(__GNUC__) || defined(__clang__)
void repops_pool_helping(int on) __attribute__((weak));
void repops_pool_help(void) __attribute__((weak));
#define POOL_HELPING(on) (repops_pool_helping ? repops_pool_helping(on) : (void)0)
#define POOL_HELP() (repops_pool_help ? repops_pool_help() : (void)0)
#else
#define POOL_HELPING(on) ((void)0)
#define POOL_HELP() ((void)0)
#endif

/* Batches hop from tensor to tensor, which the hardware prefetcher cannot guess: the next
 * block of every lane is requested one permutation ahead. Only a hint, never a result. */
#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)(p))
#endif

/* The build compiles with -march=native; GCC 12's znver3 scheduling of the scalar permutation
 * runs ~35 % slower than its generic tuning (measured in scripts/bench_commit.py's machine), so
 * the permutations alone are tuned generically. Tuning only reorders instructions: same
 * digests. */
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define KECCAK_TUNE __attribute__((target("tune=generic")))
#else
#define KECCAK_TUNE
#endif

static const uint64_t RC[24] = {
    0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL, 0x8000000080008000ULL,
    0x000000000000808bULL, 0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL,
    0x000000000000008aULL, 0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
    0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL, 0x8000000000008003ULL,
    0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800aULL, 0x800000008000000aULL,
    0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

/* ---------------------------------------------------------------------------------------------
 * keccak-f[1600]: theta, rho+pi, chi, iota; lane (x, y) is a(x + 5y). One round reads state A
 * and writes state E (two rounds per loop iteration ping-pong between a and e instead of
 * copying). The same macro builds the scalar and the vector permutation: T is the lane type
 * (uint64_t or a vector of LANES), ROL a rotation of T, RCV the round constant (a vector operand
 * broadcasts it). The state lives in named variables so the compiler keeps what it can in
 * registers. */
#define FOR25(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) \
    X(14) X(15) X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23) X(24)

/* rho + pi + chi of output plane y: E lanes o0..o4 (= 5y..5y+4) from the A lanes sK, each
 * XORed with its column's theta term d[sK mod 5] and rotated by rK. */
#define PLANE(ROL, A, E, o0, o1, o2, o3, o4, s0, r0, s1, r1, s2, r2, s3, r3, s4, r4) \
    b0 = ROL(A##s0 ^ d[s0 % 5], r0);                                              \
    b1 = ROL(A##s1 ^ d[s1 % 5], r1);                                              \
    b2 = ROL(A##s2 ^ d[s2 % 5], r2);                                              \
    b3 = ROL(A##s3 ^ d[s3 % 5], r3);                                              \
    b4 = ROL(A##s4 ^ d[s4 % 5], r4);                                              \
    E##o0 = b0 ^ (~b1 & b2);                                                      \
    E##o1 = b1 ^ (~b2 & b3);                                                      \
    E##o2 = b2 ^ (~b3 & b4);                                                      \
    E##o3 = b3 ^ (~b4 & b0);                                                      \
    E##o4 = b4 ^ (~b0 & b1);

#define KECCAK_ROUND(T, ROL, A, E, RCV)                                                   \
    do {                                                                                  \
        T c[5], d[5], b0, b1, b2, b3, b4;                                                 \
        c[0] = A##0 ^ A##5 ^ A##10 ^ A##15 ^ A##20;                                       \
        c[1] = A##1 ^ A##6 ^ A##11 ^ A##16 ^ A##21;                                       \
        c[2] = A##2 ^ A##7 ^ A##12 ^ A##17 ^ A##22;                                       \
        c[3] = A##3 ^ A##8 ^ A##13 ^ A##18 ^ A##23;                                       \
        c[4] = A##4 ^ A##9 ^ A##14 ^ A##19 ^ A##24;                                       \
        for (int x = 0; x < 5; x++) d[x] = c[(x + 4) % 5] ^ ROL(c[(x + 1) % 5], 1);       \
        PLANE(ROL, A, E, 0, 1, 2, 3, 4, 0, 0, 6, 44, 12, 43, 18, 21, 24, 14)              \
        E##0 ^= (RCV);                                                                    \
        PLANE(ROL, A, E, 5, 6, 7, 8, 9, 3, 28, 9, 20, 10, 3, 16, 45, 22, 61)              \
        PLANE(ROL, A, E, 10, 11, 12, 13, 14, 1, 1, 7, 6, 13, 25, 19, 8, 20, 18)           \
        PLANE(ROL, A, E, 15, 16, 17, 18, 19, 4, 27, 5, 36, 11, 10, 17, 15, 23, 56)        \
        PLANE(ROL, A, E, 20, 21, 22, 23, 24, 2, 62, 8, 55, 14, 39, 15, 41, 21, 2)         \
    } while (0)

/* Written as shifts and an or (the & 63 makes n = 0 defined): compilers emit one rotate (rol,
 * vprolq) for it. */
#define ROL64(v, n) (((v) << (n)) | ((v) >> ((64 - (n)) & 63)))

#define DECL_AE(i) a##i = s[i], e##i,
#define STORE_A(i) s[i] = a##i;

KECCAK_TUNE static void keccak_f1600(uint64_t s[25]) {
    uint64_t FOR25(DECL_AE) unused_ = 0;
    (void)unused_;
    for (int round = 0; round < 24; round += 2) {
        KECCAK_ROUND(uint64_t, ROL64, a, e, RC[round]);
        KECCAK_ROUND(uint64_t, ROL64, e, a, RC[round + 1]);
    }
    FOR25(STORE_A)
}

/* LANES independent states: lane l of every vector belongs to state l. The vector permutation
 * is used where it pays:
 * - AVX-512, 8 lanes: each rotation is one vprolq and each chi or 3-way XOR one vpternlogq over
 *   8 lanes, ~5× the scalar permutation per state (Zen 4, scripts/bench_commit.py).
 * - AVX2 (no AVX-512), 4 lanes: rotations are 3 shifts/ors, yet 4 states per permutation run
 *   ~2.9× the scalar permutation per state (AMD EPYC, AVX2 only, 2026-12-06: 119 against 342
 *   ns a state). Eight lanes compiled for AVX2 measured no faster than scalar (each vector is
 *   two registers, and 16 registers hold 8 of the 50 halves: the state lived in memory).
 * Other targets are unmeasured, so there (and with REPOPS_KECCAK_NO_VECTOR, which the tests use
 * to check that path) batches go message by message through the scalar sponge. The digests are
 * the same for every lane count (each lane is one message's own sponge). */
#if (defined(__GNUC__) || defined(__clang__)) && defined(__AVX512F__) && \
    !defined(REPOPS_KECCAK_NO_VECTOR)
#define KECCAK_VEC 1
#define LANES 8
#elif (defined(__GNUC__) || defined(__clang__)) && defined(__AVX2__) && \
    !defined(REPOPS_KECCAK_NO_VECTOR)
#define KECCAK_VEC 1
#define LANES 4
#else
#define LANES 8 /* batches of up to 8 same-length messages, each through the scalar sponge */
#endif

#ifdef KECCAK_VEC
typedef uint64_t vk __attribute__((vector_size(8 * LANES)));

KECCAK_TUNE static void keccak_f1600_vec(vk s[25]) {
    vk FOR25(DECL_AE) unused_ = {0};
    (void)unused_;
    for (int round = 0; round < 24; round += 2) {
        KECCAK_ROUND(vk, ROL64, a, e, RC[round]);
        KECCAK_ROUND(vk, ROL64, e, a, RC[round + 1]);
    }
    FOR25(STORE_A)
}
#endif

static inline uint64_t load64_le(const uint8_t* p) { /* one unaligned load on x86 (GCC, Clang) */
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
           (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
           (uint64_t)p[7] << 56;
}

static inline void store64_le(uint8_t* p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* ---------------------------------------------------------------------------------------------
 * Scalar sponge over the 1088-bit rate (single messages, leftovers of batches); `pos` counts
 * bytes absorbed into the current block. */
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
    for (int i = 0; i < 4; i++) store64_le(out + 8 * i, s->a[i]);
}

void repops_keccak256(const uint8_t* data, int64_t len, uint8_t out[32]) {
    sponge s;
    sp_init(&s);
    sp_absorb(&s, data, len);
    sp_final(&s, out);
}

/* ---------------------------------------------------------------------------------------------
 * Batched hashing. Every tree hash of commitments C2-C5 is keccak256(tag ‖ bytes): a message is
 * its tag byte, a pointer to the rest and where its digest goes (out = NULL: a filler lane whose
 * digest is dropped). */
typedef struct {
    const uint8_t* p;
    int64_t len; /* bytes at p, the tag not counted */
    uint8_t* out;
    uint8_t tag;
} kmsg;

static inline int msg_blocks(int64_t len) { /* tag + len bytes + at least one padding byte */
    return (int)((len + 1) / KECCAK_RATE) + 1;
}

/* One message through the scalar sponge. */
static void hash_one(const kmsg* m) {
    sponge s;
    sp_init(&s);
    sp_byte(&s, m->tag);
    sp_absorb(&s, m->p, m->len);
    sp_final(&s, m->out);
}

#ifdef KECCAK_VEC
/* Word k (bytes 8k..8k+7) of the padded message tag ‖ p[0..len) ‖ 0x01 0…0 0x80 that has `nb`
 * blocks. Words wholly inside the message are one load; the tag, the tail and the padding are
 * assembled byte by byte. */
static inline uint64_t msg_word(const kmsg* m, int64_t k, int nb) {
    int64_t lo = 8 * k, end = m->len + 1; /* message bytes [0, end) with the tag at 0 */
    uint64_t w = 0;
    if (k > 0 && lo + 8 <= end) {
        w = load64_le(m->p + lo - 1);
    } else if (k == 0 && m->len >= 8) {
        w = m->tag | load64_le(m->p) << 8;
    } else {
        for (int64_t j = lo; j < lo + 8 && j < end; j++)
            w |= (uint64_t)(j == 0 ? m->tag : m->p[j - 1]) << (8 * (j - lo));
        if (end >= lo && end < lo + 8) w |= (uint64_t)0x01 << (8 * (end - lo));
    }
    if (k == (int64_t)RATE_WORDS * nb - 1) w |= (uint64_t)0x80 << 56;
    return w;
}

/* XOR bytes off..off+7 of each lane's memory into lane word *a: message words that lie wholly
 * inside every lane's message, the bulk of a batch, loaded without per-lane tests. (An AVX-512
 * gather of the eight addresses made the whole step 1.5× slower on Zen 4 than these loads.) */
static inline void xor_load_lanes(vk* a, const kmsg m[LANES], int64_t off) {
#if LANES == 8
    *a ^= (vk){load64_le(m[0].p + off), load64_le(m[1].p + off), load64_le(m[2].p + off),
               load64_le(m[3].p + off), load64_le(m[4].p + off), load64_le(m[5].p + off),
               load64_le(m[6].p + off), load64_le(m[7].p + off)};
#else
    *a ^= (vk){load64_le(m[0].p + off), load64_le(m[1].p + off), load64_le(m[2].p + off),
               load64_le(m[3].p + off)};
#endif
}

/* LANES messages of `nb` blocks each, lane l = message l, in lockstep. Words 1..kfast lie
 * inside every message (one load per lane), words from kzero on lie past every message's end
 * (zero but for the final 0x80); only the words around the tag and the ends are assembled per
 * lane by msg_word. */
static void hash_batch(const kmsg m[LANES], int nb) {
    int64_t kfast = INT64_MAX, kzero = 0, klast = (int64_t)RATE_WORDS * nb - 1;
    for (int l = 0; l < LANES; l++) {
        int64_t end = m[l].len + 1;
        kfast = end / 8 - 1 < kfast ? end / 8 - 1 : kfast;
        kzero = end / 8 + 1 > kzero ? end / 8 + 1 : kzero;
    }
    vk a[25];
    memset(a, 0, sizeof a);
    for (int b = 0; b < nb; b++) {
        for (int w = 0; w < RATE_WORDS; w++) {
            int64_t k = (int64_t)RATE_WORDS * b + w;
            if (k >= 1 && k <= kfast) {
                xor_load_lanes(&a[w], m, 8 * k - 1);
            } else if (k >= kzero) {
                if (k == klast)
                    for (int l = 0; l < LANES; l++) a[w][l] ^= (uint64_t)0x80 << 56;
            } else {
                for (int l = 0; l < LANES; l++) a[w][l] ^= msg_word(&m[l], k, nb);
            }
        }
        if (b + 1 < nb)
            for (int l = 0; l < LANES; l++) { /* the (up to 3) lines of block b + 1 */
                const uint8_t* next = m[l].p + KECCAK_RATE * (b + 1) - 1;
                PREFETCH(next);
                PREFETCH(next + 64);
                PREFETCH(next + KECCAK_RATE - 1);
            }
        keccak_f1600_vec(a);
    }
    for (int l = 0; l < LANES; l++)
        if (m[l].out)
            for (int i = 0; i < 4; i++) store64_le(m[l].out + 8 * i, a[i][l]);
}

#endif

/* Longest message (after its tag) of MAX_BATCH_BLOCKS blocks: the tag and a padding byte fit. */
#define MAX_BATCH_LEN ((int64_t)MAX_BATCH_BLOCKS * KECCAK_RATE - 2)

static inline int64_t len_key(int64_t len) { /* counting-sort key: longer ones share one */
    return len <= MAX_BATCH_LEN ? len : MAX_BATCH_LEN + 1;
}

/* Hash every message of ms[0..n) (any lengths, outputs anywhere but not overlapping any input).
 * Messages are ordered by length (a stable counting sort, skipped when all lengths are equal as
 * for tree nodes), so that a batch's lanes mostly share one length and its words load without
 * per-lane tests, then cut into batches of up to LANES messages with one block count. A batch
 * short of LANES is filled with dropped copies of its last message; a lone message takes the
 * scalar sponge (one 8-lane AVX-512 permutation costs about two scalar ones, a 4-lane AVX2 one
 * ~1.4). Threads take whole
 * batches. */
static void hash_msgs(const kmsg* ms, int64_t n, int threads) {
    if (n <= 0) return;
    int64_t blocks = 0;
    int uniform = 1;
    for (int64_t i = 0; i < n; i++) {
        blocks += msg_blocks(ms[i].len);
        uniform &= ms[i].len == ms[0].len;
    }
    const kmsg* ord = ms;
    kmsg* sorted = NULL;
    if (!uniform) {
        int64_t* at = calloc((size_t)MAX_BATCH_LEN + 3, sizeof *at);
        for (int64_t i = 0; i < n; i++) at[len_key(ms[i].len) + 1]++;
        for (int64_t k = 1; k <= MAX_BATCH_LEN + 2; k++) at[k] += at[k - 1];
        sorted = malloc((size_t)n * sizeof *sorted);
        for (int64_t i = 0; i < n; i++) sorted[at[len_key(ms[i].len)]++] = ms[i];
        free(at);
        ord = sorted;
    }
    /* batch b is ord[first[b], first[b + 1]); past the last batch, messages too long to batch */
    int64_t* first = malloc((size_t)(n / LANES + MAX_BATCH_BLOCKS + 2) * sizeof *first);
    int64_t nbatch = 0, i = 0;
    while (i < n && ord[i].len <= MAX_BATCH_LEN) {
        int nb = msg_blocks(ord[i].len);
        first[nbatch++] = i;
        int64_t j = i + 1;
        while (j < n && j < i + LANES && msg_blocks(ord[j].len) == nb) j++;
        i = j;
    }
    first[nbatch] = i;
#pragma omp parallel for schedule(dynamic, 8) num_threads(threads) if (threads > 1 && blocks >= PAR_MIN_BLOCKS)
    for (int64_t bi = 0; bi < nbatch; bi++) {
        const kmsg* m = ord + first[bi];
        if (bi + 1 < nbatch) /* the first block of the next batch */
            for (int64_t q = first[bi + 1]; q < first[bi + 2]; q++) {
                PREFETCH(ord[q].p);
                PREFETCH(ord[q].p + 64);
                PREFETCH(ord[q].p + KECCAK_RATE - 2);
            }
        POOL_HELP();
        int lanes = (int)(first[bi + 1] - first[bi]), nb = msg_blocks(m[0].len);
#ifndef KECCAK_VEC
        for (int l = 0; l < lanes; l++) hash_one(&m[l]);
        (void)nb;
#else
        if (lanes == LANES) {
            hash_batch(m, nb);
        } else if (lanes == 1) {
            hash_one(m);
        } else {
            kmsg fill[LANES];
            for (int l = 0; l < LANES; l++) {
                fill[l] = m[l < lanes ? l : lanes - 1];
                if (l >= lanes) fill[l].out = NULL;
            }
            hash_batch(fill, nb);
        }
#endif
    }
    for (int64_t k = first[nbatch]; k < n; k++) hash_one(&ord[k]);
    free(first);
    free(sorted);
}

/* ---------------------------------------------------------------------------------------------
 * The commitment rules on top of hash_msgs. */

static int64_t n_chunks(int64_t len) { /* commitments C2: at least one (empty) chunk */
    return len <= 0 ? 1 : (len + CHUNK_BYTES - 1) / CHUNK_BYTES;
}

static int64_t pow2_at_least(int64_t n) {
    int64_t p = 1;
    while (p < n) p *= 2;
    return p;
}

/* Commitments C2 + C3 leaf messages: 0x00 ‖ chunk i of data, the last chunk short (an empty
 * tensor has one empty chunk); digests to out + 32 i. Returns the count. */
static int64_t chunk_msgs(const uint8_t* data, int64_t len, uint8_t* out, kmsg* ms) {
    int64_t n = n_chunks(len);
    for (int64_t i = 0; i < n; i++) {
        int64_t off = i * CHUNK_BYTES, m = len - off < CHUNK_BYTES ? len - off : CHUNK_BYTES;
        ms[i] = (kmsg){data + off, m < 0 ? 0 : m, out + 32 * i, 0x00};
    }
    return n;
}

/* Commitments C3 inner-node messages 0x01 ‖ left ‖ right of one level: `src` holds 2 × half
 * nodes, digests to dst (never overlapping src). */
static void node_msgs(const uint8_t* src, int64_t half, uint8_t* dst, kmsg* ms) {
    for (int64_t i = 0; i < half; i++) ms[i] = (kmsg){src + 64 * i, 64, dst + 32 * i, 0x01};
}

/* Commitments C2 + C3 leaves: keccak256(0x00 ‖ chunk), the last chunk short. out: n × 32. */
void repops_chunk_leaves(const uint8_t* data, int64_t len, uint8_t* out, int threads) {
    kmsg* ms = malloc((size_t)n_chunks(len) * sizeof *ms);
    hash_msgs(ms, chunk_msgs(data, len, out, ms), threads);
    free(ms);
}

/* Commitments C3, every level: out has 2P - 1 nodes, the padded leaves first (ZERO padding
 * written here), the root last (what the dispute game and proofs read). Each level goes
 * through hash_msgs as one batch job. `out` may be `leaves` (already in place). */
void repops_merkle_levels(const uint8_t* leaves, int64_t n, uint8_t* out, int threads) {
    int64_t p = pow2_at_least(n);
    if (out != leaves) memmove(out, leaves, (size_t)(32 * n));
    memset(out + 32 * n, 0, (size_t)(32 * (p - n)));
    kmsg* ms = p > 1 ? malloc((size_t)(p / 2) * sizeof *ms) : NULL;
    for (uint8_t* level = out; p > 1; p /= 2) {
        node_msgs(level, p / 2, level + 32 * p, ms);
        hash_msgs(ms, p / 2, threads);
        level += 32 * p;
    }
    free(ms);
}

/* Commitments C3 root of n ≥ 1 leaves (P = 1: the leaf itself). */
void repops_merkle_root(const uint8_t* leaves, int64_t n, uint8_t out[32], int threads) {
    int64_t p = pow2_at_least(n);
    uint8_t* buf = malloc((size_t)(32 * (2 * p - 1)));
    repops_merkle_levels(leaves, n, buf, threads);
    memcpy(out, buf + 32 * (2 * p - 2), 32);
    free(buf);
}

/* Leaves of constant chunks: a chunk's leaf depends on its bytes only (C2), so a full chunk
 * that repeats one 32-bit word has the leaf of any other such chunk of the same word. */
#define CONST_MEMO 4
struct const_memo {
    int n;
    uint32_t word[CONST_MEMO];
    uint8_t leaf[CONST_MEMO][32];
};

static int const_word(const uint8_t* p, int64_t len, uint32_t* w) {
    if (len != CHUNK_BYTES) return 0;
    uint64_t pat;
    memcpy(&pat, p, 8);
    if ((uint32_t)pat != (uint32_t)(pat >> 32)) return 0;
    /* no early exit past the first word: the OR of differences vectorizes (64-byte compares);
     * a word-by-word loop with an exit per word was ~5 % of a traced CPU decode, nearly all
     * of it on the uniform chunks, which it has to read whole anyway */
    uint64_t diff = 0;
    for (int64_t k = 8; k < CHUNK_BYTES; k += 8) {
        uint64_t v;
        memcpy(&v, p + k, 8);
        diff |= v ^ pat;
    }
    if (diff) return 0;
    *w = (uint32_t)pat;
    return 1;
}

/* Drops from ms[0, c) the chunks whose leaf the memo has (written now), hashing the first
 * chunk of each new word at once; returns how many messages are left (in order). */
static int64_t const_chunks(kmsg* ms, int64_t c, struct const_memo* memo) {
    int64_t keep = 0;
    for (int64_t k = 0; k < c; k++) {
        uint32_t w;
        if (const_word(ms[k].p, ms[k].len, &w)) {
            int e = 0;
            while (e < memo->n && memo->word[e] != w) e++;
            if (e < memo->n) {
                memcpy(ms[k].out, memo->leaf[e], 32);
                continue;
            }
            if (e < CONST_MEMO) {
                hash_one(&ms[k]);
                memo->word[e] = w;
                memcpy(memo->leaf[e], ms[k].out, 32);
                memo->n++;
                continue;
            }
        }
        ms[keep++] = ms[k];
    }
    return keep;
}

/* Commitments C4 for n tensors in one call: out + 32 i = keccak256(hdr_i ‖ data_root_i), with
 * data_root_i the C3 root of tensor i's C2 chunk leaves and hdr_i = 0x02 ‖ dtype ‖ ndim ‖ dims
 * (built by the caller, who validates dims). Why one call: a decode step has ~4,600 distinct
 * tensors, mostly 2–6 KiB; batching the chunks of all of them (then each tree level of all of
 * them, then the headers) fills the 8 lanes where one call per tensor would hash its 2–6 chunks
 * alone, and saves ~4,600 calls' set-up.
 * Leaves the caller already has: tensor i's first nknown[i] chunk leaves are read from
 * known[i] instead of being hashed (a KV cache that grew by appending: its full chunks from the
 * last step are the same bytes, so the same C2 leaves), and, where leaves_out[i] is set, all
 * its n_chunks leaves are copied there (for the next step). known, nknown and leaves_out may
 * be NULL, or hold NULL / 0 for a tensor. */
void repops_tensor_roots_known(int64_t n, const uint8_t* const* data, const int64_t* lens,
                               const uint8_t* const* hdrs, const int64_t* hlens,
                               const uint8_t* const* known, const int64_t* nknown,
                               uint8_t* const* leaves_out, uint8_t* out, int threads) {
    if (n <= 0) return;
    POOL_HELPING(1);
    /* tree i occupies nodes [base[i], base[i] + 2 P_i - 1) of `nodes`, laid out as
     * repops_merkle_levels does: padded leaves first, root last */
    int64_t* base = malloc((size_t)(n + 1) * sizeof *base);
    int64_t chunks = 0, hbytes = 0, pmax = 1;
    base[0] = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t c = n_chunks(lens[i]), p = pow2_at_least(c);
        chunks += c;
        hbytes += hlens[i] + 32;
        pmax = p > pmax ? p : pmax;
        base[i + 1] = base[i] + 2 * p - 1;
    }
    uint8_t* nodes = malloc((size_t)(32 * base[n]));
    int64_t nmsg = chunks > n ? chunks : n;
    kmsg* ms = malloc((size_t)nmsg * sizeof *ms);

    /* C2 + C3 leaves of every tensor, ZERO padding up to P_i; full chunks of one repeated
     * 32-bit word (the -0.0 padding of FOLD levels is ~a tenth of a decode step's bytes) take
     * the leaf of the first such chunk (`const_chunks`) instead of being hashed again */
    int64_t m = 0;
    struct const_memo memo = {0};
    for (int64_t i = 0; i < n; i++) {
        if ((i & 63) == 0) POOL_HELP(); /* this loop reads every chunk's first bytes */
        int64_t c = chunk_msgs(data[i], lens[i], nodes + 32 * base[i], ms + m);
        int64_t p = (base[i + 1] - base[i] + 1) / 2;
        memset(nodes + 32 * (base[i] + c), 0, (size_t)(32 * (p - c)));
        int64_t k = known && known[i] && nknown ? nknown[i] : 0;
        k = k < 0 ? 0 : (k > c ? c : k);
        if (k) { /* the known leaves, in place; their messages dropped */
            memcpy(nodes + 32 * base[i], known[i], (size_t)(32 * k));
            memmove(ms + m, ms + m + k, (size_t)(c - k) * sizeof *ms);
        }
        m += const_chunks(ms + m, c - k, &memo);
    }
    hash_msgs(ms, m, threads);
    for (int64_t i = 0; leaves_out && i < n; i++)
        if (leaves_out[i])
            memcpy(leaves_out[i], nodes + 32 * base[i], (size_t)(32 * n_chunks(lens[i])));

    /* C3 levels: level j of every tree with P_i ≥ 2^j, one batch job per j. Level j of a tree
     * of P padded leaves has P / 2^j nodes and starts 2P - 2P / 2^j nodes into it. */
    for (int64_t width = 2; width <= pmax; width *= 2) {
        m = 0;
        for (int64_t i = 0; i < n; i++) {
            int64_t p = (base[i + 1] - base[i] + 1) / 2, half = p / width;
            if (half == 0) continue;
            uint8_t* tree = nodes + 32 * base[i];
            node_msgs(tree + 32 * (2 * p - 4 * half), half, tree + 32 * (2 * p - 2 * half),
                      ms + m);
            m += half;
        }
        hash_msgs(ms, m, threads);
    }

    /* C4: header ‖ data root, copied together so each is one message (tag = its first byte) */
    uint8_t* recs = malloc((size_t)hbytes + 1);
    uint8_t* r = recs;
    for (int64_t i = 0; i < n; i++) {
        memcpy(r, hdrs[i], (size_t)hlens[i]);
        memcpy(r + hlens[i], nodes + 32 * (base[i + 1] - 1), 32);
        ms[i] = (kmsg){r + 1, hlens[i] + 31, out + 32 * i, r[0]};
        r += hlens[i] + 32;
    }
    hash_msgs(ms, n, threads);
    free(recs);
    free(ms);
    free(nodes);
    free(base);
    POOL_HELPING(0);
}

/* Commitments C4 for n tensors, no leaves known (repops_tensor_roots_known). */
void repops_tensor_roots(int64_t n, const uint8_t* const* data, const int64_t* lens,
                         const uint8_t* const* hdrs, const int64_t* hlens, uint8_t* out,
                         int threads) {
    repops_tensor_roots_known(n, data, lens, hdrs, hlens, NULL, NULL, NULL, out, threads);
}

/* Commitments C4 of one tensor: keccak256(header ‖ data_root). */
void repops_tensor_root(const uint8_t* hdr, int64_t hlen, const uint8_t* data, int64_t len,
                        uint8_t out[32], int threads) {
    repops_tensor_roots(1, &data, &len, &hdr, &hlen, out, threads);
}

/* Commitments C2 + C3: the data root of a tensor's canonical bytes in one call. */
void repops_tensor_data_root_mt(const uint8_t* data, int64_t len, uint8_t out[32], int threads) {
    int64_t n = n_chunks(len), p = pow2_at_least(n);
    uint8_t* buf = malloc((size_t)(32 * (2 * p - 1)));
    repops_chunk_leaves(data, len, buf, threads);
    repops_merkle_levels(buf, n, buf, threads);
    memcpy(out, buf + 32 * (2 * p - 2), 32);
    free(buf);
}

void repops_tensor_data_root(const uint8_t* data, int64_t len, uint8_t out[32]) {
    repops_tensor_data_root_mt(data, len, out, 1);
}

/* Commitments C5 leaves first .. first + n - 1: keccak256(0x03 ‖ uint32 i (big-endian) ‖
 * op_hash ‖ output_root), op hash and output root i - first of op_hashes and roots (n × 32
 * each); the 68-byte records after the tag are assembled first so each leaf is one message. */
void repops_trace_leaves_at(int64_t first, const uint8_t* op_hashes, const uint8_t* roots,
                            int64_t n, uint8_t* out, int threads) {
    if (n <= 0) return;
    uint8_t* recs = malloc((size_t)(68 * n));
    kmsg* ms = malloc((size_t)n * sizeof *ms);
    for (int64_t i = 0; i < n; i++) {
        uint8_t* rec = recs + 68 * i;
        int64_t at = first + i;
        rec[0] = (uint8_t)(at >> 24);
        rec[1] = (uint8_t)(at >> 16);
        rec[2] = (uint8_t)(at >> 8);
        rec[3] = (uint8_t)at;
        memcpy(rec + 4, op_hashes + 32 * i, 32);
        memcpy(rec + 36, roots + 32 * i, 32);
        ms[i] = (kmsg){rec, 68, out + 32 * i, 0x03};
    }
    hash_msgs(ms, n, threads);
    free(ms);
    free(recs);
}

/* Commitments C5 leaves 0 .. n - 1. */
void repops_trace_leaves(const uint8_t* op_hashes, const uint8_t* roots, int64_t n, uint8_t* out,
                         int threads) {
    repops_trace_leaves_at(0, op_hashes, roots, n, out, threads);
}

/* Commitments C5: trace root over n ≥ 1 leaves (C3 tree of the C5 leaves). */
void repops_trace_root(const uint8_t* op_hashes, const uint8_t* roots, int64_t n, uint8_t out[32],
                       int threads) {
    int64_t p = pow2_at_least(n);
    uint8_t* buf = malloc((size_t)(32 * (2 * p - 1)));
    repops_trace_leaves(op_hashes, roots, n, buf, threads);
    repops_merkle_levels(buf, n, buf, threads);
    memcpy(out, buf + 32 * (2 * p - 2), 32);
    free(buf);
}
