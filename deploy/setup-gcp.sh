#!/usr/bin/env bash
# Every Google Cloud resource imagelake runs on, with the IAM grants each part needs: from an
# empty project to what deploy/k8s (GKE) or deploy/cloudrun (Cloud Run) deploys onto. Run with
# an account that may administer the project. Idempotent: each resource is looked up first and
# made only when missing, grants are added only once, so a second run changes nothing.
#
#   PROJECT=my-project REGION=europe-west1 BUCKET=my-project-imagelake deploy/setup-gcp.sh
#   deploy/setup-gcp.sh --dry-run      # print the commands, call nothing
#   deploy/setup-gcp.sh --teardown     # delete it all again (CONFIRM=$PROJECT, data included)
#
# Optional settings:
#   TARGET=gke|cloudrun|none  where the roles run (gke: a GKE Autopilot cluster with KEDA's
#                             identity; cloudrun: the push subscription's identity and Secret
#                             Manager secrets for deploy/cloudrun; default gke)
#   KAFKA=managed|none        a Managed Service for Apache Kafka cluster and the topics (default
#                             managed; none when brokers come from elsewhere, e.g. Confluent Cloud)
#   APP_ORIGIN=https://images.example.com  the bucket's CORS rule for direct uploads from pages
#   ANALYSTS=group:analysts@example.com    BigQuery over the lake (deploy/bigquery.sh)
#
# Names match deploy/k8s/base/imagelake.toml and gcp.toml; change both together.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dry_run=false
teardown=false
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=true ;;
    --teardown) teardown=true ;;
    *) echo "usage: deploy/setup-gcp.sh [--dry-run] [--teardown]" >&2; exit 2 ;;
  esac
done
: "${PROJECT:?set PROJECT}" "${REGION:?set REGION}" "${BUCKET:?set BUCKET}"
TARGET="${TARGET:-gke}"
KAFKA="${KAFKA:-managed}"
SA_NAME="${SA_NAME:-imagelake}"
NAMESPACE="${NAMESPACE:-imagelake}"       # Kubernetes namespace of the imagelake pods
CLUSTER="${CLUSTER:-imagelake}"
REPOSITORY="${REPOSITORY:-imagelake}"     # Artifact Registry (docker)
TOPIC="${TOPIC:-imagelake-objects}"
SUBSCRIPTION="${SUBSCRIPTION:-imagelake-processing}"
DEAD="${DEAD:-imagelake-processing-dead}"
PUSH_SUBSCRIPTION="${PUSH_SUBSCRIPTION:-imagelake-push}"
LEASE_SECONDS="${LEASE_SECONDS:-300}"     # processing.lease
MAX_ATTEMPTS="${MAX_ATTEMPTS:-5}"         # processing.max_attempts (5-100)
KAFKA_TOPICS="${KAFKA_TOPICS:-imagelake.images imagelake.images.dlq imagelake.events imagelake.requests}"
KAFKA_PARTITIONS="${KAFKA_PARTITIONS:-12}"
case "$TARGET" in gke | cloudrun | none) ;; *) echo "TARGET must be gke, cloudrun or none" >&2; exit 2 ;; esac
case "$KAFKA" in managed | none) ;; *) echo "KAFKA must be managed or none" >&2; exit 2 ;; esac
if $teardown && ! $dry_run && [ "${CONFIRM:-}" != "$PROJECT" ]; then
  echo "--teardown deletes the bucket (images and lake), Firestore's data and the cluster: set CONFIRM=$PROJECT" >&2
  exit 1
fi

SA="$SA_NAME@$PROJECT.iam.gserviceaccount.com"
PUSH_SA="pubsub-push@$PROJECT.iam.gserviceaccount.com"
if $dry_run; then
  NUMBER=PROJECT_NUMBER
  GCS_AGENT="service-PROJECT_NUMBER@gs-project-accounts.iam.gserviceaccount.com"
else
  NUMBER="$(gcloud projects describe "$PROJECT" --format='value(projectNumber)')"
  GCS_AGENT="$(gcloud storage service-agent --project="$PROJECT")"
fi
PUBSUB_AGENT="service-$NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com"
POOL="principal://iam.googleapis.com/projects/$NUMBER/locations/global/workloadIdentityPools/$PROJECT.svc.id.goog"

# Runs a command, or prints it (--dry-run). gcloud says what it did on stderr; what it prints
# on stdout (whole IAM policies) is dropped.
run() {
  if $dry_run; then
    printf '%q ' "$@" | sed 's/ $//'
    echo
  else
    "$@"
  fi
}

