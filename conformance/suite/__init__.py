"""The packaged conformance suite for pytest: `pytest --pyargs conformance.suite --asp-url URL`."""
