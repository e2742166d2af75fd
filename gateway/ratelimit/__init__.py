"""Rate limits (RPM, TPM, concurrency, per day) at key, team, alias and deployment scope, exact
across replicas, and the gateway keys managed at run time. See docs/keys-and-limits.md."""

from gateway.ratelimit.core import Admitted, Decision, MemoryLimiter, Refusal, ScopeLimits, ScopeState
from gateway.ratelimit.keys import KeyRecord, KeyRegistry
from gateway.ratelimit.stage import RateLimiter, RateLimitStage

__all__ = ["Admitted", "Decision", "KeyRecord", "KeyRegistry", "MemoryLimiter", "RateLimitStage", "RateLimiter",
           "Refusal", "ScopeLimits", "ScopeState"]