# Whether a resource exists: its describe (or list) command succeeds with output. In a dry
# run nothing is asked and nothing exists, so every command is printed.
exists() {
  $dry_run && return 1
  local out
  out="$("$@" 2>/dev/null)" || return 1
  [ -n "$out" ]
}

# Makes a resource unless `exists` finds it: ensure DESCRIBE... -- CREATE...
ensure() {
  local describe=()
  while [ "$1" != "--" ]; do
    describe+=("$1")
    shift
  done
  shift
  exists "${describe[@]}" || run "$@"
}

# Deletes a resource when it exists: remove DESCRIBE... -- DELETE...
remove() {
  local describe=()
  while [ "$1" != "--" ]; do
    describe+=("$1")
    shift
  done
  shift
  if $dry_run || exists "${describe[@]}"; then run "$@"; fi
}

project_grant() { # MEMBER ROLE
  run gcloud projects add-iam-policy-binding "$PROJECT" --member="$1" --role="$2" \
    --condition=None --quiet
}

teardown() {
  remove gcloud container clusters describe "$CLUSTER" --region="$REGION" --project="$PROJECT" -- \
    gcloud container clusters delete "$CLUSTER" --region="$REGION" --project="$PROJECT" --quiet
  for service in imagelake-api imagelake-worker; do
    remove gcloud run services describe "$service" --region="$REGION" --project="$PROJECT" -- \
      gcloud run services delete "$service" --region="$REGION" --project="$PROJECT" --quiet
  done
  for sub in "$PUSH_SUBSCRIPTION" "$SUBSCRIPTION" "$DEAD"; do
    remove gcloud pubsub subscriptions describe "$sub" --project="$PROJECT" -- \
      gcloud pubsub subscriptions delete "$sub" --project="$PROJECT" --quiet
  done
  for topic in "$TOPIC" "$DEAD"; do
    remove gcloud pubsub topics describe "$topic" --project="$PROJECT" -- \
      gcloud pubsub topics delete "$topic" --project="$PROJECT" --quiet
  done
  remove gcloud managed-kafka clusters describe imagelake --location="$REGION" --project="$PROJECT" -- \
    gcloud managed-kafka clusters delete imagelake --location="$REGION" --project="$PROJECT" --quiet
  remove gcloud storage buckets describe "gs://$BUCKET" -- \
    gcloud storage rm --recursive "gs://$BUCKET"
  remove gcloud firestore databases describe --database='(default)' --project="$PROJECT" -- \
    gcloud firestore databases delete --database='(default)' --project="$PROJECT" --quiet
  for secret in imagelake-config imagelake-worker-config imagelake-admin-token; do
    remove gcloud secrets describe "$secret" --project="$PROJECT" -- \
      gcloud secrets delete "$secret" --project="$PROJECT" --quiet
  done
  remove gcloud compute addresses describe imagelake --global --project="$PROJECT" -- \
    gcloud compute addresses delete imagelake --global --project="$PROJECT" --quiet
  remove gcloud compute ssl-policies describe imagelake-modern-tls --project="$PROJECT" -- \
    gcloud compute ssl-policies delete imagelake-modern-tls --project="$PROJECT" --quiet
  remove gcloud artifacts repositories describe "$REPOSITORY" --location="$REGION" --project="$PROJECT" -- \
    gcloud artifacts repositories delete "$REPOSITORY" --location="$REGION" --project="$PROJECT" --quiet
  for account in "$SA" "$PUSH_SA"; do
    remove gcloud iam service-accounts describe "$account" --project="$PROJECT" -- \
      gcloud iam service-accounts delete "$account" --project="$PROJECT" --quiet
  done
  echo "teardown done: project $PROJECT no longer holds imagelake's resources" >&2
}

if $teardown; then
  teardown
  exit 0
fi

apis=(storage.googleapis.com pubsub.googleapis.com firestore.googleapis.com
  iamcredentials.googleapis.com monitoring.googleapis.com artifactregistry.googleapis.com
  cloudbuild.googleapis.com)
[ "$TARGET" = gke ] && apis+=(container.googleapis.com compute.googleapis.com)
[ "$TARGET" = cloudrun ] && apis+=(run.googleapis.com secretmanager.googleapis.com)
[ "$KAFKA" = managed ] && apis+=(managedkafka.googleapis.com compute.googleapis.com)
run gcloud services enable "${apis[@]}" --project="$PROJECT"

