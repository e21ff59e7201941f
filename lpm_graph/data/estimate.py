"""The size of a population before it is built: node and edge counts and bytes, from its config.

:func:`population_size` reads a population config (the ``population`` group)
and returns its expected size, so that a run can be refused before the
population is built (:func:`lpm_graph.memory.estimate_config`).  Every
``conf/population`` choice is estimated without building it:

=====================  ==========================================================
source                 what is read
=====================  ==========================================================
``synthetic``          the spec: household sizes, enrolment, employment, venue
                       sizes (expected counts)
``nyc``                the marginals file and ``num_people``: the synthetic spec
                       the census builder derives from them, with the schools'
                       thinning by enrolment rate
``random_graph``       ``num_people`` and ``mean_degree``
``tables``             the header and a sample of each table, the row count of
                       each table, and for Parquet the null counts of the venue
                       columns (row-group statistics)
``edgelist``           as ``tables`` for the edge table and the optional person
                       and venue tables
``sociopatterns``      the number of lines and the fields of the first line
``networkx``           the number of ``<node``/``<edge`` elements (GraphML) or
                       ``node [``/``edge [`` entries (GML), by one scan of the file
``file``               the tensors' shapes, read with ``torch.load(mmap=True)``:
                       exact, no data read
``supply_network``     the tiers and suppliers per node: exact counts
``supply_edgelist``    as ``edgelist`` for the shipment list and the optional
                       node table; the node types and tier pairs in the
                       proportions of the tables' samples (with a node table the
                       tier pairs are known once read: the edges are shared among
                       the pairs the model reads)
``vaccine_network``    the synthetic spec, and the clinics per community and
                       district of ``people_per_clinic`` (expected counts)
=====================  ==========================================================

Row counts: Parquet's from its metadata (exact, no data read); an
uncompressed CSV's by counting its newlines (exact up to quoted newlines, one
pass at disk speed, constant memory); a compressed CSV's by decompressing up
to its first 64 MiB and scaling the lines found by the compressed bytes read
(an estimate; exact for a file shorter than that).  What cannot be known
unread is bounded from above: every venue column of a CSV person table is
taken to be filled, every record of an edge list to be a distinct contact,
the people of an edge list without a person table to be at most the
endpoints (for Parquet integer ids, at most the span of their min/max
statistics), a combined venue table's venues of each type at most its rows.
String ids are as wide as the widest in the sample.

Besides the built ``HeteroData`` (:attr:`PopulationSize.bytes`), the build
itself allocates transients -- the Arrow tables read, their numpy copies,
sort keys and orders, XML trees and networkx graphs -- which
:attr:`PopulationSize.build_bytes` estimates per source from the quantities
above with factors measured on moderate sizes (``scripts/bench_estimate.py``
prints estimate / actual for every source; a build's fixed overheads make the
ratios of the build peak fall towards 0.8 at a fifth of these sizes)::

    python scripts/bench_estimate.py --people 1000000 --records 3000000
    python scripts/bench_estimate.py --people 400000 --records 3000000 --only sociopatterns networkx
    python scripts/bench_estimate.py --people 1000000 --records 500000 --only supply_network shipments vaccine_network

======================  ===============  ======================  =====================================
source                  graph bytes      build peak (RSS added)  size
                        estimate/actual  estimate/measured
======================  ===============  ======================  =====================================
synthetic               1.00             1.06                    1,000,000 people
nyc                     1.00             1.13                    1,000,000 people
random_graph            1.00             1.07                    1,000,000 people, 5,000,000 ties
tables (CSV)            1.99             1.20                    1,000,000 rows, 4 venue columns
tables (Parquet)        1.33             1.19                    1,000,000 rows, 4 venue columns
edgelist (CSV)          1.45             1.02                    3,000,000 records
edgelist (Parquet)      1.00             1.00                    3,000,000 records
sociopatterns           1.60             1.12                    3,000,000 lines, 40,000 people
networkx (GraphML)      1.42             1.18                    40,000 nodes, 200,000 edges
file                    1.00             1.08                    1,000,000 people
supply_network          1.00             1.03                    1,000,000 consumers
shipments (types)       1.46             1.09                    500,000 rows, types in the rows
shipments (nodes)       0.98             1.10                    500,000 rows and a node table
vaccine_network         1.00             1.10                    400,000 people
======================  ===============  ======================  =====================================

(The upper bounds above make the graph estimates of file sources larger than
the graphs; the synthetic sources are expected counts.)  A source whose size
cannot be read (a missing or unreadable file, a config the builder would
refuse) gives ``None``: building it reports the problem.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import OmegaConf

__all__ = ["PopulationSize", "population_size", "expected_memberships", "csv_rows", "ANY_RELATION"]

#: Relation (or node type) of edges whose relation (or end types) are only known once read (an edge list's
#: layers, a shipment list's tier pairs).
ANY_RELATION = "*"

# Transient bytes of a build beyond its graph, per unit, measured (scripts/bench_estimate.py):
_SYNTHETIC_BUILD = 0.75     # x the graph's bytes (ages, permutations, sort orders of the memberships)
_CENSUS_BUILD = 0.75        # x the graph's bytes (the synthetic build, then the schools' thinning)
_RANDOM_BUILD = 44          # per tie (candidate keys, torch.unique, the concatenated edge_index)
_TABLE_BUILD = 1.0          # x the Arrow bytes of every table read (held through the build)
_MEMBER_BUILD = 50          # per row of each venue column (ids, lookups, masks, tensors, argsort order)
_RECORD_BUILD = 200         # per edge record (ids, lookups, merge keys and orders, reverse check)
_LINE_BUILD = 150           # per SocioPatterns line, plus 2x the file (its bytes and text)
_NX_NODE_BUILD = 1500       # per networkx node (XML element, networkx dicts, frames)
_NX_EDGE_BUILD = 2600       # per networkx edge
_FILE_BUILD = 0.15          # x a population file's tensors (checks on load)
_SUPPLY_EDGE = 32           # bytes per supply edge: edge_index int64, edge_weight and capacity float32, lead_time
_SUPPLY_BUILD = 44          # per supply edge (starts, the modulo's temporaries, draws, the validation's checks)
_SHIPMENT_BUILD = 860       # per shipment row (ids and types as Python objects, lookups, keys, orders, tensors)
_CLINIC_BUILD = 60          # per person of a vaccine network (household and community orders, ranks, catchments)
_IMPORT_BUILD = 32 << 20    # an importer's fixed transient (Arrow's pool, readers' buffers)
_SAMPLE_BYTES = 1 << 20     # CSV sample read for the header, types and string widths
_COMPRESSED_SCAN = 64 << 20  # decompressed bytes read of a compressed CSV to count its lines


@dataclass
class PopulationSize:
    """Expected node counts per type, edge counts per edge type, bytes of the ``HeteroData`` and of its build.

    ``build_bytes`` is what the build holds at its peak beyond the graph (so the
    build peaks at ``bytes + build_bytes``); ``knob`` names what shrinks the
    population; ``source`` says what the estimate read.  An edge type with
    relation :data:`ANY_RELATION` stands for edges whose relations are only known
    once the file is read.
    """

    nodes: dict[str, int] = field(default_factory=dict)
    edges: dict[tuple[str, str, str], int] = field(default_factory=dict)
    bytes: int = 0
    build_bytes: int = 0
    knob: str = "a smaller population.num_people"
    source: str = ""

    @property
    def peak(self) -> int:
        """Bytes the build holds at its peak (the graph and the transients)."""
        return self.bytes + self.build_bytes


# -----------------------------------------------------------------------------------------
# Generated populations: from their specs
# -----------------------------------------------------------------------------------------


def _share(spec, lo: float, hi: float) -> float:
    """Share of people with integer ages ``lo..hi`` inclusive under the spec's age distribution."""
    ages = spec.age_distribution
    edges = torch.tensor(ages.bin_edges, dtype=torch.float64)
    w = torch.tensor(ages.weights, dtype=torch.float64)
    w = w / w.sum()
    a, b = edges[:-1], edges[1:]
    overlap = (torch.minimum(b, torch.tensor(hi + 1.0)) - torch.maximum(a, torch.tensor(float(lo)))).clamp_min(0)
    return float((w * overlap / (b - a)).sum())


