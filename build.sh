#!/usr/bin/env bash
# Builds the Healer image in Cloud Build (cloudbuild.yaml) and pushes it to Artifact Registry,
# tagged with the git commit and `latest`. The Hugging Face token is read by Cloud Build from
# Secret Manager (HF_SECRET_NAME); it never passes through this script.
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
and let Cloud Build read it (see the README, section Build and deploy)"

if ! gcloud artifacts repositories describe "$REPOSITORY_NAME" --location "$REGION" \
    --project "$PROJECT_ID" >/dev/null 2>&1; then
  echo "Creating Artifact Registry repository $REPOSITORY_NAME in $REGION"
  gcloud artifacts repositories create "$REPOSITORY_NAME" --repository-format=docker \
    --location "$REGION" --project "$PROJECT_ID"
fi

echo "Building $IMAGE:$TAG ($PROFILE, $MODEL_ID${MODEL_REVISION:+ at $MODEL_REVISION})"
gcloud builds submit . \
  --project "$PROJECT_ID" \
  --region "$REGION" \
  --config cloudbuild.yaml \
  --substitutions "_IMAGE=$IMAGE,_TAG=$TAG,_MODEL_ID=$MODEL_ID,_MODEL_REVISION=$MODEL_REVISION,_MODEL_DIR=$MODEL_DIR,_TORCH_VARIANT=$TORCH_VARIANT,_HF_SECRET=$HF_SECRET_NAME"
echo "Pushed $IMAGE:$TAG and $IMAGE:latest"
