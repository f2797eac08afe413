"""Entry point the Pulumi CLI runs for `--policy-pack policy/`: serves the pack.

Constructing a PolicyPack starts the analyzer server and blocks, so nothing else may
import this module; tests import starling_policy.pack instead.
"""

from pulumi_policy import EnforcementLevel, PolicyPack
from starling_policy.pack import POLICIES

PolicyPack(
    name="starling-baseline",
    # Every rule blocks the update by default; a stack can relax one through the pack's
    # config (`pulumi policy enable ... --config`) with a recorded reason.
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=POLICIES,
)
