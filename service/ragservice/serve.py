"""`python -m ragservice.serve --host H --port P`: uvicorn in-process, one process.

On SIGTERM uvicorn stops accepting, lets in-flight requests finish for up to
RAG_GRACEFUL_TIMEOUT seconds (default 30), then exits 0.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys

import uvicorn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ragservice.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default=os.environ.get("RAG_LOG_LEVEL", "info"))
    args = parser.parse_args(argv)

    from ragservice.logs import configure

    log_config = configure(args.log_level)   # JSON or text (RAG_LOG_FORMAT), secrets redacted
    from ragservice.app import app, settings   # after logging, so start-up messages show

    config = uvicorn.Config(app, host=args.host, port=args.port, workers=1, log_level=args.log_level,
                            log_config=log_config,
                            timeout_graceful_shutdown=settings.graceful_timeout, server_header=False,
                            access_log=os.environ.get("RAG_ACCESS_LOG", "1") != "0", lifespan="on")
    server = uvicorn.Server(config)
    # uvicorn re-raises the SIGTERM it handled once it has drained; a no-op handler underneath
    # turns that into a clean exit 0 instead of death by signal
    signal.signal(signal.SIGTERM, lambda *_: None)
    server.run()
    # uvicorn reports a failed start-up (port taken, lifespan error) by not having started
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