# The identity every role runs as.
ensure gcloud iam service-accounts describe "$SA" --project="$PROJECT" -- \
  gcloud iam service-accounts create "$SA_NAME" --project="$PROJECT" --display-name=imagelake

# The image's registry: docker push REGION-docker.pkg.dev/PROJECT/REPOSITORY/imagelake:TAG.
ensure gcloud artifacts repositories describe "$REPOSITORY" --location="$REGION" --project="$PROJECT" -- \
  gcloud artifacts repositories create "$REPOSITORY" --repository-format=docker \
  --location="$REGION" --project="$PROJECT"
# Nodes pull as the Compute Engine default account (GKE Autopilot's, unless set otherwise), and
# Cloud Build pushes as it in new projects, or as its legacy account in older ones.
for builder in "$NUMBER-compute@developer.gserviceaccount.com" "$NUMBER@cloudbuild.gserviceaccount.com"; do
  run gcloud artifacts repositories add-iam-policy-binding "$REPOSITORY" --location="$REGION" \
    --project="$PROJECT" --member="serviceAccount:$builder" --role=roles/artifactregistry.writer --quiet
done

# Bucket: uniform access, no public access, and lifecycle rules one day past each retention
# (images and claims; the lake) as a backstop for the sweepers (`imagelake lifecycle --config
# gcp.toml` prints the rules for your retentions; deploy/lifecycle.json is the one for 7 days).
ensure gcloud storage buckets describe "gs://$BUCKET" -- \
  gcloud storage buckets create "gs://$BUCKET" --project="$PROJECT" --location="$REGION" \
  --uniform-bucket-level-access --public-access-prevention
run gcloud storage buckets update "gs://$BUCKET" --lifecycle-file="$here/lifecycle.json"
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
  run gcloud storage buckets update "gs://$BUCKET" --cors-file="$cors"
else
  echo "APP_ORIGIN is not set: no CORS rule, so keep [web] direct_uploads off" >&2
fi
run gcloud storage buckets add-iam-policy-binding "gs://$BUCKET" \
  --member="serviceAccount:$SA" --role=roles/storage.objectAdmin --quiet

# Topics and subscriptions. The bucket's service agent publishes a notification per new
# original (one notification config: a second would deliver every image twice); Pub/Sub's own
# agent moves messages that keep failing to the dead-letter topic.
for topic in "$TOPIC" "$DEAD"; do
  ensure gcloud pubsub topics describe "$topic" --project="$PROJECT" -- \
    gcloud pubsub topics create "$topic" --project="$PROJECT"
done
run gcloud pubsub topics add-iam-policy-binding "$TOPIC" --project="$PROJECT" \
  --member="serviceAccount:$GCS_AGENT" --role=roles/pubsub.publisher
ensure gcloud storage buckets notifications list "gs://$BUCKET" \
  --filter="\"Notification Configuration\".topic:projects/$PROJECT/topics/$TOPIC" \
  --format='value("Notification Configuration".id)' -- \
  gcloud storage buckets notifications create "gs://$BUCKET" \
  --topic="projects/$PROJECT/topics/$TOPIC" --event-types=OBJECT_FINALIZE \
  --object-prefix=originals/ --payload-format=json
if [ "$TARGET" != cloudrun ]; then
  ensure gcloud pubsub subscriptions describe "$SUBSCRIPTION" --project="$PROJECT" -- \
    gcloud pubsub subscriptions create "$SUBSCRIPTION" --project="$PROJECT" --topic="$TOPIC" \
    --ack-deadline="$LEASE_SECONDS" --dead-letter-topic="$DEAD" \
    --max-delivery-attempts="$MAX_ATTEMPTS" --message-retention-duration=7d
  run gcloud pubsub subscriptions add-iam-policy-binding "$SUBSCRIPTION" --project="$PROJECT" \
    --member="serviceAccount:$SA" --role=roles/pubsub.subscriber
  work_subscription="$SUBSCRIPTION"
else
  work_subscription="$PUSH_SUBSCRIPTION"     # a push subscription, made below
fi
ensure gcloud pubsub subscriptions describe "$DEAD" --project="$PROJECT" -- \
  gcloud pubsub subscriptions create "$DEAD" --project="$PROJECT" --topic="$DEAD" \
  --message-retention-duration=7d
run gcloud pubsub topics add-iam-policy-binding "$DEAD" --project="$PROJECT" \
  --member="serviceAccount:$PUBSUB_AGENT" --role=roles/pubsub.publisher
