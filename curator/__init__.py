"""instruct-curator: curriculum -> synthetic pairs -> quality gate -> certified releases."""
__version__ = "0.1.0"
