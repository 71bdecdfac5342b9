/* cmsis_nn_model.c: a full-integer int8 .tflite file on Arm's CMSIS-NN kernels (the file's
 * SHA-256: $model_sha256).
 * Written by edgecnn's bench/cmsis_nn.py for a benchmark beside edgecnn's generated
 * library; not part of edgecnn.
 *
 * The weights and biases are the file's; every multiplier, shift and clamp is the number
 * TFLite computes when it prepares the file (the same numbers edgecnn's library holds),
 * in CMSIS-NN's conventions (its parameter structs take non-const pointers to the
 * multipliers and shifts, which it only reads). The arena is planned as a careful
 * CMSIS-NN user would plan it: two regions, each step writing into the one its input is
 * not in, and each kernel's extra buffer in the free tail of a region when one has room,
 * else after both:
 *
$plan
 */
#include <stddef.h>
#include <stdint.h>

#include "arm_nnfunctions.h"
#include "cmsis_nn_model.h"

/* A hook after each step: by default the one edgecnn's library calls after each layer,
 * which the board's measure.h defines to read its timer (-DEDGECNN_MEASURE_LAYERS). */
#ifndef CMSIS_NN_STEP_DONE
#ifdef EDGECNN_LAYER_DONE
#define CMSIS_NN_STEP_DONE(i) EDGECNN_LAYER_DONE(i)
#else
#define CMSIS_NN_STEP_DONE(i)
#endif
#endif

$pixel_codes
$constants
int cmsis_nn_model_prepare(void)
{
$prepare    return 0;
}

int cmsis_nn_model_classify(const uint8_t *pixels, void *arena, int8_t *scores)
{
    int8_t *const base = (int8_t *)arena;
    int i, best = 0;
$steps
    for (i = 1; i < CMSIS_NN_MODEL_CLASSES; ++i) {
        if (scores[i] > scores[best]) {
            best = i;
        }
    }
    return best;
}
