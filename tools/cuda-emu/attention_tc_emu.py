# attention_tc_emu.py: a warp-level emulation in numpy of the tensor-core attention kernels
# (native/cuda/attention_fwd.cu attn_fwd_tc_kernel, attention_bwd.cu attn_bwd_tc_kernel),
# written where no GPU was available to check their index math: ldmatrix (plain and
# .trans) and mma.sync m16n8k16 are modelled on the PTX ISA's fragment layouts, and the
# kernels' loops, offsets, masking, online softmax, P / dS rounding to bfloat16, GQA and
# causal tiling are mirrored line by line; the results are compared with a float64
# reference. Shared memory starts as NaN, so an unwritten element read shows up.
# Not part of the build; run by hand after changing the kernels' tiling:
#   python3 tools/cuda-emu/attention_tc_emu.py        (about a minute; needs numpy)
# What it cannot see: synchronisation, cp.async, the load paths, memory safety.
import numpy as np
import math, sys

NEG_INF = -np.inf
LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453

lane = np.arange(32)
G = lane // 4
T4 = lane % 4


def bf16(x):
    x = np.asarray(x, dtype=np.float32)
    u = x.view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32).astype(np.float64)


# ---- primitives ----
class Smem:
    def __init__(self, rows, ld):
        self.a = np.full((rows, ld), np.nan)  # poison: unwritten smem shows up
        self.ld = ld

    def at(self, off):
        return divmod(off, self.ld)


