/* edgecnn_model.h: the int8 network as a C99 library, by edgecnn t.
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

#define EDGECNN_VERSION "t"
/* SHA-256 of the model_int8.tflite file this library was generated from. */
#define EDGECNN_MODEL_SHA256 "0581053402eef82302d3aed4eb8480e156309a554672746423e1e564e266cd87"

#define EDGECNN_INPUT_HEIGHT 28
#define EDGECNN_INPUT_WIDTH 28
#define EDGECNN_INPUT_CHANNELS 1
#define EDGECNN_INPUT_SIZE 784
#define EDGECNN_NUM_CLASSES 10
#define EDGECNN_LIGHT_ON_DARK 1
/* Bytes of the work buffer one inference needs (any alignment). */
#define EDGECNN_WORK_BYTES 1176

/* The int8 input: q = round(pixel / 255 / scale) + zero_point. */
#define EDGECNN_INPUT_SCALE 0.00392156886f
#define EDGECNN_INPUT_ZERO_POINT (-128)
/* The int8 scores: probability = scale * (score - zero_point), steps of 1/256. */
#define EDGECNN_OUTPUT_SCALE 0.00390625f
#define EDGECNN_OUTPUT_ZERO_POINT (-128)

/* Class names, in score order (UTF-8). */
extern const char *const edgecnn_labels[EDGECNN_NUM_CLASSES];

/* The macros above as data, for bindings that cannot read macros: height, width,
 * channels, classes, work bytes; input scale and zero point, output scale and zero point. */
extern const int32_t edgecnn_dims[5];
extern const float edgecnn_quantization[4];

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
