"""`retail-api-keys`: create, list and revoke the API's keys, in a key file
(API_KEYS_FILE) or a Secrets Manager secret (API_KEYS_SECRET_ID).

    retail-api-keys create --name NAME [--client C] [--permissions ingest,read] [--producer-ids] (--file F | --secret-id S)
    retail-api-keys list   (--file F | --secret-id S)
    retail-api-keys revoke --name NAME (--file F | --secret-id S)

`create` prints the new key once, on stdout; only its SHA-256 is stored.
The API picks a change up within API_KEYS_RELOAD_SECONDS, without a restart.
Rotating a key: create a new one with the same --client (its event ids stay
the client's), hand it to the caller, then revoke the old one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Callable, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from api.credentials import CLIENT_PATTERN, PERMISSIONS, KeyFileError, add_key, parse_keys, remove_key
from retail_stream import aws
from retail_stream.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retail-api-keys", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a key; prints it once")
    create.add_argument("--name", required=True, help="the key's name (unique; logs and rate limits use it)")
    create.add_argument("--client", help="the event id namespace its writes land in (default: the name); "
                        "give a rotated key its predecessor's client")
    create.add_argument("--permissions", default="ingest,read", help=f"comma-separated: {', '.join(PERMISSIONS)}")
    create.add_argument("--producer-ids", action="store_true",
                        help="write the event ids retail-producer gives (for producer --via-api); no namespace")
    revoke = commands.add_parser("revoke", help="remove a key by name")
    revoke.add_argument("--name", required=True)
    commands.add_parser("list", help="the keys' names, clients and permissions (never the keys)")
    for command in (create, revoke, commands.choices["list"]):
        where = command.add_mutually_exclusive_group(required=True)
        where.add_argument("--file", help="a key file (API_KEYS_FILE); created when missing")
        where.add_argument("--secret-id", help="a Secrets Manager secret (API_KEYS_SECRET_ID); created when missing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "create":
        permissions = [p.strip() for p in args.permissions.split(",") if p.strip()]
        problem = next((f"unknown permission {p!r} (use {', '.join(PERMISSIONS)})" for p in permissions
                        if p not in PERMISSIONS), None)
        for label, value in (("--name", args.name), ("--client", args.client)):
            if value is not None and not CLIENT_PATTERN.match(value):
                problem = problem or f"{label} must match {CLIENT_PATTERN.pattern}"
        if problem or not permissions:
            print(f"retail-api-keys: error: {problem or '--permissions is empty'}", file=sys.stderr)
            return EXIT_USAGE
    store = FileStore(args.file) if args.file else SecretStore(args.secret_id)
    try:
        text = store.read()
        if args.command == "list":
            for principal in parse_keys(text).values():
                client = "(producer ids)" if principal.client is None else principal.client
                print(f"{principal.name}\tclient={client}\tpermissions={','.join(sorted(principal.permissions))}")
            return EXIT_OK
        if args.command == "revoke":
            store.write(remove_key(text, args.name))
            print(f"revoked {args.name}; the API stops taking it within API_KEYS_RELOAD_SECONDS", file=sys.stderr)
            return EXIT_OK
        if args.name in {p.name for p in parse_keys(text).values()}:
            raise KeyFileError(f"a key named {args.name!r} exists: revoke it first, or choose another name")
        updated, key = add_key(text, args.name, permissions, client=args.client, producer_ids=args.producer_ids)
        store.write(updated)
    except (KeyFileError, OSError, ClientError, BotoCoreError, json.JSONDecodeError) as exc:
        print(f"retail-api-keys: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(key)
    print(f"created {args.name}: the key above is shown once and stored only as its SHA-256", file=sys.stderr)
    return EXIT_OK


class FileStore:
    def __init__(self, path: str) -> None:
        self.path = path

    def read(self) -> str:
        try:
            with open(self.path, encoding="utf-8") as handle:
                return handle.read()
        except FileNotFoundError:
            return '{"keys": []}'

    def write(self, text: str) -> None:
        """Atomically (the API may be reading it), readable by this user only."""
        folder = os.path.dirname(os.path.abspath(self.path))
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".api-keys-")
        try:
            # The file the API reads keeps its mode and owner (a sudo'd revoke must not lock the API out of it).
            before = os.stat(self.path)
        except FileNotFoundError:
            before = None
        if before is not None:
            os.fchmod(descriptor, before.st_mode & 0o777)
            if hasattr(os, "fchown") and os.geteuid() == 0:
                os.fchown(descriptor, before.st_uid, before.st_gid)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, self.path)


class SecretStore:
    def __init__(self, secret_id: str, client: Callable[[], object] | None = None) -> None:
        self.secret_id = secret_id
        self._client = (client or (lambda: aws.client("secretsmanager", Settings.from_env())))()

    def read(self) -> str:
        try:
            return self._client.get_secret_value(SecretId=self.secret_id)["SecretString"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            self._client.create_secret(Name=self.secret_id, SecretString='{"keys": []}',
                                       Description="retail-stream API keys (SHA-256 only)")
            return '{"keys": []}'

    def write(self, text: str) -> None:
        self._client.put_secret_value(SecretId=self.secret_id, SecretString=text)


if __name__ == "__main__":
    sys.exit(main())
