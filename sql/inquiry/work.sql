-- What an inquiry round has to do, in one cheap look (partial indexes only, no locks), so
-- an idle round costs one round trip: inquiry executions to open, pending inquiries past
-- their expiry, inquiry executions asked to cancel.
SELECT EXISTS (SELECT 1 FROM attune.execution
                WHERE status = 'scheduled' AND runner_type = 'inquiry' AND run_after <= now()) AS "open!",
       EXISTS (SELECT 1 FROM attune.inquiry WHERE status = 'pending' AND expires_at <= now()) AS "expire!",
       EXISTS (SELECT 1 FROM attune.execution WHERE status = 'canceling' AND runner_type = 'inquiry') AS "cancel!"
