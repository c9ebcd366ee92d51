#pragma once
// Loop-body markers for the llvm-mca pipeline model (bench/mca.sh). Compiled to nothing unless
// PIQUANT_MCA_MARKERS is defined, which only the script does (it compiles to assembly, never to
// an object). A marked region is one iteration of a micro-kernel's inner loop: `blocks` 32-value
// K-blocks of `rows` output rows x `tokens` tokens for weight type `w` (int(WeightType)). The
// markers are asm comments; the empty volatile asm keeps them in place around the loop body.
#if defined(PIQUANT_MCA_MARKERS)
#if defined(__x86_64__)
#define PIQUANT_MCA_CMT "#"
#else
#define PIQUANT_MCA_CMT "//"
#endif
#define PIQUANT_MCA_BEGIN(w, rows, tokens, blocks)                                           \
  asm volatile(PIQUANT_MCA_CMT " PIQUANT-MCA-BEGIN w=%c0 rows=%c1 tokens=%c2 blocks=%c3" :: \
                   "i"(int(w)), "i"(int(rows)), "i"(int(tokens)), "i"(int(blocks)))
/// As PIQUANT_MCA_BEGIN with the op named (gemm / gemv) where the token count cannot tell: a
/// GEMM whose register tile is one token (bench/mca.py reports it as the GEMM row).
#define PIQUANT_MCA_BEGIN_OP(w, rows, tokens, blocks, op)                                         \
  asm volatile(PIQUANT_MCA_CMT " PIQUANT-MCA-BEGIN w=%c0 rows=%c1 tokens=%c2 blocks=%c3 op=" #op :: \
                   "i"(int(w)), "i"(int(rows)), "i"(int(tokens)), "i"(int(blocks)))
#define PIQUANT_MCA_END() asm volatile(PIQUANT_MCA_CMT " PIQUANT-MCA-END")
#else
#define PIQUANT_MCA_BEGIN_OP(w, rows, tokens, blocks, op) ((void)0)
#define PIQUANT_MCA_BEGIN(w, rows, tokens, blocks) ((void)0)
#define PIQUANT_MCA_END() ((void)0)
#endif
