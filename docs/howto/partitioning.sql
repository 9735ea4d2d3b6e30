-- django-sms2fa: the message table, partitioned by month of created_at (UTC).
-- PostgreSQL 13 or newer. Run it once, in one transaction: a RunSQL
-- migration of your own (docs/howto/partitioning.md). Running it again
-- changes nothing.
--
-- The old table is not copied: it is renamed and becomes the partition of
-- every row before the first day of next month. The table is locked for one
-- scan of it (PostgreSQL checks that every row fits the partition) and, unless
-- built beforehand with CREATE INDEX CONCURRENTLY, one index build.

-- Give up after 5 s of waiting for the lock rather than queue every login
-- behind a long transaction; run the migration again later.
SET LOCAL lock_timeout = '5s';

-- Partitions for this month and the next MONTHS_AHEAD months, where none
-- covers them yet; rows that went to the default partition meanwhile move into
-- the new partition. Returns how many partitions it added. Run it daily.
CREATE OR REPLACE FUNCTION sms2fa_add_message_partitions(months_ahead integer DEFAULT 3)
RETURNS integer
LANGUAGE plpgsql
AS $fn$
DECLARE
    -- Months in UTC, whatever the session's TimeZone.
    this_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
    month_start timestamptz;
    month_end timestamptz;
    part text;
    added integer := 0;
