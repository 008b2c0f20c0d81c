"""Audit checks 1-3: schema, class balance, usability. Exercised by `dhs audit DATA`.

Schema and balance use only footers and the small columns read by the cheap pass (`scan.py`);
usability adds what the sampled pixel pass (`pixels.py`) found.
"""

from __future__ import annotations

import pyarrow as pa

from darkhaloscope.audit.registry import AuditContext, first_examples, register_check
from darkhaloscope.common.report import Finding
from darkhaloscope.stamps.counts import one_class_splits
from darkhaloscope.stamps.provenance import SurveyDesign, survey_design
from darkhaloscope.stamps.schema import (CUTOUT_OK_COLUMN, LABEL_COLUMN, LABEL_SOURCE_COLUMN, PACKED_STAMP_COLUMN,
                                          SPLIT_COLUMN, STAMP_COLUMN)

# column -> (predicate on its arrow type, what is expected)
TYPE_RULES: dict[str, tuple] = {
    STAMP_COLUMN: (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), "binary npz bytes"),
    PACKED_STAMP_COLUMN: (pa.types.is_fixed_size_binary, "fixed-size binary float16 (3, 64, 64)"),
    LABEL_SOURCE_COLUMN: (lambda t: pa.types.is_integer(t) or pa.types.is_boolean(t), "integer 0/1"),
    LABEL_COLUMN: (lambda t: pa.types.is_integer(t) or pa.types.is_boolean(t), "integer 0/1"),
    SPLIT_COLUMN: (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t),
                   "string train/val/test"),
    CUTOUT_OK_COLUMN: (lambda t: pa.types.is_integer(t) or pa.types.is_boolean(t), "integer 0/1"),
}

# pixel problem kind -> (check, what to do); kinds come from pixels.ERROR_KINDS
PIXEL_FIXES: dict[str, tuple[str, str]] = {
    "unknown_layout": ("schema", "write stamps as npz with image_g/image_r/image_z (64, 64) float32"),
    "missing_column": ("schema", "every file needs the stamp column"),
    "unreadable": ("schema", "the file is truncated or corrupt: re-copy or re-write it"),
    "decode_failure": ("usability", "re-write those stamps (truncated/corrupt npz) or set cutout_ok=0"),
    "null_stamp": ("usability", "set cutout_ok=0 for rows without a stamp"),
    "missing_band": ("usability", "keep only rows with all of g, r, z (or set cutout_ok=0)"),
    "wrong_shape": ("usability", "re-cut the stamps at 64x64 pixels"),
    "nan_inf": ("usability", "set cutout_ok=0 for those rows or re-make the cutouts"),
    "all_zero_band": ("usability", "a band without data: set cutout_ok=0 or re-make the cutout"),
}


def _type_findings(ctx: AuditContext) -> list[Finding]:
    bad: dict[str, list[str]] = {}
    for fs in ctx.scan.files:
        for col, t in fs.types.items():
            rule = TYPE_RULES.get(col)
            if rule and not rule[0](t):
                bad.setdefault(f"{col} is {t}, expected {rule[1]}", []).append(fs.relpath)
    return [Finding("schema", "error", f"{what} in {len(files)} file(s) ({first_examples(files)}); re-write the "
                    "column with the schema-contract type", {"files": files[:20]}) for what, files in bad.items()]


