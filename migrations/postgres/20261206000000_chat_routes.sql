-- Where a slash command's later messages may go: Slack's response_url for the command
-- (https://api.slack.com/interactivity/handling#message_responses), valid 30 minutes
-- for 5 posts. Keyed by the deployment's source_key (`github:<id>`, `chima-...`), so
-- that the URL never travels in a GitHub deployment payload (anyone who can read the
-- repository can read payloads, and the URL posts into private channels and DMs).
CREATE TABLE chat_routes (
    source_key   TEXT PRIMARY KEY CHECK (source_key <> ''),
    response_url TEXT NOT NULL CHECK (response_url <> ''),
    expires_at   TIMESTAMPTZ NOT NULL,
    uses_left    INTEGER NOT NULL CHECK (uses_left >= 0)
);
