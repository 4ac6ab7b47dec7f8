-- Wake-ups move out of the producers' transactions.
--
-- A NOTIFY inside a transaction serialises its commit with every other notifying commit of
-- the cluster (PostgreSQL takes a global lock for the notify queue at commit, held through
-- the WAL flush). One NOTIFY per webhook capped ingestion at ~1,450 events/s on the
-- benchmark machine. Producers now send the hints themselves, from a
-- connection of their own and coalesced (see attune_core::wakeup::Hint), so event
-- inserts commit without it. The rule engine still polls every second as the safety net.
DROP TRIGGER event_inserted ON attune.event;
-- Likewise for new executions (rule engine batches, manual runs): the producer pokes
-- `attune_requested` after its commit.
DROP TRIGGER execution_inserted ON attune.execution;
