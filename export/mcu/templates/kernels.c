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

/* The sum of w[i] * (x[i] + offset) over n values, as sum(w * x) + offset * sum(w): the
 * same integer (nothing overflows int32 here), in a form compilers vectorize. */
static int32_t ec_dot(const int8_t *w, const int8_t *x, int n, int32_t offset)
{
    int32_t products = 0, weights = 0;
    int i;
    for (i = 0; i < n; ++i) {
        products += w[i] * x[i];
        weights += w[i];
    }
    return products + offset * weights;
}

/* ec_dot with x read through a table of int8 codes (uint8 pixels to the model's input). */
static int32_t ec_dot_table(const int8_t *w, const uint8_t *x, const int8_t *table, int n,
                            int32_t offset)
{
    int32_t products = 0, weights = 0;
    int i;
    for (i = 0; i < n; ++i) {
        products += w[i] * table[x[i]];
        weights += w[i];
    }
    return products + offset * weights;
}

/* One convolution (OHWI int8 filter, per-channel requantization, zero padding) followed
 * by a max-pool over pool_h x pool_w windows, without ever holding the convolution's full
 * output: requantization is monotonic, so the max of the int32 sums, requantized once,
 * equals the max of the requantized values that TFLite's separate kernels compute. With
 * a 1x1 pool of stride 1 it is the convolution alone. When table is not NULL, in points
 * at uint8 pixels that the table turns into the int8 input. Padding is left out of the
 * sums, as TFLite does: each filter row is one dot product over the pixels it covers. */
static void ec_conv_pool(
    const int8_t *in, const int8_t *table, int in_h, int in_w, int in_c,
    const int8_t *filter, const int32_t *bias, int out_c, int k_h, int k_w,
    int stride_h, int stride_w, int pad_h, int pad_w, int32_t in_offset,
    const int32_t *multiplier, const int8_t *shift, int32_t out_offset,
    int32_t conv_min, int32_t conv_max,
    int pool_h, int pool_w, int pool_stride_h, int pool_stride_w,
    int out_h, int out_w, int32_t pool_min, int32_t pool_max, int8_t *out)
{
    const uint8_t *pixels = (const uint8_t *)(const void *)in;
    int oy, ox, c, py, px, ky;
    for (oy = 0; oy < out_h; ++oy) {
        for (ox = 0; ox < out_w; ++ox) {
            for (c = 0; c < out_c; ++c) {
                const int8_t *f = filter + (long)c * k_h * k_w * in_c;
                int32_t best = INT32_MIN;
                int32_t value;
                for (py = 0; py < pool_h; ++py) {
                    for (px = 0; px < pool_w; ++px) {
                        const int y0 = (oy * pool_stride_h + py) * stride_h - pad_h;
                        const int x0 = (ox * pool_stride_w + px) * stride_w - pad_w;
                        const int kx0 = x0 < 0 ? -x0 : 0;
                        const int kx1 = x0 + k_w > in_w ? in_w - x0 : k_w;
                        const int n = (kx1 - kx0) * in_c;
                        int32_t acc = bias[c];
                        for (ky = 0; ky < k_h; ++ky) {
                            const int y = y0 + ky;
                            const long at = ((long)y * in_w + x0 + kx0) * in_c;
                            const int8_t *w = f + (ky * k_w + kx0) * in_c;
                            if (y < 0 || y >= in_h || n <= 0) {
                                continue;
                            }
                            acc += table != NULL
                                       ? ec_dot_table(w, pixels + at, table, n, in_offset)
                                       : ec_dot(w, in + at, n, in_offset);
                        }
                        if (acc > best) {
                            best = acc;
                        }
                    }
                }
                value = ec_requantize(best, multiplier[c], shift[c]) + out_offset;
                value = ec_clamp(value, conv_min, conv_max);
                out[((long)oy * out_w + ox) * out_c + c] =
                    (int8_t)ec_clamp(value, pool_min, pool_max);
            }
        }
    }
}

/* A fully connected layer ([out][in] int8 weights), rescaled as the reference kernel. */
static void ec_dense(
    const int8_t *in, int in_n, const int8_t *weights, const int32_t *bias, int out_n,
    int32_t in_offset, const uint64_t *mantissa, const int16_t *exponent,
    int32_t out_offset, int32_t out_min, int32_t out_max, int8_t *out)
{
    int o;
    for (o = 0; o < out_n; ++o) {
        int32_t acc = bias[o] + ec_dot(weights + (long)o * in_n, in, in_n, in_offset);
        acc = ec_rescale(acc, mantissa[o], exponent[o]) + out_offset;
        out[o] = (int8_t)ec_clamp(acc, out_min, out_max);
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
