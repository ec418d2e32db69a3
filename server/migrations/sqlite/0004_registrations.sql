-- The demo registry behind the web portal: sealed registration records as submitted (every
-- personal field is a JWE; the server cannot read them without the decrypt permission). The
-- list view reads only the small columns, never the record with its sealed photo.
CREATE TABLE registrations (
    id TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL,
    submitted_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    mode TEXT NOT NULL,
    field_names TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX registrations_received ON registrations (received_at);
