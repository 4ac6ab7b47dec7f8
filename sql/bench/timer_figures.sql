-- `attune bench --mode timers`: how late each tick of the run after event $1 fired,
-- |fired - scheduled| in ms, from the timer events' payloads.
WITH t AS (
    SELECT extract(epoch FROM (payload->>'fired_at')::timestamptz - (payload->>'scheduled_at')::timestamptz)::float8
           * 1000 AS late
      FROM attune.event
     WHERE id > $1 AND source = 'timer' AND trigger_ref LIKE 'bench_timers.%'
)
SELECT count(*) AS "ticks!",
       COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY late), 0) AS "p50!",
       COALESCE(percentile_cont(0.95) WITHIN GROUP (ORDER BY late), 0) AS "p95!",
       COALESCE(percentile_cont(0.99) WITHIN GROUP (ORDER BY late), 0) AS "p99!",
       COALESCE(max(late), 0) AS "max!"
  FROM t
