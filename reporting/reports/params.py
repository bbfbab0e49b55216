"""Parsing of the request parameters of the reports that take some (a choice, a day)."""
import datetime as dt

from django.core.exceptions import ValidationError


def parse_choice(params: dict, name: str, choices, default: str) -> str:
    value = params.get(name) or default
    if value not in choices:
        raise ValidationError({name: [f"Must be one of: {', '.join(choices)}."]})
    return value


def parse_day(params: dict, name: str) -> dt.date | None:
    value = params.get(name)
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationError({name: ["Enter a date as YYYY-MM-DD."]}) from None
