"""Load tests and benchmarks of ASP servers (Locust scenarios, asp bench)."""
