"""Development and test tooling of llama-ascend, not shipped in the image: the started-server helper, the laptop
fleet, the benchmark's launchers, the test hub and the fetch test helpers. Tests, `bench/` and `scripts/` import it
from here (`pip install -e .` installs it next to `llama_ascend`); the image copies only `entrypoint/`."""
