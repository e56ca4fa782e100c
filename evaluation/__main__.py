"""python -m evaluation ...: the remac-eval command line, run from the repository root (evaluation is tooling, not installed)."""
from evaluation import main

main()