@register_check("schema")
def check_schema(ctx: AuditContext) -> list[Finding]:
    tier, cfg, out = ctx.tier, ctx.config, []
    broken = [fs for fs in ctx.scan.files if fs.error]
    if broken:
        out.append(Finding("schema", "error", f"{len(broken)} file(s) cannot be read: "
                           f"{first_examples(f'{fs.relpath} ({fs.error})' for fs in broken)}; re-copy or "
                           "re-write them, or remove them from the tier", {"files": [fs.relpath for fs in broken][:20]}))
    cols = tier.columns
    required = {"stamp": (STAMP_COLUMN, PACKED_STAMP_COLUMN), "label": (LABEL_SOURCE_COLUMN, LABEL_COLUMN)}
    for what, names in required.items():
        lacking = [f.relpath for f in tier.files if not any(n in f.columns for n in names)]
        if lacking:
            out.append(Finding("schema", "error", f"column '{names[0]}' ({what}) missing from {len(lacking)} of "
                               f"{len(tier.files)} file(s) ({first_examples(lacking)}); every row needs it "
                               "(schema contract: stamp_npz, is_control, region_split)",
                               {"column": names[0], "files": lacking[:20]}))
    if not tier.split_from_partition:
        lacking = [f.relpath for f in tier.files if f.split is None and SPLIT_COLUMN not in f.columns]
        if lacking:
            out.append(Finding("schema", "error", f"no split for {len(lacking)} file(s) ({first_examples(lacking)}): "
                               f"neither a '{SPLIT_COLUMN}' column nor a region_split=<name>/ folder; add one",
                               {"files": lacking[:20]}))
    out += _type_findings(ctx)
    for kind in ("unknown_layout", "missing_column", "unreadable"):
        n = (ctx.pixels.problems.get(kind, 0) if ctx.pixels else 0)
        if n:
            out.append(Finding("schema", "error", f"{n} sampled row(s): {ctx.pixels.examples[kind][0]}; "
                               f"{PIXEL_FIXES[kind][1]}", {"rows": n, "examples": ctx.pixels.examples[kind]}))
    splits = sorted({s for s, n in ctx.scan.rows().items() if n > 0}
                    | {f.split for f in tier.files if f.split is not None and f.num_rows > 0})
    missing_req = [s for s in cfg.required_splits if s not in splits]
    if missing_req:
        out.append(Finding("schema", "error", f"required split(s) {', '.join(missing_req)} missing (found: "
                           f"{', '.join(splits) or 'none'}); a tier needs rows to train and to select on",
                           {"missing": missing_req, "found": splits}))
    missing_exp = [s for s in cfg.expected_splits if s not in splits and s not in missing_req]
    unknown = [s for s in splits if s not in cfg.expected_splits]
    if missing_exp or unknown:
        out.append(Finding("schema", "warning", "split names: " + "; ".join(
            ([f"missing {', '.join(missing_exp)}"] if missing_exp else [])
            + ([f"unexpected {', '.join(unknown)} (expected {', '.join(cfg.expected_splits)})"] if unknown else []))
            + "; check the region_split values", {"missing": missing_exp, "unexpected": unknown}))
    out.append(Finding("schema", "info", f"{len(tier.files)} file(s), {tier.num_rows} row(s), "
                       f"{len(cols)} column(s); split from {'partition folders' if tier.split_from_partition else 'column'}"
                       f"; {'packed float16' if tier.is_packed else 'npz'} stamps",
                       {"files": len(tier.files), "rows": tier.num_rows, "columns": cols}))
    return out


