-- The chat message that reports each deployment. The chat sender posts one message per
-- deployment (in the thread of the command) and edits it on every later state change;
-- it needs the message's channel id and ts to do so, across restarts and across faseng
-- processes, so they live here rather than in memory.
CREATE TABLE chat_messages (
    deployment_id BIGINT PRIMARY KEY REFERENCES deployments (id) ON DELETE CASCADE,
    -- The channel id the chat service answered with (edits need the id, not a name).
    channel       TEXT NOT NULL CHECK (channel <> ''),
    -- The message's timestamp id, e.g. Slack's "1700000000.000100".
    ts            TEXT NOT NULL CHECK (ts <> ''),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
