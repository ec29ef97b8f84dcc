#!/usr/bin/env bash
# Builds the Healer image in Cloud Build (cloudbuild.yaml) and pushes it to Artifact Registry,
# tagged with the git commit and `latest`. The Hugging Face token is read by Cloud Build from
# Secret Manager (HF_SECRET_NAME); it never passes through this script, and .gcloudignore keeps
# token files out of the upload.
#
# The build runs as its own service account (BUILD_SERVICE_ACCOUNT, created when missing), which
# may read the token secret and the uploaded source, write to the image repository and write
# logs: nothing else. The repository gets a cleanup policy (scripts/artifact-cleanup-policy.json).
#
#   PROJECT_ID=my-project ./build.sh              CPU image (default)
#   PROFILE=gpu PROJECT_ID=my-project ./build.sh  CUDA image, for deploy.sh's GPU profile
set -euo pipefail
cd "$(dirname "$0")"

# shellcheck source=scripts/gcloud-preflight.sh
source scripts/gcloud-preflight.sh  # after the cd above
PROFILE=${PROFILE:-cpu}
MODEL_ID=${MODEL_ID:-google/medgemma-4b-it}
MODEL_REVISION=${MODEL_REVISION:-}
MODEL_DIR=${MODEL_DIR:-/app/model}
HF_SECRET_NAME=${HF_SECRET_NAME:-hf-token}
BUILD_SERVICE_ACCOUNT=${BUILD_SERVICE_ACCOUNT:-healer-build@$PROJECT_ID.iam.gserviceaccount.com}
# Where gcloud uploads the source; the build account may read it.
SOURCE_BUCKET=${SOURCE_BUCKET:-${PROJECT_ID}_cloudbuild}
case $PROFILE in
  cpu) TORCH_VARIANT=${TORCH_VARIANT:-cpu}; IMAGE_NAME=${IMAGE_NAME:-healer-medgemma} ;;
  gpu) TORCH_VARIANT=${TORCH_VARIANT:-cu128}; IMAGE_NAME=${IMAGE_NAME:-healer-medgemma-gpu} ;;
  *) die "PROFILE must be cpu or gpu, not '$PROFILE'" ;;
esac
IMAGE="$REGION-docker.pkg.dev/$PROJECT_ID/$REPOSITORY_NAME/$IMAGE_NAME"
TAG=${TAG:-$(git rev-parse HEAD 2>/dev/null || date -u +%Y%m%d-%H%M%S)}

gcloud secrets describe "$HF_SECRET_NAME" --project "$PROJECT_ID" >/dev/null 2>&1 \
  || die "secret $HF_SECRET_NAME not found in $PROJECT_ID: create it with
  printf %s \"\$HF_TOKEN\" | gcloud secrets create $HF_SECRET_NAME --data-file=- --project $PROJECT_ID
(build.sh then lets its build account read it; see docs/deploy.md)"

if [[ -z $MODEL_REVISION ]]; then
  cat >&2 <<WARNING
################################################################################################
# build.sh: warning: MODEL_REVISION is not set. The image gets whatever $MODEL_ID
# holds at build time, and a cached weights layer keeps the commit an earlier build fetched.
# The commit is recorded in the image (MODEL_DIR/healer-model.json, GET /, the build log). For
# a reproducible image, pin it: MODEL_REVISION=<commit sha> ./build.sh
################################################################################################
WARNING
fi

if ! gcloud artifacts repositories describe "$REPOSITORY_NAME" --location "$REGION" \
    --project "$PROJECT_ID" >/dev/null 2>&1; then
  echo "Creating Artifact Registry repository $REPOSITORY_NAME in $REGION"
  gcloud artifacts repositories create "$REPOSITORY_NAME" --repository-format=docker \
    --location "$REGION" --project "$PROJECT_ID"
fi
# Every build pushes ~10 GB: keep the five newest images of each name, delete the rest after 30 days.
gcloud artifacts repositories set-cleanup-policies "$REPOSITORY_NAME" --location "$REGION" \
  --project "$PROJECT_ID" --policy scripts/artifact-cleanup-policy.json --no-dry-run >/dev/null

ensure_service_account "$BUILD_SERVICE_ACCOUNT" "Healer image builds"
member="serviceAccount:$BUILD_SERVICE_ACCOUNT"
gcloud secrets add-iam-policy-binding "$HF_SECRET_NAME" --project "$PROJECT_ID" \
  --member "$member" --role roles/secretmanager.secretAccessor >/dev/null
gcloud artifacts repositories add-iam-policy-binding "$REPOSITORY_NAME" --location "$REGION" \
  --project "$PROJECT_ID" --member "$member" --role roles/artifactregistry.writer >/dev/null
gcloud projects add-iam-policy-binding "$PROJECT_ID" --member "$member" \
  --role roles/logging.logWriter --condition None >/dev/null
if ! gcloud storage buckets describe "gs://$SOURCE_BUCKET" --project "$PROJECT_ID" >/dev/null 2>&1; then
  gcloud storage buckets create "gs://$SOURCE_BUCKET" --project "$PROJECT_ID" --location "$REGION" \
    --uniform-bucket-level-access >/dev/null
fi
gcloud storage buckets add-iam-policy-binding "gs://$SOURCE_BUCKET" --member "$member" \
  --role roles/storage.objectViewer >/dev/null

echo "Building $IMAGE:$TAG ($PROFILE, $MODEL_ID${MODEL_REVISION:+ at $MODEL_REVISION})"
gcloud builds submit . \
  --project "$PROJECT_ID" \
  --region "$REGION" \
  --config cloudbuild.yaml \
  --service-account "projects/$PROJECT_ID/serviceAccounts/$BUILD_SERVICE_ACCOUNT" \
  --gcs-source-staging-dir "gs://$SOURCE_BUCKET/source" \
  --substitutions "_IMAGE=$IMAGE,_TAG=$TAG,_MODEL_ID=$MODEL_ID,_MODEL_REVISION=$MODEL_REVISION,_MODEL_DIR=$MODEL_DIR,_TORCH_VARIANT=$TORCH_VARIANT,_HF_SECRET=$HF_SECRET_NAME"
echo "Pushed $IMAGE:$TAG and $IMAGE:latest"
