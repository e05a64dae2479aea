# attention_simt_emu.py: a float64 emulation in numpy of the SIMT attention kernels
# (attn_fwd_simt_kernel, attn_bwd_simt_kernel), mirroring their loops and thread
# ownership, against attention_tc_emu.py's float64 reference (errors ~1e-15 expected).
# Not part of the build; run by hand: python3 tools/cuda-emu/attention_simt_emu.py
import numpy as np, math
import attention_tc_emu as emu
NEG=-np.inf
def fwd(q,k,v,mask,causal,scale,kD):
    B,S,Hq,D=q.shape; Hkv=k.shape[2]; G=Hq//Hkv
    kW,kR=4,4; kBr=16; kBc=32; kCols=kD//32
    out=np.full(q.shape,np.nan); lse=np.full((B,Hq,S),np.nan)
    sl2=scale*emu.LOG2E
    nqt=(S+kBr-1)//kBr
    for idx in range(B*Hq*nqt):
        mt=nqt-1-idx%nqt; h=(idx//nqt)%Hq; b=idx//nqt//Hq; kvh=h//G; i0=mt*kBr
        mrow=None if mask is None else mask[b]
        sQ=np.zeros((kBr,kD)); 
        for r in range(kBr):
            for d in range(kD):
                sQ[r,d]=q[b,i0+r,h,d] if (r<S-i0 and d<D) else 0
        kend=i0+kBr if causal and i0+kBr<S else S
        nkt=(kend+kBc-1)//kBc
        m=np.full((kW,kR,32),NEG); l=np.zeros((kW,kR,32)); acc=np.zeros((kW,kR,kCols,32))
        for kt in range(nkt):
            j0=kt*kBc
            sK=np.zeros((kBc,kD)); sV=np.zeros((kBc,kD))
            for r in range(kBc):
                for d in range(kD):
                    if r<S-j0 and d<D: sK[r,d]=k[b,j0+r,kvh,d]; sV[r,d]=v[b,j0+r,kvh,d]
            kok=np.array([emu.key_ok(mrow,j0+L,S) for L in range(32)])
            if not kok.any(): continue
            for w in range(kW):
                row0=w*kR
                x=np.zeros((kR,32))
                for d in range(D):
                    for r in range(kR): x[r]+=sQ[row0+r,d]*sK[:,d]
                p=np.zeros((kR,32))
                for r in range(kR):
                    i=i0+row0+r; j=j0+np.arange(32)
                    ok=kok & ((not causal) | (j<=i))
                    xs=np.where(ok,x[r]*sl2,NEG)
                    mnew=np.maximum(m[w,r],xs.max())
                    muse=np.where(mnew==NEG,0,mnew)
                    alpha=np.exp2(m[w,r]-muse); m[w,r]=mnew
                    p[r]=np.exp2(xs-muse); l[w,r]=l[w,r]*alpha+p[r]
                    acc[w,r]*=alpha
                for jj in range(kBc):
                    for r in range(kR):
                        pj=p[r,jj]
                        for c in range(kCols): acc[w,r,c]+=pj*sV[jj,np.arange(32)+32*c]
        for w in range(kW):
            for r in range(kR):
                lt=l[w,r].sum(); i=i0+w*kR+r
                if i>=S: continue
                dead=m[w,r,0]==NEG or not lt>0
                inv=0 if dead else 1/lt
                lse[b,h,i]=NEG if dead else (m[w,r,0]+math.log2(lt))*emu.LN2
                for c in range(kCols):
                    for L in range(32):
                        d=L+32*c
                        if d<D: out[b,i,h,d]=acc[w,r,c,L]*inv
    return out,lse
def bwd(q,k,v,mask,causal,scale,kD,dout,o,lse_in):
    B,S,Hq,D=q.shape; Hkv=k.shape[2]; G=Hq//Hkv
    kBr=8; kBc=32; kCK=kD//8; kCQ=kD//32
    sl2=scale*emu.LOG2E
    delta=np.einsum('bshd,bshd->bhs',dout,o)
    dq=np.zeros(q.shape); dkO=np.full(k.shape,np.nan); dvO=np.full(k.shape,np.nan)
    nkt=(S+kBc-1)//kBc; nqt=(S+kBr-1)//kBr
    for idx in range(B*Hkv*nkt):
        kt=idx%nkt; kvh=(idx//nkt)%Hkv; b=idx//nkt//Hkv; j0=kt*kBc
        mrow=None if mask is None else mask[b]
        sK=np.zeros((kBc,kD)); sV=np.zeros((kBc,kD))
        for r in range(kBc):
            for d in range(kD):
                if r<S-j0 and d<D: sK[r,d]=k[b,j0+r,kvh,d]; sV[r,d]=v[b,j0+r,kvh,d]
        kok=np.array([emu.key_ok(mrow,j0+L,S) for L in range(32)])
        live=kok.any()
        tid=np.arange(256); jk=tid//8; dsub=tid%8
        dka=np.zeros((256,kCK)); dva=np.zeros((256,kCK))
        if live:
            qt0=j0//kBr if causal else 0
            for gh in range(G):
                h=kvh*G+gh
                for qt in range(qt0,nqt):
                    i0=qt*kBr
                    sQ=np.zeros((kBr,kD)); sdO=np.zeros((kBr,kD))
                    for r in range(kBr):
                        for d in range(kD):
                            if r<S-i0 and d<D: sQ[r,d]=q[b,i0+r,h,d]; sdO[r,d]=dout[b,i0+r,h,d]
                    sP=np.zeros((kBr,kBc)); sdS=np.zeros((kBr,kBc))
                    for w in range(8):
                        i=i0+w; j=j0+np.arange(32)
                        s=sK[:,:D]@sQ[w,:D]; dpv=sV[:,:D]@sdO[w,:D]
                        lse2=np.inf; dl=0
                        if i<S:
                            L=lse_in[b,h,i]; lse2=np.inf if L==NEG else L*emu.LOG2E; dl=delta[b,h,i]
                        ok=kok & ((not causal) | (j<=i))
                        p=np.where(ok,np.exp2(s*sl2-lse2),0)
                        ds=p*(dpv-dl)*scale
                        sP[w]=p; sdS[w]=ds
                        if i<S and (ds!=0).any():
                            for c in range(kCQ):
                                for L in range(32):
                                    d=L+32*c
                                    if d<D: dq[b,i,h,d]+=(ds*sK[:,d]).sum()
                    for t in range(256):
                        for r in range(kBr):
                            pr=sP[r,jk[t]]; dsr=sdS[r,jk[t]]
                            for c in range(kCK):
                                dva[t,c]+=pr*sdO[r,dsub[t]+8*c]; dka[t,c]+=dsr*sQ[r,dsub[t]+8*c]
        for t in range(256):
            jw=j0+jk[t]
            if jw<S:
                for c in range(kCK):
                    d=dsub[t]+8*c
                    if d<D: dkO[b,jw,kvh,d]=dka[t,c]; dvO[b,jw,kvh,d]=dva[t,c]
    return dq,dkO,dvO
def run(B,S,Hq,Hkv,D,causal,maskkind,seed,scale=None):
    rng=np.random.default_rng(seed)
    kD=64 if D<=64 else 128 if D<=128 else 256
    q=rng.uniform(-2,2,(B,S,Hq,D)); k=rng.uniform(-1,1,(B,S,Hkv,D)); v=rng.uniform(-1,1,(B,S,Hkv,D)); dout=rng.uniform(-1,1,(B,S,Hq,D))
    mask=None
    if maskkind:
        mask=np.ones((B,S),np.int32)
        for b in range(B):
            pad=S if b%2==1 else (S//3 if b==0 else S//5)
            for j in range(S):
                masked=j<pad if maskkind=='left' else j>=S-pad
                mask[b,j]=0 if masked else 1
    scale=scale or 1/math.sqrt(D)
    r=emu.ref(q,k,v,mask,causal,scale,dout)
    out,lse=fwd(q,k,v,mask,causal,scale,kD)
    g=bwd(q,k,v,mask,causal,scale,kD,dout,out,lse)
    ok=True
    for nm,gg,tt in zip(['out','dq','dk','dv'],[out]+list(g),[r[0],r[2],r[3],r[4]]):
        e=np.abs(gg-tt).max() if not np.isnan(gg).any() else np.inf
        print(f"S{S} D{D} causal={causal} mask={maskkind} {nm} max err {e:.2e}"); ok&=e<1e-9
    same=np.array_equal(np.isneginf(lse),np.isneginf(r[1])) and not np.isnan(lse).any()
    fin=np.isfinite(r[1]); e=np.abs(lse[fin]-r[1][fin]).max() if fin.any() else 0
    print('lse', same, e); ok&=same and e<1e-9
    return ok
ok=True
ok&=run(2,37,4,2,40,True,'left',1)
ok&=run(3,45,2,1,200,False,'right',2)
ok&=run(1,50,2,2,13,True,None,3,-0.4)
ok&=run(1,1,1,1,64,False,None,4)
print('ALL OK' if ok else 'FAIL')
