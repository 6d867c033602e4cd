-- The chat message that reports each deployment: see migrations/postgres for why.
-- updated_at uses the store's fixed-width UTC text format.
CREATE TABLE chat_messages (
    deployment_id INTEGER PRIMARY KEY REFERENCES deployments (id) ON DELETE CASCADE,
    channel       TEXT NOT NULL CHECK (channel <> ''),
    ts            TEXT NOT NULL CHECK (ts <> ''),
    updated_at    TEXT NOT NULL
);
