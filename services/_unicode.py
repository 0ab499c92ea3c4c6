"""Strings both services echo or send on as UTF-8: a lone surrogate (``"\\udcff"``) is a 422, not a 500.

Dependency-free beyond pydantic, so the judge proxy's client (which imports its schemas) stays light.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator


def encodable(text: str) -> str:
    """``text`` unchanged, or ValueError naming the first lone surrogate."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"not valid Unicode: a lone surrogate at position {exc.start}") from None
    return text


Utf8Str = Annotated[str, AfterValidator(encodable)]
"""A string that can be written as UTF-8 (no lone surrogates): for values echoed or sent on."""
