"""Settings for the whole suite.

Hypothesis's per-example deadline (200 ms by default) is a timed assertion in
disguise: on a shared 2-core CI machine an example can wait that long for the
CPU, so the suite runs without it (speed goals live in `make bench`).
"""

from hypothesis import HealthCheck, settings

settings.register_profile("globalnet", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("globalnet")
