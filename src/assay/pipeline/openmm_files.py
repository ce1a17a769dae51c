"""The files an OpenMM run writes in its work directory, and its checkpoints.

Every byte here is reproducible: OpenMM's DCD header and PDB ``REMARK`` carry the date,
which is replaced by fixed text, and the state table has no wall-clock columns. A
checkpoint is a consistent pair, written in this order: the DCD and CSV fsynced,
``checkpoint-<step>.chk`` (``Context.createCheckpoint()``), then ``checkpoint.json``
naming it with the DCD/CSV byte lengths and the DCD header at that step. A kill at any
moment leaves the previous pair or the new one; resuming cuts the files back to the
recorded lengths. A hard-linked file (an older store's object) is never written to again.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import struct
from pathlib import Path
from typing import Any, BinaryIO

from ..store.atomic import atomic_path, atomic_write_bytes
from ..errors import AssayError
from ..store.hashing import canonical_json, sha256_hex

CHECKPOINT_JSON = "checkpoint.json"
FILES = {"trajectory": "trajectory.dcd", "state_data": "state_data.csv",
         "topology": "topology.pdb"}
STATE_COLUMNS = ("step", "time_ps", "potential_energy_kj_mol", "kinetic_energy_kj_mol",
                 "total_energy_kj_mol", "temperature_k")
_DCD_STAMP = slice(180, 260)          # second 80-byte title line: "Created <asctime>"


def pdb_bytes(topology: Any, positions: Any) -> bytes:
    """The topology as a PDB without OpenMM's dated REMARK line."""
    import openmm.app as app

    buffer = io.StringIO()
    app.PDBFile.writeFile(topology, positions, buffer)
    lines = [re.sub(r", \d{4}-\d{2}-\d{2}$", "", line) if line.startswith("REMARK   1 CREATED")
             else line for line in buffer.getvalue().splitlines()]
    return ("\n".join(lines) + "\n").encode("ascii")


# --- trajectory and state table ------------------------------------------------------
def _private(path: Path) -> None:
    """Copy a file that shares its inode with a store object before anyone writes to it."""
    if path.exists() and (path.stat().st_nlink > 1 or not os.access(path, os.W_OK)):
        with atomic_path(path) as tmp:
            shutil.copyfile(path, tmp)


class Outputs:
    """The DCD and CSV being written in the work directory, and their sync points."""

    def __init__(self, folder: Path, topology: Any, dt_fs: float, interval: int) -> None:
        self.dcd_path, self.csv_path = folder / FILES["trajectory"], folder / FILES["state_data"]
        self.topology, self.dt_fs, self.interval = topology, dt_fs, interval
        self.dcd: BinaryIO | None = None
        self.csv: BinaryIO | None = None
        self.writer: Any = None
        self.header = b""

    def _dcd_file(self, append: bool) -> Any:
        from openmm.app import DCDFile
        from openmm.unit import femtosecond

        return DCDFile(self.dcd, self.topology, self.dt_fs * femtosecond, self.interval,
                       self.interval, append=append)

    def create(self) -> None:
        for path in (self.dcd_path, self.csv_path):
            path.unlink(missing_ok=True)      # never truncate an inode the store may share
        self.dcd = open(self.dcd_path, "x+b")
        self.writer = self._dcd_file(append=False)
        self.header = self._fix_stamp()
        self.csv = open(self.csv_path, "xb")
        self.csv.write((",".join(STATE_COLUMNS) + "\n").encode())

    def _fix_stamp(self) -> bytes:
        """Replace the creation time OpenMM writes into the DCD title (bytes 180-260)."""
        self.dcd.flush()
        header = self.dcd_path.read_bytes()
        if header[100:117] != b"Created by OpenMM" or header[_DCD_STAMP][:8] != b"Created ":
            raise AssayError("openmm runner: this OpenMM writes an unknown DCD header, so "
                             "its timestamp cannot be removed; report the OpenMM version")
        self.dcd.seek(_DCD_STAMP.start)
        self.dcd.write(struct.pack("<80s", b"Created by assay (no timestamp)"))
        self.dcd.seek(0, os.SEEK_END)
        self.dcd.flush()
        return self.dcd_path.read_bytes()

    def reopen(self, dcd_bytes: int, csv_bytes: int, header: bytes) -> None:
        """Back to the checkpoint: cut what came after it, restore the frame count."""
        for path, size in ((self.dcd_path, dcd_bytes), (self.csv_path, csv_bytes)):
            _private(path)
            with open(path, "r+b") as handle:
                handle.truncate(size)
        self.dcd = open(self.dcd_path, "r+b")
        self.dcd.write(header)
        self.dcd.flush()
        self.header = header
        self.writer = self._dcd_file(append=True)
        self.csv = open(self.csv_path, "ab")

    def write(self, step: int, state: Any, temperature: float) -> None:
        from openmm import unit

        self.writer.writeModel(state.getPositions(asNumpy=True))
        potential = state.getPotentialEnergy().value_in_unit(unit.kilojoule_per_mole)
        kinetic = state.getKineticEnergy().value_in_unit(unit.kilojoule_per_mole)
        row = (step, f"{step * self.dt_fs / 1000:.6f}", repr(potential), repr(kinetic),
               repr(potential + kinetic), repr(temperature))
        self.csv.write((",".join(map(str, row)) + "\n").encode())
        self.csv.flush()

    def sync(self) -> dict[str, Any]:
        """fsync both files; their lengths and the DCD header describe this moment."""
        lengths = {}
        for key, handle in (("dcd_bytes", self.dcd), ("csv_bytes", self.csv)):
            handle.flush()
            os.fsync(handle.fileno())
            lengths[key] = os.fstat(handle.fileno()).st_size
        self.dcd.seek(0)
        self.header = self.dcd.read(len(self.header))
        self.dcd.seek(0, os.SEEK_END)
        return {**lengths, "dcd_header": base64.b64encode(self.header).decode()}

    def close(self) -> None:
        for handle in (self.dcd, self.csv):
            if handle is not None and not handle.closed:
                handle.flush()
                os.fsync(handle.fileno())
                handle.close()


