"""Examples of ASP built outside this repository's reference stack (not part of the installed wheel)."""
