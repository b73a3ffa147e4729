"""Reporting on the warehouse: the views of retail_stream/sql/views.sql as
text tables, a chart of revenue by day and one JSON line of figures
(`python -m reporting`). Works against Redshift and the local PostgreSQL alike.
"""
