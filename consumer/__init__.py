"""The consumer: a KCL 3 MultiLangDaemon supervisor and its per-shard record
processor, fanning each batch out to DynamoDB, S3 and the warehouse."""
