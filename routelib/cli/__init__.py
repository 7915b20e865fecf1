"""The command line: ``routelib`` / ``python -m routelib``."""
from routelib.cli.app import main
