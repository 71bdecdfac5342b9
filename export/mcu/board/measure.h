/* measure.h: stack and instruction counts around one inference, on QEMU's mps2-an386.
 *
 * Included before the check program (arm-none-eabi-gcc -include measure.h), it defines
 * the hooks check/main.c calls around its first inference:
 *
 * - stack: the 16 KiB below the current stack pointer are painted with a pattern before
 *   the call; afterwards the lowest word no longer holding it is the deepest the stack
 *   went (its high-water mark);
 * - instructions: the board's CMSDK timer 0 counts down at the board clock (25 MHz);
 *   under qemu-system-arm -icount shift=0 every instruction takes one nanosecond of
 *   virtual time, so 40 instructions make one tick. These are instructions, not cycles.
 */
#ifndef EDGECNN_MEASURE_H
#define EDGECNN_MEASURE_H

#include <stdint.h>
#include <stdio.h>

#define MEASURE_PAINT 0xC0FFEE11u
#define MEASURE_DEPTH (16u * 1024u)
#define MEASURE_TIMER ((volatile uint32_t *)0x40000000u) /* CTRL, VALUE, RELOAD */

static uint32_t measure_top, measure_ticks;

__attribute__((unused)) static uint32_t measure_sp(void)
{
    uint32_t sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

__attribute__((noinline, unused)) static void measure_begin(void)
{
    volatile uint32_t *p;
    measure_top = measure_sp();
    for (p = (volatile uint32_t *)(measure_top - MEASURE_DEPTH);
         p < (volatile uint32_t *)(measure_top - 64u); ++p) {
        *p = MEASURE_PAINT;
    }
    MEASURE_TIMER[0] = 0;
    MEASURE_TIMER[2] = 0xFFFFFFFFu;
    MEASURE_TIMER[1] = 0xFFFFFFFFu;
    MEASURE_TIMER[0] = 1u;
}

__attribute__((noinline, unused)) static void measure_end(void)
{
    const volatile uint32_t *p = (const volatile uint32_t *)(measure_top - MEASURE_DEPTH);
    measure_ticks = 0xFFFFFFFFu - MEASURE_TIMER[1];
    while (*p == MEASURE_PAINT) {
        ++p;
    }
    printf("edgecnn measure: stack %lu bytes, timer %lu ticks\n",
           (unsigned long)(measure_top - (uint32_t)(uintptr_t)p), (unsigned long)measure_ticks);
}

#define EDGECNN_CHECK_BEGIN() measure_begin()
#define EDGECNN_CHECK_END() measure_end()

#endif