# --- checkpoints -----------------------------------------------------------------------
def save_checkpoint(folder: Path, simulation: Any, outputs: Outputs, step: int,
                     identity: str, complete: bool) -> None:
    data = simulation.context.createCheckpoint()
    name = f"checkpoint-{step:010d}.chk"
    atomic_write_bytes(folder / name, data)
    record = {"format": 1, "identity": identity, "step": step, "checkpoint": name,
              "checkpoint_sha256": sha256_hex(data), "complete": complete, **outputs.sync()}
    atomic_write_bytes(folder / CHECKPOINT_JSON, canonical_json(record) + b"\n")
    for old in folder.glob("checkpoint-*.chk"):
        if old.name != name:
            old.unlink(missing_ok=True)


def usable_checkpoint(folder: Path, identity: str) -> tuple[dict[str, Any] | None, str]:
    """The checkpoint record and bytes if everything it names is intact, else why not."""
    try:
        record = json.loads((folder / CHECKPOINT_JSON).read_bytes())
    except FileNotFoundError:
        return None, "no checkpoint yet"
    except ValueError:
        return None, "checkpoint.json is damaged"
    if not isinstance(record, dict) or record.get("format") != 1:
        return None, "checkpoint.json has an unknown format"
    if record.get("identity") != identity:
        return None, "the checkpoint belongs to other settings, seed or structure"
    try:
        data = (folder / str(record["checkpoint"])).read_bytes()
    except (KeyError, FileNotFoundError):
        return None, "the checkpoint file is missing"
    if sha256_hex(data) != record.get("checkpoint_sha256"):
        return None, "the checkpoint file is damaged"
    for key, file in (("dcd_bytes", "trajectory"), ("csv_bytes", "state_data")):
        path = folder / FILES[file]
        size = record.get(key)
        if not isinstance(size, int) or not path.is_file() or path.stat().st_size < size:
            return None, f"{FILES[file]} is shorter than at the checkpoint"
    if not (folder / FILES["topology"]).is_file():
        return None, f"{FILES['topology']} is missing"
    return {**record, "data": data}, ""


# --- what `assay verify` checks inside a published run ---------------------------------
def dcd_frames(path: Path) -> tuple[int, int, int]:
    """(frames the header counts, frames the file size holds, atoms) of a CHARMM/OpenMM DCD.

    Read from the header alone: the 84-byte control record (NSET at word 1, the unit-cell
    flag at word 11), the title record, the atom count; then whole frames of x, y, z blocks
    (Fortran records of 4 * atoms bytes), each after a 56-byte unit-cell record if flagged.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if len(head) < 100 or head[4:8] != b"CORD":
        raise ValueError("not a DCD file (no CORD header)")
    nset = struct.unpack_from("<i", head, 8)[0]
    has_cell = struct.unpack_from("<i", head, 4 + 4 * 11)[0] != 0
    title_bytes = struct.unpack_from("<i", head, 92)[0]
    atoms_at = 92 + 4 + title_bytes + 4
    natom = struct.unpack_from("<i", head, atoms_at + 4)[0]
    header_len = atoms_at + 12
    frame = 3 * (8 + 4 * natom) + (56 if has_cell else 0)
    body = size - header_len
    frames = body // frame if body % frame == 0 else -1
    return nset, frames, natom


def consistency_problems(payload: dict[str, Any], files: dict[str, Path]) -> list[str]:
    """Where a published OpenMM run's payload and its sidecars disagree (two writers
    appending to one DCD, a truncated copy): frames in the DCD (header and size), rows of
    the state table and the payload's n_frames; atoms in the DCD, the PDB and the payload."""
    problems = []
    frames, atoms = payload.get("n_frames"), payload.get("n_atoms")
    if "trajectory" in files:
        try:
            nset, by_size, natom = dcd_frames(files["trajectory"])
        except (OSError, ValueError, struct.error) as exc:
            problems.append(f"trajectory.dcd cannot be read as a DCD: {exc}")
        else:
            if by_size < 0:
                problems.append(f"trajectory.dcd's size ({files['trajectory'].stat().st_size} "
                                f"bytes) is not a whole number of {natom}-atom frames")
            for what, value in (("counts", nset), ("holds", by_size)):
                if value >= 0 and frames is not None and value != frames:
                    problems.append(f"trajectory.dcd {what} {value} frames (its "
                                    f"{'header' if what == 'counts' else 'size'}), the payload "
                                    f"says n_frames={frames}")
            if atoms is not None and natom != atoms:
                problems.append(f"trajectory.dcd has {natom} atoms, the payload says "
                                f"n_atoms={atoms}")
    if "state_data" in files:
        with open(files["state_data"], "rb") as handle:
            rows = sum(1 for line in handle if line.strip()) - 1
        if frames is not None and rows != frames:
            problems.append(f"state_data.csv has {rows} rows, the payload says "
                            f"n_frames={frames}")
    if "topology" in files:
        with open(files["topology"], "rb") as handle:
            pdb_atoms = sum(1 for line in handle if line.startswith((b"ATOM", b"HETATM")))
        if atoms is not None and pdb_atoms != atoms:
            problems.append(f"topology.pdb has {pdb_atoms} atoms, the payload says "
                            f"n_atoms={atoms}")
    return problems
