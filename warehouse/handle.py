"""A run as a Python value: what a notebook holds instead of a run id string.

    wh = open_warehouse("results/warehouse.duckdb", read_only=True)
    run = wh.run("latest")                 # or a run id, or a unique prefix of one
    run.lineage                            # the runs row: config, model, dataset, versions, row counts
    run.view("token_importance")           # any view's rows for this run, as polars
    run.results(); run.attention(layer=3)  # the fact tables, filtered on the database side
    wh.runs(); wh.sql("SELECT ...")        # every run; any read-only query

Every read goes through the warehouse's reader, so a run whose data file is damaged is refused with
one line naming the file (RunDamaged), and nothing a Run does can write.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import duckdb
import numpy as np
import polars as pl

from warehouse.errors import WarehouseError
from warehouse.frames import vector_matrix

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Reads(Protocol):
    """What a Run needs of its warehouse (warehouse.store.Warehouse, which makes Runs, is one)."""

    path: Path

    def reader(
        self, exclude_damaged: bool = False, require: tuple = ()
    ) -> AbstractContextManager[duckdb.DuckDBPyConnection]: ...

    def show_run(self, spec: str) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Run:
    """One run of a warehouse. Cheap to make (`Warehouse.run`); reads happen when a method is called."""

    warehouse: Reads
    run_id: str

    def __repr__(self) -> str:
        return f"Run({self.run_id!r} in {str(self.warehouse.path)!r})"

    @contextlib.contextmanager
    def reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read connection; RunDamaged if one of this run's data files cannot be read."""
        with self.warehouse.reader(exclude_damaged=True, require=(self.run_id,)) as con:
            yield con

    @property
    def lineage(self) -> dict[str, Any]:
        """The run's row of `runs` (config, model, dataset, library versions, status) and its row counts."""
        return self.warehouse.show_run(self.run_id)

    @property
    def status(self) -> str:
        return str(self.lineage["status"])

    def view(self, name: str, **equals: Any) -> pl.DataFrame:
        """Rows of the view (or table) `name` for this run, with optional equality filters (`layer=3`)."""
        for identifier in (name, *equals):
            if not _IDENTIFIER.fullmatch(identifier):
                raise WarehouseError(f"{identifier!r} is not a view or column name")
        with self.reader() as con:
            columns = _columns(con, name)
            if "run_id" not in columns:
                raise WarehouseError(
                    f"{name} has no run_id column (it spans runs); read it with Warehouse.sql"
                )
            unknown = [c for c in equals if c not in columns]
            if unknown:
                raise WarehouseError(
                    f"{name} has no column {', '.join(unknown)}; it has {', '.join(columns)}"
                )
            where = " AND ".join(["run_id = ?", *(f'"{c}" IS NOT DISTINCT FROM ?' for c in equals)])
            return con.execute(f'SELECT * FROM "{name}" WHERE {where}', [self.run_id, *equals.values()]).pl()

    def results(self, **equals: Any) -> pl.DataFrame:
        """One row per problem and condition (the `results` table), e.g. `results(method="zero")`."""
        return self.view("results", **equals)

    def attention(self, layer: int | None = None, **equals: Any) -> pl.DataFrame:
        """Attention rows (problem, condition, layer, head, dst, src, weight), optionally one layer's."""
        if layer is not None:
            equals["layer"] = layer
        return self.view("attention", **equals)

    def states(
        self, layer: int | None = None, position: int | None = None
    ) -> tuple[pl.DataFrame, np.ndarray]:
        """The baseline's stored states (`run --states`) as (keys, matrix): keys (problem_id, ordinal, layer,
        position) in run order, then layer, then position, and the float32 matrix [rows, d_model] whose row
        i is key i's vector. `layer` (-1: the vector fed in) and `position` (0..5 thoughts, 6 EOT) filter."""
        where = "s.run_id = ?"
        params: list[Any] = [self.run_id]
        for column, value in (("layer", layer), ("position", position)):
            if value is not None:
                where += f" AND s.{column} = ?"
                params.append(value)
        with self.reader() as con:
            table = con.execute(
                "SELECT s.problem_id, rp.ordinal, s.layer, s.position, s.state FROM states s "
                "LEFT JOIN run_problems rp ON rp.run_id = s.run_id AND rp.problem_id = s.problem_id "
                f"WHERE {where} ORDER BY rp.ordinal, s.problem_id, s.layer, s.position",
                params,
            ).to_arrow_table()
        keys = pl.from_arrow(table.drop_columns(["state"]))
        assert isinstance(keys, pl.DataFrame)
        return keys, vector_matrix(table.column("state"), f"run {self.run_id}: states")

    def problems(self) -> pl.DataFrame:
        """The run's problems in run order (question, gold answer, steps, stratum)."""
        with self.reader() as con:
            return con.execute(
                "SELECT p.*, rp.* EXCLUDE (run_id, problem_id) FROM run_problems rp "
                "JOIN problems p USING (problem_id) WHERE rp.run_id = ? ORDER BY rp.ordinal",
                [self.run_id],
            ).pl()


def _columns(con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
    found = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "AND table_catalog = current_database() ORDER BY ordinal_position",
        [name],
    ).fetchall()
    if not found:
        raise WarehouseError(f'no view or table {name!r}; `python cli.py query "SHOW TABLES"` lists them')
    return [c for (c,) in found]