def expected_memberships(spec) -> dict[str, float]:
    """Expected memberships per person of each venue type of a synthetic spec (household and community:
    everyone; school and workplace by age, enrolment and employment)."""
    school = _share(spec, spec.school.min_age, spec.school.max_age) * spec.school.enrolment
    work = _share(spec, spec.workplace.min_age, spec.workplace.max_age) * spec.workplace.employment_rate
    return {"household": 1.0, "school": school, "workplace": work, "community": 1.0}


def _options(cfg) -> dict:
    return {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if not k.startswith("_")}


def _random_graph_size(cfg) -> PopulationSize | None:
    import inspect

    from lpm_graph.data.random_graphs import _check, random_graph

    kwargs = _options(cfg)
    defaults = {k: p.default for k, p in inspect.signature(random_graph).parameters.items()}
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        return None  # instantiating the config reports them
    args = {**defaults, **kwargs}
    _check(**args)
    n = int(args["num_people"])
    ties = int(round(n * float(args["mean_degree"]) / 2))
    e = 2 * ties
    size = PopulationSize(nodes={"person": n}, edges={("person", args["relation"], "person"): e})
    size.bytes = n * (8 + (4 if args["age"] else 0)) + e * (16 + (4 if args["weighted"] else 0))
    size.build_bytes = _RANDOM_BUILD * ties
    size.source = f"{n:,} people, {ties:,} ties"
    return size


