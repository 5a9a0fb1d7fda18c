"""Raters and admins: tokens (stored only hashed), sign-in, verified logins."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from eval_human.models import ROLE_ADMIN, ROLE_RATER, Rater, Study, utcnow
from eval_human.store.errors import AuthenticationError, StudyError


@dataclass(frozen=True)
class RaterInfo:
    """Who is signed in: enough to scope every later call, nothing secret."""

    id: int
    name: str
    study_id: int
    role: str


@dataclass(frozen=True)
class NewRater:
    """A rater just created, with the clear-text token that is shown exactly once and stored only hashed."""

    id: int
    name: str
    role: str
    token: str


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a rater token (tokens are 144-bit random, so no salt or slow hash is needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Accounts:
    """Who may rate or administer a study (needs ``self._read`` / ``self._write`` from Database)."""

    def add_raters(self, study_id: int, names: Sequence[str], *, role: str = ROLE_RATER) -> list[NewRater]:
        """Create raters (or admins) with fresh tokens; the clear tokens are returned once and never stored."""
        if role not in (ROLE_RATER, ROLE_ADMIN):
            raise StudyError(f"role {role!r} must be {ROLE_RATER!r} or {ROLE_ADMIN!r}")
        names = [str(n).strip() for n in names]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise StudyError(f"rater names must be non-empty and distinct, got {names!r}")
        created = []
        with self._write() as session:
            if session.get(Study, study_id) is None:
                raise StudyError(f"no study with id {study_id}")
            taken = set(
                session.scalars(select(Rater.name).where(Rater.study_id == study_id, Rater.name.in_(names)))
            )
            if taken:
                raise StudyError(f"rater name(s) already used in this study: {sorted(taken)}")
            for name in names:
                token = secrets.token_urlsafe(18)
                rater = Rater(study_id=study_id, name=name, role=role, token_hash=hash_token(token))
                session.add(rater)
                session.flush()
                created.append(NewRater(id=rater.id, name=name, role=role, token=token))
        return created

    def authenticate(self, token: str) -> RaterInfo:
        """The rater or admin holding ``token``; raises :class:`AuthenticationError` for anything else."""
        if not isinstance(token, str) or not token.strip():
            raise AuthenticationError("no token given: enter the token you received for this study")
        token = token.strip()
        if len(token) > 200:
            raise AuthenticationError(f"unknown token (length {len(token)})")
        digest = hash_token(token)
        with self._write() as session:
            rater = session.scalar(select(Rater).where(Rater.token_hash == digest))
            if rater is None:
                raise AuthenticationError("unknown token: check it was copied completely")
            rater.last_seen_at = utcnow()
            return RaterInfo(id=rater.id, name=rater.name, study_id=rater.study_id, role=rater.role)

    def rater_for_login(self, username: str, study_id: int | None = None) -> RaterInfo:
        """The rater whose name equals an already verified login (Gradio auth, HF OAuth)."""
        with self._read() as session:
            query = select(Rater).where(Rater.name == username)
            if study_id is not None:
                query = query.where(Rater.study_id == study_id)
            raters = session.scalars(query).all()
            if not raters:
                raise AuthenticationError(f"login {username!r} is not a rater of this study")
            if len(raters) > 1:
                raise AuthenticationError(
                    f"login {username!r} is a rater in several studies; sign in with a token"
                )
            rater = raters[0]
            return RaterInfo(id=rater.id, name=rater.name, study_id=rater.study_id, role=rater.role)

    def check_login(self, username: str, token: str) -> bool:
        """Gradio ``auth=`` callable: the password is the rater's token and must belong to ``username``."""
        try:
            rater = self.authenticate(token)
        except AuthenticationError:
            return False
        return rater.name == username
