/* classify.c: classify the pictures of a file on the emulated core, through semihosting.
 *
 * It reads images.bin (EDGECNN_INPUT_SIZE uint8 values per picture, one after another)
 * from the directory QEMU runs in, writes EDGECNN_NUM_CLASSES int8 scores per picture to
 * scores.bin, and exits with 0 (or prints why not and exits with 2). Files are opened with
 * newlib's stdio, which semihosting (--specs=rdimon.specs) turns into the host's files:
 * any number of pictures runs with one picture in RAM. No printf, so that a model that
 * nearly fills a small core's flash still fits.
 */
#include <stdio.h>

#include "edgecnn_model.h"

static uint8_t work[EDGECNN_WORK_BYTES];
static uint8_t pixels[EDGECNN_INPUT_SIZE];

int main(void)
{
    int8_t scores[EDGECNN_NUM_CLASSES];
    int read_all;
    FILE *in = fopen("images.bin", "rb");
    FILE *out = fopen("scores.bin", "wb");
    if (in == NULL || out == NULL) {
        fputs("edgecnn classify: cannot open images.bin and scores.bin\n", stdout);
        return 2;
    }
    /* Unbuffered: one semihosting call per picture and per row of scores, no heap. */
    setvbuf(in, NULL, _IONBF, 0);
    setvbuf(out, NULL, _IONBF, 0);
    while (fread(pixels, 1, sizeof pixels, in) == sizeof pixels) {
        edgecnn_classify(pixels, work, scores);
        if (fwrite(scores, 1, sizeof scores, out) != sizeof scores) {
            break;
        }
    }
    read_all = feof(in);
    fclose(in);
    if (fclose(out) != 0 || !read_all) {
        fputs("edgecnn classify: cannot read images.bin or write scores.bin\n", stdout);
        return 2;
    }
    return 0;
}
