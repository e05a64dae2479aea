#!/usr/bin/env python3
# np_ref.py: an independent, vectorised numpy (float64) re-implementation of the HF Llama
# and CLIP vision forward passes, used by test/ref/refs.test.ts to cross-check the
# TypeScript references. It reads the fixture directories the TypeScript writers produce
# with its own safetensors parser (numpy's float16, a bit shift for bfloat16), so it also
# checks the writers. Usage: np_ref.py REQUEST.json OUT.json, where REQUEST is
#   {"kind": "llama", "dir": ..., "prefix": "model.", "input_ids": [[...]],
#    "attention_mask": [[...]], "bidirectional": bool, "position_ids": [[...]] | null}
#   {"kind": "clip", "dir": ..., "pixels": [...flat B*C*H*W...], "batch": B}
#   {"kind": "decode", "file": ...}  (every tensor decoded, as lists)
#   {"kind": "f16", "values": [...]}   (numpy's float64 -> float16 rounding of values)
import json
import os
import struct
import sys

import numpy as np


def load_st(path):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8 : 8 + n].decode("utf-8"))
    data = b[8 + n :]
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        raw = data[s:e]
        dt = v["dtype"]
        if dt == "F32":
            a = np.frombuffer(raw, "<f4").astype(np.float64)
        elif dt == "F16":
            a = np.frombuffer(raw, "<f2").astype(np.float64)
        elif dt == "BF16":
            a = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        elif dt == "I64":
            a = np.frombuffer(raw, "<i8").astype(np.float64)
        else:
            raise ValueError(dt)
        out[k] = a.reshape(v["shape"])
    return out


def load_dir(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    w = {}
    for fn in files:
        w.update(load_st(os.path.join(d, fn)))
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    return cfg, w


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], -1)


