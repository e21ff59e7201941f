"""Reading user data files into Arrow columns, with errors that name the file, row and column.

Everything the importers read goes through here:

* :func:`resolve_input` finds a file (relative paths: the working directory first, then
  the source checkout, so ``data/...`` works from anywhere in a checkout, then
  ``lpm_graph/_data/...`` where an installed wheel carries shipped data);
* :func:`read_table` reads a CSV (``.csv``, ``.tsv``, ``.csv.gz``, ...) with pyarrow's
  multi-threaded reader or a Parquet file (``.parquet``, ``.pq``) column by column;
* :class:`Source` wraps the table and formats locations: ``'persons.csv', row 3
  (line 4), column 'age'`` (rows count data rows from 1; for CSV the line is the
  physical line, the header being line 1);
* :func:`id_column`, :func:`numeric_column`, :func:`integer_column` and
  :func:`attribute_column` convert one column, whole-array, and raise
  :class:`DataFileError` at the first offending row with what was expected.

Ids may be integers or strings (an integer-valued float column, as pandas writes an
integer column with missing values, counts as integers), one kind per column: a
string column that holds both integers written as text and other ids -- ``xx`` among
``1, 2, 3``, which makes a CSV reader read the whole column as text -- is an error
naming the first id of the rarer kind (:func:`mixed_id_kinds`), since a stray
non-integer id would add a person and key every id by its rank instead of its value.
"Written as an integer" is what a CSV reader reads as one: optional surrounding
whitespace and sign, then digits, leading zeros included (``007`` is the integer 7, so
``007`` next to ``abc`` is a mix). A column of strings only (``p1, p2``), or of
integers written as text only (a Parquet string column ``'1', '2'``), is one kind and
keeps its string ids. An empty string counts as a missing value in every column.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lpm_graph.errors import DataFileError, MissingInputError, PopulationDataWarning, PopulationGraphError

__all__ = [
    "DataFileError",
    "MissingInputError",
    "PopulationDataWarning",
    "Source",
    "resolve_input",
    "read_table",
    "table_source",
    "id_column",
    "mixed_id_kinds",
    "check_id_kinds",
    "same_id_kind",
    "numeric_column",
    "integer_column",
    "attribute_column",
    "PROJECT_ROOT",
]

#: The source checkout (``lpm_graph/..``); relative input paths fall back to it.
PROJECT_ROOT = Path(__file__).resolve().parents[2]

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
COMPRESSED = (".gz", ".bz2", ".zst", ".lz4")
PARQUET_SUFFIXES = (".parquet", ".pq")




def resolve_input(path: str | os.PathLike, what: str) -> Path:
    """The existing file ``path``; relative paths are tried in the working directory, then the checkout.

    Raises:
        MissingInputError: if it exists in neither place (the message lists both).
    """
    if path is None or (isinstance(path, str) and not path.strip()):
        raise DataFileError(f"{what}: no file given; set it to the path of a file")
    if not isinstance(path, (str, os.PathLike)):
        raise DataFileError(f"{what}: expected a file path, got {type(path).__name__} {path!r}")
    p = Path(path).expanduser()
    tried = [p.resolve()]
    if p.is_file():
        return p.resolve()
    if not p.is_absolute():
        candidates = [PROJECT_ROOT / p]
        if p.parts and p.parts[0] == "data":  # an installed wheel carries data/... as lpm_graph/_data/...
            candidates.append(PROJECT_ROOT / "lpm_graph" / "_data" / Path(*p.parts[1:]))
        for alt in candidates:
            tried.append(alt)
            if alt.is_file():
                return alt.resolve()
    where = " or ".join(repr(str(t)) for t in tried)
    kind = "is a directory, not a file" if p.is_dir() else "does not exist"
    raise MissingInputError(f"{what}: file {str(path)!r} {kind} (looked for {where}); check the path")


def _file_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in COMPRESSED:
        suffixes.pop()
    last = suffixes[-1] if suffixes else ""
    if last in PARQUET_SUFFIXES:
        return "parquet"
    if last in CSV_SUFFIXES:
        return "csv"
    return ""


@dataclass
class Source:
    """A table read from a file, with the file's name for error messages."""

    path: Path
    table: pa.Table
    kind: str  # "csv" | "parquet" | "frame" | "lines"
    what: str = "table"
    line_numbers: np.ndarray | None = None  # kind "lines": the physical line of each row

    @property
    def name(self) -> str:
        return str(self.path)

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    @property
    def columns(self) -> list[str]:
        return list(self.table.column_names)

    def row(self, index: int) -> str:
        """Location of data row ``index`` (0-based) in human terms."""
        if self.kind == "lines" and self.line_numbers is not None:
            return f"line {int(self.line_numbers[index])}"
        label = f"row {index + 1}"
        if self.kind == "csv":
            label += f" (line {index + 2})"
        return label

    def where(self, column: str | None = None, row: int | None = None) -> str:
        parts = [f"{self.what} {self.name!r}"]
        if row is not None:
            parts.append(self.row(row))
        if column is not None:
            parts.append(f"column {column!r}")
        return ", ".join(parts)

    def error(self, message: str, column: str | None = None, row: int | None = None) -> DataFileError:
        return DataFileError(f"{self.where(column, row)}: {message}")

    def require(self, names: Iterable[str], role: str = "") -> None:
        """Raise naming the missing columns and the ones present."""
        missing = [n for n in names if n not in self.table.column_names]
        if missing:
            hint = f" ({role})" if role else ""
            raise self.error(f"missing required column(s) {missing}{hint}; columns present: {self.columns}")

    def column(self, name: str) -> pa.Array:
        col = self.table.column(name)
        return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def table_source(table: pa.Table, name: str, what: str = "table") -> Source:
    """Wrap an in-memory table (e.g. from a networkx graph) so that errors name it."""
    return Source(Path(name), table, "frame", what)


