#!/usr/bin/env python3
"""Pipeline model (llvm-mca) of every quantized matmul micro-kernel's inner loop.

    bench/mca.py                 print the table (markdown)
    bench/mca.py --update-docs   also rewrite the table in docs/kernels.md

How: configures build/mca-x86 and build/mca-arm (cmake only, CMAKE_EXPORT_COMPILE_COMMANDS, no
build), takes each kernels/matmul/matmul_*.cpp compile command from compile_commands.json (the
build's own flags: -O level, the per-file ISA flags of kernels/CMakeLists.txt), compiles it to
assembly with -DPIQUANT_MCA_MARKERS -S, cuts out the regions between the PIQUANT-MCA-BEGIN /
END markers (common/mca.hpp: one iteration of a micro-kernel's loop, w/rows/tokens/blocks in the
marker; a marker with op=gemm, PIQUANT_MCA_BEGIN_OP, is the GEMM row even when its step is one
token), and runs llvm-mca-19 on each for the CPU models below. Cycles per (32-value block x
row x token) = cycles per iteration / (blocks x rows x tokens).

The floor of each model is modelled too, not assumed: the multiply instructions one 32-value
block x row x token needs at least, fed to the same llvm-mca model as independent chains:
  dotprod:      2 x sdot .16b           (16 int8 MACs each)
  NEON (v8.0):  2 x (smull + smlal2)    (the 8x8->16 bit multiplies; sadalp not counted)
  AVX2:         vpmaddubsw + vpmaddwd   (ymm: 32 u8 x s8 products, pairs -> int32)
  AVX-512 VNNI: vpdpbusd zmm / 2        (64 u8 x s8 MACs per instruction)
Models: neoverse-n1 stands for the Pi 5's Cortex-A76 (same two 128-bit ASIMD pipes, sdot 2 per
cycle); LLVM's own -mcpu=cortex-a76 uses the Cortex-A57 scheduling model, so it is not used.
cortex-a72 is the Pi 4 (LLVM 19 gives it the Cortex-A57 model: its output is identical to
-mcpu=cortex-a57). x86: znver3 (AVX2 only), znver4, sapphirerapids.
"""
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MCA = os.environ.get("LLVM_MCA", "llvm-mca-19")
WEIGHTS = {2: "q8", 3: "q4", 4: "q4m", 5: "q4_k", 6: "q5_k", 7: "q6_k", 8: "q5_0",
           9: "q5_1"}  # int(WeightType): see common/quant.hpp

# file -> (triple, [(model, label)])
MODELS = {
    "matmul_neondot.cpp": ("aarch64", [("neoverse-n1", "A76 (neoverse-n1)")]),
    "matmul_neon.cpp": ("aarch64", [("cortex-a72", "A72 (Pi 4)"), ("neoverse-n1", "A76 (neoverse-n1)")]),
    "matmul_avx2.cpp": ("x86_64", [("znver3", "znver3"), ("znver4", "znver4"),
                                   ("sapphirerapids", "sapphirerapids")]),
    "matmul_avx512vnni.cpp": ("x86_64", [("znver4", "znver4"), ("sapphirerapids", "sapphirerapids")]),
}
ISA = {"matmul_neondot.cpp": "neondot", "matmul_neon.cpp": "neon", "matmul_avx2.cpp": "avx2",
       "matmul_avx512vnni.cpp": "avx512vnni"}
