/* startup.c: the least a Cortex-M4 needs to run a C program on QEMU's mps2-an386 board.
 *
 * QEMU's mps2-an386 is an Arm MPS2 FPGA board with a Cortex-M4 and its FPU: code in
 * flash at 0x00000000, RAM at 0x20000000 (4 MiB each, see link.ld). On reset the core
 * reads the initial stack pointer and the reset handler's address from the vector table
 * at 0x0; the reset handler copies initialised data to RAM, switches the FPU on and hands
 * over to newlib's _start (zeroes .bss, runs constructors, calls main, exits with its
 * status). printf and exit go to the host through semihosting (--specs=rdimon.specs and
 * qemu-system-arm -semihosting-config enable=on,target=native).
 *
 * A real board has its vendor's startup file instead (STM32Cube, nRF, Pico SDK...):
 * the edgecnn library itself needs none of this.
 */
#include <stdint.h>

extern uint32_t __data_load__, __data_start__, __data_end__; /* from link.ld */
extern uint32_t __StackTop;
extern void _start(void); /* newlib */

void Reset_Handler(void);
void Default_Handler(void);

void Reset_Handler(void)
{
    const uint32_t *from = &__data_load__;
    uint32_t *to = &__data_start__;
    while (to < &__data_end__) {
        *to++ = *from++;
    }
    /* CPACR: full access to coprocessors 10 and 11, the FPU; then wait for it. */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    _start();
    for (;;) {
    }
}

void Default_Handler(void)
{
    for (;;) { /* a fault: QEMU keeps running until the test's timeout */
    }
}

/* Initial stack pointer, reset, then the other 14 system exceptions. */
__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&__StackTop, Reset_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    0, 0, 0, 0,
    Default_Handler, Default_Handler, 0, Default_Handler, Default_Handler
};
