#!/usr/bin/env bash
# Deploys the image build.sh pushed to Cloud Run, with one of two profiles:
#
#   PROJECT_ID=my-project ./deploy.sh              cpu: 8 vCPU / 16 GiB, int8 weights
#   PROFILE=gpu PROJECT_ID=my-project ./deploy.sh  gpu: 1 NVIDIA L4, bf16 weights
#
# The service is private by default (callers need roles/run.invoker); ALLOW_UNAUTHENTICATED=true
# makes it public. Sizes come from measurements of the full model (README, "Build and deploy"): on CPU,
# int8 peaked at ~10.7 GiB answering a batch of four (~6 GiB between answers), bf16 at ~9.6 GiB.
set -euo pipefail

# shellcheck source=scripts/gcloud-preflight.sh
source "$(dirname "$0")/scripts/gcloud-preflight.sh"
SERVICE_NAME=${SERVICE_NAME:-healer-medgemma-service}
PROFILE=${PROFILE:-cpu}
IMAGE_TAG=${IMAGE_TAG:-latest}
MIN_INSTANCES=${MIN_INSTANCES:-1}
MAX_INSTANCES=${MAX_INSTANCES:-3}
ALLOW_UNAUTHENTICATED=${ALLOW_UNAUTHENTICATED:-false}
# The server answers one batch (up to MAX_BATCH_SIZE requests) at a time and queues at most
# MAX_QUEUE behind it: Cloud Run sends an instance no more than that many at once and scales out
# beyond, instead of piling requests up behind a busy model.
MAX_QUEUE=${MAX_QUEUE:-4}
MAX_BATCH_SIZE=${MAX_BATCH_SIZE:-4}
CONCURRENCY=${CONCURRENCY:-$((MAX_QUEUE + MAX_BATCH_SIZE))}

case $PROFILE in
  cpu)
    IMAGE_NAME=${IMAGE_NAME:-healer-medgemma}
    CPU=${CPU:-8}
    MEMORY=${MEMORY:-16Gi}
    QUANTIZATION=${QUANTIZATION:-int8}
    # Loading maps the weights; warm-up then pages them in: minutes on CPU.
    probe_delay=60 probe_failures=24
    # One CPU answer takes ~20-30 s; the last of CONCURRENCY queued requests waits for the rest.
    REQUEST_TIMEOUT=${REQUEST_TIMEOUT:-600}
    profile_flags=()
    ;;
  gpu)
    IMAGE_NAME=${IMAGE_NAME:-healer-medgemma-gpu}
    CPU=${CPU:-8}
    MEMORY=${MEMORY:-32Gi}
    QUANTIZATION=${QUANTIZATION:-none}
    probe_delay=10 probe_failures=18
    REQUEST_TIMEOUT=${REQUEST_TIMEOUT:-120}
    profile_flags=(--gpu 1 --gpu-type nvidia-l4 --no-cpu-throttling)
    ;;
  *) die "PROFILE must be cpu or gpu, not '$PROFILE'" ;;
esac
case $ALLOW_UNAUTHENTICATED in
  true) access_flag=--allow-unauthenticated ;;
  false) access_flag=--no-allow-unauthenticated ;;
  *) die "ALLOW_UNAUTHENTICATED must be true or false, not '$ALLOW_UNAUTHENTICATED'" ;;
esac
[[ $MIN_INSTANCES =~ ^[0-9]+$ ]] || die "MIN_INSTANCES must be a whole number, not '$MIN_INSTANCES'"

IMAGE="$REGION-docker.pkg.dev/$PROJECT_ID/$REPOSITORY_NAME/$IMAGE_NAME:$IMAGE_TAG"
gcloud artifacts docker images describe "$IMAGE" --project "$PROJECT_ID" >/dev/null 2>&1 \
  || die "image $IMAGE not found: build it first with PROFILE=$PROFILE ./build.sh"

echo "Deploying $SERVICE_NAME ($PROFILE) from $IMAGE"
gcloud run deploy "$SERVICE_NAME" \
  --project "$PROJECT_ID" \
  --region "$REGION" \
  --image "$IMAGE" \
  --port 8080 \
  --cpu "$CPU" \
  --memory "$MEMORY" \
  --concurrency "$CONCURRENCY" \
  --min-instances "$MIN_INSTANCES" \
  --max-instances "$MAX_INSTANCES" \
  --timeout "$REQUEST_TIMEOUT" \
  --cpu-boost \
  --startup-probe "httpGet.path=/,httpGet.port=8080,initialDelaySeconds=$probe_delay,periodSeconds=10,timeoutSeconds=5,failureThreshold=$probe_failures" \
  --set-env-vars "QUANTIZATION=$QUANTIZATION,MAX_QUEUE=$MAX_QUEUE,MAX_BATCH_SIZE=$MAX_BATCH_SIZE" \
  ${profile_flags[@]+"${profile_flags[@]}"} \
  "$access_flag"

gcloud run services describe "$SERVICE_NAME" --project "$PROJECT_ID" --region "$REGION" \
  --format 'value(status.url)'
