"""The speed and accuracy goals as a table (which result rows, what is measured, the goal), and
`evaluate`, which gives each goal whose rows ran: its name, goal, value measured and whether met."""

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Setting:
    """A match value read from the run's settings, e.g. the GPU run's common batch."""

    name: str


@dataclass(frozen=True)
class Target:
    """One goal on a row: the row's `measure` (times `scale`), or with `versus` its ratio to
    the other row's. `name` is formatted with the row's fields and `first`, the section's first."""

    name: str
    measure: str
    goal: str  # ">= x", "<= x" or "within x" (the absolute value at most x)
    versus: Mapping = field(default_factory=dict)  # fields of the other row of a ratio
    same: tuple[str, ...] = ()  # fields the other row shares with this one
    only: Mapping = field(default_factory=dict)  # further fields the row must have
    scale: float = 1.0


@dataclass(frozen=True)
class Rows:
    """Targets measured on the rows of a results section (a list of rows, a single row, or
    `section.field` for that field of each row) that have the `match` fields."""

    section: str
    match: Mapping
    targets: tuple[Target, ...]
    # only rows after the first (the one the others compare with)
    after_first: bool = field(default=False, kw_only=True)


CPU_TARGETS = (
    Rows("inference", {"backend": "tf_fp32"}, (
        Target("fp32 inference {size}² % of roof", "pct_roof", ">= 95"),
        Target("int8 inference {size}² speed-up vs fp32", "s_min", ">= 2.5",
               versus={"backend": "ort_int8"}, same=("size",)),
    )),
    Rows("predictor", {"backend": "tf_fp32", "call": "get_miou_png"}, (
        Target("predictor end to end {size}² % of roof", "pct_roof", ">= 92"),
        Target("pre/post-processing {size}² % of model time", "overhead_pct", "<= 5"),
        Target("tf_bf16 end to end speed-up vs fp32", "s_min", ">= 1.9",
               versus={"backend": "tf_bf16"}, same=("size", "call")),
        Target("ort_int8 end to end speed-up vs fp32", "s_min", ">= 2.5",
               versus={"backend": "ort_int8"}, same=("size", "call")),
    )),
    Rows("training", {"precision": "float32"}, (
        Target("fp32 training {size}² batch {batch} % of roof", "pct_roof", ">= 85"),
        Target("bf16 training {size}² batch {batch} speed-up", "s_min", ">= 1.8",
               versus={"precision": "bfloat16"}, same=("size", "batch")),
        Target("fp32 training {size}² batch {batch} peak RSS GiB", "peak_rss_gib", "<= 4.5",
               only={"size": 512}),
    )),
    Rows("pipeline", {}, (Target("input pipeline images/s", "images_per_s_median", ">= 60"),
                          Target("PyDataset pipeline images/s (JAX, PyTorch)",
                                 "pydataset_images_per_s_median", ">= 60"))),
    # Half of the 35.5 TFLOP of the first demo (ResNet50 at 64x96, 300 images, 10 epochs).
    Rows("demo", {}, (Target("make demo training TFLOP", "tflop", "<= 17.75"),)),
    Rows("accuracy", {}, (
        Target("{backend} val mIoU points vs {first[backend]}", "mIoU_delta_points", "within 1"),
        Target("tf_bf16 class maps agreeing with fp32 %", "pixel_agreement", ">= 99",
               only={"backend": "tf_bf16"}, scale=100),
    ), after_first=True),
)

# Mixed-precision training images/s over float32's (XLA on): at the common batch, and each
# precision at its largest batch.
MIXED_GOAL = ">= 2.0"
GPU_TARGETS = tuple(rows for precision in ("float16", "bfloat16") for rows in (
    Rows("training", {"precision": precision, "batch": Setting("common_batch"), "xla": True}, (
        Target("{precision} training {size}² images/s vs float32, batch {batch}",
               "images_per_s", MIXED_GOAL, versus={"precision": "float32"},
               same=("batch", "xla")),)),
    Rows("largest_batch.row", {"precision": precision}, (
        Target("{precision} training {size}² images/s vs float32, largest batch each",
               "images_per_s", MIXED_GOAL, versus={"precision": "float32"}),)),
))

COMPARISONS = {">=": operator.ge, "<=": operator.le,
               "within": lambda value, limit: abs(value) <= limit}


def goal_met(goal: str, value: float) -> bool:
    """Whether `value` meets a goal such as ">= 95", "<= 5" or "within 1"."""
    comparison, limit = goal.split()
    return bool(COMPARISONS[comparison](value, float(limit)))


def section_rows(results: dict, section: str) -> list[dict]:
    """The rows of `section`: a list, one dict, or `name.field`, each row's (present) field."""
    name, _, inner = section.partition(".")
    rows = results.get(name) or []
    rows = [rows] if isinstance(rows, dict) else rows
    return [row[inner] for row in rows if row.get(inner)] if inner else rows


def evaluate(results: dict, table: tuple[Rows, ...]) -> list[dict]:
    """Every target of `table` whose rows ran, in table order and row order."""
    settings = results.get("settings", {})

    def has(row: dict, fields: Mapping) -> bool:
        return all(row.get(k) == (settings.get(v.name) if isinstance(v, Setting) else v)
                   for k, v in fields.items())

    measured = []
    for group in table:
        rows = section_rows(results, group.section)
        for row in rows[1:] if group.after_first else rows:
            if not has(row, group.match):
                continue
            for target in (t for t in group.targets if has(row, t.only)):
                value = row.get(target.measure)
                if value is not None and target.versus:
                    fields = {**target.versus, **{k: row.get(k) for k in target.same}}
                    other = next((r for r in rows if has(r, fields)), None)
                    value = value / other[target.measure] if other else None
                if value is None:
                    continue
                value *= target.scale
                measured.append({"target": target.name.format(**row, first=rows[0]),
                                 "goal": target.goal, "measured": round(value, 3),
                                 "met": goal_met(target.goal, value)})
    return measured
