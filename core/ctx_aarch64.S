/* Context switch for aarch64 (AAPCS64). See ctx_internal.h.
 *
 * Saved frame (176 bytes), from the saved stack pointer upwards:
 *   [sp+0]   x19..x28 (80)
 *   [sp+80]  x29 fp, x30 lr (16)
 *   [sp+96]  d8..d15 (64)
 *   [sp+160] fpcr (8), pad (8)
 *
 * Both stacks have the same frame layout, so the CFI stays valid across the
 * stack-pointer swap (see ctx_x86_64.S). FPCR (rounding mode, flush-to-zero,
 * trap enables) is kept per context; FPSR (cumulative exception flags) is
 * caller-saved in AAPCS64 and not part of a context. sp stays 16-aligned
 * throughout.
 */

/* BTI landing pad ("hint #34" = "bti c", a NOP on cores without BTI), so the
 * switch may be reached through an indirect branch (PLT, veneer) when the
 * program is built with -mbranch-protection=bti. hy__ctx_entry needs none:
 * it is reached by `ret`. */
#define HY_BTI_C hint #34

    .text
    .globl hy__ctx_switch
    .type hy__ctx_switch, %function
    .p2align 4
hy__ctx_switch:
    .cfi_startproc
    HY_BTI_C
    sub sp, sp, #176
    .cfi_def_cfa_offset 176
    stp x19, x20, [sp, #0]
    .cfi_offset x19, -176
    .cfi_offset x20, -168
    stp x21, x22, [sp, #16]
    .cfi_offset x21, -160
    .cfi_offset x22, -152
    stp x23, x24, [sp, #32]
    .cfi_offset x23, -144
    .cfi_offset x24, -136
    stp x25, x26, [sp, #48]
    .cfi_offset x25, -128
    .cfi_offset x26, -120
    stp x27, x28, [sp, #64]
    .cfi_offset x27, -112
    .cfi_offset x28, -104
    stp x29, x30, [sp, #80]
    .cfi_offset x29, -96
    .cfi_offset x30, -88
    stp d8, d9, [sp, #96]
    .cfi_offset 72, -80     /* DWARF 64+n = v(n) */
    .cfi_offset 73, -72
    stp d10, d11, [sp, #112]
    .cfi_offset 74, -64
    .cfi_offset 75, -56
    stp d12, d13, [sp, #128]
    .cfi_offset 76, -48
    .cfi_offset 77, -40
    stp d14, d15, [sp, #144]
    .cfi_offset 78, -32
    .cfi_offset 79, -24
    mrs x9, fpcr
    str x9, [sp, #160]
    mov x10, sp
    str x10, [x0]
    mov sp, x1
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    ldr x10, [sp, #160]
    /* Writing FPCR is slow (synchronising on many cores) and the two
     * contexts nearly always have the same one: write it only if it differs. */
    cmp x9, x10
    b.eq 1f
    msr fpcr, x10
1:
    add sp, sp, #176
    .cfi_def_cfa_offset 0
    .cfi_restore x19
    .cfi_restore x20
    .cfi_restore x21
    .cfi_restore x22
    .cfi_restore x23
    .cfi_restore x24
    .cfi_restore x25
    .cfi_restore x26
    .cfi_restore x27
    .cfi_restore x28
    .cfi_restore x29
    .cfi_restore x30
    .cfi_restore 72
    .cfi_restore 73
    .cfi_restore 74
    .cfi_restore 75
    .cfi_restore 76
    .cfi_restore 77
    .cfi_restore 78
    .cfi_restore 79
    ret
    .cfi_endproc
    .size hy__ctx_switch, .-hy__ctx_switch

/* First code on a new stack: x19 = fn, x20 = arg (set by hy__ctx_make), sp is
 * the 16-aligned stack top. fp/lr are zeroed and the return address column
 * is undefined so unwinders stop here. The FDE starts one instruction before
 * the symbol (the nop): an unwinder looking up the "return address"
 * hy__ctx_entry of a context that has not started yet uses address-1 and
 * must still land in this FDE. */
    .p2align 4
    .cfi_startproc
    .cfi_undefined x30
    nop
    .globl hy__ctx_entry
    .type hy__ctx_entry, %function
hy__ctx_entry:
    mov x29, #0
    mov x30, #0
    mov x0, x20
    blr x19
    brk #0
    .cfi_endproc
    .size hy__ctx_entry, .-hy__ctx_entry

    .section .note.GNU-stack,"",%progbits

#if defined(__ARM_FEATURE_BTI_DEFAULT) && __ARM_FEATURE_BTI_DEFAULT
/* GNU property note: this object is BTI-compatible (GNU_PROPERTY_AARCH64_
 * FEATURE_1_BTI), so linking it does not turn BTI off for the program. */
    .pushsection .note.gnu.property, "a"
    .p2align 3
    .word 4                 /* name size */
    .word 16                /* descriptor size */
    .word 5                 /* NT_GNU_PROPERTY_TYPE_0 */
    .asciz "GNU"
    .word 0xc0000000        /* GNU_PROPERTY_AARCH64_FEATURE_1_AND */
    .word 4
    .word 1                 /* BTI */
    .word 0
    .popsection
#endif
