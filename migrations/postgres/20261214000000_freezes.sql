-- Deploy freezes (issue 18): no deploys to the app+environment they cover until they
-- end, break-glass aside. `app` and `environment` are a name or '*' for every one, so
-- `freeze all in production` is one row. A second freeze of the same scope replaces the
-- first. Every freeze ends by itself: `ends_at` is required, and a freeze past it
-- counts as absent in every read (no sweeper), as an expired lock does.
CREATE TABLE freezes (
    app          TEXT NOT NULL CHECK (app <> ''),
    environment  TEXT NOT NULL CHECK (environment <> ''),
    -- Who froze it, as people read it, and the verified identity key
    -- (`chat:<id>`, `github:<login>`) behind it.
    frozen_by    TEXT NOT NULL,
    frozen_by_id TEXT,
    reason       TEXT,
    starts_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    ends_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (app, environment)
);
