-- api_requests_hourly: how the API answered in one hour.
--
-- Reads: api_requests (the requests of the one hour being transformed).
-- One row per route (the template, never a raw path), method and status; the hour is the
-- partition (dt, hour).
SELECT
    route,
    method,
    status,
    count(*) AS requests,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS duration_ms_p50,
    percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS duration_ms_p99,
    coalesce(sum(request_bytes), 0) AS bytes_in,
    coalesce(sum(response_bytes), 0) AS bytes_out,
    count(DISTINCT customer_id) AS customers
FROM api_requests
GROUP BY route, method, status
ORDER BY route, method, status
