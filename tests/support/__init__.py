"""Helpers the test suites share, one module per concept: waiting on events
(waiting), free ports (ports), and the fakes of the service's edges
(consumer_fakes, api_fakes, kinesis_fakes, clocks)."""
