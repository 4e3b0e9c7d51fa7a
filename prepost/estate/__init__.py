"""Estate files: a declared estate for the local stack, read, checked, exported and anonymised.

See ``estate.schema.json`` beside this package's modules and docs/simulator.md.
"""

from .loader import SCHEMA_PATH, EstateFileError, load_estate, parse_estate
from .model import EstateFile
from .simulate import to_simulator

__all__ = [
    "SCHEMA_PATH",
    "EstateFile",
    "EstateFileError",
    "load_estate",
    "parse_estate",
    "to_simulator",
]
