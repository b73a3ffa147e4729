-- The warehouse on Amazon Redshift: schema.sql's tables, laid out for Redshift.
-- {schema} and {table} are filled in (as quoted identifiers) from
-- WAREHOUSE_SCHEMA / WAREHOUSE_TABLE: `python -m local_stack warehouse-sql --dialect redshift`.
--
-- DISTKEY(event_id): rows spread evenly over the slices (a hash of 32 random
-- hex digits), and the load's merge joins the stage to the table on event_id,
-- so equal ids meet on one slice with no redistribution (the stage is made
-- LIKE the table and inherits the key). customer_id would skew: a quarter of
-- the rows have none. The reporting views only aggregate one table, so no
-- join asks for another key.
-- SORTKEY(invoice_date): the views filter and group by day, and the merge
-- looks for duplicates only between the stage's first and last invoice date
-- (a replayed row carries its original's date), so zone maps skip every
-- block outside that range: the cost of a load follows the batch, not the table.
-- Encodings: the sort key RAW (a compressed leading sort key column makes
-- range-restricted scans read more blocks); AZ64 for numbers and times,
-- ZSTD for free text and ids, BYTEDICT for country (a few dozen values).
-- No primary key or unique constraint, on purpose: Redshift never enforces
-- one, and the merge on (invoice_date, event_id) is what keeps replays out.

CREATE SCHEMA IF NOT EXISTS {schema};

CREATE TABLE IF NOT EXISTS {schema}.{table} (
    event_id      CHAR(32)       NOT NULL ENCODE ZSTD,
    invoice_no    VARCHAR(32)    NOT NULL ENCODE ZSTD,
    stock_code    VARCHAR(32)    NOT NULL ENCODE ZSTD,
    description   VARCHAR(1024)           ENCODE ZSTD,
    quantity      INTEGER        NOT NULL ENCODE AZ64,
    invoice_date  TIMESTAMP      NOT NULL ENCODE RAW,
    unit_price    DECIMAL(18, 4) NOT NULL ENCODE AZ64,
    customer_id   INTEGER                 ENCODE AZ64,
    country       VARCHAR(1024)           ENCODE BYTEDICT,
    source        VARCHAR(1024)  NOT NULL ENCODE ZSTD,
    line          BIGINT         NOT NULL ENCODE AZ64
)
DISTKEY (event_id)
SORTKEY (invoice_date);

-- The ledger: one row per object loaded, looked up by object_key in every
-- load; small, so on every node (DISTSTYLE ALL) and sorted by its key.
CREATE TABLE IF NOT EXISTS {schema}.load_ledger (
    object_key          VARCHAR(1024) NOT NULL ENCODE ZSTD,
    shard_id            VARCHAR(128)  NOT NULL ENCODE ZSTD,
    first_sequence      VARCHAR(128)  NOT NULL ENCODE ZSTD,
    first_sub_sequence  BIGINT        NOT NULL DEFAULT 0 ENCODE AZ64,
    last_sequence       VARCHAR(128)  NOT NULL ENCODE ZSTD,
    last_sub_sequence   BIGINT        NOT NULL DEFAULT 0 ENCODE AZ64,
    rows_in_object      INTEGER       NOT NULL ENCODE AZ64,
    rows_inserted       INTEGER       NOT NULL ENCODE AZ64,
    loaded_at           TIMESTAMP     NOT NULL ENCODE AZ64
)
DISTSTYLE ALL
SORTKEY (object_key);
