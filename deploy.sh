#!/usr/bin/env bash
# Deploys the image build.sh pushed to Cloud Run, with one of two profiles:
#
#   PROJECT_ID=my-project ./deploy.sh              cpu: 8 vCPU / 16 GiB, int8 weights
#   PROFILE=gpu PROJECT_ID=my-project ./deploy.sh  gpu: 1 NVIDIA L4, bf16 weights
#
# A redeploy loses nothing: environment variables and secrets are updated, never replaced, so
# API_KEY, CORS_ORIGINS and anything set by hand survive; each profile sets or clears every flag
# the other one sets, so a CPU deploy after a GPU deploy removes the GPU. The service runs as its
# own service account (SERVICE_ACCOUNT, created when missing) with no project roles: it may only
# read the API key secret. It is private by default; ALLOW_UNAUTHENTICATED=true makes it public,
# and only with API_KEY_SECRET (a Secret Manager secret holding the key callers send).
# Sizes come from measurements of the full model (docs/deploy.md): on CPU, int8 peaked at
# ~10.7 GiB answering a batch of four (~6 GiB between answers), bf16 at ~9.6 GiB.
set -euo pipefail

# shellcheck source=scripts/gcloud-preflight.sh
source "$(dirname "$0")/scripts/gcloud-preflight.sh"
SERVICE_NAME=${SERVICE_NAME:-healer-medgemma-service}
SERVICE_ACCOUNT=${SERVICE_ACCOUNT:-healer-run@$PROJECT_ID.iam.gserviceaccount.com}
API_KEY_SECRET=${API_KEY_SECRET:-}
PROFILE=${PROFILE:-cpu}
IMAGE_TAG=${IMAGE_TAG:-latest}
MAX_INSTANCES=${MAX_INSTANCES:-3}
ALLOW_UNAUTHENTICATED=${ALLOW_UNAUTHENTICATED:-false}
# The server answers one batch (up to MAX_BATCH_SIZE requests) at a time and queues at most
# MAX_QUEUE behind it: Cloud Run sends an instance no more than that many at once and scales out
# beyond, instead of piling requests up behind a busy model.
MAX_QUEUE=${MAX_QUEUE:-4}
MAX_BATCH_SIZE=${MAX_BATCH_SIZE:-4}
CONCURRENCY=${CONCURRENCY:-$((MAX_QUEUE + MAX_BATCH_SIZE))}
# The app gives up on a request (its own 504 with a JSON body, and the queue place freed) this
# many seconds before Cloud Run would cut it off: time to read the upload, answer and send it.
TIMEOUT_MARGIN_S=${TIMEOUT_MARGIN_S:-10}

case $PROFILE in
  cpu)
    IMAGE_NAME=${IMAGE_NAME:-healer-medgemma}
    CPU=${CPU:-8}
    MEMORY=${MEMORY:-16Gi}
    QUANTIZATION=${QUANTIZATION:-int8}
    # One warm instance: a cold start pulls ~10 GB and pages the weights in (minutes).
    MIN_INSTANCES=${MIN_INSTANCES:-1}
    # Loading maps the weights; warm-up then pages them in: minutes on CPU.
    probe_delay=60 probe_failures=24
    # One CPU answer takes ~20-30 s; the last of CONCURRENCY queued requests waits for the rest.
    CLOUD_RUN_TIMEOUT=${CLOUD_RUN_TIMEOUT:-600}
    # Clears what a GPU deploy of the same service set: gcloud keeps every flag not given.
    profile_flags=(--gpu 0 --cpu-throttling)
    ;;
  gpu)
    IMAGE_NAME=${IMAGE_NAME:-healer-medgemma-gpu}
    CPU=${CPU:-8}
    MEMORY=${MEMORY:-32Gi}
    QUANTIZATION=${QUANTIZATION:-none}
    # 0: an idle L4 costs nothing (cold starts take minutes); 1 bills an L4 around the clock.
    MIN_INSTANCES=${MIN_INSTANCES:-0}
    probe_delay=10 probe_failures=18
    CLOUD_RUN_TIMEOUT=${CLOUD_RUN_TIMEOUT:-120}
    # Zonal redundancy (standby capacity in other zones) needs its own GPU quota and costs
    # more; without it a zone outage stops the service until capacity returns.
    case ${GPU_ZONAL_REDUNDANCY:-false} in
      true) redundancy_flag=--gpu-zonal-redundancy ;;
      false) redundancy_flag=--no-gpu-zonal-redundancy ;;
      *) die "GPU_ZONAL_REDUNDANCY must be true or false, not '$GPU_ZONAL_REDUNDANCY'" ;;
    esac
    profile_flags=(--gpu 1 --gpu-type nvidia-l4 --no-cpu-throttling "$redundancy_flag")
    ;;
  *) die "PROFILE must be cpu or gpu, not '$PROFILE'" ;;
