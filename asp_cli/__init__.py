"""`asp`: one command line in front of the spec tools, the server, the conformance kit and load tests."""
