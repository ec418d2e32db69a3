-- Status lists (IETF Token Status List, 1 bit per voucher). Indices are handed out from the
-- newest list; `size` is fixed when a list is created.
CREATE TABLE status_lists (
    id         BIGINT PRIMARY KEY,
    size       BIGINT NOT NULL,
    next_idx   BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Every issued voucher (never its token: a token is a bearer instrument). Redemption and
-- revocation are single-row conditional updates, so the first one wins across instances.
CREATE TABLE vouchers (
    jti         TEXT PRIMARY KEY,
    list_id     BIGINT NOT NULL REFERENCES status_lists(id),
    idx         BIGINT NOT NULL,
    kid         TEXT NOT NULL,
    sub         TEXT NOT NULL,
    aud         TEXT NOT NULL,
    amount      TEXT NOT NULL,
    currency    TEXT NOT NULL,
    iat         BIGINT NOT NULL,
    exp         BIGINT NOT NULL,
    issued_by   TEXT NOT NULL,
    revoked_at  BIGINT,
    revoked_by  TEXT,
    redeemed_at BIGINT,
    redeemed_by TEXT,
    redeem_key  TEXT,
    UNIQUE (list_id, idx)
);

CREATE INDEX vouchers_revoked ON vouchers (list_id) WHERE revoked_at IS NOT NULL;
