"""The reports `prism eval` prints."""

from __future__ import annotations

from typing import Any

from api.eval.images import IMAGE_KS
from api.eval.text import METRIC_LABELS, METRICS


def _number(value: float | None, width: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.4f}"


def format_text_report(report: dict[str, Any]) -> str:
    spoken = "spoken" in report
    header = f"{'metric':<12}{'pipeline':>10}{'bare':>10}{'ratio':>10}" + (f"{'spoken':>10}{'spoken/typed':>14}" if spoken else "")
    lines = [
        f"{report['dataset']}: {report['queries']} queries, {report['documents']} documents ({report['chunks']} chunks), "
        f"model {report['model']}{', reranked' if report['rerank'] else ''}",
        "",
        header,
    ]
    for key in METRICS:
        line = f"{METRIC_LABELS[key]:<12}{_number(report['pipeline'][key], 10)}{_number(report['bare'][key], 10)}{_number(report['ratio'][key], 10)}"
        if spoken:
            line += f"{_number(report['spoken'][key], 10)}{_number(report['spoken_vs_typed'][key], 14)}"
        lines.append(line)
    if spoken:
        counts = report["wer_counts"]
        lines += ["", f"word error rate of the spoken queries' transcripts: {report['wer']:.1%} ({counts['edits']} edits in {counts['reference_words']} words)"]
    return "\n".join(lines + _footer(report))


def format_images_report(report: dict[str, Any]) -> str:
    queries = report["queries"]
    lines = [
        f"{report['dataset']}: {report['images']} pictures, {report['captions']} captions, image model {report['model']['image']}",
        "",
        f"{'direction':<16}{'queries':>8}" + "".join(f"{f'R@{k}':>9}" for k in IMAGE_KS),
    ]
    for direction, label in (("text_to_image", "text -> image"), ("image_to_text", "image -> text")):
        lines.append(f"{label:<16}{queries[direction]:>8}" + "".join(_number(report[direction][f"recall@{k}"], 9) for k in IMAGE_KS))
    return "\n".join(lines + _footer(report))


def _footer(report: dict[str, Any]) -> list[str]:
    lines = [""] + [f"warning: {warning}" for warning in report["warnings"]]
    lines.append("time: " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in report["timings_s"].items()))
    return lines
