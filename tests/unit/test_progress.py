"""Progress lines: a bar redrawn in place on a terminal, plain lines elsewhere."""

import io

from retail_stream.progress import Progress, clock_text, progress_text


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_line_says_share_counts_rate_and_time_left():
    text = progress_text("drain", 250_000, 500_000, 125.0)
    assert text.startswith("drain  [############------------]   50%  250,000 / 500,000 rows")
    assert "2,000 rows/s" in text and "ETA 2:05" in text


def test_done_says_how_long_it_took_and_unknown_totals_count_up():
    assert progress_text("replay", 10, 10, 3725.0).endswith("in 1:02:05")
    assert progress_text("replay", 7, 0, 1.0) == "replay  7 rows  7 rows/s"
    assert "ETA --:--" in progress_text("drain", 0, 10, 5.0)
    assert clock_text(59.6) == "1:00"


def test_the_rate_is_that_of_the_last_stretch_not_of_a_slow_start():
    clock = Clock()
    out = Terminal()
    progress = Progress(out, "drain", 100_000, clock=clock)
    clock.now += 60
    progress.show(0)  # a minute of start-up with nothing done
    for step in range(1, 7):
        clock.now += 10
        progress.show(step * 10_000)
    last = out.getvalue().rsplit("\r", 1)[1]
    assert "60,000 / 100,000" in last
    assert "1,000 rows/s" in last and "ETA 0:40" in last  # 10,000 every 10 s, not 60,000 over 120 s


def test_a_terminal_gets_one_line_redrawn_a_log_gets_lines_now_and_then():
    clock = Clock()
    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        progress = Progress(stream, "replay", 100, clock=clock, line_interval=10)
        for done in range(0, 101, 10):
            clock.now += 1
            progress.show(done)
        progress.close(100)
    assert "\n" not in terminal.getvalue().rstrip("\n") and terminal.getvalue().count("\r") >= 10
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and "[" not in log.getvalue()
    assert len(lines) == 3 and lines[-1].endswith("in 0:11")  # the first, one 10 s on, and the close
