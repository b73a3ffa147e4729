"""What the producer and the consumer share: the record schema, settings,
AWS client set-up and logging."""
