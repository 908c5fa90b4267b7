"""The ASP conformance kit: judges any server at a ws:// URL; every verdict cites a requirement ID."""
