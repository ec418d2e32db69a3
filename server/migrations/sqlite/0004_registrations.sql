-- The demo registry behind the web portal: sealed registration records as submitted (every
-- personal field is a JWE; the server cannot read them without the decrypt permission).
CREATE TABLE registrations (
    id TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL,
    submitted_by TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX registrations_received ON registrations (received_at);