def _synthetic_size(spec, school_keep: float = 1.0) -> PopulationSize:
    """Expected size of the synthetic generator's population of ``spec``; ``school_keep``: the share of
    pupils kept afterwards (the census builder thins schools by the enrolment rate of each age)."""
    from lpm_graph.data.synthetic import MEMBER_OF, REV_MEMBER_OF, _pareto_mean

    n = spec.num_people
    sizes = torch.arange(1, len(spec.household_size_distribution) + 1, dtype=torch.float64)
    hh = torch.tensor(spec.household_size_distribution, dtype=torch.float64)
    mean_household = float((sizes * hh).sum() / hh.sum())
    members = expected_memberships(spec)
    venues = {"household": n / mean_household, "community": n / spec.community.mean_size,
              "school": n * members["school"] / spec.school.mean_size,
              "workplace": n * members["workplace"] / _pareto_mean(spec.workplace)}
    members["school"] *= school_keep
    out = PopulationSize(nodes={"person": n})
    total = n * (8 + 4)  # uid int64, age float32
    for vt, count in venues.items():
        v = max(1, int(round(count)))
        e = int(round(n * members[vt]))
        out.nodes[vt] = v
        out.edges[("person", MEMBER_OF, vt)] = e
        out.edges[(vt, REV_MEMBER_OF, "person")] = e
        total += v * 16 + 2 * 16 * e  # uid and size int64; edge_index int64 both ways
    out.bytes = total
    out.build_bytes = int(_SYNTHETIC_BUILD * total)
    out.source = f"{n:,} people"
    return out


def _generator_size(cfg) -> PopulationSize:
    from lpm_graph.data.synthetic import SyntheticPopulationSpec

    return _synthetic_size(SyntheticPopulationSpec.from_config(**_options(cfg)))


def _census_size(cfg) -> PopulationSize | None:
    from lpm_graph.data.census import _check_people, _generator_arguments, load_marginals, school_keep_fraction
    from lpm_graph.data.synthetic import SyntheticPopulationSpec

    options = _options(cfg)
    seed = options.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        return None  # the builder reports it
    marginals = load_marginals(options.get("marginals", "data/nyc/marginals.yaml"))
    n = _check_people(options.get("num_people"), marginals)
    spec = SyntheticPopulationSpec.from_config(**_generator_arguments(marginals, n, seed))
    out = _synthetic_size(spec, school_keep_fraction(marginals))
    out.build_bytes = int(_CENSUS_BUILD * out.bytes)
    out.source = f"{n:,} people from the marginals {marginals.name!r}"
    return out


# -----------------------------------------------------------------------------------------
# Files: row counts, headers, samples
# -----------------------------------------------------------------------------------------


def _count_newlines(handle, limit: int | None = None) -> tuple[int, int, bool]:
    """(newlines, bytes read, whether the data end with a newline) of a binary stream, in 16 MiB blocks."""
    lines = read = 0
    last = b"\n"
    while limit is None or read < limit:
        block = handle.read(16 << 20)
        if not block:
            break
        lines += block.count(b"\n")
        read += len(block)
        last = block[-1:]
    return lines, read, last == b"\n"


def csv_rows(path: str | Path) -> tuple[int, bool]:
    """Data rows of a CSV file (lines after the header) and whether the count is exact.

    Uncompressed: its newlines, counted in one pass (exact, up to newlines inside
    quoted fields).  Compressed (``.gz``, ``.bz2``, ``.zst``, ``.lz4``): the lines
    of its first 64 MiB decompressed, scaled by the file's size over the compressed
    bytes that took (exact when the file is shorter).
    """
    import pyarrow as pa

    from lpm_graph.data.readers import COMPRESSED

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in COMPRESSED:
        with open(p, "rb") as handle:
            lines, _, ends = _count_newlines(handle)
        return max(0, lines + (0 if ends else 1) - 1), True
    codec = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4"}[suffix]
    with pa.OSFile(str(p)) as raw, pa.CompressedInputStream(raw, codec) as stream:
        lines, read, ends = _count_newlines(stream, _COMPRESSED_SCAN)
        done = not stream.read(1)
        used = raw.tell()
    lines += 0 if ends else 1
    if done:
        return max(0, lines - 1), True
    total = p.stat().st_size
    return max(0, int(math.ceil(lines * total / max(used, 1))) - 1), False


