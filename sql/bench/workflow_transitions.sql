-- `attune bench --mode workflow`: where the time of sequential workflows $1 goes, p50 and
-- p95 in ms over every task of every workflow: the engine's step (the previous task
-- finished -> this task's execution created), the task's start (created -> running:
-- scheduler and worker claim) and its run (running -> finished); and, per workflow, its
-- start (workflow created -> first task created) and its end (last task finished ->
-- workflow finished).
WITH k AS (
    SELECT parent_id, created_at, started_at, finished_at,
           lag(finished_at) OVER (PARTITION BY parent_id ORDER BY created_at, id) AS previous_finished
      FROM attune.execution
     WHERE parent_id = ANY($1)
), ends AS (
    SELECT extract(epoch FROM min(k.created_at) - w.created_at) * 1000 AS start_ms,
           extract(epoch FROM w.finished_at - max(k.finished_at)) * 1000 AS end_ms
      FROM attune.execution w JOIN k ON k.parent_id = w.id
     WHERE w.id = ANY($1)
     GROUP BY w.id, w.created_at, w.finished_at
)
SELECT COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM created_at - previous_finished)), 0) * 1000 AS "step_p50!",
       COALESCE(percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM created_at - previous_finished)), 0) * 1000 AS "step_p95!",
       COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at)), 0) * 1000 AS "start_p50!",
       COALESCE(percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM started_at - created_at)), 0) * 1000 AS "start_p95!",
       COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)), 0) * 1000 AS "run_p50!",
       COALESCE(percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)), 0) * 1000 AS "run_p95!",
       (SELECT COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY start_ms), 0) FROM ends) AS "workflow_start_p50!",
       (SELECT COALESCE(percentile_cont(0.5) WITHIN GROUP (ORDER BY end_ms), 0) FROM ends) AS "workflow_end_p50!"
  FROM k