def _csv_first_bad_line(path: Path, delimiter: str) -> tuple[int | None, str, int, int]:
    """Re-read single-threaded to find the physical line of the first malformed row."""
    import pyarrow.csv as pacsv

    found: list = []

    def handler(row):
        if not found:
            found.append((row.number, row.text, row.expected_columns, row.actual_columns))
        return "skip"

    pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=False),
                   parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=handler),
                   convert_options=pacsv.ConvertOptions(column_types=None, strings_can_be_null=True))
    return found[0] if found else (None, "", 0, 0)


def read_table(path: str | os.PathLike, what: str = "table", columns: Iterable[str] | None = None) -> Source:
    """Read a CSV or Parquet file into an Arrow table.

    Args:
        path: the file; the format is chosen by suffix (``.csv``/``.tsv``/``.txt``,
            optionally compressed ``.gz``/``.bz2``/``.zst``/``.lz4``; ``.parquet``/``.pq``).
        what: what the file is, for messages (e.g. ``"person table"``).
        columns: read only these (Parquet reads them without touching the others);
            names not present are ignored here and reported by :meth:`Source.require`.

    Raises:
        MissingInputError: no such file.
        DataFileError: empty file, unknown suffix, unparseable content (with its line),
            duplicate column names, no data rows, text that is not UTF-8.
    """
    p = resolve_input(path, what)
    fmt = _file_format(p)
    if not fmt:
        raise DataFileError(f"{what} {str(p)!r}: unknown file type {''.join(p.suffixes) or '(no suffix)'!r}; "
                            f"expected one of {list(CSV_SUFFIXES + PARQUET_SUFFIXES)} "
                            f"(CSV optionally compressed: {list(COMPRESSED)})")
    if p.stat().st_size == 0:
        raise DataFileError(f"{what} {str(p)!r}: the file is empty; expected a header and at least one row")
    wanted = None if columns is None else list(dict.fromkeys(columns))
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            schema = pq.read_schema(p)
            cols = None if wanted is None else [c for c in wanted if c in schema.names]
            table = pq.read_table(p, columns=cols)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DataFileError(f"{what} {str(p)!r}: not a readable Parquet file ({exc}); "
                                "write it with pandas.DataFrame.to_parquet or pyarrow.parquet.write_table") from None
        source = Source(p, table, "parquet", what)
    else:
        import pyarrow.csv as pacsv

        delimiter = "\t" if ".tsv" in [s.lower() for s in p.suffixes] else ","
        try:
            header = pacsv.open_csv(p, read_options=pacsv.ReadOptions(block_size=1 << 16),
                                    parse_options=pacsv.ParseOptions(delimiter=delimiter)).schema.names
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                raise DataFileError(f"{what} {str(p)!r}: the file has no header line; expected a header "
                                    "naming the columns and at least one row") from None
            header = None
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise DataFileError(f"{what} {str(p)!r}: not a readable CSV file ({exc})") from None
        include = None if (wanted is None or header is None) else [c for c in wanted if c in header]
        try:
            table = pacsv.read_csv(
                p, parse_options=pacsv.ParseOptions(delimiter=delimiter),
                convert_options=pacsv.ConvertOptions(strings_can_be_null=True, include_columns=include))
        except pa.ArrowInvalid as exc:
            message = str(exc)
            if "Empty CSV file" in message:
                raise DataFileError(f"{what} {str(p)!r}: the file has no header line; expected a header "
                                    "naming the columns and at least one row") from None
            if "Expected" in message and "columns" in message:
                line, text, expected, actual = _csv_first_bad_line(p, delimiter)
                where = f"line {line}" if line is not None else "a line"
                raise DataFileError(f"{what} {str(p)!r}, {where}: cannot parse {text[:80]!r}: expected "
                                    f"{expected} comma-separated fields (as in the header), got {actual}") from None
            raise DataFileError(f"{what} {str(p)!r}: cannot parse the CSV file ({message})") from None
        except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
            raise DataFileError(f"{what} {str(p)!r}: not a readable CSV file ({exc})") from None
        source = Source(p, table, "csv", what)
    names = source.table.column_names
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise source.error(f"duplicate column name(s) {dups}; every column needs its own name")
    for name, typ in zip(names, source.table.schema.types):
        if pa.types.is_binary(typ) or pa.types.is_large_binary(typ):
            raise source.error("holds text that is not valid UTF-8; re-save the file as UTF-8", column=name)
    if source.num_rows == 0:
        raise source.error("has a header but no data rows; expected at least one row")
    return source


