-- An execution of an action with an action-level `with_items` that is not itself an item
-- is a with-items parent, run by the workflow engine (20261130000020_workflow_engine.sql).
-- The three statements that create executions (sql/execution/run.sql,
-- sql/executor/write_matches.sql, sql/workflow/insert_children.sql) now say so themselves,
-- joining the action they name, instead of a per-row trigger: a PL/pgSQL call with a
-- security-definer switch and a query of its own for every execution inserted, which cost
-- the pipeline a tenth of its throughput (issue 13; docs/benchmarks.md).
DROP TRIGGER with_items_parent ON attune.execution;
DROP FUNCTION attune.with_items_parent();
