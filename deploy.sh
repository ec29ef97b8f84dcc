#!/usr/bin/env bash
# Deploys the image build.sh pushed to Cloud Run, with one of four profiles:
#
#   PROJECT_ID=my-project ./deploy.sh               cpu: 8 vCPU / 16 GiB, int8 weights
#   PROFILE=gpu PROJECT_ID=my-project ./deploy.sh   gpu: 1 NVIDIA L4, bf16 weights, transformers
#   PROFILE=vllm PROJECT_ID=my-project ./deploy.sh  vllm: Healer beside vLLM's official container,
#                                                   which holds the L4 and MedGemma (a sidecar)
#   PROFILE=remote ENGINE_URL=https://host/v1 …     remote: Healer alone, answers from a given
#                                                   OpenAI-compatible endpoint (vLLM, Vertex AI)
#
# vllm and remote serve the CPU image (build.sh's default) with ENGINE=vllm: Healer's process
# loads no weights there, so 2 vCPU / 4 GiB are enough for it (docs/deploy.md, "vLLM as the engine").
#
# A redeploy loses nothing: environment variables and secrets are updated, never replaced, so
# API_KEY, CORS_ORIGINS and anything set by hand survive; each profile sets or clears every flag
# the other one sets, so a CPU deploy after a GPU deploy removes the GPU. The service runs as its
# own service account (SERVICE_ACCOUNT, created when missing) with no project roles: it may read
# the API key secret and use the slide bucket and job below, nothing else. It is private by
# default; ALLOW_UNAUTHENTICATED=true makes it public, and only with API_KEY_SECRET (a Secret
# Manager secret holding the key callers send).
# Cloud Run picks the CPU: Healer reads its class at start-up and computes with that class's kernels
# (GET / names them); an answer costs 2-3x more on an AVX2 host than on an AMX one (docs/deploy.md).
# Sizes come from measurements of the full model (docs/deploy.md): on CPU, int8 peaked at
# ~10.7 GiB answering a batch of four (~6 GiB between answers), bf16 at ~9.6 GiB.
#
# Slides at scale (docs/deploy.md): a Cloud Storage bucket holds every slide job (SLIDE_STORE), its
# objects deleted after SLIDE_RESULT_DAYS; a Cloud Run Job of the same image and profile scores a
# slide's tiles, one execution per slide, as its own account (SLIDE_JOB_ACCOUNT). The service may
# read and write the bucket's objects, run that one job with overrides and read its executions;
# the job may read and write the bucket's objects. No grant is project-wide.
set -euo pipefail

