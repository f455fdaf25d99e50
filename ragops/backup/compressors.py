"""Compressor stages, by name. The manifest records the name (`compression.algorithm`), and
verify/restore pick the stage from it, so adding lz4 is a class here plus one registry line.

The crypter stage pumps (it reads a reader and writes a writer), so a compressor wraps the
stream on each side of it: compress(source) is a reader of compressed bytes, decompress(sink)
is a writer that passes plain bytes on to `sink`.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import threading
from typing import Protocol

from ragops.backup.pipeline import PIPE_SIZE, grow_pipe, stderr_tail
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


def zstd_tool() -> str | None:
    """The zstd command-line tool, when installed. Measured on the service-shaped dataset, the
    Debian zstd (1.5.4) compressed the same dump at level 3 with about 0.8x the CPU of the libzstd
    bundled in the zstandard wheel, so compression runs in that process when it is there."""
    return shutil.which("zstd")


def _splice_all(source, stdin) -> bool:
    """Move everything from `source` (a CountingReader over a command's stdout pipe, nothing read
    from it yet) into the tool's stdin pipe inside the kernel (os.splice), counting the bytes: the
    data no longer passes through Python twice. False, having moved nothing, for any other source."""
    raw = getattr(source, "raw", None)
    if not hasattr(os, "splice") or raw is None or getattr(source, "count", None) != 0:
        return False
    try:
        fd = raw.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False
    except (AttributeError, OSError, ValueError):
        return False
    out = stdin.fileno()
    while True:
        moved = os.splice(fd, out, PIPE_SIZE)
        if not moved:
            return True
        source.count += moved


class _CommandCompressed:
    """read(n) of `zstd -c`'s stdout while a feeder thread writes what `source.read()` yields into
    its stdin (the source is read here, in Python, so the reader stage still counts the raw bytes).
    At the end of the stream the tool's exit status counts: a failure raises, naming the stage."""

    def __init__(self, argv: list[str], source):
        self.source = source
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
                                     bufsize=0)
        grow_pipe(self.proc.stdin)
        grow_pipe(self.proc.stdout)
        self.error: BaseException | None = None
        self.done = False
        self.thread = threading.Thread(target=self._feed, name="ragops-zstd-feed", daemon=True)
        self.thread.start()

    def _feed(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None   # started with stdin=PIPE
        try:
            if _splice_all(self.source, stdin):
                return
            while True:
                chunk = self.source.read(PIPE_SIZE)
                if not chunk:
                    break
                stdin.write(chunk)
        except BrokenPipeError:
            pass                   # zstd ended early: its exit status says why
        except BaseException as exc:  # noqa: BLE001 - raised on the reading side at the end
            self.error = exc
            self.proc.kill()
        finally:
            try:
                stdin.close()
            except OSError:
                pass

    def read(self, size: int = -1) -> bytes:
        if self.done:
            return b""
        stdout = self.proc.stdout
        assert stdout is not None   # started with stdout=PIPE
        data = stdout.read(PIPE_SIZE if size is None or size < 0 else size)
        if not data:
            self.done = True
            self.thread.join()
            code = self.proc.wait()
            if self.error is not None:
                raise self.error
            if code != 0:
                raise OperationFailed(f"zstd failed: {stderr_tail(self.stderr) or 'exit ' + str(code)}")
        return data

    def stop(self) -> None:
        """End the tool and the feeder (the consumer finished or failed); a read() blocked on the
        tool's output then returns. Safe while another thread reads."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.thread.join()

    def close(self) -> None:
        """stop(), then release the pipes: only once nothing reads any more."""
        self.stop()
        stdout = self.proc.stdout
        if stdout is not None:
            stdout.close()
        self.stderr.close()


class Zstd:
    """zstandard, level from backups.compression_level (default 3). Compresses in the zstd
    command-line tool when it is installed (`-T<threads>`: backups.compression_threads workers for
    base backups and dumps, one for WAL segments), else in-process on one thread.
    One object serves one store() at a time (the WAL shipper reuses one, segment after segment):
    store() ends the tool processes this object started."""

    name = "zstd"

    def __init__(self, level: int | None = 3, threads: int = 1):
        self.level = level if level is not None else 3
        self.threads = threads
        self._running: list[_CommandCompressed] = []

    def compress(self, source):
        tool = zstd_tool()
        if tool:
            argv = [tool, "-q", "-c", f"-{self.level}", f"-T{self.threads}"] + (["--ultra"] if self.level > 19 else [])
            running = _CommandCompressed(argv, source)
            self._running.append(running)
            return running
        import zstandard

        reader = zstandard.ZstdCompressor(level=self.level).stream_reader(source, read_size=PIPE_SIZE)
        return _ReadAhead(reader, PIPE_SIZE)

    def stop(self) -> None:
        """End the tool processes compress() started (the pipeline, when the stream is done or
        failed; a read blocked on one of them then returns)."""
        for running in self._running:
            running.stop()

    def close(self) -> None:
        """stop(), then release their pipes (the pipeline, once its compressing thread ended)."""
        while self._running:
            self._running.pop().close()

    def decompress(self, sink):
        import zstandard

        return _Writer(zstandard.ZstdDecompressor().stream_writer(sink, write_size=PIPE_SIZE, closefd=False))

    def errors(self) -> tuple[type[BaseException], ...]:
        import zstandard

        return (zstandard.ZstdError,)

    def manifest_fields(self) -> dict:
        return {"algorithm": self.name, "level": self.level}


COMPRESSORS: dict[str, type] = {"zstd": Zstd}


def get_compressor(name: str | None, level: int | None = None, where: str = "backups", threads: int = 1) -> Compressor:
    """The compressor called `name` (None: the default); an unknown name is an error naming it.
    `threads`: worker threads for compressing (decompression uses one)."""
    name = name or DEFAULT
    cls = COMPRESSORS.get(name)
    if cls is None:
        raise OperationFailed(f"{where}: unknown compressor {name!r} (known: {', '.join(sorted(COMPRESSORS))})")
    return cls(level, threads)
