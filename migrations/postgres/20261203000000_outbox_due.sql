-- The status and chat senders take the oldest undelivered events of their target
-- (`ORDER BY id LIMIT n`). With only outbox_pending (target, deployment_id, id) the
-- database sorted every undelivered event on each take, and the senders take after
-- every delivery: under a burst of thousands of webhooks that was most of
-- PostgreSQL's work (bench/run: 7.6 ms of PostgreSQL CPU per webhook, against 0.8 ms
-- without the sender). This index is walked in id order and the scan stops at the limit.
CREATE INDEX outbox_due ON outbox (target, id) WHERE delivered_at IS NULL;