esac
case $ALLOW_UNAUTHENTICATED in
  true) access_flag=--allow-unauthenticated ;;
  false) access_flag=--no-allow-unauthenticated ;;
  *) die "ALLOW_UNAUTHENTICATED must be true or false, not '$ALLOW_UNAUTHENTICATED'" ;;
esac
if [[ $ALLOW_UNAUTHENTICATED == true && -z $API_KEY_SECRET ]]; then
  die "ALLOW_UNAUTHENTICATED=true needs API_KEY_SECRET=<a Secret Manager secret holding the API key>:
  a public service without a key lets anyone on the internet run the model (see docs/deploy.md)"
fi
[[ $MIN_INSTANCES =~ ^[0-9]+$ ]] || die "MIN_INSTANCES must be a whole number, not '$MIN_INSTANCES'"
[[ $CLOUD_RUN_TIMEOUT =~ ^[0-9]+$ && $TIMEOUT_MARGIN_S =~ ^[0-9]+$ ]] \
  || die "CLOUD_RUN_TIMEOUT and TIMEOUT_MARGIN_S must be whole numbers of seconds"
app_timeout=$((CLOUD_RUN_TIMEOUT - TIMEOUT_MARGIN_S))
((app_timeout > 0)) \
  || die "CLOUD_RUN_TIMEOUT ($CLOUD_RUN_TIMEOUT s) must exceed TIMEOUT_MARGIN_S ($TIMEOUT_MARGIN_S s)"
if [[ $PROFILE == gpu ]] && ((MIN_INSTANCES > 0)); then
  echo "deploy.sh: note: MIN_INSTANCES=$MIN_INSTANCES keeps $MIN_INSTANCES L4 GPU instance(s)" \
    "(with $CPU vCPU, $MEMORY, CPU always allocated) billed around the clock, busy or idle;" \
    "MIN_INSTANCES=0 pays nothing while idle, at the price of cold starts of minutes." >&2
fi

IMAGE="$REGION-docker.pkg.dev/$PROJECT_ID/$REPOSITORY_NAME/$IMAGE_NAME:$IMAGE_TAG"
gcloud artifacts docker images describe "$IMAGE" --project "$PROJECT_ID" >/dev/null 2>&1 \
  || die "image $IMAGE not found: build it first with PROFILE=$PROFILE ./build.sh"

ensure_service_account "$SERVICE_ACCOUNT" "Healer service (reads its API key secret, nothing else)"
secret_flags=()
if [[ -n $API_KEY_SECRET ]]; then
  gcloud secrets describe "$API_KEY_SECRET" --project "$PROJECT_ID" >/dev/null 2>&1 \
    || die "secret $API_KEY_SECRET not found in $PROJECT_ID: create it with
  openssl rand -hex 32 | tr -d '\n' | gcloud secrets create $API_KEY_SECRET --data-file=- --project $PROJECT_ID"
  gcloud secrets add-iam-policy-binding "$API_KEY_SECRET" --project "$PROJECT_ID" \
    --member "serviceAccount:$SERVICE_ACCOUNT" --role roles/secretmanager.secretAccessor >/dev/null
  # --update-secrets, like --update-env-vars: other secrets mounted by hand stay.
  secret_flags=(--update-secrets "API_KEY=$API_KEY_SECRET:latest")
fi

echo "Deploying $SERVICE_NAME ($PROFILE) from $IMAGE as $SERVICE_ACCOUNT"
gcloud run deploy "$SERVICE_NAME" \
  --project "$PROJECT_ID" \
  --region "$REGION" \
  --image "$IMAGE" \
  --service-account "$SERVICE_ACCOUNT" \
  --port 8080 \
  --cpu "$CPU" \
  --memory "$MEMORY" \
  --concurrency "$CONCURRENCY" \
  --min-instances "$MIN_INSTANCES" \
  --max-instances "$MAX_INSTANCES" \
  --timeout "$CLOUD_RUN_TIMEOUT" \
  --cpu-boost \
  --startup-probe "httpGet.path=/,httpGet.port=8080,initialDelaySeconds=$probe_delay,periodSeconds=10,timeoutSeconds=5,failureThreshold=$probe_failures" \
  --update-env-vars "QUANTIZATION=$QUANTIZATION,MAX_QUEUE=$MAX_QUEUE,MAX_BATCH_SIZE=$MAX_BATCH_SIZE,REQUEST_TIMEOUT_S=$app_timeout" \
  ${secret_flags[@]+"${secret_flags[@]}"} \
  "${profile_flags[@]}" \
  "$access_flag"

gcloud run services describe "$SERVICE_NAME" --project "$PROJECT_ID" --region "$REGION" \
  --format 'value(status.url)'
