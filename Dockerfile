# syntax=docker/dockerfile:1
# One image for the API (`python -m backend`) and the GPU worker (`python -m backend.jobs.worker`).
# The base image carries torch 2.14.1 built for CUDA 13.0 with cuDNN 9: the torch and
# torchvision pins of requirements.txt are already satisfied, so pip keeps them.
FROM pytorch/pytorch:2.14.1-cuda13.0-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MODEL_DIR=/data/models \
    TORCH_HOME=/data/torch \
    PORT=9090

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt or constraints.txt
# changes. constraints.txt pins every package, so an image built later gets the same versions.
COPY requirements.txt constraints.txt ./
RUN pip install -r requirements.txt -c constraints.txt

# Code last, package by package (model/ changes less often than backend/).
COPY model/ model/
COPY backend/ backend/

RUN useradd --create-home --uid 10001 alfamix \
    && mkdir -p /data/models /data/torch \
    && chown -R alfamix:alfamix /data
USER alfamix

# Embeddings, head checkpoints and history; downloaded encoder weights.
VOLUME ["/data/models", "/data/torch"]
EXPOSE 9090

HEALTHCHECK --interval=30s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '9090') + '/health', timeout=2)"]

CMD ["python", "-m", "backend"]
