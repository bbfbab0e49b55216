"""`BEACON_DOMAIN_RATES`, parsed when the settings load: the rates, or a start-up error naming the entry."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from beacon.send_rates import MAX_RATE_PER_HOUR, domain_rates_parse

ROOT = Path(__file__).resolve().parent.parent


def test_rates_by_domain_lower_cased_with_spaces_and_empty_entries_allowed():
    assert domain_rates_parse(" Gmail.com = 20000/h , yahoo.com=5000 / h,,") == {"gmail.com": 20000, "yahoo.com": 5000}
    assert domain_rates_parse("") == {}


@pytest.mark.parametrize("text, message", [
    ("gmail.com", "is not domain=N/h"),
    ("=5/h", "is not domain=N/h"),
    ("gmail=5/h", "is not domain=N/h"),
    ("gm ail.com=5/h", "is not domain=N/h"),
    ("../etc/passwd=5/h", "is not domain=N/h"),
    ("gmail.com\x00=5/h", "is not domain=N/h"),
    ("<script>.com=5/h", "is not domain=N/h"),
    ("gmail.com=5", "must be N/h"),
    ("gmail.com=5/m", "must be N/h"),
    ("gmail.com=0/h", "must be N/h"),
    ("gmail.com=-5/h", "must be N/h"),
    ("gmail.com=1.5/h", "must be N/h"),
    (f"gmail.com={MAX_RATE_PER_HOUR + 1}/h", "must be N/h"),
    ("gmail.com=" + "9" * 400 + "/h", "must be N/h"),
    ("gmail.com=5/h,GMAIL.com=6/h", "given twice"),
    ("x" * 100_000, "is not domain=N/h"),
])
def test_a_malformed_entry_is_refused_naming_it(text, message):
    with pytest.raises(ValueError, match=message):
        domain_rates_parse(text)


def test_settings_refuse_to_load_with_a_malformed_rate():
    environment = {**os.environ, "BEACON_DOMAIN_RATES": "gmail.com=lots", "DJANGO_SETTINGS_MODULE": "beacon.settings"}
    run = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode != 0
    assert "ImproperlyConfigured: BEACON_DOMAIN_RATES: the rate of gmail.com must be N/h" in run.stderr
