"""Semi-discrete optimal transport from the uniform cube to a discrete measure, as in AE-OT.

An, Guo, Lei, Luo, Yau, Gu, "AE-OT: A new generative model based on extended semi-discrete optimal
transport", ICLR 2020 (reference code: pyOMT); METHODS.md §9 is the specification. One job per module:
cells.py (which power cell holds a point), solver.py (the heights h), generation.py (new codes by the
extended map), normalization.py (codes into [-1, 1] and back), progress.py (the solver's progress bar).
"""

from otgan_lab.ot.semidiscrete.cells import (
    DEFAULT_CHUNK_SIZE,
    cell_masses,
    power_cell_argmax,
    sobol_cube,
    topk_cells,
)
from otgan_lab.ot.semidiscrete.generation import generate_codes, plane_angles, sample_cell_pairs
from otgan_lab.ot.semidiscrete.normalization import CodeStats, denormalize_codes, normalize_codes
from otgan_lab.ot.semidiscrete.solver import SemiDiscreteOT, SemiDiscreteOTResult

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "CodeStats",
    "SemiDiscreteOT",
    "SemiDiscreteOTResult",
    "cell_masses",
    "denormalize_codes",
    "generate_codes",
    "normalize_codes",
    "plane_angles",
    "power_cell_argmax",
    "sample_cell_pairs",
    "sobol_cube",
    "topk_cells",
]