@dataclass
class _Table:
    """What a table file says of itself without being read: rows, column types, nulls, a sample."""

    path: Path
    rows: int
    exact: bool
    sample: object  # pyarrow.Table: the first rows
    nulls: dict = field(default_factory=dict)  # column -> null count (Parquet statistics)
    minmax: dict = field(default_factory=dict)  # integer or string column -> (min, max) (Parquet statistics)

    @property
    def columns(self) -> list[str]:
        return list(self.sample.column_names)

    def arrow_bytes(self) -> int:
        """Bytes of the whole table in Arrow memory, scaled from the sample."""
        n = max(self.sample.num_rows, 1)
        return int(self.sample.nbytes / n * self.rows) + 64 * len(self.columns)

    def filled(self, column: str) -> int:
        """Rows holding a value in ``column`` (all rows unless Parquet statistics count its nulls)."""
        return max(0, self.rows - int(self.nulls.get(column, 0)))

    def is_string(self, column: str) -> bool:
        import pyarrow as pa

        typ = self.sample.schema.field(column).type
        if pa.types.is_dictionary(typ):
            typ = typ.value_type
        return pa.types.is_string(typ) or pa.types.is_large_string(typ)

    def width(self, column: str) -> int:
        """Widest string of ``column`` in the sample (at least 1)."""
        import pyarrow.compute as pc

        col = self.sample.column(column)
        if not self.is_string(column) or len(col) == 0:
            return 1
        longest = pc.max(pc.utf8_length(col.cast("string"))).as_py()
        return max(1, int(longest or 1))

    def negative(self, column: str) -> bool:
        """Whether integer ids of ``column`` may be negative (then ``original_id`` is kept)."""
        lo = self.minmax.get(column, (None, None))[0]
        if isinstance(lo, int):
            return lo < 0
        import pyarrow.compute as pc

        col = self.sample.column(column)
        return len(col) > 0 and not self.is_string(column) and (pc.min(col).as_py() or 0) < 0


