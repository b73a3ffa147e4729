-- The reporting views the dashboards and `python -m reporting` read: the same
-- SQL on Amazon Redshift and on the local PostgreSQL. {schema} and {table} are
-- filled in (as quoted identifiers) from WAREHOUSE_SCHEMA / WAREHOUSE_TABLE,
-- as in schema.sql. Provisioning runs this file after schema.sql on every
-- start: CREATE OR REPLACE keeps it idempotent. Both engines refuse a
-- CREATE OR REPLACE that renames, retypes or drops a view's column (adding
-- one at the end is fine): such a change needs DROP VIEW ... CASCADE first.
--
-- Portable on purpose: no FILTER clause, DISTINCT ON, :: casts, set-returning
-- functions or date_trunc; conditional aggregates are SUM/COUNT over CASE;
-- days are CAST(invoice_date AS DATE) (invoice dates carry no time zone).
--
-- How the data set's rows count. One rule, in report_lines.line_kind:
--   sale              an ordinary invoice line with a positive quantity.
--   cancellation      InvoiceNo starting with 'C': a negative quantity at the
--                     price of the line it reverses. It counts on the day it
--                     was made (the data set does not link it to its sale).
--                     Money: gross = sales, cancelled = the cancellations'
--                     value as a positive amount, net = gross - cancelled.
--   adjustment        InvoiceNo starting with 'A' ("Adjust bad debt"): an
--                     accounting entry, often at a negative unit price, with
--                     no customer and no goods. Not revenue, not a product,
--                     not a customer's spending: only in report_adjustments,
--                     so a write-off never shows up as a sale or a refund.
--   stock_correction  any other line whose quantity is not positive: stock
--                     written off or found (damaged, lost, "?"), at price 0
--                     and without a customer in the data set. Like
--                     adjustments, only in report_adjustments, so it never
--                     lowers the quantities sold.
-- Rows without a customer (customer_id NULL, a third of the data set) count
-- in every revenue and product figure; report_revenue_by_day_country says how
-- much of the net revenue they are. They are left out of report_customers:
-- they are many unknown buyers, not one customer.
-- A missing country is shown as 'Unspecified', the data set's own label.


-- Every line with the rules above applied: the base of the other views and a
-- place for ad-hoc questions.
--   amount          quantity * unit_price, exact (negative for cancellations)
--   is_merchandise  false for stock codes that are money but not goods:
--                   postage (POST, DOT, C2), fees (BANK CHARGES, AMAZONFEE,
--                   CRUK), manual entries (M, m), discounts (D), samples (S)
--                   and bad debt (B). They count in revenue and in customers'
--                   value, never among products.
CREATE OR REPLACE VIEW {schema}.report_lines AS
SELECT
    event_id,
    invoice_no,
    stock_code,
    description,
    quantity,
    invoice_date,
    CAST(invoice_date AS DATE) AS invoice_day,
    unit_price,
    quantity * unit_price AS amount,
    customer_id,
    COALESCE(country, 'Unspecified') AS country,
    CASE
        WHEN invoice_no LIKE 'A%' THEN 'adjustment'
        WHEN invoice_no LIKE 'C%' THEN 'cancellation'
        WHEN quantity > 0 THEN 'sale'
        ELSE 'stock_correction'
    END AS line_kind,
    CASE
        WHEN stock_code IN ('POST', 'DOT', 'C2', 'BANK CHARGES', 'AMAZONFEE', 'CRUK', 'M', 'm', 'D', 'S', 'B')
            THEN FALSE
        ELSE TRUE
    END AS is_merchandise
FROM {schema}.{table};


-- Revenue per day and country, sales and cancellations only.
--   orders / cancellations  distinct sale / cancellation invoices
--   customers               distinct known customers with a line that day
--   net_revenue_without_customer  the part of net_revenue from rows with no
--                           customer_id (guest checkouts)
-- The columns add up over days and countries; a dashboard sums them for any
-- roll-up (a rate is computed from the sums, never averaged).
CREATE OR REPLACE VIEW {schema}.report_revenue_by_day_country AS
SELECT
    invoice_day AS day,
    country,
    COUNT(DISTINCT CASE WHEN line_kind = 'sale' THEN invoice_no END) AS orders,
    COUNT(DISTINCT CASE WHEN line_kind = 'cancellation' THEN invoice_no END) AS cancellations,
    COUNT(DISTINCT customer_id) AS customers,
    SUM(CASE WHEN line_kind = 'sale' THEN amount ELSE 0 END) AS gross_revenue,
    0 - SUM(CASE WHEN line_kind = 'cancellation' THEN amount ELSE 0 END) AS cancelled_revenue,
    SUM(amount) AS net_revenue,
    SUM(CASE WHEN customer_id IS NULL THEN amount ELSE 0 END) AS net_revenue_without_customer
FROM {schema}.report_lines
WHERE line_kind IN ('sale', 'cancellation')
GROUP BY invoice_day, country;


-- One row per product (merchandise stock code), sales and cancellations
-- only, ranked by net revenue and by net quantity (RANK: ties share a rank;
-- "top 10" is WHERE revenue_rank <= 10). The description is the one most of
-- the code's sale lines carry (ties: the greatest): the data set spells some
-- codes several ways and puts notes on a few lines ("website fixed" on one
-- line of 23084, whose other lines name the product). A code without a
-- described sale line takes the greatest description of its other lines.
CREATE OR REPLACE VIEW {schema}.report_products AS
SELECT
    products.stock_code,
    COALESCE(named.description, products.any_description) AS description,
    orders,
    quantity_sold,
    quantity_cancelled,
    net_quantity,
    gross_revenue,
    cancelled_revenue,
    net_revenue,
    RANK() OVER (ORDER BY net_revenue DESC) AS revenue_rank,
    RANK() OVER (ORDER BY net_quantity DESC) AS quantity_rank
