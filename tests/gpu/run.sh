#!/usr/bin/env bash
# Runs on the GPU machine from the repo root: unpack, check webgpu, time PyTorch on the same shapes.
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
[ -f "$VK_DRIVER_FILES" ] || unset VK_DRIVER_FILES
xz -dc .gpu/deno.xz > /tmp/deno && chmod +x /tmp/deno
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
out=${OUT:-/tmp}
export XDG_RUNTIME_DIR=/tmp/xdg; mkdir -p -m 700 "$XDG_RUNTIME_DIR"
timeout 300 /tmp/deno run -A --unstable-webgpu .gpu/check.js > "$out/webgpu.json" 2> "$out/webgpu.log"
echo "webgpu check exit $?"; cat "$out/webgpu.log" | tail -20
cfg=$(python3 -c "import json;print(json.dumps(json.load(open('$out/webgpu.json'))['smallConfig']))" 2>/dev/null \
  || echo '{"imageSize":224,"patchSize":14,"merge":2,"visionDim":96,"visionLayers":2,"visionHeads":4,"dim":128,"layers":4,"heads":4,"vocabSize":530,"maxTextLen":30,"mlpRatio":4}')
for B in 16 64; do
  python3 .gpu/torch_step.py --config "$cfg" --batch $B --steps 20 --device cuda | tee -a "$out/torch.jsonl"
done
python3 .gpu/torch_step.py --config "$cfg" --batch 16 --steps 5 --device cpu --threads 2 | tee -a "$out/torch.jsonl"
