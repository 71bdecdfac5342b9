/* ---- Integer arithmetic, exactly as TensorFlow Lite's reference kernels ---------------
 *
 * Each function below computes what the function of the same purpose in TFLite's
 * reference kernels (and gemmlowp's fixedpoint.h, which they use) computes, bit for bit:
 * the C library's outputs are checked against LiteRT's reference kernels on every test
 * image before it is kept. Signed right shifts are arithmetic, as on every compiler this
 * code targets (GCC, Clang, Arm Compiler, MSVC). No floating point, no libm.
 */

/* gemmlowp SaturatingRoundingDoublingHighMul: (a * b * 2) >> 32, rounded; VQRDMULH. */
static int32_t ec_high_mul(int32_t a, int32_t b)
{
    int64_t ab;
    int32_t nudge;
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    ab = (int64_t)a * (int64_t)b;
    nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
    return (int32_t)((ab + nudge) / ((int64_t)1 << 31));
}

/* gemmlowp RoundingDivideByPOT: x / 2^exponent, rounded to nearest, halves away from 0. */
static int32_t ec_div_pot(int32_t x, int exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* gemmlowp SaturatingRoundingMultiplyByPOT for a positive exponent: x * 2^exponent. */
static int32_t ec_mul_pot(int32_t x, int exponent)
{
    const int32_t threshold = (int32_t)((((int64_t)1) << (31 - exponent)) - 1);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << exponent);
}

/* TFLite MultiplyByQuantizedMultiplier (double rounding): x * multiplier * 2^(shift-31). */
static int32_t ec_requantize(int32_t x, int32_t multiplier, int shift)
{
    const int left = shift > 0 ? shift : 0;
    const int right = shift > 0 ? 0 : -shift;
    return ec_div_pot(ec_high_mul((int32_t)((uint32_t)x << left), multiplier), right);
}

/* round((double)acc * s) with s = mantissa * 2^exponent (mantissa < 2^53), as the
 * reference fully-connected kernel rescales its sums in double precision: the product is
 * rounded to 53 significant bits (to nearest, ties to even, as IEEE 754 does), then to an
 * integer with halves away from zero (C's round()), all in 64-bit integers. */
static int32_t ec_rescale(int32_t acc, uint64_t mantissa, int exponent)
{
    const uint64_t magnitude = acc < 0 ? (uint64_t)0 - (uint64_t)(int64_t)acc : (uint64_t)acc;
    uint64_t low, high, part, q, result;
    int bits, shift = 0, scale;
    /* The exact 85-bit product magnitude * mantissa as high:low. */
    part = magnitude * (mantissa & 0xFFFFFFFFu);
    high = magnitude * (mantissa >> 32);
    low = part + (high << 32);
    high = (high >> 32) + (low < part ? 1u : 0u);
    if (high == 0 && low == 0) {
        return 0;
    }
    bits = 0;
    for (q = high != 0 ? high : low; q != 0; q >>= 1) {
        ++bits;
    }
    if (high != 0) {
        bits += 64;
    }
    q = low;
    if (bits > 53) {
        /* Round to 53 significant bits; shift <= 32, so the dropped bits are in low. */
        const uint64_t half = (uint64_t)1 << (bits - 54);
        const uint64_t dropped = low & ((half << 1) - 1);
        shift = bits - 53;
        q = (low >> shift) | (high << (64 - shift));
        if (dropped > half || (dropped == half && (q & 1u))) {
            ++q;
            if (q == (uint64_t)1 << 53) {
                q >>= 1;
                ++shift;
            }
        }
    }
    scale = shift + exponent;
    if (scale >= 0) {
        result = scale > 10 ? (uint64_t)1 << 40 : q << scale;
    } else if (scale < -54) {
        result = 0;
    } else {
        const int down = -scale;
        result = q >> down;
        if ((q >> (down - 1)) & 1u) {
            ++result; /* the dropped part is at least one half: away from zero */
        }
    }
    if (result > (uint64_t)INT32_MAX) {
        return acc < 0 ? INT32_MIN : INT32_MAX;
    }
    return acc < 0 ? -(int32_t)result : (int32_t)result;
}

