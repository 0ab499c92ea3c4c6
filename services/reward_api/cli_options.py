"""Command-line option parsers shared by several ``rlrf`` subcommands (``score``, ``audit``)."""

from __future__ import annotations

from services.reward_api.core.errors import InputError

__all__ = ["parse_weights"]


def parse_weights(items: list[str]) -> dict[str, float]:
    """``--weight NAME=NUMBER`` options as a weights mapping.

    Raises:
        InputError: an item is not ``NAME=NUMBER``.

    >>> parse_weights(["pixel_l2=2", "length=0.5"])
    {'pixel_l2': 2.0, 'length': 0.5}
    """
    weights = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            weights[name] = float(value)
        except ValueError:
            raise InputError(f"--weight expects NAME=NUMBER, got {item!r}") from None
    return weights
