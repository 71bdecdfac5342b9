/* edgecnn_model.h: the int8 network as a C99 library, by edgecnn $version.
 *
 *     static uint8_t work[EDGECNN_WORK_BYTES];      (or on the stack, or per thread)
 *     int8_t scores[EDGECNN_NUM_CLASSES];
 *     int best = edgecnn_classify(pixels, work, scores);
 *     printf("%s\n", edgecnn_labels[best]);
 *
 * or, for calibrated probabilities and "unknown" when a picture is none of the classes:
 *
 *     float probabilities[EDGECNN_NUM_CLASSES];
 *     int answer = edgecnn_answer(pixels, work, probabilities);
 *     puts(answer == EDGECNN_UNKNOWN ? "unknown" : edgecnn_labels[answer]);
 *
 * pixels: EDGECNN_INPUT_HEIGHT x EDGECNN_INPUT_WIDTH x EDGECNN_INPUT_CHANNELS uint8 values,
 * row by row, channels interleaved (RGB for colour), as the model was trained on them:
 * EDGECNN_LIGHT_ON_DARK says whether objects must be light on a dark background (invert
 * a camera's dark-on-light picture first). Nothing is allocated and nothing global is
 * written: any number of calls may run at once, each with its own work buffer.
 */
#ifndef EDGECNN_MODEL_H
#define EDGECNN_MODEL_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EDGECNN_VERSION "$version"
/* SHA-256 of the full-integer int8 flatbuffer this library was generated from. */
#define EDGECNN_MODEL_SHA256 "$model_sha256"

#define EDGECNN_INPUT_HEIGHT $height
#define EDGECNN_INPUT_WIDTH $width
#define EDGECNN_INPUT_CHANNELS $channels
#define EDGECNN_INPUT_SIZE $input_size
#define EDGECNN_NUM_CLASSES $classes
#define EDGECNN_LIGHT_ON_DARK $light_on_dark
/* Bytes of the work buffer one inference needs (any alignment). */
#define EDGECNN_WORK_BYTES $work_bytes

/* The int8 input: q = round(pixel / 255 / scale) + zero_point. */
#define EDGECNN_INPUT_SCALE $input_scale
#define EDGECNN_INPUT_ZERO_POINT ($input_zero_point)
/* The int8 scores: probability = scale * (score - zero_point), steps of 1/256. */
#define EDGECNN_OUTPUT_SCALE $output_scale
#define EDGECNN_OUTPUT_ZERO_POINT ($output_zero_point)
/* The int8 logits (edgecnn_infer): value = scale * (logit - zero_point). Finer than the
 * scores, whose runners-up often round to the same step: rank classes by these. */
#define EDGECNN_LOGITS_SCALE $logits_scale
#define EDGECNN_LOGITS_ZERO_POINT ($logits_zero_point)

/* Calibrated confidence: probability = softmax(logit value / EDGECNN_TEMPERATURE), the
 * temperature fitted on the validation split (1 when there was none), so that a picture
 * answered with 0.8 is right about 80% of the time. A picture whose largest calibrated
 * probability is below EDGECNN_REJECT_BELOW is none of the classes: edgecnn_answer and
 * edgecnn_calibrated return EDGECNN_UNKNOWN for it, and so does edgecnn_classify when
 * compiled with -DEDGECNN_REJECT=1. The threshold keeps 95% of the validation pictures;
 * -DEDGECNN_REJECT_BELOW=0.7f sets another one (0.0f never rejects). */
#define EDGECNN_TEMPERATURE $temperature
#ifndef EDGECNN_REJECT_BELOW
#define EDGECNN_REJECT_BELOW $reject_below
#endif
#ifndef EDGECNN_REJECT
#define EDGECNN_REJECT 0
#endif
#define EDGECNN_UNKNOWN ($unknown)

/* Class names, in score order (UTF-8). */
extern const char *const edgecnn_labels[EDGECNN_NUM_CLASSES];

/* The macros above as data, for bindings that cannot read macros: height, width,
 * channels, classes, work bytes; input scale and zero point, output scale and zero point. */
extern const int32_t edgecnn_dims[5];
extern const float edgecnn_quantization[4];
/* The logits' scale and zero point. */
extern const float edgecnn_logits_quantization[2];
/* EDGECNN_TEMPERATURE and EDGECNN_REJECT_BELOW. */
extern const float edgecnn_confidence[2];

/* Classify one picture: fills scores (int8 probabilities, uncalibrated) and returns the
 * most likely class (the first of equal scores); with -DEDGECNN_REJECT=1, EDGECNN_UNKNOWN
 * instead when edgecnn_calibrated would (check for it before edgecnn_labels[best]). */
int edgecnn_classify(const uint8_t *pixels, void *work, int8_t *scores);

