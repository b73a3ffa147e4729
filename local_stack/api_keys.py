"""The development API key of a local stack (and of docker compose's): made
once, on the first `up`, kept beside the stack's data.

    <folder>/api-keys.json   the key file the API reads (API_KEYS_FILE): only the key's SHA-256
    <folder>/dev-api-key     the key itself, readable by this user only

`make up` prints it and `make env` exports it as RETAIL_API_KEY (what
`producer --via-api` and the README's curl lines use); it is never logged.
"""

from __future__ import annotations

import os
from pathlib import Path

from api.credentials import add_key, parse_keys, remove_key

KEYS_FILE = "api-keys.json"
KEY_FILE = "dev-api-key"
DEV_KEY_NAME = "dev"


def ensure_dev_key(folder: Path) -> tuple[Path, str]:
    """(the key file, the development key), made if the folder has none yet."""
    keys_file, key_file = folder / KEYS_FILE, folder / KEY_FILE
    if keys_file.exists() and key_file.exists():
        return keys_file, key_file.read_text().strip()
    folder.mkdir(parents=True, exist_ok=True)
    existing = keys_file.read_text() if keys_file.exists() else ""  # keys added with retail-api-keys stay
    if existing and DEV_KEY_NAME in {p.name for p in parse_keys(existing).values()}:
        existing = remove_key(existing, DEV_KEY_NAME)  # its key file is gone: a new one replaces it
    text, key = add_key(existing, DEV_KEY_NAME, ["ingest", "read"])
    _write_private(key_file, key + "\n")
    _write_private(keys_file, text)
    return keys_file, key


def dev_key(folder: Path) -> str | None:
    try:
        return (folder / KEY_FILE).read_text().strip() or None
    except OSError:
        return None


def _write_private(path: Path, text: str) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(text)
