"""The command line: a thin layer that parses, calls the Python API and prints."""
