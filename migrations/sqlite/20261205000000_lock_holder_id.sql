-- Locks are compared by verified identity (the trust-boundary issue): `holder` stays the
-- name people read, `holder_id` is the identity key (`chat:<user id>`, `github:<login>`)
-- that decides who may deploy through the lock. NULL for locks taken before: those
-- compare by name, as they did.
ALTER TABLE locks ADD COLUMN holder_id TEXT;
