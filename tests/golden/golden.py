#!/usr/bin/python3
"""golden.py: an independent NumPy implementation of the openPangu-R forward pass, for checking `moekit run`.

Written from the model description (docs: /work/shared/reference/openpangu-r-72b.md), not from model/forward.c:
its own safetensors reader (struct + json + numpy.frombuffer), its own config handling, float64 arithmetic, and no
KV cache (every step recomputes the whole sequence, so it also checks moekit's cache bookkeeping).

    golden.py run     --model DIR --prompt 1,2,3 --max-new N [--dump FILE]
        greedy decoding; prints "generated: a,b,c" and optionally writes the logits in moekit's --dump-logits format
    golden.py compare --model DIR --prompt 1,2,3 --max-new N --case LABEL:FILE:a,b,c [--case ...] [--tol 1e-4]
        runs the golden model once and compares every moekit run (its --dump-logits FILE and generated ids) with it:
        per step max|a-b| / max|b| <= tol and identical greedy tokens; prints one PASS/FAIL line, exits 1 on FAIL

The logits file format (both directions) is raw little-endian float32, max_new rows of vocab_size values: row 0 is
the prefill's logits of the last prompt token, row i (i >= 1) the logits of decode step i, i.e. after feeding the
i-th generated token. Token i+1 is argmax(row i).

Run with /usr/bin/python3 and Debian's python3-numpy (tests/golden/install-deps.sh).
"""
import argparse
import json
import os
import struct
import sys

import numpy as np


# ---- safetensors ------------------------------------------------------------------------------------------------

def _decode(raw, dtype, shape, name):
    if dtype == "F32":
        a = np.frombuffer(raw, dtype="<f4")
    elif dtype == "BF16":
        u = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        a = u.view(np.float32)
    elif dtype == "F16":
        a = np.frombuffer(raw, dtype="<f2")
    else:
        raise ValueError("tensor %s: unsupported dtype %s" % (name, dtype))
    n = 1
    for d in shape:
        n *= d
    if a.size != n:
        raise ValueError("tensor %s: %d values for shape %s" % (name, a.size, shape))
    return a.astype(np.float64).reshape(shape)


class SafeTensors:
    """Reads model.safetensors or the shards of model.safetensors.index.json in DIR; tensors come out as float64."""

    def __init__(self, model_dir):
        self.index = {}  # name -> (file, dtype, shape, begin, end)
        self._blobs = {}
        single = os.path.join(model_dir, "model.safetensors")
        index = os.path.join(model_dir, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index) as f:
                files = sorted(set(json.load(f)["weight_map"].values()))
            for fn in files:
                self._read_header(os.path.join(model_dir, fn))
        else:
            self._read_header(single)

    def _read_header(self, path):
        with open(path, "rb") as f:
            blob = f.read()
        (n,) = struct.unpack("<Q", blob[:8])
        header = json.loads(blob[8:8 + n].decode("utf-8"))
        base = 8 + n
        self._blobs[path] = blob
        for name, info in header.items():
            if name == "__metadata__":
                continue
            b, e = info["data_offsets"]
            self.index[name] = (path, info["dtype"], tuple(info["shape"]), base + b, base + e)

    def has(self, name):
        return name in self.index

    def get(self, name, shape=None):
        if name not in self.index:
            raise KeyError("tensor %s is missing" % name)
        path, dtype, shp, b, e = self.index[name]
        if shape is not None and tuple(shape) != shp:
            raise ValueError("tensor %s has shape %s, expected %s" % (name, shp, tuple(shape)))
        return _decode(self._blobs[path][b:e], dtype, shp, name)


# ---- config -------------------------------------------------------------------------------------------------------

