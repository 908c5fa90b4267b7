"""What the text fixtures of registry.yaml stream, as code: the offline model produces it, and the
conformance kit and the tests expect it, from this one definition."""


def text_tokens(count: int) -> list[str]:
    """The tokens of `asp-fixture:text N` and `asp-fixture:slow N MS`: 't0 ', 't1 ', ..."""
    return [f"t{number} " for number in range(count)]


def fixture_text(count: int) -> str:
    """The whole text those fixtures stream."""
    return "".join(text_tokens(count))
