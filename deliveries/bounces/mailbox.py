"""Readers of the bounce mailbox (`BEACON_BOUNCE_MAILBOX`, beacon/mailbox_url.py): a maildir, IMAP over
TLS or POP3 over TLS, each giving (key, raw bytes) and removing one key when told to.

The caller removes a message only once its result is committed (`deliveries.services.bounce_intake`),
so a crash loses nothing: what was not removed is read again next time.

- maildir: the messages of `new/` and `cur/` (never `tmp/`, where a delivery is still being written);
  removing deletes the file.
- IMAP: the folder's messages not flagged \\Deleted, by UID, read without setting \\Seen; removing flags
  the message \\Deleted, and the folder is expunged when the reader closes. Deleting rather than marking
  \\Seen: Beacon keeps every message it read (`ReturnedMail`), and "unseen" would break as soon as a
  person opened the mailbox. Use a folder of Beacon's own: the expunge removes every \\Deleted message.
- POP3: RETR, then DELE once committed; QUIT, when the reader closes, applies the deletions (a
  connection lost before QUIT deletes nothing, as POP3 says).

TLS always, with the system's CA certificates or the one file `ca_file` names. Each message is read up
to MAX_MESSAGE_BYTES (a maildir file and an IMAP fetch stop there; POP3 has no partial read, so the
server's message size limit bounds it). Failures to reach or talk to the mailbox are `MailboxError`.
"""
from __future__ import annotations

import imaplib
import mailbox
import poplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from beacon.mailbox_url import IMAPS, MAILDIR, MailboxUrl

MAX_MESSAGE_BYTES = 20 * 1024 * 1024
# poplib refuses a line past 2048 bytes, which would leave a hostile message in the mailbox for good.
POP3_MAX_LINE = 1024 * 1024


class MailboxError(Exception):
    """The mailbox cannot be reached, refuses the login, or answers what it should not."""


@dataclass(frozen=True)
class MailboxMessage:
    key: str
    raw: bytes


class MailboxReader(Protocol):
    def messages(self) -> Iterator[MailboxMessage]: ...

    def remove(self, key: str) -> None: ...

    def close(self) -> None: ...


class MaildirReader:
    def __init__(self, path: str):
        try:
            self._maildir = mailbox.Maildir(path, factory=None, create=False)
        except (OSError, mailbox.Error) as error:
            raise MailboxError(f"cannot open the maildir {path}: {error}") from error
        self._path = path

    def messages(self) -> Iterator[MailboxMessage]:
        try:
            keys = sorted(self._maildir.keys())
        except OSError as error:
            raise MailboxError(f"cannot list the maildir {self._path}: {error}") from error
        for key in keys:
            try:
                with self._maildir.get_file(key) as file:
                    raw = file.read(MAX_MESSAGE_BYTES)
            except (KeyError, FileNotFoundError):
                continue  # removed meanwhile (by another reader, or by hand)
            except OSError as error:
                raise MailboxError(f"cannot read {key} in the maildir: {error}") from error
            yield MailboxMessage(key, raw)

    def remove(self, key: str) -> None:
        try:
            self._maildir.discard(key)
        except OSError as error:
            raise MailboxError(f"cannot remove {key} from the maildir: {error}") from error

    def close(self) -> None:
        pass


def _checked(answer: tuple[str, list], what: str) -> list:
    status, data = answer
    if status != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("ascii", "replace")[:300]
        raise MailboxError(f"the IMAP server refused {what}: {detail}")
    return data


class ImapReader:
    def __init__(self, url: MailboxUrl, context: ssl.SSLContext, timeout: float):
        self._client = imaplib.IMAP4_SSL(url.host, url.port, ssl_context=context, timeout=timeout)
        self._removed_any = False
        try:
            _checked(self._client.login(url.user, url.password), "the login")
            _checked(self._client.select(f'"{url.folder}"'), f"the folder {url.folder}")
        except BaseException:
            self._client.shutdown()
            raise

    def messages(self) -> Iterator[MailboxMessage]:
        found = _checked(self._client.uid("SEARCH", None, "UNDELETED"), "the search")
        uids = found[0].split() if found and found[0] else []
        for uid in uids:
            data = _checked(self._client.uid("FETCH", uid, f"(BODY.PEEK[]<0.{MAX_MESSAGE_BYTES}>)"), "a fetch")
            # The answer's literal is the message; no literal: it was expunged meanwhile.
            raw = next((item[1] for item in data if isinstance(item, tuple)), None)
            if raw is None:
                continue
            yield MailboxMessage(uid.decode("ascii"), raw)

    def remove(self, key: str) -> None:
        _checked(self._client.uid("STORE", key, "+FLAGS.SILENT", r"(\Deleted)"), "flagging a message deleted")
        self._removed_any = True

    def close(self) -> None:
        try:
            if self._removed_any:
                _checked(self._client.expunge(), "the expunge")
        finally:
            self._client.logout()


class _Pop3(poplib.POP3_SSL):
    def _getline(self):
        line = self.file.readline(POP3_MAX_LINE + 1)
        if len(line) > POP3_MAX_LINE:
            raise poplib.error_proto("line too long")
        if not line:
            raise poplib.error_proto("-ERR EOF")
        octets = len(line)
        if line[-2:] == b"\r\n":
            return line[:-2], octets
        if line[:1] == b"\r":
            return line[1:-1], octets
        return line[:-1], octets


class Pop3Reader:
    def __init__(self, url: MailboxUrl, context: ssl.SSLContext, timeout: float):
        self._client = _Pop3(url.host, url.port, context=context, timeout=timeout)
        try:
            self._client.user(url.user)
            self._client.pass_(url.password)
        except BaseException:
            self._client.close()
            raise

    def messages(self) -> Iterator[MailboxMessage]:
        _, listing, _ = self._client.list()
        for line in listing:
            number = line.split()[0].decode("ascii")
            _, lines, _ = self._client.retr(number)
            yield MailboxMessage(number, b"\r\n".join(lines)[:MAX_MESSAGE_BYTES])

    def remove(self, key: str) -> None:
        self._client.dele(key)

    def close(self) -> None:
        self._client.quit()


@contextmanager
def mailbox_open(url: MailboxUrl, *, ca_file: str = "", timeout: float = 60.0) -> Iterator[MailboxReader]:
    """A reader of the mailbox `url` names, closed (IMAP expunged, POP3 deletions applied) on leaving."""
    if url.scheme == MAILDIR:
        reader = MaildirReader(url.path)
    else:
        try:
            context = ssl.create_default_context(cafile=ca_file or None)
            reader = (ImapReader if url.scheme == IMAPS else Pop3Reader)(url, context, timeout)
        except (OSError, imaplib.IMAP4.error, poplib.error_proto) as error:
            raise MailboxError(f"cannot read {url.shown}: {error}") from error
    try:
        yield reader
    except (OSError, imaplib.IMAP4.error, poplib.error_proto) as error:
        _close_quietly(reader)
        raise MailboxError(f"reading {url.shown} failed: {error}") from error
    except BaseException:
        _close_quietly(reader)
        raise
    else:
        try:
            reader.close()
        except (OSError, imaplib.IMAP4.error, poplib.error_proto) as error:
            raise MailboxError(f"closing {url.shown} failed: {error}") from error


def _close_quietly(reader: MailboxReader) -> None:
    try:
        reader.close()
    except (OSError, imaplib.IMAP4.error, poplib.error_proto, MailboxError):
        pass
