"""Write a small sample into sims/, so this study runs before your own files are here.

    python fetch_sample.py            # needs the md extra: pip install 'assay-workflow[md]'

The sample is cut from one trajectory that ships with the MDAnalysisTests package:
adenylate kinase (AdK, 3341 atoms) moving from its closed to its open state (CHARMM PSF +
DCD, 98 frames). Its first half becomes "wildtype", its second half "mutant", each cut into
3 pieces, one per replicate: sims/<condition>/<replicate>/system.pdb + trajectory.dcd
(about 4 MB in all). The two "conditions" are one protein at two stages of one
transition, and the "replicates" are consecutive pieces of one run: the comparison shows
the machinery, not a result. Replace sims/ with your own files (same layout, or change
runner.settings.files in config/config.yaml).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

CONDITIONS = ("wildtype", "mutant")
REPLICATES = 3


def main(destination: str = "sims") -> int:
    try:
        import MDAnalysis as mda
        from MDAnalysisTests.datafiles import DCD, PSF
    except ImportError as exc:
        print(f"fetch_sample.py: needs {exc.name or 'MDAnalysis'}, not installed here: "
              "pip install 'assay-workflow[md]'", file=sys.stderr)
        return 1
    warnings.filterwarnings("ignore", module="MDAnalysis")
    universe = mda.Universe(PSF, DCD)
    pieces = len(CONDITIONS) * REPLICATES
    size = len(universe.trajectory) // pieces
    written = []
    for index in range(pieces):
        condition, replicate = CONDITIONS[index // REPLICATES], index % REPLICATES + 1
        folder = Path(destination) / condition / str(replicate)
        written += [folder / "system.pdb", folder / "trajectory.dcd"]
        if all(path.is_file() for path in written[-2:]):
            continue   # written before: new bytes (a new DCD header) would rerun its run
        folder.mkdir(parents=True, exist_ok=True)
        frames = range(index * size, (index + 1) * size)
        universe.trajectory[frames[0]]
        universe.atoms.write(folder / "system.pdb")
        with mda.Writer(str(folder / "trajectory.dcd"), universe.atoms.n_atoms) as writer:
            for _ in universe.trajectory[frames[0]:frames[-1] + 1]:
                writer.write(universe.atoms)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
