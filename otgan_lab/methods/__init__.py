"""One file per method; base.py holds the contract every method follows."""