@register_check("balance", pixels=False)
def check_balance(ctx: AuditContext) -> list[Finding]:
    scan, cfg, out = ctx.scan, ctx.config, []
    if scan.label_column is None:
        return out  # the schema check reports the missing label column
    bad_labels = [fs for fs in scan.files if fs.label_error]
    if bad_labels:
        out.append(Finding("balance", "error", f"invalid labels in {len(bad_labels)} file(s): "
                           f"{first_examples(f'{fs.relpath}: {fs.label_error}' for fs in bad_labels)}; every row "
                           f"needs {scan.label_column} 0 or 1: fix or drop those rows (counts below exclude them)",
                           {"files": [fs.relpath for fs in bad_labels][:20]}))
    counts = scan.counts()
    as_dict = {s: {0: c[0], 1: c[1]} for s, c in counts.items()}
    tot = [sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())]
    if counts and (tot[0] == 0 or tot[1] == 0):
        out.append(Finding("balance", "error", f"the whole tier has {tot[1]} injection(s) and {tot[0]} control(s) "
                           "among usable rows: one class only; a classifier learns nothing and AUROC is undefined; "
                           "regenerate the tier with controls (is_control=1) and injections (is_control=0)",
                           {"controls": tot[0], "injections": tot[1]}))
    for msg in one_class_splits(as_dict):
        out.append(Finding("balance", "error", f"{msg} (usable rows, cutout_ok=1); training on it learns nothing and "
                           "AUROC is undefined: regenerate that split with both classes", {"counts": as_dict}))
    design = survey_design(ctx.tier) if counts else None
    for s, (c0, c1) in counts.items():
        if not (c0 and c1 and max(c0, c1) / min(c0, c1) > cfg.max_class_ratio):
            continue
        if design and c0 > c1:
            out.append(Finding("balance", "info", f"split '{s}': {c1} lens(es) vs {c0} control(s) (1:{c0 / c1:.0f}), "
                               f"{_as_designed(design)}: real lenses are this rare in a search; ranking metrics "
                               "(AUROC, FPR at a completeness) do not depend on the ratio",
                               {"split": s, "controls": c0, "injections": c1, "neg_per_pos": design.neg_per_pos}))
        else:
            out.append(Finding("balance", "warning", f"split '{s}' is imbalanced: {c1} injection(s) vs {c0} "
                               f"control(s) (ratio {max(c0, c1) / min(c0, c1):.2f} > {cfg.max_class_ratio:g}); "
                               "rebalance or weight the loss", {"split": s, "controls": c0, "injections": c1}))
    one_class_files = [f"{fs.relpath} ({fs.counts[s][1]} inj / {fs.counts[s][0]} ctrl)" for fs in scan.files
                       for s in fs.counts if sum(fs.counts[s]) and min(fs.counts[s]) == 0]
    if one_class_files and tot[0] and tot[1]:
        out.append(Finding("balance", "warning", f"{len(one_class_files)} of {len(scan.files)} file(s) hold one class "
                           f"only: {first_examples(one_class_files)}; fine if files are shuffled together, fatal if "
                           "a subset of files is used (the smoke test's debug tier)", {"files": one_class_files[:20]}))
    rg_stats = sum(fs.rg_from_stats for fs in scan.files)
    rg_all = rg_stats + sum(fs.rg_read for fs in scan.files)
    out.append(Finding("balance", "info", "usable rows per split (injections/controls): " + "; ".join(
        f"{s} {c[1]}/{c[0]}" for s, c in counts.items()) + f"; {rg_stats} of {rg_all} row group(s) counted from "
        "parquet statistics alone", {"counts": as_dict, "row_groups_from_statistics": rg_stats}))
    return out


def _as_designed(design: SurveyDesign) -> str:
    if design.neg_per_pos is None:
        return "a tier of real survey cutouts (`dhs cutouts`), whose target list holds many negatives per lens"
    return f"as its target list was built (`dhs catalog --neg-per-pos {design.neg_per_pos:g}`)"


@register_check("usability")
def check_usability(ctx: AuditContext) -> list[Finding]:
    cfg, out = ctx.config, []
    rows, usable = ctx.scan.rows(), ctx.scan.usable()
    for s, n in rows.items():
        frac = usable.get(s, 0) / n if n else 0.0
        if n and usable.get(s, 0) == 0:
            out.append(Finding("usability", "error", f"split '{s}' has {n} row(s) and none with cutout_ok=1; "
                               "nothing can be trained or evaluated on it: re-make the cutouts", {"split": s}))
        elif frac < cfg.min_cutout_ok_frac:
            out.append(Finding("usability", "warning", f"split '{s}': only {frac:.1%} of {n} rows have cutout_ok=1 "
                               f"(< {cfg.min_cutout_ok_frac:.0%}); check the cutout step", {"split": s, "frac": frac}))
    px = ctx.pixels
    if px is None:
        return out
    for kind, n in sorted(px.problems.items()):
        check, fix = PIXEL_FIXES.get(kind, ("usability", "inspect those rows"))
        if check != "usability":
            continue
        out.append(Finding("usability", "error", f"{n} of {px.rows_decoded} decoded usable row(s) {kind.replace('_', ' ')}"
                           f"; first: {px.examples[kind][0]}; {fix}", {"kind": kind, "rows": n,
                                                                        "examples": px.examples[kind]}))
    total_usable = sum(usable.values())
    if px.full or px.rows_decoded >= total_usable:
        how = "every usable row"
    else:
        how = f"a seeded sample of {px.row_groups} row group(s); --full decodes every row"
    out.append(Finding("usability", "info", f"decoded {px.rows_decoded} of {total_usable} usable row(s): {how}; "
                       f"cutout_ok fraction " + ", ".join(f"{s} {usable.get(s, 0) / n:.1%}" for s, n in rows.items() if n),
                       {"rows_decoded": px.rows_decoded, "usable_rows": total_usable, "full": px.full}))
    return out
