# transform_gemm.py SRC DST (see build_lora.sh): a CUDA source of the lora family (gemm.cuh, matmul.cu, lora.cu) ->
# plain C++ for the emulation (emu.h): launches -> emu::launch, dynamic shared memory ->
# emu::dyn_smem() (u32 shared addresses = offsets into it), PTX helpers -> emulations.
import re, sys
src = open(sys.argv[1]).read()
s = src
s = s.replace('extern __shared__ uint4 smem_raw[];', 'uint4 *smem_raw = reinterpret_cast<uint4 *>(::emu::dyn_smem());')
s, n = re.subn(r'([A-Za-z_]\w*(?:<[^<>;]*>)?)<<<(.*?)>>>\(', r'::emu::launch(\1, ::emu::Cfg(\2), ', s, flags=re.S)
sys.stderr.write('%s: %d launches\n' % (sys.argv[1], n))
bodies = {
    'smem_addr': '{ return (uint32_t)(static_cast<const unsigned char *>(p) - ::emu::dyn_smem()); }',
    'cp_async16': '{ ::emu::cp_async16(::emu::dyn_smem() + dst, src, bytes); }',
    'cp_async_commit': '{ ::emu::cp_async_commit(); }',
    'cp_async_wait': '{ ::emu::cp_async_wait(N); }',
    'ldsm_x4': '{ uint32_t r[4]; ::emu::ldsm(r, ::emu::dyn_smem() + addr, kTrans); r0 = r[0]; r1 = r[1]; r2 = r[2]; r3 = r[3]; }',
    'mma16816': '{ ::emu::mma<In>(d, a, b[0], b[1]); }',
}
for name, body in bodies.items():
    m = re.search(r'__device__ __forceinline__ [^\n(]*\b' + name + r'\(', s)
    if not m:
        if name in src and sys.argv[1].endswith('gemm.cuh'): sys.exit('transform: helper not found: ' + name)
        continue
    i = s.index('{', m.end())
    depth, j = 0, i
    while True:
        if s[j] == '{': depth += 1
        elif s[j] == '}':
            depth -= 1
            if depth == 0: break
        j += 1
    s = s[:i] + body + s[j + 1:]
open(sys.argv[2], 'w').write(s)
