"""The shipped Redis users (``deploy/cluster/users.acl``) for tests: a copy with fresh
passwords in place of its CHANGE-ME placeholders, and the commands Redis denied the nodes."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

__all__ = ["ACL", "Logins", "denied", "write_acl"]

ACL = Path(__file__).resolve().parents[2] / "deploy" / "cluster" / "users.acl"
USERS = ("camserver", "replica", "sentinel", "admin")


@dataclass(frozen=True)
class Logins:
    """A password per user of the shipped ACL file, and the copy that holds them."""

    path: Path
    passwords: dict[str, str]

    def url(self, port: int, user: str = "camserver", host: str = "127.0.0.1") -> str:
        return f"redis://{user}:{self.passwords[user]}@{host}:{port}/0"


def write_acl(folder: Path) -> Logins:
    text = ACL.read_text()
    passwords = {u: f"t{secrets.token_hex(8)}" for u in USERS}
    for user, password in passwords.items():
        text = text.replace(f"CHANGE-ME-{user}", password)
    assert ">CHANGE-ME" not in text, "a user of users.acl the tests do not know"
    path = folder / "users.acl"
    path.write_text(text)
    return Logins(path, passwords)


def denied(port: int, logins: Logins, host: str = "127.0.0.1") -> list[dict[str, Any]]:
    """What Redis refused the nodes' user (its ACL log), through the admin login."""
    with redis.Redis.from_url(logins.url(port, "admin", host), socket_timeout=5) as admin:
        entries: list[dict[str, Any]] = admin.acl_log(count=100)
    return [e for e in entries if e.get("username") == "camserver"]
