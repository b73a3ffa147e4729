"""Log rendering: JSON lines for machines, structlog's console renderer on a terminal."""

import io
import json
import re

import pytest
import structlog

from retail_stream import logs
from retail_stream.settings import Settings, SettingsError


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def logged(stream: io.StringIO, log_format: str) -> str:
    logs.configure("INFO", stream, log_format=log_format, service="test")
    try:
        structlog.get_logger("t").info("batch_written", records=3)
        return stream.getvalue().strip()
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()


@pytest.mark.parametrize("stream_type, log_format",
                         [(io.StringIO, "auto"), (Terminal, "json"), (io.StringIO, "json")])
def test_json_lines_unless_a_terminal_or_asked(stream_type, log_format):
    event = json.loads(logged(stream_type(), log_format))
    assert event["event"] == "batch_written" and event["records"] == 3 and event["service"] == "test"


@pytest.mark.parametrize("stream_type, log_format",
                         [(Terminal, "auto"), (io.StringIO, "console"), (Terminal, "console")])
def test_console_on_a_terminal_or_when_asked(stream_type, log_format):
    line = logged(stream_type(), log_format)
    with pytest.raises(ValueError):
        json.loads(line)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", line)
    assert "batch_written" in plain and "records=3" in plain and "service=test" in plain


def test_no_colour_codes_when_console_is_asked_off_a_terminal():
    assert "\x1b[" not in logged(io.StringIO(), "console")


def test_log_format_setting():
    assert Settings.from_env({}).log_format == "auto"
    assert Settings.from_env({"LOG_FORMAT": "console"}).log_format == "console"
    with pytest.raises(SettingsError, match="LOG_FORMAT"):
        Settings.from_env({"LOG_FORMAT": "pretty"})