static int32_t ec_clamp(int32_t x, int32_t low, int32_t high)
{
    return x < low ? low : (x > high ? high : x);
}

/* ---- Two paths to the same integers -------------------------------------------------
 *
 * On a core with Arm's DSP extension (Cortex-M4, M7, M33, M55; __ARM_FEATURE_DSP), the
 * multiply-accumulates go through the ACLE intrinsics: SXTB16 unpacks two int8 weights
 * of a 32-bit word into two int16 halves, SMLAD multiplies two int16 pairs and adds both
 * products to an accumulator. Elsewhere (Cortex-M0 and M3, a PC) it is plain C. Both
 * compute the same int32 sums, so both give the same bytes. -DEDGECNN_PORTABLE takes the
 * plain C path on any core; -DEDGECNN_DSP_IN_C the DSP path with the intrinsics written
 * in C (for checking that path on a machine without them).
 */
#if defined(EDGECNN_DSP_IN_C)
#include <string.h>
#define EC_DSP 1
static uint32_t ec_sxtb16(uint32_t x)
{
    const uint32_t low = (uint32_t)(int32_t)(int8_t)(x & 0xFFu) & 0xFFFFu;
    const uint32_t high = (uint32_t)(int32_t)(int8_t)((x >> 16) & 0xFFu) & 0xFFFFu;
    return low | high << 16;
}
static uint32_t ec_sxtb16_ror8(uint32_t x)
{
    return ec_sxtb16(x >> 8 | x << 24);
}
static uint32_t ec_sxtab16(uint32_t a, uint32_t x)
{
    const uint32_t low = ((a & 0xFFFFu) + (uint32_t)(int32_t)(int8_t)(x & 0xFFu)) & 0xFFFFu;
    const uint32_t high = ((a >> 16) + (uint32_t)(int32_t)(int8_t)((x >> 16) & 0xFFu)) & 0xFFFFu;
    return low | high << 16;
}
static uint32_t ec_sxtab16_ror8(uint32_t a, uint32_t x)
{
    return ec_sxtab16(a, x >> 8 | x << 24);
}
static int32_t ec_smlad(uint32_t x, uint32_t y, int32_t acc)
{
    const int32_t x0 = (int16_t)(x & 0xFFFFu), x1 = (int16_t)(x >> 16);
    const int32_t y0 = (int16_t)(y & 0xFFFFu), y1 = (int16_t)(y >> 16);
    return acc + x0 * y0 + x1 * y1;
}
#elif defined(__ARM_FEATURE_SIMD32) && __ARM_FEATURE_SIMD32 && !defined(__ARM_BIG_ENDIAN) && \
    !defined(EDGECNN_PORTABLE)
/* SIMD32 (SXTB16, SMLAD), not just DSP: ARMv5TE defines __ARM_FEATURE_DSP without them.
 * Little-endian only: the patch's order within a group assumes it. */
#include <arm_acle.h>
#include <string.h>
#define EC_DSP 1
#define ec_sxtb16(x) ((uint32_t)__sxtb16((int32_t)(x)))
#define ec_sxtab16(a, x) ((uint32_t)__sxtab16((int32_t)(a), (int32_t)(x)))
#define ec_smlad(x, y, acc) __smlad((int32_t)(x), (int32_t)(y), (acc))
#if defined(__GNUC__)
/* SXTB16 and SXTAB16 take a rotation of their operand for free; GCC does not fold a
 * separate rotate into them, so it is written out. */
static inline uint32_t ec_sxtb16_ror8(uint32_t x)
{
    uint32_t result;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(result) : "r"(x));
    return result;
}
static inline uint32_t ec_sxtab16_ror8(uint32_t a, uint32_t x)
{
    uint32_t result;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(result) : "r"(a), "r"(x));
    return result;
}
#else
#define ec_sxtb16_ror8(x) ec_sxtb16(__ror((x), 8))
#define ec_sxtab16_ror8(a, x) ec_sxtab16((a), __ror((x), 8))
#endif
#else
#define EC_DSP 0
#endif

/* The multiply-accumulate loops keep their own registers (inlined at -Os, they spill). */
#if defined(__GNUC__)
#define EC_NOINLINE __attribute__((noinline))
#else
#define EC_NOINLINE
#endif

