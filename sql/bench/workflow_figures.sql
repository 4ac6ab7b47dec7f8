-- `attune bench --mode workflow`: the figures and checks of one scenario, from the
-- workflow executions $1 and their children (the database's own timestamps):
-- - the workflows: how many, how many succeeded, first created -> last finished (s);
-- - their children: how many, how many succeeded, how many distinct (workflow, task,
--   item) slots (fewer than children: some task or item ran twice), the fewest and the
--   most children of any one workflow, and the with-items indexes (distinct, min, max).
WITH wf AS (
    SELECT id, status, created_at, finished_at FROM attune.execution WHERE id = ANY($1)
), kids AS (
    SELECT parent_id, workflow_task, item_index, status FROM attune.execution WHERE parent_id = ANY($1)
), per_wf AS (
    SELECT wf.id, count(k.parent_id) AS n FROM wf LEFT JOIN kids k ON k.parent_id = wf.id GROUP BY wf.id
)
SELECT (SELECT count(*) FROM wf) AS "workflows!",
       (SELECT count(*) FROM wf WHERE status = 'succeeded') AS "workflows_succeeded!",
       (SELECT COALESCE(extract(epoch FROM max(finished_at) - min(created_at))::float8, 0) FROM wf) AS "total_s!",
       (SELECT count(*) FROM kids) AS "children!",
       (SELECT count(*) FROM kids WHERE status = 'succeeded') AS "children_succeeded!",
       (SELECT count(DISTINCT (parent_id, workflow_task, COALESCE(item_index, -1))) FROM kids) AS "distinct_slots!",
       (SELECT COALESCE(min(n), 0) FROM per_wf) AS "fewest_children!",
       (SELECT COALESCE(max(n), 0) FROM per_wf) AS "most_children!",
       (SELECT count(DISTINCT item_index) FROM kids) AS "distinct_items!",
       (SELECT min(item_index) FROM kids) AS item_min,
       (SELECT max(item_index) FROM kids) AS item_max
