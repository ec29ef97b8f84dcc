# Healer: MedGemma 4B behind FastAPI. Layers, slowest-changing first, so that a code change
# rebuilds one thin layer: OS + Python deps, then the weights (~8.6 GB), then the code.
#
#   docker build --secret id=hf_token,src=token.txt -t healer .      (DOCKER_BUILDKIT=1)
#
# The Hugging Face token only ever reaches the build through a secret mount: never ARG/ENV, so it
# is in no layer and not in `docker history`. Build args (none is secret):
#   MODEL_ID, MODEL_REVISION   what download.py fetches (pin MODEL_REVISION to a commit)
#   MODEL_DIR                  where the weights go in the image (default /app/model)
#   TORCH_VARIANT              cpu (default) or a CUDA build such as cu128
#   TORCH_INDEX_URL            where that torch build comes from (PyTorch's index by default;
#                              any PEP 503 index, e.g. a local mirror, for offline builds)
#   HF_ENDPOINT                another Hub or a mirror (download.py honours it)
#   NODE_IMAGE                 the image that builds frontend/ (when frontend/ exists)

ARG NODE_IMAGE=node:20-slim

# --- The web page: built when frontend/ is in the context, an empty /out otherwise. -----------
FROM ${NODE_IMAGE} AS frontend
WORKDIR /src
# The wildcard matches nothing when there is no frontend/, and BuildKit then copies nothing.
COPY frontend* ./
RUN mkdir -p /out \
    && if [ -f package.json ]; then npm ci --no-audit --no-fund && npm run build && cp -r dist /out/dist; fi

# --- The service. ------------------------------------------------------------------------------
FROM python:3.11-slim

# Logs reach Cloud Logging at once instead of sitting in a buffer.
ENV PYTHONUNBUFFERED=1
# No .pyc files written at runtime: the code is read-only to the service user.
ENV PYTHONDONTWRITEBYTECODE=1
# Keeps pip quiet about upgrades and keeps its cache out of the layers.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin healer
WORKDIR /app

# Layer 1: dependencies. torch first, from the chosen index, so that requirements.txt's
# torch==2.13.0 is already satisfied: a CPU image never pulls the multi-GB CUDA wheel.
ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}
RUN pip install --index-url "${TORCH_INDEX_URL}" --extra-index-url https://pypi.org/simple \
        "torch==${TORCH_VERSION}+${TORCH_VARIANT}"
COPY requirements.txt ./
RUN pip install -r requirements.txt

# Layer 2: the weights, fetched by download.py with the token from the build secret.
COPY download.py ./
COPY healer/__init__.py healer/settings.py ./healer/
COPY healer/model/__init__.py healer/model/model_dir.py healer/model/hub.py ./healer/model/
ARG MODEL_ID=google/medgemma-4b-it
ARG MODEL_REVISION=
ARG HF_ENDPOINT=https://huggingface.co
ARG MODEL_DIR=/app/model
# Where the weights live in the image; the service reads the same variable.
ENV MODEL_DIR=${MODEL_DIR}
RUN --mount=type=secret,id=hf_token \
    HF_TOKEN="$(cat /run/secrets/hf_token)" HF_HOME=/tmp/hf-home \
    MODEL_ID="${MODEL_ID}" MODEL_REVISION="${MODEL_REVISION}" HF_ENDPOINT="${HF_ENDPOINT}" \
    python download.py \
    && rm -rf /tmp/hf-home "${MODEL_DIR}/.cache"

# Layer 3: the code (and the page, when there is one).
COPY --from=frontend /out/ ./frontend/
COPY main.py ./
COPY healer/ ./healer/

# The model id the weights came from (healer-model.json in MODEL_DIR records it too).
ENV MODEL_ID=${MODEL_ID}
# Never reach the Hub at runtime: the weights are in the image.
ENV HF_HUB_OFFLINE=1
# Cloud Run sets PORT; 8080 is its default and ours.
ENV PORT=8080

USER 10001
EXPOSE 8080
# Exec form: SIGTERM reaches uvicorn (one worker, on $PORT) for a graceful shutdown.
CMD ["python", "main.py"]