#if EC_DSP
/* Four bytes as one little-endian word, at any alignment (one LDR on Cortex-M). */
static uint32_t ec_read32(const void *p)
{
    uint32_t word;
    memcpy(&word, p, 4);
    return word;
}
static void ec_write32(void *p, uint32_t word)
{
    memcpy(p, &word, 4);
}
/* Where value i of a group of four goes in the patch: SXTB16 unpacks the weights of a
 * group as (0, 2) and (1, 3), so the patch holds each group in that order. */
#define EC_ORDER(i) ((((i) & 1) << 1) | ((i) >> 1))
#else
#define EC_ORDER(i) (i)
#endif
/* The slot of value i of a patch's filter row (the generator's tables use it). */
#define EC_SLOT(i) (((i) >> 2) * 8 + EC_ORDER((i) & 3))

/* ---- Convolution fused with the max-pool after it ---------------------------------- */

/* One convolution (per-channel requantization, zero padding) and the max-pool over its
 * output, as the generator describes it. The filter is stored for pairs of output
 * channels: for each group of 4 values of a filter row (k_h * k_w * in_c values, rows
 * padded with zeros to row = a multiple of 4), the group of channel c, then the group of
 * channel c + 1. out_c is rounded up to even with a channel of zeros (never written). */
typedef struct {
    const int8_t *filter;
    const int32_t *bias;       /* out_c, rounded up to even */
    const int32_t *multiplier; /* out_c */
    const int8_t *shift;       /* out_c */
    /* Layers whose patch is filled value by value (in_c not a multiple of 4, or the
     * first, read through the pixel table), else NULL: for each value of a filter row,
     * where it is in the input from the patch's top-left value, and its slot in the
     * patch (row values and then the zeros up to row). */
    const int16_t *taps;
    const uint16_t *slots;
    int32_t in_h, in_w, in_c, out_c, k_h, k_w;
    int32_t stride_h, stride_w, pad_h, pad_w;
    int32_t pool_h, pool_w, pool_stride_h, pool_stride_w, out_h, out_w;
    int32_t row;        /* values of a filter row, padded to a multiple of 4 */
    int32_t in_offset;  /* minus the input's zero point */
    int32_t out_offset; /* the output's zero point */
    int32_t low, high;  /* the output's range after the activations and the pool */
} ec_conv;

/* n values of a patch, value k from in[corner + tap[k]] (through the pixel table when
 * it is given) plus the offset, to patch[slot[k]]. corner may be negative (a patch over
 * the top or left border): only the sums, each inside the input, index it. */
EC_NOINLINE static void ec_taps(int16_t *patch, const uint16_t *slot, const int16_t *tap, int n,
                                const int8_t *in, const int8_t *table, long corner, int offset)
{
    const int16_t *end = tap + n;
    if (table != NULL) {
        const uint8_t *pixels = (const uint8_t *)(const void *)in;
        while (tap < end) {
            patch[*slot++] = (int16_t)(table[pixels[corner + *tap++]] + offset);
        }
    } else {
        while (tap < end) {
            patch[*slot++] = (int16_t)(in[corner + *tap++] + offset);
        }
    }
}

/* Patch of the convolution at input position (y0, x0) (top-left, may be outside): its
 * values in the order of a filter row, each plus the input offset, so that a value of
 * the padding is 0 and contributes nothing, as in TFLite; then zeros up to the row's
 * length. Values go in groups of 4, the two positions of a pair interleaved group by
 * group (patch + 4 for the second position). When table is not NULL, in points at uint8
 * pixels that the table turns into the int8 input. */
