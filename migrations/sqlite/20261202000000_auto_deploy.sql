-- Auto-deploy on green CI: see migrations/postgres for why. Timestamps use the
-- store's fixed-width UTC text format.
CREATE TABLE auto_deploys (
    app                  TEXT NOT NULL,
    environment          TEXT NOT NULL,
    sha                  TEXT NOT NULL,
    contexts             TEXT NOT NULL,
    github_deployment_id INTEGER,
    created_at           TEXT NOT NULL,
    PRIMARY KEY (app, environment, sha)
);

CREATE INDEX auto_deploys_latest ON auto_deploys (app, environment, created_at DESC);

CREATE TABLE auto_deploy_pauses (
    app         TEXT NOT NULL,
    environment TEXT NOT NULL,
    paused_by   TEXT NOT NULL,
    reason      TEXT,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (app, environment)
);
