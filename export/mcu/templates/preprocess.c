/* ---- Camera frames to the model's input (edgecnn_preprocess) ------------------------
 *
 * Each frame pixel is converted to the model's channels (grey as Pillow's "L"), then the
 * crop is resized by exact area averaging: each of the model's pixels is the mean of the
 * frame pixels under it, a pixel cut by its edge counting for the part it covers. On a
 * grid where a frame pixel is w units wide and a model pixel cw (the crop's width), every
 * such part is a whole number of units, so the mean is an exact fraction, rounded half up:
 * integers only, no table. One model row at a time, each crop row under it is read once,
 * left to right, its pixels summed into the model row's columns. edgecnn.runtime.
 * camera_frames computes the same bytes with numpy.
 */

/* A picture whose border is brighter than this is dark-on-light (edgecnn.runtime's
 * LIGHT_BORDER). */
#define EC_LIGHT_BORDER 127u

/* The sum over the count frame pixels from p on of (R, G, B) . (wr, wg, wb) / 65536,
 * rounded: channel R, G or B with (65536, 0, 0) and the like, grey as Pillow's "L" with
 * (19595, 38470, 7471). A grey pixel is its own R, G, B and grey. */
static uint32_t ec_sum(const uint8_t *p, int format, const uint32_t *weights, uint32_t count)
{
    const uint32_t wr = weights[0], wg = weights[1], wb = weights[2];
    uint32_t sum = 0, word;
    if (format == EDGECNN_FRAME_GREY8) {
        for (; count > 0; --count) {
            sum += *p++;
        }
    } else if (format == EDGECNN_FRAME_RGB888) {
        for (; count > 0; --count, p += 3) {
            sum += (p[0] * wr + p[1] * wg + p[2] * wb + 0x8000u) >> 16;
        }
    } else {
        for (; count > 0; --count, p += 2) {
            word = format == EDGECNN_FRAME_RGB565 ? (uint32_t)p[1] << 8 | p[0]
                                                  : (uint32_t)p[0] << 8 | p[1];
            /* 5 and 6 bits widened by repeating their top bits ((r << 3) | (r >> 2), which
             * is 33 r / 4 rounded down): 0 -> 0, 31 or 63 -> 255. */
            sum += ((((word >> 11) * 33u) >> 2) * wr + ((((word >> 5) & 63u) * 65u) >> 4) * wg +
                    (((word & 31u) * 33u) >> 2) * wb + 0x8000u) >> 16;
        }
    }
    return sum;
}

/* Adds weight times each model column's share of one crop row (cw frame pixels from row
 * on, in the model channel weights picks) to bins[0], bins[channels], bins[2 channels]...,
 * or sets them to it when fresh. Column i spans [i cw, i cw + cw) in units of 1/w of a
 * frame pixel, and pixel x [x w, x w + w). */
static void ec_row(const uint8_t *row, int format, const uint32_t *weights, uint32_t bytes,
                   uint32_t cw, uint32_t weight, int fresh, uint64_t *bins)
{
    const uint32_t w = EDGECNN_INPUT_WIDTH;
    uint32_t i, x = 0, used = 0, need, part, whole, v = 0, sum;
    for (i = 0; i < w; ++i) {
        sum = 0;
        need = cw;
        if (used > 0) { /* the rest of pixel x (v), begun in the column before */
            part = w - used < need ? w - used : need;
            sum = part * v;
            need -= part;
            used += part;
            if (used == w) {
                ++x;
                used = 0;
            }
        }
        whole = need / w;
        if (whole > 0) {
            sum += w * ec_sum(row + x * bytes, format, weights, whole);
            x += whole;
            need -= whole * w;
        }
        if (need > 0) { /* the first part of pixel x, the rest for the columns after */
            v = ec_sum(row + x * bytes, format, weights, 1);
            sum += need * v;
            used = need;
        }
        /* sum is at most 255 cw, the bins at most 255 cw ch. */
        bins[i * EDGECNN_INPUT_CHANNELS] =
            (fresh ? 0 : bins[i * EDGECNN_INPUT_CHANNELS]) + (uint64_t)weight * sum;
    }
}

/* total / d rounded half up, for a quotient of at most 255: a 32-bit division when the
 * total fits (crops up to 4096 x 4096), else eight shift-subtract steps, so that no 64-bit
 * division routine is linked in. */
