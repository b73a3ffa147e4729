"""Reconciliation: do the raw zone, DynamoDB and the warehouse hold the same transactions?"""
