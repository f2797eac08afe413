"""Accounts in the store: a name (case-insensitive) -> a user id and an Argon2id hash.

Sign-up ids are allocated from a counter that starts at `FIRST_SIGNUP_ID`, far above the
traffic generator's users `1..N`, so the two never collide. In dev mode with demo users,
the generator's users `u1..uN` are accounts too, without a record: they sign in with
`DEV_PASSWORD`, checked against a hash made once at start (the plaintext is never stored).
Names of the generator's form `u<n>` are reserved in every mode, so turning demo users on
later can never hand an existing account to someone else.

Every check costs one Argon2id verification, also for an account that does not exist
(against a dummy hash), so the answer's timing does not tell the two apart. All methods
block (store round trips, hashing): callers run them off the event loop.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any, Final

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from starling.loadgen import handle_for, user_id_for_handle
from starling.store import keys

log = logging.getLogger("starling.identity.accounts")

# The documented password of the demo users, accepted only in dev mode (docs/identity.md).
DEV_PASSWORD: Final = "starling-dev-password"
# Ids of signed-up accounts start here; the traffic generator's users are 1..N.
FIRST_SIGNUP_ID: Final = 1_000_000_000

# Atomic sign-up: the name is free (no account, no handle of another user), an id is
# taken from the counter (lifted to the first sign-up id), and account and handle are
# written together. Returns the new id, or 0 when the name is taken.
_CREATE = """
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('HEXISTS', KEYS[3], ARGV[3]) == 1 then
  return 0
end
local id = redis.call('INCR', KEYS[2])
if id < tonumber(ARGV[1]) then
  id = tonumber(ARGV[1])
  redis.call('SET', KEYS[2], id)
end
redis.call('HSET', KEYS[1], 'user_id', id, 'username', ARGV[2], 'hash', ARGV[4])
redis.call('HSET', KEYS[3], ARGV[3], id)
return id
"""
# Replace a hash only if it is still the one verified: a concurrent password change (or
# another replica's rehash) is never overwritten with a stale password.
_REHASH = """
if redis.call('HGET', KEYS[1], 'hash') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'hash', ARGV[2])
  return 1
end
return 0
"""


@dataclass(frozen=True, repr=False)
class Account:
    user_id: int
    username: str
    # None for a demo user: their password is the dev password.
    password_hash: str | None

    def __repr__(self) -> str:
        return f"Account({self.user_id}, {self.username!r})"


class NameTakenError(Exception):
    """The name belongs to an account (or handle) already, or is reserved."""


class Accounts:
    def __init__(self, store: redis.Redis, hasher: PasswordHasher, *, demo_users: int) -> None:
        self._store = store
        self._hasher = hasher
        self._demo_users = demo_users
        self._create = store.register_script(_CREATE)
        self._rehash = store.register_script(_REHASH)
        # A hash of a random secret nobody knows: unknown names are checked against it.
        self._dummy_hash = hasher.hash(secrets.token_urlsafe(32))
        self._dev_hash = hasher.hash(DEV_PASSWORD) if demo_users else None

    @staticmethod
    def is_reserved(username: str) -> bool:
        """Names of the traffic generator's users (`u<n>`), in every mode."""
        return user_id_for_handle(username.lower()) is not None

    def find(self, username: str) -> Account | None:
        name = username.lower()
        demo_id = user_id_for_handle(name)
        if demo_id is not None:
            if self._dev_hash is not None and demo_id <= self._demo_users:
                return Account(demo_id, handle_for(demo_id), None)
            return None
        record: dict[bytes, bytes] = self._store.hgetall(keys.identity_account(name))  # type: ignore[assignment]
        if not record:
            return None
        return Account(
            int(record[b"user_id"]), record[b"username"].decode(), record[b"hash"].decode()
        )

    def verify(self, account: Account | None, password: str) -> bool:
        """True only for the account's password; as costly for no account as for one."""
        if account is None:
            self._check(self._dummy_hash, password)
            return False
        if account.password_hash is None:
            assert self._dev_hash is not None  # `find` returns demo users only in dev mode
            return self._check(self._dev_hash, password)
        return self._check(account.password_hash, password, account)

    def _check(self, password_hash: str, password: str, account: Account | None = None) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except InvalidHashError:
            # A damaged record: nobody can sign in to it until the password is reset.
            log.warning("identity: the stored password hash of %r is not a valid hash", account)
            return False
        except VerificationError:
            return False

    def rehash_if_needed(self, account: Account, password: str) -> bool:
        """After a successful check: store a new hash if the cost parameters changed."""
        if account.password_hash is None or not self._hasher.check_needs_rehash(
            account.password_hash
        ):
            return False
        fresh = self._hasher.hash(password)
        key = keys.identity_account(account.username)
        return bool(self._rehash(keys=[key], args=[account.password_hash, fresh]))

    def create(self, username: str, password: str) -> Account:
        """A new account with the next sign-up id; NameTakenError if the name is not free."""
        if self.is_reserved(username):
            raise NameTakenError(f"names of the form u<number> are reserved ({username!r})")
        name = username.lower()
        if self._store.exists(keys.identity_account(name)):
            # Saves a hash; the script below re-checks atomically.
            raise NameTakenError(f"the name {username!r} is taken")
        password_hash = self._hasher.hash(password)
        created: Any = self._create(
            keys=[keys.identity_account(name), keys.IDENTITY_NEXT_USER, keys.HANDLES],
            args=[FIRST_SIGNUP_ID, username, name, password_hash],
        )
        if not created:
            raise NameTakenError(f"the name {username!r} is taken")
        return Account(int(created), username, password_hash)
