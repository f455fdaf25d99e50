"""High availability by an existing engine: Patroni + etcd (`database.ha: patroni`).

ragops never elects a leader itself: it starts etcd and one Patroni per database node, reads
Patroni's REST API for status, and sends the verbs (switchover, failover, pause) to it.
"""