static void ec_patch(const ec_conv *l, const int8_t *in, const int8_t *table, int y0, int x0,
                     int16_t *patch)
{
    const int in_c = l->in_c, k_w = l->k_w;
    int ky, kx, c, i;
    if (l->taps == NULL) {
        /* in_c is a multiple of 4: four channels of a pixel make a group. */
#if EC_DSP
        const uint32_t offset = ((uint32_t)(uint16_t)l->in_offset) * 0x10001u;
#endif
        int16_t *group = patch;
        for (ky = 0; ky < l->k_h; ++ky) {
            const int y = y0 + ky;
            for (kx = 0; kx < k_w; ++kx) {
                const int x = x0 + kx;
                if (y >= 0 && y < l->in_h && x >= 0 && x < l->in_w) {
                    const int8_t *from = in + ((long)y * l->in_w + x) * in_c;
                    for (c = 0; c < in_c; c += 4, group += 8) {
#if EC_DSP
                        /* One word; its bytes sign-extended and offset two at a time. */
                        const uint32_t word = ec_read32(from + c);
                        ec_write32(group, ec_sxtab16(offset, word));
                        ec_write32(group + 2, ec_sxtab16_ror8(offset, word));
#else
                        for (i = 0; i < 4; ++i) {
                            group[i] = (int16_t)(from[c + i] + l->in_offset);
                        }
#endif
                    }
                } else {
                    for (c = 0; c < in_c; c += 4, group += 8) {
                        group[0] = group[1] = group[2] = group[3] = 0;
                    }
                }
            }
        }
        for (i = (int)((group - patch) / 2); i < l->row; i += 4, group += 8) {
            group[0] = group[1] = group[2] = group[3] = 0;
        }
        return;
    }
    {
        /* Value by value, each to its slot: the taps inside the input (all of them away
         * from the borders), after zeros where the patch overhangs. */
        const int k_h = l->k_h;
        const int ky0 = y0 < 0 ? -y0 : 0, ky1 = y0 + k_h > l->in_h ? l->in_h - y0 : k_h;
        const int kx0 = x0 < 0 ? -x0 : 0, kx1 = x0 + k_w > l->in_w ? l->in_w - x0 : k_w;
        const long corner = ((long)y0 * l->in_w + x0) * in_c;
        const int inner = (kx1 - kx0) * in_c;
        if (ky0 == 0 && ky1 == k_h && inner == k_w * in_c) {
            ec_taps(patch, l->slots, l->taps, k_h * inner, in, table, corner, l->in_offset);
        } else {
            for (i = 0; i < l->row; ++i) {
                patch[l->slots[i]] = 0;
            }
            for (ky = ky0; ky < ky1 && inner > 0; ++ky) {
                i = (ky * k_w + kx0) * in_c;
                ec_taps(patch, l->slots + i, l->taps + i, inner, in, table, corner,
                        l->in_offset);
            }
            return;
        }
        for (i = k_h * k_w * in_c; i < l->row; ++i) {
            patch[l->slots[i]] = 0;
        }
    }
}

/* The sums of channels c and c + 1 (filter: their pair of rows) over the two patches of
 * a pair of positions, added to sums[0], sums[1] (channel c) and sums[2], sums[3]
 * (c + 1). A leaf of its own, so that the loop keeps everything in registers. */
EC_NOINLINE static void ec_dot_2x2(const int8_t *filter, const int16_t *x, int row,
                                   int32_t *sums)
{
    int32_t a0 = sums[0], a1 = sums[1], b0 = sums[2], b1 = sums[3];
    const int8_t *end = filter + 2 * row;
#if EC_DSP
/* One group of 4 values of both channels and both patches: 16 multiply-accumulates. */
#define EC_GROUP(at)                                                                        \
    do {                                                                                    \
        const uint32_t wa = ec_read32(filter + 2 * (at)), wb = ec_read32(filter + 2 * (at) + 4); \
        const uint32_t wa02 = ec_sxtb16(wa), wa13 = ec_sxtb16_ror8(wa);                      \
        const uint32_t wb02 = ec_sxtb16(wb), wb13 = ec_sxtb16_ror8(wb);                      \
        uint32_t x02 = ec_read32(x + 2 * (at)), x13 = ec_read32(x + 2 * (at) + 2);           \
        a0 = ec_smlad(wa02, x02, a0);                                                       \
        a0 = ec_smlad(wa13, x13, a0);                                                       \
        b0 = ec_smlad(wb02, x02, b0);                                                       \
        b0 = ec_smlad(wb13, x13, b0);                                                       \
        x02 = ec_read32(x + 2 * (at) + 4);                                                  \
        x13 = ec_read32(x + 2 * (at) + 6);                                                  \
        a1 = ec_smlad(wa02, x02, a1);                                                       \
        a1 = ec_smlad(wa13, x13, a1);                                                       \
        b1 = ec_smlad(wb02, x02, b1);                                                       \
        b1 = ec_smlad(wb13, x13, b1);                                                       \
    } while (0)
    if (row & 4) { /* an odd group first, then two at a time */
        EC_GROUP(0);
        filter += 8;
        x += 8;
    }
    while (filter < end) {
        EC_GROUP(0);
        EC_GROUP(4);
        filter += 16;
        x += 16;
    }
#undef EC_GROUP
#else
    do {
        int j;
        for (j = 0; j < 4; ++j) {
            a0 += filter[j] * x[j];
            a1 += filter[j] * x[4 + j];
            b0 += filter[4 + j] * x[j];
            b1 += filter[4 + j] * x[4 + j];
        }
        filter += 8;
        x += 8;
    } while (filter < end);
#endif
    sums[0] = a0;
    sums[1] = a1;
    sums[2] = b0;
    sums[3] = b1;
}

