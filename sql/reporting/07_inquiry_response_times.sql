-- Inquiry response times per tenant: how many inquiries were asked, how they ended, and
-- how long people took to answer (created_at → responded_at, answered ones only).
-- Security invoker: caller's privileges and RLS.
CREATE OR REPLACE VIEW attune_reporting.inquiry_response_times WITH (security_invoker = true) AS
SELECT i.tenant_id,
       count(*) AS inquiries,
       count(*) FILTER (WHERE i.status = 'pending') AS pending,
       count(*) FILTER (WHERE i.status = 'responded') AS responded,
       count(*) FILTER (WHERE i.status = 'expired') AS expired,
       round((percentile_cont(0.50) WITHIN GROUP (ORDER BY extract(epoch FROM i.responded_at - i.created_at))
                  FILTER (WHERE i.status = 'responded'))::numeric, 3) AS p50_seconds,
       round((percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM i.responded_at - i.created_at))
                  FILTER (WHERE i.status = 'responded'))::numeric, 3) AS p95_seconds,
       round(max(extract(epoch FROM i.responded_at - i.created_at)) FILTER (WHERE i.status = 'responded'), 3) AS max_seconds
  FROM attune.inquiry i
 GROUP BY i.tenant_id;

COMMENT ON VIEW attune_reporting.inquiry_response_times IS
    'Per tenant: inquiries by status and the time people took to respond.';
COMMENT ON COLUMN attune_reporting.inquiry_response_times.tenant_id IS 'The tenant the inquiries belong to.';
COMMENT ON COLUMN attune_reporting.inquiry_response_times.inquiries IS 'Inquiries asked.';
COMMENT ON COLUMN attune_reporting.inquiry_response_times.pending IS 'Inquiries still waiting for a response.';
COMMENT ON COLUMN attune_reporting.inquiry_response_times.responded IS 'Inquiries answered.';
COMMENT ON COLUMN attune_reporting.inquiry_response_times.expired IS 'Inquiries that expired unanswered.';
COMMENT ON COLUMN attune_reporting.inquiry_response_times.p50_seconds IS 'Median response time of answered inquiries, seconds (interpolated).';
COMMENT ON COLUMN attune_reporting.inquiry_response_times.p95_seconds IS '95th percentile response time, seconds (interpolated).';
COMMENT ON COLUMN attune_reporting.inquiry_response_times.max_seconds IS 'Longest response time, seconds.';