def _describe_table(path: str, what: str) -> _Table:
    """Rows, sample and statistics of a CSV or Parquet table (raises the readers' errors)."""
    import pyarrow as pa

    from lpm_graph.data.readers import _file_format, resolve_input

    p = resolve_input(path, what)
    fmt = _file_format(p)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        handle = pq.ParquetFile(p)
        meta = handle.metadata
        schema = handle.schema_arrow
        nulls, minmax = {}, {}
        for k, name in enumerate(schema.names):
            count, lo, hi, known = 0, None, None, meta.num_row_groups > 0
            for g in range(meta.num_row_groups):
                stats = meta.row_group(g).column(k).statistics
                if stats is None or not stats.has_null_count:
                    known = False
                    break
                count += stats.null_count
                if not stats.has_min_max or not isinstance(stats.min, (int, str)) or \
                        type(stats.min) is not type(stats.max) or (lo is not None and type(lo) is not type(stats.min)):
                    known = False
                    break
                lo = stats.min if lo is None else min(lo, stats.min)
                hi = stats.max if hi is None else max(hi, stats.max)
            if known:
                nulls[name] = count
                if lo is not None:
                    minmax[name] = (lo, hi)
        batches = handle.iter_batches(batch_size=4096)
        first = next(batches, None)
        sample = pa.Table.from_batches([first]) if first is not None else schema.empty_table()
        return _Table(p, int(meta.num_rows), True, sample, nulls, minmax)
    if fmt != "csv":
        raise ValueError(f"unknown table format of {p}")
    import pyarrow.csv as pacsv

    delimiter = "\t" if ".tsv" in [s.lower() for s in p.suffixes] else ","
    reader = pacsv.open_csv(p, read_options=pacsv.ReadOptions(block_size=_SAMPLE_BYTES),
                            parse_options=pacsv.ParseOptions(delimiter=delimiter),
                            convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    try:
        sample = pa.Table.from_batches([reader.read_next_batch()])
    except StopIteration:
        sample = reader.schema.empty_table()
    rows, exact = csv_rows(p)
    return _Table(p, rows, exact, sample)


def _rows_note(table: _Table) -> str:
    return f"{Path(table.path).name!r}: {table.rows:,} rows{'' if table.exact else ' (estimated)'}"


def _id_bytes(table: _Table, column: str, rows: int) -> int:
    """``uid`` and, where kept, ``original_id`` of ``rows`` nodes keyed by ``column``."""
    if column not in table.columns:
        return 8 * rows
    if table.is_string(column):
        return rows * (8 + table.width(column))
    return rows * (16 if table.negative(column) else 8)


def _tables_part(persons: str, venues, id_column: str, age_column: str, venue_columns, venue_id_column: str,
                 venue_type_column: str, notes: list[str]) -> tuple[PopulationSize, int, int]:
    """Size of the person and venue tables' graph; also (Arrow bytes read, rows x venue columns) for the
    build."""
    from lpm_graph.data.synthetic import MEMBER_OF, REV_MEMBER_OF

    people = _describe_table(persons, "person table")
    notes.append("person table " + _rows_note(people))
    n = people.rows
    if venue_columns is None:
        venue_columns = {c[:-3]: c for c in people.columns if c.endswith("_id") and c != id_column and len(c) > 3}
    else:
        venue_columns = {str(k): str(v) for k, v in dict(venue_columns).items()}
    size = PopulationSize(nodes={"person": n})
    arrow = people.arrow_bytes()
    total = _id_bytes(people, id_column, n) + 4 * n  # uid (+ original_id), age float32
    skip = {id_column, age_column, *venue_columns.values()}
    total += 8 * n * sum(1 for c in people.columns if c not in skip)  # attributes: int64/float64/codes
    tables: dict[str, _Table] = {}
    combined = None
    if isinstance(venues, dict):
        for vt, path in venues.items():
            tables[str(vt)] = _describe_table(path, f"venue table for {vt!r}")
            notes.append(f"venue table {_rows_note(tables[str(vt)])}")
    elif venues is not None:
        combined = _describe_table(venues, "venue table")
        notes.append(f"venue table {_rows_note(combined)}")
    for vt, column in venue_columns.items():
        m = people.filled(column) if column in people.columns else n
        table = tables.get(vt, combined)
        if table is not None:
            v = table.rows if vt in tables else min(table.rows, m)
            extra = sum(1 for c in table.columns if c not in (venue_id_column, venue_type_column))
            total += _id_bytes(table, venue_id_column, v) + 8 * v + 8 * v * extra
        else:
            v = m  # at most one venue per membership
            total += (_id_bytes(people, column, v) if column in people.columns else 8 * v) + 8 * v
        size.nodes[vt] = v
        size.edges[("person", MEMBER_OF, vt)] = m
        size.edges[(vt, REV_MEMBER_OF, "person")] = m
        total += 2 * 16 * m
    for table in [*tables.values(), *([combined] if combined is not None else [])]:
        arrow += table.arrow_bytes()
    size.bytes = total
    return size, arrow, n * len(venue_columns)


def _tables_size(options: dict) -> PopulationSize:
    notes: list[str] = []
    size, arrow, members = _tables_part(
        options["persons"], options.get("venues"), options.get("id_column", "person_id"),
        options.get("age_column", "age"), options.get("venue_columns"), options.get("venue_id_column", "venue_id"),
        options.get("venue_type_column", "type"), notes)
    size.build_bytes = int(_IMPORT_BUILD + _TABLE_BUILD * arrow + _MEMBER_BUILD * members)
    size.knob = "a smaller person table (population.persons)"
    size.source = "; ".join(notes)
    return size


def _edgelist_size(options: dict) -> PopulationSize:
    edges = _describe_table(options["edges"], "edge list")
    notes = ["edge list " + _rows_note(edges)]
    records = edges.rows
    src, dst = options.get("src_column", "src"), options.get("dst_column", "dst")

    def present(given, names) -> bool:
        return given is not None or any(n in edges.columns for n in names)

    directed = bool(options.get("directed", False))
    stored = records if directed else 2 * records
    layered = present(options.get("layer_column"), ("layer",))
    timed = present(options.get("time_column"), ("time", "day"))
    relation = str(options.get("relation", "contact"))
    if layered:  # one layer named throughout (Parquet statistics: min = max) is known; others once read
        name = options.get("layer_column") or "layer"
        lo, hi = edges.minmax.get(name, (None, None))
        relation = lo if isinstance(lo, str) and lo == hi and lo else ANY_RELATION
    per_edge = 16 + 4 + (8 if timed else 0)  # edge_index, edge_weight (given or merged), time
    arrow = edges.arrow_bytes()
    if options.get("persons") is not None:
        size, person_arrow, members = _tables_part(
            options["persons"], options.get("venues"), options.get("id_column", "person_id"),
            options.get("age_column", "age"), options.get("venue_columns"), "venue_id", "type", notes)
        arrow += person_arrow
    else:
        people = 2 * records
        spans = [edges.minmax.get(c) for c in (src, dst)]
        if all(s is not None for s in spans) and not any(edges.is_string(c) for c in (src, dst)
                                                         if c in edges.columns):
            lo, hi = min(s[0] for s in spans), max(s[1] for s in spans)
            people = min(people, hi - lo + 1)
        strings = [c for c in (src, dst) if c in edges.columns and edges.is_string(c)]
        width = max([edges.width(c) for c in strings], default=0)
        negative = any(edges.negative(c) for c in (src, dst) if c in edges.columns)
        size = PopulationSize(nodes={"person": people})
        size.bytes = people * (8 + 4 + width + (8 if negative and not strings else 0))
        members = 0
    size.edges[("person", relation, "person")] = stored
    size.bytes += stored * per_edge
    size.build_bytes = int(_IMPORT_BUILD + _TABLE_BUILD * arrow + _RECORD_BUILD * records + _MEMBER_BUILD * members)
    size.knob = "a smaller edge list (population.edges)"
    size.source = "; ".join(notes)
    return size


def _sociopatterns_size(options: dict) -> PopulationSize:
    from lpm_graph.data.readers import resolve_input

    p = resolve_input(options["path"], "SocioPatterns file")
    with open(p, "rb") as handle:
        head = handle.read(1 << 16)
        handle.seek(0)
        lines, _, ends = _count_newlines(handle)
    lines += 0 if ends else 1
    first = next((line for line in head.splitlines() if line.strip()), b"")
    classes = len(first.split()) == 5
    people = 2 * lines  # at most two new people per line
    stored = 2 * lines  # at most one contact per line, stored both ways
    size = PopulationSize(nodes={"person": people},
                          edges={("person", str(options.get("relation", "contact")), "person"): stored})
    width = max([len(f) for f in first.split()[1:3]], default=1)
    size.bytes = people * (8 + 4 + width + (8 if classes else 0)) + stored * (16 + 4 + 8)
    size.build_bytes = int(_IMPORT_BUILD + 2 * p.stat().st_size + _LINE_BUILD * lines)
    size.knob = "a shorter contact file (population.path)"
    size.source = f"SocioPatterns file {p.name!r}: {lines:,} lines"
    return size


_GRAPHML = (re.compile(rb"<(?:\w+:)?node[\s/>]"), re.compile(rb"<(?:\w+:)?edge[\s/>]"))
_GML = (re.compile(rb"\bnode\s*\["), re.compile(rb"\bedge\s*\["))


def _count_elements(path: Path, patterns) -> tuple[int, int, bytes]:
    """Matches of the node and edge patterns in one pass of 16 MiB blocks (and the file's first 64 KiB)."""
    nodes = edges = 0
    tail, head = b"", b""
    with open(path, "rb") as handle:
        while True:
            block = handle.read(16 << 20)
            if not block:
                break
            if not head:
                head = block[:1 << 16]
            data = tail + block
            cut = max(0, len(data) - 64)  # a match starting in the last 64 bytes is counted with the next block
            cut = data.rfind(b"<", 0, cut) if patterns is _GRAPHML else data.rfind(b"\n", 0, cut)
            cut = len(data) if cut < 0 else cut
            nodes += len(patterns[0].findall(data, 0, cut))
            edges += len(patterns[1].findall(data, 0, cut))
            tail = data[cut:]
    nodes += len(patterns[0].findall(tail))
    edges += len(patterns[1].findall(tail))
    return nodes, edges, head


def _networkx_size(options: dict) -> PopulationSize | None:
    from lpm_graph.data.readers import resolve_input

    path = options.get("path")
    if path is None:
        return None
    p = resolve_input(path, "graph file")
    suffix = p.suffix.lower()
    if suffix not in (".graphml", ".gml"):
        return None
    graphml = suffix == ".graphml"
    n, m, head = _count_elements(p, _GRAPHML if graphml else _GML)
    if graphml:
        directed = b'edgedefault="directed"' in head
        node_attrs = len(re.findall(rb"<key[^>]*for=\"node\"", head))
    else:
        before = head.split(b"node", 1)[0]
        directed = re.search(rb"\bdirected\s+1\b", before) is not None
        node_attrs = 2
    stored = m if directed else 2 * m
    relation = str(options.get("relation", "contact"))
    size = PopulationSize(nodes={"person": n}, edges={("person", relation, "person"): stored})
    size.bytes = n * (8 + 4 + 8 * node_attrs) + stored * (16 + 4 + 8)
    size.build_bytes = int(_IMPORT_BUILD + p.stat().st_size + _NX_NODE_BUILD * n + _NX_EDGE_BUILD * m)
    size.knob = "a smaller graph file (population.path)"
    size.source = f"graph file {p.name!r}: {n:,} nodes, {m:,} edges"
    return size


def _file_size(options: dict) -> PopulationSize | None:
    """Exact counts and bytes of a population file: its tensors are mapped, not read."""
    path = options.get("path")
    if path is None or not Path(path).is_file():
        return None
    try:
        payload = torch.load(path, weights_only=True, map_location="cpu", mmap=True)
    except Exception:  # not a zip-format population file: loading it reports what is wrong
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("nodes"), dict) \
            or not isinstance(payload.get("edges"), dict):
        return None
    size = PopulationSize()
    total = 0

    def tensor_bytes(attrs) -> int:
        return sum(v.numel() * v.element_size() for v in attrs.values() if isinstance(v, torch.Tensor))

    for nt, attrs in payload["nodes"].items():
        if not isinstance(attrs, dict):
            return None
        count = attrs.get("num_nodes")
        if not isinstance(count, int):
            uid = attrs.get("uid")
            count = int(uid.shape[0]) if isinstance(uid, torch.Tensor) and uid.dim() else 0
        size.nodes[nt] = int(count)
        total += tensor_bytes(attrs)
    for attrs in payload["edges"].values():
        et = attrs.get("edge_type") if isinstance(attrs, dict) else None
        ei = attrs.get("edge_index") if isinstance(attrs, dict) else None
        if not (isinstance(et, list) and len(et) == 3):
            return None
        size.edges[tuple(et)] = int(ei.shape[1]) if isinstance(ei, torch.Tensor) and ei.dim() == 2 else 0
        total += tensor_bytes(attrs)
    total += tensor_bytes(payload.get("graph") or {})
    del payload
    size.bytes = total
    size.build_bytes = int(_FILE_BUILD * total)
    size.knob = "a smaller population file (population.path)"
    size.source = f"population file {Path(path).name!r}"
    return size


