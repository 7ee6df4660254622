"""The ``HARNESS_*`` environment variables, named once (docs/architecture.md lists what each means).

The agent sets the run's variables for the script; the backends set the image and data ones; the
in-script monitor reads them. Build-time and test-time knobs are listed too, so a search for a
name lands here. Plain strings, no imports: this module is imported inside containers.
"""

from __future__ import annotations

# Given to the script by the agent.
MODE = "HARNESS_MODE"
SEED = "HARNESS_SEED"
RUN_ID = "HARNESS_RUN_ID"
RESULTS_DIR = "HARNESS_RESULTS_DIR"
EVENTS_FILE = "HARNESS_EVENTS_FILE"
EXPERIMENT = "HARNESS_EXPERIMENT"
SAMPLING_INTERVAL = "HARNESS_SAMPLING_INTERVAL"
AGENT = "HARNESS_AGENT"  # "1": the agent samples resources, so the in-script monitor does not
CONFIG = "HARNESS_CONFIG"
# Read by the agent (and the bootstrap): "0" turns automatic step timing off (harness.autoinstrument).
AUTO_INSTRUMENT = "HARNESS_AUTO_INSTRUMENT"
# Given by the backends.
DATA_DIR = "HARNESS_DATA_DIR"
SCRATCH_DIR = "HARNESS_SCRATCH_DIR"  # an empty folder the script may write, gone after the run
IMAGE = "HARNESS_IMAGE"
# Read by the agent when its --image-id / --plan-id flags are absent (images built before the flags).
IMAGE_ID = "HARNESS_IMAGE_ID"
PLAN_ID = "HARNESS_PLAN_ID"
# The run's fingerprint (JSON), computed by the backend; the agent records it and keeps it from the script.
FINGERPRINT = "HARNESS_FINGERPRINT"
# Read on the host.
LOCAL_CGROUP = "HARNESS_LOCAL_CGROUP"  # "0": local runs get no cgroup of their own (process-tree source)
BUILD_NETWORK = "HARNESS_BUILD_NETWORK"  # network of `docker build` (default: the engine's default)
REQUIRE_DOCKER = "HARNESS_REQUIRE_DOCKER"  # tests: fail instead of skipping without an engine
