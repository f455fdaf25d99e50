"""The backup pipeline: named stages that stream bytes with flat memory.

    store:    reader -> compressor -> crypter -> hasher -> storage writer
    restore:  storage reader -> (hash check, a pre-pass) -> crypter -> compressor -> sink

A reader is any stage that yields a byte stream: today `pg_dump`'s stdout (ragops.backup.pg);
a physical backup is `pg_basebackup -Ft -D -` through the same CommandReader, and a WAL
segment could be a file reader. A sink is the reverse: `pg_restore`'s stdin today.

The crypter pumps (age's STREAM API reads a reader and writes a writer), so the compressor
is a reader wrapper on the way in and a writer wrapper on the way out. On the way in the
compressor runs on its own thread (Pump: 1 MiB chunks through a bounded queue), so that
compression and encryption + hashing + writing overlap on two cores as `pg_dump | zstd | age`
does. Pipes between us and the PostgreSQL tools are 1 MiB so they can run ahead.
"""
from __future__ import annotations

import hashlib
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Protocol

from ragops.errors import OperationFailed
from ragops.events import MaybeSay as Progress

PIPE_SIZE = 1024 * 1024


def size_text(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as the progress lines and the CLI show sizes)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def say(progress: Progress, message: str) -> None:
    if progress is not None:
        progress(message)


class Meter:
    """Bytes, rate, ETA and elapsed time, reported at most once a second."""

    def __init__(self, progress: Progress, verb: str, total: int | None = None, interval: float = 1.0):
        self.progress = progress
        self.verb = verb
        self.total = total
        self.interval = interval
        self.count = 0
        self.start = time.monotonic()
        self.last = self.start

    def add(self, n: int) -> None:
        self.count += n
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.progress(self.line())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = self.count / elapsed
        text = f"{self.verb} {size_text(self.count)}"
        if self.total:
            pct = min(100.0, 100.0 * self.count / self.total)
            eta = (self.total - self.count) / rate if rate > 0 else 0
            text += f" of {size_text(self.total)} ({pct:.0f}%), {size_text(rate)}/s, ETA {max(eta, 0):.0f}s"
        else:
            text += f", {size_text(rate)}/s"
        return text + f", elapsed {elapsed:.0f}s"

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start


# ---- stage interfaces -------------------------------------------------------------------------

class Reader(Protocol):
    """The first stage: a context manager whose `stream` yields the raw bytes. `finish()` is
    called after the stream is consumed, before the object is committed: raising there aborts
    the upload (a dump that exited non-zero must never be stored)."""
    name: str
    stream: CountingReader

    def __enter__(self) -> Reader: ...
    def __exit__(self, *exc) -> None: ...
    def finish(self) -> None: ...


class Sink(Protocol):
    """The last restore stage: a context manager with a writable `stdin`; `close_input()` ends
    the stream and `finish(error)` waits for the consumer, raising its own failure first."""
    name: str

    def __enter__(self) -> Sink: ...
    def __exit__(self, *exc) -> None: ...
    @property
    def stdin(self): ...
    def close_input(self) -> None: ...
    def finish(self, error: str | None = None) -> None: ...


# ---- stream adapters ------------------------------------------------------------------------

class CountingReader:
    """A read() wrapper counting what passes (the raw bytes a reader stage yields)."""

    def __init__(self, raw):
        self.raw = raw
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data

    def readinto(self, buffer) -> int:
        n = self.raw.readinto(buffer)
        self.count += n or 0
        return n


class ChunkReader:
    """The storage reader stage: read(n) over an iterator of chunks (an object streaming in)."""

    name = "storage"

    def __init__(self, chunks: Iterable[bytes], meter: Meter | None = None):
        self.chunks = iter(chunks)
        self.meter = meter
        self.buffer = memoryview(b"")

    def read(self, size: int = -1) -> bytes:
        while not self.buffer:          # an empty chunk is not the end of the stream
            try:
                chunk = next(self.chunks)
            except StopIteration:
                return b""
            if self.meter:
                self.meter.add(len(chunk))
            self.buffer = memoryview(chunk)
        if size is None or size < 0:
            size = len(self.buffer)
        out = bytes(self.buffer[:size])
        self.buffer = self.buffer[size:]
        return out


