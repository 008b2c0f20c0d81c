"""darkhaloscope: audit, train and evaluate CNN strong-lens finders on Legacy Surveys stamps.

Start with `dhs --help`; the whole pipeline on built-in data is `dhs demo`.
"""

__version__ = "0.1.0"
