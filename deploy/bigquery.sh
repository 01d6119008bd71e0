#!/usr/bin/env bash
# BigQuery over the lake's files in GCS: a dataset, read access to the bucket for the analysts,
# and an external table per lake table (from `imagelake bigquery ddl`). Every step can be re-run.
#
#   PROJECT=my-project BUCKET=my-project-imagelake ANALYSTS=group:analysts@example.com \
#     deploy/bigquery.sh
#
# LOCATION must be the bucket's location (or a multi-region containing it).
set -euo pipefail
: "${PROJECT:?set PROJECT}" "${BUCKET:?set BUCKET}" "${ANALYSTS:?set ANALYSTS (user:, group: or serviceAccount:)}"
DATASET="${DATASET:-imagelake}"
LOCATION="${LOCATION:-EU}"
CONFIG="${CONFIG:-gcp.toml}"             # the settings whose [[lake.tables]] are included
IMAGELAKE="${IMAGELAKE:-imagelake}"

gcloud services enable bigquery.googleapis.com --project="$PROJECT"
bq --project_id="$PROJECT" --location="$LOCATION" mk --dataset --force "$PROJECT:$DATASET"

# External tables read the files with the querying principal's rights: object read on the bucket,
# data read on the dataset, and the right to run query jobs in the project.
gcloud storage buckets add-iam-policy-binding "gs://$BUCKET" \
  --member="$ANALYSTS" --role=roles/storage.objectViewer
gcloud projects add-iam-policy-binding "$PROJECT" --member="$ANALYSTS" \
  --role=roles/bigquery.jobUser --condition=None >/dev/null
gcloud projects add-iam-policy-binding "$PROJECT" --member="$ANALYSTS" \
  --role=roles/bigquery.dataViewer --condition=None >/dev/null

"$IMAGELAKE" bigquery ddl --dataset "$PROJECT.$DATASET" --bucket "$BUCKET" --config "$CONFIG" \
  | bq --project_id="$PROJECT" --location="$LOCATION" query --use_legacy_sql=false
echo "BigQuery dataset $PROJECT:$DATASET reads gs://$BUCKET/lake/"
