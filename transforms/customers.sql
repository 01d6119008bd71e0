-- customers: one row per customer, its latest state; no key material (the events carry none).
--
-- Reads: events (the one hour being transformed), previous (this table as it stands, empty at
-- first). One file, rewritten by each run: the newest of what the table held and what the
-- hour changed, so customers older than the lake retention are kept, and running an hour
-- again gives the same table.
WITH changes AS (
    SELECT
        customer_id,
        data->>'name' AS name,
        data->>'email' AS email,
        data->>'plan' AS plan,
        CAST(data->>'created_at' AS TIMESTAMP) AS created_at,
        CAST(data->>'updated_at' AS TIMESTAMP) AS updated_at,
        CASE WHEN type = 'customer.deleted' THEN CAST(occurred_at AS TIMESTAMP) END AS deleted_at,
        CAST(occurred_at AS TIMESTAMP) AS changed_at,
        CASE type
            WHEN 'customer.created' THEN 1
            WHEN 'customer.updated' THEN 2
            ELSE 3
        END AS stage
    FROM events
    WHERE type IN ('customer.created', 'customer.updated', 'customer.deleted')
),
known AS (
    SELECT
        customer_id,
        name,
        email,
        plan,
        CAST(created_at AS TIMESTAMP) AS created_at,
        CAST(updated_at AS TIMESTAMP) AS updated_at,
        CAST(deleted_at AS TIMESTAMP) AS deleted_at,
        CAST(coalesce(deleted_at, updated_at) AS TIMESTAMP) AS changed_at,
        0 AS stage
    FROM previous
),
candidates AS (
    SELECT * FROM changes
    UNION ALL
    SELECT * FROM known
),
ranked AS (
    SELECT
        *,
        row_number() OVER (PARTITION BY customer_id ORDER BY changed_at DESC, stage DESC) AS newest
    FROM candidates
)
SELECT customer_id, name, email, plan, created_at, updated_at, deleted_at
FROM ranked
WHERE newest = 1
ORDER BY customer_id
