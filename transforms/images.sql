-- images: one row per image, its latest state as of the end of the hour being transformed.
--
-- Reads: events (every hour from the oldest upload hour being rewritten to the hour being
-- transformed), rewrite (upload_hour: the upload hours whose partitions this run rewrites,
-- `YYYY-MM-DDTHH`: those of the images the hour's events changed).
-- Partitioned by the hour of upload (dt, hour of uploaded_at): the partition of an hour is
-- written again whenever a later event changes one of its images (processed, failed, deleted,
-- expired). upload_hour names the partition and is not written as a column.
WITH uploaded AS (
    SELECT DISTINCT image_id, substr(data->>'uploaded_at', 1, 13) AS upload_hour
    FROM events
    WHERE type = 'image.received'
      AND substr(data->>'uploaded_at', 1, 13) IN (SELECT upload_hour FROM rewrite)
),
history AS (
    SELECT
        u.upload_hour,
        e.image_id,
        e.customer_id,
        e.source,
        e.type,
        e.occurred_at,
        e.event_id,
        e.data,
        CASE e.type
            WHEN 'image.received' THEN 1
            WHEN 'image.processed' THEN 2
            WHEN 'image.failed' THEN 2
            ELSE 3
        END AS stage
    FROM events e
    JOIN uploaded u ON e.image_id = u.image_id
    WHERE e.type IN ('image.received', 'image.processed', 'image.failed',
                     'image.deleted', 'image.expired')
),
ranked AS (
    SELECT
        *,
        row_number() OVER (
            PARTITION BY image_id ORDER BY occurred_at DESC, stage DESC, event_id DESC
        ) AS newest,
        min(CASE WHEN type = 'image.deleted' THEN CAST(occurred_at AS TIMESTAMP) END)
            OVER (PARTITION BY image_id) AS deleted_at,
        min(CASE WHEN type = 'image.expired' THEN CAST(occurred_at AS TIMESTAMP) END)
            OVER (PARTITION BY image_id) AS expired_at
    FROM history
)
SELECT
    r.upload_hour,
    r.image_id,
    r.customer_id,
    r.source,
    CAST(r.data->>'uploaded_at' AS TIMESTAMP) AS uploaded_at,
    r.data->>'status' AS status,
    r.data->'error'->>'code' AS error_code,
    r.data->>'format' AS format,
    CAST(r.data->>'bytes' AS BIGINT) AS bytes,
    CAST(r.data->>'width' AS BIGINT) AS width,
    CAST(r.data->>'height' AS BIGINT) AS height,
    round(CAST(r.data->>'width' AS DOUBLE) * CAST(r.data->>'height' AS DOUBLE) / 1000000.0, 3)
        AS megapixels,
    r.data->'exif'->>'make' AS exif_make,
    r.data->'exif'->>'model' AS exif_model,
    r.data->'exif'->>'taken_at' AS taken_at,
    r.data->>'phash' AS phash,
    r.data->>'average_color' AS average_color,
    CAST(r.data->>'processed_at' AS TIMESTAMP) AS processed_at,
    round(
        (date_part('epoch', CAST(r.data->>'processed_at' AS TIMESTAMP))
            - date_part('epoch', CAST(r.data->>'uploaded_at' AS TIMESTAMP))) * 1000,
        3) AS latency_ms,
    r.deleted_at,
    r.expired_at
FROM ranked r
WHERE r.newest = 1
ORDER BY r.upload_hour, r.image_id
