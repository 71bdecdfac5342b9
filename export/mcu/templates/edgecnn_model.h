/* edgecnn_model.h: the int8 network as a C99 library, by edgecnn $version.
 *
 *     static uint8_t work[EDGECNN_WORK_BYTES];      (or on the stack, or per thread)
 *     int8_t scores[EDGECNN_NUM_CLASSES];
 *     int best = edgecnn_classify(pixels, work, scores);
 *     printf("%s\n", edgecnn_labels[best]);
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

/* Class names, in score order (UTF-8). */
extern const char *const edgecnn_labels[EDGECNN_NUM_CLASSES];

/* The macros above as data, for bindings that cannot read macros: height, width,
 * channels, classes, work bytes; input scale and zero point, output scale and zero point. */
extern const int32_t edgecnn_dims[5];
extern const float edgecnn_quantization[4];
/* The logits' scale and zero point. */
extern const float edgecnn_logits_quantization[2];

/* Classify one picture: fills scores (int8 probabilities) and returns the most likely
 * class (the first of equal scores). */
int edgecnn_classify(const uint8_t *pixels, void *work, int8_t *scores);

/* The same from the model's int8 input (EDGECNN_INPUT_SIZE values); logits, when not
 * NULL, receives the int8 scores that feed the softmax. */
int edgecnn_infer(const int8_t *input, void *work, int8_t *logits, int8_t *scores);

/* Scores to probabilities that sum to 1. */
void edgecnn_probabilities(const int8_t *scores, float *probabilities);

#ifdef __cplusplus
}
#endif

#endif /* EDGECNN_MODEL_H */