# shellcheck source=scripts/gcloud-preflight.sh
source "$(dirname "$0")/scripts/gcloud-preflight.sh"
PROFILE=${PROFILE:-cpu}
# The vllm profile runs two containers: its own service, so no single-container deploy of the
# default service is turned into one (or back) by accident.
if [[ $PROFILE == vllm ]]; then SERVICE_NAME=${SERVICE_NAME:-healer-medgemma-vllm}; fi
SERVICE_NAME=${SERVICE_NAME:-healer-medgemma-service}
SERVICE_ACCOUNT=${SERVICE_ACCOUNT:-healer-run@$PROJECT_ID.iam.gserviceaccount.com}
API_KEY_SECRET=${API_KEY_SECRET:-}
ENGINE=transformers  # the vllm and remote profiles set vllm
ENGINE_URL=${ENGINE_URL:-}
ENGINE_API_KEY_SECRET=${ENGINE_API_KEY_SECRET:-}  # remote: a Secret Manager secret holding the endpoint's key
SLIDE_RUNNER=cloud-run-job  # the vllm profile scores slides in the service, beside its GPU
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
# Slides at scale. SLIDE_BUCKET should hold nothing but Healer's slides: deploy.sh sets its
# lifecycle and CORS configuration, replacing any other rules (the lifecycle rule only deletes
# objects under slides/, so nothing else there is deleted).
SLIDE_BUCKET=${SLIDE_BUCKET:-$PROJECT_ID-healer-slides}
SLIDE_BUCKET=${SLIDE_BUCKET#gs://}
SLIDE_BUCKET=${SLIDE_BUCKET%/}
SLIDE_RESULT_DAYS=${SLIDE_RESULT_DAYS:-1}  # Cloud Storage lifecycle ages count whole days
SLIDE_JOB_NAME=${SLIDE_JOB_NAME:-$SERVICE_NAME-slides}
SLIDE_JOB_ACCOUNT=${SLIDE_JOB_ACCOUNT:-healer-slides@$PROJECT_ID.iam.gserviceaccount.com}
SLIDE_MAX_RETRIES=${SLIDE_MAX_RETRIES:-3}  # a retried task resumes from its shard in the store
PAGE_ORIGIN=${PAGE_ORIGIN:-}  # origins the page uploads from; default: the service's URL (it serves /app)
SLIDE_STORE="gs://$SLIDE_BUCKET/slides"
# The bucket mounted read-only (Cloud Storage FUSE): OpenSlide reads a slide by ranges through it,
# so neither the service nor a task copies a multi-GB slide into its in-memory filesystem.
SLIDE_MOUNT=/mnt/slide-bucket
slide_volume_flags=(--add-volume "name=slide-bucket,type=cloud-storage,bucket=$SLIDE_BUCKET,readonly=true")
slide_mount_flags=(--add-volume-mount "volume=slide-bucket,mount-path=$SLIDE_MOUNT")
SLIDE_CLOUD_RUN_JOB="projects/$PROJECT_ID/locations/$REGION/jobs/$SLIDE_JOB_NAME"
# Settings the job's worker must share with the service (same model, same answers), passed to
# both when set here: a slide scored by the job reads as if the service had scored it.
SHARED_SETTINGS=(MODEL_DIR ADAPTER_DIR THRESHOLD MIN_ANSWER_MASS SLIDE_BATCH_SIZE SLIDE_THRESHOLD SLIDE_TOP_K
                 ENGINE_MODEL ENGINE_TOP_LOGPROBS)
# The vllm profile's sidecar: vLLM's official image (pinned: the version CI tests ENGINE=vllm
# against, on its CPU build), serving MODEL_ID from the Hub with the token build.sh uses
# (HF_SECRET_NAME), or from a Cloud Storage copy (MODEL_BUCKET=bucket/path: no download per cold start).
VLLM_IMAGE=${VLLM_IMAGE:-docker.io/vllm/vllm-openai:v0.32.0}
VLLM_PORT=8000
VLLM_MAX_MODEL_LEN=${VLLM_MAX_MODEL_LEN:-4096}  # the served prompt is ~360 tokens, an answer ≤ 48
MODEL_ID=${MODEL_ID:-google/medgemma-4b-it}
MODEL_REVISION=${MODEL_REVISION:-}
MODEL_BUCKET=${MODEL_BUCKET:-}
MODEL_BUCKET=${MODEL_BUCKET#gs://}
MODEL_BUCKET=${MODEL_BUCKET%/}
HF_SECRET_NAME=${HF_SECRET_NAME:-hf-token}
MODEL_MOUNT=/mnt/model

# gpu_redundancy_flag: Cloud Run's zonal redundancy for the L4, off unless asked for.
gpu_redundancy_flag() {
  # Zonal redundancy (standby capacity in other zones) needs its own GPU quota and costs
  # more; without it a zone outage stops the service until capacity returns.
  case ${GPU_ZONAL_REDUNDANCY:-false} in
    true) echo --gpu-zonal-redundancy ;;
    false) echo --no-gpu-zonal-redundancy ;;
    *) die "GPU_ZONAL_REDUNDANCY must be true or false, not '$GPU_ZONAL_REDUNDANCY'" ;;
  esac
}

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
    # One CPU answer takes ~10-25 s at 8 vCPU, by the CPU class Cloud Run hands out (it cannot be
    # chosen; docs/deploy.md, "Which CPU you get"); the last of CONCURRENCY queued requests waits
    # for the rest.
    CLOUD_RUN_TIMEOUT=${CLOUD_RUN_TIMEOUT:-600}
    # Clears what a GPU deploy of the same service set: gcloud keeps every flag not given.
    profile_flags=(--gpu 0 --cpu-throttling)
    job_profile_flags=(--gpu 0)
    # 100 tiles per task (SLIDE_TILES_PER_TASK) at tens of seconds per tile on CPU.
    SLIDE_TASK_TIMEOUT=${SLIDE_TASK_TIMEOUT:-10800}
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
    redundancy_flag=$(gpu_redundancy_flag)
    profile_flags=(--gpu 1 --gpu-type nvidia-l4 --no-cpu-throttling "$redundancy_flag")
    job_profile_flags=(--gpu 1 --gpu-type nvidia-l4 "$redundancy_flag")
    SLIDE_TASK_TIMEOUT=${SLIDE_TASK_TIMEOUT:-3600}
    ;;
  vllm)
    IMAGE_NAME=${IMAGE_NAME:-healer-medgemma}
    CPU=${CPU:-2}  # Healer's container; vLLM's gets the L4 and VLLM_CPU / VLLM_MEMORY
    MEMORY=${MEMORY:-4Gi}
    VLLM_CPU=${VLLM_CPU:-6}
    VLLM_MEMORY=${VLLM_MEMORY:-24Gi}  # the weights are read through host memory as they load
    QUANTIZATION=${QUANTIZATION:-none}
    MIN_INSTANCES=${MIN_INSTANCES:-0}
    # Healer starts once vLLM passes its own probe (--depends-on), then checks GET /models.
    probe_delay=10 probe_failures=18
    CLOUD_RUN_TIMEOUT=${CLOUD_RUN_TIMEOUT:-120}
    redundancy_flag=$(gpu_redundancy_flag)
    # The GPU goes on vLLM's container (one container per instance may hold it).
    profile_flags=(--gpu-type nvidia-l4 --no-cpu-throttling "$redundancy_flag")
    ENGINE=vllm ENGINE_URL=http://localhost:$VLLM_PORT/v1
    # Sidecars reach each other on localhost only: a Cloud Run Job has no vLLM, so the service
    # scores slides itself, over vLLM's continuous batching (no slide job is deployed).
    SLIDE_RUNNER=local
    SLIDE_TASK_TIMEOUT=${SLIDE_TASK_TIMEOUT:-3600}
    ;;
  remote)
    [[ -n $ENGINE_URL ]] \
      || die "PROFILE=remote needs ENGINE_URL=<the engine's OpenAI base URL, e.g. https://host/v1>"
    [[ $ENGINE_URL =~ ^https?://[^[:space:]]+$ ]] || die "ENGINE_URL must be an http(s) URL, not '$ENGINE_URL'"
    IMAGE_NAME=${IMAGE_NAME:-healer-medgemma}
    CPU=${CPU:-2}
    MEMORY=${MEMORY:-4Gi}
    QUANTIZATION=${QUANTIZATION:-none}
    MIN_INSTANCES=${MIN_INSTANCES:-1}  # a warm 2 vCPU instance is cheap; a cold one pulls the image
    probe_delay=10 probe_failures=36  # start-up waits up to ENGINE_READY_TIMEOUT_S (300 s) for the engine
    CLOUD_RUN_TIMEOUT=${CLOUD_RUN_TIMEOUT:-300}
    profile_flags=(--gpu 0 --cpu-throttling)
    job_profile_flags=(--gpu 0)
    ENGINE=vllm
    SLIDE_TASK_TIMEOUT=${SLIDE_TASK_TIMEOUT:-3600}
    ;;
  *) die "PROFILE must be cpu, gpu, vllm or remote, not '$PROFILE'" ;;
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
[[ $SLIDE_BUCKET =~ ^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$ ]] \
  || die "SLIDE_BUCKET must be a bucket name (lower-case letters, digits, - _ .), not '$SLIDE_BUCKET'"
[[ $SLIDE_RESULT_DAYS =~ ^[1-9][0-9]*$ ]] \
  || die "SLIDE_RESULT_DAYS must be a whole number of days, at least 1, not '$SLIDE_RESULT_DAYS'"
[[ $SLIDE_TASK_TIMEOUT =~ ^[1-9][0-9]*$ && $SLIDE_MAX_RETRIES =~ ^[0-9]+$ ]] \
  || die "SLIDE_TASK_TIMEOUT (seconds) and SLIDE_MAX_RETRIES must be whole numbers"
app_timeout=$((CLOUD_RUN_TIMEOUT - TIMEOUT_MARGIN_S))
((app_timeout > 0)) \
  || die "CLOUD_RUN_TIMEOUT ($CLOUD_RUN_TIMEOUT s) must exceed TIMEOUT_MARGIN_S ($TIMEOUT_MARGIN_S s)"
if [[ -n $ENGINE_API_KEY_SECRET && $PROFILE != remote ]]; then
  die "ENGINE_API_KEY_SECRET is for PROFILE=remote (an endpoint elsewhere); the vllm sidecar needs no key"
fi
if [[ $PROFILE == vllm && -n $MODEL_BUCKET && ! $MODEL_BUCKET =~ ^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/[^[:space:],]+)?$ ]]; then
  die "MODEL_BUCKET must be bucket/path of a copy of the model's files, not '$MODEL_BUCKET'"
