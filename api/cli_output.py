"""What the `prism` commands print, and how `--filter KEY=VALUE` becomes a structured filter."""

from __future__ import annotations

import json
from typing import Any

from prism_client import UploadReport
from prism_client.types import Answer, Info, SearchResult

FILTER_FIELDS = ("doc_id", "source", "title", "created_at")  # the rest are metadata keys


class FilterError(ValueError):
    pass


def parse_filters(pairs: list[str]) -> dict[str, Any]:
    """["source=a.pdf", "lang=en", "lang=de", "year=2024"] -> {"source": "a.pdf", "metadata": {"lang": ["en", "de"], "year": 2024}}.
    A repeated key means any of its values; `metadata.KEY` names a metadata key that shares a field's name."""
    filters: dict[str, Any] = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        key = key.strip()
        if not equals or not key:
            raise FilterError(f"--filter {pair!r}: write KEY=VALUE, e.g. source=notes.md or lang=en")
        target = filters
        if key.startswith("metadata."):
            key, target = key.removeprefix("metadata."), filters.setdefault("metadata", {})
        elif key not in FILTER_FIELDS:
            target = filters.setdefault("metadata", {})
        value = filter_value(text)
        if key in target:  # any of these
            known = target[key] if isinstance(target[key], list) else [target[key]]
            value = known + (value if isinstance(value, list) else [value])
        target[key] = value
    return filters


def filter_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def format_results(body: SearchResult) -> str:
    lines = []
    transcript = body.get("transcript")
    if transcript:
        lines.append(f'heard ({transcript["language"]}): "{transcript["text"]}"')
    for rank, result in enumerate(body["results"], 1):
        snippet = " ".join(result["text"].split())[:160]
        if result["modality"] == "image":
            where = f"{result['source']} ({result.get('width')}x{result.get('height')})"
        elif result["modality"] == "audio":
            where = f"{result['source'] or result['doc_id']} at {result.get('start') or 0:.1f}-{result.get('end') or 0:.1f} s"
        else:
            where = result["doc_id"]
        rerank = f" (rerank {result['rerank_score']:.3f})" if result.get("rerank_score") is not None else ""
        lines.append(f"{rank:>2}. {result['score']:.4f}{rerank}  {result['modality']:<5}  {where}  [{result['id']}]\n    {snippet}")
    for route, why in body["routes"]["skipped"].items():
        lines.append(f"skipped {route}: {why}")
    if body["rerank"].get("skipped"):
        lines.append(f"not reranked: {body['rerank']['skipped']}")
    lines.append(f"({len(body['results'])} results, {body['timings_ms']['total']:.1f} ms)")
    return "\n".join(lines)


def format_report(report: UploadReport) -> tuple[str, str]:
    """(the summary, the problems): skipped files and failed ones, each with its reason."""
    tried = len(report.stored) + len(report.failed)
    summary = f"ingested {len(report.stored)} of {tried} files ({report.chunks} chunks) into {report.collection!r}"
    if report.skipped:
        summary += f"; skipped {len(report.skipped)} of other types"
    problems = []
    if report.skipped:
        problems.append(f"skipped {len(report.skipped)} file(s) of a type Prism does not read:")
        problems += [f"  {problem.path}" for problem in report.skipped]
    if report.failed:
        problems.append(f"failed {len(report.failed)} file(s):")
        problems += [f"  {problem.name}: {problem.reason}" for problem in report.failed]
    return summary, "\n".join(problems)


def format_info(info: Info) -> str:
    lines = [f"Prism {info['version']}: {'ready' if info['ready'] else 'not ready: ' + str(info.get('error'))}"]
    for kind, model in info["models"].items():
        lines.append(f"{kind:<8}{describe_model(model)}")
    lines.append(f"{'store':<8}{info['store']['kind']} at {info['store']['uri']}")
    for name, check in info["checks"].items():
        lines.append(f"check   {name}: {check}")
    configuration = info.get("configuration") or {}
    if configuration:
        lines.append("configuration (the server's; PRISM_<NAME> sets each):")
        lines += [f"  {name} = {json.dumps(value, ensure_ascii=False)}" for name, value in sorted(configuration.items())]
    return "\n".join(lines)


def describe_model(model: dict[str, Any]) -> str:
    if model.get("available") is False:
        return f"unavailable: {model.get('error') or 'not configured'}"
    parts = [str(model.get("name"))]
    details = [str(model[key]) for key in ("backend", "pretrained") if model.get(key)]
    if model.get("dimension"):
        details.append(f"{model['dimension']} dimensions")
    if details:
        parts.append(f"({', '.join(details)})")
    if model.get("fallback_used"):
        parts.append(f"instead of {model.get('requested')}: {model.get('fallback_reason')}")
    return " ".join(parts)


def format_sources(answer: Answer, base_url: str) -> str:
    """The numbered sources under an answer (nothing when nothing was found), with links to originals."""
    if answer["nothing_found"]:
        return ""
    sources = answer["citations"] or answer["used_context"]
    lines = ["", "Sources:" if answer["citations"] else f"The answer cites none of its {len(sources)} sources:"]
    for source in sources:
        link = f"  {base_url}{source['content_url']}" if source.get("content_url") else f"  [{source['id']}]"
        snippet = " ".join(source["text"].split())[:160]
        lines.append(f"[{source['n']}] {source['label']}{link}\n    {snippet}")
    return "\n".join(lines) + "\n"
