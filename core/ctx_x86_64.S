/* Context switch for x86-64 System V. See ctx_internal.h.
 *
 * Saved frame, from the saved stack pointer upwards (64 bytes):
 *   [sp+0]  mxcsr (4 bytes) | x87 control word (2 bytes) | pad (2 bytes)
 *   [sp+8]  r15, r14, r13, r12, rbx, rbp
 *   [sp+56] return address
 *
 * Both stacks have the same frame layout, so the CFI below stays valid across
 * the stack-pointer swap: an asynchronous unwinder (perf, a signal handler
 * calling backtrace()) stopped anywhere in hy__ctx_switch finds the return
 * address at CFA-8 and the callee-saved registers in their slots, belonging
 * to whichever context the stack pointer currently designates.
 *
 * The control bits of MXCSR and the x87 control word are callee-saved in
 * the System V ABI, so each context keeps its own rounding mode, exception
 * masks, DAZ/FZ. They are reloaded only when they differ from the current
 * ones. MXCSR's exception *status* flags (bits 0-5) are caller-saved in the
 * ABI and are not part of a context: they are restored only along with
 * differing control bits, so they are not reliable across a switch.
 */
    /* with the other per-request code (HY__HOT in shard_internal.h) */
    .section .text.hot.hydra,"ax",@progbits
    .globl hy__ctx_switch
    .type hy__ctx_switch, @function
    .p2align 4
hy__ctx_switch:
    .cfi_startproc
    pushq %rbp
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbp, 0
    pushq %rbx
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset rbx, 0
    pushq %r12
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r12, 0
    pushq %r13
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r13, 0
    pushq %r14
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r14, 0
    pushq %r15
    .cfi_adjust_cfa_offset 8
    .cfi_rel_offset r15, 0
    subq $8, %rsp
    .cfi_adjust_cfa_offset 8
    .cfi_remember_state
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movl (%rsp), %eax           /* loads of what was just stored: same */
    movzwl 4(%rsp), %ecx        /* addresses and sizes, so forwarded */
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    /* Reload only what differs: ldmxcsr and fldcw cost a quarter of the
     * switch and the control words are nearly always the same. Equal
     * words (MXCSR's status flags included) settle it with two compares;
     * otherwise MXCSR's control bits are compared on their own. */
    cmpl (%rsp), %eax
    jne 3f
1:
    cmpw 4(%rsp), %cx
    je 2f
    fldcw 4(%rsp)
2:
    addq $8, %rsp
    .cfi_adjust_cfa_offset -8
    popq %r15
    .cfi_adjust_cfa_offset -8
    .cfi_restore r15
    popq %r14
    .cfi_adjust_cfa_offset -8
    .cfi_restore r14
    popq %r13
    .cfi_adjust_cfa_offset -8
    .cfi_restore r13
    popq %r12
    .cfi_adjust_cfa_offset -8
    .cfi_restore r12
    popq %rbx
    .cfi_adjust_cfa_offset -8
    .cfi_restore rbx
    popq %rbp
    .cfi_adjust_cfa_offset -8
    .cfi_restore rbp
    ret
    /* MXCSR differs: reload it when a control bit does (DAZ, masks, RC,
     * FZ), not for the status flags alone */
    .cfi_restore_state
3:
    movl (%rsp), %edx
    xorl %eax, %edx
    testl $0xffc0, %edx
    jz 1b
    ldmxcsr (%rsp)
    jmp 1b
    .cfi_endproc
    .size hy__ctx_switch, .-hy__ctx_switch

/* First code run on a new stack: r12 = fn, r13 = arg (set by hy__ctx_make).
 * It is entered by the `ret` of hy__ctx_switch with rsp = 16n+8, as at any
 * function entry; the andq makes the alignment explicit so that rsp is
 * 16-aligned before the call, as the ABI requires.
 *
 * The CFI marks the return address as undefined, so unwinders (libgcc's
 * _Unwind_Backtrace used by backtrace(), gdb) stop at this frame. The FDE
 * starts one byte before the symbol (the nop): an unwinder looking up the
 * "return address" hy__ctx_entry of a context that has not started yet uses
 * address-1 and must still land in this FDE, not in hy__ctx_switch's. */
    .p2align 4
    .cfi_startproc
    .cfi_undefined rip
    nop
    .globl hy__ctx_entry
    .type hy__ctx_entry, @function
hy__ctx_entry:
    xorl %ebp, %ebp
    andq $-16, %rsp
    movq %r13, %rdi
    callq *%r12
    ud2
    .cfi_endproc
    .size hy__ctx_entry, .-hy__ctx_entry

    .section .note.GNU-stack,"",@progbits
