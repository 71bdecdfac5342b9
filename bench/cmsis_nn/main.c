/* main.c: one engine on the test vectors, measured on QEMU's mps2-an386. Written by
 * edgecnn's bench/cmsis_nn.py from bench/cmsis_nn/main.c; the same program for edgecnn's
 * library and for the CMSIS-NN driver, only the engine's lines differ.
 *
 * Image 0 runs between the board's hooks (measure.h: painted stack, timer, and with
 * -DEDGECNN_MEASURE_LAYERS the timer after each layer). Every image's int8 scores are
 * then compared with TFLite's reference kernels' (vectors.h), and so are the layer outputs
 * an engine still holds in its buffer after an inference, where the bench asks for them. It prints what it found and returns 0 unless the engine reports an error:
 * judging the differences is the bench's job.
 */
#include <stdio.h>
#include <string.h>

#include "$header"
#include "vectors.h"

#ifndef EDGECNN_CHECK_BEGIN /* a board without measure.h */
#define EDGECNN_CHECK_BEGIN()
#define EDGECNN_CHECK_END()
#endif

$setup

/* Adds to *differ the values of got that differ from want; *worst: the largest gap. */
static void bench_compare(const int8_t *got, const int8_t *want, int n, long *differ, int *worst)
{
    int k;
    for (k = 0; k < n; ++k) {
        const int gap = got[k] > want[k] ? got[k] - want[k] : want[k] - got[k];
        if (gap != 0) {
            ++*differ;
            if (gap > *worst) {
                *worst = gap;
            }
        }
    }
}

int main(void)
{
    int8_t scores[BENCH_CLASSES];
    long differ = 0, before;
    int worst = 0, equal = 0, correct = 0, best, i;
$kept_declarations
$prepare
    for (i = 0; i < BENCH_TEST_COUNT; ++i) {
        if (i == 0) {
            EDGECNN_CHECK_BEGIN();
        }
        best = $classify;
        if (i == 0) {
            EDGECNN_CHECK_END();
        }
        if (best < 0) {
            printf("bench error: the engine returned %d on image %d\n", best, i);
            return 2;
        }
        before = differ;
        bench_compare(scores, bench_scores[i], BENCH_CLASSES, &differ, &worst);
        equal += differ == before;
        correct += best == bench_labels[i];
$kept_checks
    }
    printf("bench scores: %d of %d images equal; %ld of %d values differ, by at most %d; "
           "%d classified correctly\n", equal, BENCH_TEST_COUNT, differ,
           BENCH_TEST_COUNT * BENCH_CLASSES, worst, correct);
$kept_report
    return 0;
}
