# Sourced by build.sh and deploy.sh: what both check before calling gcloud, and the settings
# both share. Each missing prerequisite stops the script with one line saying how to fix it.
# shellcheck shell=bash

die() { echo "${0##*/}: error: $*" >&2; exit 1; }

command -v gcloud >/dev/null 2>&1 \
  || die "gcloud is not installed: see https://cloud.google.com/sdk/docs/install"
[[ -n $(gcloud auth list --filter=status:ACTIVE --format='value(account)' 2>/dev/null) ]] \
  || die "gcloud is not logged in: run gcloud auth login"

PROJECT_ID=${PROJECT_ID:-$(gcloud config get-value project 2>/dev/null || true)}
[[ -n $PROJECT_ID ]] \
  || die "no project: set PROJECT_ID=... or run gcloud config set project YOUR_PROJECT_ID"
REGION=${REGION:-europe-west1}
REPOSITORY_NAME=${REPOSITORY_NAME:-healer-medgemma}

# ensure_service_account EMAIL DESCRIPTION: creates EMAIL when it is one of this project's own
# accounts and missing; any other missing account is an error. It is given no project roles here:
# each script grants it access to the few resources it needs, one by one.
ensure_service_account() {
  local email=$1 description=$2
  gcloud iam service-accounts describe "$email" --project "$PROJECT_ID" >/dev/null 2>&1 && return
  [[ $email == *@"$PROJECT_ID".iam.gserviceaccount.com ]] \
    || die "service account $email not found (create it, or leave the variable unset for the default)"
  echo "Creating service account $email ($description)"
  gcloud iam service-accounts create "${email%%@*}" --project "$PROJECT_ID" \
    --display-name "$description" >/dev/null
}
