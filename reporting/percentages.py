"""The percentage rule of every report figure and of the delivery progress.

A leaf, so that the page reads (`reporting.selectors`) need not import the report package, which imports
them for `delivery_get`.
"""


def percent(part: float, whole: float) -> float | None:
    """`part` as a percentage of `whole`, to two decimals; None when `whole` is 0."""
    return round(100 * part / whole, 2) if whole else None
