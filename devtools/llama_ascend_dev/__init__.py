"""Development and test tooling of llama-ascend, not shipped in the image: the started-server helper, the laptop
fleet, the benchmark's launchers and plots, the test hub and the fetch test helpers, the chart's generators and tool
installer, the image build and run, and the Ascend pin checker. Tests and `bench/` import it, and each tool runs as
`python -m llama_ascend_dev.<module>` (`pip install -e .` installs it next to `llama_ascend`); the image copies only
`entrypoint/`."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout the tools read and write (an editable install's source)
