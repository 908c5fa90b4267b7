"""The server's sans-I/O decision core: no sockets, no clock, no database.

- `connection`: the state machine of one connection (frames, timers, run ends in; effects out)
- `handshake`: version selection, refusal precedence, the token that counts, conversation binding
- `effects`: what the core asks the endpoint to do (send, close, start or cancel a run, resume)
- `inbound`: any client frame to a command or the error the spec prescribes, never raising
- `jsontext`: JSON of any depth, read without recursion
- `ratelimit`: the sliding window of ASP-LIM-009 as arithmetic
- `sizing`: events within max_event_bytes (ASP-LIM-011)
- `wire`: the one encoder of server events; `events`: their builders; `browser`: asp-protocol.js
"""
