# transform.py SRC DST (see build.sh): native/cuda/infonce.cu -> plain C++ for the emulation (emu.h):
# launches -> emu::launch, dynamic shared memory -> emu::dyn_smem(), the PTX helpers'
# bodies -> their emulations. Fails loudly if a pattern is not found.
import re, sys
src = open(sys.argv[1]).read()

def must_sub(pat, rep, s, count=0, flags=0):
    n = len(re.findall(pat, s, flags))
    if n == 0: sys.exit('transform: pattern not found: ' + pat)
    return re.sub(pat, rep, s, count=count, flags=flags)

s = must_sub(r'extern __shared__ __align__\(128\) unsigned char smem_raw\[\];',
             'unsigned char *smem_raw = ::emu::dyn_smem();', src)
s = must_sub(r'([A-Za-z_]\w*(?:<\w+>)?)<<<(.*?)>>>\(', r'::emu::launch(\1, ::emu::Cfg(\2), ', s)

bodies = {
    'fast_exp2': '{ return exp2f(x); }',
    'cp_async16': '{ ::emu::cp_async16(smem, gmem, src_bytes); }',
    'cp_async_commit': '{ ::emu::cp_async_commit(); }',
    'cp_async_wait': '{ ::emu::cp_async_wait(N); }',
    'ldsm_x4': '{ ::emu::ldsm(r, smem, false); }',
    'ldsm_x4_trans': '{ ::emu::ldsm(r, smem, true); }',
    'mma16816': '{ ::emu::mma<Tag>(c, a, b0, b1); }',
}
for name, body in bodies.items():
    m = re.search(r'__device__ __forceinline__ [^\n(]*\b' + name + r'\(', s)
    if not m: sys.exit('transform: helper not found: ' + name)
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