# imagelake pulls and acknowledges its subscriptions, and publishes re-queued work and its own
# dead letters.
run gcloud pubsub subscriptions add-iam-policy-binding "$DEAD" --project="$PROJECT" \
  --member="serviceAccount:$SA" --role=roles/pubsub.subscriber
for topic in "$TOPIC" "$DEAD"; do
  run gcloud pubsub topics add-iam-policy-binding "$topic" --project="$PROJECT" \
    --member="serviceAccount:$SA" --role=roles/pubsub.publisher
done

# Cloud Monitoring: the console's Pub/Sub backlog (num_undelivered_messages) is read there.
project_grant "serviceAccount:$SA" roles/monitoring.viewer

# Firestore: the database, the composite indexes of deploy/firestore.indexes.json and the TTL
# policies on images.expires_at and dedup.expires_at.
ensure gcloud firestore databases describe --database='(default)' --project="$PROJECT" -- \
  gcloud firestore databases create --project="$PROJECT" --location="$REGION"
project_grant "serviceAccount:$SA" roles/datastore.user
indexes=""
$dry_run || indexes="$(gcloud firestore indexes composite list --project="$PROJECT" \
  --format='value(fields)' 2>/dev/null || true)"
index() { # FIELD... (field-path,order)
  local fields=() spec wanted=""
  for spec in "$@"; do
    fields+=("--field-config=field-path=${spec%%,*},order=${spec##*,}")
    wanted+="${spec%%,*};"
  done
  if ! grep -q "$(echo "$wanted" | sed 's/;$//; s/;/.*/g')" <<<"$indexes"; then
    run gcloud firestore indexes composite create --project="$PROJECT" --collection-group=images \
      "${fields[@]}" --async
  fi
}
index customer_id,ascending uploaded_at,descending __name__,descending
index customer_id,ascending sha256,ascending
index status,ascending uploaded_at,ascending
for group in images dedup; do
  run gcloud firestore fields ttls update expires_at --collection-group="$group" --enable-ttl \
    --project="$PROJECT" --quiet --async
done

# Direct uploads sign URLs through IAM signBlob as the service account itself.
run gcloud iam service-accounts add-iam-policy-binding "$SA" --project="$PROJECT" \
  --member="serviceAccount:$SA" --role=roles/iam.serviceAccountTokenCreator --quiet

# Kafka: a Managed Service for Apache Kafka cluster in the default network, its topics, and
# the service account as a client (SASL/PLAIN with the account's key; README, "Kafka on Google
# Cloud").
if [ "$KAFKA" = managed ]; then
  ensure gcloud managed-kafka clusters describe imagelake --location="$REGION" --project="$PROJECT" -- \
    gcloud managed-kafka clusters create imagelake --location="$REGION" --project="$PROJECT" \
    --cpu=3 --memory=3GiB \
    --subnets="projects/$PROJECT/regions/$REGION/subnetworks/default"
  for topic in $KAFKA_TOPICS; do
    ensure gcloud managed-kafka topics describe "$topic" --cluster=imagelake --location="$REGION" \
      --project="$PROJECT" -- \
      gcloud managed-kafka topics create "$topic" --cluster=imagelake --location="$REGION" \
      --project="$PROJECT" --partitions="$KAFKA_PARTITIONS" --replication-factor=3
  done
  project_grant "serviceAccount:$SA" roles/managedkafka.client
fi

