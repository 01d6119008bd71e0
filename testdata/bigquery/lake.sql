CREATE OR REPLACE EXTERNAL TABLE `analytics.events`
(
  `customer_id` STRING,
  `data` STRING,
  `event_id` STRING,
  `image_id` STRING,
  `occurred_at` TIMESTAMP,
  `schema_version` INT64,
  `source` STRING,
  `type` STRING
)
WITH PARTITION COLUMNS (
  dt DATE,
  hour INT64
)
OPTIONS (
  format = 'PARQUET',
  uris = ['gs://acme-imagelake/lake/events/*.parquet'],
  hive_partition_uri_prefix = 'gs://acme-imagelake/lake/events',
  require_hive_partition_filter = true
);

CREATE OR REPLACE EXTERNAL TABLE `analytics.api_requests`
(
  `at` TIMESTAMP,
  `customer_id` STRING,
  `duration_ms` FLOAT64,
  `error_code` STRING,
  `key_role` STRING,
  `method` STRING,
  `request_bytes` INT64,
  `response_bytes` INT64,
  `route` STRING,
  `status` INT64
)
WITH PARTITION COLUMNS (
  dt DATE,
  hour INT64
)
OPTIONS (
  format = 'PARQUET',
  uris = ['gs://acme-imagelake/lake/api_requests/*.parquet'],
  hive_partition_uri_prefix = 'gs://acme-imagelake/lake/api_requests',
  require_hive_partition_filter = true
);

CREATE OR REPLACE EXTERNAL TABLE `analytics.billing_events`
(
  `amount` FLOAT64,
  `customer_id` STRING,
  `event_id` STRING,
  `meta` STRING,
  `paid` BOOL,
  `ts` TIMESTAMP
)
WITH PARTITION COLUMNS (
  dt DATE,
  hour INT64
)
OPTIONS (
  format = 'PARQUET',
  uris = ['gs://acme-imagelake/lake/billing_events/*.parquet'],
  hive_partition_uri_prefix = 'gs://acme-imagelake/lake/billing_events',
  require_hive_partition_filter = true
);

CREATE OR REPLACE EXTERNAL TABLE `analytics.quarantine_events`
(
  `customer_id` STRING,
  `line` INT64,
  `raw` STRING,
  `reason` STRING,
  `received_at` TIMESTAMP
)
WITH PARTITION COLUMNS (
  dt DATE,
  hour INT64
)
OPTIONS (
  format = 'PARQUET',
  uris = ['gs://acme-imagelake/lake/quarantine/events/*.parquet'],
  hive_partition_uri_prefix = 'gs://acme-imagelake/lake/quarantine/events',
  require_hive_partition_filter = true
);

CREATE OR REPLACE EXTERNAL TABLE `analytics.quarantine_api_requests`
(
  `customer_id` STRING,
  `line` INT64,
  `raw` STRING,
  `reason` STRING,
  `received_at` TIMESTAMP
)
WITH PARTITION COLUMNS (
  dt DATE,
  hour INT64
)
OPTIONS (
  format = 'PARQUET',
  uris = ['gs://acme-imagelake/lake/quarantine/api_requests/*.parquet'],
  hive_partition_uri_prefix = 'gs://acme-imagelake/lake/quarantine/api_requests',
  require_hive_partition_filter = true
);

CREATE OR REPLACE EXTERNAL TABLE `analytics.quarantine_billing_events`
(
  `customer_id` STRING,
  `line` INT64,
  `raw` STRING,
  `reason` STRING,
  `received_at` TIMESTAMP
)
WITH PARTITION COLUMNS (
  dt DATE,
  hour INT64
)
OPTIONS (
  format = 'PARQUET',
  uris = ['gs://acme-imagelake/lake/quarantine/billing_events/*.parquet'],
  hive_partition_uri_prefix = 'gs://acme-imagelake/lake/quarantine/billing_events',
  require_hive_partition_filter = true
);

CREATE OR REPLACE EXTERNAL TABLE `analytics.images`
(
  `image_id` STRING,
  `customer_id` STRING,
  `source` STRING,
  `uploaded_at` TIMESTAMP,
  `status` STRING,
  `error_code` STRING,
  `format` STRING,
  `bytes` INT64,
  `width` INT64,
  `height` INT64,
  `megapixels` FLOAT64,
  `exif_make` STRING,
  `exif_model` STRING,
  `taken_at` STRING,
  `phash` STRING,
  `average_color` STRING,
  `processed_at` TIMESTAMP,
  `latency_ms` FLOAT64,
  `deleted_at` TIMESTAMP,
  `expired_at` TIMESTAMP
)
WITH PARTITION COLUMNS (
  dt DATE,
  hour INT64
)
OPTIONS (
  format = 'PARQUET',
  uris = ['gs://acme-imagelake/lake/images/*.parquet'],
  hive_partition_uri_prefix = 'gs://acme-imagelake/lake/images',
  require_hive_partition_filter = true
);

CREATE OR REPLACE EXTERNAL TABLE `analytics.uploads_hourly`
(
  `customer_id` STRING,
  `source` STRING,
  `uploads` INT64,
  `duplicates` INT64,
  `refused` INT64,
  `processed` INT64,
  `failed` INT64,
  `bytes` INT64,
  `refusals_by_code` STRING,
  `failures_by_code` STRING,
  `latency_ms_p50` FLOAT64,
  `latency_ms_p95` FLOAT64,
  `latency_ms_p99` FLOAT64
)
WITH PARTITION COLUMNS (
  dt DATE,
  hour INT64
)
OPTIONS (
  format = 'PARQUET',
  uris = ['gs://acme-imagelake/lake/uploads_hourly/*.parquet'],
  hive_partition_uri_prefix = 'gs://acme-imagelake/lake/uploads_hourly',
  require_hive_partition_filter = true
);

CREATE OR REPLACE EXTERNAL TABLE `analytics.api_requests_hourly`
(
  `route` STRING,
  `method` STRING,
  `status` INT64,
  `requests` INT64,
  `duration_ms_p50` FLOAT64,
  `duration_ms_p99` FLOAT64,
  `bytes_in` INT64,
  `bytes_out` INT64,
  `customers` INT64
)
WITH PARTITION COLUMNS (
  dt DATE,
  hour INT64
)
OPTIONS (
  format = 'PARQUET',
  uris = ['gs://acme-imagelake/lake/api_requests_hourly/*.parquet'],
  hive_partition_uri_prefix = 'gs://acme-imagelake/lake/api_requests_hourly',
  require_hive_partition_filter = true
);

CREATE OR REPLACE EXTERNAL TABLE `analytics.customers`
(
  `customer_id` STRING,
  `name` STRING,
  `email` STRING,
  `plan` STRING,
  `created_at` TIMESTAMP,
  `updated_at` TIMESTAMP,
  `deleted_at` TIMESTAMP
)
OPTIONS (
  format = 'PARQUET',
  uris = ['gs://acme-imagelake/lake/customers/customers.parquet']
);

CREATE OR REPLACE EXTERNAL TABLE `analytics.job_runs`
(
  `job` STRING,
  `data_interval` STRING,
  `attempt` INT64,
  `trigger` STRING,
  `state` STRING,
  `queued_at` TIMESTAMP,
  `started_at` TIMESTAMP,
  `ended_at` TIMESTAMP,
  `rows` INT64,
  `error` STRING,
  `backfill_id` STRING
)
OPTIONS (
  format = 'PARQUET',
  uris = ['gs://acme-imagelake/lake/job_runs/job_runs.parquet']
);

