/* startup.c: the least a Cortex-M core needs to run a C program on QEMU's boards.
 *
 * On reset the core reads the initial stack pointer and the reset handler's address
 * from the vector table at the start of flash (link.ld puts it there; the board's
 * memory map comes from edgecnn.export.mcu.toolchain); the reset handler copies
 * initialised data to RAM, switches the FPU on where the code was built for one
 * (__ARM_FP) and hands over to newlib's _start (zeroes .bss, runs constructors, calls
 * main, exits with its status). printf, files and exit go to the host through
 * semihosting (--specs=rdimon.specs and qemu-system-arm -semihosting-config
 * enable=on,target=native). On the TrustZone boards (mps2-an505) the core starts in the
 * secure state with its vector table at 0x10000000, and the program stays there.
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
#ifdef __ARM_FP
    /* CPACR: full access to coprocessors 10 and 11, the FPU; then wait for it. */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    _start();
    for (;;) {
    }
}

static void semihost(uint32_t op, const void *argument)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = argument;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
}

void Default_Handler(void)
{
    /* A fault: say so and stop QEMU (semihosting SYS_WRITE0, then SYS_EXIT with "run-time
     * error", exit status 1) rather than spin until the caller's timeout. */
    semihost(0x04u, "edgecnn: the core took a fault\n");
    semihost(0x18u, (const void *)0x20023u);
    for (;;) {
    }
}

/* Initial stack pointer, reset, then the other 14 system exceptions. */
__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&__StackTop, Reset_Handler,
    Default_Handler, Default_Handler, Default_Handler, Default_Handler, Default_Handler,
    0, 0, 0, 0,
    Default_Handler, Default_Handler, 0, Default_Handler, Default_Handler
};
