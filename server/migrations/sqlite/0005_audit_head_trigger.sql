-- The chain head follows every appended entry inside SQLite itself, and SQLite refuses any entry
-- that does not extend the head it finds. An append is then one INSERT: the audit writer keeps
-- the head in memory, and an append made from a stale head (another process or transaction
-- appended first, or the chain was cut back under a running server) fails whole with
-- `audit_head_stale`, after which the writer reads the head again.
CREATE TRIGGER audit_extends_head BEFORE INSERT ON audit_log
WHEN NEW.seq IS NOT (SELECT seq + 1 FROM audit_head WHERE id = 1)
  OR NEW.prev_hash IS NOT (SELECT hash FROM audit_head WHERE id = 1)
BEGIN
    SELECT RAISE(ABORT, 'audit_head_stale');
END;

CREATE TRIGGER audit_head_follows AFTER INSERT ON audit_log
BEGIN
    UPDATE audit_head SET seq = NEW.seq, hash = NEW.hash WHERE id = 1;
END;