class Config:
    """The keys of the HF config.json (a null value counts as absent), with the usual aliases and defaults."""

    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            c = json.load(f)
        self.raw = c

        def get(key, alias=None, default=None):
            v = c.get(key)
            if v is None and alias is not None:
                v = c.get(alias)
            if v is None:
                if default is None:
                    raise KeyError("config.json: key %s is missing" % key)
                return default
            return v

        self.hidden = get("hidden_size")
        self.n_layers = get("num_hidden_layers")
        self.n_heads = get("num_attention_heads")
        self.n_kv = get("num_key_value_heads", default=self.n_heads)
        self.rope_dim = get("qk_rope_dim")
        self.nope_dim = get("qk_nope_dim")
        self.v_dim = get("v_channels")
        self.vocab = get("vocab_size")
        self.eps = float(get("rms_norm_eps"))
        self.theta = float(get("rope_theta"))
        self.interleaved = bool(get("rope_interleaved", "rope_interleave", True))
        self.n_sinks = int(get("param_sink_number", default=0))
        self.sink_with_value = bool(get("param_sink_with_value", default=False))
        self.sandwich = bool(get("sandwich_norm", default=False))
        self.tied = bool(get("tie_word_embeddings", default=False))
        self.window = int(get("sliding_window", default=0))
        if not get("use_sliding_window", default=True):
            self.window = 0
        self.intermediate = get("intermediate_size", default=0)
        self.n_experts = get("num_experts", "n_routed_experts", 0)
        self.top_k = get("num_experts_per_tok", default=0)
        self.expert_dim = get("moe_intermediate_size", default=0)
        if c.get("shared_expert_intermediate_size") is not None:
            self.shared_dim = c["shared_expert_intermediate_size"]
        else:
            self.shared_dim = self.expert_dim * get("n_shared_experts", default=0)
        self.norm_topk = bool(get("norm_topk_prob", default=False))
        self.expert_bias = bool(get("router_enable_expert_bias", default=False))
        self.scaling = float(get("routed_scaling_factor", default=1.0))
        if c.get("mlp_only_layers") is not None:
            dense = set(c["mlp_only_layers"])
        else:
            dense = set(range(get("first_k_dense_replace", default=0)))
        self.dense = [i in dense for i in range(self.n_layers)]
        self.head_dim = self.rope_dim + self.nope_dim


# ---- the model ------------------------------------------------------------------------------------------------------

