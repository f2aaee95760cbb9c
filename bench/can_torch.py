#!/usr/bin/python3
"""PyTorch's forward of a CAN model file, the peer of bench/can_bench (CPU)
and of bench/vk_forward_bench (a GPU, --device cuda).

Builds the network from the safetensors file itself (its `layers` metadata
and HWIO weights; no safetensors package needed), runs it on a network input
written by `can_bench speed --write-input` (H x W x C float32 .npy in the
model's channel order), and prints one JSON line: the best time of --repeat
runs after one warm-up, and where the output was written.

    /usr/bin/python3 bench/can_torch.py MODEL INPUT.npy [--threads 2] [--repeat 3]
                                        [--no-mkldnn] [--channels-last] [--write-output OUT.npy]
                                        [--device cuda] [--precision fp32|tf32|fp16]
                                        [--include-transfers] [--compare REF.npy]

--no-mkldnn turns off PyTorch's oneDNN convolutions, so the dilated
convolutions run as im2col + GEMM (OpenBLAS on Debian) instead.
On a GPU (--device cuda, cuDNN autotuned) the times are per frame with the
device synchronised, the median and the fastest of --repeat; fp32 is strict
(TF32 off), tf32 PyTorch's default for convolutions, fp16 the weights and
activations in half precision (the normalisation statistics too).
--include-transfers counts copying the frame to the GPU and the output back,
as opforge's Vulkan per-frame time does. --compare prints the max-abs
difference from a reference output (vk_forward_bench --write-output).
PyTorch is a measurement peer only: nothing in opforge imports it.
"""
import argparse
import json
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F


def load_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    tensors = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            continue
        b, e = info["data_offsets"]
        tensors[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(info["shape"])
    return meta, tensors


class Can(torch.nn.Module):
    """The forward semantics of the model README: conv (SAME, dilated, no
    bias), BN with the image's own statistics (biased variance, no gamma),
    z = w0*y + w1*bn, leaky ReLU; the last 1x1 conv with bias."""

    def __init__(self, meta, tensors):
        super().__init__()
        self.layers = json.loads(meta["layers"])
        self.eps = float(meta.get("bn_epsilon", "0.001"))
        self.w = {}
        for l in self.layers:
            name = l["name"]
            hwio = tensors[name + "/weights"]
            self.w[name] = torch.from_numpy(np.ascontiguousarray(hwio.transpose(3, 2, 0, 1)))  # OIHW
            if l.get("bias"):
                self.w[name + "/b"] = torch.from_numpy(tensors[name + "/biases"].copy())
            if l.get("normalizer") == "adaptive_bn":
                self.w[name + "/w0"] = torch.tensor(float(tensors[name + "/w0"].reshape(())))
                self.w[name + "/w1"] = torch.tensor(float(tensors[name + "/w1"].reshape(())))
                self.w[name + "/beta"] = torch.from_numpy(tensors[name + "/BatchNorm/beta"].copy()).view(1, -1, 1, 1)

    def forward(self, x):
        for l in self.layers:
            name, d = l["name"], l.get("dilation", 1)
            k = l["kernel"][0]
            y = F.conv2d(x, self.w[name], self.w.get(name + "/b"), padding=d * (k // 2), dilation=d)
            if l.get("normalizer") == "adaptive_bn":
                mean = y.mean(dim=(0, 2, 3), keepdim=True)
                var = ((y - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
                bn = (y - mean) * torch.rsqrt(var + self.eps) + self.w[name + "/beta"]
                y = self.w[name + "/w0"] * y + self.w[name + "/w1"] * bn
            act = l.get("activation")
            if act and act.startswith("lrelu_"):
                y = F.leaky_relu(y, float(act[6:]))
            elif act == "relu":
                y = F.relu(y)
            x = y
        return x


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("input")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-mkldnn", action="store_true")
    p.add_argument("--channels-last", action="store_true", help="NHWC activations (oneDNN's preferred layout)")
    p.add_argument("--write-output")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=["fp32", "tf32", "fp16"], default="fp32")
    p.add_argument("--include-transfers", action="store_true")
    p.add_argument("--compare")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    meta, tensors = load_safetensors(a.model)
    net = Can(meta, tensors)
    x = torch.from_numpy(np.load(a.input)).permute(2, 0, 1).unsqueeze(0).contiguous()
    if a.device != "cpu":
        return on_gpu(a, net, x)
    if a.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        for k, v in net.w.items():
            if isinstance(v, torch.Tensor) and v.dim() == 4 and k.count("/") == 0:
                net.w[k] = v.contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=not a.no_mkldnn):
        out = net(x)  # warm-up
        best = float("inf")
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            out = net(x)
            best = min(best, time.perf_counter() - t0)
    if a.write_output:
        np.save(a.write_output, out[0].permute(1, 2, 0).contiguous().numpy())
    print(json.dumps({"seconds": best, "threads": a.threads, "mkldnn": not a.no_mkldnn, "channels_last": a.channels_last,
                      "torch": torch.__version__, "output": a.write_output}))


def on_gpu(a, net, x_host):
    dev = torch.device(a.device)
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = a.precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    dtype = torch.float16 if a.precision == "fp16" else torch.float32
    for k, v in net.w.items():
        net.w[k] = v.to(dev, dtype)
    if a.channels_last:
        for k, v in net.w.items():
            if v.dim() == 4:
                net.w[k] = v.contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if a.channels_last else torch.contiguous_format
    x_dev = x_host.to(dev, dtype).contiguous(memory_format=fmt)

    def frame():
        x = x_host.to(dev, dtype, non_blocking=False).contiguous(memory_format=fmt) if a.include_transfers else x_dev
        y = net(x)
        return y.float().cpu() if a.include_transfers else y

    times = []
    with torch.no_grad():
        for _ in range(3):  # warm-up: cuDNN's algorithm search
            out = frame()
        torch.cuda.synchronize()
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            out = frame()
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    times.sort()
    result = out[0].float().permute(1, 2, 0).contiguous().cpu().numpy()
    if a.write_output:
        np.save(a.write_output, result)
    report = {"device": torch.cuda.get_device_name(dev), "precision": a.precision, "channels_last": a.channels_last,
              "include_transfers": a.include_transfers, "median_ms": 1e3 * times[len(times) // 2],
              "fastest_ms": 1e3 * times[0], "repeat": a.repeat, "torch": torch.__version__}
    if a.compare:
        ref = np.load(a.compare)
        report["max_abs_vs_reference"] = float(np.abs(result - ref).max())
        a8 = np.clip(np.rint(result * 255), 0, 255)
        b8 = np.clip(np.rint(ref * 255), 0, 255)
        report["equal_8bit_percent"] = float(100.0 * (a8 == b8).mean())
        report["worst_8bit_levels"] = int(np.abs(a8 - b8).max())
    print(json.dumps(report))


if __name__ == "__main__":
    main()
