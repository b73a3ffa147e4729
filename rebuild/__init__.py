"""Rebuild DynamoDB or the warehouse from the S3 raw zone."""