def rms(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def swiglu_mlp(u, wg, wu, wd):
    return (silu(u @ wg.T) * (u @ wu.T)) @ wd.T


def rotate(x, positions, rot, theta, interleaved):
    """x [T, H, D]: rotates dims [0, rot) of every head (pair i has angle pos * theta^(-2i/rot))."""
    inv = theta ** (-np.arange(0, rot, 2, dtype=np.float64) / rot)
    ang = positions.astype(np.float64)[:, None] * inv[None, :]
    cos = np.cos(ang)[:, None, :]
    sin = np.sin(ang)[:, None, :]
    y = x.copy()
    if interleaved:
        a, b = x[..., 0:rot:2], x[..., 1:rot:2]
        y[..., 0:rot:2] = a * cos - b * sin
        y[..., 1:rot:2] = b * cos + a * sin
    else:
        h = rot // 2
        a, b = x[..., :h], x[..., h:rot]
        y[..., :h] = a * cos - b * sin
        y[..., h:rot] = b * cos + a * sin
    return y


class Golden:
    def __init__(self, model_dir):
        self.c = c = Config(model_dir)
        st = SafeTensors(model_dir)
        H, D, Dv = c.hidden, c.head_dim, c.v_dim
        self.embed = st.get("model.embed_tokens.weight", (c.vocab, H))
        self.norm = st.get("model.norm.weight", (H,))
        self.lm_head = self.embed if c.tied else st.get("lm_head.weight", (c.vocab, H))
        self.layers = []
        for i in range(c.n_layers):
            p = "model.layers.%d." % i
            L = {
                "in": st.get(p + "input_layernorm.weight", (H,)),
                "post_attn": st.get(p + "post_attention_layernorm.weight", (H,)),
                "qkv": st.get(p + "self_attn.qkv_proj.weight",
                              (c.n_heads * D + c.n_kv * D + c.n_kv * Dv, H)),
                "o": st.get(p + "self_attn.o_proj.weight", (H, c.n_heads * Dv)),
                "knorm": st.get(p + "self_attn.k_layernorm.weight", (D,)),
            }
            if c.sandwich:
                L["pre_mlp"] = st.get(p + "pre_mlp_layernorm.weight", (H,))
                L["post_mlp"] = st.get(p + "post_mlp_layernorm.weight", (H,))
            if c.n_sinks > 0:
                sk = st.get(p + "self_attn.param_sink_key", (c.n_sinks, c.n_kv, D))
                L["sink_k"] = rms(sk, L["knorm"], c.eps)  # K-normed, never rotated
                if c.sink_with_value:
                    L["sink_v"] = st.get(p + "self_attn.param_sink_value", (c.n_sinks, c.n_kv, Dv))
                else:
                    L["sink_v"] = np.zeros((c.n_sinks, c.n_kv, Dv))
            if c.dense[i]:
                I = c.intermediate
                L["gate"] = st.get(p + "mlp.gate_proj.weight", (I, H))
                L["up"] = st.get(p + "mlp.up_proj.weight", (I, H))
                L["down"] = st.get(p + "mlp.down_proj.weight", (H, I))
            else:
                E, I, S = c.n_experts, c.expert_dim, c.shared_dim
                L["router"] = st.get(p + "mlp.gate.weight", (E, H))
                if c.expert_bias:
                    for nm in ("mlp.e_score_correction_bias", "mlp.gate.e_score_correction_bias"):
                        if st.has(p + nm):
                            L["bias"] = st.get(p + nm, (E,))
                            break
                    else:
                        raise KeyError("tensor %smlp.e_score_correction_bias is missing" % p)
                else:
                    L["bias"] = np.zeros(E)
                L["experts"] = [(st.get(p + "mlp.experts.%d.gate_proj.weight" % e, (I, H)),
                                 st.get(p + "mlp.experts.%d.up_proj.weight" % e, (I, H)),
                                 st.get(p + "mlp.experts.%d.down_proj.weight" % e, (H, I))) for e in range(E)]
                if S > 0:
                    L["shared"] = (st.get(p + "mlp.shared_experts.gate_proj.weight", (S, H)),
                                   st.get(p + "mlp.shared_experts.up_proj.weight", (S, H)),
                                   st.get(p + "mlp.shared_experts.down_proj.weight", (H, S)))
            self.layers.append(L)

    def attention(self, L, x):
        c = self.c
        T, D, Dv, Hq, Hk = x.shape[0], c.head_dim, c.v_dim, c.n_heads, c.n_kv
        qkv = x @ L["qkv"].T
        q = qkv[:, :Hq * D].reshape(T, Hq, D)
        k = qkv[:, Hq * D:(Hq + Hk) * D].reshape(T, Hk, D)
        v = qkv[:, (Hq + Hk) * D:].reshape(T, Hk, Dv)
        pos = np.arange(T)
        k = rms(k, L["knorm"], c.eps)  # K-norm over the whole head, before RoPE
        q = rotate(q, pos, c.rope_dim, c.theta, c.interleaved)
        k = rotate(k, pos, c.rope_dim, c.theta, c.interleaved)
        scale = 1.0 / np.sqrt(D)
        visible = pos[None, :] <= pos[:, None]  # [query, key]
        if c.window > 0:
            visible &= pos[None, :] > pos[:, None] - c.window
        out = np.zeros((T, Hq, Dv))
        group = Hq // Hk
        for h in range(Hq):
            g = h // group
            s_tok = (q[:, h] @ k[:, g].T) * scale
            s_tok = np.where(visible, s_tok, -np.inf)
            if c.n_sinks > 0:
                s_sink = (q[:, h] @ L["sink_k"][:, g].T) * scale
                s = np.concatenate([s_sink, s_tok], axis=1)
                vals = np.concatenate([L["sink_v"][:, g], v[:, g]], axis=0)
            else:
                s, vals = s_tok, v[:, g]
            s = s - s.max(axis=1, keepdims=True)
            p = np.exp(s)
            p /= p.sum(axis=1, keepdims=True)
            out[:, h] = p @ vals
        return out.reshape(T, Hq * Dv) @ L["o"].T

    def moe(self, L, u):
        c = self.c
        logits = u @ L["router"].T
        score = 1.0 / (1.0 + np.exp(-logits))
        select = score + L["bias"][None, :]
        y = np.zeros_like(u)
        for t in range(u.shape[0]):
            order = np.argsort(-select[t], kind="stable")[:c.top_k]  # ties: lower expert index first
            w = score[t, order]
            if c.norm_topk and w.sum() > 0:
                w = w / w.sum()
            w = w * c.scaling
            for j, e in enumerate(order):
                wg, wu, wd = L["experts"][e]
                y[t] += w[j] * swiglu_mlp(u[t:t + 1], wg, wu, wd)[0]
        if "shared" in L:
            y += swiglu_mlp(u, *L["shared"])  # always on, not scaled
        return y

    def logits(self, tokens):
        """Logits of every position of the token sequence (full recompute)."""
        c = self.c
        x = self.embed[np.asarray(tokens)]
        for i, L in enumerate(self.layers):
            a = self.attention(L, rms(x, L["in"], c.eps))
            if c.sandwich:
                x = x + rms(a, L["post_attn"], c.eps)
                u = rms(x, L["pre_mlp"], c.eps)
            else:
                x = x + a
                u = rms(x, L["post_attn"], c.eps)
            if c.dense[i]:
                m = swiglu_mlp(u, L["gate"], L["up"], L["down"])
            else:
                m = self.moe(L, u)
            x = x + (rms(m, L["post_mlp"], c.eps) if c.sandwich else m)
        return rms(x, self.norm, c.eps) @ self.lm_head.T

    def generate(self, prompt, max_new):
        """Greedy decoding: returns (generated tokens, [max_new, vocab] logits rows in the dump layout)."""
        seq = list(prompt)
        rows, out = [], []
        for _ in range(max_new):
            row = self.logits(seq)[-1]
            rows.append(row)
            tok = int(np.argmax(row))  # first maximum: lowest id on ties
            out.append(tok)
            seq.append(tok)
        return out, np.array(rows)


# ---- command line ---------------------------------------------------------------------------------------------

def parse_ids(s):
    return [int(v) for v in s.replace(" ", "").split(",") if v != ""]


def compare(label, rows, toks, logits_path, tokens_str, tol, V):
    """One moekit run against the golden rows/tokens; prints per-step errors, returns (ok, worst, messages)."""
    n = rows.shape[0]
    got = np.fromfile(logits_path, dtype="<f4").astype(np.float64)
    msgs, errs = [], []
    if got.size != rows.size:
        msgs.append("%s: logits file has %d values, expected %d (%d rows x vocab %d)" % (
            label, got.size, rows.size, n, V))
    else:
        got = got.reshape(n, V)
        for i in range(n):
            denom = np.max(np.abs(rows[i]))
            err = float(np.max(np.abs(got[i] - rows[i])) / denom) if denom > 0 else float(np.max(np.abs(got[i])))
            if not np.isfinite(err):
                err = float("inf")
            errs.append(err)
            step = "prefill" if i == 0 else "decode %d" % i
            print("  %-8s %-9s max|a-b|/max|b| = %.3e   token moekit %d golden %d" % (
                label, step, err, int(np.argmax(got[i])), int(np.argmax(rows[i]))))
            if not err <= tol:
                msgs.append("%s %s: relative error %.3e > %.1e" % (label, step, err, tol))
    theirs = parse_ids(tokens_str)
    if theirs != toks:
        msgs.append("%s: tokens %s, golden %s" % (label, theirs, toks))
    return not msgs, (max(errs) if errs else float("inf")), msgs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["run", "compare"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--max-new", type=int, required=True)
    ap.add_argument("--dump", help="run: write the golden logits in the --dump-logits format")
    ap.add_argument("--case", action="append", default=[], metavar="LABEL:LOGITS_FILE:TOKENS",
                    help="compare: one moekit run (its label, --dump-logits file and generated ids); repeatable")
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()
    if a.max_new < 1:
        ap.error("--max-new must be >= 1")

    g = Golden(a.model)
    prompt = parse_ids(a.prompt)
    toks, rows = g.generate(prompt, a.max_new)
    if a.mode == "run":
        print("generated: " + ",".join(str(t) for t in toks))
        if a.dump:
            rows.astype("<f4").tofile(a.dump)
        return 0

    if not a.case:
        ap.error("compare needs at least one --case")
    print("golden: prompt %s, %d steps (prefill + %d decode), tokens %s" % (
        ",".join(map(str, prompt)), a.max_new, a.max_new - 1, ",".join(map(str, toks))))
    all_ok, worst, msgs = True, 0.0, []
    for case in a.case:
        parts = case.split(":")
        if len(parts) != 3:
            ap.error("--case %s is not LABEL:LOGITS_FILE:TOKENS" % case)
        ok, w, m = compare(parts[0], rows, toks, parts[1], parts[2], a.tol, g.c.vocab)
        all_ok &= ok
        worst = max(worst, w)
        msgs += m
    if all_ok:
        print("PASS golden: %d run(s) x %d steps, max relative logit error %.3e <= %.1e, tokens %s" % (
            len(a.case), a.max_new, worst, a.tol, ",".join(map(str, toks))))
        return 0
    print("FAIL golden: " + "; ".join(msgs))
    return 1


if __name__ == "__main__":
    sys.exit(main())