# -----------------------------------------------------------------------------------------
# Supply chains: the synthetic network, shipment edge lists, the vaccine network
# -----------------------------------------------------------------------------------------


def _supply_network_size(cfg) -> PopulationSize | None:
    """Exact: every tier's count, ``n_down * min(k, n_up)`` edges per tier pair."""
    from lpm_graph.models.supply_chain.network import DEFAULT_TIERS, SUPPLY_NETWORK_ARGUMENTS, _per_pair

    options = _options(cfg)
    defaults = SUPPLY_NETWORK_ARGUMENTS
    if sorted(set(options) - set(defaults)):
        return None  # instantiating the config reports them
    args = {**defaults, **options}
    tiers = dict(DEFAULT_TIERS if args["tiers"] is None else args["tiers"])
    if len(tiers) < 2 or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in tiers.values()):
        return None  # the builder reports it
    names = list(tiers)
    k_up = _per_pair(args["suppliers_per_node"], len(names) - 1, "suppliers_per_node", low=1)
    size = PopulationSize(nodes={nt: int(n) for nt, n in tiers.items()})
    for i, (up, down) in enumerate(zip(names[:-1], names[1:])):
        size.edges[(up, str(args["relation"]), down)] = int(tiers[down]) * min(k_up[i], int(tiers[up]))
    edges = sum(size.edges.values())
    size.bytes = 12 * sum(size.nodes.values()) + _SUPPLY_EDGE * edges  # uid int64, capacity float32
    size.build_bytes = _SUPPLY_BUILD * edges
    size.knob = "smaller tiers (population.tiers)"
    size.source = f"{sum(size.nodes.values()):,} nodes in {len(names)} tiers, {edges:,} edges"
    return size


