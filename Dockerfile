# dvsft API image (CPU). Build: docker build -t dvsft .   Run: docker run -p 8000:8000 dvsft
# Everything is installed at build time; nothing is downloaded when the container runs.
FROM denoland/deno:debian-2.9.6 AS cpu

RUN apt-get update \
 && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng poppler-utils curl \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY deno.json deno.lock ./
COPY main.ts ./
COPY functions/ functions/
COPY lib/ lib/
# resolve and cache every npm dependency (node_modules/) and type-check at build time
RUN deno install --entrypoint main.ts functions/label/main.ts functions/label/cli.ts \
 && chown -R deno:deno /app

USER deno
ENV HOST=0.0.0.0 PORT=8000 DENO_NO_UPDATE_CHECK=1
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
CMD ["deno", "run", "--allow-all", "--cached-only", "main.ts", "serve"]
