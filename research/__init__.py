"""Experiments about the training recipe (leave-one-method-out, learning curve, README result tables); not
part of the installed package: run them from a checkout, ``python -m research --help``."""