def inv_freq(cfg):
    dim = cfg["head_dim"]
    inv = 1.0 / (cfg["rope_theta"] ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    rs = cfg.get("rope_scaling")
    if not rs:
        return inv
    factor, lo, hi, old = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"], rs["original_max_position_embeddings"]
    low_wl, high_wl = old / lo, old / hi
    wl = 2 * np.pi / inv
    out = np.where(wl > low_wl, inv / factor, inv)
    smooth = (old / wl - lo) / (hi - lo)
    smoothed = (1 - smooth) * out / factor + smooth * out
    medium = ~(wl < high_wl) & ~(wl > low_wl)
    return np.where(medium, smoothed, out)


def llama(req):
    cfg, W = load_dir(req["dir"])
    p = req["prefix"]
    g = lambda n: W[n if n == "lm_head.weight" else p + n]
    ids = np.array(req["input_ids"], dtype=np.int64)
    mask = np.array(req["attention_mask"], dtype=np.int64)
    B, S = ids.shape
    nh, nkv, hd, eps = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["rms_norm_eps"]
    pos = np.array(req["position_ids"], dtype=np.float64) if req.get("position_ids") else np.tile(np.arange(S, dtype=np.float64), (B, 1))
    fr = pos[..., None] * inv_freq(cfg)[None, None, :]
    emb = np.concatenate([fr, fr], -1)
    cos, sin = np.cos(emb)[:, None], np.sin(emb)[:, None]  # B,1,S,hd
    allowed = np.broadcast_to(mask[:, None, None, :].astype(bool), (B, 1, S, S))
    if not req["bidirectional"]:
        allowed = allowed & np.tril(np.ones((S, S), dtype=bool))[None, None]
    allowed = allowed | ~allowed.any(-1, keepdims=True)
    qkv_bias = cfg["model_type"] == "qwen2" or cfg.get("attention_bias", False)
    o_bias = cfg["model_type"] != "qwen2" and cfg.get("attention_bias", False)
    h = g("embed_tokens.weight")[ids]
    for l in range(cfg["num_hidden_layers"]):
        L = f"layers.{l}."
        x = rms(h, g(L + "input_layernorm.weight"), eps)

        def proj(name, n):
            y = x @ g(L + f"self_attn.{name}.weight").T
            if qkv_bias:
                y = y + g(L + f"self_attn.{name}.bias")
            return y.reshape(B, S, n, hd).transpose(0, 2, 1, 3)

        q, k, v = proj("q_proj", nh), proj("k_proj", nkv), proj("v_proj", nkv)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = np.repeat(k, nh // nkv, axis=1)
        v = np.repeat(v, nh // nkv, axis=1)
        sc = q @ k.swapaxes(-1, -2) / np.sqrt(hd)
        sc = np.where(allowed, sc, -np.inf)
        sc = np.exp(sc - sc.max(-1, keepdims=True))
        sc = sc / sc.sum(-1, keepdims=True)
        o = (sc @ v).transpose(0, 2, 1, 3).reshape(B, S, nh * hd) @ g(L + "self_attn.o_proj.weight").T
        if o_bias:
            o = o + g(L + "self_attn.o_proj.bias")
        h = h + o
        x = rms(h, g(L + "post_attention_layernorm.weight"), eps)
        gt = x @ g(L + "mlp.gate_proj.weight").T
        up = x @ g(L + "mlp.up_proj.weight").T
        h = h + (gt / (1 + np.exp(-gt)) * up) @ g(L + "mlp.down_proj.weight").T
    h = rms(h, g("norm.weight"), eps)
    lm = g("embed_tokens.weight") if cfg.get("tie_word_embeddings") else g("lm_head.weight")
    return {"hidden": h.reshape(-1).tolist(), "logits": (h @ lm.T).reshape(-1).tolist()}


def ln(x, w, b, eps):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * w + b


def clip(req):
    full, W = load_dir(req["dir"])
    cfg = full.get("vision_config", full)
    B = req["batch"]
    C, S, p, H = cfg["num_channels"], cfg["image_size"], cfg["patch_size"], cfg["hidden_size"]
    nh, eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]
    hd, G = H // nh, S // p
    px = np.array(req["pixels"], dtype=np.float64).reshape(B, C, G, p, G, p)
    patches = px.transpose(0, 2, 4, 1, 3, 5).reshape(B, G * G, C * p * p)
    e = "vision_model.embeddings."
    pe = patches @ W[e + "patch_embedding.weight"].reshape(H, -1).T
    cls = np.broadcast_to(W[e + "class_embedding"], (B, 1, H))
    h = np.concatenate([cls, pe], 1) + W[e + "position_embedding.weight"][None]
    h = ln(h, W["vision_model.pre_layrnorm.weight"], W["vision_model.pre_layrnorm.bias"], eps)
    T = h.shape[1]
    if cfg["hidden_act"] == "quick_gelu":
        act = lambda x: x / (1 + np.exp(-1.702 * x))
    else:
        from math import erf

        verf = np.vectorize(erf)
        act = lambda x: 0.5 * x * (1 + verf(x / np.sqrt(2)))
    for l in range(cfg["num_hidden_layers"]):
        L = f"vision_model.encoder.layers.{l}."
        lin = lambda x, n: x @ W[L + n + ".weight"].T + W[L + n + ".bias"]
        x = ln(h, W[L + "layer_norm1.weight"], W[L + "layer_norm1.bias"], eps)
        sp = lambda y: y.reshape(B, T, nh, hd).transpose(0, 2, 1, 3)
        q, k, v = sp(lin(x, "self_attn.q_proj")), sp(lin(x, "self_attn.k_proj")), sp(lin(x, "self_attn.v_proj"))
        sc = q @ k.swapaxes(-1, -2) * hd**-0.5
        sc = np.exp(sc - sc.max(-1, keepdims=True))
        sc = sc / sc.sum(-1, keepdims=True)
        h = h + lin((sc @ v).transpose(0, 2, 1, 3).reshape(B, T, H), "self_attn.out_proj")
        x = ln(h, W[L + "layer_norm2.weight"], W[L + "layer_norm2.bias"], eps)
        h = h + lin(act(lin(x, "mlp.fc1")), "mlp.fc2")
    pooled = ln(h[:, 0], W["vision_model.post_layernorm.weight"], W["vision_model.post_layernorm.bias"], eps)
    emb = pooled @ W["visual_projection.weight"].T
    return {"lastHidden": h.reshape(-1).tolist(), "pooled": pooled.reshape(-1).tolist(), "imageEmbeds": emb.reshape(-1).tolist()}


def main():
    with open(sys.argv[1]) as f:
        req = json.load(f)
    kind = req["kind"]
    if kind == "llama":
        out = llama(req)
    elif kind == "clip":
        out = clip(req)
    elif kind == "decode":
        out = {k: v.reshape(-1).tolist() for k, v in load_st(req["file"]).items()}
    elif kind == "f16":
        out = {"values": np.array(req["values"], dtype=np.float64).astype(np.float16).astype(np.float64).tolist()}
    else:
        raise ValueError(kind)
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
