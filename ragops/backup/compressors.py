"""Compressor stages, by name. The manifest records the name (`compression.algorithm`), and
verify/restore pick the stage from it, so adding lz4 is a class here plus one registry line.

The crypter stage pumps (it reads a reader and writes a writer), so a compressor wraps the
stream on each side of it: compress(source) is a reader of compressed bytes, decompress(sink)
is a writer that passes plain bytes on to `sink`.
"""
from __future__ import annotations

from typing import Protocol

from ragops.backup.pipeline import PIPE_SIZE
from ragops.errors import OperationFailed

DEFAULT = "zstd"                     # what a manifest without the field was written with


class Compressor(Protocol):
    name: str
    level: int | None

    def compress(self, source):
        """A reader of the compressed form of everything `source.read()` yields."""

    def decompress(self, sink):
        """A writer (write returns the bytes consumed; close() at the end, `sink` stays open) that
        decompresses into `sink`."""

    def errors(self) -> tuple[type[BaseException], ...]:
        """Exceptions that mean the compressed stream is damaged."""

    def manifest_fields(self) -> dict:
        """What the manifest's `compression` records (the name as `algorithm`)."""


class _Writer:
    """write() returns the bytes consumed (what pyrage expects); close() flushes what is left
    into the sink (which stays open). flush() is a no-op: a flush per chunk would cost syscalls."""

    def __init__(self, out):
        self.out = out

    def write(self, data) -> int:
        self.out.write(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.out.flush()


class _ReadAhead:
    """read(n) served from 1 MiB reads of `raw`. The age stage asks for 8 KiB at a time, and a
    compressor call per 8 KiB cost about 15 % more CPU than the compression itself needs."""

    def __init__(self, raw, size: int):
        self.raw = raw
        self.size = size
        self.buffer = b""
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        if self.pos >= len(self.buffer):
            self.buffer = self.raw.read(self.size)
            self.pos = 0
            if not self.buffer:
                return b""
        if n is None or n < 0:
            n = len(self.buffer) - self.pos
        out = self.buffer[self.pos:self.pos + n]
        self.pos += len(out)
        return out


class Zstd:
    """zstandard, single-threaded, level from backups.compression_level (default 3)."""

    name = "zstd"

    def __init__(self, level: int | None = 3):
        self.level = level if level is not None else 3

    def compress(self, source):
        import zstandard

        reader = zstandard.ZstdCompressor(level=self.level).stream_reader(source, read_size=PIPE_SIZE)
        return _ReadAhead(reader, PIPE_SIZE)

    def decompress(self, sink):
        import zstandard

        return _Writer(zstandard.ZstdDecompressor().stream_writer(sink, write_size=PIPE_SIZE, closefd=False))

    def errors(self) -> tuple[type[BaseException], ...]:
        import zstandard

        return (zstandard.ZstdError,)

    def manifest_fields(self) -> dict:
        return {"algorithm": self.name, "level": self.level}


COMPRESSORS: dict[str, type] = {"zstd": Zstd}


def get_compressor(name: str | None, level: int | None = None, where: str = "backups") -> Compressor:
    """The compressor called `name` (None: the default); an unknown name is an error naming it."""
    name = name or DEFAULT
    cls = COMPRESSORS.get(name)
    if cls is None:
        raise OperationFailed(f"{where}: unknown compressor {name!r} (known: {', '.join(sorted(COMPRESSORS))})")
    return cls(level)
