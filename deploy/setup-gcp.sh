#!/usr/bin/env bash
# Creates what gcp.toml expects in a Google Cloud project, with the IAM grants each part needs.
# Run once with an account that may administer the project; every step can be re-run.
#
#   PROJECT=my-project REGION=europe-west1 BUCKET=my-project-imagelake deploy/setup-gcp.sh
#
# With APP_ORIGIN=https://images.example.com (where browsers open the web app), the bucket also
# gets the CORS rule that lets the app's pages send large files straight to it (signed URLs);
# then turn on [web] direct_uploads.
#
# Names match gcp.toml's defaults; change both together.
set -euo pipefail
: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET}"
SA_NAME="${SA_NAME:-imagelake}"
NAMESPACE="${NAMESPACE:-imagelake}"       # Kubernetes namespace of the imagelake pods
TOPIC="${TOPIC:-imagelake-objects}"
SUBSCRIPTION="${SUBSCRIPTION:-imagelake-processing}"
DEAD="${DEAD:-imagelake-processing-dead}"
LEASE_SECONDS="${LEASE_SECONDS:-300}"     # processing.lease
MAX_ATTEMPTS="${MAX_ATTEMPTS:-5}"         # processing.max_attempts (5-100)
here="$(cd "$(dirname "$0")" && pwd)"

SA="$SA_NAME@$PROJECT.iam.gserviceaccount.com"
NUMBER="$(gcloud projects describe "$PROJECT" --format='value(projectNumber)')"
PUBSUB_AGENT="service-$NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com"
GCS_AGENT="$(gcloud storage service-agent --project="$PROJECT")"

gcloud services enable storage.googleapis.com pubsub.googleapis.com firestore.googleapis.com \
  iamcredentials.googleapis.com --project="$PROJECT"
gcloud iam service-accounts create "$SA_NAME" --project="$PROJECT" 2>/dev/null || true

# Bucket: uniform access, no public access, and lifecycle rules one day past each retention
# (images and claims; the lake) as a backstop for the sweepers (`imagelake lifecycle --config
# gcp.toml` prints the rules for your retentions; deploy/lifecycle.json is the one for 7 days).
gcloud storage buckets create "gs://$BUCKET" --project="$PROJECT" --location="$REGION" \
  --uniform-bucket-level-access --public-access-prevention 2>/dev/null || true
gcloud storage buckets update "gs://$BUCKET" --lifecycle-file="$here/lifecycle.json"
if [ -n "${APP_ORIGIN:-}" ]; then
  # deploy/cors.json with the app's origin: PUT with exactly the headers a signed upload carries.
  # An origin is a scheme and a host (and port), nothing more: browsers send it so.
  if ! [[ $APP_ORIGIN =~ ^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$ ]]; then
    echo "APP_ORIGIN must be like https://images.example.com (no path, no trailing slash)" >&2
    exit 1
  fi
  cors="$(mktemp)"
  trap 'rm -f "$cors"' EXIT
  sed "s|https://images.example.com|$APP_ORIGIN|" "$here/cors.json" >"$cors"
  # This replaces the bucket's CORS rules: merge deploy/cors.json by hand if it has others.
  gcloud storage buckets update "gs://$BUCKET" --cors-file="$cors"
else
  echo "APP_ORIGIN is not set: no CORS rule, so keep [web] direct_uploads off" >&2
fi
gcloud storage buckets add-iam-policy-binding "gs://$BUCKET" \
  --member="serviceAccount:$SA" --role=roles/storage.objectAdmin

# Topics and subscriptions. The bucket's service agent publishes notifications of new
# originals; Pub/Sub's own agent moves messages to the dead-letter topic.
gcloud pubsub topics create "$TOPIC" "$DEAD" --project="$PROJECT" 2>/dev/null || true
gcloud pubsub topics add-iam-policy-binding "$TOPIC" --project="$PROJECT" \
  --member="serviceAccount:$GCS_AGENT" --role=roles/pubsub.publisher
