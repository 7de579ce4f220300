# dvsft images.
#   CPU (the default, last stage): docker build -t dvsft .        docker run -p 8000:8000 dvsft
#   GPU:                           docker build --target gpu -t dvsft:gpu .
#                                  docker run --gpus all -p 8000:8000 dvsft:gpu
# Everything is installed at build time; nothing is downloaded when a container runs.
# No API key (DVSFT_API_KEYS) → the API is open to whoever reaches the port: set one.

# ---------- base: the app and its npm dependencies ----------
FROM denoland/deno:debian-2.9.6 AS base
WORKDIR /app
COPY deno.json deno.lock ./
COPY main.ts ./
COPY functions/ functions/
COPY lib/ lib/
COPY configs/ configs/
# resolve and cache every npm dependency (node_modules/) at build time
RUN deno install --entrypoint main.ts functions/label/main.ts functions/label/cli.ts \
      functions/train/main.ts functions/train/cli.ts functions/eval/main.ts functions/eval/cli.ts \
      functions/data/cli.ts lib/jobs/train_worker.ts lib/jobs/eval_worker.ts

# ---------- GPU: CUDA 11.2 + cuDNN 8 for @tensorflow/tfjs-node-gpu, Vulkan for webgpu ----------
FROM nvidia/cuda:11.2.2-cudnn8-runtime-ubuntu20.04 AS gpu
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates curl tesseract-ocr poppler-utils libopenblas0-pthread libvulkan1 \
      build-essential python3 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=denoland/deno:bin-2.9.6 /deno /usr/local/bin/deno
WORKDIR /app
COPY --from=base /app /app
# tfjs-node-gpu's install script downloads libtensorflow (GPU build): allowed here, at build time
RUN deno cache --allow-scripts=npm:@tensorflow/tfjs-node-gpu npm:@tensorflow/tfjs-node-gpu@4.22.0 \
 && useradd -m dvsft && mkdir -p /data && chown -R dvsft /app /data
USER dvsft
# The NVIDIA container runtime mounts the driver: compute for CUDA, graphics for the Vulkan ICD
ENV NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics \
    HOST=0.0.0.0 PORT=8000 DVSFT_DATA_DIR=/data DENO_NO_UPDATE_CHECK=1 XDG_RUNTIME_DIR=/tmp
VOLUME /data
EXPOSE 8000
# (no --start-period: the npm linter misreads it; 3 retries × 30 s cover the start)
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
CMD ["deno", "run", "--allow-all", "--unstable-webgpu", "main.ts", "serve"]

# ---------- CPU (default): every function; training on wasm with OpenBLAS ----------
FROM denoland/deno:debian-2.9.6 AS cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      tesseract-ocr tesseract-ocr-eng poppler-utils libopenblas0-pthread curl \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=base /app /app
RUN mkdir -p /data && chown -R deno:deno /app /data
USER deno
ENV HOST=0.0.0.0 PORT=8000 DVSFT_DATA_DIR=/data DENO_NO_UPDATE_CHECK=1
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
CMD ["deno", "run", "--allow-all", "--cached-only", "main.ts", "serve"]
