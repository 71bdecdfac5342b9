/* cmsis_nn_model.h: a full-integer int8 .tflite file on Arm's CMSIS-NN kernels (the file's
 * SHA-256: $model_sha256).
 * Written by edgecnn's bench/cmsis_nn.py for a benchmark beside edgecnn's generated
 * library; not part of edgecnn.
 */
#ifndef CMSIS_NN_MODEL_H
#define CMSIS_NN_MODEL_H

#include <stdint.h>

#define CMSIS_NN_MODEL_INPUT_SIZE $input_size
#define CMSIS_NN_MODEL_CLASSES $classes
/* The caller's arena (4-byte aligned): every layer's output and CMSIS-NN's buffers. */
#define CMSIS_NN_MODEL_ARENA_BYTES $arena_bytes

/* 0 when the buffers CMSIS-NN asks for (its *_get_buffer_size functions) fit the arena's
 * plan, else minus the step that does not fit. Call once before classifying. */
int cmsis_nn_model_prepare(void);

/* Classifies CMSIS_NN_MODEL_INPUT_SIZE uint8 pixels into CMSIS_NN_MODEL_CLASSES int8
 * scores; returns the top class, or minus (1 + the step) whose kernel reported an error. */
int cmsis_nn_model_classify(const uint8_t *pixels, void *arena, int8_t *scores);

#endif
