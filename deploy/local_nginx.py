"""deploy/nginx.conf run on this machine, without installing it: for the slow-client test and the click
benchmark.

The site file is used as it is, with only what names the machine changed: gunicorn's address, the ports
(loopback only), the certificate and the static directory. Each change must find the very line the file
has, so an edit of nginx.conf that these runs would no longer follow fails here, loudly. nginx runs in
the foreground (`daemon off`), with a prefix, pid file, logs and temporary directories of its own.
"""
import grp
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

SITE = Path(__file__).resolve().parent / "nginx.conf"
MIME_TYPES = Path("/etc/nginx/mime.types")
INSTALL_HINT = "Debian: apt-get install -y nginx (.ci/run installs it)"


def nginx_binary() -> str | None:
    """nginx's path; Debian installs it in /usr/sbin, not on every user's PATH."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def _replaced(text: str, pattern: str, replacement: str) -> str:
    result, count = re.subn(pattern, replacement, text, flags=re.M)
    if count != 1:
        raise ValueError(f"deploy/nginx.conf: {pattern!r} matched {count} times, not once; update deploy/local_nginx.py")
    return result


def site_render(
    *, upstream: str, http_port: int, https_port: int, static_root: Path, certificate: tuple[Path, Path] | None
) -> str:
    """deploy/nginx.conf for this machine. `upstream` is gunicorn's `host:port` (or `unix:path`). Without a
    certificate the HTTPS server speaks plain HTTP on its port: what proxying costs, without TLS."""
    text = SITE.read_text()
    text = _replaced(text, r"^(\s*server) 127\.0\.0\.1:8000;$", rf"\1 {upstream};")
    text = _replaced(text, r"^\s*listen \[::\]:80;\n", "")
    text = _replaced(text, r"^\s*listen \[::\]:443 ssl http2;\n", "")
    text = _replaced(text, r"^(\s*listen) 80;$", rf"\1 127.0.0.1:{http_port};")
    tls = " ssl" if certificate else ""
    text = _replaced(text, r"^(\s*listen) 443 ssl http2;$", rf"\1 127.0.0.1:{https_port}{tls};")
    if certificate:
        text = _replaced(text, r"^(\s*ssl_certificate) \S+;$", rf"\1 {certificate[0]};")
        text = _replaced(text, r"^(\s*ssl_certificate_key) \S+;$", rf"\1 {certificate[1]};")
    else:
        text = _replaced(text, r"^\s*ssl_certificate \S+;\n", "")
        text = _replaced(text, r"^\s*ssl_certificate_key \S+;\n", "")
    return _replaced(text, r"^(\s*alias) /srv/beacon/staticfiles/;$", rf"\1 {static_root}/;")


def certificate_make(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, valid a day."""
    certificate, key = directory / "certificate.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(certificate), "-days", "1", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )
    return certificate, key


def wait_for_port(port: int, process: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the process listening on {port} ended with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


class LocalNginx:
    """nginx serving one rendered site from `directory`, in the foreground, as the current user."""

    def __init__(self, directory: Path, site: str, ports: list[int]) -> None:
        self.directory = directory
        self.site = site
        self.ports = ports
        self.process: subprocess.Popen | None = None

    def _main_config(self) -> str:
        d = self.directory
        # Run by root, nginx's workers would switch to `nobody`, who cannot read a private temporary directory.
        user = ""
        if os.geteuid() == 0:
            user = f"user {pwd.getpwuid(os.getuid()).pw_name} {grp.getgrgid(os.getgid()).gr_name};"
        mime = f"include {MIME_TYPES};" if MIME_TYPES.exists() else ""
        return f"""{user}
worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    {mime}
    default_type application/octet-stream;
    sendfile on;
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/beacon.conf;
}}
"""

    def start(self) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError(f"nginx is missing: {INSTALL_HINT}")
        (self.directory / "beacon.conf").write_text(self.site)
        (self.directory / "nginx.conf").write_text(self._main_config())
        self.process = subprocess.Popen(
            [binary, "-p", str(self.directory), "-c", str(self.directory / "nginx.conf"),
             "-e", str(self.directory / "error.log"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            for port in self.ports:
                wait_for_port(port, self.process)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{exc}; nginx's error log:\n{self.error_log()}") from None

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pids(self) -> list[int]:
        return [self.process.pid] if self.process else []

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