/* Every channel's sums over the two patches of a pair of positions, taken into the
 * running max of each position's pooled output: best0[c] (position 0) and then best1[c]
 * (position 1; the same array when both are of one pooled output). A position that is
 * the first of its pooled output's window starts its max. */
static void ec_channels(const ec_conv *l, const int16_t *patch, int32_t *best0, int32_t *best1,
                        int first0, int first1)
{
    const int row = l->row, out_c = l->out_c;
    int c, k;
    for (c = 0; c < out_c; c += 2) {
        int32_t sums[4];
        sums[0] = sums[1] = l->bias[c];
        sums[2] = sums[3] = l->bias[c + 1];
        ec_dot_2x2(l->filter + (long)c * row, patch, row, sums);
        for (k = 0; k < 2 && c + k < out_c; ++k) {
            if (first0 || sums[2 * k] > best0[c + k]) {
                best0[c + k] = sums[2 * k];
            }
            if (first1 || sums[2 * k + 1] > best1[c + k]) {
                best1[c + k] = sums[2 * k + 1];
            }
        }
    }
}

/* Where position s of the walk over (pooled output, pool window) is: the pooled output
 * q, whether s is its window's first and last, and the patch's top-left input corner. */
static void ec_where(const ec_conv *l, int s, int *q, int *first, int *last, int *y0, int *x0)
{
    const int window = l->pool_h * l->pool_w;
    const int j = s % window;
    *q = s / window;
    *first = j == 0;
    *last = j == window - 1;
    *y0 = ((*q / l->out_w) * l->pool_stride_h + j / l->pool_w) * l->stride_h - l->pad_h;
    *x0 = ((*q % l->out_w) * l->pool_stride_w + j % l->pool_w) * l->stride_w - l->pad_w;
}

/* The convolution and its max-pool, without ever holding the convolution's output:
 * requantization is monotonic, so the max of the int32 sums, requantized once, equals
 * the max of the requantized values that TFLite's separate kernels compute. Positions
 * are taken two at a time in the order (pooled output, window position); best holds the
 * running max of the pooled outputs being computed (out_c int32, or 2 * out_c for an
 * odd window), patch two patches. A pooled output is written once its window is done,
 * after every read of the pairs before: out may overlap in as the generator allows. */
static void ec_conv_pool(const ec_conv *l, const int8_t *in, const int8_t *table, int16_t *patch,
                         int32_t *best, int8_t *out)
{
    const int out_c = l->out_c;
    const int count = l->out_h * l->out_w * l->pool_h * l->pool_w;
    /* An even window: a pair of positions never spans two pooled outputs, one running
     * max will do; an odd one: two, taken in turn. */
    const int twin = (l->pool_h * l->pool_w) & 1;
    int s, c, k;
    for (s = 0; s < count; s += 2) {
        int q[2], first[2], last[2], y0, x0;
        const int pair = s + 1 < count; /* else the last position is taken twice */
        ec_where(l, s, &q[0], &first[0], &last[0], &y0, &x0);
        ec_patch(l, in, table, y0, x0, patch);
        ec_where(l, pair ? s + 1 : s, &q[1], &first[1], &last[1], &y0, &x0);
        ec_patch(l, in, table, y0, x0, patch + 4);
        ec_channels(l, patch, best + (q[0] & twin) * out_c, best + (q[1] & twin) * out_c,
                    first[0], first[1]);
        for (k = 0; k < 1 + pair; ++k) {
            if (last[k]) {
                const int32_t *slot = best + (q[k] & twin) * out_c;
                int8_t *to = out + (long)q[k] * out_c;
                for (c = 0; c < out_c; ++c) {
                    const int32_t value =
                        ec_requantize(slot[c], l->multiplier[c], l->shift[c]) + l->out_offset;
                    to[c] = (int8_t)ec_clamp(value, l->low, l->high);
                }
            }
        }
    }
}