gcloud storage buckets notifications create "gs://$BUCKET" --topic="projects/$PROJECT/topics/$TOPIC" \
  --event-types=OBJECT_FINALIZE --object-prefix=originals/ --payload-format=json
gcloud pubsub subscriptions create "$SUBSCRIPTION" --project="$PROJECT" --topic="$TOPIC" \
  --ack-deadline="$LEASE_SECONDS" --dead-letter-topic="$DEAD" \
  --max-delivery-attempts="$MAX_ATTEMPTS" --message-retention-duration=7d 2>/dev/null || true
gcloud pubsub subscriptions create "$DEAD" --project="$PROJECT" --topic="$DEAD" \
  --message-retention-duration=7d 2>/dev/null || true
gcloud pubsub topics add-iam-policy-binding "$DEAD" --project="$PROJECT" \
  --member="serviceAccount:$PUBSUB_AGENT" --role=roles/pubsub.publisher
gcloud pubsub subscriptions add-iam-policy-binding "$SUBSCRIPTION" --project="$PROJECT" \
  --member="serviceAccount:$PUBSUB_AGENT" --role=roles/pubsub.subscriber
# imagelake pulls and acknowledges both subscriptions, and publishes re-queued work and its own
# dead letters.
for sub in "$SUBSCRIPTION" "$DEAD"; do
  gcloud pubsub subscriptions add-iam-policy-binding "$sub" --project="$PROJECT" \
    --member="serviceAccount:$SA" --role=roles/pubsub.subscriber
done
for topic in "$TOPIC" "$DEAD"; do
  gcloud pubsub topics add-iam-policy-binding "$topic" --project="$PROJECT" \
    --member="serviceAccount:$SA" --role=roles/pubsub.publisher
done

# Cloud Monitoring: the console's Pub/Sub backlog (num_undelivered_messages) is read there.
gcloud projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$SA" \
  --role=roles/monitoring.viewer --condition=None

# Firestore: the database, the composite indexes of deploy/firestore.indexes.json and the TTL
# policies on images.expires_at and dedup.expires_at.
gcloud firestore databases create --project="$PROJECT" --location="$REGION" 2>/dev/null || true
gcloud projects add-iam-policy-binding "$PROJECT" --member="serviceAccount:$SA" \
  --role=roles/datastore.user --condition=None
gcloud firestore indexes composite create --project="$PROJECT" --collection-group=images \
  --field-config=field-path=customer_id,order=ascending \
  --field-config=field-path=uploaded_at,order=descending \
  --field-config=field-path=__name__,order=descending 2>/dev/null || true
gcloud firestore indexes composite create --project="$PROJECT" --collection-group=images \
  --field-config=field-path=customer_id,order=ascending \
  --field-config=field-path=sha256,order=ascending 2>/dev/null || true
gcloud firestore indexes composite create --project="$PROJECT" --collection-group=images \
  --field-config=field-path=status,order=ascending \
  --field-config=field-path=uploaded_at,order=ascending 2>/dev/null || true
for group in images dedup; do
  gcloud firestore fields ttls update expires_at --collection-group="$group" --enable-ttl \
    --project="$PROJECT" --quiet
done

# Direct uploads sign URLs through IAM signBlob as the service account itself.
gcloud iam service-accounts add-iam-policy-binding "$SA" --project="$PROJECT" \
  --member="serviceAccount:$SA" --role=roles/iam.serviceAccountTokenCreator
# GKE Workload Identity: the Kubernetes service account imagelake/imagelake acts as $SA.
gcloud iam service-accounts add-iam-policy-binding "$SA" --project="$PROJECT" \
  --member="serviceAccount:$PROJECT.svc.id.goog[$NAMESPACE/imagelake]" \
  --role=roles/iam.workloadIdentityUser
echo "done: set gcp.project=$PROJECT, objects.bucket=$BUCKET, objects.signing_email=$SA in gcp.toml"