def _type_shares(table: _Table, columns: list[str]) -> dict[tuple, float]:
    """Shares of the rows of the sample by the values of ``columns`` (node types, or pairs of them)."""
    import pyarrow as pa

    sample = table.sample
    if sample.num_rows == 0 or any(c not in table.columns for c in columns):
        return {}
    values = [sample.column(c).cast(pa.string()).to_pylist() if not table.is_string(c) else
              sample.column(c).to_pylist() for c in columns]
    rows = [tuple(v) for v in zip(*values) if all(isinstance(x, str) and x for x in v)]
    shares: dict[tuple, float] = {}
    for key in rows:
        shares[key] = shares.get(key, 0.0) + 1.0 / max(len(rows), 1)
    return shares


def _shipments_size(options: dict) -> PopulationSize:
    """Rows of the edge list (and node table): exact totals; the node types and tier pairs in the proportions
    of the tables' samples (only reading them whole says more)."""
    edges = _describe_table(options["edges"], "shipment edge list")
    notes = ["shipment edge list " + _rows_note(edges)]
    records = edges.rows
    src, dst = options.get("src_column", "src"), options.get("dst_column", "dst")
    relation = str(options.get("relation", "supplies"))
    arrow = edges.arrow_bytes()
    nodes_path = options.get("nodes")
    if nodes_path is not None:
        table = _describe_table(nodes_path, "node table")
        notes.append("node table " + _rows_note(table))
        arrow += table.arrow_bytes()
        n = table.rows
        id_bytes = _id_bytes(table, options.get("id_column_name", "id"), n)
        node_shares = {k[0]: v for k, v in _type_shares(table, [options.get("type_column", "type")]).items()}
    else:
        ends = [options.get("src_type_column", "src_type"), options.get("dst_type_column", "dst_type")]
        n = 2 * records  # at most two new nodes per row
        spans = [edges.minmax.get(c) for c in (src, dst)]
        if all(sp is not None for sp in spans) and not any(edges.is_string(c) for c in (src, dst)):
            n = min(n, max(sp[1] for sp in spans) - min(sp[0] for sp in spans) + 1)
        strings = [c for c in (src, dst) if c in edges.columns and edges.is_string(c)]
        width = max([edges.width(c) for c in strings], default=0)
        negative = any(edges.negative(c) for c in (src, dst) if c in edges.columns)
        id_bytes = n * (8 + width + (8 if negative and not strings else 0))
        node_shares = {}
        for column in ends:
            for (t,), v in _type_shares(edges, [column]).items():
                node_shares[t] = node_shares.get(t, 0.0) + v / 2
    # types in the edge list: its tier pairs as in the sample; only in the node table: pairs known once read
    pair_shares = {} if nodes_path is not None else _type_shares(edges, ends)
    size = PopulationSize(nodes={t: int(round(n * v)) for t, v in node_shares.items()})
    if not size.nodes:
        size.nodes = {ANY_RELATION: n}
    total = sum(pair_shares.values())
    for (a, b), v in pair_shares.items():
        size.edges[(a, relation, b)] = int(round(records * v / total))
    if not size.edges:
        size.edges[(ANY_RELATION, relation, ANY_RELATION)] = records
    size.bytes = id_bytes + 4 * n + _SUPPLY_EDGE * records  # ids, capacity float32; the edges' four tensors
    size.build_bytes = int(_IMPORT_BUILD + _TABLE_BUILD * arrow + _SHIPMENT_BUILD * records
                           + (_MEMBER_BUILD * n if nodes_path is not None else 0))
    size.knob = "a smaller shipment edge list (population.edges)"
    size.source = "; ".join(notes)
    return size


