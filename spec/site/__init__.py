"""The spec as a static HTML site (`asp spec site OUT/`), generated from the spec files and checked.

A tool over spec/, like spec/typescript.py: it reads only the canonical files (through the same
loaders every other consumer uses) and imports nothing above spec. Its rendering dependencies
(markdown-it-py, mdit-py-plugins, Jinja2) load only when the site is built.
"""
