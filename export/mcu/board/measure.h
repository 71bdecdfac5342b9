/* measure.h: stack and instruction counts around one inference, on QEMU's Cortex-M boards.
 *
 * Included before the check program (arm-none-eabi-gcc -include measure.h), it defines
 * the hooks check/main.c calls around its first inference:
 *
 * - stack: the MEASURE_DEPTH bytes below the current stack pointer (16 KiB unless the
 *   board says less) are painted with a pattern before the call; afterwards the lowest
 *   word no longer holding it is the deepest the stack went (its high-water mark);
 * - instructions: a free-running counter of the board, read before and after. Under
 *   qemu-system-arm -icount shift=0 every instruction takes one nanosecond of virtual
 *   time, so a counter ticking at F Hz gains one tick every 1e9 / F instructions. These
 *   are instructions, not cycles. The counter is the board's CMSDK timer (MPS2 boards:
 *   MEASURE_CMSDK_TIMER, its address, 0x40000000 unless given) counting down at the
 *   board clock, or the nRF51's TIMER (micro:bit: MEASURE_NRF51_TIMER, its address)
 *   counting up at 16 MHz.
 *
 * With -DEDGECNN_MEASURE_LAYERS, EDGECNN_LAYER_DONE(i) also reads the counter after each
 * layer of that inference (the library calls it when defined) and the hooks print one
 * line per layer. The ticks are printed; edgecnn.export.mcu.toolchain turns them into
 * instructions at the board's clock.
 */
#ifndef EDGECNN_MEASURE_H
#define EDGECNN_MEASURE_H

#include <stdint.h>
#include <stdio.h>

#define MEASURE_PAINT 0xC0FFEE11u
#ifndef MEASURE_DEPTH
#define MEASURE_DEPTH (16u * 1024u)
#endif
#define MEASURE_MAX_LAYERS 32

#ifdef MEASURE_NRF51_TIMER
/* TASKS_START 0x000, TASKS_STOP 0x004, TASKS_CLEAR 0x00C, TASKS_CAPTURE[0] 0x040,
 * MODE 0x504, BITMODE 0x508, PRESCALER 0x510, CC[0] 0x540 (word offsets below). */
#define MEASURE_REG(offset) (((volatile uint32_t *)(MEASURE_NRF51_TIMER))[(offset) / 4u])

__attribute__((unused)) static void measure_timer_start(void)
{
    MEASURE_REG(0x004u) = 1u;
    MEASURE_REG(0x504u) = 0u; /* timer mode */
    MEASURE_REG(0x508u) = 3u; /* 32 bits */
    MEASURE_REG(0x510u) = 0u; /* 16 MHz */
    MEASURE_REG(0x00Cu) = 1u;
    MEASURE_REG(0x000u) = 1u;
}

__attribute__((unused)) static uint32_t measure_timer_ticks(void)
{
    MEASURE_REG(0x040u) = 1u;
    return MEASURE_REG(0x540u);
}
#else
#ifndef MEASURE_CMSDK_TIMER
#define MEASURE_CMSDK_TIMER 0x40000000u
#endif
#define MEASURE_TIMER ((volatile uint32_t *)(MEASURE_CMSDK_TIMER)) /* CTRL, VALUE, RELOAD */

__attribute__((unused)) static void measure_timer_start(void)
{
    MEASURE_TIMER[0] = 0;
    MEASURE_TIMER[2] = 0xFFFFFFFFu;
    MEASURE_TIMER[1] = 0xFFFFFFFFu;
    MEASURE_TIMER[0] = 1u;
}

__attribute__((unused)) static uint32_t measure_timer_ticks(void)
{
    return 0xFFFFFFFFu - MEASURE_TIMER[1];
}
#endif

/* Shared by every file the hooks are compiled into (the library's included). */
__attribute__((weak)) uint32_t measure_top, measure_ticks, measure_layers_on;
__attribute__((weak)) uint32_t measure_layer_ticks[MEASURE_MAX_LAYERS];
__attribute__((weak)) int measure_layer_count;

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
    measure_layer_count = 0;
    measure_layers_on = 1u;
    measure_timer_start();
}

__attribute__((noinline, unused)) static void measure_layer(int layer)
{
    uint32_t ticks = measure_timer_ticks();
    if (measure_layers_on && layer >= 0 && layer < MEASURE_MAX_LAYERS) {
        measure_layer_ticks[layer] = ticks;
        if (layer >= measure_layer_count) {
            measure_layer_count = layer + 1;
        }
    }
}

__attribute__((noinline, unused)) static void measure_end(void)
{
    const volatile uint32_t *p = (const volatile uint32_t *)(measure_top - MEASURE_DEPTH);
    int i;
    measure_ticks = measure_timer_ticks();
    measure_layers_on = 0;
    while (*p == MEASURE_PAINT) {
        ++p;
    }
    printf("edgecnn measure: stack %lu bytes, timer %lu ticks\n",
           (unsigned long)(measure_top - (uint32_t)(uintptr_t)p), (unsigned long)measure_ticks);
    for (i = 0; i < measure_layer_count; ++i) {
        printf("edgecnn layer: %d done at %lu ticks\n", i, (unsigned long)measure_layer_ticks[i]);
    }
}

#define EDGECNN_CHECK_BEGIN() measure_begin()
#define EDGECNN_CHECK_END() measure_end()
#ifdef EDGECNN_MEASURE_LAYERS
#define EDGECNN_LAYER_DONE(i) measure_layer(i)
#endif

#endif
