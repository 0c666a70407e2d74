"""Pure loss and penalty functions (no networks, no optimizers)."""
