"""A minimal, independent ASP 1.1 server on the websockets library, written from `spec/` alone.

Read it in this order: `config` (what it is told), `handshake` and `admission` (who gets in),
`sessions` (numbering, replay, resume), `connection` (client messages and the clocks), `runs`
and `model` (what a run streams and stores), `sizing` (max_event_bytes), `store` (SQLite).
See README.md.
"""
