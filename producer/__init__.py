"""The producer: replays Online Retail CSV files into a Kinesis stream.

`csv_source` reads rows, `retail_stream.schema.parse_row` types them,
`batching` packs them into PutRecords calls, `kinesis_writer` sends them with
retries, `pacing` spaces them out, `replay` runs that flow and `cli` wires it
to the command line.
"""
