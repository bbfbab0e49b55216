"""Compiles the translations (`locale/<language>/LC_MESSAGES/django.po`) into the `.mo` files Django reads.

Django's `compilemessages` needs GNU gettext's `msgfmt`, which a fresh machine may lack; polib writes the
same files in pure Python, so setting Beacon up needs nothing but Python. The `.mo` files are build
output (not committed): `dev.py` runs this before `run` and `test`, the test suite before it starts, and a
production install once after installing the requirements (`python -m beacon.translations`).
"""
from pathlib import Path

import polib

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"


def messages_compile(locale_dir: Path = LOCALE_DIR) -> list[Path]:
    """Writes each `.mo` older than its `.po`; returns the files written."""
    written = []
    for po_path in sorted(locale_dir.glob("*/LC_MESSAGES/*.po")):
        mo_path = po_path.with_suffix(".mo")
        if mo_path.exists() and mo_path.stat().st_mtime >= po_path.stat().st_mtime:
            continue
        polib.pofile(str(po_path)).save_as_mofile(str(mo_path))
        written.append(mo_path)
    return written


if __name__ == "__main__":
    for path in messages_compile():
        print(f"Compiled {path.relative_to(LOCALE_DIR.parent)}")
