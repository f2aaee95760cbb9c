#!/usr/bin/env bash
# The Vulkan runtime on a GPU machine, as one prepared run: the bundle from
# bench/vk_gpu_bundle.sh (run on a Debian 12 machine with opforge built), on
# a machine that has a Vulkan driver but not opforge's libraries.
#
#  1. CAN24 (the published L0 file) on a 1920x1080 frame: the per-frame
#     time of 30 runs after the first, fp32 and fp16 storage, the conv
#     shader's variants (4/2/1 pixels per invocation, 4/1 input channels per
#     load); each run checked against the CPU forward;
#     and each layer's time on the device's clock (timestamps);
#  2. PyTorch on the same GPU, same input and weights (bench/can_torch.py):
#     strict fp32, TF32 and fp16, with and without the frame's transfers;
#  3. every published model on the GPU against the CPU forward;
#  4. CAN32 at 3840x2160 with the device budget forced to a quarter of one
#     pass: runs in parts and equals the CPU result.
#
#   bash bench/vk_gpu_run.sh BUNDLE.tar.xz RESULTS_DIR
# Writes RESULTS_DIR/log.txt. Each step runs even when an earlier one failed.
# SMOKE=1 runs every step on tiny frames with few repeats (lavapipe: a
# check of this script, not a measurement).
set -uo pipefail
cd "$(dirname "$0")/.."
bundle=$1
results=${2:-vk_gpu_results}
mkdir -p "$results"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -C "$work" -xJf "$bundle"
b=$work/vk_gpu
# The bundle's libraries first, then the driver's own folders (where NVIDIA's
# container images mount them) for the driver the loader opens.
export LD_LIBRARY_PATH=$b/lib:/usr/local/nvidia/lib64:/usr/local/nvidia/lib OPFORGE_VULKAN_LOADER=$b/lib/libvulkan.so.1
# The driver's manifest, where NVIDIA's container images put it, unless set.
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
  for f in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
           /etc/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.x86_64.json; do
    if [ -e "$f" ]; then
      export VK_DRIVER_FILES=$f VK_ICD_FILENAMES=$f
      break
    fi
  done
fi
model=tests/data/models/L0_smoothing.safetensors
frame=$b/data/1080p.png
repeat=30
size=()
size4k=(--resize 3840x2160)
if [ "${SMOKE:-0}" = 1 ]; then
  repeat=2
  size=(--resize 96x54)
  size4k=(--resize 1280x720)
fi
vkbench() { timeout 300 "$b/bin/vk_forward_bench" "$@"; }
torch_peer() { timeout 300 python3 bench/can_torch.py "$model" "$work/in.npy" --device cuda --repeat "$repeat" --compare "$work/cpu.npy" "$@"; }

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv 2>&1
  echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"

  echo "== 1. CAN24, 1920x1080, Vulkan"
  vkbench "$model" "$frame" 1 "${size[@]}" --repeat "$repeat" --write-input "$work/in.npy" --write-output "$work/cpu.npy"
  for variant in "--pixels 2" "--pixels 1" "--channels-per-load 1" "--channels-per-load 1 --pixels 1"; do
    echo "-- fp32, conv variant: $variant"
    vkbench "$model" "$frame" 1 "${size[@]}" --repeat "$repeat" $variant
  done
  for variant in "" "--channels-per-load 1" "--pixels 1"; do
    echo "-- fp16 storage, conv variant: ${variant:-the default}"
    vkbench "$model" "$frame" 1 "${size[@]}" --repeat "$repeat" --fp16 $variant
  done

  for storage in "" --fp16; do
    echo "-- where the time goes ${storage:-fp32}: each layer on the device's clock"
    vkbench "$model" "$frame" 1 "${size[@]}" --repeat 10 --profile $storage | grep -vE "^device [0-9]"
  done

  echo "== 2. CAN24, 1920x1080, PyTorch on the same GPU"
  for precision in fp32 tf32 fp16; do
    torch_peer --precision "$precision"
    torch_peer --precision "$precision" --include-transfers
    torch_peer --precision "$precision" --channels-last
  done

  echo "== 3. every published model on the GPU against the CPU forward (1920x1080)"
  for m in tests/data/models/*.safetensors; do
    name=$(basename "$m" .safetensors)
    planes=()
    case "$name" in
      parameterized_L0_smoothing) planes=(0.5) ;;
      combined) continue ;;  # its operator planes are a one-hot: covered by the lavapipe tests
    esac
    echo "-- $name"
    vkbench "$m" "$frame" 1 "${size[@]}" --repeat 3 "${planes[@]}" | grep -E "per frame|max-abs|PASS|FAIL"
  done

  echo "== 4. parameterized CAN32 at 3840x2160, a quarter of one pass's memory"
  vkbench tests/data/models/parameterized_L0_smoothing.safetensors "$frame" 0.25 "${size4k[@]}" 0.5
  date -u
} 2>&1 | tee "$results/log.txt"
