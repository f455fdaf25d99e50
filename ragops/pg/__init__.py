"""PostgreSQL drivers: what talks to one server and knows nothing of platforms or engines.

    pgctl.py     server processes and data directories (initdb, start/stop, base backups, server files)
    migrate.py   the migration runner (the service's SQL files, applied once each)
    conninfo.py  libpq connection strings: one builder that quotes the values that need it
    nodes.py     the configured nodes, by name
"""
