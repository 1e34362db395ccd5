import sys
from pathlib import Path

# Make the Hypothesis strategies module importable from every test file.
sys.path.insert(0, str(Path(__file__).parent))
