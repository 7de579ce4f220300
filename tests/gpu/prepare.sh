#!/usr/bin/env bash
# Build the GPU-check kit in .gpu/ (ignored): the bundled check, the deno binary, the
# PyTorch peer script, and the Vulkan loader debs. The GPU machine reaches no registry.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .gpu
npx -y deno@2.9.6 bundle --platform=deno -o .gpu/check.js tests/gpu/check.ts
cp tests/bench/torch_step.py tests/gpu/run.sh .gpu/
deno_bin=$(npx -y deno@2.9.6 eval 'console.log(Deno.execPath())')
xz -T2 -c "$deno_bin" > .gpu/deno.xz
if [ ! -d .gl ]; then
  mkdir -p .gl /tmp/amd64/partial
  o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  apt-get $o update -qq
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh .gpu .gl
