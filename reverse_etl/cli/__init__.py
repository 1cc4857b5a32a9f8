"""The ``retl`` command line: a thin shell over the library API."""