# -----------------------------------------------------------------------------------------
# Column conversion: whole-array checks, first offending row reported.
# -----------------------------------------------------------------------------------------


_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$|^\s*[-+]?(inf|infinity|nan)\s*$"


def _show(value) -> str:
    """A number as written: 3, -4.5, nan (no numpy reprs in messages)."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _type_name(typ: pa.DataType) -> str:
    if pa.types.is_integer(typ):
        return "integer"
    if pa.types.is_floating(typ):
        return "float"
    if pa.types.is_boolean(typ):
        return "boolean"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "string"
    if pa.types.is_null(typ):
        return "empty"
    return str(typ)


def _decoded(arr: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(arr.type):
        arr = arr.cast(arr.type.value_type)
    if pa.types.is_large_string(arr.type) or pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.string())
    if pa.types.is_string(arr.type):
        # the empty string means "missing", in CSV and Parquet alike
        arr = pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)
    return arr


def _is_string(arr: pa.Array) -> bool:
    return pa.types.is_string(arr.type)


#: An id written as an integer: what a CSV reader reads as one (whitespace, sign, digits).
INTEGER_ID = r"^\s*[-+]?[0-9]+\s*$"
_ID_FIX = ("ids must be of one kind (a non-integer id among integers adds a person and keys every id by "
           "its rank instead of its value): make every id an integer, or every id a string that is not a "
           "number (e.g. prefix every id: 'p1')")


@dataclass(frozen=True)
class MixedIds:
    """Where a string id column mixes integers written as text with other ids."""

    row: int  # first id of the rarer kind (non-integers on a tie)
    kind: str  # its kind: "an integer" or "not an integer"
    other_row: int  # first id of the other kind
    other_count: int  # ids of the other kind
    total: int  # ids present


def mixed_id_kinds(arr: pa.Array) -> MixedIds | None:
    """For a string id array holding both integers written as text and other ids, where; else None."""
    if len(arr) == 0 or arr.null_count == len(arr):
        return None
    integer = pc.match_substring_regex(arr, INTEGER_ID)
    present = np.asarray(arr.is_valid())
    ints = np.asarray(integer.fill_null(False)) & present
    others = present & ~ints
    n_int, n_other = int(ints.sum()), int(others.sum())
    if not n_int or not n_other:
        return None
    if n_int < n_other:
        return MixedIds(_first(ints), "an integer", _first(others), n_other, n_int + n_other)
    return MixedIds(_first(others), "not an integer", _first(ints), n_int, n_int + n_other)


def check_id_kinds(source: Source, name: str, arr: pa.Array, rows: np.ndarray | None = None,
                   scope: str = "the column's") -> None:
    """Raise naming the row if the string ids ``arr`` of column ``name`` mix kinds (:func:`mixed_id_kinds`).

    ``rows``: the source row of each id, when ``arr`` is a subset of the column
    (one venue type of a combined venue table); ``scope`` names that subset.
    """
    if not _is_string(arr):
        return
    mixed = mixed_id_kinds(arr)
    if mixed is None:
        return
    row, other_row = (mixed.row, mixed.other_row) if rows is None else (int(rows[mixed.row]),
                                                                         int(rows[mixed.other_row]))
    other = "integers" if mixed.kind == "not an integer" else "not integers"
    raise source.error(
        f"id {arr[mixed.row].as_py()!r} is {mixed.kind}, but {mixed.other_count:,} of {scope} "
        f"{mixed.total:,} ids are {other} (the first: {arr[mixed.other_row].as_py()!r}, "
        f"{source.row(other_row)}); {_ID_FIX}", column=name, row=row)


def same_id_kind(source: Source, columns: Iterable[tuple[str, pa.Array]]) -> None:
    """Raise if id columns of one id space (an edge's two ends) mix integer ids with non-integer strings.

    Each column is one kind already (:func:`id_column`); an integer column and a
    column of strings written as integers meet as strings, as before.
    """
    columns = list(columns)
    ints = [(n, a) for n, a in columns if not _is_string(a) and len(a) and a.null_count < len(a)]
    if not ints:
        return
    for name, arr in columns:
        if not _is_string(arr) or not len(arr):
            continue
        integer = np.asarray(pc.match_substring_regex(arr, INTEGER_ID).fill_null(True))
        if not integer.all():
            row = _first(~integer)
            raise source.error(f"id {arr[row].as_py()!r} is not an integer, but the ids of column "
                               f"{ints[0][0]!r} are integers (they name the same people); {_ID_FIX}",
                               column=name, row=row)


def id_column(source: Source, name: str, nullable: bool = False, check_kinds: bool = True) -> pa.Array:
    """Ids of column ``name`` as an int64 or string Arrow array (nulls kept only if ``nullable``).

    Raises:
        DataFileError: wrong type (not integer/string), non-integer float ids,
            integers beyond int64, a string column mixing integers written as text
            with other ids (module docstring; ``check_kinds=False``: the caller checks
            subsets, e.g. one venue type at a time), or a missing id where one is required.
    """
    arr = _decoded(source.column(name))
    typ = arr.type
    if pa.types.is_null(typ):
        arr = pa.nulls(len(arr), pa.int64())
    elif pa.types.is_unsigned_integer(typ):
        big = np.asarray(arr.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.uint64) > np.uint64(2**63 - 1)
        if big.any():
            row = _first(big)
            raise source.error(f"id {arr[row].as_py()} does not fit a signed 64-bit integer; "
                               "use string ids for such values", column=name, row=row)
        arr = arr.cast(pa.int64())
    elif pa.types.is_integer(typ):
        arr = arr.cast(pa.int64())
    elif pa.types.is_floating(typ):
        values = arr.to_numpy(zero_copy_only=False).astype(np.float64)
        present = ~np.isnan(values) if arr.null_count == 0 else np.asarray(arr.is_valid())
        bad = present & (~np.isfinite(values) | (values != np.floor(values)) | (np.abs(values) > 2**53))
        if bad.any():
            row = _first(bad)
            raise source.error(f"id {_show(values[row])} is not an integer; ids must be integers or strings",
                               column=name, row=row)
        ints = np.where(present, values, 0).astype(np.int64)
        arr = pa.array(ints, mask=~present, type=pa.int64())
    elif not _is_string(arr):
        raise source.error(f"must hold integer or string ids, got {_type_name(typ)} values",
                           column=name)
    elif check_kinds:
        check_id_kinds(source, name, arr)
    if not nullable and arr.null_count:
        row = _first(~np.asarray(arr.is_valid()))
        raise source.error("missing id; every row needs one", column=name, row=row)
    return arr


def numeric_column(source: Source, name: str, *, allow_null: bool = False, min_value: float | None = None,
                   what: str = "value") -> np.ndarray:
    """A float64 numpy array; errors for non-numeric types, missing, NaN/inf and values below ``min_value``."""
    arr = _decoded(source.column(name))
    typ = arr.type
    if not (pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_null(typ)):
        if _is_string(arr):
            numeric = pc.match_substring_regex(arr, _NUMBER, ignore_case=True).fill_null(True)
            bad = ~np.asarray(numeric)
            if bad.any():
                row = _first(bad)
                raise source.error(f"expected a number ({what}), got {arr[row].as_py()!r}", column=name, row=row)
            try:  # numbers written as text
                arr = pc.cast(pc.utf8_trim_whitespace(arr), pa.float64())
            except pa.ArrowInvalid as exc:
                raise source.error(f"expected numbers ({what}): {exc}", column=name) from None
        else:
            raise source.error(f"must hold numbers ({what}), got {_type_name(typ)} values", column=name)
    values = arr.to_numpy(zero_copy_only=False).astype(np.float64) if len(arr) else np.zeros(0)
    missing = ~np.asarray(arr.is_valid()) if arr.null_count else np.zeros(len(values), dtype=bool)
    if missing.any() and not allow_null:
        raise source.error(f"missing {what}; every row needs one", column=name, row=_first(missing))
    present = ~missing
    nan = present & np.isnan(values)
    if nan.any() and not allow_null:
        raise source.error(f"{what} is NaN; expected a finite number", column=name, row=_first(nan))
    inf = present & np.isinf(values)
    if inf.any():
        raise source.error(f"{what} is {_show(values[_first(inf)])}; expected a finite number", column=name,
                           row=_first(inf))
    if min_value is not None:
        low = present & ~np.isnan(values) & (values < min_value)
        if low.any():
            row = _first(low)
            raise source.error(f"{what} {_show(values[row])} is below {_show(min_value)}; expected >= {_show(min_value)}",
                               column=name, row=row)
    if missing.any():
        values = np.where(missing, np.nan, values)
    return values


def integer_column(source: Source, name: str, *, min_value: int | None = 0, what: str = "value") -> np.ndarray:
    """An int64 numpy array of integer values (integer-valued floats accepted); no missing values."""
    values = numeric_column(source, name, what=what)
    frac = values != np.floor(values)
    if frac.any():
        row = _first(frac)
        raise source.error(f"{what} {_show(values[row])} is not an integer; expected a whole number",
                           column=name, row=row)
    if min_value is not None:
        low = values < min_value
        if low.any():
            row = _first(low)
            raise source.error(f"{what} {int(values[row])} is negative; expected an integer >= {min_value}",
                               column=name, row=row)
    return values.astype(np.int64)


def attribute_column(source: Source, name: str) -> tuple[np.ndarray, list[str] | None]:
    """A node attribute: ``(values, categories)``.

    Numeric and boolean columns keep their type (int64, float32/float64, bool); with
    missing values, integers and booleans become float64 with NaN. String and
    categorical columns become int64 codes into ``categories`` (sorted, ``-1`` =
    missing).

    Raises:
        DataFileError: for other types (timestamps, lists, ...), naming the column.
    """
    arr = _decoded(source.column(name))
    typ = arr.type
    if pa.types.is_null(typ):
        return np.full(len(arr), np.nan), None
    if _is_string(arr):
        categories = pc.unique(arr.drop_null())
        categories = categories.take(pc.array_sort_indices(categories))
        codes = pc.index_in(arr, value_set=categories)
        codes = pc.fill_null(codes, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        return codes, categories.to_pylist()
    if pa.types.is_boolean(typ) or pa.types.is_integer(typ) or pa.types.is_floating(typ):
        if arr.null_count:
            values = arr.cast(pa.float64()).to_numpy(zero_copy_only=False)
            return np.where(np.asarray(arr.is_valid()), values, np.nan), None
        if pa.types.is_boolean(typ):
            return arr.to_numpy(zero_copy_only=False).astype(bool), None
        if pa.types.is_integer(typ):
            if pa.types.is_uint64(typ) and len(arr) and pc.max(arr).as_py() > 2**63 - 1:
                return arr.cast(pa.float64()).to_numpy(), None
            return arr.cast(pa.int64()).to_numpy(zero_copy_only=False), None
        dtype = np.float32 if pa.types.is_float32(typ) or pa.types.is_float16(typ) else np.float64
        return arr.to_numpy(zero_copy_only=False).astype(dtype), None
    raise source.error(f"attribute column of type {typ} is not supported; node attributes must be "
                       "numbers, booleans or strings (convert dates to numbers or strings first)",
                       column=name)
