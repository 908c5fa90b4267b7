"""`asp check-client`: the conformance kit for ASP clients.

A scripted, deliberately misbehaving server (server.py) plays one scenario at a time (cases/)
against the client under test, run as a process that speaks the driver contract of
spec/CLIENT-DRIVER.md (process.py); what the client does on the wire and what it reports become
findings against the catalog's client requirements, in the server kit's Report.
"""
