#!/usr/bin/env python3
"""Beacon's two set-up commands, needing nothing but Python 3.

    python3 dev.py run    install into .venv, compile translations, migrate, create demo data and an admin
                          login, serve :8000
    python3 dev.py test   install into .venv, compile translations, run the whole test suite (extra arguments
                          go to pytest)
"""
import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
PYTHON = VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
REQUIREMENTS = ROOT / "requirements.txt"
STAMP = VENV / ".requirements.sha256"


def ensure_environment() -> None:
    if not PYTHON.exists():
        print("Creating virtual environment in .venv ...", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == wanted:
        return
    print("Installing requirements ...", flush=True)
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", str(REQUIREMENTS)],
        check=True,
    )
    STAMP.write_text(wanted)


def compile_translations() -> None:
    subprocess.run([str(PYTHON), "-m", "beacon.translations"], check=True, cwd=ROOT)


def manage(*args: str) -> None:
    subprocess.run([str(PYTHON), str(ROOT / "manage.py"), *args], check=True, cwd=ROOT)


def run() -> int:
    manage("migrate", "--noinput")
    manage("beacon_demo")
    print("Beacon is starting on http://127.0.0.1:8000/ (admin: http://127.0.0.1:8000/admin/)", flush=True)
    return subprocess.call([str(PYTHON), str(ROOT / "manage.py"), "runserver", "127.0.0.1:8000"], cwd=ROOT)


def test(pytest_args: list[str]) -> int:
    env = dict(os.environ, CELERY_TASK_ALWAYS_EAGER="true")
    return subprocess.call([str(PYTHON), "-m", "pytest", *pytest_args], cwd=ROOT, env=env)


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"run", "test"}:
        print(__doc__)
        return 2
    ensure_environment()
    compile_translations()
    if sys.argv[1] == "run":
        return run()
    return test(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
