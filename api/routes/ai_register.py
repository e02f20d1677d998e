"""The AI register: every rule and model in use — purpose, version, welfare or clinical, evaluation figures,
pause state, alerts per resident-week and dismiss rate per site — and the pause switches (admin, logged)."""

from __future__ import annotations

import json
import pathlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from api import audit, store
from api.access import Category, Outcome, Purpose
from api.deps import AdminUser, CurrentUser, Db, ResidentGrant, action_name, get_state, resident_access
from api.models import PauseIn, PauseOut, RegisterEntry
from api.problems import PROBLEM_RESPONSES, ProblemError

router = APIRouter(tags=["ai-register"], responses=PROBLEM_RESPONSES)
Detector = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]


def _detectors() -> list[dict[str, Any]]:
    from streams.registry import DETECTORS

    return [d.to_dict() for d in DETECTORS]


#: Where the register finds the last evaluation (`carechain evaluate --json $CARECHAIN_STATE_DIR/evaluation.json`).
EVALUATION_FILE = "evaluation.json"


def _evaluation(path: pathlib.Path) -> dict[str, dict[str, Any]]:
    """Per detector: recall, precision and delay on the simulated scenarios with ground truth, from the last
    ``carechain evaluate`` run saved at ``path`` (none when it was never run)."""
    try:
        result = json.loads(path.read_text())
        from carechain.evaluation import DETECTED_BY
    except (OSError, ValueError, ImportError):
        return {}
    out: dict[str, dict[str, Any]] = {}
    healthy = result.get("healthy", {})
    for incident, figures in result.get("types", {}).items():
        kinds = next((k for t, k in DETECTED_BY.items() if t.value == incident), frozenset())
        for name in kinds:
            entry = out.setdefault(name, {"scenarios": {}, "evaluated_at": result.get("evaluated_at")})
            entry["scenarios"][incident] = {
                k: figures.get(k) for k in ("incidents", "recall", "precision", "delay_p95_s", "meets_target")
            }
    for name, n in (result.get("false_alerts_by_kind") or {}).items():
        out.setdefault(name, {"scenarios": {}})["false_alerts"] = n
    for entry in out.values():
        entry["healthy_false_alerts_per_resident_week_all_detectors"] = healthy.get("false_alerts_per_resident_week")
    return out


@router.get(
    "/v1/ai-register",
    response_model=list[RegisterEntry],
    summary="Every rule and model in use, with its figures and pause state",
    description="Welfare and safety rules are kept apart from clinical risk models (AI Act). Per site "
    "(organisation): alerts per resident-week and dismiss rate over the last `weeks` weeks.",
)
def ai_register(
    request: Request, ctx: CurrentUser, conn: Db, weeks: Annotated[int, Query(ge=1, le=104)] = 4
) -> list[RegisterEntry]:
    pauses = store.pause_state(conn)
    since = datetime.now(UTC) - timedelta(weeks=weeks)
    per_site = store.detector_site_figures(conn, since)
    evaluation = _evaluation(get_state(request).settings.state_dir / EVALUATION_FILE)
    out = []
    for d in _detectors():
        name = d["name"]
        mine = [p for p in pauses if p["detector"] == name and p["paused"]]
        out.append(
            RegisterEntry(
                **{**d, "inputs": list(d.get("inputs", ()))},
                paused_globally=any(p["resident_id"] is None for p in mine),
                paused_residents=sum(1 for p in mine if p["resident_id"] is not None),
                evaluation=evaluation.get(name),
                per_site=per_site.get(name, []),
            )
        )
    audit.record(
        conn, ctx, action=action_name(request), resource="ai-register", outcome=Outcome.ALLOWED, purpose="quality"
    )
    return out


def _known(detector: str) -> None:
    if detector not in {d["name"] for d in _detectors()}:
        raise ProblemError(404, "No such detector")


@router.put(
    "/v1/ai-register/{detector}/pause",
    response_model=PauseOut,
    summary="Pause or resume a detector globally (admin; logged)",
)
def pause_global(request: Request, detector: Detector, body: PauseIn, ctx: AdminUser, conn: Db) -> PauseOut:
    _known(detector)
    with conn.transaction():
        row = store.set_pause(conn, detector, None, body.paused, body.reason, ctx.user_id)
        audit.record(
            conn,
            ctx,
            action=action_name(request),
            resource=f"detector/{detector}/{'pause' if body.paused else 'resume'}",
            outcome=Outcome.ALLOWED,
            purpose=Purpose.ADMINISTRATION,
            basis=f"org:{ctx.org_id}",
        )
    return PauseOut(**row)


@router.put(
    "/v1/residents/{resident_id}/detectors/{detector}/pause",
    response_model=PauseOut,
    summary="Pause or resume a detector for one resident (admin of the resident's organisation; logged; also "
    "written to the care plan)",
)
def pause_resident(
    detector: Detector,
    body: PauseIn,
    conn: Db,
    admin: AdminUser,
    grant: Annotated[ResidentGrant, Depends(resident_access(Category.IDENTITY, write=True))],
) -> PauseOut:
    _known(detector)
    with conn.transaction():
        row = store.set_pause(conn, detector, grant.resident_id, body.paused, body.reason, grant.ctx.user_id)
        store.set_plan_pause(conn, grant.resident_id, detector, body.paused, grant.ctx.user_id)
    return PauseOut(**row)
