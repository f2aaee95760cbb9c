#!/usr/bin/python3
"""One CAN training step in PyTorch against opforge's (bench/learner_bench).

Reads what `learner_bench MODEL IMAGE --out DIR` wrote (the network input,
the target and opforge's gradients), computes the same MSE loss and every
gradient with PyTorch's autograd from the same model file, prints the largest
relative difference per parameter (|g_opforge - g_torch|_max / |g_torch|_max),
and times one training step (forward, loss, backward, Adam) in PyTorch.

    /usr/bin/python3 bench/can_train_parity.py MODEL DIR [--threads 2] [--repeat 3]

PyTorch is a measurement peer only: nothing in opforge imports it.
"""
import argparse
import json
import os
import struct
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from can_torch import Can, load_safetensors  # noqa: E402


def torch_name(name):
    """opforge's parameter name -> the key of Can.w and how to lay its gradient out as the file does."""
    layer, _, rest = name.partition("/")
    if rest == "weights":
        return layer, lambda g: g.permute(2, 3, 1, 0)  # OIHW -> HWIO
    if rest == "biases":
        return layer + "/b", lambda g: g
    if rest == "BatchNorm/beta":
        return layer + "/beta", lambda g: g.reshape(-1)
    return layer + "/" + rest, lambda g: g.reshape(())  # w0, w1


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("dir")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    meta, tensors = load_safetensors(a.model)
    net = Can(meta, tensors)
    params = [v for v in net.w.values() if isinstance(v, torch.Tensor)]
    for v in params:
        v.requires_grad_(True)
    x = torch.from_numpy(np.load(os.path.join(a.dir, "input.npy"))).permute(2, 0, 1).unsqueeze(0).contiguous()
    t = torch.from_numpy(np.load(os.path.join(a.dir, "target.npy"))).permute(2, 0, 1).unsqueeze(0).contiguous()
    gmeta, grads = load_safetensors(os.path.join(a.dir, "grads.safetensors"))

    loss = ((net(x) - t) ** 2).mean()
    loss.backward()
    ours_loss = float(gmeta["loss"])
    print(f"loss: opforge {ours_loss:.9g}, torch {loss.item():.9g}, relative difference "
          f"{abs(ours_loss - loss.item()) / abs(loss.item()):.2g}")
    worst = 0.0
    for name, g in sorted(grads.items()):
        key, layout = torch_name(name)
        ref = layout(net.w[key].grad).detach().numpy()
        rel = float(np.abs(g - ref).max() / max(np.abs(ref).max(), 1e-30))
        worst = max(worst, rel)
        print(f"  {name:28s} max |diff| / max |grad| = {rel:.2g}")
    print(f"worst relative gradient difference: {worst:.2g} ({'within' if worst <= 1e-4 else 'ABOVE'} 1e-4)")

    opt = torch.optim.Adam(params, lr=1e-4)
    best = float("inf")
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        opt.zero_grad()
        l = ((net(x) - t) ** 2).mean()
        l.backward()
        opt.step()
        best = min(best, time.perf_counter() - t0)
    print(f"torch training step ({x.shape[2]}x{x.shape[3]}, {a.threads} threads): {best:.3f} s")
    print(f"torch_step_seconds {best:.4f}")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
