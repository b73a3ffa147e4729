"""moto's S3, made safe to read while it is being written, as S3 is.

Applied by the emulator (local_stack/emulator.py) before it serves; written
against moto 5.2 and refusing to start when what it replaces has moved.

moto keeps an object's bytes in one file buffer per object. Reading the
bytes (`FakeKey.value`) seeks to the start and reads, under the object's
lock; working out the ETag the first time (`FakeKey.etag`, e.g. while the
PutObject that stored it builds its answer) seeks and reads the same buffer
without the lock. When Hypercorn's threads do both at once, the reader finds
the buffer's position at its end and answers GetObject with an empty body
under the real object's checksum: botocore's FlexibleChecksumError
("calculated AAAAAA=="), seen in the chaos suite when a held request was
released while a restarted worker read the same object. One object's ETag
is now worked out under that object's lock.
"""

from __future__ import annotations


def apply() -> None:
    from moto.s3.models import FakeKey

    original = FakeKey.__dict__.get("etag")
    if not isinstance(original, property):
        raise RuntimeError("moto's FakeKey.etag has moved: local_stack/s3_fidelity.py needs a look")
    if getattr(original.fget, "_under_lock", False):
        return  # applied already

    def etag(self) -> str:
        with self.lock:
            return original.fget(self)

    etag._under_lock = True  # type: ignore[attr-defined]
    FakeKey.etag = property(etag)
