"""`retail-redrive` / `python -m redrive`: list dead letters and send chosen
ones again, once fixed, through the stream and so through every sink.

letters.py is the pure part (a stored dead letter, its event id, what a
re-drive would send or why it is refused, the mark); store.py reads and marks
dead letters in S3; cli.py is the composition root.
"""