/* ---- Fully connected ------------------------------------------------------------------ */

/* A fully connected layer. Its weights are stored for blocks of 4 rows (outputs): for
 * each group of 4 inputs, the group of each of the 4 rows in turn; rows are padded with
 * zeros to a multiple of 4 inputs and their count to a multiple of 4 (never written).
 * Its bias already holds the input offset's part, offset * sum(row), computed by the
 * generator (TFLite's way), so the sums are of the stored int8 values alone. Rescaled
 * as the reference kernel does. */
typedef struct {
    const int8_t *weights;
    const int32_t *bias; /* out_n, rounded up to a multiple of 4 */
    const uint64_t *mantissa;
    const int16_t *exponent;
    int32_t in_n, out_n, out_offset, low, high;
} ec_fc;

/* The sums of a block of 4 rows with in (n values), added to sums[0..3]. */
EC_NOINLINE static void ec_dot_4rows(const int8_t *w, const int8_t *in, int n, int32_t *sums)
{
    int32_t s0 = sums[0], s1 = sums[1], s2 = sums[2], s3 = sums[3];
    const int8_t *end = in + (n & ~3);
    int j;
#if EC_DSP
    while (in < end) {
        const uint32_t x = ec_read32(in);
        const uint32_t x02 = ec_sxtb16(x), x13 = ec_sxtb16_ror8(x);
        uint32_t v = ec_read32(w);
        s0 = ec_smlad(ec_sxtb16(v), x02, s0);
        s0 = ec_smlad(ec_sxtb16_ror8(v), x13, s0);
        v = ec_read32(w + 4);
        s1 = ec_smlad(ec_sxtb16(v), x02, s1);
        s1 = ec_smlad(ec_sxtb16_ror8(v), x13, s1);
        v = ec_read32(w + 8);
        s2 = ec_smlad(ec_sxtb16(v), x02, s2);
        s2 = ec_smlad(ec_sxtb16_ror8(v), x13, s2);
        v = ec_read32(w + 12);
        s3 = ec_smlad(ec_sxtb16(v), x02, s3);
        s3 = ec_smlad(ec_sxtb16_ror8(v), x13, s3);
        in += 4;
        w += 16;
    }
#else
    while (in < end) {
        for (j = 0; j < 4; ++j) {
            s0 += w[j] * in[j];
            s1 += w[4 + j] * in[j];
            s2 += w[8 + j] * in[j];
            s3 += w[12 + j] * in[j];
        }
        in += 4;
        w += 16;
    }
#endif
    for (j = 0; j < (n & 3); ++j) { /* the last, partial group */
        s0 += w[j] * in[j];
        s1 += w[4 + j] * in[j];
        s2 += w[8 + j] * in[j];
        s3 += w[12 + j] * in[j];
    }
    sums[0] = s0;
    sums[1] = s1;
    sums[2] = s2;
    sums[3] = s3;
}

static void ec_dense(const ec_fc *l, const int8_t *in, int8_t *out)
{
    const int n = l->in_n, block = 4 * ((n + 3) & ~3);
    int o, k;
    for (o = 0; o < l->out_n; o += 4) {
        const int32_t *bias = l->bias + o;
        int32_t sums[4];
        sums[0] = bias[0];
        sums[1] = bias[1];
        sums[2] = bias[2];
        sums[3] = bias[3];
        ec_dot_4rows(l->weights + (long)(o / 4) * block, in, n, sums);
        for (k = 0; k < 4 && o + k < l->out_n; ++k) {
            const int32_t value =
                ec_rescale(sums[k], l->mantissa[o + k], l->exponent[o + k]) + l->out_offset;
            out[o + k] = (int8_t)ec_clamp(value, l->low, l->high);
        }
    }
}

