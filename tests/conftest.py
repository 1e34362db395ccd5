import sys
from pathlib import Path

# Make the Hypothesis strategies module importable from every test file.
sys.path.insert(0, str(Path(__file__).parent))

from hypothesis import settings  # noqa: E402

# No per-example time limit: tests assert outcomes, never speed (benchmarks/ measures that),
# and a loaded 2-core machine makes any wall-clock bound flaky.
settings.register_profile("mteswap", deadline=None)
settings.load_profile("mteswap")
