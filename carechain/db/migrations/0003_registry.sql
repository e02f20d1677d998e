-- The registry the bridge reads, and change notifications so its cache refreshes at once.

CREATE VIEW device_registry AS
SELECT d.device_id,
       d.gateway_id,
       d.home_id,
       COALESCE(d.resident_id, r.resident_id) AS resident_id,
       d.room,
       d.device_kind,
       (
           -- the resident's own valid consent or documented basis ...
           EXISTS (SELECT 1 FROM monitoring_consents c
                    WHERE c.home_id = d.home_id AND c.subject = 'resident'
                      AND c.subject_ref = COALESCE(d.resident_id, r.resident_id)
                      AND c.withdrawn_at IS NULL AND c.valid_from <= now()
                      AND (c.valid_to IS NULL OR c.valid_to > now()))
           -- ... and one valid consent per cohabitant recorded for the home
           AND (SELECT count(DISTINCT c.subject_ref) FROM monitoring_consents c
                 WHERE c.home_id = d.home_id AND c.subject = 'cohabitant'
                   AND c.withdrawn_at IS NULL AND c.valid_from <= now()
                   AND (c.valid_to IS NULL OR c.valid_to > now())) >= h.cohabitants
           -- ... and no withdrawal by anyone in the home that is newer than their consent
           AND NOT EXISTS (SELECT 1 FROM monitoring_consents w
                            WHERE w.home_id = d.home_id AND w.withdrawn_at IS NOT NULL
                              AND NOT EXISTS (SELECT 1 FROM monitoring_consents c2
                                               WHERE c2.home_id = w.home_id AND c2.subject_ref = w.subject_ref
                                                 AND c2.withdrawn_at IS NULL AND c2.given_at > w.withdrawn_at))
       ) AS monitoring_active
  FROM devices d
  JOIN gateways g ON g.gateway_id = d.gateway_id AND g.revoked_at IS NULL
  JOIN homes h ON h.home_id = d.home_id
  LEFT JOIN LATERAL (SELECT resident_id FROM residents
                      WHERE home_id = d.home_id AND active ORDER BY created_at, resident_id LIMIT 1) r ON true
 WHERE d.removed_at IS NULL;

CREATE OR REPLACE FUNCTION cc_notify_registry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('carechain_registry', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER homes_notify AFTER INSERT OR UPDATE OR DELETE ON homes
    FOR EACH STATEMENT EXECUTE FUNCTION cc_notify_registry();
CREATE TRIGGER residents_notify AFTER INSERT OR UPDATE OR DELETE ON residents
    FOR EACH STATEMENT EXECUTE FUNCTION cc_notify_registry();
CREATE TRIGGER gateways_notify AFTER INSERT OR UPDATE OR DELETE ON gateways
    FOR EACH STATEMENT EXECUTE FUNCTION cc_notify_registry();
CREATE TRIGGER devices_notify AFTER INSERT OR UPDATE OR DELETE ON devices
    FOR EACH STATEMENT EXECUTE FUNCTION cc_notify_registry();
CREATE TRIGGER monitoring_consents_notify AFTER INSERT OR UPDATE OR DELETE ON monitoring_consents
    FOR EACH STATEMENT EXECUTE FUNCTION cc_notify_registry();