FROM (
    SELECT
        stock_code,
        MAX(description) AS any_description,
        COUNT(DISTINCT CASE WHEN line_kind = 'sale' THEN invoice_no END) AS orders,
        SUM(CASE WHEN line_kind = 'sale' THEN quantity ELSE 0 END) AS quantity_sold,
        0 - SUM(CASE WHEN line_kind = 'cancellation' THEN quantity ELSE 0 END) AS quantity_cancelled,
        SUM(quantity) AS net_quantity,
        SUM(CASE WHEN line_kind = 'sale' THEN amount ELSE 0 END) AS gross_revenue,
        0 - SUM(CASE WHEN line_kind = 'cancellation' THEN amount ELSE 0 END) AS cancelled_revenue,
        SUM(amount) AS net_revenue
    FROM {schema}.report_lines
    WHERE line_kind IN ('sale', 'cancellation') AND is_merchandise
    GROUP BY stock_code
) AS products
LEFT JOIN (
    SELECT stock_code, description
    FROM (
        SELECT
            stock_code,
            description,
            ROW_NUMBER() OVER (PARTITION BY stock_code ORDER BY COUNT(*) DESC, description DESC) AS pick
        FROM {schema}.report_lines
        WHERE line_kind = 'sale' AND is_merchandise AND description IS NOT NULL
        GROUP BY stock_code, description
    ) AS counted
    WHERE pick = 1
) AS named ON named.stock_code = products.stock_code;


-- One row per known customer: order count and lifetime value (net of
-- cancellations, postage and discounts included: what the customer paid).
-- A customer whose only lines are cancellations (of orders before the data
-- starts) is kept: 0 orders, a negative value. first/last_order_day are NULL
-- for them.
CREATE OR REPLACE VIEW {schema}.report_customers AS
SELECT
    customer_id,
    COUNT(DISTINCT CASE WHEN line_kind = 'sale' THEN invoice_no END) AS orders,
    COUNT(DISTINCT CASE WHEN line_kind = 'cancellation' THEN invoice_no END) AS cancellations,
    MIN(CASE WHEN line_kind = 'sale' THEN invoice_day END) AS first_order_day,
    MAX(CASE WHEN line_kind = 'sale' THEN invoice_day END) AS last_order_day,
    SUM(CASE WHEN line_kind = 'sale' THEN amount ELSE 0 END) AS gross_revenue,
    0 - SUM(CASE WHEN line_kind = 'cancellation' THEN amount ELSE 0 END) AS cancelled_revenue,
    SUM(amount) AS lifetime_value
FROM {schema}.report_lines
WHERE line_kind IN ('sale', 'cancellation') AND customer_id IS NOT NULL
GROUP BY customer_id;


-- Cancellation rates per country over the whole period. Per country, not per
-- day and country: a country-day holds a handful of invoices, so its rate is
-- mostly 0 or 100 % and says nothing; the daily trend comes from
-- report_revenue_by_day_country's additive columns
-- (SUM(cancelled_revenue) / SUM(gross_revenue) per day).
--   revenue_cancellation_rate  cancelled_revenue / gross_revenue: the share of
--                              the money sold that came back (the headline)
--   invoice_cancellation_rate  cancellations / (orders + cancellations): the
--                              share of invoices that are cancellations
-- Both are fractions rounded to 4 places, NULL when the denominator is 0.
-- The DECIMAL(18, 4) casts keep Redshift's quotient (DECIMAL(37, 19)) under
-- its 38-digit limit, and make the count ratio a decimal, not an integer
-- division.
CREATE OR REPLACE VIEW {schema}.report_cancellations_by_country AS
SELECT
    country,
    orders,
    cancellations,
    gross_revenue,
    cancelled_revenue,
    ROUND(
        CAST(cancelled_revenue AS DECIMAL(18, 4)) / NULLIF(CAST(gross_revenue AS DECIMAL(18, 4)), 0), 4
    ) AS revenue_cancellation_rate,
    ROUND(
        CAST(cancellations AS DECIMAL(18, 4)) / NULLIF(CAST(orders + cancellations AS DECIMAL(18, 4)), 0), 4
    ) AS invoice_cancellation_rate
FROM (
    SELECT
        country,
        COUNT(DISTINCT CASE WHEN line_kind = 'sale' THEN invoice_no END) AS orders,
        COUNT(DISTINCT CASE WHEN line_kind = 'cancellation' THEN invoice_no END) AS cancellations,
        SUM(CASE WHEN line_kind = 'sale' THEN amount ELSE 0 END) AS gross_revenue,
        0 - SUM(CASE WHEN line_kind = 'cancellation' THEN amount ELSE 0 END) AS cancelled_revenue
    FROM {schema}.report_lines
    WHERE line_kind IN ('sale', 'cancellation')
    GROUP BY country
) AS by_country;


-- What the revenue figures leave out, one row per invoice: bad-debt
-- adjustments and stock corrections (line_kind), with their quantity and
-- amount, so the ledger still adds up: net revenue + SUM(amount) here =
-- SUM(amount) of every line in the table.
CREATE OR REPLACE VIEW {schema}.report_adjustments AS
SELECT
    invoice_day AS day,
    invoice_no,
    line_kind,
    country,
    MAX(description) AS description,
    COUNT(*) AS lines,
    SUM(quantity) AS quantity,
    SUM(amount) AS amount
FROM {schema}.report_lines
WHERE line_kind IN ('adjustment', 'stock_correction')
GROUP BY invoice_day, invoice_no, line_kind, country;