fi
if [[ $PROFILE == gpu || $PROFILE == vllm ]] && ((MIN_INSTANCES > 0)); then
  echo "deploy.sh: note: MIN_INSTANCES=$MIN_INSTANCES keeps $MIN_INSTANCES L4 GPU instance(s)" \
    "(with $CPU vCPU, $MEMORY, CPU always allocated) billed around the clock, busy or idle;" \
    "MIN_INSTANCES=0 pays nothing while idle, at the price of cold starts of minutes." >&2
fi

IMAGE="$REGION-docker.pkg.dev/$PROJECT_ID/$REPOSITORY_NAME/$IMAGE_NAME:$IMAGE_TAG"
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

# origins_json "A,B": the CORS origins as a JSON list; each must be scheme://host[:port].
origins_json() {
  local origin list=() origins
  IFS=, read -ra origins <<<"$1"
  for origin in "${origins[@]}"; do
    origin=${origin%/}
    [[ $origin =~ ^https?://[A-Za-z0-9.:-]+$ ]] \
      || die "PAGE_ORIGIN must list origins like https://lab.example (no path), not '$origin'"
    list+=("\"$origin\"")
  done
  local IFS=,
  echo "[${list[*]}]"
}
[[ -z $PAGE_ORIGIN ]] || origins_json "$PAGE_ORIGIN" >/dev/null  # a bad origin stops the deploy early

# shared_env: VAR=value,... for QUANTIZATION, the engine and each of SHARED_SETTINGS that is set
# here. ENGINE is always sent: a cpu deploy after a remote one goes back to transformers.
shared_env() {
  local name env="QUANTIZATION=$QUANTIZATION,ENGINE=$ENGINE"
  [[ -z $ENGINE_URL ]] || env+=",ENGINE_URL=$ENGINE_URL"
  for name in "${SHARED_SETTINGS[@]}"; do
    [[ -z ${!name:-} ]] || env+=",$name=${!name}"
  done
  echo "$env"
}

check_image() {
  gcloud artifacts docker images describe "$IMAGE" --project "$PROJECT_ID" >/dev/null 2>&1 \
    || die "image $IMAGE not found: build it first with PROFILE=$PROFILE ./build.sh"
}

# grant_api_key_secret: the service alone may read the key; sets secret_flags for the deploy.
secret_flags=()
grant_api_key_secret() {
  [[ -n $API_KEY_SECRET ]] || return 0
  gcloud secrets describe "$API_KEY_SECRET" --project "$PROJECT_ID" >/dev/null 2>&1 \
    || die "secret $API_KEY_SECRET not found in $PROJECT_ID: create it with
  openssl rand -hex 32 | tr -d '\n' | gcloud secrets create $API_KEY_SECRET --data-file=- --project $PROJECT_ID"
  gcloud secrets add-iam-policy-binding "$API_KEY_SECRET" --project "$PROJECT_ID" \
    --member "serviceAccount:$SERVICE_ACCOUNT" --role roles/secretmanager.secretAccessor >/dev/null
  # --update-secrets, like --update-env-vars: other secrets mounted by hand stay.
  secret_flags=(--update-secrets "API_KEY=$API_KEY_SECRET:latest")
}

# grant_secret NAME ACCOUNT: ACCOUNT may read that one secret, which must exist.
grant_secret() {
  gcloud secrets describe "$1" --project "$PROJECT_ID" >/dev/null 2>&1 \
    || die "secret $1 not found in $PROJECT_ID: create it with
  printf %s \"\$VALUE\" | gcloud secrets create $1 --data-file=- --project $PROJECT_ID"
  gcloud secrets add-iam-policy-binding "$1" --project "$PROJECT_ID" \
    --member "serviceAccount:$2" --role roles/secretmanager.secretAccessor >/dev/null
}

# grant_engine_key: remote only; the service and the slide job send ENGINE_API_KEY to the endpoint.
engine_secret_flags=()
grant_engine_key() {
  [[ -n $ENGINE_API_KEY_SECRET ]] || return 0
  grant_secret "$ENGINE_API_KEY_SECRET" "$SERVICE_ACCOUNT"
  grant_secret "$ENGINE_API_KEY_SECRET" "$SLIDE_JOB_ACCOUNT"
  engine_secret_flags=(--update-secrets "ENGINE_API_KEY=$ENGINE_API_KEY_SECRET:latest")
}

# vllm_container_flags: the sidecar, after `--container vllm`. It holds the GPU, serves on
# localhost:VLLM_PORT with top-k logprobs as deep as Healer reads them, and reads the weights
# from MODEL_BUCKET (mounted read-only; the service may view its objects) or from the Hub with
# the HF token secret (the service may read it).
vllm_container_flags() {
  local model source_flags
  if [[ -n $MODEL_BUCKET ]]; then
    model=$MODEL_MOUNT${MODEL_BUCKET#"${MODEL_BUCKET%%/*}"}
    gcloud storage buckets add-iam-policy-binding "gs://${MODEL_BUCKET%%/*}" --project "$PROJECT_ID" \
      --member "serviceAccount:$SERVICE_ACCOUNT" --role roles/storage.objectViewer >/dev/null
    source_flags=(--add-volume-mount "volume=model,mount-path=$MODEL_MOUNT")
    vllm_volume_flags=(--add-volume "name=model,type=cloud-storage,bucket=${MODEL_BUCKET%%/*},readonly=true")
  else
    model=$MODEL_ID${MODEL_REVISION:+,--revision=$MODEL_REVISION}
    grant_secret "$HF_SECRET_NAME" "$SERVICE_ACCOUNT"
    source_flags=(--update-secrets "HF_TOKEN=$HF_SECRET_NAME:latest")
  fi
  vllm_flags=(--image "$VLLM_IMAGE" --cpu "$VLLM_CPU" --memory "$VLLM_MEMORY" --gpu 1 --command vllm
    "--args=serve,$model,--served-model-name=$MODEL_ID,--port=$VLLM_PORT,--max-model-len=$VLLM_MAX_MODEL_LEN,--max-logprobs=${ENGINE_TOP_LOGPROBS:-20},--gpu-memory-utilization=0.90"
    --startup-probe "httpGet.path=/health,httpGet.port=$VLLM_PORT,initialDelaySeconds=30,periodSeconds=10,timeoutSeconds=5,failureThreshold=90"
    "${source_flags[@]}")
}

# ensure_slide_bucket: an existing bucket is used as it is; a new one is private, in REGION,
# without soft delete (a deleted slide is gone, not kept and billed for another week).
ensure_slide_bucket() {
  if gcloud storage buckets describe "gs://$SLIDE_BUCKET" --project "$PROJECT_ID" >/dev/null 2>&1; then
    echo "Slides in gs://$SLIDE_BUCKET (existing bucket)"
    return
  fi
  echo "Creating bucket gs://$SLIDE_BUCKET in $REGION for slides"
  gcloud storage buckets create "gs://$SLIDE_BUCKET" --project "$PROJECT_ID" --location "$REGION" \
    --uniform-bucket-level-access --public-access-prevention >/dev/null
  gcloud storage buckets update "gs://$SLIDE_BUCKET" --project "$PROJECT_ID" --clear-soft-delete >/dev/null
}

# set_slide_lifecycle: every object under slides/ (uploads, job state, results) is deleted
# SLIDE_RESULT_DAYS after it was written, whether or not the service deleted it first.
set_slide_lifecycle() {
  local file=$workdir/lifecycle.json
  printf '{"lifecycle": {"rule": [{"action": {"type": "Delete"}, "condition": {"age": %s, "matchesPrefix": ["slides/"]}}]}}\n' \
    "$SLIDE_RESULT_DAYS" >"$file"
  gcloud storage buckets update "gs://$SLIDE_BUCKET" --project "$PROJECT_ID" --lifecycle-file="$file" >/dev/null
}

# set_slide_cors ORIGINS: the page's browser PUTs a slide straight to its upload session and
# reads the Range header of each 308 to resume.
set_slide_cors() {
  local file=$workdir/cors.json origins
  origins=$(origins_json "$1")
  printf '[{"origin": %s, "method": ["PUT", "POST", "GET", "DELETE", "OPTIONS"], "responseHeader": ["Content-Type", "Content-Range", "Range", "Location", "X-GUploader-UploadID"], "maxAgeSeconds": 3600}]\n' \
    "$origins" >"$file"
  gcloud storage buckets update "gs://$SLIDE_BUCKET" --project "$PROJECT_ID" --cors-file="$file" >/dev/null
}

# grant_bucket_objects ACCOUNT: read, write and delete objects in the slide bucket, nothing else.
grant_bucket_objects() {
  gcloud storage buckets add-iam-policy-binding "gs://$SLIDE_BUCKET" --project "$PROJECT_ID" \
    --member "serviceAccount:$1" --role roles/storage.objectUser >/dev/null
}

# deploy_slide_job: the same image and profile as the service; each task runs
# `python -m healer.slides.worker JOB_ID` (the service appends the id when it runs the job).
deploy_slide_job() {
  echo "Deploying job $SLIDE_JOB_NAME ($PROFILE) from $IMAGE as $SLIDE_JOB_ACCOUNT"
  gcloud run jobs deploy "$SLIDE_JOB_NAME" \
    --project "$PROJECT_ID" \
    --region "$REGION" \
    --image "$IMAGE" \
    --service-account "$SLIDE_JOB_ACCOUNT" \
    --command python \
    --args=-m,healer.slides.worker \
    --cpu "$CPU" \
    --memory "$MEMORY" \
    --max-retries "$SLIDE_MAX_RETRIES" \
    --task-timeout "${SLIDE_TASK_TIMEOUT}s" \
    --update-env-vars "$(shared_env),SLIDE_STORE=$SLIDE_STORE,SLIDE_STORE_MOUNT=$SLIDE_MOUNT" \
    ${engine_secret_flags[@]+"${engine_secret_flags[@]}"} \
    "${slide_volume_flags[@]}" "${slide_mount_flags[@]}" \
    "${job_profile_flags[@]}" >/dev/null
}

# grant_job_execution: the service may run this job with overrides (task count, args) and
# cancel its executions (run.jobsExecutorWithOverrides), and read them (run.viewer: the executor
# role has no run.executions.get). Both on this one job.
grant_job_execution() {
  local role
  for role in roles/run.jobsExecutorWithOverrides roles/run.viewer; do
    gcloud run jobs add-iam-policy-binding "$SLIDE_JOB_NAME" --project "$PROJECT_ID" --region "$REGION" \
      --member "serviceAccount:$SERVICE_ACCOUNT" --role "$role" >/dev/null
  done
}

deploy_service() {
  local healer_flags containers vllm_flags=() vllm_volume_flags=() job_env=
  [[ $SLIDE_RUNNER != cloud-run-job ]] || job_env=",SLIDE_CLOUD_RUN_JOB=$SLIDE_CLOUD_RUN_JOB"
  healer_flags=(--image "$IMAGE" --port 8080 --cpu "$CPU" --memory "$MEMORY"
    --startup-probe "httpGet.path=/,httpGet.port=8080,initialDelaySeconds=$probe_delay,periodSeconds=10,timeoutSeconds=5,failureThreshold=$probe_failures"
    --update-env-vars "$(shared_env),MAX_QUEUE=$MAX_QUEUE,MAX_BATCH_SIZE=$MAX_BATCH_SIZE,REQUEST_TIMEOUT_S=$app_timeout,SLIDE_STORE=$SLIDE_STORE,SLIDE_STORE_MOUNT=$SLIDE_MOUNT,SLIDE_RUNNER=$SLIDE_RUNNER$job_env"
    "${slide_mount_flags[@]}"
    ${secret_flags[@]+"${secret_flags[@]}"}
    ${engine_secret_flags[@]+"${engine_secret_flags[@]}"})
  if [[ $PROFILE == vllm ]]; then
    vllm_container_flags
    # Per-container flags follow each --container; Healer (the one with a port) takes the requests.
    containers=(--container healer "${healer_flags[@]}" --depends-on vllm --container vllm "${vllm_flags[@]}")
  else
    containers=("${healer_flags[@]}")
  fi
  echo "Deploying $SERVICE_NAME ($PROFILE) from $IMAGE as $SERVICE_ACCOUNT"
  gcloud run deploy "$SERVICE_NAME" \
    --project "$PROJECT_ID" \
    --region "$REGION" \
    --service-account "$SERVICE_ACCOUNT" \
    --concurrency "$CONCURRENCY" \
    --min-instances "$MIN_INSTANCES" \
    --max-instances "$MAX_INSTANCES" \
    --timeout "$CLOUD_RUN_TIMEOUT" \
    --cpu-boost \
    "${slide_volume_flags[@]}" \
    ${vllm_volume_flags[@]+"${vllm_volume_flags[@]}"} \
    "${profile_flags[@]}" \
    "$access_flag" \
    "${containers[@]}"
}

service_url() {
  gcloud run services describe "$SERVICE_NAME" --project "$PROJECT_ID" --region "$REGION" \
    --format 'value(status.url)'
}

check_image
ensure_service_account "$SERVICE_ACCOUNT" "Healer service (its key secret, the slide bucket's objects, its slide job)"
ensure_service_account "$SLIDE_JOB_ACCOUNT" "Healer slide job (the slide bucket's objects, nothing else)"
grant_api_key_secret
grant_engine_key
ensure_slide_bucket
set_slide_lifecycle
grant_bucket_objects "$SERVICE_ACCOUNT"
if [[ $SLIDE_RUNNER == cloud-run-job ]]; then
  grant_bucket_objects "$SLIDE_JOB_ACCOUNT"
  deploy_slide_job
  grant_job_execution
fi
deploy_service
url=$(service_url)
set_slide_cors "${PAGE_ORIGIN:-$url}"
echo "$url"
