"""API keys: shown once when created, stored only as a sha256 hash."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.database import ApiKey, AuditEntry, utcnow

ROLES = ("intake", "reviewer", "analyst", "admin")


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(session: Session, role: str, label: str = "", actor: str = "cli") -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    prefix = secrets.token_hex(4)
    key = f"pt_{prefix}_{secrets.token_urlsafe(24)}"
    session.add(ApiKey(prefix=prefix, key_hash=_hash(key), role=role, label=label))
    session.add(AuditEntry(actor=actor, action="key.create", target=prefix, detail={"role": role, "label": label}))
    session.commit()
    return key


def _prefix_of(prefix_or_key: str) -> str:
    # A whole key is pt_PREFIX_SECRET; the prefix may come bare or as the key begins, pt_PREFIX.
    parts = prefix_or_key.strip().split("_")
    return parts[1] if len(parts) >= 2 and parts[0] == "pt" else prefix_or_key.strip()


def _is_whole_key(prefix_or_key: str) -> bool:
    parts = prefix_or_key.strip().split("_")
    return len(parts) >= 3 and parts[0] == "pt"


def revoke_key(session: Session, prefix_or_key: str, actor: str = "cli") -> bool:
    """Revokes the active key with this prefix; a whole key is accepted too (it must be
    the key itself, not merely share its prefix). False when there is no such key."""
    prefix = _prefix_of(prefix_or_key)
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)))
    if row is None or (_is_whole_key(prefix_or_key) and not hmac.compare_digest(row.key_hash, _hash(prefix_or_key.strip()))):
        return False
    row.revoked_at = utcnow()
    session.add(AuditEntry(actor=actor, action="key.revoke", target=prefix, detail={}))
    session.commit()
    return True


def list_keys(session: Session) -> list[ApiKey]:
    """Every key ever created, oldest first: prefix, role, label and dates; never the key."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)))


def verify_key(session: Session, key: str) -> ApiKey | None:
    parts = key.split("_")
    if len(parts) < 3 or parts[0] != "pt":
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == parts[1], ApiKey.revoked_at.is_(None)))
    if row is None or not hmac.compare_digest(row.key_hash, _hash(key)):
        return None
    return row
