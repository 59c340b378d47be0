"""The offline censorship lab: loopback servers that play the Internet and a censor.

See docs/lab.md. The public surface:

- `Lab(scenario, state_dir, clock=None)`: ``async with`` starts DNS, origins and censor fronts.
- `serve(scenario_path, state_dir, at=None, ephemeral=False)`: run until cancelled.
- `load_scenario(path_or_name)` / `parse_scenario(data)` -> `Scenario`; `ScenarioError`.
- `BLOCKPAGE_FINGERPRINT`: the string the lab's blockpage body contains.
"""

from probe.lab.blockpage import BLOCKPAGE_FINGERPRINT
from probe.lab.lab import Lab, serve
from probe.lab.scenario import SCENARIO_DIR, Scenario, ScenarioError, load_scenario, parse_scenario

__all__ = [
    "BLOCKPAGE_FINGERPRINT",
    "SCENARIO_DIR",
    "Lab",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "parse_scenario",
    "serve",
]