/* gemmlowp exp_on_interval_between_negative_one_quarter_and_0_excl, Q0.31. */
static int32_t ec_exp_quarter(int32_t a)
{
    const int32_t constant_term = 1895147668;   /* exp(-1/8) */
    const int32_t one_third = 715827883;        /* 1/3 */
    const int32_t x = a + (1 << 28);            /* a + 1/8 */
    const int32_t x2 = ec_high_mul(x, x);
    const int32_t x3 = ec_high_mul(x2, x);
    const int32_t x4 = ec_high_mul(x2, x2);
    const int32_t x4_over_4 = ec_div_pot(x4, 2);
    const int32_t poly = ec_div_pot(ec_high_mul(x4_over_4 + x3, one_third) + x2, 1);
    return constant_term + ec_high_mul(constant_term, x + poly);
}

/* gemmlowp exp_on_negative_values for a Q5.26 input: exp(a) for a <= 0, Q0.31. */
static int32_t ec_exp_negative(int32_t a)
{
    static const int32_t multipliers[7] = {
        1672461947, /* exp(-1/4) */
        1302514674, /* exp(-1/2) */
        790015084,  /* exp(-1) */
        290630308,  /* exp(-2) */
        39332535,   /* exp(-4) */
        720401,     /* exp(-8) */
        242         /* exp(-16) */
    };
    const int32_t quarter = 1 << 24;
    const int32_t rest = (a & (quarter - 1)) - quarter;
    const int32_t remainder = rest - a;
    int32_t result = ec_exp_quarter(ec_mul_pot(rest, 5));
    int i;
    for (i = 0; i < 7; ++i) {
        if (remainder & (1 << (24 + i))) {
            result = ec_high_mul(result, multipliers[i]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1: 1 / (1 + a) for a in [0, 1), Q0.31. */
static int32_t ec_one_over_one_plus(int32_t a)
{
    const int64_t sum = (int64_t)a + INT32_MAX;
    const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
    int32_t x = 1515870810 + ec_high_mul(half_denominator, -1010580540); /* Q2.29 */
    int i;
    for (i = 0; i < 3; ++i) {
        const int32_t product = ec_high_mul(half_denominator, x);
        const int32_t one_minus = (1 << 29) - product;
        x = x + ec_mul_pot(ec_high_mul(x, one_minus), 2);
    }
    return ec_mul_pot(x, 1);
}

/* TFLite's reference int8 softmax (the gemmlowp fixed-point one, not a lookup table):
 * the output scale is 1/256 and its zero point -128. */
static void ec_softmax(
    const int8_t *in, int n, int32_t multiplier, int left_shift, int32_t diff_min,
    int8_t *out)
{
    int32_t max = -128, sum = 0, shifted_scale, headroom, exponent;
    int c;
    for (c = 0; c < n; ++c) {
        if (in[c] > max) {
            max = in[c];
        }
    }
    for (c = 0; c < n; ++c) {
        const int32_t diff = in[c] - max;
        if (diff >= diff_min) {
            const int32_t scaled = ec_high_mul((int32_t)((uint32_t)diff << left_shift), multiplier);
            sum += ec_div_pot(ec_exp_negative(scaled), 12);
        }
    }
    /* GetReciprocal(sum, 12 integer bits): sum is positive, the max's exp is 1. */
    headroom = 0;
    while (((uint32_t)sum << headroom & 0x80000000u) == 0) {
        ++headroom;
    }
    shifted_scale = ec_one_over_one_plus(
        (int32_t)(((uint32_t)sum << headroom) - ((uint32_t)1 << 31)));
    exponent = (12 - headroom) + 31 - 8;
    for (c = 0; c < n; ++c) {
        const int32_t diff = in[c] - max;
        if (diff >= diff_min) {
            const int32_t scaled = ec_high_mul((int32_t)((uint32_t)diff << left_shift), multiplier);
            const int32_t value =
                ec_div_pot(ec_high_mul(shifted_scale, ec_exp_negative(scaled)), exponent) - 128;
            out[c] = (int8_t)ec_clamp(value, -128, 127);
        } else {
            out[c] = -128;
        }
    }
}
