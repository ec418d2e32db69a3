CREATE TABLE keys (
    name            TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    current_version BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);

CREATE TABLE key_versions (
    name       TEXT NOT NULL REFERENCES keys(name),
    version    BIGINT NOT NULL,
    kid        TEXT NOT NULL UNIQUE,
    state      TEXT NOT NULL CHECK (state IN ('active', 'retired', 'disabled')),
    handle     BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE audit_log (
    seq       BIGINT PRIMARY KEY,
    ts        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    detail    TEXT,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);

-- The head of the hash chain: one row, locked by every append so the chain stays linear.
CREATE TABLE audit_head (
    id   BIGINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE api_tokens (
    name        TEXT PRIMARY KEY,
    sha256      TEXT NOT NULL UNIQUE,
    permissions TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