def ldsm_x4(sm, offs, trans=False):
    """offs[lane] = element offset of the row address lane supplies."""
    regs = []
    for i in range(4):
        reg = np.zeros((32, 2))
        for l in range(32):
            if not trans:
                r, c = sm.at(offs[8 * i + l // 4])
                c += 2 * (l % 4)
                assert c + 1 < sm.ld
                reg[l] = sm.a[r, c], sm.a[r, c + 1]
            else:
                for e in range(2):
                    r, c = sm.at(offs[8 * i + 2 * (l % 4) + e])
                    reg[l, e] = sm.a[r, c + l // 4]
        regs.append(reg)
    # every row address must be 16-byte aligned and inside a row
    for l in range(32):
        r, c = sm.at(offs[l])
        assert c % 8 == 0 and c + 8 <= sm.ld, (r, c)
    return regs


def mma(c, a, b0, b1):
    A = np.zeros((16, 16))
    B = np.zeros((16, 8))
    for l in range(32):
        g, t = l // 4, l % 4
        for k in range(8):
            row = g if (k < 2 or 4 <= k < 6) else g + 8
            col = 2 * t + (k & 1) + (8 if k >= 4 else 0)
            A[row, col] = a[k // 2][l, k % 2]
        for k in range(4):
            row = 2 * t + (k & 1) + (8 if k >= 2 else 0)
            B[row, g] = (b0 if k < 2 else b1)[l, k % 2]
    D = A @ B
    for l in range(32):
        g, t = l // 4, l % 4
        for k in range(4):
            c[l, k] += D[g + (8 if k >= 2 else 0), 2 * t + (k & 1)]


def pack2(lo, hi):
    return np.stack([bf16(lo), bf16(hi)], axis=-1)


def load_tile16(sm, base_row, src, row0, rows, D, kRows, kD):
    # zero-fill past rows / D; src is a 2-D view [S, D] of the head
    for r in range(kRows):
        for col in range(kD):
            v = 0.0
            if r < rows and col < D:
                v = src[row0 + r, col]
            sm.a[base_row + r, col] = v


def key_ok(mrow, j, S):
    return j < S and (mrow is None or mrow[j] != 0)


# ---- forward (attn_fwd_tc_kernel) ----
def fwd_tc(q, k, v, mask, causal, scale, kD):
    B, S, Hq, D = q.shape
    Hkv = k.shape[2]
    Gq = Hq // Hkv
    kBr = 128
    kBc = 128 if kD <= 64 else 64
    kLd = kD + 8
    kNB, kND = kBc // 8, kD // 8
    out = np.full(q.shape, np.nan)
    lse = np.full((B, Hq, S), np.nan)
    scale_log2 = np.float32(scale * LOG2E)
    nqt = (S + kBr - 1) // kBr
    for idx in range(B * Hq * nqt):
        mt = nqt - 1 - idx % nqt
        h = (idx // nqt) % Hq
        b = idx // nqt // Hq
        kvh = h // Gq
        i0 = mt * kBr
        mrow = None if mask is None else mask[b]
        sQ, sK, sV = Smem(kBr, kLd), Smem(kBc, kLd), Smem(kBc, kLd)
        kend = i0 + kBr if causal and i0 + kBr < S else S
        nkt = (kend + kBc - 1) // kBc
        load_tile16(sQ, 0, q[b, :, h, :], i0, S - i0, D, kBr, kD)

        def first_live(t):
            if mrow is None:
                return t
            while t < nkt:
                if any(key_ok(mrow, t * kBc + x, S) for x in range(kBc)):
                    break
                t += 1
            return t

        kt = first_live(0)
        if kt < nkt:
            load_tile16(sK, 0, k[b, :, kvh, :], kt * kBc, S - kt * kBc, D, kBc, kD)
        o = np.zeros((8, kND, 32, 4))
        m = np.full((8, 2, 32), NEG_INF)
        l = np.zeros((8, 2, 32))
        while kt < nkt:
            j0 = kt * kBc
            load_tile16(sV, 0, v[b, :, kvh, :], j0, S - j0, D, kBc, kD)
            s_all = np.zeros((8, kNB, 32, 4))
            for warp in range(8):
                wrow = warp * 16
                s = s_all[warp]
                for kk in range(kD // 16):
                    qa = ldsm_x4(sQ, (wrow + lane % 16) * kLd + kk * 16 + (lane // 16) * 8)
                    for n2 in range(kNB // 2):
                        kb = ldsm_x4(sK, (n2 * 16 + lane % 8 + (lane // 16) * 8) * kLd + kk * 16 + ((lane // 8) % 2) * 8)
                        mma(s[2 * n2], qa, kb[0], kb[1])
                        mma(s[2 * n2 + 1], qa, kb[2], kb[3])
            kn = first_live(kt + 1)
            need_mask = j0 + kBc > S or mrow is not None or (causal and j0 + kBc - 1 > i0)
            for warp in range(8):
                wrow = warp * 16
                s = s_all[warp]
                for n in range(kNB):
                    for e in range(4):
                        x = (s[n, :, e].astype(np.float32) * scale_log2).astype(np.float64)
                        if need_mask:
                            for L in range(32):
                                j = j0 + n * 8 + 2 * (L % 4) + (e & 1)
                                i = i0 + wrow + L // 4 + (e >> 1) * 8
                                if not key_ok(mrow, j, S) or (causal and j > i):
                                    x[L] = NEG_INF
                        s[n, :, e] = x
                for r in range(2):
                    mx = np.full(32, NEG_INF)
                    for n in range(kNB):
                        mx = np.maximum(mx, np.maximum(s[n, :, 2 * r], s[n, :, 2 * r + 1]))
                    mx = np.maximum(mx, mx[lane ^ 1])
                    mx = np.maximum(mx, mx[lane ^ 2])
                    m_new = np.maximum(m[warp, r], mx)
                    m_use = np.where(m_new == NEG_INF, 0.0, m_new)
                    with np.errstate(invalid='ignore'):
                        alpha = np.exp2(m[warp, r] - m_use)
                    m[warp, r] = m_new
                    ssum = np.zeros(32)
                    for n in range(kNB):
                        s[n, :, 2 * r] = np.exp2(s[n, :, 2 * r] - m_use)
                        s[n, :, 2 * r + 1] = np.exp2(s[n, :, 2 * r + 1] - m_use)
                        ssum += s[n, :, 2 * r] + s[n, :, 2 * r + 1]
                    l[warp, r] = l[warp, r] * alpha + ssum
                    for n in range(kND):
                        o[warp, n, :, 2 * r] *= alpha
                        o[warp, n, :, 2 * r + 1] *= alpha
            if kn < nkt:
                sK = Smem(kBc, kLd)
                load_tile16(sK, 0, k[b, :, kvh, :], kn * kBc, S - kn * kBc, D, kBc, kD)
            for warp in range(8):
                s = s_all[warp]
                for kk in range(kBc // 16):
                    pa = [pack2(s[2 * kk][:, 0], s[2 * kk][:, 1]), pack2(s[2 * kk][:, 2], s[2 * kk][:, 3]),
                          pack2(s[2 * kk + 1][:, 0], s[2 * kk + 1][:, 1]), pack2(s[2 * kk + 1][:, 2], s[2 * kk + 1][:, 3])]
                    for n2 in range(kND // 2):
                        vb = ldsm_x4(sV, (kk * 16 + lane % 8 + ((lane // 8) % 2) * 8) * kLd + n2 * 16 + (lane // 16) * 8, trans=True)
                        mma(o[warp, 2 * n2], pa, vb[0], vb[1])
                        mma(o[warp, 2 * n2 + 1], pa, vb[2], vb[3])
            sV = Smem(kBc, kLd)
            kt = kn
        for warp in range(8):
            wrow = warp * 16
            for r in range(2):
                lt = l[warp, r].copy()
                lt = lt + lt[lane ^ 1]
                lt = lt + lt[lane ^ 2]
                for L in range(32):
                    dead = m[warp, r, L] == NEG_INF or not (lt[L] > 0)
                    inv = 0.0 if dead else 1.0 / lt[L]
                    i = i0 + wrow + L // 4 + r * 8
                    if i >= S:
                        continue
                    if L % 4 == 0:
                        lse[b, h, i] = NEG_INF if dead else (m[warp, r, L] + math.log2(lt[L])) * LN2
                    for n in range(kND):
                        col = n * 8 + 2 * (L % 4)
                        if col < D:
                            out[b, i, h, col] = bf16(o[warp, n, L, 2 * r] * inv)
                        if col + 1 < D:
                            out[b, i, h, col + 1] = bf16(o[warp, n, L, 2 * r + 1] * inv)
    return out, lse


# ---- backward (attn_bwd_tc_kernel) ----
def bwd_tc(q, k, v, mask, causal, scale, kD, dout, o, lse_in):
    B, S, Hq, D = q.shape
    Hkv = k.shape[2]
    Gq = Hq // Hkv
    kBr = kBc = 64
    kLd, kLdP = kD + 8, kBc + 8
    kNH, kHalf = kD // 16, kD // 2
    scale_log2 = np.float32(scale * LOG2E)
    delta = np.einsum('bshd,bshd->bhs', dout, o)
    dq_acc = np.zeros(q.shape)
    dkO = np.full(k.shape, np.nan)
    dvO = np.full(k.shape, np.nan)
    nkt = (S + kBc - 1) // kBc
    nqt = (S + kBr - 1) // kBr
    for idx in range(B * Hkv * nkt):
        kt = idx % nkt
        kvh = (idx // nkt) % Hkv
        b = idx // nkt // Hkv
        j0 = kt * kBc
        mrow = None if mask is None else mask[b]
        sK, sV = Smem(kBc, kLd), Smem(kBc, kLd)
        load_tile16(sK, 0, k[b, :, kvh, :], j0, S - j0, D, kBc, kD)
        load_tile16(sV, 0, v[b, :, kvh, :], j0, S - j0, D, kBc, kD)
        live = mrow is None or any(key_ok(mrow, j0 + x, S) for x in range(kBc))
        dk = np.zeros((8, kNH, 32, 4))
        dv = np.zeros((8, kNH, 32, 4))
        qt0 = j0 // kBr if causal else 0
        nq = nqt - qt0
        total = Gq * nq if live else 0
        for it in range(total):
            h = kvh * Gq + it // nq
            i0 = (qt0 + it % nq) * kBr
            sQ, sdO = Smem(kBr, kLd), Smem(kBr, kLd)
            load_tile16(sQ, 0, q[b, :, h, :], i0, S - i0, D, kBr, kD)
            load_tile16(sdO, 0, dout[b, :, h, :], i0, S - i0, D, kBr, kD)
            sP, sdS = Smem(kBr, kLdP), Smem(kBr, kLdP)
            need_key_mask = j0 + kBc > S or mrow is not None
            for warp in range(8):
                wm, wn = warp % 4, warp // 4
                sc = np.zeros((4, 32, 4))
                dp = np.zeros((4, 32, 4))
                for kk in range(kD // 16):
                    qa = ldsm_x4(sQ, (wm * 16 + lane % 16) * kLd + kk * 16 + (lane // 16) * 8)
                    oa = ldsm_x4(sdO, (wm * 16 + lane % 16) * kLd + kk * 16 + (lane // 16) * 8)
                    for n2 in range(2):
                        koff = (wn * 32 + n2 * 16 + lane % 8 + (lane // 16) * 8) * kLd + kk * 16 + ((lane // 8) % 2) * 8
                        kb = ldsm_x4(sK, koff)
                        mma(sc[2 * n2], qa, kb[0], kb[1])
                        mma(sc[2 * n2 + 1], qa, kb[2], kb[3])
                        vb = ldsm_x4(sV, koff)
                        mma(dp[2 * n2], oa, vb[0], vb[1])
                        mma(dp[2 * n2 + 1], oa, vb[2], vb[3])
                lse2 = np.full((2, 32), np.inf)
                dl = np.zeros((2, 32))
                for r in range(2):
                    for L in range(32):
                        i = i0 + wm * 16 + L // 4 + r * 8
                        if i < S:
                            Lv = lse_in[b, h, i]
                            lse2[r, L] = np.inf if Lv == NEG_INF else Lv * LOG2E
                            dl[r, L] = delta[b, h, i]
                need_mask = need_key_mask or (causal and j0 + kBc - 1 > i0)
                for n in range(4):
                    for e in range(4):
                        r = e >> 1
                        p = np.exp2(sc[n, :, e] * scale_log2 - lse2[r])
                        if need_mask:
                            for L in range(32):
                                j = j0 + wn * 32 + n * 8 + 2 * (L % 4) + (e & 1)
                                i = i0 + wm * 16 + L // 4 + r * 8
                                if not key_ok(mrow, j, S) or (causal and j > i):
                                    p[L] = 0.0
                        sc[n, :, e] = p
                        dp[n, :, e] = p * (dp[n, :, e] - dl[r])
                for n in range(4):
                    for r in range(2):
                        for L in range(32):
                            row = wm * 16 + L // 4 + r * 8
                            col = wn * 32 + n * 8 + 2 * (L % 4)
                            pp = pack2(sc[n, L, 2 * r], sc[n, L, 2 * r + 1])
                            dd = pack2(dp[n, L, 2 * r], dp[n, L, 2 * r + 1])
                            sP.a[row, col:col + 2] = pp
                            sdS.a[row, col:col + 2] = dd
            # barrier: P, dS complete
            for warp in range(8):
                wm, wn = warp % 4, warp // 4
                for kk in range(kBr // 16):
                    poff = (kk * 16 + lane % 8 + (lane // 16) * 8) * kLdP + wm * 16 + ((lane // 8) % 2) * 8
                    pa = ldsm_x4(sP, poff, trans=True)
                    da = ldsm_x4(sdS, poff, trans=True)
                    for n2 in range(kNH // 2):
                        boff = (kk * 16 + lane % 8 + ((lane // 8) % 2) * 8) * kLd + wn * kHalf + n2 * 16 + (lane // 16) * 8
                        ob = ldsm_x4(sdO, boff, trans=True)
                        mma(dv[warp, 2 * n2], pa, ob[0], ob[1])
                        mma(dv[warp, 2 * n2 + 1], pa, ob[2], ob[3])
                        qb = ldsm_x4(sQ, boff, trans=True)
                        mma(dk[warp, 2 * n2], da, qb[0], qb[1])
                        mma(dk[warp, 2 * n2 + 1], da, qb[2], qb[3])
                dq = np.zeros((kNH, 32, 4))
                for kk in range(kBc // 16):
                    da = ldsm_x4(sdS, (wm * 16 + lane % 16) * kLdP + kk * 16 + (lane // 16) * 8)
                    for n2 in range(kNH // 2):
                        kb = ldsm_x4(sK, (kk * 16 + lane % 8 + ((lane // 8) % 2) * 8) * kLd + wn * kHalf + n2 * 16 + (lane // 16) * 8, trans=True)
                        mma(dq[2 * n2], da, kb[0], kb[1])
                        mma(dq[2 * n2 + 1], da, kb[2], kb[3])
                for r in range(2):
                    for L in range(32):
                        i = i0 + wm * 16 + L // 4 + r * 8
                        if i >= S:
                            continue
                        for n in range(kNH):
                            col = wn * kHalf + n * 8 + 2 * (L % 4)
                            if col < D:
                                dq_acc[b, i, h, col] += dq[n, L, 2 * r] * scale
                            if col + 1 < D:
                                dq_acc[b, i, h, col + 1] += dq[n, L, 2 * r + 1] * scale
        for warp in range(8):
            wm, wn = warp % 4, warp // 4
            for r in range(2):
                for L in range(32):
                    j = j0 + wm * 16 + L // 4 + r * 8
                    if j >= S:
                        continue
                    for n in range(kNH):
                        col = wn * kHalf + n * 8 + 2 * (L % 4)
                        for e in range(2):
                            if col + e < D:
                                dkO[b, j, kvh, col + e] = bf16(dk[warp, n, L, 2 * r + e] * scale)
                                dvO[b, j, kvh, col + e] = bf16(dv[warp, n, L, 2 * r + e])
    return bf16(dq_acc), dkO, dvO


# ---- float64 reference ----
def ref(q, k, v, mask, causal, scale, dout):
    B, S, Hq, D = q.shape
    Hkv = k.shape[2]
    Gq = Hq // Hkv
    out = np.zeros(q.shape)
    lse = np.full((B, Hq, S), NEG_INF)
    dq = np.zeros(q.shape)
    dk = np.zeros(k.shape)
    dv = np.zeros(k.shape)
    for b in range(B):
        for h in range(Hq):
            kh = h // Gq
            s = scale * q[b, :, h, :] @ k[b, :, kh, :].T
            ok = np.ones((S, S), bool)
            if mask is not None:
                ok &= (mask[b] != 0)[None, :]
            if causal:
                ok &= np.tril(np.ones((S, S), bool))
            s = np.where(ok, s, NEG_INF)
            mx = s.max(axis=1)
            live = mx > NEG_INF
            p = np.zeros((S, S))
            p[live] = np.exp(s[live] - mx[live, None])
            l = p.sum(axis=1)
            p[live] /= l[live, None]
            lse[b, h, live] = mx[live] + np.log(l[live])
            out[b, :, h, :] = p @ v[b, :, kh, :]
            dO = dout[b, :, h, :]
            dP = dO @ v[b, :, kh, :].T
            delta = (dO * out[b, :, h, :]).sum(axis=1)
            dS = p * (dP - delta[:, None])
            dq[b, :, h, :] = scale * dS @ k[b, :, kh, :]
            dk[b, :, kh, :] += scale * dS.T @ q[b, :, h, :]
            dv[b, :, kh, :] += p.T @ dO
    return out, lse, dq, dk, dv


def run(B, S, Hq, Hkv, D, causal, maskkind, seed, scale=None):
    rng = np.random.default_rng(seed)
    kD = 64 if D <= 64 else 128
    q = bf16(rng.uniform(-2, 2, (B, S, Hq, D)))
    k = bf16(rng.uniform(-1, 1, (B, S, Hkv, D)))
    v = bf16(rng.uniform(-1, 1, (B, S, Hkv, D)))
    dout = bf16(rng.uniform(-1, 1, (B, S, Hq, D)))
    mask = None
    if maskkind:
        mask = np.ones((B, S), np.int32)
        for b in range(B):
            pad = S if b % 2 == 1 else (S // 3 if b == 0 else S // 5)
            for j in range(S):
                masked = j < pad if maskkind == 'left' else j >= S - pad
                mask[b, j] = 0 if masked else (7 if j % 3 == 1 else 1)
    if scale is None:
        scale = 1 / math.sqrt(D)
    r = ref(q, k, v, mask, causal, scale, dout)
    out, lse = fwd_tc(q, k, v, mask, causal, scale, kD)
    dq, dk, dv = bwd_tc(q, k, v, mask, causal, scale, kD, dout, out, lse)
    name = f"B{B} S{S} Hq{Hq} Hkv{Hkv} D{D} causal={causal} mask={maskkind} scale={scale:.3f}"
    ok = True
    for nm, g, w in [('out', out, r[0]), ('dq', dq, r[2]), ('dk', dk, r[3]), ('dv', dv, r[4])]:
        if np.isnan(g).any():
            print(name, nm, 'NaN/unwritten at', np.argwhere(np.isnan(g))[:3])
            ok = False
            continue
        err = np.abs(g - w).max()
        rel = np.linalg.norm(g - w) / max(np.linalg.norm(w), 1e-30)
        flag = 'OK' if rel < 1.5e-2 or err < 1e-4 else 'BAD'
        if flag == 'BAD':
            ok = False
        print(f"{name} {nm}: max err {err:.2e} rel {rel:.2e} {flag}")
    fin = np.isfinite(r[1])
    if not np.array_equal(np.isneginf(lse), np.isneginf(r[1])) or np.isnan(lse).any():
        print(name, 'lse -inf pattern differs')
        ok = False
    else:
        e = np.abs(lse[fin] - r[1][fin]).max() if fin.any() else 0
        print(f"{name} lse: max err {e:.2e}")
        ok &= e < 1e-4
    return ok


if __name__ == '__main__':
    cases = [
        (1, 37, 2, 1, 64, False, None, 1),
        (2, 70, 4, 2, 40, True, 'left', 2),
        (3, 70, 2, 2, 128, False, 'right', 3),
        (1, 150, 2, 1, 72, True, None, 4),
        (2, 130, 2, 1, 100, True, 'right', 5),
        (1, 1, 1, 1, 64, False, None, 6),
        (1, 140, 1, 1, 128, True, 'left', 7),
    ]
    sel = sys.argv[1:]
    allok = True
    for i, c in enumerate(cases):
        if sel and str(i) not in sel:
            continue
        allok &= run(*c)
    if not sel or '7' in sel:
        allok &= run(1, 50, 2, 2, 64, False, None, 8, scale=-0.3)
    print('ALL OK' if allok else 'FAILURES')
