-- Where a running deployment runs (the fencing issue): host id, boot id, faseng's
-- pid and start time, and the guard's, as JSON. A restarted faseng on the same host
-- finds what a dead predecessor left running and makes sure it is gone.
ALTER TABLE deployments ADD COLUMN runner TEXT;