case "$TARGET" in
  gke)
    # GKE Autopilot: nodes, scaling and security patches are Google's; Workload Identity is on.
    ensure gcloud container clusters describe "$CLUSTER" --region="$REGION" --project="$PROJECT" -- \
      gcloud container clusters create-auto "$CLUSTER" --region="$REGION" --project="$PROJECT" \
      --release-channel=regular
    # The pods' Kubernetes service account acts as $SA.
    run gcloud iam service-accounts add-iam-policy-binding "$SA" --project="$PROJECT" \
      --member="serviceAccount:$PROJECT.svc.id.goog[$NAMESPACE/imagelake]" \
      --role=roles/iam.workloadIdentityUser --quiet
    # KEDA reads the subscription's backlog from Cloud Monitoring as its operator's Kubernetes
    # service account (keda/keda-operator), granted directly (Workload Identity Federation).
    project_grant "$POOL/subject/ns/keda/sa/keda-operator" roles/monitoring.viewer
    # The HTTPS Ingress: a global static address (DOMAIN's A record points at it) and TLS 1.2+.
    ensure gcloud compute addresses describe imagelake --global --project="$PROJECT" -- \
      gcloud compute addresses create imagelake --global --project="$PROJECT"
    ensure gcloud compute ssl-policies describe imagelake-modern-tls --project="$PROJECT" -- \
      gcloud compute ssl-policies create imagelake-modern-tls --profile=MODERN \
      --min-tls-version=1.2 --project="$PROJECT"
    ;;
  cloudrun)
    # Pub/Sub pushes to the worker service with an OIDC token of this account, which may
    # invoke the service; the settings and the admin token are Secret Manager secrets.
    ensure gcloud iam service-accounts describe "$PUSH_SA" --project="$PROJECT" -- \
      gcloud iam service-accounts create pubsub-push --project="$PROJECT"
    for secret in imagelake-config imagelake-worker-config imagelake-admin-token; do
      ensure gcloud secrets describe "$secret" --project="$PROJECT" -- \
        gcloud secrets create "$secret" --project="$PROJECT" --replication-policy=automatic
      run gcloud secrets add-iam-policy-binding "$secret" --project="$PROJECT" \
        --member="serviceAccount:$SA" --role=roles/secretmanager.secretAccessor
    done
    if ! exists gcloud secrets versions describe latest --secret=imagelake-admin-token --project="$PROJECT"; then
      # A new admin token, shown by nobody: read it with `gcloud secrets versions access`.
      if $dry_run; then
        run gcloud secrets versions add imagelake-admin-token --data-file=- --project="$PROJECT"
      else
        openssl rand -hex 32 | tr -d '\n' |
          gcloud secrets versions add imagelake-admin-token --data-file=- --project="$PROJECT"
      fi
    fi
    # The worker's URL is known before it is deployed (SERVICE-PROJECT_NUMBER.REGION.run.app),
    # so the push subscription and the worker's settings (push.audience) can name it first.
    url="https://imagelake-worker-$NUMBER.$REGION.run.app"
    ensure gcloud pubsub subscriptions describe "$PUSH_SUBSCRIPTION" --project="$PROJECT" -- \
      gcloud pubsub subscriptions create "$PUSH_SUBSCRIPTION" --project="$PROJECT" \
      --topic="$TOPIC" --push-endpoint="$url/v1/pubsub/push" \
      --push-auth-service-account="$PUSH_SA" --push-auth-token-audience="$url/v1/pubsub/push" \
      --ack-deadline="$LEASE_SECONDS" --dead-letter-topic="$DEAD" \
      --max-delivery-attempts="$MAX_ATTEMPTS" --message-retention-duration=7d
    # Who may call the services: Pub/Sub's push account the worker, anyone the API (it checks
    # keys itself). Both exist once deploy/cloudrun's services are deployed.
    if $dry_run || exists gcloud run services describe imagelake-worker --region="$REGION" --project="$PROJECT"; then
      run gcloud run services add-iam-policy-binding imagelake-worker --region="$REGION" \
        --project="$PROJECT" --member="serviceAccount:$PUSH_SA" --role=roles/run.invoker
    fi
    if $dry_run || exists gcloud run services describe imagelake-api --region="$REGION" --project="$PROJECT"; then
      run gcloud run services add-iam-policy-binding imagelake-api --region="$REGION" \
        --project="$PROJECT" --member=allUsers --role=roles/run.invoker
    else
      echo "deploy deploy/cloudrun's services, then run this again: it lets Pub/Sub and the public call them" >&2
    fi
    ;;
  none) ;;
esac
# Pub/Sub's own agent moves what keeps failing to the dead-letter topic.
run gcloud pubsub subscriptions add-iam-policy-binding "$work_subscription" --project="$PROJECT" \
  --member="serviceAccount:$PUBSUB_AGENT" --role=roles/pubsub.subscriber

if [ -n "${ANALYSTS:-}" ]; then
  if $dry_run; then
    run env PROJECT="$PROJECT" BUCKET="$BUCKET" ANALYSTS="$ANALYSTS" "$here/bigquery.sh"
  else
    PROJECT="$PROJECT" BUCKET="$BUCKET" ANALYSTS="$ANALYSTS" "$here/bigquery.sh"
  fi
fi
echo "done: gcp.project=$PROJECT, objects.bucket=$BUCKET, objects.signing_email=$SA; image registry $REGION-docker.pkg.dev/$PROJECT/$REPOSITORY" >&2
