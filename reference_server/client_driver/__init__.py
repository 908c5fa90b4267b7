"""Drivers that put asp-client.js under `asp check-client` (spec/CLIENT-DRIVER.md).

`python -m reference_server.client_driver node` runs the client under Node,
`python -m reference_server.client_driver chromium` in headless Chromium (Debian's, through
Playwright). `--patch FILE` applies find/replace pairs to asp-client.js as it is loaded: the kit's
own tests make deliberately broken clients that way.
"""
