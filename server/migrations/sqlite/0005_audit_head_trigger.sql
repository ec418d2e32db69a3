-- The chain head follows every appended entry inside SQLite itself. An append is then one
-- INSERT: the audit writer keeps the head in memory, and `seq` (the primary key) refuses an
-- append made from a stale head (another process or transaction appended first), after which
-- the writer reads the head again.
CREATE TRIGGER audit_head_follows AFTER INSERT ON audit_log
BEGIN
    UPDATE audit_head SET seq = NEW.seq, hash = NEW.hash WHERE id = 1 AND seq < NEW.seq;
END;
