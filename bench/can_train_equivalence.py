#!/usr/bin/python3
"""Replays an `opforge train --log` run of CAN24 in PyTorch: the same
identity initialisation, the same pairs, crops and flips in the same order
(from the log), the same MSE loss and Adam settings (learning rate per step
from the log), then the same validation PSNR on the held-out pairs. Prints
both loss curves and both final validation PSNRs (goal: within 0.2 dB).

    /usr/bin/python3 bench/can_train_equivalence.py DATASET LOG MODEL [--threads 2]
        DATASET  a datagen dataset written with `output: format: npy`
        LOG      the --log of the opforge run
        MODEL    the model opforge wrote (its layer list shapes the network)

PyTorch is a measurement peer only: nothing in opforge imports it.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from can_torch import Can, load_safetensors  # noqa: E402


def identity_tensors(layers):
    """opforge's identity_initialised: centre tap 1 from channel i to i, w0 = 1, w1 = 0, beta = 0, bias 0."""
    t = {}
    for l in layers:
        kh, kw = l["kernel"]
        w = np.zeros((kh, kw, l["cin"], l["cout"]), dtype=np.float32)
        for i in range(min(l["cin"], l["cout"])):
            w[kh // 2, kw // 2, i, i] = 1
        t[l["name"] + "/weights"] = w
        if l.get("bias"):
            t[l["name"] + "/biases"] = np.zeros(l["cout"], dtype=np.float32)
        if l.get("normalizer") == "adaptive_bn":
            t[l["name"] + "/w0"] = np.array(1, dtype=np.float32)
            t[l["name"] + "/w1"] = np.array(0, dtype=np.float32)
            t[l["name"] + "/BatchNorm/beta"] = np.zeros(l["cout"], dtype=np.float32)
    return t


def to_batch(rgb):
    bgr = np.ascontiguousarray(rgb[..., ::-1])  # the published CAN files take BGR
    return torch.from_numpy(bgr).permute(2, 0, 1).unsqueeze(0).contiguous()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dataset")
    p.add_argument("log")
    p.add_argument("model")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    rows = {}
    for line in open(os.path.join(a.dataset, "metadata.jsonl")):
        r = json.loads(line)
        rows[r["key"]] = r
    log = [json.loads(line) for line in open(a.log)]
    split, steps = log[0], [e for e in log if "key" in e]
    final = [e for e in log if e.get("final")][-1]
    meta, _ = load_safetensors(a.model)
    layers = json.loads(meta["layers"])
    net = Can({"layers": meta["layers"], "bn_epsilon": meta.get("bn_epsilon", "0.001")}, identity_tensors(layers))
    params = [v for v in net.w.values() if isinstance(v, torch.Tensor)]
    for v in params:
        v.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=steps[0]["learning_rate"], betas=(0.9, 0.999), eps=1e-8)
    cache = {}

    def pair(key):
        if key not in cache:
            r = rows[key]
            cache[key] = (np.load(os.path.join(a.dataset, r["input_file_name"])),
                          np.load(os.path.join(a.dataset, r["output_file_name"])))
        return cache[key]

    print(f"{'step':>6} {'opforge loss':>14} {'torch loss':>14}")
    for e in steps:
        x, t = pair(e["key"])
        cx, cy, cw, ch = e["crop"]
        x, t = x[cy:cy + ch, cx:cx + cw], t[cy:cy + ch, cx:cx + cw]
        if e["flip"]:
            x, t = x[:, ::-1], t[:, ::-1]
        for g in opt.param_groups:
            g["lr"] = e["learning_rate"]
        opt.zero_grad()
        loss = ((net(to_batch(x)) - to_batch(t)) ** 2).mean()
        loss.backward()
        opt.step()
        if e["step"] == 1 or e["step"] % 25 == 0 or e["step"] == len(steps):
            print(f"{e['step']:>6} {e['loss']:>14.6g} {loss.item():>14.6g}")

    with torch.no_grad():
        psnrs = []
        for key in split["validation"]:
            x, t = pair(key)
            out = net(to_batch(x)).clamp(0, 1)
            mse = float(((out - to_batch(t)) ** 2).mean())
            psnrs.append(min(100.0, 10 * math.log10(1 / mse)))
    theirs = sum(psnrs) / len(psnrs)
    ours = final["validation_psnr_db"]
    print(f"validation PSNR after {len(steps)} steps: opforge {ours:.3f} dB, torch {theirs:.3f} dB, "
          f"difference {abs(ours - theirs):.3f} dB ({'within' if abs(ours - theirs) <= 0.2 else 'ABOVE'} 0.2 dB); "
          f"identity {final['identity_psnr_db']:.3f} dB")
    return 0 if abs(ours - theirs) <= 0.2 else 1


if __name__ == "__main__":
    sys.exit(main())