BEGIN
    FOR i IN 0..months_ahead LOOP
        month_start := (this_month + make_interval(months => i)) AT TIME ZONE 'UTC';
        month_end := (this_month + make_interval(months => i + 1)) AT TIME ZONE 'UTC';
        part := 'django_sms2fa_message_p'
            || to_char(this_month + make_interval(months => i), 'YYYYMM');
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        BEGIN
            EXECUTE format(
                'CREATE TABLE %I (LIKE django_sms2fa_message INCLUDING DEFAULTS '
                'INCLUDING CONSTRAINTS INCLUDING STORAGE)', part);
            IF to_regclass('django_sms2fa_message_default') IS NOT NULL THEN
                EXECUTE format(
                    'WITH moved AS (DELETE FROM django_sms2fa_message_default '
                    'WHERE created_at >= %L AND created_at < %L RETURNING *) '
                    'INSERT INTO %I SELECT * FROM moved', month_start, month_end, part);
            END IF;
            EXECUTE format(
                'ALTER TABLE django_sms2fa_message ATTACH PARTITION %I '
                'FOR VALUES FROM (%L) TO (%L)', part, month_start, month_end);
            added := added + 1;
        EXCEPTION WHEN invalid_object_definition THEN
            -- Another partition (the old table) covers part of this month:
            -- nothing to add (the block's own changes are undone).
            NULL;
        END;
    END LOOP;
    RETURN added;
END
$fn$;

-- Detach and drop every partition whose rows are all older than CUTOFF (its
-- upper bound is at or before it). Returns the partitions dropped and how
-- many rows each held, for the audit record.
CREATE OR REPLACE FUNCTION sms2fa_drop_message_partitions(cutoff timestamptz)
RETURNS TABLE (partition_name text, row_count bigint)
LANGUAGE plpgsql
AS $fn$
DECLARE
    part regclass;
    upper_bound timestamptz;
BEGIN
    FOR part, upper_bound IN
        SELECT c.oid::regclass,
               substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \(''([^'']+)''\)')::timestamptz
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'django_sms2fa_message'::regclass
        ORDER BY 2
    LOOP
        -- The default partition has no bound: never dropped here.
        CONTINUE WHEN upper_bound IS NULL OR upper_bound > cutoff;
        partition_name := part::text;
        EXECUTE format('SELECT count(*) FROM %s', part) INTO row_count;
        EXECUTE format('ALTER TABLE django_sms2fa_message DETACH PARTITION %s', part);
        EXECUTE format('DROP TABLE %s', part);
        RETURN NEXT;
    END LOOP;
END
$fn$;

DO $switch$
DECLARE
    old regclass := 'django_sms2fa_message'::regclass;
    bound timestamptz := (date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month')
        AT TIME ZONE 'UTC';
    next_id bigint;
    id_sequence text := pg_get_serial_sequence('django_sms2fa_message', 'id');
    pkey text;
    statements text[] := '{}';
    statement text;
    item record;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = old) = 'p' THEN
        RAISE NOTICE 'django_sms2fa_message is partitioned already';
        RETURN;
    END IF;
    LOCK TABLE django_sms2fa_message IN ACCESS EXCLUSIVE MODE;
    -- Check now what rows written earlier in this transaction left for the
    -- commit: ALTER TABLE refuses a table with pending trigger events.
    FOR item IN SELECT conname FROM pg_constraint WHERE conrelid = old AND contype = 'f' LOOP
        EXECUTE format('SET CONSTRAINTS %I IMMEDIATE', item.conname);
    END LOOP;

    -- What the partitioned table takes over, read while it still names the
    -- old table: every index but the primary key (the Django names stay on
    -- the partitioned table, so later migrations find them), foreign keys,
    -- triggers, and grants.
    FOR item IN
        SELECT i.indexrelid::regclass AS name, pg_get_indexdef(i.indexrelid) AS def
        FROM pg_index i
        WHERE i.indrelid = old AND NOT i.indisprimary
          AND i.indexrelid <> coalesce(to_regclass('django_sms2fa_message_id_created')::oid, 0)
    LOOP
        IF item.def LIKE 'CREATE UNIQUE%' THEN
            -- A unique index of a partitioned table must hold created_at.
            RAISE EXCEPTION 'unique index % must include created_at first: %', item.name, item.def;
        END IF;
        statements := statements || item.def;
        EXECUTE format('ALTER INDEX %s RENAME TO %I', item.name, left(item.name::text, 52) || '_legacy');
    END LOOP;
    FOR item IN
        SELECT conname, pg_get_constraintdef(oid) AS def
        FROM pg_constraint WHERE conrelid = old AND contype = 'f'
    LOOP
        statements := statements
            || format('ALTER TABLE django_sms2fa_message ADD CONSTRAINT %I %s', item.conname, item.def);
    END LOOP;
    FOR item IN
        SELECT tgname, pg_get_triggerdef(oid) AS def
        FROM pg_trigger WHERE tgrelid = old AND NOT tgisinternal
    LOOP
        statements := statements || item.def;
        -- Cloned back from the partitioned table when the old table is attached.
        EXECUTE format('DROP TRIGGER %I ON django_sms2fa_message', item.tgname);
    END LOOP;
    FOR item IN
        SELECT a.privilege_type, a.grantee
        FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = old AND a.grantee <> c.relowner
    LOOP
        statements := statements || format(
            'GRANT %s ON django_sms2fa_message TO %s', item.privilege_type,
            CASE WHEN item.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(item.grantee::regrole::text) END);
    END LOOP;

    -- The ids go on from where they were (rows are never renumbered).
    SELECT coalesce(max(id), 0) + 1 INTO next_id FROM django_sms2fa_message;
    IF id_sequence IS NOT NULL THEN
        EXECUTE format(
            'SELECT greatest(%s, CASE WHEN is_called THEN last_value + 1 ELSE last_value END) FROM %s',
            next_id, id_sequence)
            INTO next_id;
    END IF;
    IF (SELECT attidentity FROM pg_attribute WHERE attrelid = old AND attname = 'id') <> '' THEN
        ALTER TABLE django_sms2fa_message ALTER COLUMN id DROP IDENTITY;
    ELSE
        -- A serial column (a table made before Django 4.1): its sequence goes.
        ALTER TABLE django_sms2fa_message ALTER COLUMN id DROP DEFAULT;
        IF id_sequence IS NOT NULL THEN
            EXECUTE format('DROP SEQUENCE %s', id_sequence);
        END IF;
    END IF;

    -- The old table's primary key becomes (id, created_at), as on the
    -- partitioned table. IF NOT EXISTS: built beforehand, concurrently, on a
    -- big table.
    CREATE UNIQUE INDEX IF NOT EXISTS django_sms2fa_message_id_created
        ON django_sms2fa_message (id, created_at);
    SELECT conname INTO pkey FROM pg_constraint WHERE conrelid = old AND contype = 'p';
    EXECUTE format('ALTER TABLE django_sms2fa_message DROP CONSTRAINT %I', pkey);
    ALTER TABLE django_sms2fa_message ADD CONSTRAINT django_sms2fa_message_legacy_pkey
        PRIMARY KEY USING INDEX django_sms2fa_message_id_created;
    ALTER TABLE django_sms2fa_message RENAME TO django_sms2fa_message_legacy;

    CREATE TABLE django_sms2fa_message (
        LIKE django_sms2fa_message_legacy
        INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS
    ) PARTITION BY RANGE (created_at);
    EXECUTE format(
        'ALTER TABLE django_sms2fa_message ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY '
        '(START WITH %s)', next_id);
    EXECUTE format('ALTER TABLE django_sms2fa_message ADD CONSTRAINT %I PRIMARY KEY (id, created_at)',
        pkey);
    FOREACH statement IN ARRAY statements LOOP
        EXECUTE statement;
    END LOOP;

    -- PostgreSQL scans the old table once to check the bound, and attaches
    -- its indexes and foreign key to the partitioned table's (no rebuild).
    EXECUTE format(
        'ALTER TABLE django_sms2fa_message ATTACH PARTITION django_sms2fa_message_legacy '
        'FOR VALUES FROM (MINVALUE) TO (%L)', bound);
    -- A row no partition covers (the daily job did not run) lands here
    -- rather than fail the login that wrote it.
    CREATE TABLE django_sms2fa_message_default PARTITION OF django_sms2fa_message DEFAULT;
END
$switch$;

SELECT sms2fa_add_message_partitions(3);
