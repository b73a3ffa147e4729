"""The HTTP API beside the producer and the consumer: transactions in (into
the Kinesis stream, validated like the producer's CSV rows), transactions out
(from DynamoDB, by customer and by invoice). `python -m api` or `retail-api`."""