/* Classify one picture: fills probabilities with the calibrated ones and returns the most
 * likely class, or EDGECNN_UNKNOWN when its probability is below EDGECNN_REJECT_BELOW
 * (the most likely class is still the largest of probabilities). */
int edgecnn_answer(const uint8_t *pixels, void *work, float *probabilities);

/* The same from the model's int8 input (EDGECNN_INPUT_SIZE values); logits, when not
 * NULL, receives the int8 scores that feed the softmax. */
int edgecnn_infer(const int8_t *input, void *work, int8_t *logits, int8_t *scores);

/* Scores to probabilities that sum to 1 (uncalibrated: the model's own softmax). */
void edgecnn_probabilities(const int8_t *scores, float *probabilities);

/* Logits (from edgecnn_infer) to calibrated probabilities that sum to 1; returns what
 * edgecnn_answer does. No libm: the generator computed the exponentials, one per step a
 * logit can lie below the largest. */
int edgecnn_calibrated(const int8_t *logits, float *probabilities);

/* ---- Camera frames ----
 *
 *     uint8_t pixels[EDGECNN_INPUT_SIZE];
 *     if (edgecnn_preprocess(frame, EDGECNN_FRAME_RGB565, 320, 240, 640, NULL,
 *                            EDGECNN_INVERT_AUTO, pixels) == 0) {
 *         best = edgecnn_classify(pixels, work, scores);
 *     }
 *
 * edgecnn_preprocess turns a camera frame into the pixels edgecnn_classify takes: it crops
 * it, converts each pixel to the model's channels (grey as Pillow's "L", (19595 R +
 * 38470 G + 7471 B + 32768) >> 16; a grey frame's pixel is its own R, G and B), resizes
 * the crop to the model's input by area averaging (each input pixel the mean of the frame
 * pixels under it, a pixel cut by its edge counting for the part it covers, rounded half
 * up) and inverts it when asked. The int8 quantization stays in edgecnn_classify.
 * edgecnn.runtime.camera_frames computes the same bytes in Python. Integers only, nothing
 * allocated, nothing global written; frames up to 65535 x 65535 pixels. It needs
 * 8 x EDGECNN_INPUT_WIDTH x EDGECNN_INPUT_CHANNELS bytes of stack and a little more.
 *
 * frame: height rows of stride bytes (at least a row's pixels; the last row may end
 *     after its pixels). Only the crop's rows are read. It must not overlap pixels.
 * crop: x, y, width, height in pixels from the top-left corner, inside the frame; NULL
 *     for the largest centred square (at ((width - side) / 2, (height - side) / 2),
 *     rounded down), as edgecnn.runtime's frames take by default.
 * invert: EDGECNN_INVERT_AUTO does what edgecnn.runtime does with a picture: a
 *     light-on-dark model (EDGECNN_LIGHT_ON_DARK) gets the picture inverted when the mean
 *     of its border, once resized, is brighter than mid-grey (127); a dark-on-light model
 *     never does. Decided frame by frame: for a video, decide once (on the first frames,
 *     say) and pass EDGECNN_INVERT_YES or EDGECNN_INVERT_NO, so that answers cannot
 *     flicker with the scene.
 * pixels: EDGECNN_INPUT_SIZE bytes, written only on success.
 *
 * Returns 0, or a negative EDGECNN_ERROR_* code with pixels left as they were.
 */
#define EDGECNN_FRAME_GREY8 1     /* one byte per pixel */
#define EDGECNN_FRAME_RGB888 2    /* R, G, B bytes */
#define EDGECNN_FRAME_RGB565 3    /* 16-bit little-endian words: R in bits 15-11, G 10-5, B 4-0 */
#define EDGECNN_FRAME_RGB565_BE 4 /* the same, big-endian (many camera modules send this) */
/* RGB565's 5 and 6 bits become 8 by repeating their top bits: (r << 3) | (r >> 2) and
 * (g << 2) | (g >> 4), so that 0 stays 0 and 31 or 63 becomes 255. */

#define EDGECNN_INVERT_NO 0
#define EDGECNN_INVERT_YES 1
#define EDGECNN_INVERT_AUTO 2

/* A NULL pointer, an unknown format or invert. */
#define EDGECNN_ERROR_ARGUMENT (-1)
/* Width or height below 1 or above 65535, or a stride shorter than a row's pixels. */
#define EDGECNN_ERROR_SIZE (-2)
/* A crop that is empty or does not lie inside the frame. */
#define EDGECNN_ERROR_CROP (-3)

typedef struct edgecnn_crop {
    int32_t x, y, width, height;
} edgecnn_crop;

int edgecnn_preprocess(const uint8_t *frame, int format, int32_t width, int32_t height,
                       int32_t stride, const edgecnn_crop *crop, int invert, uint8_t *pixels);

#ifdef __cplusplus
}
#endif

#endif /* EDGECNN_MODEL_H */
