-- The warehouse on PostgreSQL (the local stand-in for Redshift; the tests run
-- this DDL). schema.redshift.sql is the same tables laid out for Redshift.
-- {schema}, {table} and {index} are filled in (as quoted identifiers) from
-- WAREHOUSE_SCHEMA / WAREHOUSE_TABLE.

CREATE SCHEMA IF NOT EXISTS {schema};

-- One row per source row. No primary key or unique constraint, on purpose:
-- Redshift accepts such constraints but never enforces them, so the load's
-- merge on event_id (consumer/sinks/warehouse.py), not a constraint, is what
-- keeps replays from adding duplicates, on both engines alike. It looks for
-- duplicates only between the stage's first and last invoice date, by
-- (invoice_date, event_id): on PostgreSQL this index answers it, as the sort
-- key's zone maps do on Redshift, so a load's cost follows the batch.
CREATE TABLE IF NOT EXISTS {schema}.{table} (
    event_id      CHAR(32)       NOT NULL,
    invoice_no    VARCHAR(32)    NOT NULL,
    stock_code    VARCHAR(32)    NOT NULL,
    description   VARCHAR(1024),
    quantity      INTEGER        NOT NULL,
    invoice_date  TIMESTAMP      NOT NULL,
    unit_price    DECIMAL(18, 4) NOT NULL,
    customer_id   INTEGER,
    country       VARCHAR(1024),
    source        VARCHAR(1024)  NOT NULL,
    line          BIGINT         NOT NULL
);

CREATE INDEX IF NOT EXISTS {index} ON {schema}.{table} (invoice_date, event_id);

-- One row per S3 object loaded: which batch (its first and last positions in
-- the shard: sequence and sub-sequence number, the sub-sequence telling user
-- records of one KPL aggregate apart), how many rows it held and how many
-- were new. A replayed object is recognised here and skipped.
CREATE TABLE IF NOT EXISTS {schema}.load_ledger (
    object_key          VARCHAR(1024) NOT NULL,
    shard_id            VARCHAR(128)  NOT NULL,
    first_sequence      VARCHAR(128)  NOT NULL,
    first_sub_sequence  BIGINT        NOT NULL DEFAULT 0,
    last_sequence       VARCHAR(128)  NOT NULL,
    last_sub_sequence   BIGINT        NOT NULL DEFAULT 0,
    rows_in_object      INTEGER       NOT NULL,
    rows_inserted       INTEGER       NOT NULL,
    loaded_at           TIMESTAMP     NOT NULL
);