class Hasher:
    """The hasher stage: sha256 + byte count + meter on write(), then on to the storage writer."""

    name = "sha256"

    def __init__(self, out, meter: Meter | None = None):
        self.out = out
        self.meter = meter
        self.digest = hashlib.sha256()
        self.count = 0

    def write(self, data) -> int:
        self.digest.update(data)
        self.count += len(data)
        self.out.write(data)
        if self.meter:
            self.meter.add(len(data))
        return len(data)

    def flush(self) -> None:
        pass


def digest_of(chunks: Iterable[bytes], meter: Meter | None = None) -> tuple[str, int]:
    """sha256 and size of a stream of chunks (the restore side's hash check)."""
    digest = hashlib.sha256()
    size = 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        if meter:
            meter.add(len(chunk))
    return digest.hexdigest(), size


# ---- command stages (PostgreSQL tools) --------------------------------------------------------

def grow_pipe(pipe) -> None:
    """A 1 MiB pipe (Linux) instead of 64 KiB lets pg_dump/pg_restore run ahead of Python."""
    try:
        import fcntl

        fcntl.fcntl(pipe.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except (OSError, ImportError):
        pass


def stderr_tail(handle) -> str:
    """The first error line and the last line of a tool's stderr, redacted."""
    from ragops.secrets import redact

    handle.seek(0)
    lines = [ln for ln in handle.read().decode(errors="replace").splitlines() if ln.strip()]
    if not lines:
        return ""
    first = next((ln for ln in lines if "error" in ln.lower()), lines[-1])
    return redact(first if first == lines[-1] else f"{first} ... {lines[-1]}")


class _Command:
    """A tool run as a stage: stderr kept in a temp file for the error, killed if left running."""

    def __init__(self, name: str, argv: list[str], env: dict):
        self.name = name
        self.argv = argv
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.stderr: IO[bytes] | None = None

    def _start(self, **pipes) -> subprocess.Popen:
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process; closed in __exit__
        self.proc = subprocess.Popen(self.argv, stderr=self.stderr, env=self.env, bufsize=PIPE_SIZE, **pipes)
        return self.proc

    def _started(self) -> subprocess.Popen:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was used before it started")
        return self.proc

    def _raise_if_failed(self) -> None:
        code = self._started().wait()
        if code != 0:
            raise OperationFailed(f"{self.name} failed: {stderr_tail(self.stderr) or 'exit ' + str(code)}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.stderr is not None:
            self.stderr.close()


class CommandReader(_Command):
    """A reader stage: a command's stdout (pg_dump today; pg_basebackup -Ft -D - tomorrow)."""

    def __enter__(self) -> CommandReader:
        proc = self._start(stdout=subprocess.PIPE)
        grow_pipe(proc.stdout)
        self.stream = CountingReader(proc.stdout)
        return self

    def finish(self) -> None:
        self._raise_if_failed()


class CommandSink(_Command):
    """A sink stage: a command's stdin (pg_restore)."""

    def __enter__(self) -> CommandSink:
        proc = self._start(stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        grow_pipe(proc.stdin)
        return self

    @property
    def stdin(self) -> IO[bytes]:
        stdin = self._started().stdin
        assert stdin is not None   # started with stdin=PIPE
        return stdin

    def close_input(self) -> None:
        try:
            self.stdin.close()
        except OSError:
            pass

    def finish(self, error: str | None = None) -> None:
        """Wait for the command. Its own failure is the better message; else `error`, if any."""
        self._raise_if_failed()
        if error is not None:
            raise OperationFailed(error)


class Pump:
    """The compressing half of `store` on its own thread: PIPE_SIZE chunks of `source` (a reader of
    compressed bytes) through a bounded queue, read(n) on the other side (age asks for 8 KiB at a
    time). zstandard and the pipe reads release the GIL, so compression runs on one core while
    age, SHA-256 and the storage writer run on the other, as `pg_dump | zstd | age` does with three
    processes. Memory: at most QUEUE chunks in flight. A failure here ends the stream early and
    is raised by join(); stop() (the consumer failed or finished) makes the thread drop out."""

    QUEUE = 4

    def __init__(self, source, name: str):
        import queue
        import threading

        self.source = source
        self.name = name
        self.queue: queue.Queue = queue.Queue(self.QUEUE)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"ragops-{name}", daemon=True)
        self.error: BaseException | None = None
        self.chunk = b""
        self.pos = 0
        self.ended = False

    def start(self) -> None:
        self.thread.start()

    def _put(self, item) -> bool:
        import queue

        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            while True:
                chunk = self.source.read(PIPE_SIZE)
                if not chunk:
                    break
                if not self._put(chunk):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread by join()
            self.error = exc
        self._put(None)

    def read(self, size: int = -1) -> bytes:
        if self.pos >= len(self.chunk):
            if self.ended:
                return b""
            chunk = self.queue.get()
            if chunk is None:
                self.ended = True
                return b""
            self.chunk, self.pos = chunk, 0
        if size is None or size < 0:
            size = len(self.chunk) - self.pos
        out = self.chunk[self.pos:self.pos + size]
        self.pos += len(out)
        return out

    def stop(self) -> None:
        """The consumer is done (or failed): let the thread drop out of a blocked put."""
        import queue

        self.stopped.set()
        try:
            while True:
                self.queue.get_nowait()
        except queue.Empty:
            pass

    def join(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


# ---- the two directions -----------------------------------------------------------------------

@dataclass
class Stored:
    raw_bytes: int                   # what the reader yielded
    stored_bytes: int                # what reached storage
    sha256: str                      # of the stored object


def store(reader: Reader, compressor, crypter, storage, key: str, progress: Progress = None) -> Stored:
    """reader -> compressor | crypter -> hasher -> storage writer, the two halves on two threads.
    The object is committed only when every stage finished cleanly (the reader's exit status
    included); the first failure, in either thread, is the one raised."""
    pump: Pump | None = None
    try:
        with reader:
            pump = Pump(compressor.compress(reader.stream), compressor.name)
            with storage.writer(key) as out:
                hasher = Hasher(out, Meter(progress, "stored"))
                pump.start()
                try:
                    crypter.encrypt(pump, hasher)
                finally:
                    pump.stop()
                pump.join()              # raises the compressing thread's failure, if any
                reader.finish()          # raising here aborts the upload
    finally:
        if pump is not None:
            pump.stop()
        _end_stage(compressor, pump)
    return Stored(reader.stream.count, hasher.count, hasher.digest.hexdigest())


def _end_stage(compressor, pump: Pump | None) -> None:
    """A compressor that runs a tool (Zstd with the zstd CLI) ends it, then releases its pipes once
    the compressing thread is gone: no process, thread or descriptor outlives store()."""
    stop, close = getattr(compressor, "stop", None), getattr(compressor, "close", None)
    if stop is not None:
        stop()
    if pump is not None and pump.thread.ident is not None:
        pump.thread.join()
    if close is not None:
        close()


def restore(chunks: Iterable[bytes], crypter, compressor, sink: Sink, where: str, meter: Meter) -> None:
    """storage reader -> crypter -> compressor -> sink. The caller checks the digest first (the
    hash check runs as a pre-pass so a damaged object never reaches the target)."""
    with sink:
        writer = compressor.decompress(sink.stdin)
        try:
            crypter.decrypt(ChunkReader(chunks, meter), writer, where)
            writer.close()
            sink.close_input()
        except (OperationFailed, OSError, *compressor.errors()) as exc:
            sink.close_input()
            sink.finish(getattr(exc, "message", f"{where}: {exc}"))
        sink.finish()