def _vaccine_size(cfg) -> PopulationSize | None:
    """The synthetic population's size, with its clinics (about one per ``people_per_clinic`` people of each
    community, at least one each) and depots, and their edges."""
    import inspect

    from lpm_graph.data.synthetic import SyntheticPopulationSpec
    from lpm_graph.models.vaccine_logistics.population import add_clinics

    options = _options(cfg)
    own = {k: p.default for k, p in inspect.signature(add_clinics).parameters.items() if k not in ("data", "seed")}
    clinic_options = {k: options.pop(k, v) for k, v in own.items()}
    spec = SyntheticPopulationSpec.from_config(**options)
    size = _synthetic_size(spec)
    n = spec.num_people
    districts = clinic_options["districts"]
    ppc = clinic_options["people_per_clinic"]
    ppc = list(ppc) if isinstance(ppc, (list, tuple)) else [ppc] * districts
    depots = clinic_options["depots"]
    if isinstance(districts, bool) or not isinstance(districts, int) or districts < 1 or len(ppc) != districts \
            or isinstance(depots, bool) or not isinstance(depots, int) or depots < 1 \
            or not all(isinstance(m, int) and m >= 1 for m in ppc):
        return None  # the builder reports it
    communities = size.nodes["community"]
    per_district = communities / districts
    mean = n / max(communities, 1)
    clinics = max(1, int(round(sum(per_district * max(1, round(mean / m)) for m in ppc))))
    size.nodes["clinic"], size.nodes["depot"] = clinics, depots
    size.edges[("person", str(clinic_options["catchment_relation"]), "clinic")] = n
    size.edges[("clinic", str(clinic_options["serve_relation"]), "person")] = n
    size.edges[("depot", str(clinic_options["relation"]), "clinic")] = depots * clinics
    # person.clinic int64; the catchment's edge_index and its reverse with lead times; clinics' uid and three
    # float32 attributes; depots' uid and capacity; the depot -> clinic edges' edge_index, weight and lead time
    size.bytes += 8 * n + 16 * n + 24 * n + 20 * clinics + 12 * depots + 28 * depots * clinics
    size.build_bytes += _CLINIC_BUILD * n
    size.source = f"{n:,} people, {clinics:,} clinics, {depots} depots"
    return size


_SOURCES = {
    "supply_chain.network.supply_network": _supply_network_size,
    "vaccine_logistics.vaccine_network": _vaccine_size,
    "synthetic.generate_population": _generator_size,
    "random_graphs.random_graph": _random_graph_size,
    "census.population_from_marginals": _census_size,
}
_FILE_SOURCES = {
    "tables.from_tables": (_tables_size, ("persons",)),
    "supply_chain.network.from_shipments": (_shipments_size, ("edges",)),
    "edgelist.from_edgelist": (_edgelist_size, ("edges",)),
    "sociopatterns.from_sociopatterns": (_sociopatterns_size, ("path",)),
    "networkx_io.from_networkx": (_networkx_size, ()),
    "data.load_population": (_file_size, ("path",)),
    "io.load_population": (_file_size, ("path",)),
}


def population_size(cfg) -> PopulationSize | None:
    """The expected size of the population a config builds (module docstring), or ``None`` if it cannot
    be read unbuilt: a file that is missing or unreadable, or a config the builder refuses -- building it
    then reports the problem."""
    target = "" if cfg is None else str(cfg.get("_target_", ""))
    for suffix, estimate in _SOURCES.items():
        if target.endswith(suffix):
            return estimate(cfg)
    for suffix, (estimate, required) in _FILE_SOURCES.items():
        if target.endswith(suffix):
            break
    else:
        return None
    from lpm_graph.errors import PopulationGraphError

    try:
        options = _options(cfg)
    except Exception:  # unresolvable interpolations: instantiating reports them
        return None
    if any(not isinstance(options.get(k), (str, Path)) or options.get(k) in ("", "???") for k in required):
        return None
    try:
        return estimate(options)
    except (PopulationGraphError, OSError, ValueError, KeyError, TypeError, StopIteration):
        return None  # the builder reports a missing or unreadable input in its own words
    except Exception as exc:  # pyarrow's errors: the builder reports them too
        if type(exc).__module__.startswith("pyarrow"):
            return None
        raise
