"""`prism doctor` over HTTP: does the store agree with itself and with the blob store?"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from api.routes.deps import get_library
from retrieval import Library
from retrieval.doctor import Problem, Report

router = APIRouter(prefix="/v1", tags=["system"])


class ProblemOut(BaseModel):
    kind: str = Field(description="What is wrong, e.g. orphan_blob, missing_copy, unfinished_write (see `prism doctor --help`).")
    collection: str
    id: str = Field(description="The item, document, row, blob key or file concerned.")
    message: str
    fixable: bool = Field(description="Whether POST /v1/doctor/fix repairs it.")

    @classmethod
    def of(cls, problem: Problem) -> "ProblemOut":
        return cls(kind=problem.kind, collection=problem.collection, id=problem.id, message=problem.message, fixable=problem.fixable)


class DoctorOut(BaseModel):
    summary: str
    problems: list[ProblemOut] = Field(description="What is wrong (after repairs, what is left).")
    fixed: list[ProblemOut] = Field(description="What was repaired.")
    notes: list[str] = Field(description="What was not checked and why, and writes a crash interrupted that were finished.")
    checked: dict[str, int] = Field(description="Rows per vector space and stored files that were looked at.")

    @classmethod
    def of(cls, report: Report) -> "DoctorOut":
        problems = [ProblemOut.of(problem) for problem in report.problems]
        return cls(summary=report.summary(), problems=problems, fixed=[ProblemOut.of(p) for p in report.fixed], notes=report.notes, checked=report.checked)


@router.get("/doctor", response_model=DoctorOut, summary="Check that the store and the blob store agree")
def check(library: Library = Depends(get_library)) -> DoctorOut:
    """Looks for writes a crash interrupted, stale versions, CLIP copies without their chunk (or chunks
    without their copy), captions without their picture, originals and thumbnails that are missing, and
    stored files that no item owns. Changes nothing."""
    return DoctorOut.of(library.doctor(fix=False))


@router.post("/doctor/fix", response_model=DoctorOut, summary="Check, and repair what is safe to repair")
def fix(library: Library = Depends(get_library)) -> DoctorOut:
    """The same checks, then the repairs that lose nothing a user stored: finishing interrupted writes,
    deleting orphans, re-embedding missing CLIP copies and captions, remaking thumbnails. A missing
    original cannot be repaired and stays in `problems`."""
    return DoctorOut.of(library.doctor(fix=True))
