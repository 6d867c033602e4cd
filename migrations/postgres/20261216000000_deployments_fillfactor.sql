-- Room on each page of deployments for the updates a running deployment makes that
-- change no indexed column (where it runs, its guard, its log sequence, its sha):
-- PostgreSQL then writes them as heap-only tuples, with no new entry in any of the
-- table's indexes. On full pages every such update added an entry to every index,
-- and the claim, the unique check of one running deployment per environment and the
-- lease scans all read those dead entries until the next vacuum. Only pages written
-- from now on leave the room; existing ones fill up as they are vacuumed and reused.
ALTER TABLE deployments SET (fillfactor = 60);