# The floor snippets: (asm, 32-value block x row x token units per copy).
FLOOR = {
    "neondot": ("\n".join(f"sdot v{i}.4s, v20.16b, v21.16b" for i in range(8)), 4.0),
    "neon": ("\n".join(f"smull v{i}.8h, v20.8b, v21.8b\nsmlal2 v{i}.8h, v20.16b, v21.16b"
                       for i in range(8)), 4.0),
    "avx2": ("\n".join(f"vpmaddubsw %ymm14, %ymm{i}, %ymm{i}\nvpmaddwd %ymm15, %ymm{i}, %ymm{i}"
                       for i in range(8)), 8.0),
    "avx512vnni": ("\n".join(f"vpdpbusd %zmm30, %zmm31, %zmm{i}" for i in range(8)), 16.0),
}
ANCHOR = """The anchor, llama.cpp's own aarch64 kernels measured the same way (issue 15: its Pi 5 path,
Q4_0 repacked 4x4, dotprod, no i8mm; `neoverse-n1`): `gemm_q4_0_4x4_q8_0` 16-token loop 1.66
cycles per block x row x token (60 % of the floor), its 4-token tail 1.94 (52 %),
`gemv_q4_0_4x4_q8_0` 3.15 (32 %), `gemm_q8_0_4x4_q8_0` 1.88 (53 %), `gemv_q8_0_4x4_q8_0` 2.28
(44 %); Pi 4 (`cortex-a72`, `vec_dot_q4_0_q8_0` with `smull`) 11.8. K-quants, llama.cpp's Pi 5
path (`*_q4_K_8x4_q8_K`, `*_q6_K_8x4_q8_K`, Q8_K activations; its sub-block loop body plus the
scale-decode inner loop per super-block, `-O3 -mcpu=cortex-a76`, by hand, not by this script):
Q4_K GEMM ~3.0, GEMV ~3.8; Q6_K GEMM ~3.7, GEMV ~7.5. The q4_k .. q5_1 rows here count 32-value
blocks (a 256-value super-block is 8)."""


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


def configure(name, extra):
    bdir = os.path.join(ROOT, "build", name)
    if not os.path.exists(os.path.join(bdir, "compile_commands.json")):
        run(["cmake", "-S", ROOT, "-B", bdir, "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
             "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON", "-DPIQUANT_BUILD_TESTS=OFF",
             "-DPIQUANT_BUILD_BENCH=OFF", "-DPIQUANT_BUILD_TOOLS=OFF",
             "-DPIQUANT_BUILD_EXAMPLES=OFF"] + extra)
    with open(os.path.join(bdir, "compile_commands.json")) as f:
        return json.load(f)


def assembly(entry):
    """The compile command of `entry`, turned into -S with the markers on."""
    args = entry["command"].split() if "command" in entry else list(entry["arguments"])
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MT", "-MQ"):
            skip = True
            continue
        if a in ("-c", "-MD", "-MMD"):
            continue
        out.append(a)
    out += ["-S", "-o", "-", "-DPIQUANT_MCA_MARKERS"]
    return run(out, cwd=entry["directory"])


LABEL = re.compile(r"^([A-Za-z_$][\w.$]*):")
BEGIN = re.compile(r"PIQUANT-MCA-BEGIN w=(\d+) rows=(\d+) tokens=(\d+) blocks=(\d+)(?: op=(\w+))?")


def regions(asm):
    """[(w, rows, tokens, blocks, op, function, [insn lines])] in order of appearance; op is the
    marker's op= (PIQUANT_MCA_BEGIN_OP) or None."""
    out, fn, cur = [], "?", None
    for line in asm.splitlines():
        s = line.strip()
        m = LABEL.match(line)
        if m and not m.group(1).startswith(".L"):
            fn = m.group(1)
        b = BEGIN.search(s)
        if b:
            cur = (tuple(int(x) for x in b.groups()[:4]) + (b.group(5),), fn, [])
            continue
        if "PIQUANT-MCA-END" in s:
            if cur:
                out.append(cur[0] + (cur[1], cur[2]))
            cur = None
            continue
        if cur is None or not s or s.startswith((".", "#", "//")) or s.endswith(":"):
            continue
        cur[2].append(s)
    return out


