-- A random id per redemption attempt, so a request whose commit succeeded but whose reply was
-- lost (connection reset during COMMIT) can tell its own redemption from someone else's.
ALTER TABLE vouchers ADD COLUMN redeem_nonce TEXT;
