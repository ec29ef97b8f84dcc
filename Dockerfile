# Healer: MedGemma 4B behind FastAPI. Stages and layers, slowest-changing first, so that a code
# or settings change rebuilds one thin layer:
#   base      OS + Python, the service user
#   deps      torch and requirements.txt
#   weights   the weights (~8.6 GB): depends only on deps and the three files that download them
#             (download.py, healer/model/hub.py, healer/model/model_dir.py), never on settings or code
#   (final)   the code and the page, on top of the weights
#
#   DOCKER_BUILDKIT=1 docker build --secret id=hf_token,env=HF_TOKEN -t healer .
#
# The Hugging Face token only ever reaches the build through a secret mount, read from an
# environment variable: never ARG/ENV, and never a file in the build context (a token file there
# would be uploaded by `gcloud builds submit`). So it is in no layer and not in `docker history`.
# Build args (none is secret):
#   MODEL_ID, MODEL_REVISION   what download.py fetches (pin MODEL_REVISION to a commit)
#   MODEL_DIR                  where the weights go in the image (default /app/model)
#   TORCH_VARIANT              cpu (default) or a CUDA build such as cu128
#   TORCH_INDEX_URL            where that torch build comes from (PyTorch's index by default;
#                              any PEP 503 index, e.g. a local mirror, for offline builds)
#   HF_ENDPOINT                another Hub or a mirror (download.py honours it)
#   PYTHON_IMAGE, NODE_IMAGE   the base images, pinned by digest (refresh with
#                              `docker buildx imagetools inspect python:3.11-slim`); a local
#                              stand-in can be named instead, as tests/container does

ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7
# Node 22: an LTS line (Node 20 reached its end of life in April 2026).
ARG NODE_IMAGE=node:22-slim@sha256:c3de60bf2f9dd0ac6370e6117950ff62d6e339527e7472301c9c78a017978392

# --- The web page: built when frontend/ is in the context, an empty /out otherwise. -----------
FROM ${NODE_IMAGE} AS frontend
WORKDIR /src
# The wildcard matches nothing when there is no frontend/, and BuildKit then copies nothing.
COPY frontend* ./
RUN mkdir -p /out \
    && if [ -f package.json ]; then npm ci --no-audit --no-fund && npm run build && cp -r dist /out/dist; fi

# --- base: OS, Python, the service user. ----------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base

# Logs reach Cloud Logging at once instead of sitting in a buffer.
ENV PYTHONUNBUFFERED=1
# No .pyc files written at runtime: the code is read-only to the service user.
ENV PYTHONDONTWRITEBYTECODE=1
# Keeps pip quiet about upgrades and keeps its cache out of the layers.
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin healer
WORKDIR /app

# --- deps: torch first, from the chosen index, so that requirements.txt's torch==2.13.0 is -------
# already satisfied: a CPU image never pulls the multi-GB CUDA wheel.
FROM base AS deps
ARG TORCH_VERSION=2.13.0
ARG TORCH_VARIANT=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}
RUN pip install --index-url "${TORCH_INDEX_URL}" --extra-index-url https://pypi.org/simple \
        "torch==${TORCH_VERSION}+${TORCH_VARIANT}"
COPY requirements.txt ./
RUN pip install -r requirements.txt

# --- weights: fetched by download.py with the token from the build secret. ---------------------
# Only the files that download them are copied in (download.py reads its three settings from the
# environment, not through healer/settings.py): editing a setting or the code reuses this layer.
FROM deps AS weights
COPY download.py ./
COPY healer/__init__.py ./healer/
COPY healer/model/__init__.py healer/model/model_dir.py healer/model/hub.py ./healer/model/
ARG MODEL_ID=google/medgemma-4b-it
ARG MODEL_REVISION=
ARG HF_ENDPOINT=https://huggingface.co
ARG MODEL_DIR=/app/model
# Where the weights live in the image; the service reads the same variable.
ENV MODEL_DIR=${MODEL_DIR}
# The model id the weights came from (healer-model.json in MODEL_DIR records it and the commit).
ENV MODEL_ID=${MODEL_ID}
RUN --mount=type=secret,id=hf_token \
    HF_TOKEN="$(cat /run/secrets/hf_token)" HF_HOME=/tmp/hf-home \
    MODEL_ID="${MODEL_ID}" MODEL_REVISION="${MODEL_REVISION}" HF_ENDPOINT="${HF_ENDPOINT}" \
    python download.py \
    && rm -rf /tmp/hf-home "${MODEL_DIR}/.cache"

# --- The service: the code (and the page, when there is one) on top of the weights. ------------
# Built on the weights stage rather than copying them out of it: no second 8.6 GB layer, and
# Cloud Build's inline cache (which records only the final image's layers) still finds them.
FROM weights
COPY --from=frontend /out/ ./frontend/
COPY main.py ./
COPY healer/ ./healer/

# Never reach the Hub at runtime: the weights are in the image.
ENV HF_HUB_OFFLINE=1
# Cloud Run sets PORT; 8080 is its default and ours.
ENV PORT=8080

USER 10001
EXPOSE 8080
# Exec form: SIGTERM reaches uvicorn (one worker, on $PORT) for a graceful shutdown.
CMD ["python", "main.py"]
