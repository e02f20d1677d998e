-- TimescaleDB: the audit log's retention is NOT a policy job. A policy would drop chunks on its own
-- schedule without recording where it cut the hash chain, and `carechain audit verify` could no longer
-- tell that cut from a deletion. `carechain db prune` drops the whole chunks older than the floor
-- itself, after recording the cut in audit_log_pruned (and removes a policy that a later
-- cc_retention('audit_log', ...) call added). The keep stays recorded in retention_settings.
SELECT remove_retention_policy('audit_log', if_exists => true);