def mca(triple, cpu, body, iterations=200):
    with tempfile.NamedTemporaryFile("w", suffix=".s", delete=False) as f:
        f.write(body + "\n")
        path = f.name
    try:
        txt = run([MCA, f"-mtriple={triple}", f"-mcpu={cpu}", f"-iterations={iterations}", path])
    finally:
        os.unlink(path)
    cycles = int(re.search(r"Total Cycles:\s+(\d+)", txt).group(1))
    uops = int(re.search(r"Total uOps:\s+(\d+)", txt).group(1))
    # Resource legend and the pressure-per-iteration row.
    names = dict(re.findall(r"^\[(\d+(?:\.\d+)?)\]\s+-\s+(\S+)", txt, re.M))
    sec = txt.split("Resource pressure per iteration:")[1].splitlines()
    hdr = re.findall(r"\[(\d+(?:\.\d+)?)\]", sec[1])
    vals = sec[2].split()
    pressure = {}
    for h, v in zip(hdr, vals):
        pressure[names.get(h, h)] = 0.0 if v == "-" else float(v)
    return cycles / iterations, uops / iterations, pressure


def bottleneck(cyc, pressure):
    name, p = max(pressure.items(), key=lambda kv: kv[1])
    if p < 0.9 * cyc:
        return f"latency/dispatch ({name} {p:.1f}/{cyc:.1f})"
    return f"{name} ({p:.1f}/{cyc:.1f})"


def main():
    update = "--update-docs" in sys.argv[1:]
    x86 = configure("mca-x86", [])
    arm = configure("mca-arm", [f"-DCMAKE_TOOLCHAIN_FILE={ROOT}/cmake/toolchain-aarch64.cmake"])
    entries = {}
    for e in x86 + arm:
        base = os.path.basename(e["file"])
        if base in MODELS:
            entries[base] = e
    floors = {}
    rows_out = []
    for base, (triple, models) in MODELS.items():
        if base not in entries:
            print(f"warning: no compile command for {base}", file=sys.stderr)
            continue
        regs = regions(assembly(entries[base]))
        isa = ISA[base]
        for w in sorted({r[0] for r in regs}):
            mine = [r for r in regs if r[0] == w]
            # a region marked op=gemm is the GEMM even with one token per step (the A72 K-quants)
            gemv = max((r for r in mine if r[2] == 1 and r[4] != "gemm"), key=lambda r: r[1], default=None)
            tagged = [r for r in mine if r[4] == "gemm"]
            gemm = max(tagged or mine, key=lambda r: (r[2], r[1]))
            picks = [("GEMV", gemv)] + ([("GEMM", gemm)] if gemm is not gemv and (gemm[2] > 1 or tagged) else [])
            for op, r in picks:
                if r is None:
                    continue
                _, nrows, ntok, nblk, _, fn, body = r
                units = nrows * ntok * nblk
                for cpu, label in models:
                    if (isa, cpu) not in floors:
                        fc, _, _ = mca(triple, cpu, FLOOR[isa][0])
                        floors[(isa, cpu)] = fc / FLOOR[isa][1]
                    cyc, uops, pressure = mca(triple, cpu, "\n".join(body))
                    per = cyc / units
                    fl = floors[(isa, cpu)]
                    rows_out.append(
                        f"| {WEIGHTS.get(w, w)} {op} {nrows}x{ntok} `{isa}` | {label} | {len(body)} insns, "
                        f"{uops:.0f} uops / {nblk} blk | {cyc:.1f} | **{per:.2f}** | {fl:.2f} | "
                        f"{100 * fl / per:.0f} % | {bottleneck(cyc, pressure)} |")
    table = "\n".join([
        "| kernel (rows x tokens, ISA) | model | loop body | cycles / iter | cycles / (blk x row x tok) "
        "| floor | % of floor | busiest resource (per iter) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |"] + rows_out)
    version = re.search(r"LLVM version (\S+)", run([MCA, "--version"])).group(0)
    text = (f"<!-- mca-table begin: generated by bench/mca.py ({version}) -->\n"
            f"{table}\n\n{ANCHOR}\n<!-- mca-table end -->")
    print(text)
    if update:
        path = os.path.join(ROOT, "docs", "kernels.md")
        doc = open(path).read()
        new, n = re.subn(r"<!-- mca-table begin.*?<!-- mca-table end -->", lambda _: text, doc,
                         flags=re.S)
        if n != 1:
            sys.exit("docs/kernels.md has no <!-- mca-table begin ... end --> block")
        open(path, "w").write(new)


if __name__ == "__main__":
    main()
