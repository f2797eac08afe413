"""Kubernetes values as the API server reads them: resource quantities, object names, label
keys and image references.

The config model checks every such value here so a bad one fails at `pulumi preview` with a
sentence naming what is allowed, instead of at apply time (or, worse, being admitted and
never running: a one-byte memory limit is a valid quantity).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

# Kubernetes' quantity grammar (k8s.io/apimachinery resource.Quantity): a signed decimal
# number, then a binary suffix, a decimal suffix or a decimal exponent.
_QUANTITY = re.compile(
    r"^(?P<sign>[+-]?)(?P<number>[0-9]+(\.[0-9]*)?|\.[0-9]+)"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)|[eE](?P<exponent>[+-]?[0-9]+))?$"
)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "m": Fraction(1, 1000),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}
QUANTITY_HELP = (
    "write a number with an optional suffix, e.g. 512Mi, 2Gi, 1.5G, 250m or 1e9 "
    "(binary suffixes Ki Mi Gi Ti Pi Ei, decimal suffixes m k M G T P E)"
)


def parse_quantity(text: str) -> Fraction:
    """The exact value of a Kubernetes quantity (`1Gi` -> 1073741824, `250m` -> 1/4)."""
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a Kubernetes quantity: {QUANTITY_HELP}")
    value = Fraction(match["number"])
    if match["exponent"] is not None:
        exponent = int(match["exponent"])
        # Kubernetes caps exponents too; anything this large is a typo, not a size.
        if abs(exponent) > 30:
            raise ValueError(f"{text!r} is not a Kubernetes quantity: exponent out of range")
        value *= Fraction(10) ** exponent
    else:
        suffix = match["suffix"] or ""
        value *= _BINARY[suffix] if suffix in _BINARY else _DECIMAL[suffix]
    return -value if match["sign"] == "-" else value


@dataclass(frozen=True)
class Floor:
    """The smallest value of a quantity that can run, and why."""

    minimum: str
    why: str

    def check(self, text: str) -> str:
        value = parse_quantity(text)
        if value < parse_quantity(self.minimum):
            raise ValueError(f"{text!r} is below the minimum {self.minimum}: {self.why}")
        return text.strip()


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def is_dns1123_subdomain(value: str) -> bool:
    return 0 < len(value) <= 253 and all(_DNS_LABEL.match(part) for part in value.split("."))


def check_storage_class(value: str) -> str:
    if not is_dns1123_subdomain(value):
        raise ValueError(
            f"{value!r} is not a valid StorageClass name: use lower-case letters, digits, '-' "
            "and '.', starting and ending with a letter or digit (at most 253 characters)"
        )
    return value


def check_label_key(value: str) -> str:
    """A label key as Kubernetes validates it: `name` or `prefix/name`, where the prefix is a
    DNS subdomain (`topology.kubernetes.io`) and the name at most 63 characters."""
    prefix, slash, name = value.rpartition("/")
    problems = []
    if slash and not is_dns1123_subdomain(prefix):
        problems.append(
            f"its prefix {prefix!r} must be a DNS name (lower-case letters, digits, '-' and "
            "'.', at most 253 characters)"
        )
    if not (len(name) <= 63 and _QUALIFIED_NAME.match(name)):
        problems.append(
            f"its name {name!r} must be 1-63 letters, digits, '-', '_' or '.', starting and "
            "ending with a letter or digit"
        )
    if problems:
        raise ValueError(
            f"{value!r} is not a valid label key (such as topology.kubernetes.io/zone): "
            + "; ".join(problems)
        )
    return value


# --- image references ------------------------------------------------------------------------

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_REPOSITORY = re.compile(r"^[a-z0-9]([a-z0-9._/:-]*[a-z0-9])?$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
IMAGE_FORMS = "'repository:tag', 'repository@sha256:<64 hex>' or 'repository:tag@sha256:<64 hex>'"


@dataclass(frozen=True)
class ImageRef:
    repository: str
    tag: str | None
    digest: str | None

    @property
    def pinned(self) -> bool:
        """A digest names exactly one image; a tag can be pushed again."""
        return self.digest is not None


def parse_image(ref: str) -> ImageRef:
    name, at, digest = ref.partition("@")
    if at and not _DIGEST.match(digest):
        raise ValueError(
            f"the digest in {ref!r} must be 'sha256:' and 64 lower-case hex characters "
            "(as `crane digest` or `docker inspect --format '{{index .RepoDigests 0}}'` print it)"
        )
    repository, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        # No tag: a ':' belongs to a registry port (`registry:5000/app`).
        repository, tag = name, ""
    if not _REPOSITORY.match(repository) or (tag and not _TAG.match(tag)):
        raise ValueError(f"expected an image reference {IMAGE_FORMS}, got {ref!r}")
    if not tag and not at:
        raise ValueError(f"expected an image reference {IMAGE_FORMS}, got {ref!r}")
    if tag == "latest" and not at:
        raise ValueError(f"pin a version tag (or a digest) instead of 'latest' in {ref!r}")
    return ImageRef(repository, tag or None, digest or None)
