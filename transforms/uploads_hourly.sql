-- uploads_hourly: what each customer sent through each door in one hour, and how it went.
--
-- Reads: events (the lifecycle events of the one hour being transformed).
-- One row per customer_id and source; the hour is the partition (dt, hour).
-- Uploads are counted when stored (image.received), duplicates and refusals when answered,
-- processing outcomes and latencies when processing ended, each in the hour it happened.
WITH outcomes AS (
    SELECT
        customer_id,
        coalesce(source, data->>'source') AS source,
        type,
        CASE
            WHEN type = 'upload.refused' THEN data->>'code'
            WHEN type = 'image.failed' THEN data->'error'->>'code'
        END AS code,
        CASE WHEN type = 'image.received' THEN CAST(data->>'bytes' AS BIGINT) END AS bytes,
        CASE
            WHEN type = 'image.processed' THEN round(
                (date_part('epoch', CAST(data->>'processed_at' AS TIMESTAMP))
                    - date_part('epoch', CAST(data->>'uploaded_at' AS TIMESTAMP))) * 1000,
                3)
        END AS latency_ms
    FROM events
    WHERE type IN ('image.received', 'image.duplicate', 'upload.refused',
                   'image.processed', 'image.failed')
),
codes AS (
    SELECT customer_id, source, type, code, count(*) AS n
    FROM outcomes
    WHERE code IS NOT NULL
    GROUP BY customer_id, source, type, code
),
by_code AS (
    SELECT
        customer_id,
        source,
        '{' || string_agg(
            CASE WHEN type = 'upload.refused' THEN '"' || code || '":' || CAST(n AS VARCHAR) END,
            ',' ORDER BY code) || '}' AS refusals_by_code,
        '{' || string_agg(
            CASE WHEN type = 'image.failed' THEN '"' || code || '":' || CAST(n AS VARCHAR) END,
            ',' ORDER BY code) || '}' AS failures_by_code
    FROM codes
    GROUP BY customer_id, source
),
totals AS (
    SELECT
        customer_id,
        source,
        sum(CASE WHEN type = 'image.received' THEN 1 ELSE 0 END) AS uploads,
        sum(CASE WHEN type = 'image.duplicate' THEN 1 ELSE 0 END) AS duplicates,
        sum(CASE WHEN type = 'upload.refused' THEN 1 ELSE 0 END) AS refused,
        sum(CASE WHEN type = 'image.processed' THEN 1 ELSE 0 END) AS processed,
        sum(CASE WHEN type = 'image.failed' THEN 1 ELSE 0 END) AS failed,
        coalesce(sum(bytes), 0) AS bytes,
        percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS latency_ms_p50,
        percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS latency_ms_p95,
        percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS latency_ms_p99
    FROM outcomes
    GROUP BY customer_id, source
)
SELECT
    t.customer_id,
    t.source,
    t.uploads,
    t.duplicates,
    t.refused,
    t.processed,
    t.failed,
    t.bytes,
    coalesce(c.refusals_by_code, '{}') AS refusals_by_code,
    coalesce(c.failures_by_code, '{}') AS failures_by_code,
    t.latency_ms_p50,
    t.latency_ms_p95,
    t.latency_ms_p99
FROM totals t
LEFT JOIN by_code c
    ON t.customer_id = c.customer_id AND t.source IS NOT DISTINCT FROM c.source
ORDER BY t.customer_id, t.source
