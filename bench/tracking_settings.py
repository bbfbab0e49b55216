"""Settings for the tracking benchmarks: Beacon's own, plus a bare 302 view to compare against."""
from beacon.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.tracking_urls"
DEBUG = False
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "ERROR"}}

BENCH_TARGET_URL = "https://shop.example.com/spring-sale?utm_source=beacon"