static uint32_t ec_mean(uint64_t total, uint32_t d)
{
    uint32_t q = 0, bit = 8;
    total += d / 2;
    if (total >> 32 == 0) {
        return (uint32_t)total / d;
    }
    while (bit-- > 0) {
        if (total >= (uint64_t)d << bit) {
            total -= (uint64_t)d << bit;
            q |= 1u << bit;
        }
    }
    return q;
}

/* What ec_sum weighs R, G and B by for the model's R, G, B, or grey (Pillow's "L"). */
static const uint32_t ec_weights[4][3] = {
    {65536u, 0, 0}, {0, 65536u, 0}, {0, 0, 65536u}, {19595u, 38470u, 7471u}
};

int edgecnn_preprocess(const uint8_t *frame, int format, int32_t width, int32_t height,
                       int32_t stride, const edgecnn_crop *crop, int invert, uint8_t *pixels)
{
    const uint32_t h = EDGECNN_INPUT_HEIGHT, w = EDGECNN_INPUT_WIDTH;
    const uint32_t c = EDGECNN_INPUT_CHANNELS, size = EDGECNN_INPUT_SIZE;
    uint64_t bins[EDGECNN_INPUT_WIDTH * EDGECNN_INPUT_CHANNELS];
    uint32_t bytes, cx, cy, cw, ch, i, k, y, top, end, part, border = 0;
    if (frame == NULL || pixels == NULL || format < EDGECNN_FRAME_GREY8 ||
        format > EDGECNN_FRAME_RGB565_BE || invert < EDGECNN_INVERT_NO ||
        invert > EDGECNN_INVERT_AUTO || (c != 1 && c != 3)) {
        return EDGECNN_ERROR_ARGUMENT; /* (a model of 1 or 3 channels: grey or RGB) */
    }
    bytes = format == EDGECNN_FRAME_GREY8 ? 1 : format == EDGECNN_FRAME_RGB888 ? 3 : 2;
    if (width < 1 || height < 1 || width > 65535 || height > 65535 ||
        stride < width * (int32_t)bytes) {
        return EDGECNN_ERROR_SIZE;
    }
    if (crop == NULL) {
        cw = ch = (uint32_t)(width < height ? width : height);
        cx = ((uint32_t)width - cw) / 2;
        cy = ((uint32_t)height - ch) / 2;
    } else {
        if (crop->x < 0 || crop->y < 0 || crop->width < 1 || crop->height < 1 ||
            crop->width > width - crop->x || crop->height > height - crop->y) {
            return EDGECNN_ERROR_CROP;
        }
        cx = (uint32_t)crop->x;
        cy = (uint32_t)crop->y;
        cw = (uint32_t)crop->width;
        ch = (uint32_t)crop->height;
    }
    frame += (size_t)cy * (size_t)stride + cx * bytes;
    for (i = 0; i < h; ++i) {
        /* Model row i spans [top, end) in units of 1/h of a crop row. */
        top = i * ch;
        end = top + ch;
        for (y = top / h; y * h < end; ++y) {
            /* Crop row y spans [y h, y h + h): its part in model row i. */
            part = ((y + 1) * h < end ? (y + 1) * h : end) - (y * h > top ? y * h : top);
            for (k = 0; k < c; ++k) {
                ec_row(frame + (size_t)y * (size_t)stride, format, ec_weights[c == 1 ? 3 : k % 3],
                       bytes, cw, part, y == top / h, bins + k);
            }
        }
        for (k = 0; k < w * c; ++k) {
            pixels[i * w * c + k] = (uint8_t)ec_mean(bins[k], cw * ch);
        }
    }
    if (invert == EDGECNN_INVERT_AUTO) {
        /* The runtime's rule: the mean of the outermost pixels (corners twice) brighter
         * than mid-grey means dark-on-light, inverted for a light-on-dark model. */
        for (k = 0; k < w * c; ++k) {
            border += pixels[k] + pixels[size - w * c + k];
        }
        for (y = 0; y < h; ++y) {
            for (k = 0; k < c; ++k) {
                border += pixels[y * w * c + k] + pixels[(y * w + w - 1) * c + k];
            }
        }
        invert = EDGECNN_LIGHT_ON_DARK && border > EC_LIGHT_BORDER * 2u * (h + w) * c;
    }
    for (k = 0; invert && k < size; ++k) {
        pixels[k] = (uint8_t)(255u - pixels[k]);
    }
    return 0;
}
