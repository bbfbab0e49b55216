"""`BEACON_DOMAIN_RATES`: the most messages per hour Beacon hands over for each recipient domain.

`gmail.com=20000/h,yahoo.com=5000/h`: comma-separated `domain=N/h`, the domain as `profiles.emails`
computes it (lower-cased, after the last `@`), N a whole number from 1 to `MAX_RATE_PER_HOUR`. Read
once, by the settings, which refuse to start with the error below: a rate that was meant and silently
ignored would let a mailbox provider throttle or block the sender. No Django import.
"""
import re

MAX_RATE_PER_HOUR = 100_000_000
_DOMAIN_RE = re.compile(r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+")
_RATE_RE = re.compile(r"([0-9]{1,12})\s*/\s*h")


def domain_rates_parse(text: str) -> dict[str, int]:
    """The rates of `text` by domain; raises ValueError naming the entry that is wrong and why."""
    rates: dict[str, int] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        domain, equals, rate = (piece.strip() for piece in entry.partition("="))
        domain = domain.lower()
        if not equals or not _DOMAIN_RE.fullmatch(domain):
            raise ValueError(f"BEACON_DOMAIN_RATES: {entry[:80]!r} is not domain=N/h (e.g. gmail.com=20000/h).")
        match = _RATE_RE.fullmatch(rate)
        if not match or not 1 <= int(match[1]) <= MAX_RATE_PER_HOUR:
            raise ValueError(
                f"BEACON_DOMAIN_RATES: the rate of {domain} must be N/h with N from 1 to {MAX_RATE_PER_HOUR} (got {rate[:40]!r})."
            )
        if domain in rates:
            raise ValueError(f"BEACON_DOMAIN_RATES: {domain} is given twice.")
        rates[domain] = int(match[1])
    return rates
