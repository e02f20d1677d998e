-- Alert history ids become visible in id order, so the live stream's cursor (the SSE `id:`, a client's
-- Last-Event-ID, the API's "replayed up to" mark) can never skip an event.
--
-- Without this, two writers (the alert service and a nurse's acknowledgement through the API) could take
-- ids 9 and 10 and commit 10 first: a subscriber that connected (or reconnected with Last-Event-ID 10)
-- between the two commits would replay up to 10 and then ignore 9 as "already replayed".
--
-- Rule: ids are taken under one transaction-scoped advisory lock, held until commit, and PostgreSQL makes
-- a commit visible before it releases the transaction's locks. Writers call cc_lock_alert_events() as the
-- first statement of a transaction that may add lifecycle steps (so they never wait for it while holding
-- alert rows: no deadlock); the BEFORE INSERT trigger is the backstop for any other writer: it takes the
-- lock itself and re-numbers the row under it. The lock is held only by transactions that change alerts,
-- a few per second at most (docs/alerts.md).
CREATE OR REPLACE FUNCTION cc_lock_alert_events() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(7244120260);
    PERFORM set_config('carechain.alert_event_order', 'locked', true);
END $$;

CREATE OR REPLACE FUNCTION cc_alert_event_order() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('carechain.alert_event_order', true), '') <> 'locked' THEN
        -- The writer did not take the lock first: its id was drawn before the lock; draw it again under it.
        PERFORM cc_lock_alert_events();
        NEW.id := nextval(pg_get_serial_sequence('alert_events', 'id'));
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS alert_events_order ON alert_events;
CREATE TRIGGER alert_events_order BEFORE INSERT ON alert_events
    FOR EACH ROW EXECUTE FUNCTION cc_alert_event_order();
