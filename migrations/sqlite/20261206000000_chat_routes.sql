-- Where a slash command's later messages may go: see migrations/postgres for why.
-- expires_at uses the store's fixed-width UTC text format.
CREATE TABLE chat_routes (
    source_key   TEXT PRIMARY KEY CHECK (source_key <> ''),
    response_url TEXT NOT NULL CHECK (response_url <> ''),
    expires_at   TEXT NOT NULL,
    uses_left    INTEGER NOT NULL CHECK (uses_left >= 0)
);
