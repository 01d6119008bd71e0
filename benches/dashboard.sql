-- The dashboard queries of the SQL benchmark (scripts/bench-sql), run by imagelake and by DuckDB
-- on the same files. ${DAY} and ${IMAGE_ID} are filled in by the script.

-- name: uploads_per_hour_24h
SELECT time_bucket(INTERVAL '1 hour', occurred_at) AS hour, count(*) AS uploads
FROM events
WHERE type = 'image.received'
  AND occurred_at >= TIMESTAMP '${DAY} 00:00:00' AND occurred_at < TIMESTAMP '${DAY} 00:00:00' + INTERVAL '1 day'
GROUP BY 1
ORDER BY 1;

-- name: top_customers_by_bytes_7d
SELECT customer_id, sum(bytes) AS bytes
FROM images
WHERE dt >= DATE '${DAY}' - INTERVAL '6 days'
GROUP BY customer_id
ORDER BY bytes DESC
LIMIT 10;

-- name: latency_p50_p99_by_format
SELECT format,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99
FROM images
WHERE status = 'processed'
GROUP BY format
ORDER BY format;

-- name: failures_per_day
SELECT dt, count(*) AS failures
FROM events
WHERE type = 'image.failed'
GROUP BY dt
ORDER BY dt;

-- name: point_lookup_image_id
SELECT image_id, customer_id, status, format, bytes, width, height, uploaded_at
FROM images
WHERE image_id = '${IMAGE_ID}';

-- name: images_join_customers
SELECT c.plan, count(*) AS images, sum(i.bytes) AS bytes
FROM images i
JOIN customers c ON c.customer_id = i.customer_id
GROUP BY c.plan
ORDER BY c.plan;
