/* classify.c: classify the pictures of a file on the emulated core, through semihosting.
 *
 * It reads images.bin (EDGECNN_INPUT_SIZE uint8 values per picture, one after another)
 * from the directory QEMU runs in, writes EDGECNN_NUM_CLASSES int8 scores per picture to
 * scores.bin, and prints one line with the count. Files are opened with newlib's stdio,
 * which semihosting (--specs=rdimon.specs) turns into the host's files: any number of
 * pictures runs with one picture in RAM.
 */
#include <stdio.h>

#include "edgecnn_model.h"

static uint8_t work[EDGECNN_WORK_BYTES];
static uint8_t pixels[EDGECNN_INPUT_SIZE];

int main(void)
{
    int8_t scores[EDGECNN_NUM_CLASSES];
    unsigned long count = 0;
    FILE *in = fopen("images.bin", "rb");
    FILE *out = fopen("scores.bin", "wb");
    if (in == NULL || out == NULL) {
        printf("edgecnn classify: cannot open images.bin and scores.bin\n");
        return 2;
    }
    /* Unbuffered: one semihosting call per picture and per row of scores, no heap. */
    setvbuf(in, NULL, _IONBF, 0);
    setvbuf(out, NULL, _IONBF, 0);
    while (fread(pixels, 1, sizeof pixels, in) == sizeof pixels) {
        edgecnn_classify(pixels, work, scores);
        if (fwrite(scores, 1, sizeof scores, out) != sizeof scores) {
            printf("edgecnn classify: cannot write scores.bin\n");
            return 2;
        }
        ++count;
    }
    fclose(in);
    if (fclose(out) != 0) {
        printf("edgecnn classify: cannot write scores.bin\n");
        return 2;
    }
    printf("edgecnn classify: %lu pictures\n", count);
    return 0;
}
